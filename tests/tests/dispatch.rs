//! `causeway dispatch` against a real Alertmanager (Debian's
//! `prometheus-alertmanager`) and a loopback receiver standing in for PagerDuty
//! and a webhook, fed with the scenario's real alert records on a real broker
//! (tansu). Alertmanager is down at first: PagerDuty and the webhook are paged
//! anyway, the Alertmanager channel retries, is stopped mid-retry, and after a
//! restart delivers everything; nothing lost and nothing paged twice.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use causeway_schemas::records::AlertRecord;
use causeway_tests::kafka::{
    causeway_binary, create_topic, free_port, produce_alerts, read_topic, Tansu,
};
use causeway_tests::process::{
    alertmanager_alerts, http_get, start_alertmanager, terminate, wait_exit, wait_for, Reaper,
    Receiver,
};
use causeway_tests::scenario::{prepare, replay_to};

const PD_KEY: &str = "R0UTINGKEY0123456789abcdefTEST01";
const HOOK_TOKEN: &str = "hook-secret-token-42";

fn dispatcher(config: &Path, log: &Path) -> Child {
    Command::new(causeway_binary())
        .args(["dispatch", "--config"])
        .arg(config)
        .env("CAUSEWAY_TEST_PD_KEY", PD_KEY)
        .env("CAUSEWAY_TEST_HOOK_TOKEN", HOOK_TOKEN)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn alerts_reach_alertmanager_pagerduty_and_a_webhook() {
    let (_, input, config) = prepare("dispatch", "");
    let dir = input.parent().unwrap().to_path_buf();
    let alerts = replay_to(&input, &config, &dir.join("out"), 1);
    let firing: Vec<&AlertRecord> = alerts.iter().filter(|a| a.status == "firing").collect();
    let resolved: Vec<&AlertRecord> = alerts.iter().filter(|a| a.status == "resolved").collect();
    assert!(firing.len() >= 4 && resolved.len() >= 2, "{alerts:#?}");

    let tansu = Tansu::start();
    create_topic(&tansu.brokers, "causeway_alerts", 1);
    produce_alerts(&tansu.brokers, &firing);
    let receiver = Receiver::start(1);
    let am_port = free_port();
    let metrics = format!("127.0.0.1:{}", free_port());
    let am = format!("127.0.0.1:{am_port}");
    let cfg = dir.join("dispatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kafka]\nbrokers = \"{}\"\n\n[dispatch]\nalertmanager_url = \"http://{am}\"\n\
             pagerduty_url = \"http://{rx}/v2/enqueue\"\npagerduty_routing_key_env = \"CAUSEWAY_TEST_PD_KEY\"\n\
             webhook_url = \"http://{rx}/hook\"\nwebhook_token_env = \"CAUSEWAY_TEST_HOOK_TOKEN\"\n\
             resend_interval = \"1s\"\ninitial_backoff = \"200ms\"\nmax_backoff = \"1s\"\n\
             metrics_bind = \"{metrics}\"\n",
            tansu.brokers,
            rx = receiver.addr
        ),
    )
    .unwrap();

    // Alertmanager is down: its channel retries, while PagerDuty and the webhook,
    // each with its own consumer group, are paged meanwhile. Stopped, the
    // Alertmanager channel has committed nothing.
    let log1 = dir.join("dispatch-1.log");
    let mut d1 = Reaper(dispatcher(&cfg, &log1));
    wait_for(
        "pages while Alertmanager is down",
        Duration::from_secs(60),
        || {
            let log = std::fs::read_to_string(&log1).unwrap_or_default();
            let paged = receiver.to("/v2/enqueue").len() == firing.len()
                && receiver.to("/hook").len() == firing.len();
            (paged && log.contains("alertmanager failed")).then_some(())
        },
    );
    assert!(terminate(&mut d1.0, Duration::from_secs(30)).success());

    // Alertmanager comes up; a restarted dispatcher delivers everything.
    let _am = start_alertmanager(&dir, "am-data", am_port);
    wait_for("alertmanager", Duration::from_secs(30), || {
        (!http_get(&am, "/api/v2/status").is_empty()).then_some(())
    });
    let log2 = dir.join("dispatch-2.log");
    let mut d2 = Reaper(dispatcher(&cfg, &log2));
    let shown = wait_for(
        "the firing alerts in Alertmanager",
        Duration::from_secs(60),
        || {
            let shown = alertmanager_alerts(&am);
            (shown.len() == firing.len()).then_some(shown)
        },
    );
    for a in &firing {
        let got = shown
            .iter()
            .find(|x| {
                x["labels"]["service"] == a.label("service")
                    && x["labels"]["severity"] == a.label("severity")
            })
            .unwrap_or_else(|| panic!("{} not in Alertmanager: {shown:#?}", a.dedup_key));
        for l in ["alertname", "slo", "service", "severity"] {
            assert_eq!(got["labels"][l], a.label(l), "label {l}");
        }
        let ann = &got["annotations"];
        assert_eq!(ann["exemplar_trace_ids"], a.exemplar_trace_ids.join(","));
        assert_eq!(ann["culprit"], a.culprit.as_str());
        assert_eq!(ann["summary"], a.summary.as_str());
        assert_eq!(ann["runbook_url"], a.runbook_url.clone().unwrap().as_str());
        if a.label("severity") == "page" {
            let changes = ann["suspected_changes"].as_str().unwrap();
            assert!(
                changes.contains("checkout deployed 1.5.0")
                    && changes.contains("alice@example.com"),
                "{changes}"
            );
        }
        assert_eq!(got["status"]["state"], "active");
    }

    // Recovery: the resolved records end the pages; the tickets keep firing:
    // each send says endsAt = now + 4 s, so they stay active only if re-sent.
    produce_alerts(&tansu.brokers, &resolved);
    let left = wait_for("the pages to resolve", Duration::from_secs(60), || {
        let left = alertmanager_alerts(&am);
        (left.len() == firing.len() - resolved.len()).then_some(left)
    });
    assert!(
        left.iter().all(|x| x["labels"]["severity"] == "ticket"),
        "{left:#?}"
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        alertmanager_alerts(&am).len(),
        left.len(),
        "firing tickets stay active"
    );

    // PagerDuty: one trigger per firing record, one resolve per resolved record,
    // after one 503 that was retried.
    let pd = wait_for("PagerDuty events", Duration::from_secs(30), || {
        let pd = receiver.to("/v2/enqueue");
        (pd.len() == alerts.len()).then_some(pd)
    });
    assert_eq!(receiver.failed.load(std::sync::atomic::Ordering::SeqCst), 1);
    for a in &alerts {
        let action = if a.status == "firing" {
            "trigger"
        } else {
            "resolve"
        };
        let evs: Vec<_> = pd
            .iter()
            .filter(|r| {
                r.body["dedup_key"] == a.dedup_key.as_str() && r.body["event_action"] == action
            })
            .collect();
        assert_eq!(evs.len(), 1, "{action} {}", a.dedup_key);
        let b = &evs[0].body;
        assert_eq!(b["routing_key"], PD_KEY);
        if action == "trigger" {
            let p = &b["payload"];
            let sev = if a.label("severity") == "page" {
                "critical"
            } else {
                "warning"
            };
            assert_eq!(p["severity"], sev);
            assert_eq!(p["summary"], a.summary.as_str());
            assert_eq!(p["source"], a.label("service"));
            assert_eq!(p["timestamp"], a.starts_at.as_str());
            assert_eq!(p["component"], a.culprit.as_str());
            assert_eq!(p["group"], a.group_key.as_str());
            let details = &p["custom_details"];
            assert_eq!(
                details["exemplar_trace_ids"],
                serde_json::json!(a.exemplar_trace_ids)
            );
            assert_eq!(
                details["suspected_changes"],
                serde_json::to_value(&a.suspected_changes).unwrap()
            );
            assert_eq!(
                b["links"][0]["href"],
                a.runbook_url.clone().unwrap().as_str()
            );
        }
    }
    // Webhook: Alertmanager's webhook shape, with the bearer token.
    let hook = receiver.to("/hook");
    assert_eq!(hook.len(), alerts.len());
    for (r, a) in hook.iter().zip(&alerts) {
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == &format!("Bearer {HOOK_TOKEN}")));
        let b = &r.body;
        assert_eq!(b["version"], "4");
        assert_eq!(b["status"], a.status.as_str());
        assert_eq!(b["groupKey"], a.group_key.as_str());
        assert_eq!(b["alerts"][0]["status"], a.status.as_str());
        assert_eq!(b["alerts"][0]["labels"]["slo"], a.label("slo"));
        assert_eq!(b["alerts"][0]["startsAt"], a.starts_at.as_str());
        assert_eq!(b["alerts"][0]["fingerprint"], a.dedup_key.as_str());
        assert_eq!(
            b["alerts"][0]["annotations"]["exemplar_trace_ids"],
            a.exemplar_trace_ids.join(",")
        );
        if let Some(end) = &a.ends_at {
            assert_eq!(b["alerts"][0]["endsAt"], end.as_str());
        }
    }
    // The dispatcher's own metrics agree.
    let text = http_get(&metrics, "/metrics");
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
    };
    // This second dispatcher sent PagerDuty and the webhook only the resolutions
    // (the first one committed the triggers) and Alertmanager everything.
    let (n, r) = (alerts.len() as f64, resolved.len() as f64);
    let attempts = |ch: &str| {
        value(&format!(
            "causeway_dispatch_attempts_total{{channel=\"{ch}\",outcome=\"ok\"}}"
        ))
    };
    let delivered = |ch: &str| {
        value(&format!(
            "causeway_dispatch_records_total{{channel=\"{ch}\",outcome=\"delivered\"}}"
        ))
    };
    assert_eq!(attempts("pagerduty"), r);
    assert_eq!(attempts("webhook"), r);
    assert_eq!(delivered("pagerduty"), r);
    assert_eq!(delivered("alertmanager"), n);
    assert_eq!(
        value("causeway_dispatch_firing_alerts{channel=\"alertmanager\"}"),
        (firing.len() - resolved.len()) as f64
    );
    assert!(terminate(&mut d2.0, Duration::from_secs(30)).success());
    // CAUSEWAY_EXAMPLES=DIR keeps one real payload per channel (for docs).
    if let Some(out) = std::env::var_os("CAUSEWAY_EXAMPLES") {
        let out = std::path::PathBuf::from(out);
        std::fs::create_dir_all(&out).unwrap();
        let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap();
        std::fs::write(
            out.join("alertmanager.json"),
            pretty(&serde_json::json!(shown)),
        )
        .unwrap();
        std::fs::write(out.join("pagerduty.json"), pretty(&pd[0].body)).unwrap();
        std::fs::write(out.join("webhook.json"), pretty(&hook[0].body)).unwrap();
    }

    // A third start finds every offset committed: nothing is paged again.
    let log3 = dir.join("dispatch-3.log");
    let mut d3 = dispatcher(&cfg, &log3);
    std::thread::sleep(Duration::from_secs(4));
    assert!(terminate(&mut d3, Duration::from_secs(30)).success());
    let _ = wait_exit(&mut d3, Duration::from_secs(1));
    assert_eq!(
        receiver.to("/v2/enqueue").len(),
        alerts.len(),
        "paged twice"
    );
    // Secrets never reach the logs.
    for log in [&log1, &log2, &log3] {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(
            !text.contains(PD_KEY) && !text.contains(HOOK_TOKEN),
            "{text}"
        );
    }
    // The topic itself is untouched by the dispatcher.
    assert_eq!(
        read_topic(&tansu.brokers, "causeway_alerts").len(),
        alerts.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}
