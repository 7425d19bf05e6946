//! OTLP traces and logs: protobuf and JSON decoding into the [`crate::model`].
//!
//! Contract:
//! - A message that does not decode is one rejection (`malformed_protobuf` /
//!   `malformed_json`) with `index: None`.
//! - Otherwise every span / log record is checked on its own; a bad one is one
//!   rejection with its ordinal inside the message, and its neighbours still count.
//! - A resource without `service.name` rejects each of its records (`missing_service`).
//!
//! Protobuf is read by a zero-copy walk of the wire format (`wire.rs`) that behaves
//! like prost on the structs of [`proto`] (which stay, to encode test and bench
//! inputs). JSON is read by [`json`]. Both fold attributes into flags (`AttrFlags`) as
//! they read them and share the checks (`check_span`, `check_log`).
//!
//! Protobuf also decodes to a compact form that borrows the message
//! ([`decode_span_batch`], [`decode_log_batch`]): the same records and
//! rejections, with each record's resource an index into the message's
//! resources and a span's name a slice of the message, so ingest builds its own
//! records without a [`Span`] or an `Arc` per record in between.

pub mod json;
mod memo;
pub mod proto;
mod wire;

pub use memo::{MemoKey, ResourceMemo};

use std::borrow::Cow;
use std::sync::Arc;

use crate::ids::{self, IdError};
use crate::model::{span_name, LogRecord, Origin, Resource, Span, SpanKind, SpanStatus};
use crate::reject::{Reason, Rejection};
use crate::{DecodeOptions, Decoded, Encoding};

/// Attribute keys that make a log record a request record (SPEC §3 M1).
pub const REQUEST_ATTRIBUTES: [&str; 3] = ["http.request.method", "http.method", "rpc.method"];
/// Attribute keys holding an HTTP response status code (SPEC §3 M10).
pub const STATUS_CODE_ATTRIBUTES: [&str; 2] = ["http.response.status_code", "http.status_code"];

/// A resource's SPEC §1 strings (`service.name`, never empty; the environment;
/// the version), borrowed from the message that holds them, and the
/// [`ResourceMemo`] entry they were read from, if any (part of equality).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceRef<'a> {
    // UTF-8, checked by the decoder.
    service: &'a [u8],
    environment: &'a [u8],
    version: &'a [u8],
    memo: Option<MemoKey>,
}

impl<'a> ResourceRef<'a> {
    /// `service.name`.
    pub fn service(&self) -> &'a str {
        text(self.service)
    }

    /// `deployment.environment.name`, else `deployment.environment`, else empty.
    pub fn environment(&self) -> &'a str {
        text(self.environment)
    }

    /// `service.version`, or empty.
    pub fn version(&self) -> &'a str {
        text(self.version)
    }

    /// Service, environment and version as bytes (cheap to compare).
    pub fn as_bytes(&self) -> [&'a [u8]; 3] {
        [self.service, self.environment, self.version]
    }

    /// The key of the entry of the [`ResourceMemo`] the resource was decoded
    /// with that holds its one `Resource` body; `None` without a memo, for a
    /// body the memo did not store, or for a resource merged from several
    /// `resource` occurrences. A note set on that entry
    /// ([`ResourceMemo::set_note`]) may stand for these strings.
    pub fn memo_key(&self) -> Option<MemoKey> {
        self.memo
    }

    /// The owned [`Resource`].
    pub fn to_resource(&self) -> Resource {
        Resource {
            service: self.service().to_string(),
            environment: self.environment().to_string(),
            version: self.version().to_string(),
        }
    }
}

/// Bytes the decoder checked to be UTF-8, as a `str`.
fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

/// One accepted span of a [`SpanBatch`]: the fields of [`Span`], its resource
/// as an index and its name borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanRef<'a> {
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
    /// Whether an attribute value matched a PII detector.
    pub pii: bool,
    /// Index of its resource in [`SpanBatch::resources`].
    pub resource: u32,
    // UTF-8, checked by the decoder.
    name: &'a [u8],
}

impl<'a> SpanRef<'a> {
    /// The span's `name`.
    pub fn name(&self) -> &'a str {
        text(self.name)
    }

    /// The span's `name` as bytes (cheap to compare).
    pub fn name_bytes(&self) -> &'a [u8] {
        self.name
    }

    /// The span's event time ([`crate::model::span_event_time`]).
    pub fn event_time(&self) -> u64 {
        crate::model::span_event_time(self.start, self.end)
    }
}

/// What one `otlp_spans` protobuf message decodes to in compact form: the
/// records and rejections of [`decode_traces`], in the same order.
#[derive(Debug, Default)]
pub struct SpanBatch<'a> {
    /// The resources the spans refer to.
    pub resources: Vec<ResourceRef<'a>>,
    /// Spans that passed every check.
    pub spans: Vec<SpanRef<'a>>,
    /// One entry per rejected span, or one for the whole message.
    pub rejects: Vec<Rejection>,
}

/// One accepted log record of a [`LogBatch`]: the fields of [`LogRecord`], its
/// resource as an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRef {
    /// Trace id; 0 when the record carries none.
    pub trace: u128,
    /// Event time: `time_unix_nano`, or `observed_time_unix_nano` when that is 0.
    pub time: u64,
    /// Ordinal of the record inside its message.
    pub index: u32,
    /// `severity_number` (0 when unset).
    pub severity: i32,
    /// A request record (M1).
    pub request: bool,
    /// An error request (M10).
    pub error_request: bool,
    /// Whether an attribute value or the body matched a PII detector.
    pub pii: bool,
    /// Index of its resource in [`LogBatch::resources`].
    pub resource: u32,
}

impl LogRef {
    /// ERROR or FATAL ([`LogRecord::is_error`]).
    pub fn is_error(&self) -> bool {
        self.severity >= 17
    }
}

/// What one `otlp_logs` protobuf message decodes to in compact form: the
/// records and rejections of [`decode_logs`], in the same order.
#[derive(Debug, Default)]
pub struct LogBatch<'a> {
    /// The resources the records refer to.
    pub resources: Vec<ResourceRef<'a>>,
    /// Log records that passed every check.
    pub logs: Vec<LogRef>,
    /// One entry per rejected record, or one for the whole message.
    pub rejects: Vec<Rejection>,
}

/// Decodes one `otlp_spans` message.
pub fn decode_traces(bytes: &[u8], encoding: Encoding, opts: &DecodeOptions) -> Decoded<Span> {
    match encoding {
        Encoding::OtlpProto => decode_traces_proto(bytes, opts),
        Encoding::OtlpJson | Encoding::Json => decode_traces_json(bytes, opts),
    }
}

/// Decodes one `otlp_logs` message; `origin` names its partition and offset.
pub fn decode_logs(
    bytes: &[u8],
    encoding: Encoding,
    origin: Origin,
    opts: &DecodeOptions,
) -> Decoded<LogRecord> {
    match encoding {
        Encoding::OtlpProto => decode_logs_proto(bytes, origin, opts),
        Encoding::OtlpJson | Encoding::Json => decode_logs_json(bytes, origin, opts),
    }
}

/// The value of an `AnyValue`, reduced to what Causeway reads of it. A oneof: the
/// variant set last wins (JSON: the first present field in the order of the
/// protobuf oneof). Arrays and kvlists only keep whether an element holds PII.
#[derive(Debug)]
pub(crate) enum Any<'a> {
    /// No value.
    Unset,
    Str(Cow<'a, str>),
    Int(i64),
    Double(f64),
    Array(bool),
    Kvlist(bool),
    /// A bool or bytes value.
    Other,
}

impl<'a> Any<'a> {
    /// The value if a string.
    fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Any::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the value holds PII: a string matching a detector, an integer of 13
    /// or more digits whose decimal form matches, or an array/kvlist element that does.
    fn pii(&self, opts: &DecodeOptions) -> bool {
        match self {
            Any::Str(s) => opts.pii.matches(s),
            Any::Int(i) => *i >= 1_000_000_000_000 && int_pii(*i as u64, opts),
            Any::Array(p) | Any::Kvlist(p) => *p,
            _ => false,
        }
    }

    /// The value as an HTTP status code.
    fn status_code(&self) -> Option<i64> {
        match self {
            Any::Int(i) => Some(*i),
            Any::Str(s) => s.trim().parse().ok(),
            Any::Double(d) => Some(*d as i64),
            _ => None,
        }
    }
}

/// Whether the decimal form of `n` holds PII (formatted on the stack).
pub(crate) fn int_pii(mut n: u64, opts: &DecodeOptions) -> bool {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    opts.pii
        .matches(std::str::from_utf8(&digits[start..]).expect("ASCII digits"))
}

/// What the validation needs from a record's attributes (and a log's body).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AttrFlags {
    /// An attribute value (or the body) holds PII.
    pub pii: bool,
    /// A request attribute is present (M1).
    pub request: bool,
    /// An HTTP status code attribute is >= 500 (M10).
    pub status_5xx: bool,
}

impl AttrFlags {
    /// Folds in one span attribute.
    #[inline]
    fn span_attribute(&mut self, value: &Any<'_>, opts: &DecodeOptions) {
        if !self.pii {
            self.pii = value.pii(opts);
        }
    }

    /// Folds in one log attribute.
    #[inline]
    fn log_attribute(&mut self, key: &[u8], value: &Any<'_>, opts: &DecodeOptions) {
        if REQUEST_ATTRIBUTES.iter().any(|k| k.as_bytes() == key)
            || opts.request_attributes.iter().any(|k| k.as_bytes() == key)
        {
            self.request = true;
        }
        if STATUS_CODE_ATTRIBUTES.iter().any(|k| k.as_bytes() == key) {
            self.status_5xx |= value.status_code().is_some_and(|c| c >= 500);
        }
        self.span_attribute(value, opts);
    }

    /// Folds in a log body.
    #[inline]
    fn body(&mut self, body: &Any<'_>, opts: &DecodeOptions) {
        self.span_attribute(body, opts);
    }
}

/// The resource attributes of the SPEC §1 mapping: for each key, the value of its
/// first attribute (`None` inside when that value is not a string). `V` is the
/// decoder's string: `&[u8]` from the protobuf walk, `Cow<str>` from JSON.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResourceAttrs<V> {
    service: Option<Option<V>>,
    environment_name: Option<Option<V>>,
    environment: Option<Option<V>>,
    version: Option<Option<V>>,
}

impl<V> Default for ResourceAttrs<V> {
    fn default() -> Self {
        ResourceAttrs {
            service: None,
            environment_name: None,
            environment: None,
            version: None,
        }
    }
}

impl<V, T> ResourceAttrs<V>
where
    V: std::ops::Deref<Target = T>,
    T: AsRef<[u8]> + ?Sized,
{
    /// Folds in the next resource attribute: `key` and its value if a string.
    pub(crate) fn offer(&mut self, key: &[u8], value: Option<V>) {
        let slot = match key {
            b"service.name" => &mut self.service,
            b"deployment.environment.name" => &mut self.environment_name,
            b"deployment.environment" => &mut self.environment,
            b"service.version" => &mut self.version,
            _ => return,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }

    /// Merges in the attributes of a later `Resource` occurrence: each keeps
    /// the first value it had, as if `other`'s had been offered one by one.
    #[inline]
    pub(crate) fn merge(&mut self, other: &Self)
    where
        V: Copy,
    {
        for (slot, theirs) in [
            (&mut self.service, other.service),
            (&mut self.environment_name, other.environment_name),
            (&mut self.environment, other.environment),
            (&mut self.version, other.version),
        ] {
            if slot.is_none() {
                *slot = theirs;
            }
        }
    }

    /// (service, environment, version): `deployment.environment.name` before
    /// `deployment.environment`; `None` when `service.name` is missing, empty
    /// or not a string.
    fn mapped(&self) -> Option<(&V, Option<&V>, Option<&V>)> {
        fn get<V>(slot: &Option<Option<V>>) -> Option<&V> {
            slot.as_ref()?.as_ref()
        }
        let service = get(&self.service).filter(|s| !(***s).as_ref().is_empty())?;
        let environment = get(&self.environment_name).or_else(|| get(&self.environment));
        Some((service, environment, get(&self.version)))
    }
}

impl ResourceAttrs<Cow<'_, str>> {
    /// The resource; `None` when `service.name` is missing, empty or not a
    /// string.
    fn resource(&self) -> Option<Arc<Resource>> {
        let (service, environment, version) = self.mapped()?;
        Some(shared_resource(
            service,
            environment.map_or("", |e| e),
            version.map_or("", |v| v),
        ))
    }
}

/// Resources recently decoded on this thread, by a hash of their service name.
const RESOURCE_SLOTS: usize = 64;

thread_local! {
    static RESOURCES: std::cell::RefCell<[Option<Arc<Resource>>; RESOURCE_SLOTS]> =
        const { std::cell::RefCell::new([const { None }; RESOURCE_SLOTS]) };
}

/// The resource `(service, environment, version)`: the one this thread decoded
/// last for the same service, if equal, else a new one. A stream repeats a
/// few resources in every message; this keeps decoding them from allocating
/// (and dropping) three strings each time.
fn shared_resource(service: &str, environment: &str, version: &str) -> Arc<Resource> {
    let slot = service
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
        % RESOURCE_SLOTS;
    RESOURCES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(r) = &cache[slot] {
            if r.service == service && r.environment == environment && r.version == version {
                return r.clone();
            }
        }
        let r = Arc::new(Resource {
            service: service.to_string(),
            environment: environment.to_string(),
            version: version.to_string(),
        });
        cache[slot] = Some(r.clone());
        r
    })
}

/// A span as read off the wire, before validation; shared by both encodings.
struct RawSpan {
    trace: Result<u128, IdError>,
    span: Result<u64, IdError>,
    parent: Result<u64, IdError>,
    start: u64,
    end: u64,
    kind: i32,
    status: i32,
    pii: bool,
    name: Arc<str>,
}

/// The resource of a wire resource (read from memo entry `memo`, if any);
/// `None` when `service.name` is missing, empty or not a string.
fn resource_ref<'a>(w: &ResourceAttrs<&'a [u8]>, memo: Option<MemoKey>) -> Option<ResourceRef<'a>> {
    let (service, environment, version) = w.mapped()?;
    Some(ResourceRef {
        service,
        environment: environment.copied().unwrap_or_default(),
        version: version.copied().unwrap_or_default(),
        memo,
    })
}

/// The index of `resource` in `resources`, pushed there at its first use.
fn resource_index<'a>(
    index: &mut Option<u32>,
    resource: ResourceRef<'a>,
    resources: &mut Vec<ResourceRef<'a>>,
) -> u32 {
    *index.get_or_insert_with(|| {
        resources.push(resource);
        resources.len() as u32 - 1
    })
}

/// Decodes one `otlp_spans` protobuf message to the compact form: the same
/// records and rejections as [`decode_traces`].
pub fn decode_span_batch<'a>(bytes: &'a [u8], opts: &DecodeOptions) -> SpanBatch<'a> {
    span_batch(bytes, opts, &mut memo::Memo::disabled())
}

/// [`decode_span_batch`], with the resources read through `memo` (the same
/// result, but a `Resource` body `memo` holds is not walked again).
pub fn decode_span_batch_with<'a, T: Copy>(
    bytes: &'a [u8],
    opts: &DecodeOptions,
    memo: &mut ResourceMemo<T>,
) -> SpanBatch<'a> {
    span_batch(bytes, opts, &mut memo.memo)
}

