//! Alertmanager API v2: `POST /api/v2/alerts` with the alert's labels and its
//! evidence as annotations. Firing alerts are re-sent every `resend_interval`
//! with `endsAt` four intervals ahead, as Prometheus does, so Alertmanager keeps
//! them active while Causeway is up; a resolved alert is sent with its `ends_at`.

use std::collections::BTreeMap;
use std::time::Duration;

use causeway_schemas::records::AlertRecord;
use causeway_schemas::time::format_rfc3339;
use serde_json::{json, Value};

use super::{annotations, Channel, Request};

/// The Alertmanager channel.
pub struct Alertmanager {
    /// `<dispatch.alertmanager_url>/api/v2/alerts`.
    pub url: String,
    /// `dispatch.resend_interval`.
    pub resend: Duration,
}

impl Channel for Alertmanager {
    fn name(&self) -> &'static str {
        "alertmanager"
    }

    fn request(&self, a: &AlertRecord, now_s: u64) -> Request {
        Request::post(
            &self.url,
            json!([alertmanager_alert(a, now_s, self.resend)]),
        )
    }

    fn resend(&self, firing: &BTreeMap<String, AlertRecord>, now_s: u64) -> Option<Request> {
        if firing.is_empty() {
            return None;
        }
        let body = firing
            .values()
            .map(|a| alertmanager_alert(a, now_s, self.resend))
            .collect();
        Some(Request::post(&self.url, Value::Array(body)))
    }

    fn resends_firing(&self) -> bool {
        true
    }
}

/// Alertmanager API v2 alert: labels (empty values left out, as Alertmanager
/// drops them) and the evidence as annotations.
pub fn alertmanager_alert(a: &AlertRecord, now_s: u64, resend: Duration) -> Value {
    let labels: BTreeMap<&str, &str> = a
        .labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let ends_at = match &a.ends_at {
        Some(e) => e.clone(),
        None => format_rfc3339(now_s + 4 * resend.as_secs().max(1)),
    };
    json!({
        "labels": labels,
        "annotations": annotations(a),
        "startsAt": a.starts_at,
        "endsAt": ends_at,
        "generatorURL": a.runbook_url.clone().unwrap_or_default(),
    })
}
