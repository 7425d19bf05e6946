//! The story's changes as their producers write them: a CDEvents
//! `service.deployed` / `service.rolledback` event (CloudEvents structured mode,
//! spec 0.4) from the deployer, and the Kubernetes `audit.k8s.io/v1` Event of the
//! API call that made the change, naming its actor. Both carry the deployer's
//! trace context: in the `traceparent` Kafka header and, so that a replay from
//! files correlates them the same way, in the payload (the CloudEvents
//! `traceparent` extension; the audit Event's `traceparent` annotation).

use causeway_schemas::time::format_rfc3339;
use serde_json::json;

const NS: u64 = 1_000_000_000;

/// The CDEvent of a change, as one JSON line.
pub(crate) fn cdevent(
    id: &str,
    action: &str,
    service: &str,
    environment: &str,
    version: &str,
    at_ns: u64,
    traceparent: &str,
) -> String {
    let ty = format!("dev.cdevents.service.{action}.0.2.0");
    let ts = format_rfc3339(at_ns / NS);
    let data = json!({
        "context": {
            "specversion": "0.4.1",
            "id": id,
            "source": "/argo-cd/prod",
            "type": ty,
            "timestamp": ts,
        },
        "subject": {
            "id": format!("service/{service}"),
            "source": "/argo-cd/prod",
            "type": "service",
            "content": {
                "environment": { "id": environment, "source": "/argo-cd" },
                "artifactId": artifact(service, version),
            },
        },
    });
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "/argo-cd/prod",
        "type": ty,
        "time": ts,
        "traceparent": traceparent,
        "datacontenttype": "application/json",
        "data": data,
    })
    .to_string()
}

/// The artifact (package URL) of a version of a service.
pub(crate) fn artifact(service: &str, version: &str) -> String {
    format!("pkg:oci/{service}@{version}?repository_url=registry.example.com/shop")
}

/// The Kubernetes audit Event of the `patch` that rolled out `version`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn audit_event(
    audit_id: &str,
    actor: &str,
    service: &str,
    environment: &str,
    version: &str,
    at_ns: u64,
    traceparent: &str,
) -> String {
    let ts = format_rfc3339(at_ns / NS);
    json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "requestURI": format!("/apis/apps/v1/namespaces/{environment}/deployments/{service}"),
        "verb": "patch",
        "user": { "username": actor, "groups": ["system:authenticated", "sre"] },
        "userAgent": "kubectl/v1.31.2",
        "objectRef": {
            "resource": "deployments",
            "namespace": environment,
            "name": service,
            "apiGroup": "apps",
            "apiVersion": "v1",
        },
        "responseStatus": { "metadata": {}, "code": 200 },
        "requestReceivedTimestamp": ts,
        "stageTimestamp": ts,
        "annotations": {
            "authorization.k8s.io/decision": "allow",
            "causeway.dev/version": version,
            "traceparent": traceparent,
        },
    })
    .to_string()
}