fn span_batch<'a>(bytes: &'a [u8], opts: &DecodeOptions, memo: &mut memo::Memo) -> SpanBatch<'a> {
    let mut out = SpanBatch {
        // One per service of a batch, mostly; growing one by one would copy.
        resources: Vec::with_capacity(32),
        // A span takes at least ~40 bytes of a message.
        spans: Vec::with_capacity(bytes.len() / 64),
        rejects: Vec::new(),
    };
    let mut index = 0u32;
    let walked = wire::traces(bytes, opts, memo, |attrs, key, spans| {
        let resource = resource_ref(attrs, key);
        let mut resource_at = None;
        for s in spans.drain(..) {
            let checked = check_span(
                ids::trace_id_from_bytes(s.trace),
                ids::span_id_from_bytes(s.span),
                ids::span_id_from_bytes(s.parent),
                resource,
                s.start,
                s.end,
                index,
                opts,
            );
            index += 1;
            let (trace, span, parent, r) = match checked {
                Ok(checked) => checked,
                Err(e) => {
                    out.rejects.push(e);
                    continue;
                }
            };
            out.spans.push(SpanRef {
                trace,
                span,
                parent,
                start: s.start,
                end: s.end,
                kind: SpanKind::from_i32(s.kind),
                status: SpanStatus::from_i32(s.status),
                pii: s.pii,
                resource: resource_index(&mut resource_at, r, &mut out.resources),
                name: s.name,
            });
        }
    });
    match walked {
        Ok(()) => out,
        Err(e) => SpanBatch {
            rejects: vec![Rejection::message(Reason::MalformedProtobuf, e.to_string())],
            ..SpanBatch::default()
        },
    }
}

/// The shared `Resource` of each of a batch's resources.
fn shared_resources(resources: &[ResourceRef<'_>]) -> Vec<Arc<Resource>> {
    resources
        .iter()
        .map(|r| shared_resource(r.service(), r.environment(), r.version()))
        .collect()
}

#[inline(never)]
fn decode_traces_proto(bytes: &[u8], opts: &DecodeOptions) -> Decoded<Span> {
    let batch = decode_span_batch(bytes, opts);
    let resources = shared_resources(&batch.resources);
    Decoded {
        records: batch
            .spans
            .iter()
            .map(|s| Span {
                trace: s.trace,
                span: s.span,
                parent: s.parent,
                start: s.start,
                end: s.end,
                kind: s.kind,
                status: s.status,
                pii: s.pii,
                resource: Arc::clone(&resources[s.resource as usize]),
                name: span_name(s.name()),
            })
            .collect(),
        rejects: batch.rejects,
    }
}

#[inline(never)]
fn decode_traces_json(bytes: &[u8], opts: &DecodeOptions) -> Decoded<Span> {
    json::decode::<json::Traces>(bytes, Origin::default(), opts)
}

fn push<T>(out: &mut Decoded<T>, r: Result<T, Rejection>) {
    match r {
        Ok(t) => out.records.push(t),
        Err(e) => out.rejects.push(e),
    }
}

/// The checks of a span, in their order: its ids and resource, or why it is
/// rejected.
#[allow(clippy::too_many_arguments)]
#[inline]
fn check_span<R>(
    trace: Result<u128, IdError>,
    span: Result<u64, IdError>,
    parent: Result<u64, IdError>,
    resource: Option<R>,
    start: u64,
    end: u64,
    index: u32,
    opts: &DecodeOptions,
) -> Result<(u128, u64, u64, R), Rejection> {
    let bad = |reason, detail: String| Rejection::record(reason, index, detail);
    let trace = trace.map_err(|e| bad(Reason::InvalidTraceId, format!("trace id: {e}")))?;
    let span = span.map_err(|e| bad(Reason::InvalidSpanId, format!("span id: {e}")))?;
    let parent =
        parent.map_err(|e| bad(Reason::InvalidParentSpanId, format!("parent span id: {e}")))?;
    if trace == 0 {
        return Err(bad(Reason::MissingTraceId, "span has no trace id".into()));
    }
    if span == 0 {
        return Err(bad(Reason::MissingSpanId, "span has no span id".into()));
    }
    let Some(resource) = resource else {
        return Err(bad(
            Reason::MissingService,
            "resource has no service.name".into(),
        ));
    };
    if start == 0 && end == 0 {
        return Err(bad(
            Reason::MissingTimestamp,
            "start and end are both 0".into(),
        ));
    }
    if opts.is_future(start.max(end)) {
        return Err(bad(
            Reason::FutureTimestamp,
            "span time is beyond max_future_skew".into(),
        ));
    }
    Ok((trace, span, parent, resource))
}

fn validate_span(
    raw: RawSpan,
    resource: &Option<Arc<Resource>>,
    index: u32,
    opts: &DecodeOptions,
) -> Result<Span, Rejection> {
    let (trace, span, parent, resource) = check_span(
        raw.trace,
        raw.span,
        raw.parent,
        resource.as_ref(),
        raw.start,
        raw.end,
        index,
        opts,
    )?;
    Ok(Span {
        trace,
        span,
        parent,
        start: raw.start,
        end: raw.end,
        kind: SpanKind::from_i32(raw.kind),
        status: SpanStatus::from_i32(raw.status),
        pii: raw.pii,
        resource: Arc::clone(resource),
        name: raw.name,
    })
}

/// A log record as read off the wire, before validation; shared by both encodings.
struct RawLog {
    trace: Result<u128, IdError>,
    /// Checked only: the model has no span id for logs.
    span: Result<u64, IdError>,
    time: u64,
    observed: u64,
    severity: i32,
    attrs: AttrFlags,
}

/// Decodes one `otlp_logs` protobuf message to the compact form: the same
/// records and rejections as [`decode_logs`].
pub fn decode_log_batch<'a>(bytes: &'a [u8], opts: &DecodeOptions) -> LogBatch<'a> {
    log_batch(bytes, opts, &mut memo::Memo::disabled())
}

/// [`decode_log_batch`], with the resources read through `memo` (see
/// [`decode_span_batch_with`]).
pub fn decode_log_batch_with<'a, T: Copy>(
    bytes: &'a [u8],
    opts: &DecodeOptions,
    memo: &mut ResourceMemo<T>,
) -> LogBatch<'a> {
    log_batch(bytes, opts, &mut memo.memo)
}

fn log_batch<'a>(bytes: &'a [u8], opts: &DecodeOptions, memo: &mut memo::Memo) -> LogBatch<'a> {
    let mut out = LogBatch {
        resources: Vec::with_capacity(32),
        // A log record takes at least ~40 bytes of a message.
        logs: Vec::with_capacity(bytes.len() / 64),
        rejects: Vec::new(),
    };
    let mut index = 0u32;
    let walked = wire::logs(bytes, opts, memo, |attrs, key, records| {
        let resource = resource_ref(attrs, key);
        let mut resource_at = None;
        for l in records.drain(..) {
            let checked = check_log(
                ids::trace_id_from_bytes(l.trace),
                ids::span_id_from_bytes(l.span),
                resource,
                l.time,
                l.observed,
                index,
                opts,
            );
            let this = index;
            index += 1;
            let (trace, time, r) = match checked {
                Ok(checked) => checked,
                Err(e) => {
                    out.rejects.push(e);
                    continue;
                }
            };
            let request = l.attrs.request;
            out.logs.push(LogRef {
                trace,
                time,
                index: this,
                severity: l.severity,
                request,
                error_request: request && (l.severity >= 17 || l.attrs.status_5xx),
                pii: l.attrs.pii,
                resource: resource_index(&mut resource_at, r, &mut out.resources),
            });
        }
    });
    match walked {
        Ok(()) => out,
        Err(e) => LogBatch {
            rejects: vec![Rejection::message(Reason::MalformedProtobuf, e.to_string())],
            ..LogBatch::default()
        },
    }
}

#[inline(never)]
fn decode_logs_proto(bytes: &[u8], origin: Origin, opts: &DecodeOptions) -> Decoded<LogRecord> {
    let batch = decode_log_batch(bytes, opts);
    let resources = shared_resources(&batch.resources);
    Decoded {
        records: batch
            .logs
            .iter()
            .map(|l| LogRecord {
                trace: l.trace,
                time: l.time,
                origin: Origin {
                    index: l.index,
                    ..origin
                },
                severity: l.severity,
                request: l.request,
                error_request: l.error_request,
                pii: l.pii,
                resource: Arc::clone(&resources[l.resource as usize]),
            })
            .collect(),
        rejects: batch.rejects,
    }
}

#[inline(never)]
fn decode_logs_json(bytes: &[u8], origin: Origin, opts: &DecodeOptions) -> Decoded<LogRecord> {
    json::decode::<json::Logs>(bytes, origin, opts)
}

/// The checks of a log record, in their order: its trace id, event time and
/// resource, or why it is rejected.
#[inline]
fn check_log<R>(
    trace: Result<u128, IdError>,
    span: Result<u64, IdError>,
    resource: Option<R>,
    time: u64,
    observed: u64,
    index: u32,
    opts: &DecodeOptions,
) -> Result<(u128, u64, R), Rejection> {
    let bad = |reason, detail: &str| Rejection::record(reason, index, detail);
    let trace = trace.map_err(|e| bad(Reason::InvalidTraceId, &format!("trace id: {e}")))?;
    span.map_err(|e| bad(Reason::InvalidSpanId, &format!("span id: {e}")))?;
    let Some(resource) = resource else {
        return Err(bad(Reason::MissingService, "resource has no service.name"));
    };
    let time = if time != 0 { time } else { observed };
    if time == 0 {
        return Err(bad(
            Reason::MissingTimestamp,
            "time and observed time are both 0",
        ));
    }
    if opts.is_future(time) {
        return Err(bad(
            Reason::FutureTimestamp,
            "log time is beyond max_future_skew",
        ));
    }
    Ok((trace, time, resource))
}

fn validate_log(
    raw: RawLog,
    resource: &Option<Arc<Resource>>,
    origin: Origin,
    opts: &DecodeOptions,
) -> Result<LogRecord, Rejection> {
    let (trace, time, resource) = check_log(
        raw.trace,
        raw.span,
        resource.as_ref(),
        raw.time,
        raw.observed,
        origin.index,
        opts,
    )?;
    let request = raw.attrs.request;
    Ok(LogRecord {
        trace,
        time,
        origin,
        severity: raw.severity,
        request,
        error_request: request && (raw.severity >= 17 || raw.attrs.status_5xx),
        pii: raw.attrs.pii,
        resource: Arc::clone(resource),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_severity_names_and_numbers() {
        let opts = DecodeOptions::default();
        let doc = |sev: &str| {
            format!(
                r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"a"}}}}]}},
                "scopeLogs":[{{"logRecords":[{{"timeUnixNano":"1","severityNumber":{sev}}}]}}]}}]}}"#
            )
        };
        let sev = |s: &str| {
            decode_logs(
                doc(s).as_bytes(),
                Encoding::OtlpJson,
                Origin::default(),
                &opts,
            )
        };
        assert_eq!(sev("17").records[0].severity, 17);
        assert_eq!(sev("\"SEVERITY_NUMBER_ERROR\"").records[0].severity, 17);
        assert_eq!(sev("\"SEVERITY_NUMBER_FATAL4\"").records[0].severity, 24);
        assert_eq!(
            sev("\"SEVERITY_NUMBER_LOUD\"").rejects[0].reason,
            Reason::MalformedJson
        );
    }

    #[test]
    fn a_bad_span_rejects_only_itself() {
        let opts = DecodeOptions::default();
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a"}}]},
            "scopeSpans":[{"spans":[
              {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","startTimeUnixNano":"1","endTimeUnixNano":"2"},
              {"traceId":"5B8EFFF798038103D269B633813FC60C5B8EFFF798038103","spanId":"EEE19B7EC3C1B175","startTimeUnixNano":"1"},
              {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B176","startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;
        let d = decode_traces(json.as_bytes(), Encoding::OtlpJson, &opts);
        assert_eq!(d.records.len(), 2);
        assert_eq!(
            d.rejects,
            vec![Rejection::record(
                Reason::InvalidTraceId,
                1,
                "trace id: wrong length 48"
            )]
        );
        assert_eq!(d.records[0].trace, 0x5b8efff798038103d269b633813fc60c);
    }

    #[test]
    fn a_log_span_id_of_the_wrong_length_is_rejected() {
        use prost::Message;
        let opts = DecodeOptions::default();
        let now = opts.now_ns;
        let log = |span_id: Vec<u8>| proto::LogRecord {
            time_unix_nano: now,
            trace_id: vec![7; 16],
            span_id,
            ..Default::default()
        };
        let data = proto::LogsData {
            resource_logs: vec![proto::ResourceLogs {
                resource: Some(proto::Resource {
                    attributes: vec![proto::KeyValue::string("service.name", "a")],
                }),
                scope_logs: vec![proto::ScopeLogs {
                    log_records: vec![
                        log(vec![1; 8]),
                        log(vec![1; 6]),
                        log(vec![]),
                        log(vec![0; 8]),
                    ],
                }],
            }],
        };
        let d = decode_logs(
            &data.encode_to_vec(),
            Encoding::OtlpProto,
            Origin::default(),
            &opts,
        );
        assert_eq!(d.records.len(), 3);
        assert_eq!(
            d.rejects,
            vec![Rejection::record(
                Reason::InvalidSpanId,
                1,
                "span id: wrong length 6"
            )]
        );

        let json = |span: &str| {
            format!(
                r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"a"}}}}]}},
                "scopeLogs":[{{"logRecords":[{{"timeUnixNano":"{now}","traceId":"0af7651916cd43dd8448eb211c80319c"{span}}}]}}]}}]}}"#
            )
        };
        let decode = |span: &str| {
            decode_logs(
                json(span).as_bytes(),
                Encoding::OtlpJson,
                Origin::default(),
                &opts,
            )
        };
        for ok in [
            "",
            r#","spanId":"""#,
            r#","spanId":"B7AD6B7169203331""#,
            r#","span_id":"b7ad6b7169203331""#,
        ] {
            let d = decode(ok);
            assert_eq!((d.records.len(), d.rejects.len()), (1, 0), "{ok}");
        }
        let bad = decode(r#","spanId":"b7ad6b716920""#);
        assert_eq!(
            bad.rejects,
            vec![Rejection::record(
                Reason::InvalidSpanId,
                0,
                "span id: wrong length 12"
            )]
        );
        let bad = decode(r#","spanId":"b7ad6b716920333g""#);
        assert_eq!(bad.rejects[0].reason, Reason::InvalidSpanId);
        let bad = decode(r#","spanId":5"#);
        assert_eq!(bad.rejects[0].reason, Reason::MalformedJson);
        assert_eq!(bad.rejects[0].index, Some(0));
    }

    #[test]
    fn protobuf_ids_of_the_wrong_length_are_rejected() {
        use prost::Message;
        let span = |trace: Vec<u8>, parent: Vec<u8>| proto::Span {
            trace_id: trace,
            span_id: vec![1; 8],
            parent_span_id: parent,
            start_time_unix_nano: 5,
            end_time_unix_nano: 6,
            ..Default::default()
        };
        let data = proto::TracesData {
            resource_spans: vec![proto::ResourceSpans {
                resource: Some(proto::Resource {
                    attributes: vec![proto::KeyValue::string("service.name", "a")],
                }),
                scope_spans: vec![proto::ScopeSpans {
                    spans: vec![
                        span(vec![1; 16], vec![]),
                        span(vec![1; 15], vec![]),
                        span(vec![1; 16], vec![2; 3]),
                    ],
                }],
            }],
        };
        let d = decode_traces(
            &data.encode_to_vec(),
            Encoding::OtlpProto,
            &DecodeOptions::default(),
        );
        assert_eq!(d.records.len(), 1);
        let reasons: Vec<Reason> = d.rejects.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            vec![Reason::InvalidTraceId, Reason::InvalidParentSpanId]
        );
        let bad = decode_traces(
            &[0x0a, 0x05, 0x01],
            Encoding::OtlpProto,
            &DecodeOptions::default(),
        );
        assert_eq!(bad.rejects[0].reason, Reason::MalformedProtobuf);
        assert_eq!(bad.rejects[0].index, None);
    }
}

