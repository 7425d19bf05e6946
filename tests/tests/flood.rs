//! A flood of malformed messages through Kafka (tansu), mixed into valid
//! traffic: `causeway run` must not crash, must dead-letter exactly one entry
//! per bad message (each bad message here holds exactly one bad record or fails
//! as a whole, by construction), and its SLI records and service graph must
//! equal those of `replay` on the valid traffic alone.
//!
//! `CAUSEWAY_FLOOD_MESSAGES` sets the number of malformed messages (default
//! 1,000,000: about 45 s in debug on a 2-core machine, 25 s in release; set it
//! lower for a quick run); `CAUSEWAY_FLOOD_BIG` the number of 10 MB messages
//! among them (default 2). With `--nocapture` it prints its figures:
//!
//!     cargo build -p causeway && cargo test -p causeway-tests --test flood -- --nocapture
//!
//! Bad kinds: truncated protobuf, a known field with the wrong wire type,
//! 48-hex (24-byte) ids in protobuf and JSON, base64 ids in JSON, a Python
//! traceback as a JSON timestamp and as a whole message, a missing
//! `service.name`, both timestamps zero, timestamps in the year 2200, attribute
//! values nested past the recursion limit, 10 MB messages, and broken CDEvents
//! and audit records (truncated JSON, year-2200 and non-RFC 3339 times).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use causeway::commands::replay::{replay, ReplayOptions};
use causeway::kafka::produce_input;
use causeway::sources::file::{list_inputs, open};
use causeway::sources::Topic;
use causeway_benches::workload::{generate, Format, WorkloadConfig};
use causeway_schemas::otlp::proto;
use causeway_schemas::records::{DlqRecord, ServiceGraphRecord, SliRecord};
use causeway_tests::kafka::{
    assert_same, create_topic, create_topics, dead_records, header, read_topic, spawn_run, Tansu,
};
use causeway_tests::process::wait_exit;
use causeway_tests::reference::read_jsonl;
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};

const TIME: &str = "[time]\nwindow = \"10s\"\ncorrelation_grace = \"10s\"\ntrace_horizon = \"30s\"\nallowed_lateness = \"10s\"\nidle_timeout = \"3s\"\n";

/// Workload event time: 2026-01-01, well before the wall clock (no future skew).
const T0: u64 = 1_767_225_600 * 1_000_000_000;
/// 2200-01-01T00:00:00Z.
const YEAR_2200_NS: u64 = 7_258_118_400 * 1_000_000_000;
const YEAR_2200: &str = "2200-01-01T00:00:00Z";
const TRACEBACK: &str = "Traceback (most recent call last):\n  File \"/app/worker.py\", line 42, in handle\n    payload = json.loads(body)\n  File \"/usr/lib/python3.12/json/__init__.py\", line 346, in loads\n    return _default_decoder.decode(s)\njson.decoder.JSONDecodeError: Expecting ',' delimiter: line 1 column 17 (char 16) {\"}]\n";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-flood-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Valid traffic: OTLP protobuf spans, OTLP JSON logs and audit records of a
/// seeded workload with no malformed messages of its own.
fn valid_input(dir: &Path) -> PathBuf {
    let cfg = WorkloadConfig {
        seed: 53,
        traces: 2000,
        duration_s: 300,
        malformed: 0.0,
        partitions: 2,
        ..Default::default()
    };
    let w = generate(&cfg);
    let (pb, js, input) = (dir.join("pb"), dir.join("js"), dir.join("valid"));
    w.write(&pb, Format::Proto, 2).unwrap();
    w.write(&js, Format::Json, 2).unwrap();
    std::fs::create_dir_all(&input).unwrap();
    for (from, name) in [
        (&pb, "otlp_spans-0.pb"),
        (&pb, "otlp_spans-1.pb"),
        (&js, "otlp_logs-0.jsonl"),
        (&js, "otlp_logs-1.jsonl"),
        (&pb, "audit-0.jsonl"),
    ] {
        std::fs::copy(from.join(name), input.join(name)).unwrap();
    }
    input
}

fn resource(service: Option<&str>) -> Option<proto::Resource> {
    let mut attributes = vec![proto::KeyValue::string(
        "deployment.environment.name",
        "prod",
    )];
    if let Some(s) = service {
        attributes.push(proto::KeyValue::string("service.name", s));
    }
    Some(proto::Resource { attributes })
}

