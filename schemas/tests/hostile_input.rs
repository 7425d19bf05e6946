//! Property tests: no decoder panics on hostile input, and what it returns keeps
//! the decoding contract (SPEC §1; `otlp` module docs).
//!
//! Inputs: arbitrary bytes; valid messages (the public fixtures and OTLP batches
//! built here) with random byte edits (flips, inserts, deletes, truncation); and
//! OTLP JSON batches whose ids, timestamps and attribute values are random JSON
//! trees (48-hex and base64 ids, numbers as strings, deep nesting, tracebacks).
//! Case counts are kept small enough for a debug `cargo test` (a few seconds).

use causeway_schemas::otlp::{self, proto};
use causeway_schemas::reject::Reason;
use causeway_schemas::{audit, cdevents, Declined, DecodeOptions, Decoded, Encoding, Origin};
use proptest::prelude::*;
use prost::Message as _;
use serde_json::{json, Value};

/// 2026-11-26T00:00:00Z, so that future timestamps do not depend on the clock.
const NOW_NS: u64 = 1_795_651_200 * 1_000_000_000;

fn opts() -> DecodeOptions {
    DecodeOptions {
        now_ns: NOW_NS,
        ..Default::default()
    }
}

fn origin() -> Origin {
    Origin::default()
}

/// A whole-message rejection is alone and has the message-level reason; record
/// rejections have distinct indexes below `count` (records + rejections).
fn check<T>(d: &Decoded<T>, whole: Reason) {
    if d.rejects.iter().any(|r| r.index.is_none()) {
        assert!(d.records.is_empty());
        assert_eq!(d.rejects.len(), 1);
        assert_eq!(d.rejects[0].reason, whole);
        return;
    }
    let count = d.records.len() + d.rejects.len();
    let mut idx: Vec<u32> = d.rejects.iter().filter_map(|r| r.index).collect();
    idx.sort_unstable();
    idx.dedup();
    assert_eq!(idx.len(), d.rejects.len(), "one rejection per record");
    assert!(idx.iter().all(|&i| (i as usize) < count));
}

/// Runs every decoder that could see `bytes` on some topic.
fn decode_everything(bytes: &[u8]) {
    let o = opts();
    let t = otlp::decode_traces(bytes, Encoding::OtlpProto, &o);
    check(&t, Reason::MalformedProtobuf);
    // The walker fails a message exactly when prost does.
    let prost = proto::TracesData::decode(bytes);
    assert_eq!(
        prost.is_err(),
        t.rejects.iter().any(|r| r.index.is_none()),
        "{:?}",
        t.rejects
    );
    let l = otlp::decode_logs(bytes, Encoding::OtlpProto, origin(), &o);
    check(&l, Reason::MalformedProtobuf);
    assert_eq!(
        proto::LogsData::decode(bytes).is_err(),
        l.rejects.iter().any(|r| r.index.is_none())
    );
    check(
        &otlp::decode_traces(bytes, Encoding::OtlpJson, &o),
        Reason::MalformedJson,
    );
    check(
        &otlp::decode_logs(bytes, Encoding::OtlpJson, origin(), &o),
        Reason::MalformedJson,
    );
    let tp = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    for h in [None, tp] {
        // A deploy or audit message is one record: a rejection names no index.
        if let Err(Declined::Rejected(r)) = cdevents::decode_deploy(bytes, origin(), h, &o) {
            assert!(r.index.is_none());
        }
        if let Err(Declined::Rejected(r)) = audit::decode_audit(bytes, origin(), h, &o) {
            assert!(r.index.is_none());
        }
    }
}

fn fixture(rel: &str) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Valid messages of every input kind: the public fixtures copied into the
/// repository (fuzz seeds) and a protobuf batch of each OTLP kind.
fn valid_messages() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/corpus");
    let mut out = Vec::new();
    for target in ["otlp_traces_json", "otlp_logs_json", "cdevents", "audit"] {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(target))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with("otel-proto-example")
                    || n.starts_with("cdevents-spec")
                    || n.starts_with("audit2rbac")
            })
            .collect();
        files.sort();
        out.extend(files.iter().take(4).map(|p| std::fs::read(p).unwrap()));
    }
    out.push(traces_proto(5));
    out.push(logs_proto(5));
    out.push(fixture("tests/golden/malformed/input/otlp_spans_wire.pb"));
    out
}

