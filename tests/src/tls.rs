//! TLS for the Kafka tests. tansu 0.6.0 does not serve TLS (its `--cert` and
//! `--key` conflict on the command line, and the broker never uses the TLS
//! acceptor it builds), so a TLS-terminating proxy stands in front of it: tansu
//! listens in plaintext on one port and advertises the proxy's address, so every
//! client connection (bootstrap and broker) goes through TLS. The CA and the
//! server certificate are made by the `openssl` command-line tool.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA, a server certificate it signed (for `127.0.0.1` and `localhost`) with
/// its key, and a second CA that signed nothing here (the "wrong CA").
pub struct Certs {
    /// CA certificate (PEM), for `ssl.ca.location`.
    pub ca: PathBuf,
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Server key (PEM).
    pub key: PathBuf,
    /// An unrelated CA certificate (PEM).
    pub wrong_ca: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command-line tool (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes the certificates in `dir` (valid for two days).
pub fn make_certs(dir: &Path) -> Certs {
    std::fs::create_dir_all(dir).expect("cert dir");
    for (name, cn) in [("ca", "causeway-test-ca"), ("wrong-ca", "someone-else-ca")] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("ext file");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        wrong_ca: dir.join("wrong-ca.pem"),
    }
}

/// A TLS-terminating TCP proxy on a loopback port; stops when dropped.
pub struct TlsProxy {
    /// `127.0.0.1:port` the proxy listens on.
    pub addr: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TlsProxy {
    /// Accepts TLS on `listener` with `certs`' server certificate and forwards
    /// the plaintext to `upstream` (`host:port`).
    pub fn start(listener: std::net::TcpListener, upstream: String, certs: &Certs) -> TlsProxy {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.cert)
            .expect("server cert")
            .collect::<Result<_, _>>()
            .expect("server cert");
        let key = PrivateKeyDer::from_pem_file(&certs.key).expect("server key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let addr = listener.local_addr().expect("addr").to_string();
        listener.set_nonblocking(true).expect("nonblocking");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
                tokio::spawn(async move {
                    // A failed handshake (a client with the wrong CA) just closes.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = plain.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsProxy {
            addr,
            runtime: Some(runtime),
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
