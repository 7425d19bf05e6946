//! Alert delivery (SPEC §5): one file per channel behind [`Channel`], and the
//! dispatcher loop ([`dispatcher`]) that consumes `causeway_alerts` and pages.
//!
//! Channels, each optional:
//! - **Alertmanager** API v2: `POST /api/v2/alerts` with the alert's labels and
//!   its evidence as annotations. Firing alerts are re-sent every
//!   `resend_interval` with `endsAt` four intervals ahead, as Prometheus does, so
//!   Alertmanager keeps them active while Causeway is up; a resolved alert is
//!   sent with its `ends_at`.
//! - **PagerDuty** Events API v2: `trigger` / `resolve` with the alert's
//!   `dedup_key`; `critical` for page, `warning` for ticket.
//! - **Webhook**: the Alertmanager webhook JSON (version 4), one alert per request.
//!
//! Each channel consumes the topic in a consumer group of its own
//! (`<dispatch.group_id>-<channel>`) on a thread of its own, so a channel that is
//! down holds back only itself: PagerDuty still pages while Alertmanager is away.
//! Delivery is at least once: a channel commits a record's offset only after it
//! accepted the record. Transport errors, 5xx, 408 and 429 are retried with
//! exponential backoff (doubling from `initial_backoff` up to `max_backoff`)
//! until they succeed or the process is asked to stop; any other 4xx is a
//! permanent rejection, logged with the response body and skipped (retrying
//! cannot fix it). Suppressed alerts (maintenance) are recorded on the topic and
//! not paged. Routing keys and tokens are read from the environment or a file and
//! never printed.
//!
//! `/metrics` (on `dispatch.metrics_bind`) counts attempts per channel and
//! outcome, records per outcome, and the firing alerts being re-sent.
//!
//! At start the dispatcher reads the topic from the beginning: records before the
//! committed offsets only rebuild the set of firing alerts (for re-sends); the
//! rest are delivered.
use std::collections::BTreeMap;
use std::time::Duration;

use causeway_schemas::records::AlertRecord;
use causeway_schemas::time::{format_rfc3339, NANOS_PER_SEC};
use serde_json::Value;

use crate::config::{parse_duration, DispatchConfig};
use crate::secret::read_secret;
pub use crate::secret::Secret;

pub mod alertmanager;
pub mod dispatcher;
pub mod pagerduty;
pub mod webhook;

pub use alertmanager::{alertmanager_alert, Alertmanager};
pub use dispatcher::{dispatch, DispatchError, DispatchOptions, DispatchSummary};
pub use pagerduty::PagerDuty;
pub use webhook::Webhook;

/// A paging channel: how one alert record (and, for channels that need it, the
/// set of firing alerts) becomes an HTTP request. Delivery, retries and commits
/// are the dispatcher's.
pub trait Channel: Send {
    /// The channel's name in logs, metrics and its consumer group.
    fn name(&self) -> &'static str;

    /// The request that delivers one alert record at `now_s` (Unix seconds).
    fn request(&self, a: &AlertRecord, now_s: u64) -> Request;

    /// The request that re-sends the firing alerts, for a channel that forgets
    /// alerts not re-sent (Alertmanager); `None` otherwise or when none fire.
    fn resend(&self, _firing: &BTreeMap<String, AlertRecord>, _now_s: u64) -> Option<Request> {
        None
    }

    /// Whether [`Channel::resend`] is ever `Some` (the dispatcher then reports
    /// the number of firing alerts it re-sends).
    fn resends_firing(&self) -> bool {
        false
    }
}

/// One JSON `POST`.
pub struct Request {
    /// Where to.
    pub url: String,
    /// The JSON body.
    pub body: Value,
    /// An `Authorization: Bearer` token.
    pub bearer: Option<Secret>,
    /// A secret the body carries (PagerDuty's routing key): masked, with the
    /// bearer token, in any response text that is logged, in case a receiver
    /// echoes the request.
    pub body_secret: Option<Secret>,
}

impl Request {
    fn post(url: &str, body: Value) -> Self {
        Request {
            url: url.to_string(),
            body,
            bearer: None,
            body_secret: None,
        }
    }
}

/// A duration setting already checked by `Config::settings`.
fn duration(v: &str) -> Duration {
    Duration::from_nanos(parse_duration(v).unwrap_or(0))
}

/// The channels the `[dispatch]` section configures, with their secrets read.
pub fn channels(d: &DispatchConfig) -> Result<Vec<Box<dyn Channel>>, DispatchError> {
    let mut out: Vec<Box<dyn Channel>> = Vec::new();
    if let Some(u) = &d.alertmanager_url {
        out.push(Box::new(Alertmanager {
            url: format!("{}/api/v2/alerts", u.trim_end_matches('/')),
            resend: duration(&d.resend_interval),
        }));
    }
    let env = crate::secret::process_env;
    let key = read_secret(
        "dispatch.pagerduty_routing_key",
        d.pagerduty_routing_key_env.as_deref(),
        d.pagerduty_routing_key_file.as_deref(),
        &env,
    )?;
    if let Some(routing_key) = key {
        out.push(Box::new(PagerDuty {
            url: d.pagerduty_url.clone(),
            routing_key,
        }));
    }
    if let Some(u) = &d.webhook_url {
        let token = read_secret(
            "dispatch.webhook_token",
            d.webhook_token_env.as_deref(),
            d.webhook_token_file.as_deref(),
            &env,
        )?;
        out.push(Box::new(Webhook {
            url: u.clone(),
            token,
        }));
    }
    if out.is_empty() {
        return Err(DispatchError::NoChannel);
    }
    Ok(out)
}

/// The evidence of an alert as flat strings (Alertmanager annotations).
pub fn annotations(a: &AlertRecord) -> BTreeMap<&'static str, String> {
    let burn: Vec<String> = a
        .burn_rates
        .iter()
        .map(|b| format!("{}={:.2}", b.window, b.burn_rate))
        .collect();
    let changes: Vec<String> = a
        .suspected_changes
        .iter()
        .map(|c| {
            let actor = if c.actor.is_empty() {
                String::new()
            } else {
                format!(" by {}", c.actor)
            };
            format!(
                "{} {} {} ({}){} at {}",
                c.service,
                c.action,
                c.version,
                c.artifact,
                actor,
                format_rfc3339(c.time_unix_nano / NANOS_PER_SEC)
            )
        })
        .collect();
    let mut m = BTreeMap::from([
        ("summary", a.summary.clone()),
        (
            "description",
            format!(
                "SLO {} ({} objective {}) burn rates {}; error budget remaining {:.3}",
                a.label("slo"),
                a.sli,
                a.objective,
                burn.join(" "),
                a.error_budget_remaining
            ),
        ),
        ("exemplar_trace_ids", a.exemplar_trace_ids.join(",")),
        ("suspected_changes", changes.join("; ")),
        ("culprit", a.culprit.clone()),
        ("group_key", a.group_key.clone()),
        ("dedup_key", a.dedup_key.clone()),
        ("burn_rates", burn.join(" ")),
        (
            "error_budget_remaining",
            format!("{:.4}", a.error_budget_remaining),
        ),
    ]);
    if let Some(r) = &a.runbook_url {
        m.insert("runbook_url", r.clone());
    }
    m
}
