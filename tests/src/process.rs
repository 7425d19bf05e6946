//! Child processes and HTTP for the integration tests: a guard that kills a
//! child when a test fails, waiting for an exit or a condition with a
//! deadline, SIGTERM, a plain `GET`, and the real Prometheus and Alertmanager
//! the tests run against.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Kills a child process when dropped (a failing test leaves nothing behind).
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child` to exit; kills it and panics after `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` every 200 ms until it returns a value; panics after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends SIGTERM and waits (at most `limit`) for the exit.
pub fn terminate(child: &mut Child, limit: Duration) -> ExitStatus {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    wait_exit(child, limit)
}

/// The body of `GET path` from `addr`, or "" if the server is not (yet) answering.
pub fn http_get(addr: &str, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = String::new();
    if write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").is_err()
        || s.read_to_string(&mut buf).is_err()
    {
        return String::new();
    }
    buf.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request path.
    pub path: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body, parsed as JSON.
    pub body: serde_json::Value,
}

/// A loopback HTTP receiver (PagerDuty / webhook stand-in) that records every
/// request. Its first `fail_first` requests get `503` (or the status given to
/// [`Receiver::failing`]), the rest `202`.
pub struct Receiver {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// Requests answered with 202, in order.
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    /// Requests answered with 503 (or the failure status).
    pub failed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The failed requests, in order.
    pub rejected: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Starts the receiver on a free port.
    pub fn start(fail_first: usize) -> Receiver {
        Self::failing(fail_first, "503 Service Unavailable", false)
    }

    /// Starts a receiver whose first `fail_first` requests get `status` (e.g.
    /// `"401 Unauthorized"`), with the request's `Authorization` header and
    /// `routing_key` echoed in the response body if `echo`, as some careless
    /// servers do.
    pub fn failing(fail_first: usize, status: &'static str, echo: bool) -> Receiver {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let rejected = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (reqs, fails, rejs) = (requests.clone(), failed.clone(), rejected.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let Some(r) = read_request(&mut s) else {
                    continue;
                };
                let fail = fails.load(Ordering::SeqCst) < fail_first;
                let mut body = "{}".to_string();
                let status = if fail {
                    fails.fetch_add(1, Ordering::SeqCst);
                    if echo {
                        let auth = r.headers.iter().find(|(k, _)| k == "authorization");
                        body = serde_json::json!({
                            "authorization": auth.map(|(_, v)| v),
                            "routing_key": r.body.get("routing_key"),
                        })
                        .to_string();
                    }
                    rejs.lock().expect("lock").push(r);
                    status
                } else {
                    reqs.lock().expect("lock").push(r);
                    "202 Accepted"
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Receiver {
            addr,
            requests,
            failed,
            rejected,
        }
    }

    /// The requests to `path` so far.
    pub fn to(&self, path: &str) -> Vec<Received> {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

fn read_request(s: &mut std::net::TcpStream) -> Option<Received> {
    use std::io::BufRead;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut r = std::io::BufReader::new(s.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        if k == "content-length" {
            len = v.parse().ok()?;
        }
        headers.push((k, v));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(Received {
        path,
        headers,
        body: serde_json::from_slice(&body).ok()?,
    })
}

/// A Prometheus (Debian package `prometheus`) scraping `target` every second,
/// its data in `dir/tsdb`; returns it and its address.
pub fn start_prometheus(dir: &Path, target: &str, port: u16) -> (Reaper, String) {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: causeway\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus; bash .ci/run installs it)");
    (Reaper(child), format!("127.0.0.1:{port}"))
}

/// `q` as a URL query value (PromQL in `/api/v1/query?query=`).
pub fn url_encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An Alertmanager (Debian package `prometheus-alertmanager`) routing every
/// alert to a null receiver, listening on `port`, its data in `dir/data`.
pub fn start_alertmanager(dir: &Path, data: &str, port: u16) -> Reaper {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
    )
    .unwrap();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join(data).display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager must be installed (bash .ci/run installs it)");
    Reaper(child)
}

/// The active alerts of the Alertmanager at `addr` (empty until it answers).
pub fn alertmanager_alerts(addr: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(&http_get(addr, "/api/v2/alerts?active=true")).unwrap_or_default()
}
