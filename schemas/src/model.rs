//! The decoded event model every job consumes.
//!
//! Times are Unix nanoseconds. Ids are `u128` (trace) and `u64` (span), `0` meaning
//! absent. Resources are shared (`Arc`) by every record of one OTLP resource, so a
//! record is cheap to clone inside the dataflow.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The (service, environment, version) a record belongs to (SPEC §1 mapping).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Resource {
    /// `service.name`.
    pub service: String,
    /// `deployment.environment.name`, falling back to `deployment.environment`; empty if neither.
    pub environment: String,
    /// `service.version`; empty if absent.
    pub version: String,
}

/// Where a record came from: partition, offset of its message, ordinal inside the
/// message. Unique per record, so records without identity (logs, audit) stay
/// distinct inside the dataflow, and stable across runs.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Origin {
    /// Source partition (in `replay`, the ordinal of the input file).
    pub partition: u32,
    /// Offset of the message in its partition (in `replay`, line or message number).
    pub offset: u64,
    /// Ordinal of the record inside its message.
    pub index: u32,
}

/// OTLP span kind.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[repr(u8)]
pub enum SpanKind {
    /// `SPAN_KIND_UNSPECIFIED`.
    #[default]
    Unspecified = 0,
    /// `SPAN_KIND_INTERNAL`.
    Internal = 1,
    /// `SPAN_KIND_SERVER`.
    Server = 2,
    /// `SPAN_KIND_CLIENT`.
    Client = 3,
    /// `SPAN_KIND_PRODUCER`.
    Producer = 4,
    /// `SPAN_KIND_CONSUMER`.
    Consumer = 5,
}

impl SpanKind {
    /// From the OTLP enum number; unknown numbers are `Unspecified`.
    pub fn from_i32(v: i32) -> Self {
        match v {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// The OTLP enum name (`SPAN_KIND_SERVER`, ...), as Tempo's `span_kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
            SpanKind::Internal => "SPAN_KIND_INTERNAL",
            SpanKind::Server => "SPAN_KIND_SERVER",
            SpanKind::Client => "SPAN_KIND_CLIENT",
            SpanKind::Producer => "SPAN_KIND_PRODUCER",
            SpanKind::Consumer => "SPAN_KIND_CONSUMER",
        }
    }
}

/// OTLP span status code.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[repr(u8)]
pub enum SpanStatus {
    /// `STATUS_CODE_UNSET`.
    #[default]
    Unset = 0,
    /// `STATUS_CODE_OK`.
    Ok = 1,
    /// `STATUS_CODE_ERROR`.
    Error = 2,
}

impl SpanStatus {
    /// From the OTLP enum number; unknown numbers are `Unset`.
    pub fn from_i32(v: i32) -> Self {
        match v {
            1 => SpanStatus::Ok,
            2 => SpanStatus::Error,
            _ => SpanStatus::Unset,
        }
    }

    /// The OTLP enum name (`STATUS_CODE_ERROR`, ...), as Tempo's `status_code` label.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanStatus::Unset => "STATUS_CODE_UNSET",
            SpanStatus::Ok => "STATUS_CODE_OK",
            SpanStatus::Error => "STATUS_CODE_ERROR",
        }
    }
}

/// One decoded span. Identity is (`trace`, `span`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    /// Trace id, never 0.
    pub trace: u128,
    /// Span id, never 0.
    pub span: u64,
    /// Parent span id; 0 for a root.
    pub parent: u64,
    /// `start_time_unix_nano`.
    pub start: u64,
    /// `end_time_unix_nano`.
    pub end: u64,
    /// Span kind.
    pub kind: SpanKind,
    /// Status code.
    pub status: SpanStatus,
    /// Whether an attribute value matched a PII detector (the value itself is dropped).
    pub pii: bool,
    /// Owning resource.
    pub resource: Arc<Resource>,
    /// The span's `name` (operation), shared by the spans of one batch that carry
    /// it ([`span_name`]). Only span metrics read it.
    pub name: Arc<str>,
}

