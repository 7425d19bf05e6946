//! Hand-made traces at the boundaries of SPEC §2 and §3, written as one extra
//! partition per topic (`otlp_spans-edge.jsonl`, `otlp_logs-edge.jsonl`,
//! `audit-edge.jsonl`) next to a [`crate::workload`]. The seeded workload never
//! puts a child more than the skew tolerance before its parent, never has a log
//! whose span starts after it, and its duplicates are byte-identical copies, so
//! on its own it cannot tell a wrong join bound or tie-break from a right one.
//! Each case here sits exactly on, or one nanosecond past, a bound:
//!
//! - parent resolution: child `skew_tolerance` (+1 ns) before its parent; parent
//!   starting `trace_horizon` before / `correlation_grace` after the child, and
//!   one nanosecond beyond;
//! - timing: start 0 (counted at its end), end before start, duration of exactly
//!   / one nanosecond over `max_span_duration`; CONSUMER and PRODUCER kinds;
//! - identity: duplicates that differ in end, status, service name, parent, start,
//!   kind, PII flag and environment (each tie-break level of ARCHITECTURE.md);
//! - the join rule for request, error and audit records: the only span of the
//!   trace starting at `t - trace_horizon`, `t + correlation_grace` and one
//!   nanosecond beyond, of the same or another service; `http.status_code` 500,
//!   `rpc.method`, `http.method`, `observed_time_unix_nano`, PII in a log body,
//!   a request record without trace id.
//!
//! - lateness (SPEC §2): in `audit-edge-late.jsonl`, after a record at time `m`,
//!   one at `m - allowed_lateness` (on time) and one at a nanosecond less (late).
//!
//! The other partitions are written in event-time order, so nothing else is late.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use causeway_schemas::otlp::proto::{
    self, any_value::Value, AnyValue, KeyValue, LogRecord, LogsData, ResourceLogs, ResourceSpans,
    ScopeLogs, ScopeSpans, Span, Status, TracesData,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::workload::{logs_json, traces_json};

/// The bounds the cases sit on (Causeway's settings).
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// `trace_horizon`, ns.
    pub horizon_ns: u64,
    /// `correlation_grace`, ns.
    pub grace_ns: u64,
    /// `skew_tolerance`, ns.
    pub skew_ns: u64,
    /// `max_span_duration`, ns.
    pub max_span_duration_ns: u64,
    /// `allowed_lateness`, ns.
    pub lateness_ns: u64,
}