fn traces_proto(n: usize) -> Vec<u8> {
    let spans = (0..n)
        .map(|i| proto::Span {
            trace_id: vec![0xab; 16],
            span_id: vec![i as u8 + 1; 8],
            parent_span_id: if i == 0 { vec![] } else { vec![1; 8] },
            name: "GET /checkout".into(),
            kind: 2,
            start_time_unix_nano: NOW_NS - 1_000_000_000 + i as u64,
            end_time_unix_nano: NOW_NS - 500_000_000,
            attributes: vec![
                proto::KeyValue::string("http.request.method", "GET"),
                proto::KeyValue::int("http.response.status_code", 200),
            ],
            status: None,
        })
        .collect();
    proto::TracesData {
        resource_spans: vec![proto::ResourceSpans {
            resource: Some(proto::Resource {
                attributes: vec![proto::KeyValue::string("service.name", "checkout")],
            }),
            scope_spans: vec![proto::ScopeSpans { spans }],
        }],
    }
    .encode_to_vec()
}

fn logs_proto(n: usize) -> Vec<u8> {
    let log_records = (0..n)
        .map(|i| proto::LogRecord {
            time_unix_nano: NOW_NS - 1_000_000_000 + i as u64,
            severity_number: 17,
            body: Some(proto::AnyValue {
                value: Some(proto::any_value::Value::StringValue("boom".into())),
            }),
            attributes: vec![proto::KeyValue::string("http.method", "POST")],
            trace_id: vec![0xab; 16],
            span_id: vec![1; 8],
            observed_time_unix_nano: 0,
        })
        .collect();
    proto::LogsData {
        resource_logs: vec![proto::ResourceLogs {
            resource: Some(proto::Resource {
                attributes: vec![proto::KeyValue::string("service.name", "checkout")],
            }),
            scope_logs: vec![proto::ScopeLogs { log_records }],
        }],
    }
    .encode_to_vec()
}

/// One edit of a message: flip a byte, insert one, delete one, or cut the tail.
#[derive(Clone, Debug)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut m: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = m.len();
        match *e {
            Edit::Set(i, b) if n > 0 => m[i % n] = b,
            Edit::Insert(i, b) => m.insert(i % (n + 1), b),
            Edit::Delete(i) if n > 0 => {
                m.remove(i % n);
            }
            Edit::Truncate(i) => m.truncate(i % (n + 1)),
            _ => {}
        }
    }
    m
}