/// `name` as a shared string. The decoders call this once per span: a small
/// per-thread cache of recent names hands out clones of one `Arc`, so a batch of
/// spans with a few names allocates a few strings, not one per span.
pub fn span_name(name: &str) -> Arc<str> {
    use std::cell::RefCell;
    const CACHED: usize = 32;
    thread_local! {
        static RECENT: RefCell<(Vec<Arc<str>>, usize)> = const { RefCell::new((Vec::new(), 0)) };
    }
    RECENT.with(|r| {
        let Ok(mut r) = r.try_borrow_mut() else {
            return Arc::from(name);
        };
        let (recent, next) = &mut *r;
        if let Some(a) = recent.iter().find(|a| a.as_ref() == name) {
            return Arc::clone(a);
        }
        let a: Arc<str> = Arc::from(name);
        if recent.len() < CACHED {
            recent.push(Arc::clone(&a));
        } else {
            recent[*next] = Arc::clone(&a);
            *next = (*next + 1) % CACHED;
        }
        a
    })
}

impl Span {
    /// The span's event time ([`span_event_time`]).
    pub fn event_time(&self) -> u64 {
        span_event_time(self.start, self.end)
    }

    /// Whether the span is an entry span ([`is_entry_span`]).
    pub fn is_entry(&self) -> bool {
        is_entry_span(self.kind, self.parent)
    }
}

/// A span's event time: its start, or its end when the start is 0 (such a span
/// has invalid timing for M3 but is still counted in the window of its end).
pub fn span_event_time(start: u64, end: u64) -> u64 {
    if start > 0 {
        start
    } else {
        end
    }
}

/// Whether a span is an entry span (SPEC R1): `SERVER`, `CONSUMER`, or a root.
pub fn is_entry_span(kind: SpanKind, parent: u64) -> bool {
    matches!(kind, SpanKind::Server | SpanKind::Consumer) || parent == 0
}

/// One decoded OTLP log record, reduced to what the SLIs read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LogRecord {
    /// Trace id; 0 when the record carries none.
    pub trace: u128,
    /// Event time: `time_unix_nano`, or `observed_time_unix_nano` when that is 0.
    pub time: u64,
    /// Unique position, so equal records are still counted separately.
    pub origin: Origin,
    /// `severity_number` (0 when unset).
    pub severity: i32,
    /// A request record (M1): has `http.request.method`, `http.method`, `rpc.method`
    /// or a configured request attribute.
    pub request: bool,
    /// An error request (M10): a request record with severity >= 17 or an HTTP
    /// response status >= 500.
    pub error_request: bool,
    /// Whether an attribute value or the body matched a PII detector.
    pub pii: bool,
    /// Owning resource.
    pub resource: Arc<Resource>,
}

impl LogRecord {
    /// ERROR or FATAL (`severity_number >= 17`), the population of M2.
    pub fn is_error(&self) -> bool {
        self.severity >= 17
    }
}

/// An audit record: a Kubernetes `audit.k8s.io/v1` Event or Causeway's own record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Trace id from the record or a `traceparent`; 0 when none.
    pub trace: u128,
    /// Event time (`stageTimestamp` or `ts`).
    pub time: u64,
    /// Unique position.
    pub origin: Origin,
    /// The service the action was on.
    pub resource: Arc<Resource>,
    /// Who acted (user name).
    pub actor: String,
    /// What was done (`deploy`, `rollback`, a Kubernetes verb, ...).
    pub action: String,
}

/// What a deploy event did (the CDEvents `service.*` subject predicates).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployAction {
    /// `dev.cdevents.service.deployed`.
    Deployed,
    /// `dev.cdevents.service.upgraded`.
    Upgraded,
    /// `dev.cdevents.service.rolledback`.
    Rolledback,
    /// `dev.cdevents.service.removed`.
    Removed,
}

/// A deploy event from CDEvents.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeployEvent {
    /// `context.timestamp`.
    pub time: u64,
    /// Unique position.
    pub origin: Origin,
    /// What happened.
    pub action: DeployAction,
    /// `context.id`.
    pub id: String,
    /// Service name: `subject.id`, with a leading `service/` removed.
    pub service: String,
    /// `subject.content.environment.id`; empty if absent.
    pub environment: String,
    /// The version from the artifact purl (`...@<version>`), or empty.
    pub version: String,
    /// `subject.content.artifactId`; empty if absent.
    pub artifact: String,
    /// Trace id from a `traceparent` (record header or CloudEvents extension); 0 if none.
    pub trace: u128,
}
