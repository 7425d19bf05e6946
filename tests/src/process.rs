//! Child processes and HTTP for the integration tests: a guard that kills a
//! child when a test fails, waiting for an exit with a deadline, SIGTERM, and a
//! plain `GET`.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus};
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