/// A random JSON tree of bounded depth, with strings that hostile producers
/// send: hex of the wrong length, base64, a Python traceback, huge numbers.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|i| json!(i.to_string())),
        (-1e300f64..1e300).prop_map(|f| json!(f)),
        "[0-9a-fA-F]{0,48}".prop_map(Value::String),
        "[A-Za-z0-9+/]{22}==".prop_map(Value::String),
        Just(json!(
            "Traceback (most recent call last):\n  File \"app.py\", line 3, in <module>\n    raise ValueError(\"\\\"}]}\")\nValueError: \"}]}"
        )),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("stringValue".to_string()),
                    Just("kvlistValue".to_string()),
                    Just("arrayValue".to_string()),
                    Just("values".to_string()),
                    Just("intValue".to_string()),
                    "[a-z]{1,6}".prop_map(String::from),
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An OTLP JSON span batch (`logs`: a log batch) whose ids, timestamps,
/// attribute value and `service.name` are random trees.
fn otlp_json(logs: bool) -> impl Strategy<Value = Vec<u8>> {
    (
        json_value(),
        json_value(),
        json_value(),
        json_value(),
        any::<bool>(),
    )
        .prop_map(move |(id, time, attr, service, named)| {
            let mut res = vec![json!({"key": "deployment.environment.name", "value": {"stringValue": "prod"}})];
            if named {
                res.push(json!({"key": "service.name", "value": service}));
            }
            let attrs = json!([{"key": "http.request.method", "value": attr}]);
            let doc = if logs {
                json!({"resourceLogs": [{"resource": {"attributes": res}, "scopeLogs": [{"logRecords": [
                    {"timeUnixNano": time, "traceId": id, "spanId": "00f067aa0ba902b7", "severityNumber": 17, "body": attr, "attributes": attrs}
                ]}]}]})
            } else {
                json!({"resourceSpans": [{"resource": {"attributes": res}, "scopeSpans": [{"spans": [
                    {"traceId": id, "spanId": "00f067aa0ba902b7", "parentSpanId": "", "name": "x", "kind": 2,
                     "startTimeUnixNano": time, "endTimeUnixNano": "1795651100000000000", "attributes": attrs}
                ]}]}]})
            };
            serde_json::to_vec(&doc).unwrap()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_decoder_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    #[test]
    fn no_decoder_panics_on_edited_valid_messages(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        let msgs = valid_messages();
        let m = apply(msgs[which.index(msgs.len())].clone(), &edits);
        decode_everything(&m);
    }

    #[test]
    fn otlp_json_with_random_fields_is_one_record_or_one_rejection(
        spans in otlp_json(false),
        logs in otlp_json(true),
    ) {
        let o = opts();
        let t = otlp::decode_traces(&spans, Encoding::OtlpJson, &o);
        check(&t, Reason::MalformedJson);
        prop_assert_eq!(t.records.len() + t.rejects.len(), 1, "{:?}", t.rejects);
        let l = otlp::decode_logs(&logs, Encoding::OtlpJson, origin(), &o);
        check(&l, Reason::MalformedJson);
        prop_assert_eq!(l.records.len() + l.rejects.len(), 1, "{:?}", l.rejects);
        decode_everything(&spans);
    }
}

/// Nesting far past any recursion limit: an error, never a stack overflow.
#[test]
fn deeply_nested_values_are_rejected_not_overflowed() {
    // Built by hand: prost's own encoder (and drop) recurse without a limit.
    fn field(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag << 3 | 2];
        let mut n = body.len();
        while n >= 0x80 {
            out.push(n as u8 | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(body);
        out
    }
    let mut any = field(1, b"x"); // AnyValue.string_value
    for _ in 0..5000 {
        any = field(5, &field(1, &any)); // AnyValue.array_value { values: [any] }
    }
    let span = proto::Span {
        trace_id: vec![1; 16],
        span_id: vec![1; 8],
        start_time_unix_nano: NOW_NS - 1,
        end_time_unix_nano: NOW_NS,
        ..Default::default()
    };
    let mut span = span.encode_to_vec();
    span.extend(field(9, &[field(1, b"k"), field(2, &any)].concat())); // attributes
    let resource = proto::Resource {
        attributes: vec![proto::KeyValue::string("service.name", "a")],
    }
    .encode_to_vec();
    let rs = [field(1, &resource), field(2, &field(2, &span))].concat();
    let bytes = field(1, &rs);
    let d = otlp::decode_traces(&bytes, Encoding::OtlpProto, &opts());
    assert_eq!(d.rejects.len(), 1);
    assert_eq!(d.rejects[0].reason, Reason::MalformedProtobuf);
    assert!(
        d.rejects[0].detail.contains("recursion limit"),
        "{:?}",
        d.rejects
    );

    let mut j = String::from("\"x\"");
    for _ in 0..5000 {
        j = format!("{{\"arrayValue\":{{\"values\":[{j}]}}}}");
    }
    let doc = format!(
        "{{\"resourceSpans\":[{{\"resource\":{{\"attributes\":[{{\"key\":\"service.name\",\"value\":{{\"stringValue\":\"a\"}}}}]}},\"scopeSpans\":[{{\"spans\":[{{\"traceId\":\"0af7651916cd43dd8448eb211c80319c\",\"spanId\":\"00f067aa0ba902b7\",\"startTimeUnixNano\":\"1795651100000000000\",\"attributes\":[{{\"key\":\"k\",\"value\":{j}}}]}}]}}]}}]}}"
    );
    let d = otlp::decode_traces(doc.as_bytes(), Encoding::OtlpJson, &opts());
    assert_eq!(d.rejects.len(), 1);
    assert_eq!(d.rejects[0].reason, Reason::MalformedJson);
}