fn span(trace_id: Vec<u8>, start: u64, end: u64) -> proto::Span {
    proto::Span {
        trace_id,
        span_id: vec![0x5a; 8],
        name: "GET /flood".into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        ..Default::default()
    }
}

fn batch(service: Option<&str>, spans: Vec<proto::Span>) -> Vec<u8> {
    proto::TracesData {
        resource_spans: vec![proto::ResourceSpans {
            resource: resource(service),
            scope_spans: vec![proto::ScopeSpans { spans }],
        }],
    }
    .encode_to_vec()
}

/// A protobuf length-delimited field.
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

/// A span batch whose one attribute value is nested `depth` arrays deep.
fn nested(depth: usize) -> Vec<u8> {
    let mut any = field(1, b"x");
    for _ in 0..depth {
        any = field(5, &field(1, &any));
    }
    let mut s = span(vec![7; 16], T0 + 1, T0 + 2).encode_to_vec();
    s.extend(field(9, &[field(1, b"k"), field(2, &any)].concat()));
    let r = resource(Some("flood")).unwrap().encode_to_vec();
    field(1, &[field(1, &r), field(2, &field(2, &s))].concat())
}

fn log_json(service: Option<&str>, trace_id: &str, time: serde_json::Value) -> Vec<u8> {
    let mut res = vec![
        serde_json::json!({"key": "deployment.environment.name", "value": {"stringValue": "prod"}}),
    ];
    if let Some(s) = service {
        res.push(serde_json::json!({"key": "service.name", "value": {"stringValue": s}}));
    }
    serde_json::to_vec(&serde_json::json!({"resourceLogs": [{"resource": {"attributes": res}, "scopeLogs": [{"logRecords": [{
        "timeUnixNano": time, "traceId": trace_id, "spanId": "00f067aa0ba902b7", "severityNumber": 17,
        "body": {"stringValue": TRACEBACK},
        "attributes": [{"key": "http.request.method", "value": {"stringValue": "POST"}}]
    }]}]}]}))
    .unwrap()
}

fn cdevent(timestamp: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "context": {"version": "0.4.1", "id": "flood", "source": "/flood", "type": "dev.cdevents.service.deployed.0.2.0", "timestamp": timestamp},
        "subject": {"id": "service/flood", "content": {"environment": {"id": "prod"}, "artifactId": "pkg:oci/flood@1.0.0"}}
    }))
    .unwrap()
}

fn audit_record(ts: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "kind": "causeway.audit/v1", "ts": ts, "service": "flood", "actor": "mallory@example.com", "action": "deploy"
    }))
    .unwrap()
}

