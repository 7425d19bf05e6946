//! Typed reasons for rejecting bad input, and for skipping valid input that
//! Causeway does not use (SPEC §1).
//!
//! Every rejected message or record carries exactly one [`Reason`]; its
//! `as_str()` form is the `reason` label of `causeway_input_rejected_total` and
//! the `reason` field of the dead-letter record. A well-formed message that
//! Causeway has no use for (another CDEvents type, a read-only Kubernetes
//! request) is not bad input: it carries a [`Skip`], is counted in
//! `causeway_input_skipped_total{topic,reason}` and is never dead-lettered.

use serde::{Deserialize, Serialize};

/// Why a message or record was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The bytes are not a valid protobuf message of the expected type.
    MalformedProtobuf,
    /// The bytes are not valid JSON of the expected shape.
    MalformedJson,
    /// A trace id that is neither empty nor 16 bytes / 32 hex digits.
    InvalidTraceId,
    /// A span id that is not 8 bytes / 16 hex digits.
    InvalidSpanId,
    /// A parent span id that is neither empty nor 8 bytes / 16 hex digits.
    InvalidParentSpanId,
    /// A span without a trace id.
    MissingTraceId,
    /// A span without a span id.
    MissingSpanId,
    /// No `service.name` resource attribute, or an event that names no service.
    MissingService,
    /// A log record whose timestamps are both 0, a span whose start and end are 0,
    /// or an event without a timestamp.
    MissingTimestamp,
    /// A timestamp that cannot be parsed.
    InvalidTimestamp,
    /// A timestamp further into the future than `max_future_skew`.
    FutureTimestamp,
    /// A message on the deploys topic whose `context.type` is not a CDEvents
    /// type (`dev.cdevents.…`), or an audit document of an unknown kind.
    /// (A CDEvent of another type is skipped, see [`Skip::UnusedEventType`].)
    UnsupportedEventType,
    /// A CDEvents spec version before 0.3, or one that is not `MAJOR.MINOR…`.
    UnsupportedSpecVersion,
    /// A required field is absent.
    MissingField,
    /// Event time below its partition's watermark (SPEC §2).
    Late,
}

impl Reason {
    /// Every reason, in a fixed order.
    pub const ALL: [Reason; 15] = [
        Reason::MalformedProtobuf,
        Reason::MalformedJson,
        Reason::InvalidTraceId,
        Reason::InvalidSpanId,
        Reason::InvalidParentSpanId,
        Reason::MissingTraceId,
        Reason::MissingSpanId,
        Reason::MissingService,
        Reason::MissingTimestamp,
        Reason::InvalidTimestamp,
        Reason::FutureTimestamp,
        Reason::UnsupportedEventType,
        Reason::UnsupportedSpecVersion,
        Reason::MissingField,
        Reason::Late,
    ];

    /// The snake_case name used in metrics labels and DLQ records.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::MalformedProtobuf => "malformed_protobuf",
            Reason::MalformedJson => "malformed_json",
            Reason::InvalidTraceId => "invalid_trace_id",
            Reason::InvalidSpanId => "invalid_span_id",
            Reason::InvalidParentSpanId => "invalid_parent_span_id",
            Reason::MissingTraceId => "missing_trace_id",
            Reason::MissingSpanId => "missing_span_id",
            Reason::MissingService => "missing_service",
            Reason::MissingTimestamp => "missing_timestamp",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::FutureTimestamp => "future_timestamp",
            Reason::UnsupportedEventType => "unsupported_event_type",
            Reason::UnsupportedSpecVersion => "unsupported_spec_version",
            Reason::MissingField => "missing_field",
            Reason::Late => "late",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a well-formed message was skipped: valid input that Causeway does not
/// use (SPEC §1). Skipped messages are counted, never dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// A CDEvent of a type other than `service.{deployed,upgraded,rolledback,removed}`
    /// (pipelinerun, taskrun, environment, incident, artifact, service.published, …).
    UnusedEventType,
    /// A Kubernetes audit event of a read-only verb (`get`, `list`, `watch`).
    ReadOnly,
    /// A Kubernetes audit event of an intermediate stage (`RequestReceived`,
    /// `ResponseStarted`): the request counts once, at `ResponseComplete`.
    IntermediateStage,
    /// A Kubernetes audit event of a request that failed (stage `Panic`, or a
    /// response code of 400 or more): it changed nothing.
    FailedRequest,
    /// A Kubernetes audit event that writes a `status` subresource (controllers
    /// reporting progress), not the workload itself.
    StatusUpdate,
    /// A Kubernetes audit event without a `causeway.dev/service` annotation about
    /// an object that is not a named workload.
    NoService,
}

