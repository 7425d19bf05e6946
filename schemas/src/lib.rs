//! Causeway's types and codecs.
//!
//! This crate holds only data: the decoded event model ([`model`]), the decoders
//! for every input topic ([`otlp`], [`cdevents`], [`audit`]), the typed reasons for
//! rejecting bad input ([`reject`]), the PII detectors ([`pii`]) and the output
//! records Causeway writes ([`records`]). It knows nothing of Kafka, timely or tokio.
#![warn(missing_docs)]

pub mod audit;
pub mod cdevents;
pub mod ids;
pub mod model;
pub mod otlp;
pub mod pii;
pub mod records;
pub mod reject;
pub mod time;

pub use model::{
    AuditRecord, DeployAction, DeployEvent, LogRecord, Origin, Resource, Span, SpanKind, SpanStatus,
};
pub use reject::{Declined, Reason, Rejection, Skip};

/// Options shared by every decoder.
#[derive(Clone, Debug)]
pub struct DecodeOptions {
    /// Wall-clock "now" in Unix nanoseconds, against which future timestamps are judged.
    pub now_ns: u64,
    /// An event whose time is more than this far past `now_ns` is rejected
    /// as `future_timestamp`.
    pub max_future_skew_ns: u64,
    /// PII detectors applied to attribute values and log bodies (SLI M9).
    pub pii: pii::PiiDetector,
    /// Extra log attribute keys that mark a log record as a request record (SLI M1),
    /// besides `http.request.method`, `http.method` and `rpc.method`.
    pub request_attributes: Vec<String>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            now_ns: time::now_ns(),
            max_future_skew_ns: 10 * 60 * time::NANOS_PER_SEC,
            pii: pii::PiiDetector::default(),
            request_attributes: Vec::new(),
        }
    }
}

impl DecodeOptions {
    /// Whether `t` lies beyond the allowed skew into the future.
    pub fn is_future(&self, t: u64) -> bool {
        t > self.now_ns.saturating_add(self.max_future_skew_ns)
    }
}

/// The records a message decoded to, and the rejections of its bad parts.
///
/// `records.len() + rejects.len()` is the number of records the message held; a
/// message that cannot be decoded at all counts as one rejected record.
#[derive(Debug)]
pub struct Decoded<T> {
    /// Records that passed every check.
    pub records: Vec<T>,
    /// One entry per rejected record, or one for the whole message.
    pub rejects: Vec<Rejection>,
}

impl<T> Default for Decoded<T> {
    fn default() -> Self {
        Decoded {
            records: Vec::new(),
            rejects: Vec::new(),
        }
    }
}

impl<T> Decoded<T> {
    /// A message that failed as a whole.
    pub fn failed(rejection: Rejection) -> Self {
        Decoded {
            records: Vec::new(),
            rejects: vec![rejection],
        }
    }
}

/// How a topic's messages are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// OTLP protobuf (`TracesData` / `LogsData`), the OTel Collector kafka exporter default.
    OtlpProto,
    /// OTLP JSON per the OTLP/JSON mapping (hex ids, lowerCamelCase).
    OtlpJson,
    /// Plain JSON (CDEvents, audit records).
    Json,
}