/// Every bad kind of a topic: (name, message, the reason of its one dead letter).
fn bad_kinds(topic: Topic) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let ok = || batch(Some("flood"), vec![span(vec![7; 16], T0 + 1, T0 + 2)]);
    match topic {
        Topic::Spans => {
            let whole = ok();
            let mut wrong_wire = span(vec![7; 16], 0, T0 + 2).encode_to_vec();
            // start_time_unix_nano (field 7, fixed64) sent as a varint.
            wrong_wire.extend([7 << 3, 0x96, 0x01]);
            let r = resource(Some("flood")).unwrap().encode_to_vec();
            let wrong_wire = field(
                1,
                &[field(1, &r), field(2, &field(2, &wrong_wire))].concat(),
            );
            vec![
                (
                    "truncated protobuf",
                    whole[..whole.len() / 2].to_vec(),
                    "malformed_protobuf",
                ),
                ("wrong wire type", wrong_wire, "malformed_protobuf"),
                (
                    "48-hex trace id",
                    batch(Some("flood"), vec![span(vec![7; 24], T0 + 1, T0 + 2)]),
                    "invalid_trace_id",
                ),
                (
                    "missing service.name",
                    batch(None, vec![span(vec![7; 16], T0 + 1, T0 + 2)]),
                    "missing_service",
                ),
                (
                    "timestamps zero",
                    batch(Some("flood"), vec![span(vec![7; 16], 0, 0)]),
                    "missing_timestamp",
                ),
                (
                    "year 2200",
                    batch(
                        Some("flood"),
                        vec![span(vec![7; 16], YEAR_2200_NS, YEAR_2200_NS + 1)],
                    ),
                    "future_timestamp",
                ),
                ("nested 200 deep", nested(200), "malformed_protobuf"),
                (
                    "empty span id",
                    {
                        let mut s = span(vec![7; 16], T0 + 1, T0 + 2);
                        s.span_id.clear();
                        batch(Some("flood"), vec![s])
                    },
                    "missing_span_id",
                ),
            ]
        }
        Topic::Logs => {
            let t = || serde_json::json!((T0 + 5).to_string());
            vec![
                (
                    "48-hex trace id (JSON)",
                    log_json(Some("flood"), &"ab".repeat(24), t()),
                    "invalid_trace_id",
                ),
                (
                    "base64 trace id (JSON)",
                    log_json(Some("flood"), "q83vEjRWeJCrze8SNFZ4kA==", t()),
                    "invalid_trace_id",
                ),
                (
                    "traceback as timestamp",
                    log_json(
                        Some("flood"),
                        "0af7651916cd43dd8448eb211c80319c",
                        serde_json::json!(TRACEBACK),
                    ),
                    "malformed_json",
                ),
                (
                    "traceback as message",
                    TRACEBACK.as_bytes().to_vec(),
                    "malformed_json",
                ),
                (
                    "missing service.name (JSON)",
                    log_json(None, "0af7651916cd43dd8448eb211c80319c", t()),
                    "missing_service",
                ),
                (
                    "timestamps zero (JSON)",
                    log_json(
                        Some("flood"),
                        "0af7651916cd43dd8448eb211c80319c",
                        serde_json::json!("0"),
                    ),
                    "missing_timestamp",
                ),
                (
                    "year 2200 (JSON)",
                    log_json(
                        Some("flood"),
                        "0af7651916cd43dd8448eb211c80319c",
                        serde_json::json!(YEAR_2200_NS.to_string()),
                    ),
                    "future_timestamp",
                ),
                (
                    "truncated JSON",
                    log_json(Some("flood"), "0af7651916cd43dd8448eb211c80319c", t())[..40].to_vec(),
                    "malformed_json",
                ),
            ]
        }
        Topic::Deploys => vec![
            (
                "truncated CDEvent",
                cdevent("2026-01-01T00:00:05Z")[..50].to_vec(),
                "malformed_json",
            ),
            ("CDEvent in 2200", cdevent(YEAR_2200), "future_timestamp"),
            (
                "CDEvent, traceback timestamp",
                cdevent(TRACEBACK),
                "invalid_timestamp",
            ),
        ],
        Topic::Audit => vec![
            (
                "truncated audit record",
                audit_record("2026-01-01T00:00:05Z")[..30].to_vec(),
                "malformed_json",
            ),
            (
                "audit record in 2200",
                audit_record(YEAR_2200),
                "future_timestamp",
            ),
            (
                "audit record, traceback ts",
                audit_record(TRACEBACK),
                "invalid_timestamp",
            ),
        ],
    }
}

/// A 10 MB span batch cut one byte short: one `malformed_protobuf` each.
fn big_message() -> Vec<u8> {
    let mut s = span(vec![7; 16], T0 + 1, T0 + 2);
    s.attributes
        .push(proto::KeyValue::string("blob", &"x".repeat(10 << 20)));
    let mut b = batch(Some("flood"), vec![s]);
    b.pop();
    b
}

/// The messages of one partition, in order, each with its traceparent header.
type PartitionMessages = Vec<(Vec<u8>, Option<String>)>;

struct Plan {
    /// Per (topic, partition): the messages to produce, in order, with their traceparent header.
    messages: BTreeMap<(Topic, i32), PartitionMessages>,
    /// Dead letters expected from the bad messages, by reason.
    bad: BTreeMap<String, usize>,
    bad_messages: usize,
    valid_messages: usize,
}

