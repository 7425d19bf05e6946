//! The incident scenario (`causeway::scenario`) replayed, and checks of its alerts
//! shared by the replay and Kafka tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use causeway::commands::replay::{replay, ReplayOptions};
use causeway::scenario::Scenario;
use causeway_schemas::records::AlertRecord;
use causeway_schemas::time::parse_rfc3339;

use crate::reference::read_jsonl;

/// 2026-11-20T10:00:00Z: the scenario's first request.
pub const START: u64 = 1_795_168_800;

/// Writes the standard scenario and its config (with `extra` appended) under a
/// fresh directory named `name`; returns (input dir, config path).
pub fn prepare(name: &str, extra: &str) -> (Scenario, PathBuf, PathBuf) {
    let root = std::env::temp_dir().join(format!("causeway-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let scenario = Scenario::standard(START);
    let input = root.join("input");
    scenario.write(&input).unwrap();
    let config = root.join("causeway.toml");
    std::fs::write(&config, format!("{}\n{extra}", scenario.config_toml())).unwrap();
    (scenario, input, config)
}

/// Replays `input` with `config` and `workers` threads into `out`.
pub fn replay_to(input: &Path, config: &Path, out: &Path, workers: usize) -> Vec<AlertRecord> {
    replay(&ReplayOptions {
        input: input.to_path_buf(),
        out: out.to_path_buf(),
        config: Some(config.to_path_buf()),
        workers,
        progress: false,
    })
    .unwrap();
    read_jsonl(&out.join("alerts.jsonl"))
}

/// Trace ids (hex) that hold at least one `ERROR` span in the scenario's span files.
pub fn error_traces(input: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in 0..2 {
        let text = std::fs::read_to_string(input.join(format!("otlp_spans-{p}.jsonl"))).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for rs in v["resourceSpans"].as_array().unwrap() {
                for ss in rs["scopeSpans"].as_array().unwrap() {
                    for s in ss["spans"].as_array().unwrap() {
                        if s["status"]["code"] == 2 {
                            out.insert(s["traceId"].as_str().unwrap().to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

/// The one alert of `service`/`severity` with `status`.
pub fn find<'a>(
    alerts: &'a [AlertRecord],
    service: &str,
    severity: &str,
    status: &str,
) -> &'a AlertRecord {
    let found: Vec<&AlertRecord> = alerts
        .iter()
        .filter(|a| {
            a.label("service") == service && a.label("severity") == severity && a.status == status
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{status} {severity} alerts of {service}: {alerts:#?}"
    );
    found[0]
}

/// Unix seconds of an RFC 3339 timestamp.
pub fn secs(s: &str) -> u64 {
    parse_rfc3339(s).unwrap() / 1_000_000_000
}

/// Checks SPEC §5 on the scenario's alerts: the checkout page fires within the
/// short window + grace of the bad deploy, names the deploy and its actor, its
/// exemplars are error traces, the gateway's page blames checkout, both resolve
/// after the rollback, and every dedup key has one firing and at most one
/// resolved record.
pub fn check_alerts(s: &Scenario, input: &Path, alerts: &[AlertRecord]) {
    let (short, grace) = (300, 60);
    let errors = error_traces(input);
    let co = find(alerts, "checkout", "page", "firing");
    let fired = secs(&co.starts_at);
    assert!(
        fired > s.bad_deploy_at && fired <= s.bad_deploy_at + short + grace,
        "checkout page fired at {} for a deploy at {}",
        co.starts_at,
        s.bad_deploy_at
    );
    assert!(!co.suppressed);
    assert_eq!(co.culprit, "checkout");
    let deploy = co
        .suspected_changes
        .iter()
        .find(|c| c.service == "checkout" && c.version == "1.5.0")
        .unwrap_or_else(|| panic!("the bad deploy is not suspected: {co:#?}"));
    assert_eq!(deploy.actor, "alice@example.com");
    assert_eq!(deploy.action, "deployed");
    assert_eq!(deploy.artifact, "pkg:oci/checkout@1.5.0");
    assert!(!co.exemplar_trace_ids.is_empty() && co.exemplar_trace_ids.len() <= 5);
    for t in &co.exemplar_trace_ids {
        assert!(errors.contains(t), "exemplar {t} holds no ERROR span");
    }

    // Requests enter through the gateway, which fails too: its alert blames checkout.
    let gw = find(alerts, "gateway", "page", "firing");
    assert_eq!(gw.culprit, "checkout");
    assert!(gw.suspected_changes.iter().any(|c| c.service == "checkout"
        && c.version == "1.5.0"
        && c.actor == "alice@example.com"));
    assert_eq!(gw.group_key, co.group_key);
    for t in &gw.exemplar_trace_ids {
        assert!(errors.contains(t), "exemplar {t} holds no ERROR span");
    }

    // Both pages resolve after the rollback.
    for service in ["checkout", "gateway"] {
        let r = find(alerts, service, "page", "resolved");
        let ended = secs(r.ends_at.as_deref().unwrap());
        assert!(
            ended > s.rollback_at,
            "{service} resolved at {ended}, before the rollback"
        );
        assert_eq!(
            r.starts_at,
            find(alerts, service, "page", "firing").starts_at
        );
    }
    // payments, downstream of the failing checkout, never fails and never alerts.
    assert!(alerts.iter().all(|a| a.label("service") != "payments"));
    let mut keys: Vec<(&str, &str)> = alerts
        .iter()
        .map(|a| (a.dedup_key.as_str(), a.status.as_str()))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "a dedup key repeated a state");
}
