//! `causeway run` over TLS and SASL against tansu (SPEC §7), settings passed
//! through `[kafka.librdkafka]`: the SLI records equal `replay`'s, and a client
//! with the wrong CA, the wrong password or an unknown SASL mechanism stops with
//! an error that says so (and never prints the password).
//!
//! tansu 0.6.0 does not serve TLS itself: a TLS-terminating proxy
//! (`causeway_tests::tls`) stands in front of it. Its SASL/SCRAM is real.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use causeway::commands::replay::{replay, ReplayOptions};
use causeway_benches::workload::{generate, Format, WorkloadConfig};
use causeway_schemas::records::SliRecord;
use causeway_tests::kafka::{
    assert_same, causeway_binary, create_topic, create_topics, free_port, produce_inputs,
    read_topic, run_config, set_client_settings, Tansu,
};
use causeway_tests::process::wait_exit;
use causeway_tests::reference::read_jsonl;
use causeway_tests::tls::{make_certs, TlsProxy};

const TIME: &str = "[time]\nwindow = \"10s\"\ncorrelation_grace = \"10s\"\ntrace_horizon = \"30s\"\nallowed_lateness = \"10s\"\nidle_timeout = \"3s\"\n";

/// The password of the SASL tests' user; it must appear in no output.
const PASSWORD: &str = "sasl-pw-7f3a9c1e";

/// One test at a time: they share two cores (see kafka_broker.rs).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-sec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn workload(dir: &Path) -> PathBuf {
    let input = dir.join("in");
    let cfg = WorkloadConfig {
        seed: 61,
        traces: 1000,
        duration_s: 120,
        error_traces: 0.1,
        context_loss: 0.05,
        untraced_logs: 0.2,
        late: 0.02,
        malformed: 0.02,
        batch_spans: 100,
        partitions: 2,
        ..Default::default()
    };
    generate(&cfg).write(&input, Format::Proto, 2).unwrap();
    input
}

fn expected(dir: &Path, input: &Path) -> Vec<SliRecord> {
    let config = dir.join("replay.toml");
    std::fs::write(&config, TIME).unwrap();
    let out = dir.join("replay");
    replay(&ReplayOptions {
        input: input.to_path_buf(),
        out: out.clone(),
        config: Some(config),
        workers: 1,
        progress: false,
    })
    .unwrap();
    read_jsonl(&out.join("sli.jsonl"))
}

fn sli_out(brokers: &str) -> Vec<SliRecord> {
    let mut got: Vec<SliRecord> = read_topic(brokers, "causeway_sli")
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect();
    got.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    got
}

/// Runs `causeway run --config config --drain` with `env`; its exit status
/// and everything it printed (stdout and stderr).
fn run(config: &Path, env: &[(&str, &str)], limit: Duration) -> (ExitStatus, String) {
    let mut child = Command::new(causeway_binary())
        .args(["run", "--drain", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn causeway run");
    let mut pipes: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    let readers: Vec<_> = pipes
        .drain(..)
        .map(|mut p| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = p.read_to_string(&mut s);
                s
            })
        })
        .collect();
    let status = wait_exit(&mut child, limit);
    let out: String = readers.into_iter().map(|r| r.join().unwrap()).collect();
    (status, out)
}

fn librdkafka(settings: &[(&str, &str)]) -> String {
    let mut s = String::from("[kafka.librdkafka]\n");
    for (k, v) in settings {
        s.push_str(&format!("\"{k}\" = \"{v}\"\n"));
    }
    s
}

/// Generates the workload, creates its topics on `brokers`, produces it, and
/// returns it with `replay`'s SLI records of it.
fn produce_workload(dir: &Path, brokers: &str) -> (PathBuf, Vec<SliRecord>) {
    let input = workload(dir);
    create_topics(&input, |t, n| create_topic(brokers, t, n));
    produce_inputs(brokers, &input);
    let want = expected(dir, &input);
    assert!(want.len() > 20, "workload too small: {}", want.len());
    (input, want)
}

/// `causeway run --drain` succeeds and its `causeway_sli` equals `want`;
/// returns what it printed.
fn run_equals_replay(
    case: &str,
    config: &Path,
    env: &[(&str, &str)],
    brokers: &str,
    want: &[SliRecord],
) -> String {
    let started = Instant::now();
    let (status, out) = run(config, env, Duration::from_secs(120));
    assert!(
        status.success(),
        "causeway run over {case}: {status}\n{out}"
    );
    eprintln!(
        "{case}: run --drain took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_same(
        &format!("causeway_sli over {case}"),
        &sli_out(brokers),
        want,
    );
    out
}