/// The decoders as they were before the zero-copy walk and the one-pass JSON
/// decoder (prost structs, serde derive with `RawValue` per record), kept to test
/// the new ones against. Only the log span id check (a span id of the wrong
/// length or not hex is `invalid_span_id`) was added to them.
#[cfg(test)]
mod reference {
    use std::sync::Arc;

    use prost::Message;

    use super::proto::{self, any_value::Value};
    use super::{REQUEST_ATTRIBUTES, STATUS_CODE_ATTRIBUTES};
    use crate::ids::{self, IdError};
    use crate::model::{span_name, LogRecord, Origin, Resource, Span, SpanKind, SpanStatus};
    use crate::reject::{Reason, Rejection};
    use crate::{DecodeOptions, Decoded};

    /// `json.rs` as it was: serde derive, `RawValue` per record, untagged
    /// number-or-string, attributes converted into the prost structs.
    #[allow(dead_code)]
    mod json {
        use serde::de::{self, Deserializer};
        use serde::Deserialize;
        use serde_json::value::RawValue;

        use crate::otlp::proto::{self, any_value::Value};

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub(crate) struct TracesData {
            #[serde(default, alias = "resource_spans")]
            pub resource_spans: Vec<ResourceSpans>,
        }

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub(crate) struct ResourceSpans {
            #[serde(default)]
            pub resource: Option<Resource>,
            #[serde(default, alias = "scope_spans")]
            pub scope_spans: Vec<ScopeSpans>,
        }

        #[derive(Deserialize)]
        pub(crate) struct Resource {
            #[serde(default)]
            pub attributes: Vec<KeyValue>,
        }

        #[derive(Deserialize)]
        pub(crate) struct ScopeSpans {
            #[serde(default)]
            pub spans: Vec<Box<RawValue>>,
        }

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub(crate) struct Span {
            #[serde(default, alias = "trace_id")]
            pub trace_id: String,
            #[serde(default, alias = "span_id")]
            pub span_id: String,
            #[serde(default, alias = "parent_span_id")]
            pub parent_span_id: String,
            #[serde(default, alias = "start_time_unix_nano", deserialize_with = "de_u64")]
            pub start_time_unix_nano: u64,
            #[serde(default, alias = "end_time_unix_nano", deserialize_with = "de_u64")]
            pub end_time_unix_nano: u64,
            #[serde(default, deserialize_with = "de_span_kind")]
            pub kind: i32,
            /// Any JSON value; only a string is a name.
            #[serde(default)]
            pub name: serde_json::Value,
            #[serde(default)]
            pub attributes: Vec<KeyValue>,
            #[serde(default)]
            pub status: Option<Status>,
        }

        #[derive(Deserialize)]
        pub(crate) struct Status {
            #[serde(default, deserialize_with = "de_status_code")]
            pub code: i32,
        }

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub(crate) struct LogsData {
            #[serde(default, alias = "resource_logs")]
            pub resource_logs: Vec<ResourceLogs>,
        }

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub(crate) struct ResourceLogs {
            #[serde(default)]
            pub resource: Option<Resource>,
            #[serde(default, alias = "scope_logs")]
            pub scope_logs: Vec<ScopeLogs>,
        }

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub(crate) struct ScopeLogs {
            #[serde(default, alias = "log_records")]
            pub log_records: Vec<Box<RawValue>>,
        }

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub(crate) struct LogRecord {
            #[serde(default, alias = "time_unix_nano", deserialize_with = "de_u64")]
            pub time_unix_nano: u64,
            #[serde(
                default,
                alias = "observed_time_unix_nano",
                deserialize_with = "de_u64"
            )]
            pub observed_time_unix_nano: u64,
            #[serde(default, alias = "severity_number", deserialize_with = "de_severity")]
            pub severity_number: i32,
            #[serde(default)]
            pub body: Option<AnyValue>,
            #[serde(default)]
            pub attributes: Vec<KeyValue>,
            #[serde(default, alias = "trace_id")]
            pub trace_id: String,
            #[serde(default, alias = "span_id")]
            pub span_id: String,
        }

        #[derive(Deserialize)]
        pub(crate) struct KeyValue {
            pub key: String,
            #[serde(default)]
            pub value: Option<AnyValue>,
        }

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub(crate) struct AnyValue {
            #[serde(default, alias = "string_value")]
            string_value: Option<String>,
            #[serde(default, alias = "bool_value")]
            bool_value: Option<bool>,
            #[serde(default, alias = "int_value", deserialize_with = "de_opt_i64")]
            int_value: Option<i64>,
            #[serde(default, alias = "double_value")]
            double_value: Option<f64>,
            #[serde(default, alias = "array_value")]
            array_value: Option<Values<AnyValue>>,
            #[serde(default, alias = "kvlist_value")]
            kvlist_value: Option<Values<KeyValue>>,
            #[serde(default, alias = "bytes_value")]
            bytes_value: Option<String>,
        }

        #[derive(Deserialize)]
        struct Values<T> {
            #[serde(default = "Vec::new")]
            values: Vec<T>,
        }

        impl From<AnyValue> for proto::AnyValue {
            fn from(v: AnyValue) -> Self {
                let value = if let Some(s) = v.string_value {
                    Some(Value::StringValue(s))
                } else if let Some(b) = v.bool_value {
                    Some(Value::BoolValue(b))
                } else if let Some(i) = v.int_value {
                    Some(Value::IntValue(i))
                } else if let Some(d) = v.double_value {
                    Some(Value::DoubleValue(d))
                } else if let Some(a) = v.array_value {
                    Some(Value::ArrayValue(proto::ArrayValue {
                        values: a.values.into_iter().map(Into::into).collect(),
                    }))
                } else if let Some(kv) = v.kvlist_value {
                    Some(Value::KvlistValue(proto::KeyValueList {
                        values: kv.values.into_iter().map(Into::into).collect(),
                    }))
                } else {
                    v.bytes_value.map(|b| Value::BytesValue(b.into_bytes()))
                };
                proto::AnyValue { value }
            }
        }

        impl From<KeyValue> for proto::KeyValue {
            fn from(kv: KeyValue) -> Self {
                proto::KeyValue {
                    key: kv.key,
                    value: kv.value.map(Into::into),
                }
            }
        }

        /// Converts JSON attributes into the protobuf representation shared by both paths.
        pub(crate) fn attributes(kvs: Vec<KeyValue>) -> Vec<proto::KeyValue> {
            kvs.into_iter().map(Into::into).collect()
        }

        #[derive(Deserialize)]
        #[serde(untagged)]
        enum NumOrStr {
            U(u64),
            I(i64),
            F(f64),
            S(String),
        }

        fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
            match NumOrStr::deserialize(d)? {
                NumOrStr::U(u) => Ok(u),
                NumOrStr::I(i) => {
                    u64::try_from(i).map_err(|_| de::Error::custom("negative timestamp"))
                }
                NumOrStr::F(f) if f >= 0.0 && f.fract() == 0.0 => Ok(f as u64),
                NumOrStr::F(_) => Err(de::Error::custom("timestamp is not an integer")),
                NumOrStr::S(s) if s.is_empty() => Ok(0),
                NumOrStr::S(s) => s
                    .parse()
                    .map_err(|_| de::Error::custom("timestamp is not an integer")),
            }
        }

        fn de_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
            match NumOrStr::deserialize(d)? {
                NumOrStr::U(u) => i64::try_from(u)
                    .map(Some)
                    .map_err(|_| de::Error::custom("int64 overflow")),
                NumOrStr::I(i) => Ok(Some(i)),
                NumOrStr::F(f) if f.fract() == 0.0 => Ok(Some(f as i64)),
                NumOrStr::F(_) => Err(de::Error::custom("intValue is not an integer")),
                NumOrStr::S(s) => s
                    .parse()
                    .map(Some)
                    .map_err(|_| de::Error::custom("intValue is not an integer")),
            }
        }

        fn de_enum<'de, D: Deserializer<'de>>(
            d: D,
            names: &[(&str, i32)],
        ) -> Result<i32, D::Error> {
            match NumOrStr::deserialize(d)? {
                NumOrStr::U(u) => {
                    i32::try_from(u).map_err(|_| de::Error::custom("enum out of range"))
                }
                NumOrStr::I(i) => {
                    i32::try_from(i).map_err(|_| de::Error::custom("enum out of range"))
                }
                NumOrStr::F(_) => Err(de::Error::custom("enum is not an integer")),
                NumOrStr::S(s) => s
                    .parse()
                    .ok()
                    .or_else(|| names.iter().find(|(n, _)| *n == s).map(|(_, v)| *v))
                    .ok_or_else(|| de::Error::custom(format!("unknown enum value {s}"))),
            }
        }

        fn de_span_kind<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
            de_enum(
                d,
                &[
                    ("SPAN_KIND_UNSPECIFIED", 0),
                    ("SPAN_KIND_INTERNAL", 1),
                    ("SPAN_KIND_SERVER", 2),
                    ("SPAN_KIND_CLIENT", 3),
                    ("SPAN_KIND_PRODUCER", 4),
                    ("SPAN_KIND_CONSUMER", 5),
                ],
            )
        }

        fn de_status_code<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
            de_enum(
                d,
                &[
                    ("STATUS_CODE_UNSET", 0),
                    ("STATUS_CODE_OK", 1),
                    ("STATUS_CODE_ERROR", 2),
                ],
            )
        }

        fn de_severity<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
            const NAMES: [&str; 24] = [
                "TRACE", "TRACE2", "TRACE3", "TRACE4", "DEBUG", "DEBUG2", "DEBUG3", "DEBUG4",
                "INFO", "INFO2", "INFO3", "INFO4", "WARN", "WARN2", "WARN3", "WARN4", "ERROR",
                "ERROR2", "ERROR3", "ERROR4", "FATAL", "FATAL2", "FATAL3", "FATAL4",
            ];
            match NumOrStr::deserialize(d)? {
                NumOrStr::S(s) => {
                    if let Ok(n) = s.parse() {
                        return Ok(n);
                    }
                    match s.strip_prefix("SEVERITY_NUMBER_") {
                        Some("UNSPECIFIED") => Ok(0),
                        Some(name) => NAMES
                            .iter()
                            .position(|n| *n == name)
                            .map(|p| p as i32 + 1)
                            .ok_or_else(|| de::Error::custom(format!("unknown severity {s}"))),
                        None => Err(de::Error::custom(format!("unknown severity {s}"))),
                    }
                }
                NumOrStr::U(u) => {
                    i32::try_from(u).map_err(|_| de::Error::custom("enum out of range"))
                }
                NumOrStr::I(i) => {
                    i32::try_from(i).map_err(|_| de::Error::custom("enum out of range"))
                }
                NumOrStr::F(_) => Err(de::Error::custom("enum is not an integer")),
            }
        }
    }

    struct RawSpan<'a> {
        trace: Result<u128, IdError>,
        span: Result<u64, IdError>,
        parent: Result<u64, IdError>,
        start: u64,
        end: u64,
        kind: i32,
        status: i32,
        attributes: &'a [proto::KeyValue],
        name: &'a str,
    }

    #[inline(never)]
    pub(super) fn decode_traces_proto(bytes: &[u8], opts: &DecodeOptions) -> Decoded<Span> {
        let data = match proto::TracesData::decode(bytes) {
            Ok(d) => d,
            Err(e) => {
                return Decoded::failed(Rejection::message(
                    Reason::MalformedProtobuf,
                    e.to_string(),
                ))
            }
        };
        let mut out = Decoded::default();
        let mut index = 0u32;
        for rs in &data.resource_spans {
            let resource = resource_of(rs.resource.as_ref().map(|r| r.attributes.as_slice()));
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let raw = RawSpan {
                        trace: ids::trace_id_from_bytes(&s.trace_id),
                        span: ids::span_id_from_bytes(&s.span_id),
                        parent: ids::span_id_from_bytes(&s.parent_span_id),
                        start: s.start_time_unix_nano,
                        end: s.end_time_unix_nano,
                        kind: s.kind,
                        status: s.status.as_ref().map_or(0, |st| st.code),
                        attributes: &s.attributes,
                        name: &s.name,
                    };
                    push(&mut out, validate_span(raw, &resource, index, opts));
                    index += 1;
                }
            }
        }
        out
    }

    #[inline(never)]
    pub(super) fn decode_traces_json(bytes: &[u8], opts: &DecodeOptions) -> Decoded<Span> {
        let data: json::TracesData = match serde_json::from_slice(bytes) {
            Ok(d) => d,
            Err(e) => {
                return Decoded::failed(Rejection::message(Reason::MalformedJson, e.to_string()))
            }
        };
        let mut out = Decoded::default();
        let mut index = 0u32;
        for rs in data.resource_spans {
            let attrs = rs.resource.map(|r| json::attributes(r.attributes));
            let resource = resource_of(attrs.as_deref());
            for ss in rs.scope_spans {
                for raw_json in ss.spans {
                    let result = match serde_json::from_str::<json::Span>(raw_json.get()) {
                        Ok(s) => {
                            let attributes = json::attributes(s.attributes);
                            let raw = RawSpan {
                                trace: ids::trace_id_from_hex(&s.trace_id),
                                span: ids::span_id_from_hex(&s.span_id),
                                parent: ids::span_id_from_hex(&s.parent_span_id),
                                start: s.start_time_unix_nano,
                                end: s.end_time_unix_nano,
                                kind: s.kind,
                                status: s.status.map_or(0, |st| st.code),
                                attributes: &attributes,
                                name: s.name.as_str().unwrap_or_default(),
                            };
                            validate_span(raw, &resource, index, opts)
                        }
                        Err(e) => Err(Rejection::record(
                            Reason::MalformedJson,
                            index,
                            e.to_string(),
                        )),
                    };
                    push(&mut out, result);
                    index += 1;
                }
            }
        }
        out
    }

    fn push<T>(out: &mut Decoded<T>, r: Result<T, Rejection>) {
        match r {
            Ok(t) => out.records.push(t),
            Err(e) => out.rejects.push(e),
        }
    }

    fn validate_span(
        raw: RawSpan<'_>,
        resource: &Option<Arc<Resource>>,
        index: u32,
        opts: &DecodeOptions,
    ) -> Result<Span, Rejection> {
        let bad = |reason, detail: String| Rejection::record(reason, index, detail);
        let trace = raw
            .trace
            .map_err(|e| bad(Reason::InvalidTraceId, format!("trace id: {e}")))?;
        let span = raw
            .span
            .map_err(|e| bad(Reason::InvalidSpanId, format!("span id: {e}")))?;
        let parent = raw
            .parent
            .map_err(|e| bad(Reason::InvalidParentSpanId, format!("parent span id: {e}")))?;
        if trace == 0 {
            return Err(bad(Reason::MissingTraceId, "span has no trace id".into()));
        }
        if span == 0 {
            return Err(bad(Reason::MissingSpanId, "span has no span id".into()));
        }
        let Some(resource) = resource else {
            return Err(bad(
                Reason::MissingService,
                "resource has no service.name".into(),
            ));
        };
        if raw.start == 0 && raw.end == 0 {
            return Err(bad(
                Reason::MissingTimestamp,
                "start and end are both 0".into(),
            ));
        }
        if opts.is_future(raw.start.max(raw.end)) {
            return Err(bad(
                Reason::FutureTimestamp,
                "span time is beyond max_future_skew".into(),
            ));
        }
        Ok(Span {
            trace,
            span,
            parent,
            start: raw.start,
            end: raw.end,
            kind: SpanKind::from_i32(raw.kind),
            status: SpanStatus::from_i32(raw.status),
            pii: attributes_have_pii(raw.attributes, opts),
            resource: Arc::clone(resource),
            name: span_name(raw.name),
        })
    }

    struct RawLog<'a> {
        trace: Result<u128, IdError>,
        span: Result<u64, IdError>,
        time: u64,
        observed: u64,
        severity: i32,
        body: Option<&'a proto::AnyValue>,
        attributes: &'a [proto::KeyValue],
    }

    #[inline(never)]
    pub(super) fn decode_logs_proto(
        bytes: &[u8],
        origin: Origin,
        opts: &DecodeOptions,
    ) -> Decoded<LogRecord> {
        let data = match proto::LogsData::decode(bytes) {
            Ok(d) => d,
            Err(e) => {
                return Decoded::failed(Rejection::message(
                    Reason::MalformedProtobuf,
                    e.to_string(),
                ))
            }
        };
        let mut out = Decoded::default();
        let mut index = 0u32;
        for rl in &data.resource_logs {
            let resource = resource_of(rl.resource.as_ref().map(|r| r.attributes.as_slice()));
            for sl in &rl.scope_logs {
                for l in &sl.log_records {
                    let raw = RawLog {
                        trace: ids::trace_id_from_bytes(&l.trace_id),
                        span: ids::span_id_from_bytes(&l.span_id),
                        time: l.time_unix_nano,
                        observed: l.observed_time_unix_nano,
                        severity: l.severity_number,
                        body: l.body.as_ref(),
                        attributes: &l.attributes,
                    };
                    let origin = Origin { index, ..origin };
                    push(&mut out, validate_log(raw, &resource, origin, opts));
                    index += 1;
                }
            }
        }
        out
    }

    #[inline(never)]
    pub(super) fn decode_logs_json(
        bytes: &[u8],
        origin: Origin,
        opts: &DecodeOptions,
    ) -> Decoded<LogRecord> {
        let data: json::LogsData = match serde_json::from_slice(bytes) {
            Ok(d) => d,
            Err(e) => {
                return Decoded::failed(Rejection::message(Reason::MalformedJson, e.to_string()))
            }
        };
        let mut out = Decoded::default();
        let mut index = 0u32;
        for rl in data.resource_logs {
            let attrs = rl.resource.map(|r| json::attributes(r.attributes));
            let resource = resource_of(attrs.as_deref());
            for sl in rl.scope_logs {
                for raw_json in sl.log_records {
                    let origin = Origin { index, ..origin };
                    let result = match serde_json::from_str::<json::LogRecord>(raw_json.get()) {
                        Ok(l) => {
                            let attributes = json::attributes(l.attributes);
                            let body = l.body.map(proto::AnyValue::from);
                            let raw = RawLog {
                                trace: ids::trace_id_from_hex(&l.trace_id),
                                span: ids::span_id_from_hex(&l.span_id),
                                time: l.time_unix_nano,
                                observed: l.observed_time_unix_nano,
                                severity: l.severity_number,
                                body: body.as_ref(),
                                attributes: &attributes,
                            };
                            validate_log(raw, &resource, origin, opts)
                        }
                        Err(e) => Err(Rejection::record(
                            Reason::MalformedJson,
                            index,
                            e.to_string(),
                        )),
                    };
                    push(&mut out, result);
                    index += 1;
                }
            }
        }
        out
    }

    fn validate_log(
        raw: RawLog<'_>,
        resource: &Option<Arc<Resource>>,
        origin: Origin,
        opts: &DecodeOptions,
    ) -> Result<LogRecord, Rejection> {
        let bad = |reason, detail: &str| Rejection::record(reason, origin.index, detail);
        let trace = raw
            .trace
            .map_err(|e| bad(Reason::InvalidTraceId, &format!("trace id: {e}")))?;
        raw.span
            .map_err(|e| bad(Reason::InvalidSpanId, &format!("span id: {e}")))?;
        let Some(resource) = resource else {
            return Err(bad(Reason::MissingService, "resource has no service.name"));
        };
        let time = if raw.time != 0 {
            raw.time
        } else {
            raw.observed
        };
        if time == 0 {
            return Err(bad(
                Reason::MissingTimestamp,
                "time and observed time are both 0",
            ));
        }
        if opts.is_future(time) {
            return Err(bad(
                Reason::FutureTimestamp,
                "log time is beyond max_future_skew",
            ));
        }
        let mut request = false;
        let mut status_5xx = false;
        for kv in raw.attributes {
            if REQUEST_ATTRIBUTES.contains(&kv.key.as_str())
                || opts.request_attributes.contains(&kv.key)
            {
                request = true;
            }
            if STATUS_CODE_ATTRIBUTES.contains(&kv.key.as_str()) {
                status_5xx |= status_code(kv.value.as_ref()).is_some_and(|c| c >= 500);
            }
        }
        let pii = attributes_have_pii(raw.attributes, opts)
            || raw.body.is_some_and(|b| value_has_pii(b, opts));
        Ok(LogRecord {
            trace,
            time,
            origin,
            severity: raw.severity,
            request,
            error_request: request && (raw.severity >= 17 || status_5xx),
            pii,
            resource: Arc::clone(resource),
        })
    }

    fn status_code(v: Option<&proto::AnyValue>) -> Option<i64> {
        match v?.value.as_ref()? {
            Value::IntValue(i) => Some(*i),
            Value::StringValue(s) => s.trim().parse().ok(),
            Value::DoubleValue(d) => Some(*d as i64),
            _ => None,
        }
    }

    fn string_attr<'a>(attrs: &'a [proto::KeyValue], key: &str) -> Option<&'a str> {
        attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.as_str()),
                _ => None,
            }
        })
    }

    fn resource_of(attrs: Option<&[proto::KeyValue]>) -> Option<Arc<Resource>> {
        let attrs = attrs?;
        let service = string_attr(attrs, "service.name").filter(|s| !s.is_empty())?;
        let environment = string_attr(attrs, "deployment.environment.name")
            .or_else(|| string_attr(attrs, "deployment.environment"))
            .unwrap_or("");
        let version = string_attr(attrs, "service.version").unwrap_or("");
        Some(Arc::new(Resource {
            service: service.to_string(),
            environment: environment.to_string(),
            version: version.to_string(),
        }))
    }

    fn attributes_have_pii(attrs: &[proto::KeyValue], opts: &DecodeOptions) -> bool {
        attrs
            .iter()
            .any(|kv| kv.value.as_ref().is_some_and(|v| value_has_pii(v, opts)))
    }

    fn value_has_pii(v: &proto::AnyValue, opts: &DecodeOptions) -> bool {
        match &v.value {
            Some(Value::StringValue(s)) => opts.pii.matches(s),
            Some(Value::IntValue(i)) => *i >= 1_000_000_000_000 && opts.pii.matches(&i.to_string()),
            Some(Value::ArrayValue(a)) => a.values.iter().any(|x| value_has_pii(x, opts)),
            Some(Value::KvlistValue(kv)) => attributes_have_pii(&kv.values, opts),
            _ => false,
        }
    }
}

