//! Valid input that Causeway does not use is skipped, not dead-lettered (SPEC §1):
//! the CDEvents 0.4.1 conformance examples, the same events at newer spec
//! versions, and a real Kubernetes audit log give no dead letter and the skip
//! counts computed here from the events themselves; malformed input still
//! dead-letters.
//!
//! Sources: `tests/golden/fixtures/input/deploys.jsonl` holds every
//! `conformance/*.json` of cdevents/spec tag v0.4.1 (Apache-2.0), one per line;
//! `audit.jsonl` is `testdata/demo.log` of liggitt/audit2rbac (Apache-2.0). See
//! `tests/golden/fixtures/SOURCES.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use causeway::commands::replay::{replay, ReplayOptions, Summary};
use causeway::ingest::Stats;
use causeway::metrics::Metrics;
use causeway::sources::Topic;
use causeway_schemas::records::DlqRecord;
use causeway_schemas::{audit, cdevents, Declined, DecodeOptions, Origin, Reason, Skip};
use causeway_tests::kafka::causeway_binary;
use causeway_tests::reference::read_jsonl;
use serde_json::{json, Value};

const SERVICE_ACTIONS: [&str; 4] = ["deployed", "upgraded", "rolledback", "removed"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/fixtures/input")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-skips-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("input")).unwrap();
    d
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_lines(path: &Path, docs: &[Value]) {
    let text: String = docs.iter().map(|d| format!("{d}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn replay_dir(dir: &Path, config: Option<PathBuf>) -> (Summary, Vec<DlqRecord>) {
    let out = dir.join("out");
    let s = replay(&ReplayOptions {
        input: dir.join("input"),
        out: out.clone(),
        config,
        workers: 1,
        progress: false,
    })
    .unwrap();
    let dlq = read_jsonl(&out.join("dlq.jsonl"));
    (s, dlq)
}

/// Whether a conformance example is one of the four service events Causeway
/// reads, judged from its type string here, not by the decoder.
fn is_service_change(ev: &Value) -> bool {
    let ty = ev["context"]["type"].as_str().unwrap();
    let parts: Vec<&str> = ty.split('.').collect();
    parts[..3] == ["dev", "cdevents", "service"] && SERVICE_ACTIONS.contains(&parts[3])
}

/// The conformance examples moved to spec `version`: `context.specversion`
/// (the 0.5 field name) replaces `context.version`, and each type's own
/// version is bumped, as a newer release would.
fn at_spec(events: &[Value], version: &str) -> Vec<Value> {
    events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            let ctx = e["context"].as_object_mut().unwrap();
            ctx.remove("version");
            ctx.insert("specversion".into(), json!(version));
            let ty = ctx["type"].as_str().unwrap().replace(".0.2.0", ".0.3.0");
            ctx.insert("type".into(), json!(ty));
            e
        })
        .collect()
}

fn check_conformance(events: &[Value], spec: &str) {
    let dir = scratch(&format!("cdevents-{spec}"));
    write_lines(&dir.join("input/deploys.jsonl"), events);
    let (s, dlq) = replay_dir(&dir, None);
    let used = events.iter().filter(|e| is_service_change(e)).count() as u64;
    let unused = events.len() as u64 - used;
    assert_eq!((used, unused), (4, 12), "the v0.4.1 conformance set");
    assert!(dlq.is_empty(), "spec {spec}: dead letters {dlq:?}");
    assert_eq!(s.stats.rejected_total(), 0, "spec {spec}");
    assert_eq!(s.stats.accepted.get(&Topic::Deploys), Some(&used), "{spec}");
    let want = BTreeMap::from([((Topic::Deploys, Skip::UnusedEventType), unused)]);
    assert_eq!(s.stats.skipped, want, "spec {spec}");
    assert_eq!(s.stats.records, events.len() as u64);
}

#[test]
fn cdevents_conformance_set_is_skipped_or_used_never_dead_lettered() {
    let events = lines(&fixtures().join("deploys.jsonl"));
    assert_eq!(events.len(), 16);
    check_conformance(&events, "0.4.1");
    for spec in ["0.5.0", "0.6.0-draft", "1.0"] {
        check_conformance(&at_spec(&events, spec), spec);
    }
}

/// A newer spec decodes to exactly the event its 0.4.1 original decodes to.
#[test]
fn newer_spec_versions_decode_to_the_same_deploy_events() {
    let events = lines(&fixtures().join("deploys.jsonl"));
    let opts = DecodeOptions::default();
    let origin = Origin::default();
    let decode = |e: &Value| cdevents::decode_deploy(e.to_string().as_bytes(), origin, None, &opts);
    let mut used = 0;
    for (old, new) in events.iter().zip(at_spec(&events, "0.5.0")) {
        match (decode(old), decode(&new)) {
            (Ok(a), Ok(b)) => {
                assert!(!a.service.is_empty(), "{a:?}");
                assert_eq!(a, b);
                used += 1;
            }
            (Err(Declined::Skipped(a)), Err(Declined::Skipped(b))) => {
                assert_eq!((a, b), (Skip::UnusedEventType, Skip::UnusedEventType))
            }
            other => panic!("{old}: {other:?}"),
        }
    }
    assert_eq!(used, 4);
    // A newer event that lacks a field Causeway reads is rejected for it.
    let mut deployed = at_spec(&events, "0.5.0")
        .into_iter()
        .find(is_service_change)
        .unwrap();
    deployed["subject"].as_object_mut().unwrap().remove("id");
    match decode(&deployed) {
        Err(Declined::Rejected(r)) => assert_eq!(r.reason, Reason::MissingService),
        other => panic!("{other:?}"),
    }
}

/// The verb of each event of the real audit log, read here.
fn verbs(events: &[Value]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for e in events {
        *m.entry(e["verb"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    m
}

#[test]
fn real_kubernetes_audit_log_read_only_events_are_skipped() {
    let events = lines(&fixtures().join("audit.jsonl"));
    let v = verbs(&events);
    let read_only = v.get("get").unwrap_or(&0) + v.get("list").unwrap_or(&0);
    assert_eq!(read_only, events.len() as u64, "all reads: {v:?}");
    assert_eq!(read_only, 37);
    let dir = scratch("k8s");
    std::fs::copy(
        fixtures().join("audit.jsonl"),
        dir.join("input/audit.jsonl"),
    )
    .unwrap();
    let (s, dlq) = replay_dir(&dir, None);
    assert!(dlq.is_empty(), "{dlq:?}");
    let want = BTreeMap::from([((Topic::Audit, Skip::ReadOnly), read_only)]);
    assert_eq!(s.stats.skipped, want);
    assert_eq!(s.stats.records, read_only);
}

fn k8s(verb: &str, resource: &str, name: &str, extra: Value) -> Value {
    let mut e = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": format!("{verb}-{resource}-{name}"),
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": "alice"},
        "objectRef": {"resource": resource, "namespace": "prod", "name": name},
        "responseStatus": {"code": 200},
        "stageTimestamp": "2026-01-01T00:00:05.000000Z",
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            e.as_object_mut().unwrap().remove(k);
        } else {
            e[k] = v.clone();
        }
    }
    e
}

/// Each rule of "which Kubernetes events count", one event per outcome.
#[test]
fn kubernetes_audit_rules() {
    let annotated = json!({"annotations": {"causeway.dev/service": "payments"}});
    let cases: Vec<(Value, Result<&str, &str>)> = vec![
        (
            k8s("patch", "deployments", "checkout", json!({})),
            Ok("checkout"),
        ),
        (k8s("create", "statefulsets", "db", json!({})), Ok("db")),
        (k8s("delete", "services", "cart", json!({})), Ok("cart")),
        (
            k8s("update", "configmaps", "flags", annotated.clone()),
            Ok("payments"),
        ),
        (
            k8s("patch", "deployments", "checkout", json!({"stage": null})),
            Ok("checkout"),
        ),
        (
            k8s("get", "deployments", "checkout", json!({})),
            Err("read_only"),
        ),
        (k8s("watch", "deployments", "", json!({})), Err("read_only")),
        (
            k8s("list", "configmaps", "", annotated.clone()),
            Err("read_only"),
        ),
        (
            k8s(
                "patch",
                "deployments",
                "checkout",
                json!({"stage": "RequestReceived"}),
            ),
            Err("intermediate_stage"),
        ),
        (
            k8s(
                "patch",
                "deployments",
                "checkout",
                json!({"stage": "Panic"}),
            ),
            Err("failed_request"),
        ),
        (
            k8s(
                "patch",
                "deployments",
                "checkout",
                json!({"responseStatus": {"code": 403}}),
            ),
            Err("failed_request"),
        ),
        (
            k8s(
                "update",
                "deployments",
                "checkout",
                json!({"objectRef": {"resource": "deployments", "subresource": "status", "name": "checkout"}}),
            ),
            Err("status_update"),
        ),
        (
            k8s("create", "configmaps", "flags", json!({})),
            Err("no_service"),
        ),
        (
            k8s("create", "deployments", "", json!({})),
            Err("no_service"),
        ),
        (
            k8s(
                "create",
                "pods",
                "web-1",
                json!({"objectRef": {"resource": "pods", "subresource": "exec", "name": "web-1"}}),
            ),
            Err("no_service"),
        ),
        // Bad input stays bad: no usable timestamp.
        (
            k8s(
                "patch",
                "deployments",
                "checkout",
                json!({"stageTimestamp": null}),
            ),
            Err("missing_timestamp"),
        ),
        (
            k8s(
                "get",
                "deployments",
                "checkout",
                json!({"stageTimestamp": "yesterday"}),
            ),
            Err("invalid_timestamp"),
        ),
    ];
    let opts = DecodeOptions::default();
    for (doc, want) in &cases {
        let got = audit::decode_audit(doc.to_string().as_bytes(), Origin::default(), None, &opts);
        let got = match got {
            Ok(a) => Ok(a.resource.service.clone()),
            Err(Declined::Skipped(s)) => Err(s.as_str().to_string()),
            Err(Declined::Rejected(r)) => Err(r.reason.as_str().to_string()),
        };
        let want = want.map(str::to_string).map_err(str::to_string);
        assert_eq!(got, want, "{doc}");
    }
}

/// Malformed CDEvents and audit JSON still go to the DLQ, with the valid
/// unused events beside them skipped.
#[test]
fn malformed_input_still_dead_letters() {
    let events = lines(&fixtures().join("deploys.jsonl"));
    let service = events.iter().find(|e| is_service_change(e)).unwrap();
    let mut no_type = service.clone();
    no_type["context"].as_object_mut().unwrap().remove("type");
    let mut not_cdevent = service.clone();
    not_cdevent["context"]["type"] = json!("com.example.deployed");
    let mut old = service.clone();
    old["context"]["version"] = json!("0.2.0");
    let mut no_ts = events
        .iter()
        .find(|e| !is_service_change(e))
        .unwrap()
        .clone();
    no_ts["context"]
        .as_object_mut()
        .unwrap()
        .remove("timestamp");
    let dir = scratch("malformed");
    let deploys = [
        "{\"context\": ".to_string(),
        "[1, 2]".to_string(),
        no_type.to_string(),
        not_cdevent.to_string(),
        old.to_string(),
        no_ts.to_string(),
        events[0].to_string(),
    ];
    std::fs::write(dir.join("input/deploys.jsonl"), deploys.join("\n") + "\n").unwrap();
    let audits = [
        "not json".to_string(),
        json!({"kind": "Unknown"}).to_string(),
        k8s("patch", "deployments", "checkout", json!({"stageTimestamp": null})).to_string(),
        json!({"kind": "causeway.audit/v1", "ts": "2026-01-01T00:00:00Z", "service": "x", "action": "deploy"}).to_string(),
        k8s("get", "deployments", "checkout", json!({})).to_string(),
    ];
    std::fs::write(dir.join("input/audit.jsonl"), audits.join("\n") + "\n").unwrap();
    let (s, dlq) = replay_dir(&dir, None);
    let got: Vec<(&str, u64, &str)> = dlq
        .iter()
        .map(|d| (d.source.as_str(), d.offset, d.reason.as_str()))
        .collect();
    let want = vec![
        ("audit.jsonl", 1, "malformed_json"),
        ("audit.jsonl", 2, "unsupported_event_type"),
        ("audit.jsonl", 3, "missing_timestamp"),
        ("audit.jsonl", 4, "missing_field"),
        ("deploys.jsonl", 1, "malformed_json"),
        ("deploys.jsonl", 2, "malformed_json"),
        ("deploys.jsonl", 3, "missing_field"),
        ("deploys.jsonl", 4, "unsupported_event_type"),
        ("deploys.jsonl", 5, "unsupported_spec_version"),
        ("deploys.jsonl", 6, "missing_timestamp"),
    ];
    assert_eq!(got, want);
    let skips = BTreeMap::from([
        ((Topic::Deploys, Skip::UnusedEventType), 1),
        ((Topic::Audit, Skip::ReadOnly), 1),
    ]);
    assert_eq!(s.stats.skipped, skips);
    assert_eq!(s.stats.records, 12);
    assert_eq!(s.stats.rejected_total(), 10);
}

/// `causeway_input_skipped_total{topic,reason}` counts what ingest skipped,
/// and `causeway_input_events_total` includes it.
#[test]
fn skipped_counter() {
    let m = Metrics::new(&causeway::config::MetricsConfig::default());
    let mut before = Stats::default();
    let mut now = Stats::default();
    now.skipped.insert((Topic::Audit, Skip::ReadOnly), 30);
    now.skipped
        .insert((Topic::Deploys, Skip::UnusedEventType), 12);
    m.observe_ingest(&before, &now);
    before = now.clone();
    now.skipped.insert((Topic::Audit, Skip::ReadOnly), 37);
    m.observe_ingest(&before, &now);
    let text = String::from_utf8(m.render()).unwrap();
    for line in [
        "causeway_input_skipped_total{reason=\"read_only\",topic=\"audit\"} 37",
        "causeway_input_skipped_total{reason=\"unused_event_type\",topic=\"deploys\"} 12",
        "causeway_input_events_total{topic=\"audit\"} 37",
        "causeway_input_events_total{topic=\"deploys\"} 12",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
    }
    assert!(!text.contains("causeway_input_rejected_total{"), "{text}");
}

/// The replay summary a new user reads shows the skips by topic and reason
/// and no rejection.
#[test]
fn replay_summary_shows_skips() {
    let dir = scratch("summary");
    let out = std::process::Command::new(causeway_binary())
        .args(["replay", "--quiet", "--input"])
        .arg(fixtures())
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("records read     55 = accepted 6 + rejected 0 + skipped 49"),
        "{err}"
    );
    assert!(err.contains("rejected         none"), "{err}");
    assert!(
        err.contains("skipped          deploys unused_event_type 12, audit read_only 37"),
        "{err}"
    );
}
