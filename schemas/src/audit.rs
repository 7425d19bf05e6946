//! Audit records: Kubernetes `audit.k8s.io/v1` Events and Causeway's own record.
//!
//! **Causeway audit record** (`kind: causeway.audit/v1`), one JSON object:
//!
//! ```json
//! {"kind":"causeway.audit/v1","ts":"2026-11-23T10:00:00Z","service":"checkout",
//!  "environment":"prod","version":"1.4.2","actor":"alice@example.com",
//!  "action":"deploy","trace_id":"<32 hex>","traceparent":"00-…-…-01"}
//! ```
//!
//! `ts` (RFC 3339 or Unix nanoseconds), `service`, `actor` and `action` are
//! required; `environment`, `version`, `trace_id` and `traceparent` are optional.
//!
//! **Kubernetes Events**: time = `stageTimestamp`, falling back to
//! `requestReceivedTimestamp` and then `timestamp` (older audit logs); actor =
//! `user.username`; action = `verb`. The service is the annotation
//! `causeway.dev/service`, or `objectRef.name` when the object is a workload
//! (deployments, statefulsets, daemonsets, replicasets, services, jobs, cronjobs,
//! rollouts); an event with neither names no service and is rejected
//! (`missing_service`). Environment: annotation `causeway.dev/environment`, else
//! `objectRef.namespace`. Trace context: the `traceparent` annotation.

use std::sync::Arc;

use serde_json::Value;

use crate::ids;
use crate::model::{AuditRecord, Origin, Resource};
use crate::reject::{Reason, Rejection};
use crate::time::parse_rfc3339;
use crate::DecodeOptions;

const WORKLOADS: [&str; 8] = [
    "deployments",
    "statefulsets",
    "daemonsets",
    "replicasets",
    "services",
    "jobs",
    "cronjobs",
    "rollouts",
];

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))?
        .as_str()
        .filter(|x| !x.is_empty())
}

/// Decodes one `audit` message. `traceparent` is the Kafka record header, if any.
pub fn decode_audit(
    bytes: &[u8],
    origin: Origin,
    traceparent: Option<&str>,
    opts: &DecodeOptions,
) -> Result<AuditRecord, Rejection> {
    let bad = |reason, detail: &str| Rejection::message(reason, detail);
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| bad(Reason::MalformedJson, &e.to_string()))?;
    let kind = s(&doc, &["kind"]).unwrap_or("");
    let api = s(&doc, &["apiVersion"]).unwrap_or("");
    let header_trace = traceparent.and_then(ids::parse_traceparent).map(|(t, _)| t);
    let (time, resource, actor, action, trace) = if kind == "Event"
        && api.starts_with("audit.k8s.io/")
    {
        let ts = s(&doc, &["stageTimestamp"])
            .or_else(|| s(&doc, &["requestReceivedTimestamp"]))
            .or_else(|| s(&doc, &["timestamp"]))
            .ok_or_else(|| bad(Reason::MissingTimestamp, "stageTimestamp is missing"))?;
        let time = parse_rfc3339(ts)
            .ok_or_else(|| bad(Reason::InvalidTimestamp, "stageTimestamp is not RFC 3339"))?;
        let workload = s(&doc, &["objectRef", "resource"]).is_some_and(|r| WORKLOADS.contains(&r));
        let service = s(&doc, &["annotations", "causeway.dev/service"])
            .or_else(|| workload.then(|| s(&doc, &["objectRef", "name"])).flatten())
            .ok_or_else(|| {
                bad(
                    Reason::MissingService,
                    "no causeway.dev/service annotation and the object is not a named workload",
                )
            })?;
        let resource = Resource {
            service: service.to_string(),
            environment: s(&doc, &["annotations", "causeway.dev/environment"])
                .or_else(|| s(&doc, &["objectRef", "namespace"]))
                .unwrap_or("")
                .to_string(),
            version: s(&doc, &["annotations", "causeway.dev/version"])
                .unwrap_or("")
                .to_string(),
        };
        let actor = s(&doc, &["user", "username"]).unwrap_or("").to_string();
        let action = s(&doc, &["verb"]).unwrap_or("").to_string();
        let trace = header_trace
            .or_else(|| {
                s(&doc, &["annotations", "traceparent"])
                    .and_then(ids::parse_traceparent)
                    .map(|(t, _)| t)
            })
            .unwrap_or(0);
        (time, resource, actor, action, trace)
    } else if kind == "causeway.audit/v1" {
        let time = match doc.get("ts") {
            Some(Value::String(t)) => parse_rfc3339(t)
                .ok_or_else(|| bad(Reason::InvalidTimestamp, "ts is not RFC 3339"))?,
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
                bad(
                    Reason::InvalidTimestamp,
                    "ts is not a Unix nanosecond count",
                )
            })?,
            _ => return Err(bad(Reason::MissingTimestamp, "ts is missing")),
        };
        let service = s(&doc, &["service"])
            .ok_or_else(|| bad(Reason::MissingService, "service is missing"))?;
        let actor =
            s(&doc, &["actor"]).ok_or_else(|| bad(Reason::MissingField, "actor is missing"))?;
        let action =
            s(&doc, &["action"]).ok_or_else(|| bad(Reason::MissingField, "action is missing"))?;
        let own_trace = match s(&doc, &["trace_id"]) {
            Some(h) => Some(
                ids::trace_id_from_hex(h)
                    .map_err(|e| bad(Reason::InvalidTraceId, &format!("trace_id: {e}")))?,
            ),
            None => None,
        };
        let trace = header_trace
            .or(own_trace)
            .or_else(|| {
                s(&doc, &["traceparent"])
                    .and_then(ids::parse_traceparent)
                    .map(|(t, _)| t)
            })
            .unwrap_or(0);
        let resource = Resource {
            service: service.to_string(),
            environment: s(&doc, &["environment"]).unwrap_or("").to_string(),
            version: s(&doc, &["version"]).unwrap_or("").to_string(),
        };
        (time, resource, actor.to_string(), action.to_string(), trace)
    } else {
        return Err(bad(
            Reason::UnsupportedEventType,
            "not an audit.k8s.io Event nor a causeway.audit/v1 record",
        ));
    };
    if time == 0 {
        return Err(bad(Reason::MissingTimestamp, "timestamp is 0"));
    }
    if opts.is_future(time) {
        return Err(bad(
            Reason::FutureTimestamp,
            "timestamp is beyond max_future_skew",
        ));
    }
    Ok(AuditRecord {
        trace,
        time,
        origin,
        resource: Arc::new(resource),
        actor,
        action,
    })
}
