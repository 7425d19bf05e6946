//! CDEvents deploy events (`dev.cdevents.service.{deployed,upgraded,rolledback,removed}`),
//! spec 0.3, 0.4 and later, plain or wrapped in a CloudEvents structured-mode envelope.
//!
//! Mapping: time = `context.timestamp`; service = `subject.id` (a leading `service/`
//! is dropped); environment = `subject.content.environment.id`; artifact =
//! `subject.content.artifactId`; version = the purl version after `@`
//! (percent-decoded). The spec version is `context.specversion` (0.4 and later) or
//! `context.version` (0.3 and the 0.4.1 conformance examples).
//!
//! What is bad input and what is skipped (SPEC §1):
//! - Not a JSON object, no spec version, a spec version that is not
//!   `MAJOR.MINOR…` or is before 0.3, no `context.type`, a type that is not
//!   `dev.cdevents.…`, a missing or unparsable `context.timestamp`: rejected.
//! - A CDEvent of any other type (pipelinerun, taskrun, environment, incident,
//!   artifact, `service.published`, …): skipped ([`Skip::UnusedEventType`]).
//! - Spec versions after 0.4 are decoded with the same field paths: the fields
//!   Causeway reads have not moved. An event of a newer spec that lacks them is
//!   rejected for the field it lacks, as a 0.4 event would be.

use serde_json::Value;

use crate::ids;
use crate::model::{DeployAction, DeployEvent, Origin};
use crate::reject::{Declined, Reason, Rejection, Skip};
use crate::time::parse_rfc3339;
use crate::DecodeOptions;

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// `MAJOR.MINOR` of a spec version such as `0.4.1` or `0.5.0-draft`.
fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((major, minor.parse().ok()?))
}

/// Decodes one `deploys` message. `traceparent` is the Kafka record header, if any.
///
/// A well-formed CDEvent of a type Causeway does not use is
/// [`Declined::Skipped`]; bad input is [`Declined::Rejected`].
pub fn decode_deploy(
    bytes: &[u8],
    origin: Origin,
    traceparent: Option<&str>,
    opts: &DecodeOptions,
) -> Result<DeployEvent, Declined> {
    let bad = |reason, detail: &str| Rejection::message(reason, detail);
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| bad(Reason::MalformedJson, &e.to_string()))?;
    if !doc.is_object() {
        return Err(bad(Reason::MalformedJson, "a CDEvent must be a JSON object").into());
    }
    let envelope_tp = str_at(&doc, &["traceparent"]);
    let ev = match doc.get("data") {
        Some(d) if d.get("context").is_some() => d,
        _ => &doc,
    };
    let spec = str_at(ev, &["context", "specversion"])
        .or_else(|| str_at(ev, &["context", "version"]))
        .ok_or_else(|| {
            bad(
                Reason::MissingField,
                "context.specversion (or context.version) is missing",
            )
        })?;
    if major_minor(spec).is_none_or(|v| v < (0, 3)) {
        return Err(bad(
            Reason::UnsupportedSpecVersion,
            &format!("CDEvents spec {spec} is not supported (0.3 and later are)"),
        )
        .into());
    }
    let ty = str_at(ev, &["context", "type"])
        .ok_or_else(|| bad(Reason::MissingField, "context.type is missing"))?;
    let Some(cdevent) = ty.strip_prefix("dev.cdevents.") else {
        return Err(bad(
            Reason::UnsupportedEventType,
            "context.type is not a CDEvents type (dev.cdevents.…)",
        )
        .into());
    };
    let ts = str_at(ev, &["context", "timestamp"])
        .ok_or_else(|| bad(Reason::MissingTimestamp, "context.timestamp is missing"))?;
    let time = parse_rfc3339(ts).ok_or_else(|| {
        bad(
            Reason::InvalidTimestamp,
            "context.timestamp is not RFC 3339",
        )
    })?;
    let action = match cdevent
        .strip_prefix("service.")
        .and_then(|r| r.split('.').next())
    {
        Some("deployed") => DeployAction::Deployed,
        Some("upgraded") => DeployAction::Upgraded,
        Some("rolledback") => DeployAction::Rolledback,
        Some("removed") => DeployAction::Removed,
        _ => return Err(Declined::Skipped(Skip::UnusedEventType)),
    };
    if opts.is_future(time) {
        return Err(bad(
            Reason::FutureTimestamp,
            "context.timestamp is beyond max_future_skew",
        )
        .into());
    }
    let subject = str_at(ev, &["subject", "id"]).filter(|s| !s.is_empty());
    let service = subject
        .map(|s| s.strip_prefix("service/").unwrap_or(s))
        .ok_or_else(|| bad(Reason::MissingService, "subject.id is missing"))?;
    let artifact = str_at(ev, &["subject", "content", "artifactId"]).unwrap_or("");
    let trace = traceparent
        .or(envelope_tp)
        .or_else(|| str_at(ev, &["context", "traceparent"]))
        .and_then(ids::parse_traceparent)
        .map_or(0, |(t, _)| t);
    Ok(DeployEvent {
        time,
        origin,
        action,
        id: str_at(ev, &["context", "id"]).unwrap_or("").to_string(),
        service: service.to_string(),
        environment: str_at(ev, &["subject", "content", "environment", "id"])
            .unwrap_or("")
            .to_string(),
        version: purl_version(artifact),
        artifact: artifact.to_string(),
        trace,
    })
}

/// The version part of a package URL: `pkg:oci/app@sha256%3Aab?x=y` gives `sha256:ab`.
pub fn purl_version(purl: &str) -> String {
    let Some((_, v)) = purl.rsplit_once('@') else {
        return String::new();
    };
    let v = v.split(['?', '#']).next().unwrap_or("");
    percent_decode(v)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purl() {
        assert_eq!(
            purl_version("pkg:oci/myapp@sha256%3A0b31?repository_url=x"),
            "sha256:0b31"
        );
        assert_eq!(purl_version("pkg:golang/checkout@v1.4.2"), "v1.4.2");
        assert_eq!(purl_version("no-version"), "");
    }

    #[test]
    fn spec_versions() {
        assert_eq!(major_minor("0.4.1"), Some((0, 4)));
        assert_eq!(major_minor("0.5.0-draft"), Some((0, 5)));
        assert_eq!(major_minor("1.0"), Some((1, 0)));
        assert_eq!(major_minor("0.10.2"), Some((0, 10)));
        assert_eq!(major_minor("v0.4"), None);
        assert_eq!(major_minor("04"), None);
        assert_eq!(major_minor(""), None);
    }
}
