//! OTLP traces and logs: protobuf and JSON decoding into the [`crate::model`].
//!
//! Contract:
//! - A message that does not decode is one rejection (`malformed_protobuf` /
//!   `malformed_json`) with `index: None`.
//! - Otherwise every span / log record is checked on its own; a bad one is one
//!   rejection with its ordinal inside the message, and its neighbours still count.
//! - A resource without `service.name` rejects each of its records (`missing_service`).

pub mod json;
pub mod proto;

use std::sync::Arc;

use prost::Message;

use crate::ids::{self, IdError};
use crate::model::{LogRecord, Origin, Resource, Span, SpanKind, SpanStatus};
use crate::reject::{Reason, Rejection};
use crate::{DecodeOptions, Decoded, Encoding};
use proto::any_value::Value;

/// Attribute keys that make a log record a request record (SPEC §3 M1).
pub const REQUEST_ATTRIBUTES: [&str; 3] = ["http.request.method", "http.method", "rpc.method"];
/// Attribute keys holding an HTTP response status code (SPEC §3 M10).
pub const STATUS_CODE_ATTRIBUTES: [&str; 2] = ["http.response.status_code", "http.status_code"];

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

/// A span as read off the wire, before validation; shared by both encodings.
struct RawSpan<'a> {
    trace: Result<u128, IdError>,
    span: Result<u64, IdError>,
    parent: Result<u64, IdError>,
    start: u64,
    end: u64,
    kind: i32,
    status: i32,
    attributes: &'a [proto::KeyValue],
}

fn decode_traces_proto(bytes: &[u8], opts: &DecodeOptions) -> Decoded<Span> {
    let data = match proto::TracesData::decode(bytes) {
        Ok(d) => d,
        Err(e) => {
            return Decoded::failed(Rejection::message(Reason::MalformedProtobuf, e.to_string()))
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
                };
                push(&mut out, validate_span(raw, &resource, index, opts));
                index += 1;
            }
        }
    }
    out
}

fn decode_traces_json(bytes: &[u8], opts: &DecodeOptions) -> Decoded<Span> {
    let data: json::TracesData = match serde_json::from_slice(bytes) {
        Ok(d) => d,
        Err(e) => return Decoded::failed(Rejection::message(Reason::MalformedJson, e.to_string())),
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
    })
}

struct RawLog<'a> {
    trace: Result<u128, IdError>,
    time: u64,
    observed: u64,
    severity: i32,
    body: Option<&'a proto::AnyValue>,
    attributes: &'a [proto::KeyValue],
}

fn decode_logs_proto(bytes: &[u8], origin: Origin, opts: &DecodeOptions) -> Decoded<LogRecord> {
    let data = match proto::LogsData::decode(bytes) {
        Ok(d) => d,
        Err(e) => {
            return Decoded::failed(Rejection::message(Reason::MalformedProtobuf, e.to_string()))
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

fn decode_logs_json(bytes: &[u8], origin: Origin, opts: &DecodeOptions) -> Decoded<LogRecord> {
    let data: json::LogsData = match serde_json::from_slice(bytes) {
        Ok(d) => d,
        Err(e) => return Decoded::failed(Rejection::message(Reason::MalformedJson, e.to_string())),
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

/// Reads the SPEC §1 mapping off resource attributes; `None` when `service.name`
/// is missing or empty.
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
