//! A seeded workload: traces of about 8 spans across about 20 services, with
//! configurable rates of context loss, error traces, untraced request logs, PII,
//! duplicates, out-of-order and late messages, and malformed messages. It writes
//! `replay` inputs as OTLP protobuf (`.pb`, delimited) or OTLP JSON (`.jsonl`),
//! several files (partitions) per topic, one OTLP batch per message as the OTel
//! Collector's kafka exporter does.

use std::io::Write;
use std::path::Path;

use causeway::sources::file::write_delimited;
use causeway_schemas::otlp::proto::{
    self, any_value::Value, AnyValue, KeyValue, LogRecord, LogsData, ResourceLogs, ResourceSpans,
    ScopeLogs, ScopeSpans, Span, Status, TracesData,
};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const NS: u64 = 1_000_000_000;

/// Knobs of the workload.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// RNG seed.
    pub seed: u64,
    /// Number of traces.
    pub traces: usize,
    /// Number of services.
    pub services: usize,
    /// Mean spans per trace.
    pub spans_per_trace: usize,
    /// Event time of the first trace, Unix ns.
    pub start_ns: u64,
    /// Event-time span of the whole workload, seconds.
    pub duration_s: u64,
    /// Share of non-root spans whose parent id is lost (orphans).
    pub context_loss: f64,
    /// Share of traces with an error span.
    pub error_traces: f64,
    /// Share of request logs without a (joinable) trace id.
    pub untraced_logs: f64,
    /// Share of spans and logs with PII in an attribute.
    pub pii: f64,
    /// Share of span messages re-sent (at-least-once duplicates).
    pub duplicates: f64,
    /// Share of messages delayed far enough to be late.
    pub late: f64,
    /// Share of messages replaced by malformed bytes.
    pub malformed: f64,
    /// Spans per OTLP message.
    pub batch_spans: usize,
    /// Files (partitions) per topic.
    pub partitions: usize,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            seed: 7,
            traces: 2_000,
            services: 20,
            spans_per_trace: 8,
            start_ns: 1_767_225_600 * NS, // 2026-01-01T00:00:00Z
            duration_s: 600,
            context_loss: 0.03,
            error_traces: 0.05,
            untraced_logs: 0.1,
            pii: 0.01,
            duplicates: 0.02,
            late: 0.01,
            malformed: 0.005,
            batch_spans: 100,
            partitions: 2,
        }
    }
}

/// Output encoding of the OTLP files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Delimited protobuf, `.pb`.
    Proto,
    /// OTLP JSON lines, `.jsonl`.
    Json,
}

struct GenSpan {
    service: usize,
    span: Span,
}

/// Generated messages per topic, in arrival order per partition.
pub struct Workload {
    /// `otlp_spans` messages: (partition, message).
    pub spans: Vec<(usize, TracesData)>,
    /// `otlp_logs` messages.
    pub logs: Vec<(usize, LogsData)>,
    /// Audit records (JSON lines).
    pub audit: Vec<String>,
    /// Number of spans generated (before duplicates).
    pub span_count: usize,
    malformed_spans: Vec<(usize, usize)>,
}

fn service_name(i: usize) -> String {
    format!("svc-{i:02}")
}

fn resource(service: usize) -> proto::Resource {
    proto::Resource {
        attributes: vec![
            KeyValue::string("service.name", &service_name(service)),
            KeyValue::string(
                "deployment.environment.name",
                if service % 5 == 4 { "staging" } else { "prod" },
            ),
            KeyValue::string("service.version", &format!("1.{}.0", service % 3)),
        ],
    }
}

fn pii_value(rng: &mut ChaCha8Rng) -> &'static str {
    [
        "alice@example.com",
        "4111 1111 1111 1111",
        "ssn 123-45-6789",
        "Bearer abcdefghijklmnop",
    ][rng.random_range(0..4)]
}

