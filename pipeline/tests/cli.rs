//! The `causeway replay` command's error paths: clear messages, non-zero exit.

use std::process::Command;

fn replay(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .arg("replay")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn missing_input_directory() {
    let (code, err) = replay(&[
        "--input",
        "/nonexistent/causeway",
        "--out",
        "/tmp/x",
        "--quiet",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read input directory /nonexistent/causeway"),
        "{err}"
    );
}

#[test]
fn unknown_file_name() {
    let d = scratch("unknown");
    std::fs::write(d.join("spans.jsonl"), "{}\n").unwrap();
    let (code, err) = replay(&[
        "--input",
        d.to_str().unwrap(),
        "--out",
        d.join("out").to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("spans.jsonl") && err.contains("otlp_spans*"),
        "{err}"
    );
}

#[test]
fn bad_config_names_the_key() {
    let d = scratch("config");
    std::fs::write(d.join("otlp_spans.jsonl"), "{}\n").unwrap();
    std::fs::write(
        d.join("c.toml"),
        "[time]\ntrace_horizon = \"ten minutes\"\n",
    )
    .unwrap();
    let (code, err) = replay(&[
        "--input",
        d.to_str().unwrap(),
        "--out",
        d.join("out").to_str().unwrap(),
        "--config",
        d.join("c.toml").to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("time.trace_horizon"), "{err}");
}

#[test]
fn bad_records_are_not_fatal() {
    let d = scratch("records");
    std::fs::write(
        d.join("otlp_spans.jsonl"),
        "not json\n{\"resourceSpans\":[]}\n",
    )
    .unwrap();
    let (code, err) = replay(&[
        "--input",
        d.to_str().unwrap(),
        "--out",
        d.join("out").to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("records read     1 = accepted 0 + rejected 1"),
        "{err}"
    );
    let dlq = std::fs::read_to_string(d.join("out/dlq.jsonl")).unwrap();
    assert!(dlq.contains("\"reason\":\"malformed_json\""), "{dlq}");
}

#[test]
fn run_with_a_bad_config_names_the_key_before_connecting() {
    let d = scratch("run-config");
    let cfg = d.join("causeway.toml");
    std::fs::write(&cfg, "[kafka.encodings]\nspans = \"json\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("kafka.encodings.spans") && err.contains("otlp_proto"),
        "{err}"
    );
}

#[test]
fn dispatch_without_a_channel_or_secret_says_what_to_set() {
    let d = scratch("dispatch");
    let run = |config: &str| {
        let path = d.join("c.toml");
        std::fs::write(&path, config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
            .args(["dispatch", "--config"])
            .arg(&path)
            .env_remove("CAUSEWAY_CLI_TEST_UNSET")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run("[dispatch]\nmetrics_bind = \"\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("dispatch.alertmanager_url"), "{err}");
    let (code, err) = run(
        "[dispatch]\nmetrics_bind = \"\"\npagerduty_routing_key_env = \"CAUSEWAY_CLI_TEST_UNSET\"\n",
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("CAUSEWAY_CLI_TEST_UNSET") && err.contains("is not set"),
        "{err}"
    );
}