/// Old against new decoders on seeded random messages: valid, odd (shuffled,
/// duplicated and unknown fields, groups, deep nesting) and corrupted ones.
#[cfg(test)]
mod equivalence {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::reference;
    use super::ResourceMemo;
    use crate::model::Origin;
    use crate::{DecodeOptions, Decoded};

    const NOW: u64 = 1_767_225_600_000_000_000;

    fn opts() -> DecodeOptions {
        DecodeOptions {
            now_ns: NOW,
            max_future_skew_ns: 600_000_000_000,
            pii: crate::pii::PiiDetector::default(),
            request_attributes: vec!["custom.request".to_string()],
        }
    }

    fn same<T: PartialEq + std::fmt::Debug>(
        what: &str,
        bytes: &[u8],
        new: Decoded<T>,
        old: Decoded<T>,
    ) {
        if new.records != old.records || new.rejects != old.rejects {
            panic!(
                "{what} differs on {bytes:02x?}\nnew: {:?}\n{:?}\nold: {:?}\n{:?}",
                new.records, new.rejects, old.records, old.rejects
            );
        }
    }

    /// What the compared messages decoded to, to show the tests reach every case.
    #[derive(Debug, Default)]
    struct Stats {
        messages: usize,
        /// JSON messages (decoded as traces and as logs) the one-pass decoder took.
        one_pass: usize,
        records: usize,
        pii: usize,
        request: usize,
        error_request: usize,
        rejects: std::collections::BTreeMap<String, usize>,
    }

    impl Stats {
        fn add<T>(&mut self, d: &Decoded<T>, pii: impl Fn(&T) -> (bool, bool, bool)) {
            self.messages += 1;
            self.records += d.records.len();
            for r in &d.records {
                let (p, req, err) = pii(r);
                self.pii += usize::from(p);
                self.request += usize::from(req);
                self.error_request += usize::from(err);
            }
            for r in &d.rejects {
                let key = format!(
                    "{}{}",
                    r.reason,
                    if r.index.is_none() { " (message)" } else { "" }
                );
                *self.rejects.entry(key).or_default() += 1;
            }
        }
    }

    fn check_proto(bytes: &[u8], opts: &DecodeOptions, stats: &mut Stats) {
        let new = super::decode_traces_proto(bytes, opts);
        stats.add(&new, |s| (s.pii, false, false));
        same(
            "traces",
            bytes,
            new,
            reference::decode_traces_proto(bytes, opts),
        );
        let origin = Origin {
            partition: 3,
            offset: 77,
            index: 0,
        };
        let new = super::decode_logs_proto(bytes, origin, opts);
        stats.add(&new, |l| (l.pii, l.request, l.error_request));
        same(
            "logs",
            bytes,
            new,
            reference::decode_logs_proto(bytes, origin, opts),
        );
    }

    /// Random protobuf messages, written field by field so that fields can be
    /// shuffled, repeated, unknown or broken.
    struct Gen {
        rng: ChaCha8Rng,
    }

    const LEN: u8 = 2;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn key(tag: u32, wt: u8, out: &mut Vec<u8>) {
        varint(u64::from(tag) << 3 | u64::from(wt), out);
    }

    fn ld(tag: u32, body: &[u8], out: &mut Vec<u8>) {
        key(tag, LEN, out);
        varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }

    const PII: [&str; 6] = [
        "a@b.com",
        "mail alice@example.org now",
        "4111 1111 1111 1111",
        "ssn 123-45-6789",
        "Bearer abcdefghijklmnop",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ];
    const PLAIN: [&str; 6] = ["", "GET", "/api/items", "a@b", "4111 1111 1111 1112", "503"];
    const KEYS: [&str; 12] = [
        "service.name",
        "deployment.environment.name",
        "deployment.environment",
        "service.version",
        "http.request.method",
        "http.method",
        "rpc.method",
        "custom.request",
        "http.response.status_code",
        "http.status_code",
        "user.note",
        "",
    ];

    impl Gen {
        fn p(&mut self, p: f64) -> bool {
            self.rng.random_bool(p)
        }