/// Interleaves `n` bad messages (spans 50 %, logs 30 %, deploys and audit 10 %
/// each; `big` 10 MB ones among the spans) with the valid messages of `input`,
/// keeping every partition's valid messages in their order.
fn plan(input: &Path, n: usize, big: usize) -> Plan {
    let inputs = list_inputs(input).unwrap();
    let mut valid: BTreeMap<(Topic, i32), PartitionMessages> = BTreeMap::new();
    for t in Topic::ALL {
        let files: Vec<_> = inputs.iter().filter(|(_, tt, _)| *tt == t).collect();
        if files.is_empty() {
            valid.insert((t, 0), Vec::new());
        }
        for (p, (path, _, enc)) in files.iter().enumerate() {
            let mut part = open(path, t, *enc, 0).unwrap();
            let v = valid.entry((t, p as i32)).or_default();
            while let Some(m) = part.reader.next_message().unwrap() {
                v.push((m.payload, m.traceparent));
            }
        }
    }
    let valid_messages = valid.values().map(Vec::len).sum();
    let share = |t: Topic| match t {
        Topic::Spans => n - 3 * (n / 10) - 2 * (n / 10),
        Topic::Logs => 3 * (n / 10),
        Topic::Deploys | Topic::Audit => n / 10,
    };
    let mut bad: BTreeMap<String, usize> = BTreeMap::new();
    let mut messages = BTreeMap::new();
    let big_bytes = (big > 0).then(big_message);
    for t in Topic::ALL {
        let kinds = bad_kinds(t);
        let parts: Vec<i32> = valid
            .keys()
            .filter(|(tt, _)| *tt == t)
            .map(|k| k.1)
            .collect();
        let k = share(t);
        let mut per_part: BTreeMap<i32, Vec<Vec<u8>>> = BTreeMap::new();
        for j in 0..k {
            let msg = if t == Topic::Spans && j < big {
                *bad.entry("malformed_protobuf".into()).or_default() += 1;
                big_bytes.clone().unwrap()
            } else {
                let (_, m, reason) = &kinds[j % kinds.len()];
                *bad.entry(reason.to_string()).or_default() += 1;
                m.clone()
            };
            per_part
                .entry(parts[j % parts.len()])
                .or_default()
                .push(msg);
        }
        for p in parts {
            let v = valid.remove(&(t, p)).unwrap();
            let b = per_part.remove(&p).unwrap_or_default();
            let (m, k) = (v.len(), b.len());
            let mut out = Vec::with_capacity(m + k);
            let mut b = b.into_iter();
            for (i, msg) in v.into_iter().enumerate() {
                // Bad messages [i*k/m, (i+1)*k/m) go before valid message i.
                for _ in (i * k / m)..((i + 1) * k / m) {
                    out.push((b.next().unwrap(), None));
                }
                out.push(msg);
            }
            out.extend(b.map(|x| (x, None)));
            messages.insert((t, p), out);
        }
    }
    Plan {
        messages,
        bad,
        bad_messages: n,
        valid_messages,
    }
}

