//! A naive, batch implementation of SPEC §2 (lateness) and §3 (every SLI and the
//! service graph), written straight from the definitions with maps and loops and
//! no dataflow. The dataflow must agree with it exactly.
//!
//! It reuses only the decoders and file readers (tested on their own) and the
//! histogram encoding; every count is computed here independently.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use causeway::config::Settings;
use causeway::sources::file::{list_inputs, open};
use causeway::sources::Topic;
use causeway_jobs::operators::finalize::encode_histogram;
use causeway_schemas::records::{ServiceGraphRecord, SliRecord};
use causeway_schemas::{
    audit, otlp, AuditRecord, LogRecord, Origin, Resource, Span, SpanKind, SpanStatus,
};

const NS: u64 = 1_000_000_000;

/// The non-late accepted records of an input directory.
#[derive(Default)]
pub struct Accepted {
    /// Spans.
    pub spans: Vec<Span>,
    /// Logs.
    pub logs: Vec<LogRecord>,
    /// Audits.
    pub audits: Vec<AuditRecord>,
}

/// Reads `dir` the way SPEC §2 prescribes, per partition: a record is late when
/// its time is below (max time of earlier messages - allowed lateness).
pub fn read_accepted(dir: &Path, s: &Settings) -> Accepted {
    let mut acc = Accepted::default();
    for (i, (path, topic, enc)) in list_inputs(dir).unwrap().into_iter().enumerate() {
        let mut part = open(&path, topic, enc, i as u32).unwrap();
        let mut max_seen: Option<u64> = None;
        while let Some(msg) = part.reader.next_message().unwrap() {
            if msg.framing_error.is_some() {
                continue;
            }
            let late =
                |t: u64| max_seen.is_some_and(|m| t < m.saturating_sub(s.allowed_lateness_ns));
            let origin = Origin {
                partition: i as u32,
                offset: msg.offset,
                index: 0,
            };
            let mut times = Vec::new();
            match topic {
                Topic::Spans => {
                    for sp in otlp::decode_traces(&msg.payload, enc, &s.decode).records {
                        let t = if sp.start > 0 { sp.start } else { sp.end };
                        if !late(t) {
                            times.push(t);
                            acc.spans.push(sp);
                        }
                    }
                }
                Topic::Logs => {
                    for l in otlp::decode_logs(&msg.payload, enc, origin, &s.decode).records {
                        if !late(l.time) {
                            times.push(l.time);
                            acc.logs.push(l);
                        }
                    }
                }
                Topic::Audit => {
                    if let Ok(a) = audit::decode_audit(&msg.payload, origin, None, &s.decode) {
                        if !late(a.time) {
                            times.push(a.time);
                            acc.audits.push(a);
                        }
                    }
                }
                Topic::Deploys => {}
            }
            if let Some(m) = times.into_iter().max() {
                max_seen = Some(max_seen.map_or(m, |x| x.max(m)));
            }
        }
    }
    acc
}

type Dims = (String, String, String);

fn dims(r: &Resource) -> Dims {
    (r.service.clone(), r.environment.clone(), r.version.clone())
}

#[derive(Default, Clone, Copy)]
struct Count {
    good: u64,
    total: u64,
}

