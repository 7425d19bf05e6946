//! The `/metrics` endpoint: an axum server on a tokio runtime of its own
//! ([`crate::background`]) serving `GET /metrics` (the Prometheus text format)
//! and `GET /healthz`.
//!
//! With a bearer token (`metrics.bearer_token_env` / `_file`), `GET /metrics`
//! answers 401 unless the request carries `Authorization: Bearer <token>`;
//! `/healthz` stays open for liveness probes. The token is compared in constant
//! time and never logged.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::oneshot;

use super::Metrics;
use crate::secret::Secret;

/// What the `/metrics` handler needs.
#[derive(Clone)]
struct Exposition {
    metrics: Arc<Metrics>,
    token: Option<Secret>,
}

/// A running `/metrics` server; stops when dropped.
pub struct Server {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `GET /metrics` and `GET /healthz` on `bind` until the returned
/// [`Server`] is dropped; with `token`, `/metrics` requires it as a bearer token.
pub fn serve(bind: &str, metrics: Arc<Metrics>, token: Option<Secret>) -> std::io::Result<Server> {
    let listener = std::net::TcpListener::bind(bind)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = crate::background::spawn("causeway-metrics", move || async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        let app = axum::Router::new()
            .route("/metrics", get(exposition))
            .route("/healthz", get(|| async { "ok\n" }))
            .with_state(Exposition { metrics, token });
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    })?;
    Ok(Server {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

async fn exposition(State(e): State<Exposition>, headers: HeaderMap) -> Response {
    if let Some(token) = &e.token {
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.trim().as_bytes(), token.expose().as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(WWW_AUTHENTICATE, "Bearer realm=\"causeway\"")],
                "a bearer token is required (Authorization: Bearer <token>)\n",
            )
                .into_response();
        }
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        e.metrics.render(),
    )
        .into_response()
}

/// Equality whose time depends only on the lengths, not on where the bytes
/// first differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
