//! TLS for the Kafka tests. tansu 0.6.0 does not serve TLS (its `--cert` and
//! `--key` conflict on the command line, and the broker never uses the TLS
//! acceptor it builds), so a TLS-terminating proxy stands in front of it: tansu
//! listens in plaintext on one port and advertises the proxy's address, so every
//! client connection (bootstrap and broker) goes through TLS. With
//! [`TlsProxy::start_mutual`] it also requires a client certificate signed by
//! the test CA (mutual TLS). The CAs and certificates are made by the `openssl`
//! command-line tool.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA, a server certificate it signed (for `127.0.0.1` and `localhost`) and
/// a client certificate it signed, with their keys; a second CA (the "wrong
/// CA") and a client certificate that one signed (a stranger's).
pub struct Certs {
    /// CA certificate (PEM), for `ssl.ca.location`.
    pub ca: PathBuf,
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Server key (PEM).
    pub key: PathBuf,
    /// An unrelated CA certificate (PEM).
    pub wrong_ca: PathBuf,
    /// Client certificate signed by `ca` (PEM), for `ssl.certificate.location`.
    pub client_cert: PathBuf,
    /// Its key (PEM, unencrypted), for `ssl.key.location`.
    pub client_key: PathBuf,
    /// Client certificate signed by `wrong_ca` (PEM).
    pub stranger_cert: PathBuf,
    /// Its key (PEM, unencrypted).
    pub stranger_key: PathBuf,
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
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("ext file");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext file");
    for (name, cn, ca, ext) in [
        ("server", "localhost", "ca", "server.ext"),
        ("client", "causeway", "ca", "client.ext"),
        ("stranger", "causeway", "wrong-ca", "client.ext"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                ext,
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        wrong_ca: dir.join("wrong-ca.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
        stranger_cert: dir.join("stranger.pem"),
        stranger_key: dir.join("stranger.key"),
    }
}

/// Whether the proxy asks for a client certificate.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    None,
    Required,
    RequiredUnhinted,
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
        Self::serve(listener, upstream, certs, ClientAuth::None)
    }

    /// As [`TlsProxy::start`], and requires a client certificate signed by
    /// `certs.ca`: a client without one, or with one another CA signed, fails
    /// its handshake (TLS 1.3: the proxy's alert reaches the client after its
    /// side of the handshake is done, on its first read). The proxy names its
    /// CA in the certificate request, as Kafka brokers do, so OpenSSL sends no
    /// certificate another CA signed: that client gets `certificate required`
    /// too.
    pub fn start_mutual(
        listener: std::net::TcpListener,
        upstream: String,
        certs: &Certs,
    ) -> TlsProxy {
        Self::serve(listener, upstream, certs, ClientAuth::Required)
    }

    /// As [`TlsProxy::start_mutual`], without naming the CA in the
    /// certificate request: a client sends whatever certificate it has, and
    /// one another CA signed is refused with `unknown ca`.
    pub fn start_mutual_unhinted(
        listener: std::net::TcpListener,
        upstream: String,
        certs: &Certs,
    ) -> TlsProxy {
        Self::serve(listener, upstream, certs, ClientAuth::RequiredUnhinted)
    }

    fn serve(
        listener: std::net::TcpListener,
        upstream: String,
        certs: &Certs,
        auth: ClientAuth,
    ) -> TlsProxy {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.cert)
            .expect("server cert")
            .collect::<Result<_, _>>()
            .expect("server cert");
        let key = PrivateKeyDer::from_pem_file(&certs.key).expect("server key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = if auth == ClientAuth::None {
            builder.with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_file_iter(&certs.ca).expect("CA cert") {
                roots.add(ca.expect("CA cert")).expect("CA cert");
            }
            let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            if auth == ClientAuth::RequiredUnhinted {
                verifier = verifier.clear_root_hint_subjects();
            }
            builder.with_client_cert_verifier(verifier.build().expect("client verifier"))
        };
        let config = builder.with_single_cert(chain, key).expect("server config");
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
                    // A failed handshake (a client with the wrong CA, or
                    // without an accepted certificate) just closes.
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
