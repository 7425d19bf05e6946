//! Typed reasons for rejecting bad input (SPEC §1).
//!
//! Every rejected message or record carries exactly one [`Reason`]; its
//! `as_str()` form is the `reason` label of `causeway_input_rejected_total` and
//! the `reason` field of the dead-letter record.

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
    /// A CDEvent of a type Causeway does not consume on the deploys topic,
    /// or an audit document of an unknown kind.
    UnsupportedEventType,
    /// A CDEvents spec version other than 0.3 or 0.4.
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
