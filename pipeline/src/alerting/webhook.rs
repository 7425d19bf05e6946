//! Webhook: the Alertmanager webhook JSON (version 4), one alert per request,
//! with an optional bearer token.

use std::collections::BTreeMap;

use causeway_schemas::records::AlertRecord;
use serde_json::{json, Value};

use super::{annotations, Channel, Request, Secret};

/// The webhook channel.
pub struct Webhook {
    /// `dispatch.webhook_url`.
    pub url: String,
    /// Bearer token (`dispatch.webhook_token_env`).
    pub token: Option<Secret>,
}

impl Channel for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn request(&self, a: &AlertRecord, _now_s: u64) -> Request {
        Request {
            bearer: self.token.clone(),
            ..Request::post(&self.url, webhook_payload(a))
        }
    }
}

/// The Alertmanager webhook payload (version 4) for one alert.
fn webhook_payload(a: &AlertRecord) -> Value {
    let labels: BTreeMap<&str, &str> = a
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let annotations = annotations(a);
    json!({
        "version": "4",
        "groupKey": a.group_key,
        "truncatedAlerts": 0,
        "status": a.status,
        "receiver": "causeway",
        "groupLabels": { "alertname": a.label("alertname") },
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": a.status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": a.starts_at,
            "endsAt": a.ends_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "generatorURL": a.runbook_url.clone().unwrap_or_default(),
            "fingerprint": a.dedup_key,
        }],
    })
}