        fn pick<'s>(&mut self, xs: &[&'s str]) -> &'s str {
            xs[self.rng.random_range(0..xs.len())]
        }

        fn string(&mut self) -> String {
            match self.rng.random_range(0..10) {
                0..=2 => self.pick(&PII).to_string(),
                3..=7 => self.pick(&PLAIN).to_string(),
                8 => format!(" {} ", self.rng.random_range(100..600)),
                _ => (0..self.rng.random_range(0..12))
                    .map(|_| self.rng.random_range(b' '..=b'~') as char)
                    .collect(),
            }
        }

        /// Bytes of a string field: mostly UTF-8, sometimes not.
        fn string_bytes(&mut self) -> Vec<u8> {
            if self.p(0.002) {
                vec![b'a', 0xff, 0xfe]
            } else {
                self.string().into_bytes()
            }
        }

        fn int(&mut self) -> i64 {
            match self.rng.random_range(0..6) {
                0 => 4_111_111_111_111_111,
                1 => 4_111_111_111_111_112,
                2 => self.rng.random_range(100..600),
                3 => -self.rng.random_range(0..1_000_000_000_000_000),
                4 => self.rng.random_range(999_999_999_990..1_000_000_000_010),
                _ => self.rng.random(),
            }
        }

        fn unknown(&mut self, out: &mut Vec<u8>, known: &[u32], depth: u32) {
            let mut tag = self.rng.random_range(1..20u32);
            if known.contains(&tag) {
                tag = 20 + self.rng.random_range(0..1000);
            }
            match self.rng.random_range(0..6) {
                0 => {
                    key(tag, 0, out);
                    varint(self.rng.random(), out);
                }
                1 => {
                    key(tag, 1, out);
                    out.extend_from_slice(&self.rng.random::<u64>().to_le_bytes());
                }
                2 => {
                    let body: Vec<u8> = (0..self.rng.random_range(0..8))
                        .map(|_| self.rng.random())
                        .collect();
                    ld(tag, &body, out);
                }
                3 => {
                    key(tag, 5, out);
                    out.extend_from_slice(&self.rng.random::<u32>().to_le_bytes());
                }
                _ => {
                    // A group, possibly nested.
                    key(tag, 3, out);
                    if depth < 3 {
                        for _ in 0..self.rng.random_range(0..3) {
                            self.unknown(out, &[], depth + 1);
                        }
                    }
                    key(tag, 4, out);
                }
            }
        }

        /// An `AnyValue` body; `depth` bounds the nesting.
        fn any_value(&mut self, depth: u32) -> Vec<u8> {
            let mut out = Vec::new();
            let n = if self.p(0.1) {
                self.rng.random_range(0..3)
            } else {
                1
            };
            for _ in 0..n {
                let variant = if depth == 0 {
                    self.rng.random_range(1..5)
                } else {
                    self.rng.random_range(1..8)
                };
                match variant {
                    1 => {
                        let s = self.string_bytes();
                        ld(1, &s, &mut out);
                    }
                    2 => {
                        key(2, 0, &mut out);
                        varint(self.rng.random_range(0..3), &mut out);
                    }
                    3 => {
                        key(3, 0, &mut out);
                        varint(self.int() as u64, &mut out);
                    }
                    4 => {
                        key(4, 1, &mut out);
                        let d = [503.7, 200.0, -1.0, 1e300, f64::NAN][self.rng.random_range(0..5)];
                        out.extend_from_slice(&d.to_le_bytes());
                    }
                    5 => {
                        let mut arr = Vec::new();
                        for _ in 0..self.rng.random_range(0..4) {
                            let v = self.any_value(depth - 1);
                            ld(1, &v, &mut arr);
                        }
                        ld(5, &arr, &mut out);
                    }
                    6 => {
                        let mut list = Vec::new();
                        for _ in 0..self.rng.random_range(0..4) {
                            let kv = self.key_value(depth - 1);
                            ld(1, &kv, &mut list);
                        }
                        ld(6, &list, &mut out);
                    }
                    _ => {
                        let b: Vec<u8> = (0..self.rng.random_range(0..6))
                            .map(|_| self.rng.random())
                            .collect();
                        ld(7, &b, &mut out);
                    }
                }
            }
            if self.p(0.05) {
                self.unknown(&mut out, &[1, 2, 3, 4, 5, 6, 7], 0);
            }
            out
        }

        /// An `AnyValue` nested `levels` arrays deep.
        fn deep_value(&mut self, levels: u32) -> Vec<u8> {
            let mut v = Vec::new();
            ld(1, PII[0].as_bytes(), &mut v);
            for _ in 0..levels {
                let mut arr = Vec::new();
                ld(1, &v, &mut arr);
                let mut any = Vec::new();
                if self.p(0.5) {
                    ld(5, &arr, &mut any);
                } else {
                    // A kvlist level costs one more.
                    let mut kv = Vec::new();
                    ld(1, b"k", &mut kv);
                    ld(2, &v, &mut kv);
                    let mut list = Vec::new();
                    ld(1, &kv, &mut list);
                    ld(6, &list, &mut any);
                }
                v = any;
            }
            v
        }

        fn key_value(&mut self, depth: u32) -> Vec<u8> {
            let mut fields: Vec<Vec<u8>> = Vec::new();
            let nkeys = if self.p(0.05) { 2 } else { 1 };
            for _ in 0..nkeys {
                let mut f = Vec::new();
                if self.p(0.003) {
                    ld(1, &[0xc3, 0x28], &mut f);
                } else {
                    let k = self.pick(&KEYS);
                    ld(1, k.as_bytes(), &mut f);
                }
                fields.push(f);
            }
            let nvalues = if self.p(0.1) {
                self.rng.random_range(0..3)
            } else {
                1
            };
            for _ in 0..nvalues {
                let mut f = Vec::new();
                let v = if self.p(0.002) {
                    let levels = self.rng.random_range(40..52);
                    self.deep_value(levels)
                } else {
                    self.any_value(depth)
                };
                ld(2, &v, &mut f);
                fields.push(f);
            }
            if self.p(0.05) {
                let mut f = Vec::new();
                self.unknown(&mut f, &[1, 2], 0);
                fields.push(f);
            }
            self.shuffle_join(fields)
        }

        fn shuffle_join(&mut self, mut fields: Vec<Vec<u8>>) -> Vec<u8> {
            if self.p(0.3) {
                for i in (1..fields.len()).rev() {
                    let j = self.rng.random_range(0..=i);
                    fields.swap(i, j);
                }
            }
            fields.concat()
        }

        fn id(&mut self, len: usize) -> Vec<u8> {
            match self.rng.random_range(0..40) {
                0 => vec![],
                1 => vec![0; len],
                2 => vec![1; len - 1],
                3 => vec![1; len + 1],
                _ => (0..len).map(|_| self.rng.random()).collect(),
            }
        }

        fn time(&mut self) -> u64 {
            match self.rng.random_range(0..12) {
                0 => 0,
                1 => NOW + 601_000_000_000,
                2 => self.rng.random(),
                _ => NOW - self.rng.random_range(0..3_600_000_000_000),
            }
        }

        fn resource(&mut self) -> Vec<u8> {
            let mut fields = Vec::new();
            let n = self.rng.random_range(0..6);
            for i in 0..n {
                let mut kv = Vec::new();
                let k = if i == 0 && self.p(0.8) {
                    "service.name"
                } else {
                    self.pick(&KEYS[..5])
                };
                ld(1, k.as_bytes(), &mut kv);
                let mut v = Vec::new();
                if self.p(0.9) {
                    let s = match self.rng.random_range(0..10) {
                        0 => String::new(),
                        _ => format!("svc-{}", self.rng.random_range(0..4)),
                    };
                    ld(1, s.as_bytes(), &mut v);
                } else {
                    v = self.any_value(1);
                }
                ld(2, &v, &mut kv);
                let mut f = Vec::new();
                ld(1, &kv, &mut f);
                fields.push(f);
            }
            if self.p(0.1) {
                let mut f = Vec::new();
                key(2, 0, &mut f);
                varint(3, &mut f);
                fields.push(f);
            }
            self.shuffle_join(fields)
        }

        fn status(&mut self) -> Vec<u8> {
            let mut fields = Vec::new();
            if self.p(0.5) {
                let mut f = Vec::new();
                let m = self.string_bytes();
                ld(2, &m, &mut f);
                fields.push(f);
            }
            for _ in 0..self.rng.random_range(0..3) {
                let mut f = Vec::new();
                key(3, 0, &mut f);
                varint(self.rng.random_range(0..4), &mut f);
                fields.push(f);
            }
            self.shuffle_join(fields)
        }

        fn span(&mut self) -> Vec<u8> {
            let mut fields: Vec<Vec<u8>> = Vec::new();
            let mut f = Vec::new();
            let t = self.id(16);
            ld(1, &t, &mut f);
            fields.push(std::mem::take(&mut f));
            let s = self.id(8);
            ld(2, &s, &mut f);
            fields.push(std::mem::take(&mut f));
            if self.p(0.7) {
                let p = self.id(8);
                ld(4, &p, &mut f);
                fields.push(std::mem::take(&mut f));
            }
            if self.p(0.7) {
                let n = self.string_bytes();
                ld(5, &n, &mut f);
                fields.push(std::mem::take(&mut f));
            }
            if self.p(0.8) {
                key(6, 0, &mut f);
                varint(
                    if self.p(0.9) {
                        self.rng.random_range(0..7)
                    } else {
                        self.rng.random()
                    },
                    &mut f,
                );
                fields.push(std::mem::take(&mut f));
            }
            for tag in [7, 8] {
                if self.p(0.95) {
                    key(tag, 1, &mut f);
                    f.extend_from_slice(&self.time().to_le_bytes());
                    fields.push(std::mem::take(&mut f));
                }
            }
            for _ in 0..self.rng.random_range(0..5) {
                let kv = self.key_value(2);
                ld(9, &kv, &mut f);
                fields.push(std::mem::take(&mut f));
            }
            for _ in 0..self.rng.random_range(0..3) {
                let st = self.status();
                ld(15, &st, &mut f);
                fields.push(std::mem::take(&mut f));
            }
            // Duplicates: a second occurrence of a field (last wins / merge).
            if self.p(0.1) {
                let i = self.rng.random_range(0..fields.len());
                fields.push(fields[i].clone());
            }
            for _ in 0..self.rng.random_range(0..3) {
                self.unknown(&mut f, &[1, 2, 4, 5, 6, 7, 8, 9, 15], 0);
                fields.push(std::mem::take(&mut f));
            }
            self.shuffle_join(fields)
        }

        fn log_record(&mut self) -> Vec<u8> {
            let mut fields: Vec<Vec<u8>> = Vec::new();
            let mut f = Vec::new();
            for tag in [1, 11] {
                if self.p(0.8) {
                    key(tag, 1, &mut f);
                    f.extend_from_slice(&self.time().to_le_bytes());
                    fields.push(std::mem::take(&mut f));
                }
            }
            if self.p(0.8) {
                key(2, 0, &mut f);
                varint(
                    if self.p(0.9) {
                        self.rng.random_range(0..25)
                    } else {
                        self.rng.random()
                    },
                    &mut f,
                );
                fields.push(std::mem::take(&mut f));
            }
            for _ in 0..self.rng.random_range(0..3) {
                let v = self.any_value(2);
                ld(5, &v, &mut f);
                fields.push(std::mem::take(&mut f));
            }
            for _ in 0..self.rng.random_range(0..5) {
                let kv = self.key_value(2);
                ld(6, &kv, &mut f);
                fields.push(std::mem::take(&mut f));
            }
            if self.p(0.9) {
                let t = self.id(16);
                ld(9, &t, &mut f);
                fields.push(std::mem::take(&mut f));
            }
            if self.p(0.5) {
                let s = self.id(8);
                ld(10, &s, &mut f);
                fields.push(std::mem::take(&mut f));
            }
            if self.p(0.1) && !fields.is_empty() {
                let i = self.rng.random_range(0..fields.len());
                fields.push(fields[i].clone());
            }
            for _ in 0..self.rng.random_range(0..3) {
                self.unknown(&mut f, &[1, 2, 5, 6, 9, 10, 11], 0);
                fields.push(std::mem::take(&mut f));
            }
            self.shuffle_join(fields)
        }

        /// A `TracesData` (or, with `logs`, a `LogsData`).
        fn message(&mut self, logs: bool) -> Vec<u8> {
            let mut top = Vec::new();
            for _ in 0..self.rng.random_range(0..4) {
                let mut fields: Vec<Vec<u8>> = Vec::new();
                let resources = if self.p(0.85) {
                    1
                } else {
                    self.rng.random_range(0..3)
                };
                for _ in 0..resources {
                    let mut f = Vec::new();
                    let r = self.resource();
                    ld(1, &r, &mut f);
                    fields.push(f);
                }
                for _ in 0..self.rng.random_range(0..3) {
                    let mut scope = Vec::new();
                    if self.p(0.3) {
                        ld(1, b"\x0a\x03gen", &mut scope);
                    }
                    for _ in 0..self.rng.random_range(0..6) {
                        let rec = if logs { self.log_record() } else { self.span() };
                        ld(2, &rec, &mut scope);
                    }
                    if self.p(0.1) {
                        ld(3, b"https://schema", &mut scope);
                    }
                    let mut f = Vec::new();
                    ld(2, &scope, &mut f);
                    fields.push(f);
                }
                if self.p(0.05) {
                    let mut f = Vec::new();
                    self.unknown(&mut f, &[1, 2], 0);
                    fields.push(f);
                }
                let rs = self.shuffle_join(fields);
                ld(1, &rs, &mut top);
            }
            if self.p(0.05) {
                self.unknown(&mut top, &[1], 0);
            }
            top
        }

        /// A corrupted copy of `msg`.
        fn corrupt(&mut self, msg: &[u8]) -> Vec<u8> {
            let mut m = msg.to_vec();
            match self.rng.random_range(0..4) {
                0 if !m.is_empty() => {
                    let i = self.rng.random_range(0..m.len());
                    m[i] = self.rng.random();
                }
                1 if !m.is_empty() => {
                    let i = self.rng.random_range(0..m.len());
                    m[i] ^= 1 << self.rng.random_range(0..8);
                }
                2 => {
                    let i = self.rng.random_range(0..=m.len());
                    let b = [0x80, 0xff, 0x07, 0x06, 0x0b, 0x0c, 0x00][self.rng.random_range(0..7)];
                    m.insert(i, b);
                }
                _ if !m.is_empty() => {
                    let i = self.rng.random_range(0..m.len());
                    m.remove(i);
                }
                _ => {}
            }
            m
        }
    }

    #[test]
    fn protobuf_decoders_match_prost() {
        let opts = opts();
        let mut g = Gen {
            rng: ChaCha8Rng::seed_from_u64(0x0c0ffee),
        };
        let mut stats = Stats::default();
        let mut whole = Stats::default();
        for i in 0..4_000 {
            let logs = i % 2 == 1;
            let msg = g.message(logs);
            check_proto(&msg, &opts, &mut whole);
            for _ in 0..4 {
                let bad = g.corrupt(&msg);
                check_proto(&bad, &opts, &mut stats);
            }
            if i % 25 == 0 {
                for len in 0..msg.len() {
                    check_proto(&msg[..len], &opts, &mut stats);
                }
            }
        }
        println!("uncorrupted: {whole:#?}\ncorrupted: {stats:#?}");
        assert!(stats.messages > 40_000);
    }

    #[test]
    fn protobuf_edge_cases_match_prost() {
        let opts = opts();
        let mut stats = Stats::default();
        // A valid span inside ResourceSpans/ScopeSpans, to wrap odd fields with.
        let wrap = |span_extra: &[u8]| {
            let mut span = Vec::new();
            ld(1, &[1; 16], &mut span);
            ld(2, &[2; 8], &mut span);
            key(7, 1, &mut span);
            span.extend_from_slice(&NOW.to_le_bytes());
            span.extend_from_slice(span_extra);
            let mut scope = Vec::new();
            ld(2, &span, &mut scope);
            let mut rs = Vec::new();
            ld(1, b"\x0a\x13\x0a\x0cservice.name\x12\x03\x0a\x01a", &mut rs);
            ld(2, &scope, &mut rs);
            let mut msg = Vec::new();
            ld(1, &rs, &mut msg);
            msg
        };
        let odd: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x00],                                                       // tag 0
            vec![0x0e],                                                       // wire type 6
            vec![0x0f],                                                       // wire type 7
            vec![0x0c],                               // end group, top level
            vec![0x0b, 0x0c],                         // empty group, tag 1
            vec![0x13, 0x1c],                         // group tag 2, ended by tag 3
            vec![0x80, 0x80, 0x80, 0x80, 0x10],       // key 2^32
            vec![0xf8, 0xff, 0xff, 0xff, 0x0f, 0x00], // key u32::MAX & !7: tag 2^29-1, varint
            vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], // 10-byte key
            vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02], // 10th byte 2
            vec![0xff; 11],
            vec![
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ], // unknown field 1 as varint
            vec![
                0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
            ], // huge length
            vec![0x0d, 1, 2, 3],                         // fixed32, short
            vec![0x09, 1, 2, 3, 4, 5, 6, 7],             // fixed64, short
            vec![0x10, 0x01],                            // resource_spans as varint
            vec![0x12, 0x00],                            // unknown field 2, empty
            vec![0x0a, 0x02, 0x08],                      // nested message cut by its length
            vec![0x0a, 0x02, 0x12, 0x05, 1, 2, 3, 4, 5], // inner length past the outer one
        ];
        for o in &odd {
            check_proto(o, &opts, &mut stats);
            let mut m = wrap(&[]);
            m.extend_from_slice(o);
            check_proto(&m, &opts, &mut stats);
            // The same bytes as fields of a span.
            check_proto(&wrap(o), &opts, &mut stats);
        }
        // Known span fields with the wrong wire type, and a name that is not UTF-8.
        for extra in [
            &[0x30, 0x00][..],                                 // kind as varint (right)
            &[0x31, 0, 0, 0, 0, 0, 0, 0, 0],                   // kind as fixed64
            &[0x38, 0x05],                                     // start as varint
            &[0x0d, 0, 0, 0, 0],                               // trace id as fixed32
            &[0x2a, 0x02, 0xc3, 0x28],                         // name not UTF-8
            &[0x7a, 0x02, 0x18, 0x02],                         // status with code 2
            &[0x7a, 0x02, 0x18, 0x02, 0x7a, 0x02, 0x12, 0x00], // status merged
            &[0x7a, 0x02, 0x1a, 0x00],                         // status code as bytes
            &[0x4b, 0x4c],                                     // attributes as a group
        ] {
            check_proto(&wrap(extra), &opts, &mut stats);
        }
        // Attributes whose fields take the general path of the wire walk: keys
        // written in two bytes, known fields with the wrong wire type.
        let attribute = |kv: &[u8]| {
            let mut f = Vec::new();
            ld(9, kv, &mut f);
            wrap(&f)
        };
        let pii_value = b"\x0a\x07a@b.com";
        let mut attributes: Vec<Vec<u8>> = vec![
            [&[0x8a, 0x00, 0x01, b'k', 0x12, 0x09][..], pii_value].concat(), // key: 2-byte key
            [&[0x0a, 0x01, b'k', 0x92, 0x00, 0x09][..], pii_value].concat(), // value: 2-byte key
            vec![
                0x0a, 0x01, b'k', 0x12, 0x0a, 0x8a, 0x00, 0x07, b'a', b'@', b'b', b'.', b'c', b'o',
                b'm',
            ], // string: 2-byte key
            vec![0x08, 0x01],                                                // key as varint
            vec![0x10, 0x01],                                                // value as varint
            vec![0x12, 0x02, 0x08, 0x01], // string value as varint
            vec![0x12, 0x02, 0x1a, 0x00], // int value as bytes
            vec![0x12, 0x02, 0x20, 0x01], // double value as varint
            vec![0x12, 0x02, 0x28, 0x01], // array value as varint
            vec![0x12, 0x02, 0x30, 0x01], // kvlist value as varint
            vec![0x12, 0x02, 0x3b, 0x3c], // bytes value as a group
            vec![0x12, 0x02, 0x11, 0x00], // bool value as fixed64 (short)
            vec![0x12, 0x04, 0x2a, 0x02, 0x08, 0x01], // array element as varint
            vec![0x12, 0x04, 0x32, 0x02, 0x08, 0x01], // kvlist element as varint
            vec![0x12, 0x03, 0x18, 0x80, 0x80], // int value cut short
        ];
        attributes.push([&[0x12, 0x0d, 0x2a, 0x0b, 0x0a, 0x09][..], pii_value].concat()); // array
        attributes.push(
            [
                &[0x12, 0x0f, 0x32, 0x0d, 0x0a, 0x0b, 0x12, 0x09][..],
                pii_value,
            ]
            .concat(),
        ); // kvlist
        for kv in &attributes {
            check_proto(&attribute(kv), &opts, &mut stats);
        }
        assert!(stats.messages >= 2 * (3 * odd.len() + 9 + 17));
    }

    #[test]
    fn protobuf_recursion_limit_matches_prost() {
        let opts = opts();
        let mut g = Gen {
            rng: ChaCha8Rng::seed_from_u64(1),
        };
        let mut stats = Stats::default();
        for levels in 0..60 {
            let v = g.deep_value(levels);
            let mut kv = Vec::new();
            ld(1, b"k", &mut kv);
            ld(2, &v, &mut kv);
            let mut span = Vec::new();
            ld(1, &[1; 16], &mut span);
            ld(2, &[1; 8], &mut span);
            key(7, 1, &mut span);
            span.extend_from_slice(&NOW.to_le_bytes());
            ld(9, &kv, &mut span);
            let mut scope = Vec::new();
            ld(2, &span, &mut scope);
            let res = b"\x0a\x13\x0a\x0cservice.name\x12\x03\x0a\x01a";
            let mut rs = Vec::new();
            ld(1, res, &mut rs);
            ld(2, &scope, &mut rs);
            let mut msg = Vec::new();
            ld(1, &rs, &mut msg);
            check_proto(&msg, &opts, &mut stats);
            // Groups nested as deep.
            let mut group = Vec::new();
            for _ in 0..levels * 2 {
                key(3, 3, &mut group);
            }
            for _ in 0..levels * 2 {
                key(3, 4, &mut group);
            }
            let mut msg = Vec::new();
            let mut span = Vec::new();
            span.extend_from_slice(&group);
            let mut scope = Vec::new();
            ld(2, &span, &mut scope);
            let mut rs = Vec::new();
            ld(2, &scope, &mut rs);
            ld(1, &rs, &mut msg);
            check_proto(&msg, &opts, &mut stats);
        }
        println!("{stats:#?}");
    }

    fn check_json(bytes: &[u8], opts: &DecodeOptions, stats: &mut Stats) {
        use super::json::{one_pass, record_by_record, Logs, Traces};
        // Where the one-pass decoder answers, record by record gives the same.
        if let Some(d) = one_pass::<Traces>(bytes, Origin::default(), opts) {
            stats.one_pass += 1;
            let r = record_by_record::<Traces>(bytes, Origin::default(), opts);
            same("json traces one pass", bytes, d, r);
        }
        if let Some(d) = one_pass::<Logs>(bytes, Origin::default(), opts) {
            stats.one_pass += 1;
            let r = record_by_record::<Logs>(bytes, Origin::default(), opts);
            same("json logs one pass", bytes, d, r);
        }
        let new = super::decode_traces_json(bytes, opts);
        stats.add(&new, |s| (s.pii, false, false));
        same(
            "json traces",
            bytes,
            new,
            reference::decode_traces_json(bytes, opts),
        );
        let origin = Origin {
            partition: 1,
            offset: 5,
            index: 0,
        };
        let new = super::decode_logs_json(bytes, origin, opts);
        stats.add(&new, |l| (l.pii, l.request, l.error_request));
        same(
            "json logs",
            bytes,
            new,
            reference::decode_logs_json(bytes, origin, opts),
        );
    }

    /// A JSON value with its object members in a chosen order (duplicates allowed)
    /// and its strings already escaped.
    enum J {
        Raw(String),
        Str(String),
        Arr(Vec<J>),
        Obj(Vec<(String, J)>),
    }

    impl J {
        fn write(&self, g: &mut Gen, out: &mut String) {
            let ws = |g: &mut Gen, out: &mut String| {
                if g.p(0.05) {
                    out.push_str([" ", "\n", "\t ", "\r\n  "][g.rng.random_range(0..4)]);
                }
            };
            match self {
                J::Raw(r) => out.push_str(r),
                J::Str(s) => {
                    out.push('"');
                    out.push_str(s);
                    out.push('"');
                }
                J::Arr(xs) => {
                    out.push('[');
                    for (i, x) in xs.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        ws(g, out);
                        x.write(g, out);
                    }
                    out.push(']');
                }
                J::Obj(members) => {
                    out.push('{');
                    for (i, (k, v)) in members.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        ws(g, out);
                        out.push('"');
                        out.push_str(k);
                        out.push('"');
                        ws(g, out);
                        out.push(':');
                        ws(g, out);
                        v.write(g, out);
                    }
                    out.push('}');
                }
            }
        }
    }

    impl Gen {
        /// Escapes `text` for a JSON string, sometimes with needless `\u` escapes.
        fn esc(&mut self, text: &str) -> String {
            let mut out = String::new();
            for c in text.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c if c.is_ascii() && self.p(0.01) => {
                        out.push_str(&format!("\\u{:04X}", c as u32))
                    }
                    c => out.push(c),
                }
            }
            out
        }

        fn jstr(&mut self, text: &str) -> J {
            J::Str(self.esc(text))
        }

        /// A member name: the lowerCamelCase name or its snake_case alias.
        fn name(&mut self, camel: &str, snake: &str) -> String {
            let n = if self.p(0.2) { snake } else { camel };
            self.esc(n)
        }

        fn odd_value(&mut self) -> J {
            match self.rng.random_range(0..7) {
                0 => J::Raw("null".into()),
                1 => J::Raw("true".into()),
                2 => J::Raw("5".into()),
                3 => J::Raw("-1.5".into()),
                4 => J::Arr(vec![]),
                5 => J::Obj(vec![]),
                _ => self.jstr("x"),
            }
        }

        /// A 64-bit integer as OTLP JSON writes it, or something near it.
        fn juint(&mut self, v: u64) -> J {
            match self.rng.random_range(0..200) {
                0 => J::Str(String::new()),
                1 => J::Str(format!("x{v}")),
                2 => J::Raw(format!("-{v}")),
                3 => J::Raw(format!("{v}.0")),
                4 => J::Raw("1.5".into()),
                5 => J::Raw("1e300".into()),
                6 => J::Str(format!("+{v}")),
                7 => J::Raw("1e400".into()),
                8 => J::Raw("-0".into()),
                9 => self.odd_value(),
                10..=24 => J::Raw(v.to_string()),
                _ => J::Str(v.to_string()),
            }
        }

        fn jint(&mut self) -> J {
            let v = self.int();
            match self.rng.random_range(0..60) {
                0 => J::Raw(format!("{v}.0")),
                1 => J::Raw("2.5".into()),
                2 => J::Raw("18446744073709551615".into()),
                3 => J::Str(format!("{v}x")),
                4 => self.odd_value(),
                5..=10 => J::Raw(v.to_string()),
                _ => J::Str(v.to_string()),
            }
        }

        fn jenum(&mut self, names: &[&str]) -> J {
            let n = self.rng.random_range(0..names.len());
            match self.rng.random_range(0..60) {
                0 => J::Raw("2.0".into()),
                1 => J::Raw("4294967296".into()),
                2 => J::Raw("-3".into()),
                3 => self.jstr("BOGUS_NAME"),
                4 => J::Str(format!("{n}")),
                5 => self.odd_value(),
                6..=30 => {
                    let s = names[n];
                    self.jstr(s)
                }
                _ => J::Raw(n.to_string()),
            }
        }

        fn hex_id(&mut self, len: usize) -> J {
            let bytes = self.id(len);
            let mut h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            match self.rng.random_range(0..60) {
                4..=9 => h = h.to_uppercase(),
                1 if !h.is_empty() => h.replace_range(0..1, "g"),
                2 => h.push('a'),
                3 => return self.odd_value(),
                _ => {}
            }
            self.jstr(&h)
        }

        fn obj(&mut self, mut members: Vec<(String, J)>, unknown: bool) -> J {
            if unknown && self.p(0.2) {
                let v = match self.rng.random_range(0..4) {
                    0 => J::Obj(vec![("name".into(), self.jstr("x"))]),
                    1 => J::Arr(vec![J::Raw("1".into()), J::Raw("{}".into())]),
                    2 => J::Raw("123".into()),
                    _ => self.odd_value(),
                };
                let k = [
                    "name",
                    "droppedAttributesCount",
                    "flags",
                    "events",
                    "schemaUrl",
                    "x",
                ][self.rng.random_range(0..6)];
                members.push((k.to_string(), v));
            }
            if !members.is_empty() && self.p(0.01) {
                let i = self.rng.random_range(0..members.len());
                let k = members[i].0.clone();
                let v = self.odd_value();
                members.push((k, v));
            }
            if self.p(0.3) {
                for i in (1..members.len()).rev() {
                    let j = self.rng.random_range(0..=i);
                    members.swap(i, j);
                }
            }
            J::Obj(members)
        }

        fn jany(&mut self, depth: u32) -> J {
            let mut members = Vec::new();
            let n = if self.p(0.1) {
                self.rng.random_range(0..3)
            } else {
                1
            };
            for _ in 0..n {
                let variant = if depth == 0 {
                    self.rng.random_range(0..4)
                } else {
                    self.rng.random_range(0..7)
                };
                let (k, v) = match variant {
                    0 => {
                        let s = self.string();
                        let v = if self.p(0.01) {
                            self.odd_value()
                        } else {
                            self.jstr(&s)
                        };
                        (self.name("stringValue", "string_value"), v)
                    }
                    1 => {
                        let v = if self.p(0.01) {
                            self.odd_value()
                        } else {
                            J::Raw("true".into())
                        };
                        (self.name("boolValue", "bool_value"), v)
                    }
                    2 => {
                        let v = self.jint();
                        (self.name("intValue", "int_value"), v)
                    }
                    3 => {
                        let v = if self.p(0.01) {
                            self.odd_value()
                        } else {
                            J::Raw(
                                ["503.7", "200", "-1", "1e300", "5e-324"]
                                    [self.rng.random_range(0..5)]
                                .into(),
                            )
                        };
                        (self.name("doubleValue", "double_value"), v)
                    }
                    4 => {
                        let values = (0..self.rng.random_range(0..4))
                            .map(|_| self.jany(depth - 1))
                            .collect();
                        let v = self.obj(vec![("values".into(), J::Arr(values))], true);
                        (self.name("arrayValue", "array_value"), v)
                    }
                    5 => {
                        let values = (0..self.rng.random_range(0..4))
                            .map(|_| self.jkv(depth - 1))
                            .collect();
                        let v = self.obj(vec![("values".into(), J::Arr(values))], true);
                        (self.name("kvlistValue", "kvlist_value"), v)
                    }
                    _ => {
                        let v = self.jstr("aGVsbG8=");
                        (self.name("bytesValue", "bytes_value"), v)
                    }
                };
                members.push((k, v));
            }
            if self.p(0.03) {
                let k = self.name("stringValue", "string_value");
                members.push((k, J::Raw("null".into())));
            }
            self.obj(members, true)
        }

        fn jkv(&mut self, depth: u32) -> J {
            let mut members = Vec::new();
            if self.p(0.995) {
                let k = self.pick(&KEYS);
                let k = if self.p(0.005) {
                    self.odd_value()
                } else {
                    self.jstr(k)
                };
                members.push(("key".to_string(), k));
            }
            if self.p(0.95) {
                let v = if self.p(0.02) {
                    J::Raw("null".into())
                } else {
                    self.jany(depth)
                };
                members.push(("value".to_string(), v));
            }
            self.obj(members, true)
        }

        fn jattrs(&mut self, n: usize) -> J {
            if self.p(0.005) {
                return self.odd_value();
            }
            J::Arr((0..n).map(|_| self.jkv(2)).collect())
        }

        fn jresource(&mut self) -> J {
            if self.p(0.02) {
                return J::Raw("null".into());
            }
            let mut attrs = Vec::new();
            for i in 0..self.rng.random_range(0..6) {
                let k = if i == 0 && self.p(0.9) {
                    "service.name"
                } else {
                    self.pick(&KEYS[..5])
                };
                let v = if self.p(0.9) {
                    let s = if self.p(0.1) {
                        String::new()
                    } else {
                        format!("svc-{}", self.rng.random_range(0..4))
                    };
                    let s = self.jstr(&s);
                    J::Obj(vec![("stringValue".into(), s)])
                } else {
                    self.jany(1)
                };
                let k = self.jstr(k);
                attrs.push(J::Obj(vec![("key".into(), k), ("value".into(), v)]));
            }
            self.obj(vec![("attributes".into(), J::Arr(attrs))], true)
        }

        fn jspan(&mut self) -> J {
            let mut m = Vec::new();
            let v = self.hex_id(16);
            m.push((self.name("traceId", "trace_id"), v));
            let v = self.hex_id(8);
            m.push((self.name("spanId", "span_id"), v));
            if self.p(0.7) {
                let v = self.hex_id(8);
                m.push((self.name("parentSpanId", "parent_span_id"), v));
            }
            if self.p(0.7) {
                let s = self.string();
                let v = self.jstr(&s);
                m.push(("name".into(), v));
            }
            if self.p(0.8) {
                let v = self.jenum(&[
                    "SPAN_KIND_UNSPECIFIED",
                    "SPAN_KIND_INTERNAL",
                    "SPAN_KIND_SERVER",
                    "SPAN_KIND_CLIENT",
                    "SPAN_KIND_PRODUCER",
                    "SPAN_KIND_CONSUMER",
                ]);
                m.push(("kind".into(), v));
            }
            for (camel, snake) in [
                ("startTimeUnixNano", "start_time_unix_nano"),
                ("endTimeUnixNano", "end_time_unix_nano"),
            ] {
                if self.p(0.95) {
                    let t = self.time();
                    let v = self.juint(t);
                    m.push((self.name(camel, snake), v));
                }
            }
            if self.p(0.8) {
                let n = self.rng.random_range(0..5);
                let v = self.jattrs(n);
                m.push(("attributes".into(), v));
            }
            if self.p(0.6) {
                let v = if self.p(0.1) {
                    J::Raw("null".into())
                } else {
                    let code =
                        self.jenum(&["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"]);
                    let msg = self.jstr("m");
                    self.obj(vec![("code".into(), code), ("message".into(), msg)], true)
                };
                m.push(("status".into(), v));
            }
            self.obj(m, true)
        }

        fn jlog(&mut self) -> J {
            let mut m = Vec::new();
            for (camel, snake) in [
                ("timeUnixNano", "time_unix_nano"),
                ("observedTimeUnixNano", "observed_time_unix_nano"),
            ] {
                if self.p(0.8) {
                    let t = self.time();
                    let v = self.juint(t);
                    m.push((self.name(camel, snake), v));
                }
            }
            if self.p(0.8) {
                let v = match self.rng.random_range(0..10) {
                    0 => self.jstr("SEVERITY_NUMBER_ERROR"),
                    1 => self.jstr("SEVERITY_NUMBER_FATAL4"),
                    2 => self.jstr("SEVERITY_NUMBER_UNSPECIFIED"),
                    3 => self.jstr("SEVERITY_NUMBER_LOUD"),
                    4 => self.jstr("ERROR"),
                    5 => J::Str("17".into()),
                    6 if self.p(0.2) => self.odd_value(),
                    _ => J::Raw(self.rng.random_range(0..25).to_string()),
                };
                m.push((self.name("severityNumber", "severity_number"), v));
            }
            if self.p(0.3) {
                m.push((
                    self.name("severityText", "severity_text"),
                    self.jstr("INFO"),
                ));
            }
            if self.p(0.7) {
                let v = if self.p(0.05) {
                    J::Raw("null".into())
                } else {
                    self.jany(2)
                };
                m.push(("body".into(), v));
            }
            if self.p(0.8) {
                let n = self.rng.random_range(0..5);
                let v = self.jattrs(n);
                m.push(("attributes".into(), v));
            }
            if self.p(0.9) {
                let v = self.hex_id(16);
                m.push((self.name("traceId", "trace_id"), v));
            }
            if self.p(0.5) {
                let v = self.hex_id(8);
                m.push((self.name("spanId", "span_id"), v));
            }
            self.obj(m, true)
        }

        fn json_message(&mut self, logs: bool) -> Vec<u8> {
            let mut rss = Vec::new();
            for _ in 0..self.rng.random_range(0..4) {
                let mut m = Vec::new();
                if self.p(0.9) {
                    let r = self.jresource();
                    m.push(("resource".to_string(), r));
                }
                let mut scopes = Vec::new();
                for _ in 0..self.rng.random_range(0..3) {
                    let records: Vec<J> = (0..self.rng.random_range(0..6))
                        .map(|_| match (self.p(0.01), logs) {
                            (true, _) => self.odd_value(),
                            (false, true) => self.jlog(),
                            (false, false) => self.jspan(),
                        })
                        .collect();
                    let name = if logs {
                        self.name("logRecords", "log_records")
                    } else {
                        "spans".to_string()
                    };
                    let mut sm = vec![(name, J::Arr(records))];
                    if self.p(0.3) {
                        sm.push((
                            "scope".into(),
                            J::Obj(vec![("name".into(), J::Str("gen".into()))]),
                        ));
                    }
                    scopes.push(self.obj(sm, false));
                }
                let name = if logs {
                    self.name("scopeLogs", "scope_logs")
                } else {
                    self.name("scopeSpans", "scope_spans")
                };
                m.push((name, J::Arr(scopes)));
                rss.push(self.obj(m, true));
            }
            let name = if logs {
                self.name("resourceLogs", "resource_logs")
            } else {
                self.name("resourceSpans", "resource_spans")
            };
            let top = self.obj(vec![(name, J::Arr(rss))], true);
            let mut out = String::new();
            top.write(self, &mut out);
            out.into_bytes()
        }

        /// A corrupted copy of a JSON message.
        fn corrupt_json(&mut self, msg: &[u8]) -> Vec<u8> {
            let mut m = msg.to_vec();
            if m.is_empty() {
                return m;
            }
            const BYTES: &[u8] = b"\"{}[],:\\0a \xff";
            let i = self.rng.random_range(0..m.len());
            let b = BYTES[self.rng.random_range(0..BYTES.len())];
            match self.rng.random_range(0..3) {
                0 => m[i] = b,
                1 => {
                    m.remove(i);
                }
                _ => m.insert(i, b),
            }
            m
        }
    }

    #[test]
    fn json_decoders_match_the_record_by_record_decoders() {
        let opts = opts();
        let mut g = Gen {
            rng: ChaCha8Rng::seed_from_u64(0x15),
        };
        let mut stats = Stats::default();
        let mut whole = Stats::default();
        for i in 0..3_000 {
            let logs = i % 2 == 1;
            let msg = g.json_message(logs);
            check_json(&msg, &opts, &mut whole);
            for _ in 0..3 {
                let bad = g.corrupt_json(&msg);
                check_json(&bad, &opts, &mut stats);
            }
            // Truncated: at every length now and then, else at a few.
            if i % 500 == 0 {
                for len in 0..msg.len() {
                    check_json(&msg[..len], &opts, &mut stats);
                }
            } else if !msg.is_empty() {
                for _ in 0..3 {
                    let len = g.rng.random_range(0..msg.len());
                    check_json(&msg[..len], &opts, &mut stats);
                }
            }
        }
        println!("uncorrupted: {whole:#?}\ncorrupted: {stats:#?}");
        assert!(whole.records > 2_000 && whole.one_pass > 3_000);
    }

    /// What a compact protobuf batch says, with each record's resource as its
    /// strings (memo keys left out).
    type SpanView<'a> = (
        Vec<(super::SpanRef<'a>, [&'a [u8]; 3])>,
        Vec<crate::Rejection>,
    );
    type LogView<'a> = (Vec<(super::LogRef, [&'a [u8]; 3])>, Vec<crate::Rejection>);

    fn span_view<'a>(b: &super::SpanBatch<'a>) -> SpanView<'a> {
        let spans = b.spans.iter().map(|s| {
            let mut s = *s;
            let strings = b.resources[s.resource as usize].as_bytes();
            s.resource = 0;
            (s, strings)
        });
        (spans.collect(), b.rejects.clone())
    }

    fn log_view<'a>(b: &super::LogBatch<'a>) -> LogView<'a> {
        let logs = b.logs.iter().map(|l| {
            let mut l = *l;
            let strings = b.resources[l.resource as usize].as_bytes();
            l.resource = 0;
            (l, strings)
        });
        (logs.collect(), b.rejects.clone())
    }

    /// Decodes `bytes` as traces and as logs without a memo and through each
    /// of `memos`, and checks that every decode gives the same records and
    /// rejections. Returns how many resources came from a memo entry that
    /// already held their body (a hit).
    fn check_memo(bytes: &[u8], opts: &DecodeOptions, memos: &mut [ResourceMemo<u32>]) -> usize {
        let mut hits = 0;
        let plain = super::decode_span_batch(bytes, opts);
        assert!(plain.resources.iter().all(|r| r.memo_key().is_none()));
        let want = span_view(&plain);
        for memo in memos.iter_mut() {
            for _ in 0..2 {
                let got = super::decode_span_batch_with(bytes, opts, memo);
                assert_eq!(span_view(&got), want, "traces {bytes:02x?}");
                // A key whose entry is still held and noted was a hit (or a
                // body seen earlier in this message).
                for r in &got.resources {
                    if let Some(k) = r.memo_key() {
                        if memo.note(k).is_some() {
                            hits += 1;
                        }
                        memo.set_note(k, 1);
                    }
                }
            }
        }
        let plain = super::decode_log_batch(bytes, opts);
        let want = log_view(&plain);
        for memo in memos.iter_mut() {
            for _ in 0..2 {
                let got = super::decode_log_batch_with(bytes, opts, memo);
                assert_eq!(log_view(&got), want, "logs {bytes:02x?}");
                for r in &got.resources {
                    if let Some(k) = r.memo_key() {
                        if memo.note(k).is_some() {
                            hits += 1;
                        }
                        memo.set_note(k, 1);
                    }
                }
            }
        }
        hits
    }

    #[test]
    fn a_resource_memo_decodes_like_a_full_decode() {
        let opts = opts();
        let mut g = Gen {
            rng: ChaCha8Rng::seed_from_u64(0x4e5),
        };
        // A roomy memo, one that is always full, and one that stores nothing.
        let mut memos = [
            ResourceMemo::new(),
            ResourceMemo::with_entries(2),
            ResourceMemo::with_entries(0),
        ];
        let mut hits = 0;
        for i in 0..1_500 {
            let msg = g.message(i % 2 == 1);
            hits += check_memo(&msg, &opts, &mut memos);
            for _ in 0..3 {
                let bad = g.corrupt(&msg);
                hits += check_memo(&bad, &opts, &mut memos);
            }
            if i % 50 == 0 {
                for len in 0..msg.len() {
                    check_memo(&msg[..len], &opts, &mut memos);
                }
            }
        }
        assert!(memos[0].len() > 2 && memos[0].len() <= super::memo::DEFAULT_ENTRIES);
        assert_eq!(memos[1].len(), 2);
        assert!(memos[2].is_empty());
        assert!(hits > 1_000, "{hits} hits");
    }

    /// One `TracesData` (or `LogsData`) of one `ResourceSpans`/`ResourceLogs`
    /// whose `resource` fields are `resources`, holding one valid record.
    fn one_record(resources: &[&[u8]], logs: bool) -> Vec<u8> {
        let mut rec = Vec::new();
        ld(if logs { 9 } else { 1 }, &[1; 16], &mut rec);
        if logs {
            key(1, 1, &mut rec);
        } else {
            ld(2, &[2; 8], &mut rec);
            key(7, 1, &mut rec);
        }
        rec.extend_from_slice(&(NOW - 1_000).to_le_bytes());
        let mut scope = Vec::new();
        ld(2, &rec, &mut scope);
        let mut rs = Vec::new();
        for r in resources {
            ld(1, r, &mut rs);
        }
        ld(2, &scope, &mut rs);
        let mut msg = Vec::new();
        ld(1, &rs, &mut msg);
        msg
    }

    /// A `Resource` body of these attributes (values already `AnyValue` bodies).
    fn resource_body(attrs: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, v) in attrs {
            let mut kv = Vec::new();
            ld(1, k.as_bytes(), &mut kv);
            ld(2, v, &mut kv);
            ld(1, &kv, &mut body);
        }
        body
    }

    fn string(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        ld(1, s.as_bytes(), &mut v);
        v
    }

    /// The resource strings and rejection reasons `msg` decodes to as traces,
    /// checked to be the same without a memo, on a miss and on a hit, and
    /// through a full memo; and whether the memo stored the body.
    fn memo_case(msg: &[u8]) -> (Vec<[String; 3]>, Vec<(String, String)>, bool) {
        let opts = opts();
        let plain = super::decode_span_batch(msg, &opts);
        let want = span_view(&plain);
        let mut memo = ResourceMemo::<u32>::new();
        let miss = super::decode_span_batch_with(msg, &opts, &mut memo);
        assert_eq!(span_view(&miss), want, "miss");
        let stored = !memo.is_empty();
        let hit = super::decode_span_batch_with(msg, &opts, &mut memo);
        assert_eq!(span_view(&hit), want, "hit");
        assert_eq!(
            hit.resources
                .iter()
                .map(|r| r.memo_key())
                .collect::<Vec<_>>(),
            miss.resources
                .iter()
                .map(|r| r.memo_key())
                .collect::<Vec<_>>(),
            "a hit names the entry the miss stored"
        );
        // A full memo of two entries, filled with other resources first.
        let mut full = ResourceMemo::<u32>::with_entries(2);
        for i in 0..5 {
            let other = resource_body(&[("service.name", &string(&format!("other-{i}")))]);
            super::decode_span_batch_with(&one_record(&[&other], false), &opts, &mut full);
        }
        assert_eq!(full.len(), 2);
        for _ in 0..2 {
            let got = super::decode_span_batch_with(msg, &opts, &mut full);
            assert_eq!(span_view(&got), want, "full memo");
        }
        let logs = super::decode_log_batch(msg, &opts);
        let mut memo = ResourceMemo::<u32>::new();
        for _ in 0..2 {
            let got = super::decode_log_batch_with(msg, &opts, &mut memo);
            assert_eq!(log_view(&got), log_view(&logs), "logs");
        }
        let strings = plain
            .resources
            .iter()
            .map(|r| r.as_bytes().map(|b| String::from_utf8(b.to_vec()).unwrap()))
            .collect();
        let rejects = plain
            .rejects
            .iter()
            .map(|r| (r.reason.to_string(), r.detail.clone()))
            .collect();
        (strings, rejects, stored)
    }

    fn strings(s: [&str; 3]) -> Vec<[String; 3]> {
        vec![s.map(String::from)]
    }

    #[test]
    fn a_resource_memo_keeps_the_attribute_mapping() {
        let (a, b, c) = (string("a"), string("b"), string("c"));
        let int = [0x18, 0x07];
        // Duplicate keys: the first wins.
        let dup = resource_body(&[
            ("service.name", &a),
            ("service.version", &b),
            ("service.name", &b),
            ("service.version", &c),
        ]);
        assert_eq!(
            memo_case(&one_record(&[&dup], false)),
            (strings(["a", "", "b"]), vec![], true)
        );
        // `deployment.environment.name` before `deployment.environment`,
        // whichever comes first.
        let env = resource_body(&[
            ("deployment.environment", &b),
            ("service.name", &a),
            ("deployment.environment.name", &c),
        ]);
        assert_eq!(
            memo_case(&one_record(&[&env], false)).0,
            strings(["a", "c", ""])
        );
        let env = resource_body(&[("deployment.environment", &b), ("service.name", &a)]);
        assert_eq!(
            memo_case(&one_record(&[&env], false)).0,
            strings(["a", "b", ""])
        );
        // A value that is not a string takes the key's place but gives nothing
        // (so `deployment.environment` counts), as in the prost reference.
        let odd = resource_body(&[
            ("service.name", &a),
            ("deployment.environment.name", &int),
            ("deployment.environment", &b),
            ("service.version", &int),
            ("service.version", &c),
        ]);
        assert_eq!(
            memo_case(&one_record(&[&odd], false)).0,
            strings(["a", "b", ""])
        );
        // No, an empty or a non-string `service.name`: every record rejected.
        let missing = (
            "missing_service".to_string(),
            "resource has no service.name".to_string(),
        );
        for body in [
            resource_body(&[("service.version", &a)]),
            resource_body(&[("service.name", &string("")), ("service.name", &a)]),
            resource_body(&[("service.name", &int), ("service.name", &a)]),
            Vec::new(),
        ] {
            let (res, rejects, stored) = memo_case(&one_record(&[&body], false));
            assert_eq!(
                (res, rejects, stored),
                (vec![], vec![missing.clone()], true)
            );
        }
        // Two `resource` occurrences merge: each attribute keeps its first
        // value; the resource names no memo entry.
        let first = resource_body(&[("service.version", &b)]);
        let second = resource_body(&[("service.name", &a), ("service.version", &c)]);
        let msg = one_record(&[&first, &second], false);
        assert_eq!(memo_case(&msg).0, strings(["a", "", "b"]));
        let mut memo = ResourceMemo::<u32>::new();
        for _ in 0..2 {
            let d = super::decode_span_batch_with(&msg, &opts(), &mut memo);
            assert_eq!(d.resources[0].memo_key(), None);
        }
        assert_eq!(memo.len(), 2);
    }

    #[test]
    fn a_malformed_resource_is_rejected_alike_and_never_stored() {
        let a = string("a");
        let good = resource_body(&[("service.name", &a)]);
        let mut bad_utf8 = good.clone();
        let at = bad_utf8.len() - 1;
        bad_utf8[at] = 0xff; // the value "a" becomes invalid UTF-8
        let mut cut = good.clone();
        cut[1] += 1; // the attribute runs past the resource
        let bad_key = [0x0d, 0, 0, 0, 0]; // attributes as fixed32
        for body in [&bad_utf8[..], &cut, &bad_key, &[0x0b][..]] {
            for logs in [false, true] {
                let msg = one_record(&[body], logs);
                let (res, rejects, stored) = memo_case(&msg);
                assert!(res.is_empty() && !stored);
                assert_eq!(rejects.len(), 1, "{rejects:?}");
                let mut memo = ResourceMemo::<u32>::new();
                super::decode_log_batch_with(&msg, &opts(), &mut memo);
                assert!(memo.is_empty());
            }
        }
        let (_, rejects, _) = memo_case(&one_record(&[&bad_utf8], false));
        assert_eq!(rejects[0].0, "malformed_protobuf");
        assert!(
            rejects[0].1.contains("Resource.attributes"),
            "{}",
            rejects[0].1
        );
        // A good body stored, then the same body in a message cut inside it.
        let msg = one_record(&[&good], false);
        let mut memo = ResourceMemo::<u32>::new();
        super::decode_span_batch_with(&msg, &opts(), &mut memo);
        assert_eq!(memo.len(), 1);
        for len in 0..msg.len() {
            let plain = super::decode_span_batch(&msg[..len], &opts());
            let got = super::decode_span_batch_with(&msg[..len], &opts(), &mut memo);
            assert_eq!(span_view(&got), span_view(&plain), "{len}");
        }
    }

    #[test]
    fn a_resource_memo_keeps_the_recursion_limit() {
        let mut g = Gen {
            rng: ChaCha8Rng::seed_from_u64(3),
        };
        let a = string("a");
        let mut memo = ResourceMemo::<u32>::new();
        let mut outcomes = std::collections::BTreeSet::new();
        for levels in 0..60 {
            let deep = g.deep_value(levels);
            let body = resource_body(&[("service.name", &a), ("deep", &deep)]);
            let msg = one_record(&[&body], false);
            let (res, rejects, stored) = memo_case(&msg);
            outcomes.insert((res.len(), rejects.len(), stored));
            for _ in 0..2 {
                let got = super::decode_span_batch_with(&msg, &opts(), &mut memo);
                assert_eq!(
                    span_view(&got),
                    span_view(&super::decode_span_batch(&msg, &opts()))
                );
            }
        }
        // Both sides of the limit were reached.
        assert!(outcomes.contains(&(1, 0, true)), "{outcomes:?}");
        assert!(outcomes.contains(&(0, 1, false)), "{outcomes:?}");
    }

    /// Resources like a Kubernetes pod's (16 attributes, ~1 KB): decoding a
    /// message of 20 of them (5 spans each) without and with a warm resource
    /// memo, in ns per resource. Ignored: a measurement, not a check.
    /// `cargo test --release -p causeway-schemas -- --ignored --nocapture resource_memo_speed`.
    #[test]
    #[ignore]
    fn resource_memo_speed() {
        let opts = opts();
        let attrs = |i: usize| -> Vec<(String, String)> {
            [
                ("service.name", format!("checkout-{}", i % 5)),
                ("service.version", "1.42.0".to_string()),
                ("service.namespace", "shop".to_string()),
                ("deployment.environment.name", "production".to_string()),
                ("telemetry.sdk.name", "opentelemetry".to_string()),
                ("telemetry.sdk.language", "java".to_string()),
                ("telemetry.sdk.version", "1.44.1".to_string()),
                (
                    "host.name",
                    format!("ip-10-0-{i}-17.eu-west-1.compute.internal"),
                ),
                ("k8s.namespace.name", "shop-production".to_string()),
                (
                    "k8s.pod.name",
                    format!("checkout-{}-7d9f8c6b5-x{i:04}", i % 5),
                ),
                ("k8s.pod.uid", format!("5f0c3e2a-1b7d-4c9e-8a6f-{i:012}")),
                (
                    "k8s.node.name",
                    format!("ip-10-0-{i}-17.eu-west-1.compute.internal"),
                ),
                ("k8s.deployment.name", format!("checkout-{}", i % 5)),
                ("container.id", format!("{i:064x}")),
                ("cloud.provider", "aws".to_string()),
                ("cloud.region", "eu-west-1".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
        };
        let mut msg = Vec::new();
        let mut body_len = 0;
        for i in 0..20 {
            let a = attrs(i);
            let pairs: Vec<(&str, Vec<u8>)> =
                a.iter().map(|(k, v)| (k.as_str(), string(v))).collect();
            let refs: Vec<(&str, &[u8])> = pairs.iter().map(|(k, v)| (*k, &v[..])).collect();
            let body = resource_body(&refs);
            body_len = body.len();
            let mut scope = Vec::new();
            for s in 0..5u8 {
                let mut span = Vec::new();
                ld(1, &[i as u8 + 1; 16], &mut span);
                ld(2, &[s + 1; 8], &mut span);
                ld(5, b"GET /cart", &mut span);
                key(7, 1, &mut span);
                span.extend_from_slice(&(NOW - 1_000).to_le_bytes());
                ld(2, &span, &mut scope);
            }
            let mut rs = Vec::new();
            ld(1, &body, &mut rs);
            ld(2, &scope, &mut rs);
            ld(1, &rs, &mut msg);
        }
        let plain = super::decode_span_batch(&msg, &opts);
        assert_eq!(plain.spans.len(), 100);
        let mut memo = ResourceMemo::<()>::new();
        let warm = super::decode_span_batch_with(&msg, &opts, &mut memo);
        assert_eq!(span_view(&warm), span_view(&plain));
        let per_resource = |f: &mut dyn FnMut() -> usize| {
            let n = 20_000;
            let t = std::time::Instant::now();
            let mut total = 0;
            for _ in 0..n {
                total += std::hint::black_box(f());
            }
            assert_eq!(total, n * 100);
            t.elapsed().as_nanos() as f64 / (n * 20) as f64
        };
        for _ in 0..3 {
            let without = per_resource(&mut || super::decode_span_batch(&msg, &opts).spans.len());
            let with = per_resource(&mut || {
                super::decode_span_batch_with(&msg, &opts, &mut memo)
                    .spans
                    .len()
            });
            println!(
                "resource body {body_len} bytes: message without memo {without:.0} ns/resource, with {with:.0}"
            );
        }
    }

    /// A batch shaped like the benches' workload: 100 records over about 20
    /// resources, one or two attributes each.
    fn workload_batch(logs: bool) -> (Vec<u8>, Vec<u8>) {
        use super::proto::*;
        use prost::Message;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut by_service: Vec<Vec<(Span, LogRecord)>> = vec![Vec::new(); 20];
        for _ in 0..100 {
            let svc = rng.random_range(0..20);
            let t = NOW - rng.random_range(0..600_000_000_000);
            let mut attributes = vec![KeyValue::string("http.route", "/api/items")];
            if rng.random_bool(0.01) {
                attributes.push(KeyValue::string("user.note", "alice@example.com"));
            }
            let span = Span {
                trace_id: rng.random::<u128>().to_be_bytes().to_vec(),
                span_id: rng.random::<u64>().to_be_bytes().to_vec(),
                parent_span_id: rng.random::<u64>().to_be_bytes().to_vec(),
                name: "op".into(),
                kind: 2,
                start_time_unix_nano: t,
                end_time_unix_nano: t + 1_000_000,
                attributes,
                status: Some(Status {
                    message: String::new(),
                    code: rng.random_range(0..3),
                }),
            };
            let log = LogRecord {
                time_unix_nano: t,
                severity_number: 9,
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("request handled".into())),
                }),
                attributes: vec![
                    KeyValue::string("http.request.method", "GET"),
                    KeyValue::int("http.response.status_code", 200),
                ],
                trace_id: span.trace_id.clone(),
                span_id: vec![],
                observed_time_unix_nano: t,
            };
            by_service[svc].push((span, log));
        }
        let resource = |svc: usize| Resource {
            attributes: vec![
                KeyValue::string("service.name", &format!("svc-{svc:02}")),
                KeyValue::string("deployment.environment.name", "prod"),
                KeyValue::string("service.version", "1.0.0"),
            ],
        };
        let resource_json = |svc: usize| {
            format!(
                r#"{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc-{svc:02}"}}}},{{"key":"deployment.environment.name","value":{{"stringValue":"prod"}}}},{{"key":"service.version","value":{{"stringValue":"1.0.0"}}}}]}}"#
            )
        };
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let groups: Vec<(usize, &Vec<(Span, LogRecord)>)> = by_service
            .iter()
            .enumerate()
            .filter(|(_, g)| !g.is_empty())
            .collect();
        if logs {
            let data = LogsData {
                resource_logs: groups
                    .iter()
                    .map(|(svc, g)| ResourceLogs {
                        resource: Some(resource(*svc)),
                        scope_logs: vec![ScopeLogs {
                            log_records: g.iter().map(|(_, l)| l.clone()).collect(),
                        }],
                    })
                    .collect(),
            };
            let json: Vec<String> = groups
                .iter()
                .map(|(svc, g)| {
                    let records: Vec<String> = g
                        .iter()
                        .map(|(_, l)| {
                            format!(
                                r#"{{"timeUnixNano":"{t}","observedTimeUnixNano":"{t}","severityNumber":9,"traceId":"{}","body":{{"stringValue":"request handled"}},"attributes":[{{"key":"http.request.method","value":{{"stringValue":"GET"}}}},{{"key":"http.response.status_code","value":{{"intValue":"200"}}}}]}}"#,
                                hex(&l.trace_id),
                                t = l.time_unix_nano
                            )
                        })
                        .collect();
                    format!(
                        r#"{{"resource":{},"scopeLogs":[{{"logRecords":[{}]}}]}}"#,
                        resource_json(*svc),
                        records.join(",")
                    )
                })
                .collect();
            let json = format!(r#"{{"resourceLogs":[{}]}}"#, json.join(","));
            (data.encode_to_vec(), json.into_bytes())
        } else {
            let data = TracesData {
                resource_spans: groups
                    .iter()
                    .map(|(svc, g)| ResourceSpans {
                        resource: Some(resource(*svc)),
                        scope_spans: vec![ScopeSpans {
                            spans: g.iter().map(|(s, _)| s.clone()).collect(),
                        }],
                    })
                    .collect(),
            };
            let json: Vec<String> = groups
                .iter()
                .map(|(svc, g)| {
                    let spans: Vec<String> = g
                        .iter()
                        .map(|(s, _)| {
                            let attrs: Vec<String> = s
                                .attributes
                                .iter()
                                .map(|kv| {
                                    let Some(any_value::Value::StringValue(v)) =
                                        kv.value.as_ref().and_then(|v| v.value.as_ref())
                                    else {
                                        unreachable!()
                                    };
                                    format!(r#"{{"key":"{}","value":{{"stringValue":"{v}"}}}}"#, kv.key)
                                })
                                .collect();
                            format!(
                                r#"{{"traceId":"{}","spanId":"{}","parentSpanId":"{}","name":"op","kind":2,"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":[{}],"status":{{"code":{}}}}}"#,
                                hex(&s.trace_id),
                                hex(&s.span_id),
                                hex(&s.parent_span_id),
                                s.start_time_unix_nano,
                                s.end_time_unix_nano,
                                attrs.join(","),
                                s.status.as_ref().map_or(0, |st| st.code)
                            )
                        })
                        .collect();
                    format!(
                        r#"{{"resource":{},"scopeSpans":[{{"scope":{{"name":"gen"}},"spans":[{}]}}]}}"#,
                        resource_json(*svc),
                        spans.join(",")
                    )
                })
                .collect();
            let json = format!(r#"{{"resourceSpans":[{}]}}"#, json.join(","));
            (data.encode_to_vec(), json.into_bytes())
        }
    }

    /// Nanoseconds per record of `f` on a 100-record batch: the best of 7 runs.
    fn ns_per_record<T>(f: impl Fn() -> Decoded<T>) -> f64 {
        let n = f().records.len() as f64;
        let iters = 300;
        (0..7)
            .map(|_| {
                let t = std::time::Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(f());
                }
                t.elapsed().as_nanos() as f64 / iters as f64 / n
            })
            .fold(f64::INFINITY, f64::min)
    }

    fn ns_per_record_dyn(f: &dyn Fn() -> usize) -> f64 {
        let n = f() as f64;
        let iters = 300;
        (0..7)
            .map(|_| {
                let t = std::time::Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(f());
                }
                t.elapsed().as_nanos() as f64 / iters as f64 / n
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// Old against new decode speed on the workload batch; run with
    /// `cargo test --release -p causeway-schemas -- --ignored --nocapture decode_speed`.
    #[test]
    #[ignore]
    fn decode_speed() {
        let opts = opts();
        let origin = Origin::default();
        let (tp, tj) = workload_batch(false);
        let (lp, lj) = workload_batch(true);
        assert_eq!(super::decode_traces_proto(&tp, &opts).records.len(), 100);
        assert_eq!(super::decode_traces_json(&tj, &opts).records.len(), 100);
        assert_eq!(
            super::decode_logs_proto(&lp, origin, &opts).records.len(),
            100
        );
        assert_eq!(
            super::decode_logs_json(&lj, origin, &opts).records.len(),
            100
        );
        let row = |name: &str, old: f64, new: f64| {
            println!(
                "{name:12} old {old:7.1} ns/record ({:5.2} M/s)  new {new:7.1} ns/record ({:5.2} M/s)  x{:.2}",
                1e3 / old,
                1e3 / new,
                old / new
            )
        };
        let only = std::env::var("DECODE_SPEED").unwrap_or_default();
        // DECODE_SPEED_NEW=1 times the new decoders only (to profile them).
        let new_only = std::env::var_os("DECODE_SPEED_NEW").is_some();
        let ns_per_record_old = |f: &dyn Fn() -> usize| {
            if new_only {
                f64::NAN
            } else {
                ns_per_record_dyn(f)
            }
        };
        if only.is_empty() || only == "traces_proto" {
            row(
                "traces proto",
                ns_per_record_old(&|| reference::decode_traces_proto(&tp, &opts).records.len()),
                ns_per_record(|| super::decode_traces_proto(&tp, &opts)),
            );
        }
        if only.is_empty() || only == "traces_json" {
            row(
                "traces json",
                ns_per_record_old(&|| reference::decode_traces_json(&tj, &opts).records.len()),
                ns_per_record(|| super::decode_traces_json(&tj, &opts)),
            );
        }
        if only.is_empty() || only == "traces_json_bad" {
            // One bad span: the one-pass decoder gives up, record by record follows.
            let bad = String::from_utf8(tj.clone())
                .unwrap()
                .replacen(r#""kind":2"#, r#""kind":"LOUD""#, 1)
                .into_bytes();
            assert_eq!(super::decode_traces_json(&bad, &opts).rejects.len(), 1);
            row(
                "json 1 bad",
                ns_per_record_old(&|| reference::decode_traces_json(&bad, &opts).records.len()),
                ns_per_record(|| super::decode_traces_json(&bad, &opts)),
            );
        }
        if only.is_empty() || only == "logs_proto" {
            row(
                "logs proto",
                ns_per_record_old(&|| {
                    reference::decode_logs_proto(&lp, origin, &opts)
                        .records
                        .len()
                }),
                ns_per_record(|| super::decode_logs_proto(&lp, origin, &opts)),
            );
        }
        if only.is_empty() || only == "logs_json" {
            row(
                "logs json",
                ns_per_record_old(&|| {
                    reference::decode_logs_json(&lj, origin, &opts)
                        .records
                        .len()
                }),
                ns_per_record(|| super::decode_logs_json(&lj, origin, &opts)),
            );
        }
    }
}
