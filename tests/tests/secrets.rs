//! Secrets stay secret (README "Security"): the PagerDuty routing key, the
//! webhook token, the `/metrics` bearer token and the Kafka SASL password are
//! read from the environment or files, used, and never printed, while the
//! commands fail in the ways that print the most: an unreachable broker, a
//! receiver answering 401, an unreachable Alertmanager, config mistakes.
//! Also: `/metrics` of `run` and `dispatch` requires the bearer token when one
//! is configured (401 without it or with a wrong one), `/healthz` stays open.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use causeway_schemas::records::AlertRecord;
use causeway_tests::kafka::{causeway_binary, create_topic, free_port, produce_alerts, Tansu};
use causeway_tests::process::{terminate, wait_exit, Reaper, Receiver};
use causeway_tests::scenario::{prepare, replay_to};

const PD_KEY: &str = "pd-routing-key-S3CRET-1a2b";
const HOOK_TOKEN: &str = "hook-token-S3CRET-3c4d";
const METRICS_TOKEN: &str = "metrics-token-S3CRET-5e6f";
const KAFKA_PASSWORD: &str = "kafka-password-S3CRET-7a8b";
const SECRETS: [&str; 4] = [PD_KEY, HOOK_TOKEN, METRICS_TOKEN, KAFKA_PASSWORD];

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-secrets-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Asserts that no secret appears in `text`.
fn assert_hidden(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows the secret {s:?}:\n{text}");
    }
}

/// Asserts that no file under `dir` but the secret files themselves holds a secret.
fn assert_no_file_shows(dir: &Path, secret_files: &[&Path]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_no_file_shows(&path, secret_files);
        } else if !secret_files.contains(&path.as_path()) {
            let bytes = std::fs::read(&path).unwrap();
            assert_hidden(
                &path.display().to_string(),
                &String::from_utf8_lossy(&bytes),
            );
        }
    }
}

/// `GET path` with an optional `Authorization` header: status and body.
fn get(addr: &str, path: &str, authorization: Option<&str>) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let mut buf = String::new();
    if write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").is_err()
        || s.read_to_string(&mut buf).is_err()
    {
        return (0, String::new());
    }
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (status, body.unwrap_or_default())
}

/// Waits for `/healthz` (open, no token) and checks that `/metrics` needs the token.
fn check_metrics_auth(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(addr, "/healthz", None).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "/healthz on {addr} never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = get(addr, "/metrics", None);
    assert_eq!(status, 401, "/metrics without a token: {body}");
    assert!(!body.contains("causeway_"), "{body}");
    let (status, _) = get(addr, "/metrics", Some("Bearer not-the-token"));
    assert_eq!(status, 401, "/metrics with a wrong token");
    let (status, _) = get(addr, "/metrics", Some(&format!("Basic {METRICS_TOKEN}")));
    assert_eq!(status, 401, "/metrics with the token in the wrong scheme");
    let (status, body) = get(addr, "/metrics", Some(&format!("Bearer {METRICS_TOKEN}")));
    assert_eq!(status, 200, "/metrics with the token: {body}");
    assert!(body.contains("causeway_"), "{body}");
    assert_eq!(get(addr, "/healthz", None).0, 200);
}

/// Starts `causeway <args>` with `env`, stdout and stderr into `dir/<name>.out`.
fn spawn_logged(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> (Child, PathBuf) {
    let log = dir.join(format!("{name}.out"));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(causeway_binary())
        .args(args)
        .envs(env.iter().copied())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("spawn causeway");
    (child, log)
}

fn write_secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    path
}

#[test]
fn run_requires_the_metrics_token_and_prints_no_secret_when_kafka_is_unreachable() {
    let dir = scratch("run");
    let token_file = write_secret(&dir, "metrics-token", METRICS_TOKEN);
    let metrics = format!("127.0.0.1:{}", free_port());
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"127.0.0.1:{}\"\n\n[kafka.librdkafka]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\
             \"sasl.mechanisms\" = \"PLAIN\"\n\"sasl.username\" = \"causeway\"\n\n\
             [kafka.librdkafka_from_env]\n\"sasl.password\" = \"CW_KAFKA_PASSWORD\"\n\n\
             [metrics]\nbind = \"{metrics}\"\nbearer_token_file = \"{}\"\n",
            free_port(),
            token_file.display()
        ),
    )
    .unwrap();
    let (child, log) = spawn_logged(
        &dir,
        "run",
        &["run", "--config", config.to_str().unwrap()],
        &[("CW_KAFKA_PASSWORD", KAFKA_PASSWORD)],
    );
    let mut child = Reaper(child);
    check_metrics_auth(&metrics);
    // No broker: it gives up after the metadata timeout (30 s) with an error.
    let status = wait_exit(&mut child.0, Duration::from_secs(90));
    assert!(!status.success());
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(out.contains("cannot reach Kafka"), "{out}");
    assert_no_file_shows(&dir, &[&token_file]);
}