fn produce(brokers: &str, plan: &Plan) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("message.max.bytes", "12000000")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .expect("producer");
    for ((topic, p), msgs) in &plan.messages {
        for (payload, tp) in msgs {
            // Only a full queue is waited out; any other error fails the test.
            produce_input(&producer, topic.default_name(), *p, payload, tp.as_deref())
                .unwrap_or_else(|e| panic!("produce: {e}"));
        }
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn flood_of_malformed_messages_dead_letters_each_and_leaves_slis_unchanged() {
    let n = env_usize("CAUSEWAY_FLOOD_MESSAGES", 1_000_000);
    let big = env_usize("CAUSEWAY_FLOOD_BIG", 2);
    let dir = scratch();
    let input = valid_input(&dir);

    // What replay makes of the valid traffic alone.
    let config = dir.join("replay.toml");
    std::fs::write(&config, TIME).unwrap();
    let out = dir.join("replay");
    replay(&ReplayOptions {
        input: input.clone(),
        out: out.clone(),
        config: Some(config),
        workers: 1,
        progress: false,
    })
    .unwrap();
    let want: Vec<SliRecord> = read_jsonl(&out.join("sli.jsonl"));
    let want_edges: Vec<ServiceGraphRecord> = read_jsonl(&out.join("service_graph.jsonl"));
    let valid_dlq: Vec<DlqRecord> = read_jsonl(&out.join("dlq.jsonl"));
    assert!(want.len() > 100, "workload too small: {}", want.len());

    let plan = plan(&input, n, big);
    let mut expected = plan.bad.clone();
    for d in &valid_dlq {
        *expected.entry(d.reason.clone()).or_default() += 1;
    }
    assert_eq!(plan.bad.values().sum::<usize>(), n);

    let tansu = Tansu::start();
    create_topics(&input, |t, p| create_topic(&tansu.brokers, t, p));
    let t = Instant::now();
    produce(&tansu.brokers, &plan);
    let produced = t.elapsed();

    let cfg = dir.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"flood\"\ncommit_interval = \"500ms\"\n\n[kafka.encodings]\nspans = \"otlp_proto\"\nlogs = \"otlp_json\"\n\n[metrics]\nbind = \"\"\n\n{TIME}",
            tansu.brokers
        ),
    )
    .unwrap();
    let t = Instant::now();
    let mut child = spawn_run(&cfg, &["-w", "2", "--drain"]);
    let pid = child.id();
    let mut peak = 0;
    let limit = Duration::from_secs(60 + (n as u64) / 500);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        peak = peak.max(rss_kib(pid).unwrap_or(0));
        if t.elapsed() > limit {
            break wait_exit(&mut child, Duration::from_secs(1));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let ran = t.elapsed();
    assert!(status.success(), "causeway run exited with {status}");

    let dlq = read_topic(&tansu.brokers, "causeway_dlq");
    // The records the dead letters stand for: a message's rejected records
    // share one dead letter per reason.
    let dead = dead_records(&dlq);
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for d in &dead {
        *got.entry(d.4.clone()).or_default() += 1;
    }
    eprintln!(
        "flood: {} bad + {} valid messages produced in {:.1?}; causeway run --drain took {:.1?} (peak RSS {} MiB); {} dead letters for {} records ({} from the valid traffic)",
        plan.bad_messages,
        plan.valid_messages,
        produced,
        ran,
        peak / 1024,
        dlq.len(),
        dead.len(),
        valid_dlq.len()
    );
    assert_eq!(got, expected, "dead letters by reason");
    // A dead letter carries the original bytes, except one over the producer's
    // `message.max.bytes` (the 10 MB messages), which says it omitted them.
    let omitted = dlq
        .iter()
        .filter(|r| {
            r.headers
                .iter()
                .any(|(k, _)| k == "causeway.payload_omitted")
        })
        .count();
    assert_eq!(omitted, big);
    // The rest carry exactly the bytes produced at the offset their headers name.
    let header = |r: &causeway_tests::kafka::Record, k: &str| -> String {
        header(r, k).unwrap_or_else(|| panic!("a dead letter without {k}"))
    };
    for r in &dlq {
        if r.headers
            .iter()
            .any(|(k, _)| k == "causeway.payload_omitted")
        {
            continue;
        }
        let name = header(r, "causeway.source.topic");
        let topic = *Topic::ALL
            .iter()
            .find(|t| t.default_name() == name)
            .unwrap();
        let p: i32 = header(r, "causeway.source.partition").parse().unwrap();
        let o: usize = header(r, "causeway.source.offset").parse().unwrap();
        assert!(
            plan.messages[&(topic, p)][o].0 == r.value,
            "the dead letter of {name}/{p}/{o} does not hold the message's bytes"
        );
    }
    assert_eq!(dead.len(), n + valid_dlq.len());
    let mut letters: Vec<_> = dead.iter().map(|d| (&d.0, d.1, d.2, &d.4)).collect();
    letters.sort();
    letters.dedup();
    assert_eq!(
        dlq.len(),
        letters.len(),
        "one dead letter per message and reason"
    );

    let mut sli: Vec<SliRecord> = read_topic(&tansu.brokers, "causeway_sli")
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect();
    sli.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    assert_same("causeway_sli under the flood", &sli, &want);
    let mut edges: Vec<ServiceGraphRecord> = read_topic(&tansu.brokers, "causeway_service_graph")
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect();
    edges.sort_by(|a, b| {
        (a.window_start, &a.client, &a.server).cmp(&(b.window_start, &b.client, &b.server))
    });
    assert_same(
        "causeway_service_graph under the flood",
        &edges,
        &want_edges,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