/// What was written.
#[derive(Clone, Copy, Debug, Default)]
pub struct EdgeStats {
    /// Span records (duplicates included).
    pub spans: usize,
    /// Log records.
    pub logs: usize,
    /// Audit records.
    pub audits: usize,
}

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// (service index, environment override) of a record's resource.
type Res = (usize, Option<&'static str>);

fn resource((service, env): Res) -> proto::Resource {
    let mut attributes = vec![KeyValue::string(
        "service.name",
        &format!("svc-{service:02}"),
    )];
    let env = env.unwrap_or(if service % 5 == 4 { "staging" } else { "prod" });
    // Half the services use the older key, which Causeway falls back to.
    let env_key = if service % 2 == 0 {
        "deployment.environment.name"
    } else {
        "deployment.environment"
    };
    attributes.push(KeyValue::string(env_key, env));
    attributes.push(KeyValue::string(
        "service.version",
        &format!("1.{}.0", service % 3),
    ));
    proto::Resource { attributes }
}

struct Builder {
    rng: ChaCha8Rng,
    spans: Vec<(u64, Res, Span)>,
    logs: Vec<(u64, Res, LogRecord)>,
    audit: Vec<(u64, String)>,
}

#[derive(Clone, Copy)]
struct Sp {
    trace: u128,
    id: u64,
    parent: u64,
    start: u64,
    end: u64,
    kind: i32,
    status: i32,
    pii: bool,
}

impl Builder {
    fn trace(&mut self) -> u128 {
        self.rng.random::<u128>() | 1
    }

    fn id(&mut self) -> u64 {
        self.rng.random::<u64>() | 1
    }

    fn span(&mut self, res: Res, s: Sp) {
        let mut attributes = vec![KeyValue::string("http.route", "/edge")];
        if s.pii {
            attributes.push(KeyValue::string("user.note", "bob@example.com"));
        }
        let t = if s.start > 0 { s.start } else { s.end };
        self.spans.push((
            t,
            res,
            Span {
                trace_id: s.trace.to_be_bytes().to_vec(),
                span_id: s.id.to_be_bytes().to_vec(),
                parent_span_id: if s.parent == 0 {
                    vec![]
                } else {
                    s.parent.to_be_bytes().to_vec()
                },
                name: "edge".into(),
                kind: s.kind,
                start_time_unix_nano: s.start,
                end_time_unix_nano: s.end,
                attributes,
                status: Some(Status {
                    message: String::new(),
                    code: s.status,
                }),
            },
        ));
    }

    /// A child of `parent` (same trace), 10 ms long, OK.
    fn child(&mut self, res: Res, parent: &Sp, start: u64, kind: i32) -> Sp {
        let s = Sp {
            trace: parent.trace,
            id: self.id(),
            parent: parent.id,
            start,
            end: start + 10 * MS,
            kind,
            status: 1,
            pii: false,
        };
        self.span(res, s);
        s
    }

    #[allow(clippy::too_many_arguments)]
    fn log(
        &mut self,
        res: Res,
        trace: u128,
        time: u64,
        observed: u64,
        severity: i32,
        attributes: Vec<KeyValue>,
        body: &str,
    ) {
        let t = if time > 0 { time } else { observed };
        self.logs.push((
            t,
            res,
            LogRecord {
                time_unix_nano: time,
                severity_number: severity,
                body: Some(AnyValue {
                    value: Some(Value::StringValue(body.into())),
                }),
                attributes,
                trace_id: if trace == 0 {
                    vec![]
                } else {
                    trace.to_be_bytes().to_vec()
                },
                span_id: vec![],
                observed_time_unix_nano: observed,
            },
        ));
    }

    fn audit(&mut self, service: usize, trace: u128, ts: u64) {
        self.audit.push((
            ts,
            format!(
                r#"{{"kind":"causeway.audit/v1","ts":{ts},"service":"svc-{service:02}","environment":"prod","actor":"edge","action":"config-change","trace_id":"{trace:032x}"}}"#
            ),
        ));
    }

    /// A lone span of a fresh trace starting at `start`; returns the trace id.
    fn lone(&mut self, service: usize, start: u64) -> u128 {
        let s = Sp {
            trace: self.trace(),
            id: self.id(),
            parent: 0,
            start,
            end: start + 5 * MS,
            kind: 1,
            status: 1,
            pii: false,
        };
        self.span((service, None), s);
        s.trace
    }

    /// One round of every case around base time `t`.
    fn round(&mut self, k: usize, t: u64, b: &Bounds) {
        let (a, bb, c) = (k % 20, (k + 7) % 20, (k + 13) % 20);
        let (lo, hi) = (a.min(bb), a.max(bb));
        let req = || KeyValue::string("http.request.method", "GET");

        // Parent resolution and timing.
        let root = Sp {
            trace: self.trace(),
            id: self.id(),
            parent: 0,
            start: t,
            end: t + 50 * MS,
            kind: 2,
            status: 1,
            pii: false,
        };
        self.span((a, None), root);
        self.child((bb, None), &root, t - b.skew_ns - 1, 3); // invalid timing (skew)
        self.child((bb, None), &root, t - b.skew_ns, 2); // valid: exactly the tolerance
        let mut c3 = Sp {
            trace: root.trace,
            id: self.id(),
            parent: root.id,
            start: t + b.horizon_ns, // parent exactly horizon before: resolves
            end: t + b.horizon_ns + MS,
            kind: 1,
            status: 2, // ERROR: a failed edge
            pii: false,
        };
        self.span((c, None), c3);
        c3.id = self.id();
        c3.start += 1; // one past the horizon: orphan
        c3.status = 1;
        c3.kind = 2;
        self.span((c, None), c3);
        for (extra, service) in [(0, a), (1, bb)] {
            // Parent starting `grace` (+1 ns) after its child.
            let cs = t + S + extra * 100 * MS;
            let p = Sp {
                trace: root.trace,
                id: self.id(),
                parent: root.id,
                start: cs + b.grace_ns + extra,
                end: cs + b.grace_ns + extra + 20 * MS,
                kind: 3,
                status: if extra == 0 { 2 } else { 1 },
                pii: false,
            };
            self.span((bb, None), p);
            self.child((service, None), &p, cs, 2);
        }
        // Start 0: counted at its end, invalid timing, parent not resolved.
        let id = self.id();
        self.span(
            (bb, None),
            Sp {
                trace: root.trace,
                id,
                parent: root.id,
                start: 0,
                end: t + 2 * S,
                kind: 2,
                status: 1,
                pii: false,
            },
        );
        // End before start (duration 0 for R2), exactly max duration, one over.
        for (i, (dur_plus, end_before)) in [(0, true), (0, false), (1, false)].iter().enumerate() {
            let start = t + 3 * S + i as u64 * MS;
            let id = self.id();
            self.span(
                (c, None),
                Sp {
                    trace: root.trace,
                    id,
                    parent: root.id,
                    start,
                    end: if *end_before {
                        start - 1
                    } else {
                        start + b.max_span_duration_ns + dur_plus
                    },
                    kind: 2,
                    status: 0,
                    pii: false,
                },
            );
        }
        self.child((a, None), &root, t + 4 * S, 5); // CONSUMER: entry
        let mut producer = self.child((a, None), &root, t + 4 * S + MS, 4); // not entry
        producer.id = self.id();
        producer.pii = true;
        self.span((a, None), producer);

        // Identity: pairs of duplicates, each differing at one tie-break level.
        let droot = Sp {
            start: t + 5 * S,
            end: t + 5 * S + 90 * MS,
            id: self.id(),
            trace: self.trace(),
            ..root
        };
        self.span((a, None), droot);
        let base = |b: &mut Self| Sp {
            trace: droot.trace,
            id: b.id(),
            parent: droot.id,
            start: t + 5 * S + 10 * MS,
            end: t + 5 * S + 40 * MS,
            kind: 2,
            status: 1,
            pii: false,
        };
        // ERROR wins over the service name.
        let d = base(self);
        self.span((lo, None), d);
        self.span((hi, None), Sp { status: 2, ..d });
        // Same end and status: the smallest service name wins.
        let d = base(self);
        self.span((hi, None), d);
        self.span((lo, None), d);
        // The greatest end wins over ERROR.
        let d = base(self);
        self.span(
            (hi, None),
            Sp {
                end: d.end + 1,
                ..d
            },
        );
        self.span((lo, None), Sp { status: 2, ..d });
        // Smallest record: parent 0 (a root) before a parent id (here one that
        // is not in the trace, so the loser would be an orphan).
        let d = base(self);
        let lost = self.id();
        self.span((a, None), Sp { parent: lost, ..d });
        self.span(
            (a, None),
            Sp {
                parent: 0,
                kind: 3,
                ..d
            },
        );
        // ... then the smaller start (30 s apart, so the window may differ).
        let d = Sp {
            end: t + 5 * S + 60 * S,
            ..base(self)
        };
        self.span(
            (a, None),
            Sp {
                start: d.start + 30 * S,
                ..d
            },
        );
        self.span((a, None), d);
        // ... then kind (SERVER before CLIENT: the entry span wins).
        let d = base(self);
        self.span((a, None), Sp { kind: 3, ..d });
        self.span((a, None), d);
        // ... then the PII flag (false first).
        let d = base(self);
        self.span((a, None), Sp { pii: true, ..d });
        self.span((a, None), d);
        // ... then the environment ("canary" before "prod"/"staging").
        let d = base(self);
        self.span((a, None), d);
        self.span((a, Some("canary")), d);

        // The join rule for log and audit records (a fresh trace per case).
        let lt = t + 10 * S;
        let tr = self.lone(a, lt + b.grace_ns); // joins (same service)
        self.log((a, None), tr, lt, lt, 9, vec![req()], "ok");
        self.audit(a, tr, lt);
        let tr = self.lone(a, lt + b.grace_ns + 1); // does not join
        self.log((a, None), tr, lt, lt, 17, vec![req()], "ok");
        self.audit(a, tr, lt);
        let tr = self.lone(a, lt - b.horizon_ns); // joins
        self.log((a, None), tr, lt, lt, 17, vec![req()], "ok");
        let tr = self.lone(a, lt - b.horizon_ns - 1); // does not join
        self.log((a, None), tr, lt, lt, 9, vec![req()], "ok");
        let tr = self.lone(bb, lt); // another service's span: M1 no, M2 yes
        self.log((a, None), tr, lt, lt, 17, vec![req()], "ok");
        // ERROR without request attributes (M2 only), trace without spans.
        let tr = self.trace();
        self.log((a, None), tr, lt, lt, 18, vec![], "failed");
        // A 5xx request (M10 error request) with the older attribute names.
        let tr = self.lone(a, lt);
        self.log(
            (a, None),
            tr,
            lt,
            lt,
            9,
            vec![
                KeyValue::string("http.method", "POST"),
                KeyValue::int("http.status_code", 500),
            ],
            "ok",
        );
        self.log(
            (a, None),
            tr,
            lt,
            lt,
            9,
            vec![KeyValue::string("rpc.method", "Get")],
            "ok",
        );
        // time_unix_nano 0: observed time; PII in the body; no trace id.
        self.log((a, None), tr, 0, lt + MS, 9, vec![req()], "ok");
        self.log((a, None), tr, lt, lt, 9, vec![], "mail bob@example.com");
        self.log((a, None), 0, lt, lt, 9, vec![req()], "ok");
    }
}

/// Writes `rounds` rounds of the cases, spread over `[start_ns, start_ns +
/// duration_s)`, into `dir`.
pub fn write_edge_cases(
    dir: &Path,
    seed: u64,
    start_ns: u64,
    duration_s: u64,
    rounds: usize,
    b: &Bounds,
) -> std::io::Result<EdgeStats> {
    let mut bld = Builder {
        rng: ChaCha8Rng::seed_from_u64(seed ^ 0xED6E),
        spans: Vec::new(),
        logs: Vec::new(),
        audit: Vec::new(),
    };
    let step = duration_s * S / rounds.max(1) as u64;
    for k in 0..rounds {
        // Leave room for the cases that reach a horizon back.
        bld.round(k, start_ns + b.horizon_ns + 2 * S + k as u64 * step, b);
    }
    let stats = EdgeStats {
        spans: bld.spans.len(),
        logs: bld.logs.len(),
        audits: bld.audit.len(),
    };
    let open = |name: &str| -> std::io::Result<std::io::BufWriter<std::fs::File>> {
        Ok(std::io::BufWriter::new(std::fs::File::create(
            dir.join(name),
        )?))
    };
    // Stable sorts: duplicates keep the order they were made in.
    bld.spans.sort_by_key(|(t, _, _)| *t);
    let mut w = open("otlp_spans-edge.jsonl")?;
    for chunk in bld.spans.chunks(16) {
        let mut by_res: BTreeMap<Res, Vec<Span>> = BTreeMap::new();
        for (_, res, s) in chunk {
            by_res.entry(*res).or_default().push(s.clone());
        }
        let msg = TracesData {
            resource_spans: by_res
                .into_iter()
                .map(|(res, spans)| ResourceSpans {
                    resource: Some(resource(res)),
                    scope_spans: vec![ScopeSpans { spans }],
                })
                .collect(),
        };
        writeln!(w, "{}", traces_json(&msg))?;
    }
    w.flush()?;
    bld.logs.sort_by_key(|(t, _, _)| *t);
    let mut w = open("otlp_logs-edge.jsonl")?;
    for chunk in bld.logs.chunks(16) {
        let mut by_res: BTreeMap<Res, Vec<LogRecord>> = BTreeMap::new();
        for (_, res, l) in chunk {
            by_res.entry(*res).or_default().push(l.clone());
        }
        let msg = LogsData {
            resource_logs: by_res
                .into_iter()
                .map(|(res, log_records)| ResourceLogs {
                    resource: Some(resource(res)),
                    scope_logs: vec![ScopeLogs { log_records }],
                })
                .collect(),
        };
        writeln!(w, "{}", logs_json(&msg))?;
    }
    w.flush()?;
    bld.audit.sort_by_key(|(t, _)| *t);
    let mut w = open("audit-edge.jsonl")?;
    for (_, line) in &bld.audit {
        writeln!(w, "{line}")?;
    }
    w.flush()?;
    // Lateness: after a record at time m, one at exactly m - allowed_lateness is
    // on time and one a nanosecond earlier is late. Audit records are one per
    // message, so each is judged against the records before it.
    let mut w = open("audit-edge-late.jsonl")?;
    let mut n = 0;
    for k in 0..rounds as u64 {
        let m = start_ns + b.lateness_ns + 10 * S + k * step;
        for ts in [m, m - b.lateness_ns, m - b.lateness_ns - 1] {
            let trace = bld.trace();
            writeln!(
                w,
                r#"{{"kind":"causeway.audit/v1","ts":{ts},"service":"svc-{:02}","environment":"prod","actor":"edge","action":"config-change","trace_id":"{trace:032x}"}}"#,
                k % 20
            )?;
            n += 1;
        }
    }
    w.flush()?;
    Ok(EdgeStats {
        audits: stats.audits + n,
        ..stats
    })
}