#[test]
fn dispatch_uses_its_secrets_and_prints_none_when_receivers_refuse() {
    let (_, input, config) = prepare("secrets-dispatch", "");
    let root = input.parent().unwrap().to_path_buf();
    let alerts = replay_to(&input, &config, &root.join("replayed"), 1);
    let firing: Vec<&AlertRecord> = alerts.iter().filter(|a| a.status == "firing").collect();
    assert!(!firing.is_empty());
    let dir = scratch("dispatch");

    let tansu = Tansu::start();
    create_topic(&tansu.brokers, "causeway_alerts", 1);
    produce_alerts(&tansu.brokers, &firing);
    // PagerDuty and the webhook answer 401 (a wrong key or token) and echo the
    // request, key and token included, in the response the dispatcher logs;
    // Alertmanager is not there at all.
    let receiver = Receiver::failing(usize::MAX, "401 Unauthorized", true);
    let hook_file = write_secret(&dir, "hook-token", HOOK_TOKEN);
    let kafka_file = write_secret(&dir, "kafka-password", KAFKA_PASSWORD);
    let metrics = format!("127.0.0.1:{}", free_port());
    let cfg = dir.join("dispatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kafka]\nbrokers = \"{brokers}\"\n\n[kafka.librdkafka_from_file]\n\"sasl.password\" = \"{kafka}\"\n\n\
             [metrics]\nbearer_token_env = \"CW_METRICS_TOKEN\"\n\n\
             [dispatch]\nalertmanager_url = \"http://127.0.0.1:{am}\"\n\
             pagerduty_url = \"http://{rx}/v2/enqueue\"\npagerduty_routing_key_env = \"CW_PD_KEY\"\n\
             webhook_url = \"http://{rx}/hook\"\nwebhook_token_file = \"{hook}\"\n\
             initial_backoff = \"100ms\"\nmax_backoff = \"200ms\"\nmetrics_bind = \"{metrics}\"\n",
            brokers = tansu.brokers,
            kafka = kafka_file.display(),
            am = free_port(),
            rx = receiver.addr,
            hook = hook_file.display(),
        ),
    )
    .unwrap();
    let (child, log) = spawn_logged(
        &dir,
        "dispatch",
        &["dispatch", "--config", cfg.to_str().unwrap()],
        &[("CW_PD_KEY", PD_KEY), ("CW_METRICS_TOKEN", METRICS_TOKEN)],
    );
    let mut child = Reaper(child);
    check_metrics_auth(&metrics);
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.rejected.lock().unwrap().len() < 2 * firing.len() {
        assert!(
            Instant::now() < deadline,
            "PagerDuty and the webhook were not called"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the Alertmanager channel fail a few more times, then stop.
    std::thread::sleep(Duration::from_secs(1));
    assert!(terminate(&mut child.0, Duration::from_secs(30)).success());

    // The secrets were really used: the routing key in PagerDuty's body, the
    // token in the webhook's Authorization header.
    let rejected = receiver.rejected.lock().unwrap().clone();
    let pd: Vec<_> = rejected
        .iter()
        .filter(|r| r.path == "/v2/enqueue")
        .collect();
    assert!(pd.iter().all(|r| r.body["routing_key"] == PD_KEY), "{pd:?}");
    let hook: Vec<_> = rejected.iter().filter(|r| r.path == "/hook").collect();
    let bearer = format!("Bearer {HOOK_TOKEN}");
    assert!(!hook.is_empty());
    assert!(hook.iter().all(|r| r
        .headers
        .contains(&("authorization".into(), bearer.clone()))));

    let out = std::fs::read_to_string(&log).unwrap();
    assert!(out.contains("401"), "the refusals are not reported:\n{out}");
    assert!(
        out.contains("<redacted>"),
        "the echoed secrets are not masked:\n{out}"
    );
    assert_no_file_shows(&dir, &[&hook_file, &kafka_file]);
}

/// Runs `causeway <args>` to its end: exit success and everything it printed.
fn output(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(causeway_binary())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run causeway");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn config_mistakes_name_the_secret_never_show_it() {
    let dir = scratch("config");
    let cases: Vec<(&str, String, &str)> = vec![
        // A password written in the file: refused, by name.
        (
            "run",
            format!("[kafka.librdkafka]\n\"sasl.password\" = \"{KAFKA_PASSWORD}\"\n"),
            "kafka.librdkafka.\"sasl.password\"` is a secret",
        ),
        // A syntax error on the password's line: its position, not the line.
        (
            "run",
            format!("[kafka.librdkafka]\n\"sasl.username\" = \"u\"\n\"sasl.password\" = \"{KAFKA_PASSWORD}\n"),
            "line 3, column",
        ),
        // A token in a field that wants something else.
        (
            "run",
            format!("[metrics]\nbearer_token_env = \"CW_NOT_SET\"\nbearer_token_file = \"{METRICS_TOKEN}\"\n"),
            "both set",
        ),
        // The variable is not set: the variable and the key are named.
        (
            "run",
            "[metrics]\nbearer_token_env = \"CW_NOT_SET\"\n".to_string(),
            "environment variable CW_NOT_SET (metrics.bearer_token_env) is not set",
        ),
        (
            "dispatch",
            format!(
                "[dispatch]\nwebhook_url = \"http://127.0.0.1:9/hook\"\nwebhook_token_file = \"{}\"\n",
                dir.join("missing-token").display()
            ),
            "(dispatch.webhook_token_file)",
        ),
        (
            "dispatch",
            "[dispatch]\npagerduty_routing_key_env = \"CW_NOT_SET\"\n".to_string(),
            "CW_NOT_SET (dispatch.pagerduty_routing_key_env)",
        ),
    ];
    for (i, (command, text, expect)) in cases.iter().enumerate() {
        let path = dir.join(format!("case{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let env = [("CW_KAFKA_PASSWORD", KAFKA_PASSWORD), ("CW_PD_KEY", PD_KEY)];
        let (ok, out) = output(&[command, "--config", path.to_str().unwrap()], &env);
        assert!(!ok, "case {i} succeeded:\n{out}");
        assert!(out.contains(expect), "case {i}: no {expect:?} in:\n{out}");
        assert_hidden(&format!("case {i}"), &out);
    }
}