/// Generates the workload.
pub fn generate(cfg: &WorkloadConfig) -> Workload {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut spans: Vec<GenSpan> = Vec::new();
    let mut logs: Vec<(usize, u64, LogRecord)> = Vec::new();
    let mut audit = Vec::new();
    let step = cfg.duration_s * NS / cfg.traces.max(1) as u64;
    for t in 0..cfg.traces {
        let trace_id: u128 = rng.random::<u128>() | 1;
        let t0 = cfg.start_ns + t as u64 * step + rng.random_range(0..step.max(1));
        let error_trace = rng.random_bool(cfg.error_traces);
        let n = rng
            .random_range(cfg.spans_per_trace / 2..=cfg.spans_per_trace * 3 / 2)
            .max(1);
        let error_at = rng.random_range(0..n);
        let mut ids: Vec<(u64, u64, u64, usize)> = Vec::with_capacity(n); // (id, start, end, service)
        for i in 0..n {
            let id = rng.random::<u64>() | 1;
            let (parent, service, start) = if i == 0 {
                (0, rng.random_range(0..2.min(cfg.services)), t0)
            } else {
                let p = rng.random_range(0..i);
                let (pid, pstart, _, psvc) = ids[p];
                let svc = if rng.random_bool(0.6) {
                    rng.random_range(0..cfg.services)
                } else {
                    psvc
                };
                let skew = if rng.random_bool(0.01) { 0 } else { 2 * NS };
                (
                    pid,
                    svc,
                    pstart + rng.random_range(0..20_000_000) + 2 * NS - skew,
                )
            };
            let parent = if parent != 0 && rng.random_bool(cfg.context_loss) {
                rng.random::<u64>() | 1
            } else {
                parent
            };
            let dur = rng.random_range(100_000..200_000_000u64);
            let end = if rng.random_bool(0.005) {
                start - 1
            } else {
                start + dur
            };
            ids.push((id, start, end, service));
            let kind = if i == 0 || rng.random_bool(0.5) {
                2
            } else if rng.random_bool(0.5) {
                3
            } else {
                1
            };
            let status = if error_trace && i == error_at {
                2
            } else if rng.random_bool(0.3) {
                1
            } else {
                0
            };
            let mut attributes = vec![KeyValue::string("http.route", "/api/items")];
            if rng.random_bool(cfg.pii) {
                attributes.push(KeyValue::string("user.note", pii_value(&mut rng)));
            }
            spans.push(GenSpan {
                service,
                span: Span {
                    trace_id: trace_id.to_be_bytes().to_vec(),
                    span_id: id.to_be_bytes().to_vec(),
                    parent_span_id: if parent == 0 {
                        vec![]
                    } else {
                        parent.to_be_bytes().to_vec()
                    },
                    name: "op".into(),
                    kind,
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    attributes,
                    status: Some(Status {
                        message: String::new(),
                        code: status,
                    }),
                },
            });
            if kind == 2 {
                let untraced = rng.random_bool(cfg.untraced_logs);
                let log_trace = if untraced {
                    if rng.random_bool(0.5) {
                        vec![]
                    } else {
                        (rng.random::<u128>() | 1).to_be_bytes().to_vec()
                    }
                } else {
                    trace_id.to_be_bytes().to_vec()
                };
                let failed = status == 2;
                let mut attributes = vec![
                    KeyValue::string("http.request.method", "GET"),
                    KeyValue::int("http.response.status_code", if failed { 503 } else { 200 }),
                ];
                if rng.random_bool(cfg.pii) {
                    attributes.push(KeyValue::string("client.email", pii_value(&mut rng)));
                }
                let log_t = start + rng.random_range(0..dur.max(1));
                logs.push((
                    service,
                    log_t,
                    LogRecord {
                        time_unix_nano: log_t,
                        severity_number: if failed { 17 } else { 9 },
                        body: Some(AnyValue {
                            value: Some(Value::StringValue("request handled".into())),
                        }),
                        attributes,
                        trace_id: log_trace,
                        span_id: vec![],
                        observed_time_unix_nano: log_t,
                    },
                ));
            }
        }
        if rng.random_bool(0.02) {
            let svc = ids[0].3;
            let traced = rng.random_bool(0.7);
            audit.push(format!(
                r#"{{"kind":"causeway.audit/v1","ts":{},"service":"{}","environment":"prod","actor":"user-{}","action":"config-change"{}}}"#,
                t0 + NS / 2,
                service_name(svc),
                rng.random_range(0..5),
                if traced { format!(r#","trace_id":"{trace_id:032x}""#) } else { String::new() },
            ));
        }
    }
    // Arrival order: by event time with jitter well inside the allowed lateness.
    let jitter = |rng: &mut ChaCha8Rng, t: u64| t + rng.random_range(0..5 * NS);
    let mut keyed: Vec<(u64, GenSpan)> = spans
        .into_iter()
        .map(|s| (jitter(&mut rng, s.span.start_time_unix_nano), s))
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    let span_count = keyed.len();
    let mut span_msgs: Vec<(u64, TracesData)> = Vec::new();
    for chunk in keyed.chunks(cfg.batch_spans.max(1)) {
        let mut by_service: std::collections::BTreeMap<usize, Vec<Span>> = Default::default();
        for (_, s) in chunk {
            by_service
                .entry(s.service)
                .or_default()
                .push(s.span.clone());
        }
        let msg = TracesData {
            resource_spans: by_service
                .into_iter()
                .map(|(svc, spans)| ResourceSpans {
                    resource: Some(resource(svc)),
                    scope_spans: vec![ScopeSpans { spans }],
                })
                .collect(),
        };
        span_msgs.push((chunk[0].0, msg));
    }
    let mut log_keyed: Vec<(u64, usize, LogRecord)> = logs
        .into_iter()
        .map(|(s, t, l)| (jitter(&mut rng, t), s, l))
        .collect();
    log_keyed.sort_by_key(|(k, _, _)| *k);
    let mut log_msgs: Vec<(u64, LogsData)> = Vec::new();
    for chunk in log_keyed.chunks(cfg.batch_spans.max(1)) {
        let mut by_service: std::collections::BTreeMap<usize, Vec<LogRecord>> = Default::default();
        for (_, s, l) in chunk {
            by_service.entry(*s).or_default().push(l.clone());
        }
        log_msgs.push((
            chunk[0].0,
            LogsData {
                resource_logs: by_service
                    .into_iter()
                    .map(|(svc, log_records)| ResourceLogs {
                        resource: Some(resource(svc)),
                        scope_logs: vec![ScopeLogs { log_records }],
                    })
                    .collect(),
            },
        ));
    }
    // Duplicates: re-send some span messages a little later.
    let dups: Vec<(u64, TracesData)> = span_msgs
        .iter()
        .filter(|_| rng.random_bool(cfg.duplicates))
        .map(|(k, m)| (k + 3 * NS, m.clone()))
        .collect();
    span_msgs.extend(dups);
    // Late: delay some messages by two minutes of arrival order.
    for (k, _) in span_msgs.iter_mut() {
        if rng.random_bool(cfg.late) {
            *k += 120 * NS;
        }
    }
    for (k, _) in log_msgs.iter_mut() {
        if rng.random_bool(cfg.late) {
            *k += 120 * NS;
        }
    }
    span_msgs.sort_by_key(|(k, _)| *k);
    log_msgs.sort_by_key(|(k, _)| *k);
    let parts = cfg.partitions.max(1);
    let mut malformed_spans = Vec::new();
    for i in 0..span_msgs.len() {
        if rng.random_bool(cfg.malformed) {
            malformed_spans.push((i, rng.random_range(0..3)));
        }
    }
    Workload {
        spans: span_msgs
            .into_iter()
            .enumerate()
            .map(|(i, (_, m))| (i % parts, m))
            .collect(),
        logs: log_msgs
            .into_iter()
            .enumerate()
            .map(|(i, (_, m))| (i % parts, m))
            .collect(),
        audit,
        span_count,
        malformed_spans,
    }
}

fn any_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::json;
    match &v.value {
        Some(Value::StringValue(s)) => json!({ "stringValue": s }),
        Some(Value::IntValue(i)) => json!({ "intValue": i.to_string() }),
        Some(Value::BoolValue(b)) => json!({ "boolValue": b }),
        Some(Value::DoubleValue(d)) => json!({ "doubleValue": d }),
        _ => json!({}),
    }
}

fn attrs_json(kvs: &[KeyValue]) -> serde_json::Value {
    kvs.iter()
        .map(|kv| serde_json::json!({ "key": kv.key, "value": kv.value.as_ref().map(any_json) }))
        .collect()
}

/// OTLP JSON of a `TracesData`.
pub fn traces_json(m: &TracesData) -> String {
    use serde_json::json;
    let rs: Vec<_> = m
        .resource_spans
        .iter()
        .map(|r| {
            let spans: Vec<_> = r.scope_spans[0]
                .spans
                .iter()
                .map(|s| {
                    json!({
                        "traceId": hex::encode(&s.trace_id),
                        "spanId": hex::encode(&s.span_id),
                        "parentSpanId": hex::encode(&s.parent_span_id),
                        "name": s.name,
                        "kind": s.kind,
                        "startTimeUnixNano": s.start_time_unix_nano.to_string(),
                        "endTimeUnixNano": s.end_time_unix_nano.to_string(),
                        "attributes": attrs_json(&s.attributes),
                        "status": { "code": s.status.as_ref().map_or(0, |st| st.code) },
                    })
                })
                .collect();
            json!({
                "resource": { "attributes": attrs_json(&r.resource.as_ref().map(|x| x.attributes.clone()).unwrap_or_default()) },
                "scopeSpans": [{ "scope": { "name": "gen" }, "spans": spans }],
            })
        })
        .collect();
    json!({ "resourceSpans": rs }).to_string()
}

/// OTLP JSON of a `LogsData`.
pub fn logs_json(m: &LogsData) -> String {
    use serde_json::json;
    let rl: Vec<_> = m
        .resource_logs
        .iter()
        .map(|r| {
            let records: Vec<_> = r.scope_logs[0]
                .log_records
                .iter()
                .map(|l| {
                    json!({
                        "timeUnixNano": l.time_unix_nano.to_string(),
                        "observedTimeUnixNano": l.observed_time_unix_nano.to_string(),
                        "severityNumber": l.severity_number,
                        "traceId": hex::encode(&l.trace_id),
                        "body": l.body.as_ref().map(any_json),
                        "attributes": attrs_json(&l.attributes),
                    })
                })
                .collect();
            json!({
                "resource": { "attributes": attrs_json(&r.resource.as_ref().map(|x| x.attributes.clone()).unwrap_or_default()) },
                "scopeLogs": [{ "logRecords": records }],
            })
        })
        .collect();
    json!({ "resourceLogs": rl }).to_string()
}

impl Workload {
    /// Writes `replay` inputs into `dir`.
    pub fn write(&self, dir: &Path, format: Format, partitions: usize) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let ext = if format == Format::Proto {
            "pb"
        } else {
            "jsonl"
        };
        let open = |topic: &str, p: usize| -> std::io::Result<std::io::BufWriter<std::fs::File>> {
            Ok(std::io::BufWriter::new(std::fs::File::create(
                dir.join(format!("{topic}-{p}.{ext}")),
            )?))
        };
        let mut span_files = (0..partitions)
            .map(|p| open("otlp_spans", p))
            .collect::<std::io::Result<Vec<_>>>()?;
        for (i, (p, m)) in self.spans.iter().enumerate() {
            let bad = self
                .malformed_spans
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, k)| *k);
            let w = &mut span_files[p % partitions];
            match (format, bad) {
                (Format::Proto, None) => write_delimited(w, &m.encode_to_vec())?,
                (Format::Proto, Some(_)) => {
                    // A message cut short: a valid frame around truncated protobuf.
                    let bytes = m.encode_to_vec();
                    write_delimited(w, &bytes[..bytes.len() / 2])?
                }
                (Format::Json, None) => writeln!(w, "{}", traces_json(m))?,
                (Format::Json, Some(0)) => writeln!(w, "{{\"resourceSpans\": [")?,
                (Format::Json, Some(1)) => {
                    let s = traces_json(m);
                    let id = hex::encode(&m.resource_spans[0].scope_spans[0].spans[0].trace_id);
                    writeln!(
                        w,
                        "{}",
                        s.replacen(&id, &format!("{id}0123456789abcdef"), 1)
                    )?
                }
                (Format::Json, Some(_)) => {
                    let s = traces_json(m);
                    writeln!(
                        w,
                        "{}",
                        s.replacen("\"service.name\"", "\"service.nom\"", 1)
                    )?
                }
            }
        }
        let mut log_files = (0..partitions)
            .map(|p| open("otlp_logs", p))
            .collect::<std::io::Result<Vec<_>>>()?;
        for (p, m) in &self.logs {
            let w = &mut log_files[p % partitions];
            match format {
                Format::Proto => write_delimited(w, &m.encode_to_vec())?,
                Format::Json => writeln!(w, "{}", logs_json(m))?,
            }
        }
        let mut a = std::io::BufWriter::new(std::fs::File::create(dir.join("audit-0.jsonl"))?);
        for line in &self.audit {
            writeln!(a, "{line}")?;
        }
        for mut f in span_files
            .into_iter()
            .chain(log_files)
            .chain(std::iter::once(a))
        {
            f.flush()?;
        }
        Ok(())
    }
}