/// `causeway run` fails, printing each of `says`, within 25 s: a refused
/// handshake or login is a setting to fix, not a 30 s metadata timeout.
/// Returns what it printed.
fn run_fails_fast(case: &str, config: &Path, env: &[(&str, &str)], says: &[&str]) -> String {
    let started = Instant::now();
    let (status, out) = run(config, env, Duration::from_secs(90));
    let took = started.elapsed();
    eprintln!("{case}: exit after {:.1} s:\n{out}", took.as_secs_f64());
    assert!(!status.success(), "{case}: run succeeded:\n{out}");
    for said in says {
        assert!(out.contains(said), "{case}: no {said:?}:\n{out}");
    }
    assert!(
        took < Duration::from_secs(25),
        "{case}: exit after {took:?}"
    );
    out
}

#[test]
fn run_over_tls_equals_replay_and_a_wrong_ca_fails_clearly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("tls");
    let certs = make_certs(&dir.join("certs"));
    let plain_port = free_port();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = TlsProxy::start(listener, format!("127.0.0.1:{plain_port}"), &certs);
    let tansu = Tansu::start_behind(plain_port, &proxy.addr);
    let ca = certs.ca.display().to_string();
    let tls = [
        ("security.protocol", "SSL"),
        ("ssl.ca.location", ca.as_str()),
    ];
    set_client_settings(&tansu.brokers, &tls);
    let (input, want) = produce_workload(&dir, &tansu.brokers);

    let extra = format!("{TIME}{}", librdkafka(&tls));
    let config = run_config(&dir, &input, &tansu.brokers, "tls", &extra);
    run_equals_replay("TLS", &config, &[], &tansu.brokers, &want);

    // The same broker with a CA that did not sign its certificate: an error
    // naming the failed verification and what to set, and an exit, not a hang.
    let wrong = certs.wrong_ca.display().to_string();
    let extra = format!(
        "{TIME}{}",
        librdkafka(&[("security.protocol", "SSL"), ("ssl.ca.location", &wrong)])
    );
    let config = run_config(&dir, &input, &tansu.brokers, "wrong-ca", &extra);
    run_fails_fast(
        "wrong CA",
        &config,
        &[],
        &[
            "certificate verify failed",
            "check the TLS/SASL settings",
            "set ssl.ca.location to the CA that signed it",
        ],
    );
}

#[test]
fn run_over_sasl_scram_equals_replay_and_a_wrong_password_fails_clearly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("sasl");
    let tansu = Tansu::start_sasl(&dir.join("broker"), &[("causeway", PASSWORD, "scram256")]);
    let sasl = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanisms", "SCRAM-SHA-256"),
        ("sasl.username", "causeway"),
    ];
    let mut harness = sasl.to_vec();
    harness.push(("sasl.password", PASSWORD));
    set_client_settings(&tansu.brokers, &harness);
    let (input, want) = produce_workload(&dir, &tansu.brokers);

    // The password comes from the environment, named in librdkafka_from_env.
    let extra = format!(
        "{TIME}{}\n[kafka.librdkafka_from_env]\n\"sasl.password\" = \"CW_TEST_KAFKA_PASSWORD\"\n",
        librdkafka(&sasl)
    );
    let config = run_config(&dir, &input, &tansu.brokers, "sasl", &extra);
    let out = run_equals_replay(
        "SASL",
        &config,
        &[("CW_TEST_KAFKA_PASSWORD", PASSWORD)],
        &tansu.brokers,
        &want,
    );
    assert!(!out.contains(PASSWORD), "the password was printed:\n{out}");

    // A wrong password: authentication fails, is reported at once, and
    // nothing hangs.
    let out = run_fails_fast(
        "wrong password",
        &config,
        &[("CW_TEST_KAFKA_PASSWORD", "not-the-password-5d1")],
        &["SASL authentication error", "check the TLS/SASL settings"],
    );
    assert!(!out.contains("not-the-password-5d1"), "{out}");
}

#[test]
fn sasl_settings_reach_librdkafka() {
    let dir = scratch("mechanism");
    let input = workload(&dir);
    // No broker is needed: librdkafka checks the settings when the client is made.
    let extra = librdkafka(&[
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanisms", "NOT-A-MECHANISM"),
        ("sasl.username", "causeway"),
    ])
        + "\n[kafka.librdkafka_from_env]\n\"sasl.password\" = \"CW_TEST_KAFKA_PASSWORD\"\n";
    let config = run_config(&dir, &input, "127.0.0.1:9", "mechanism", &extra);
    let (status, out) = run(
        &config,
        &[("CW_TEST_KAFKA_PASSWORD", PASSWORD)],
        Duration::from_secs(60),
    );
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("Unsupported SASL mechanism: NOT-A-MECHANISM"),
        "{out}"
    );
    assert!(out.contains("[kafka.librdkafka]"), "{out}");
    assert!(!out.contains(PASSWORD), "{out}");

    // The password's variable is not set: named, with its setting.
    let (status, out) = run(&config, &[], Duration::from_secs(60));
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("CW_TEST_KAFKA_PASSWORD") && out.contains("sasl.password"),
        "{out}"
    );
}