/// Computes `sli.jsonl` and `service_graph.jsonl` contents, sorted as the files are.
pub fn compute(acc: &Accepted, s: &Settings) -> (Vec<SliRecord>, Vec<ServiceGraphRecord>) {
    let p = &s.params;
    let w = p.window_s;
    let window = |t: u64| (t / NS) - (t / NS) % w;
    let horizon = p.horizon_s * NS;
    let grace = p.grace_s * NS;
    let joins = |t: u64, start: u64| start + horizon >= t && start <= t + grace;

    // Identity: greatest end, then ERROR, then smallest service name, then smallest record.
    let mut best: HashMap<(u128, u64), &Span> = HashMap::new();
    for sp in &acc.spans {
        let e = best.entry((sp.trace, sp.span)).or_insert(sp);
        let cand = (
            sp.end,
            sp.status == SpanStatus::Error,
            std::cmp::Reverse(&sp.resource.service),
            std::cmp::Reverse(sp),
        );
        let cur = (
            e.end,
            e.status == SpanStatus::Error,
            std::cmp::Reverse(&e.resource.service),
            std::cmp::Reverse(*e),
        );
        if cand > cur {
            *e = sp;
        }
    }
    let spans: Vec<&Span> = best.values().copied().collect();
    let mut by_trace: HashMap<u128, Vec<&Span>> = HashMap::new();
    for sp in &spans {
        by_trace.entry(sp.trace).or_default().push(sp);
    }

    let mut counts: BTreeMap<(u64, &'static str, Dims), Count> = BTreeMap::new();
    let mut bump = |sli: &'static str, r: &Resource, t: u64, good: bool| {
        let c = counts.entry((window(t), sli, dims(r))).or_default();
        c.total += 1;
        if good {
            c.good += 1;
        }
    };
    let mut latency: BTreeMap<(u64, Dims), Vec<u64>> = BTreeMap::new();
    let mut edges: BTreeMap<(u64, String, String), (u64, u64)> = BTreeMap::new();

    for sp in &spans {
        let t = if sp.start > 0 { sp.start } else { sp.end };
        let parent = if sp.parent == 0 {
            None
        } else {
            by_trace[&sp.trace]
                .iter()
                .find(|q| q.span == sp.parent && joins(sp.start, q.start))
                .copied()
        };
        // M3
        let mut valid =
            sp.start > 0 && sp.end >= sp.start && sp.end - sp.start <= p.max_span_duration_ns;
        if let Some(q) = parent {
            if q.start > sp.start + p.skew_tolerance_ns {
                valid = false;
            }
        }
        bump("latency_capture", &sp.resource, t, valid);
        // M4
        bump(
            "context_loss",
            &sp.resource,
            t,
            sp.parent == 0 || parent.is_some(),
        );
        // M9
        bump("sensitive_exposure", &sp.resource, t, !sp.pii);
        // R1 / R2
        let entry = sp.kind == SpanKind::Server || sp.kind == SpanKind::Consumer || sp.parent == 0;
        if entry {
            bump(
                "availability",
                &sp.resource,
                t,
                sp.status != SpanStatus::Error,
            );
            latency
                .entry((window(t), dims(&sp.resource)))
                .or_default()
                .push(sp.end.saturating_sub(sp.start) / 1000);
        }
        // Service graph
        if let Some(q) = parent {
            if q.resource.service != sp.resource.service {
                let e = edges
                    .entry((
                        window(t),
                        q.resource.service.clone(),
                        sp.resource.service.clone(),
                    ))
                    .or_default();
                e.0 += 1;
                if q.status == SpanStatus::Error || sp.status == SpanStatus::Error {
                    e.1 += 1;
                }
            }
        }
    }

    let any_span = |trace: u128, t: u64, service: Option<&str>| -> bool {
        trace != 0
            && by_trace.get(&trace).is_some_and(|v| {
                v.iter()
                    .any(|q| joins(t, q.start) && service.is_none_or(|sv| q.resource.service == sv))
            })
    };
    let mut sampling: BTreeMap<(u64, Dims), [u64; 4]> = BTreeMap::new();
    for l in &acc.logs {
        bump("sensitive_exposure", &l.resource, l.time, !l.pii);
        if l.request {
            let traced = any_span(l.trace, l.time, Some(&l.resource.service));
            bump("trace_coverage", &l.resource, l.time, traced);
            let c = sampling
                .entry((window(l.time), dims(&l.resource)))
                .or_default();
            c[0] += 1;
            c[1] += u64::from(l.error_request);
            c[2] += u64::from(traced);
            c[3] += u64::from(traced && l.error_request);
        }
        if l.severity >= 17 {
            bump(
                "error_trace_ratio",
                &l.resource,
                l.time,
                any_span(l.trace, l.time, None),
            );
        }
    }
    for a in &acc.audits {
        bump(
            "provenance_completeness",
            &a.resource,
            a.time,
            any_span(a.trace, a.time, None),
        );
    }

    let mut out: Vec<SliRecord> = Vec::new();
    for ((ws, sli, d), c) in &counts {
        out.push(SliRecord::ratio(
            sli,
            (&d.0, &d.1, &d.2),
            (*ws, ws + w),
            c.good,
            c.total,
        ));
    }
    for ((ws, d), durations) in &latency {
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for us in durations {
            h.record(*us).unwrap();
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        out.push(SliRecord {
            total: Some(h.len()),
            p50_ms: Some(ms(0.5)),
            p90_ms: Some(ms(0.9)),
            p99_ms: Some(ms(0.99)),
            histogram: Some(encode_histogram(&h)),
            ..SliRecord::bare("latency", (&d.0, &d.1, &d.2), (*ws, ws + w))
        });
    }
    for ((ws, d), [req, err, tr, tr_err]) in &sampling {
        if *req > 0 && *tr > 0 {
            out.push(SliRecord {
                value: Some((*err as f64 / *req as f64 - *tr_err as f64 / *tr as f64).abs()),
                requests: Some(*req),
                error_requests: Some(*err),
                traced_requests: Some(*tr),
                traced_error_requests: Some(*tr_err),
                ..SliRecord::bare("sampling_bias", (&d.0, &d.1, &d.2), (*ws, ws + w))
            });
        }
    }
    out.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let graph = edges
        .into_iter()
        .map(
            |((ws, client, server), (total, failed))| ServiceGraphRecord {
                client,
                server,
                window_start: ws,
                window_end: ws + w,
                total,
                failed,
            },
        )
        .collect();
    (out, graph)
}

/// Reads a JSONL output file.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