impl Skip {
    /// Every skip reason, in a fixed order.
    pub const ALL: [Skip; 6] = [
        Skip::UnusedEventType,
        Skip::ReadOnly,
        Skip::IntermediateStage,
        Skip::FailedRequest,
        Skip::StatusUpdate,
        Skip::NoService,
    ];

    /// The snake_case name used in the `reason` label of `causeway_input_skipped_total`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Skip::UnusedEventType => "unused_event_type",
            Skip::ReadOnly => "read_only",
            Skip::IntermediateStage => "intermediate_stage",
            Skip::FailedRequest => "failed_request",
            Skip::StatusUpdate => "status_update",
            Skip::NoService => "no_service",
        }
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a message decoder produced no event: bad input, or valid input that
/// Causeway does not use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Declined {
    /// Bad input: dead-lettered and counted as rejected.
    Rejected(Rejection),
    /// Valid input Causeway does not use: counted as skipped.
    Skipped(Skip),
}

impl From<Rejection> for Declined {
    fn from(r: Rejection) -> Self {
        Declined::Rejected(r)
    }
}

/// The detail of a rejection with every quoted part (`"…"`, `` `…` ``, `'…'`)
/// replaced by `…`: decoder messages (serde's among them) quote the input they
/// choke on, and input may hold PII. What remains says what was wrong and
/// where (line, column, field), not with what value.
pub fn scrub_detail(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len());
    let mut chars = detail.chars();
    while let Some(c) = chars.next() {
        if matches!(c, '"' | '`' | '\'') {
            // An apostrophe inside a word (`doesn't`) opens no quote.
            let word_before = out.chars().last().is_some_and(|p| p.is_alphanumeric());
            if c == '\'' && word_before {
                out.push(c);
                continue;
            }
            let rest = chars.as_str();
            if let Some(end) = rest.find(c) {
                out.push(c);
                out.push('…');
                out.push(c);
                chars = rest[end + c.len_utf8()..].chars();
                continue;
            }
            // An unmatched quote: everything after it may be input.
            out.push(c);
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

/// One rejected record, or a whole rejected message when `index` is `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: Reason,
    /// Position of the record inside its message (span or log record ordinal), if
    /// the rejection is of one record and not of the whole message.
    pub index: Option<u32>,
    /// Human-readable detail; never contains attribute values (they may hold PII).
    pub detail: String,
}

impl Rejection {
    /// A rejection of a whole message.
    pub fn message(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            index: None,
            detail: detail.into(),
        }
    }

    /// A rejection of the record at `index` inside its message.
    pub fn record(reason: Reason, index: u32, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            index: Some(index),
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scrub_detail;

    #[test]
    fn scrub_detail_drops_quoted_input() {
        assert_eq!(
            scrub_detail(
                "invalid type: string \"alice@example.com\", expected u64 at line 1 column 40"
            ),
            "invalid type: string \"…\", expected u64 at line 1 column 40"
        );
        assert_eq!(
            scrub_detail("invalid value: integer `4111111111111111`, expected i32"),
            "invalid value: integer `…`, expected i32"
        );
        assert_eq!(
            scrub_detail("unknown field 'x', doesn't fit"),
            "unknown field '…', doesn't fit"
        );
        assert_eq!(scrub_detail("bad \"open quote 123-45-6789"), "bad \"…");
        assert_eq!(
            scrub_detail("trace id: wrong length 48"),
            "trace id: wrong length 48"
        );
    }
}