#[test]
fn run_over_mutual_tls_equals_replay_and_a_missing_or_foreign_client_cert_fails_clearly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("mtls");
    let certs = make_certs(&dir.join("certs"));
    let plain_port = free_port();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = TlsProxy::start_mutual(listener, format!("127.0.0.1:{plain_port}"), &certs);
    let tansu = Tansu::start_behind(plain_port, &proxy.addr);
    let ca = certs.ca.display().to_string();
    let (cert, key) = (
        certs.client_cert.display().to_string(),
        certs.client_key.display().to_string(),
    );
    let mtls = [
        ("security.protocol", "SSL"),
        ("ssl.ca.location", ca.as_str()),
        ("ssl.certificate.location", cert.as_str()),
        ("ssl.key.location", key.as_str()),
    ];
    set_client_settings(&tansu.brokers, &mtls);
    let (input, want) = produce_workload(&dir, &tansu.brokers);

    let extra = format!("{TIME}{}", librdkafka(&mtls));
    let config = run_config(&dir, &input, &tansu.brokers, "mtls", &extra);
    run_equals_replay("mutual TLS", &config, &[], &tansu.brokers, &want);

    // No client certificate, or one another CA signed: the broker refuses
    // the handshake, and the error says so and names the settings to fix, at
    // once. This proxy names its CA in the certificate request, as Kafka
    // brokers do, so OpenSSL does not send the stranger's certificate at all:
    // the broker sees none. A second proxy in front of the same broker names
    // no CA: the stranger's certificate is sent and refused (`unknown ca`).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unhinted =
        TlsProxy::start_mutual_unhinted(listener, format!("127.0.0.1:{plain_port}"), &certs);
    let (stranger_cert, stranger_key) = (
        certs.stranger_cert.display().to_string(),
        certs.stranger_key.display().to_string(),
    );
    let stranger = vec![
        mtls[0],
        mtls[1],
        ("ssl.certificate.location", stranger_cert.as_str()),
        ("ssl.key.location", stranger_key.as_str()),
    ];
    let none_accepted = "the broker requires a client certificate (mutual TLS) and got none it accepts: set ssl.certificate.location and ssl.key.location";
    let cases = [
        (
            "no-client-cert",
            &proxy.addr,
            "alert certificate required",
            none_accepted,
            mtls[..2].to_vec(),
        ),
        (
            "stranger-cert",
            &proxy.addr,
            "alert certificate required",
            none_accepted,
            stranger.clone(),
        ),
        (
            "stranger-cert-unhinted",
            &unhinted.addr,
            "alert unknown ca",
            "the broker refused the client certificate: use one signed by a CA the broker trusts",
            stranger,
        ),
    ];
    for (case, brokers, alert, hint, settings) in cases {
        let extra = format!("{TIME}{}", librdkafka(&settings));
        let config = run_config(&dir, &input, brokers, case, &extra);
        run_fails_fast(
            case,
            &config,
            &[],
            &["cannot connect to Kafka", alert, hint],
        );
    }
}

#[test]
fn run_over_sasl_ssl_equals_replay_and_a_wrong_password_fails_clearly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("sasl-ssl");
    let certs = make_certs(&dir.join("certs"));
    let plain_port = free_port();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = TlsProxy::start(listener, format!("127.0.0.1:{plain_port}"), &certs);
    let tansu = Tansu::start_sasl_behind(
        &dir.join("broker"),
        &[("causeway", PASSWORD, "scram512")],
        plain_port,
        &proxy.addr,
    );
    let ca = certs.ca.display().to_string();
    let sasl_ssl = [
        ("security.protocol", "SASL_SSL"),
        ("ssl.ca.location", ca.as_str()),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", "causeway"),
    ];
    let mut harness = sasl_ssl.to_vec();
    harness.push(("sasl.password", PASSWORD));
    set_client_settings(&tansu.brokers, &harness);
    let (input, want) = produce_workload(&dir, &tansu.brokers);

    // The password comes from a file this time (a mounted secret).
    let secret = dir.join("kafka-password");
    std::fs::write(&secret, format!("{PASSWORD}\n")).unwrap();
    let extra = format!(
        "{TIME}{}\n[kafka.librdkafka_from_file]\n\"sasl.password\" = \"{}\"\n",
        librdkafka(&sasl_ssl),
        secret.display()
    );
    let config = run_config(&dir, &input, &tansu.brokers, "sasl-ssl", &extra);
    let out = run_equals_replay("SASL_SSL", &config, &[], &tansu.brokers, &want);
    assert!(!out.contains(PASSWORD), "the password was printed:\n{out}");

    // A wrong password in the file: TLS succeeds, authentication fails, and
    // the run stops at once saying so.
    std::fs::write(&secret, "not-the-password-5d1\n").unwrap();
    let out = run_fails_fast(
        "SASL_SSL, wrong password",
        &config,
        &[],
        &[
            "SASL authentication error",
            "check sasl.mechanisms, sasl.username and the password",
        ],
    );
    assert!(!out.contains("not-the-password-5d1"), "{out}");
    assert!(!out.contains(PASSWORD), "{out}");
}
