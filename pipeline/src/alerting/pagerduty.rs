//! PagerDuty Events API v2: `trigger` / `resolve` with the alert's `dedup_key`;
//! `critical` for page, `warning` for ticket.

use causeway_schemas::records::AlertRecord;
use serde_json::{json, Value};

use super::{Channel, Request, Secret};

/// The PagerDuty channel.
pub struct PagerDuty {
    /// Events API endpoint (`dispatch.pagerduty_url`).
    pub url: String,
    /// The integration's routing key (from the environment or a file).
    pub routing_key: Secret,
}

impl Channel for PagerDuty {
    fn name(&self) -> &'static str {
        "pagerduty"
    }

    fn request(&self, a: &AlertRecord, _now_s: u64) -> Request {
        Request {
            body_secret: Some(self.routing_key.clone()),
            ..Request::post(&self.url, pagerduty_event(a, self.routing_key.expose()))
        }
    }
}

/// PagerDuty Events API v2 event.
fn pagerduty_event(a: &AlertRecord, routing_key: &str) -> Value {
    if a.status == "resolved" {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": a.dedup_key,
        });
    }
    let mut summary = a.summary.clone();
    if summary.len() > 1024 {
        let mut cut = 1021;
        while !summary.is_char_boundary(cut) {
            cut -= 1;
        }
        summary.truncate(cut);
        summary.push_str("...");
    }
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": a.dedup_key,
        "payload": {
            "summary": summary,
            "source": a.label("service"),
            "severity": if a.label("severity") == "page" { "critical" } else { "warning" },
            "timestamp": a.starts_at,
            "component": a.culprit,
            "group": a.group_key,
            "class": a.sli,
            "custom_details": {
                "slo": a.label("slo"),
                "environment": a.label("environment"),
                "objective": a.objective,
                "burn_rates": a.burn_rates,
                "error_budget_remaining": a.error_budget_remaining,
                "exemplar_trace_ids": a.exemplar_trace_ids,
                "suspected_changes": a.suspected_changes,
                "culprit": a.culprit,
            },
        },
    });
    if let Some(r) = &a.runbook_url {
        event["links"] = json!([{ "href": r, "text": "Runbook" }]);
    }
    event
}
