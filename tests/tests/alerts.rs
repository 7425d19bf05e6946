//! SPEC §4–§5 end to end through `replay`: a bad deploy pages, with evidence,
//! and resolves after the rollback; a maintenance window suppresses the page;
//! the output is the same with 1 and 2 workers.

use causeway_schemas::records::SliRecord;
use causeway_tests::reference::read_jsonl;
use causeway_tests::scenario::{check_alerts, find, prepare, replay_to};

#[test]
fn a_bad_deploy_pages_with_its_evidence_and_resolves_after_rollback() {
    let (scenario, input, config) = prepare("alerts-replay", "");
    let root = input.parent().unwrap().to_path_buf();
    let alerts = replay_to(&input, &config, &root.join("out-1"), 1);
    check_alerts(&scenario, &input, &alerts);
    // Deterministic: the same alerts and burn rates with two workers.
    let two = replay_to(&input, &config, &root.join("out-2"), 2);
    assert_eq!(alerts, two);
    for f in ["slo.jsonl", "sli.jsonl"] {
        assert_eq!(
            std::fs::read_to_string(root.join("out-1").join(f)).unwrap(),
            std::fs::read_to_string(root.join("out-2").join(f)).unwrap(),
            "{f}"
        );
    }
    // M7: every alert that started firing carried exemplars.
    let sli: Vec<SliRecord> = read_jsonl(&root.join("out-1").join("sli.jsonl"));
    let m7: Vec<&SliRecord> = sli
        .iter()
        .filter(|r| r.sli == "correlated_alert_rate")
        .collect();
    let fired = alerts.iter().filter(|a| a.status == "firing").count() as u64;
    assert_eq!(m7.iter().map(|r| r.total.unwrap()).sum::<u64>(), fired);
    assert_eq!(m7.iter().map(|r| r.good.unwrap()).sum::<u64>(), fired);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_maintenance_window_suppresses_the_page() {
    let scenario = causeway::scenario::Scenario::standard(causeway_tests::scenario::START);
    let from = causeway_schemas::time::format_rfc3339(scenario.bad_deploy_at - 600);
    let to = causeway_schemas::time::format_rfc3339(scenario.bad_deploy_at + 1200);
    let extra = format!(
        "[[alerting.maintenance]]\nstart = \"{from}\"\nend = \"{to}\"\nservices = [\"checkout\", \"gateway\"]\n"
    );
    let (_, input, config) = prepare("alerts-maint", &extra);
    let root = input.parent().unwrap().to_path_buf();
    let alerts = replay_to(&input, &config, &root.join("out"), 1);
    for service in ["checkout", "gateway"] {
        assert!(find(&alerts, service, "page", "firing").suppressed);
        assert!(find(&alerts, service, "page", "resolved").suppressed);
    }
    let _ = std::fs::remove_dir_all(root);
}
