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
//! `user.username`; action = `verb`. Environment: annotation
//! `causeway.dev/environment`, else `objectRef.namespace`. Trace context: the
//! `traceparent` annotation.
//!
//! A Kubernetes event counts when it records a completed change to a service:
//! 1. its verb is not read-only (`get`, `list`, `watch` are skipped: [`Skip::ReadOnly`]);
//! 2. its stage, when present, is `ResponseComplete` (`RequestReceived` and
//!    `ResponseStarted` are skipped, [`Skip::IntermediateStage`]: the same request
//!    counts once);
//! 3. it succeeded (stage `Panic` or `responseStatus.code` ≥ 400 is skipped,
//!    [`Skip::FailedRequest`]);
//! 4. it names its service: the annotation `causeway.dev/service`, or else
//!    `objectRef.name` when the object is a workload (deployments, statefulsets,
//!    daemonsets, replicasets, services, jobs, cronjobs, rollouts) and the
//!    write is not to its `status` subresource ([`Skip::StatusUpdate`]);
//!    otherwise it is skipped ([`Skip::NoService`]).
//!
//! Those events are valid input about something else, so they are skipped, not
//! rejected. A Kubernetes event without a usable timestamp is bad input (rejected).

use std::sync::Arc;

use serde_json::Value;

use crate::ids;
use crate::model::{AuditRecord, Origin, Resource};
use crate::reject::{Declined, Reason, Rejection, Skip};
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

/// Verbs that read and change nothing.
const READ_ONLY: [&str; 3] = ["get", "list", "watch"];

/// Whether a Kubernetes audit event is one Causeway counts, and if not, why
/// (the first rule of the module docs it breaks).
fn k8s_skip(doc: &Value) -> Option<Skip> {
    if s(doc, &["verb"]).is_some_and(|v| READ_ONLY.contains(&v)) {
        return Some(Skip::ReadOnly);
    }
    match s(doc, &["stage"]) {
        None | Some("ResponseComplete") => {}
        Some("Panic") => return Some(Skip::FailedRequest),
        Some(_) => return Some(Skip::IntermediateStage),
    }
    let code = doc
        .get("responseStatus")
        .and_then(|r| r.get("code"))
        .and_then(Value::as_i64);
    if code.is_some_and(|c| c >= 400) {
        return Some(Skip::FailedRequest);
    }
    if s(doc, &["annotations", "causeway.dev/service"]).is_some() {
        return None;
    }
    if s(doc, &["objectRef", "subresource"]) == Some("status") {
        return Some(Skip::StatusUpdate);
    }
    let workload = s(doc, &["objectRef", "resource"]).is_some_and(|r| WORKLOADS.contains(&r));
    if workload && s(doc, &["objectRef", "name"]).is_some() {
        return None;
    }
    Some(Skip::NoService)
}

/// Decodes one `audit` message. `traceparent` is the Kafka record header, if any.
///
/// A valid Kubernetes event that records no completed change to a service (see
/// the module docs) is [`Declined::Skipped`]; bad input is [`Declined::Rejected`].
pub fn decode_audit(
    bytes: &[u8],
    origin: Origin,
    traceparent: Option<&str>,
    opts: &DecodeOptions,
) -> Result<AuditRecord, Declined> {
    let bad = |reason, detail: &str| Rejection::message(reason, detail);
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| bad(Reason::MalformedJson, &e.to_string()))?;
    let kind = s(&doc, &["kind"]).unwrap_or("");
    let api = s(&doc, &["apiVersion"]).unwrap_or("");
    let header_trace = traceparent.and_then(ids::parse_traceparent).map(|(t, _)| t);
    let (time, resource, actor, action, trace) =
        if kind == "Event" && api.starts_with("audit.k8s.io/") {
            let ts = s(&doc, &["stageTimestamp"])
                .or_else(|| s(&doc, &["requestReceivedTimestamp"]))
                .or_else(|| s(&doc, &["timestamp"]))
                .ok_or_else(|| bad(Reason::MissingTimestamp, "stageTimestamp is missing"))?;
            let time = parse_rfc3339(ts)
                .ok_or_else(|| bad(Reason::InvalidTimestamp, "stageTimestamp is not RFC 3339"))?;
            if let Some(skip) = k8s_skip(&doc) {
                return Err(Declined::Skipped(skip));
            }
            let service = s(&doc, &["annotations", "causeway.dev/service"])
                .or_else(|| s(&doc, &["objectRef", "name"]))
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
                _ => return Err(bad(Reason::MissingTimestamp, "ts is missing").into()),
            };
            let service = s(&doc, &["service"])
                .ok_or_else(|| bad(Reason::MissingService, "service is missing"))?;
            let actor =
                s(&doc, &["actor"]).ok_or_else(|| bad(Reason::MissingField, "actor is missing"))?;
            let action = s(&doc, &["action"])
                .ok_or_else(|| bad(Reason::MissingField, "action is missing"))?;
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
            )
            .into());
        };
    if time == 0 {
        return Err(bad(Reason::MissingTimestamp, "timestamp is 0").into());
    }
    if opts.is_future(time) {
        return Err(bad(
            Reason::FutureTimestamp,
            "timestamp is beyond max_future_skew",
        )
        .into());
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
