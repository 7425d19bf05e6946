//! Evidence for alerts (SPEC §5): exemplar traces of bad events with the service
//! owning each trace's deepest `ERROR` span, and deploy events with the actor of
//! their correlated audit record. Both are emitted per window when it is final,
//! like the SLI records, so the alert evaluator sees them at the same time.
//!
//! Exemplars are collected only for the SLIs that have an SLO
//! (`Params::availability_exemplars`, `Params::latency_exemplars`).
//!
//! - **Availability exemplars**: `ERROR` entry spans. The `params.exemplars`
//!   smallest trace ids per (service, environment, window) are kept. Each is
//!   joined with its trace's spans to find the deepest `ERROR` span (depth = hops
//!   from the trace's top-most resolvable span; ties go to the smallest service).
//! - **Latency exemplars**: the `params.exemplars` slowest entry spans per
//!   (service, environment, window), ties by trace id; the evaluator keeps those
//!   slower than each latency SLO's threshold.
//! - **Changes**: a deploy event takes the actor of a correlated audit record
//!   (one that changes something: Kubernetes `get`/`list`/`watch` do not count):
//!   first one with the same trace id, else one of the same service (and
//!   environment, when both name one) within `correlation_grace` of the deploy;
//!   the smallest actor wins a tie. Both must be present at once (each stays
//!   until its window is final).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use causeway_schemas::ids::trace_hex;
use causeway_schemas::records::{ChangeRecord, Exemplar, ExemplarRecord};
use causeway_schemas::{AuditRecord, DeployAction, DeployEvent, Resource, SpanStatus};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;

use crate::correlate::SpansByTrace;
use crate::obs::Sli;
use crate::operators::finalize::{finalize, stable_hash};
use crate::params::Params;

/// A bad entry span that may serve as an exemplar.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Candidate {
    /// `Availability` or `Latency`.
    pub sli: Sli,
    /// Window start of the entry span.
    pub window: u64,
    /// The entry span's resource (shared with the span, not copied).
    pub resource: Arc<Resource>,
    /// Trace id.
    pub trace: u128,
    /// Entry span duration, microseconds.
    pub duration_us: u64,
    /// Service of the trace's deepest `ERROR` span (availability only).
    pub deepest_error: String,
}

impl Candidate {
    /// Ranking inside its group: smaller is better.
    fn rank(&self) -> (std::cmp::Reverse<u64>, u128) {
        match self.sli {
            Sli::Latency => (std::cmp::Reverse(self.duration_us), self.trace),
            _ => (std::cmp::Reverse(0), self.trace),
        }
    }
}

/// Final exemplar records, one per (sli, service, environment, window) with bad events.
pub fn exemplars<'s>(
    spans: &SpansByTrace<'s>,
    params: &Params,
) -> StreamVec<'s, u64, ExemplarRecord> {
    let p = params.clone();
    let (availability, latency) = (params.availability_exemplars, params.latency_exemplars);
    let entries = spans.clone().flat_map_ref(move |_, f| {
        let s = &f.span;
        let error = s.status == SpanStatus::Error;
        (s.is_entry() && (latency || (availability && error))).then(|| Candidate {
            sli: if error {
                Sli::Availability
            } else {
                Sli::Latency
            },
            window: p.window_of(s.event_time()),
            resource: Arc::clone(&s.resource),
            trace: s.trace,
            duration_us: s.end.saturating_sub(s.start) / 1000,
            deepest_error: String::new(),
        })
    });
    // An ERROR entry span is also a latency candidate.
    let slow = entries.clone().filter(move |_| latency).map(|c| Candidate {
        sli: Sli::Latency,
        ..c
    });
    let errors = entries.filter(move |c| availability && c.sli == Sli::Availability);
    let error_traces = errors.clone().map(|c| (c.trace, ())).distinct();
    let deepest = error_traces
        .arrange_by_key_named("ErrorTraces")
        .join_core(spans.clone(), |trace, _, f| {
            Some((
                *trace,
                (
                    f.span.span,
                    f.span.parent,
                    f.span.status == SpanStatus::Error,
                    Arc::clone(&f.span.resource),
                ),
            ))
        })
        .reduce(|_trace, input, output| {
            let spans: Vec<&SpanLink> = input.iter().map(|(s, _)| *s).collect();
            if let Some(service) = deepest_error(&spans) {
                output.push((service, 1));
            }
        });
    let available = errors
        .map(|c| (c.trace, c))
        .join_map(deepest, |_, c, service| Candidate {
            deepest_error: service.clone(),
            ..c.clone()
        });
    finalize(
        available.concat(slow),
        "FinalizeExemplars",
        params,
        |c| c.window,
        |c| {
            stable_hash(&(
                c.sli,
                &c.resource.service,
                &c.resource.environment,
                c.window,
            ))
        },
        |c| (c.sli, Arc::clone(&c.resource), c.window),
        |acc: &mut BTreeMap<Candidate, i64>, c, diff| {
            *acc.entry(c.clone()).or_default() += diff as i64
        },
        emit_exemplars,
    )
}

type ExemplarKey = (Sli, Arc<Resource>, u64);

/// Merges the versions of each (sli, service, environment, window) and keeps the
/// best `params.exemplars` candidates present.
fn emit_exemplars(
    groups: BTreeMap<ExemplarKey, BTreeMap<Candidate, i64>>,
    params: &Params,
) -> Vec<ExemplarRecord> {
    let mut merged: BTreeMap<(Sli, &str, &str, u64), Vec<&Candidate>> = BTreeMap::new();
    for ((sli, resource, window), cands) in &groups {
        merged
            .entry((*sli, &resource.service, &resource.environment, *window))
            .or_default()
            .extend(cands.iter().filter(|(_, n)| **n > 0).map(|(c, _)| c));
    }
    merged
        .into_iter()
        .filter_map(|((sli, service, environment, window), mut present)| {
            present.sort_by_key(|c| c.rank());
            present.dedup_by_key(|c| c.trace);
            present.truncate(params.exemplars);
            (!present.is_empty()).then(|| ExemplarRecord {
                sli: sli.as_str().to_string(),
                service: service.to_string(),
                environment: environment.to_string(),
                window_start: window,
                exemplars: present
                    .into_iter()
                    .map(|c| Exemplar {
                        trace_id: trace_hex(c.trace),
                        duration_us: c.duration_us,
                        deepest_error_service: c.deepest_error.clone(),
                    })
                    .collect(),
            })
        })
        .collect()
}

/// What the deepest-`ERROR` search needs of a span: (span id, parent id, is
/// error, resource).
pub type SpanLink = (u64, u64, bool, Arc<Resource>);

/// The service of the deepest `ERROR` span among `spans`; ties go to the
/// smallest service name.
pub fn deepest_error(spans: &[&SpanLink]) -> Option<String> {
    let parent: HashMap<u64, u64> = spans.iter().map(|(s, p, _, _)| (*s, *p)).collect();
    let depth = |mut id: u64| {
        let mut d = 0usize;
        // Bounded by the trace size, so a cycle of bad parent ids cannot loop forever.
        while let Some(&p) = parent.get(&id) {
            if p == 0 || !parent.contains_key(&p) || d > parent.len() {
                break;
            }
            d += 1;
            id = p;
        }
        d
    };
    spans
        .iter()
        .filter(|(_, _, err, _)| *err)
        .map(|(s, _, _, r)| (std::cmp::Reverse(depth(*s)), &r.service))
        .min()
        .map(|(_, service)| service.clone())
}

/// Final change records: deploy events with the actor of a correlated audit record.
pub fn changes<'s>(
    deploys: VecCollection<'s, u64, DeployEvent>,
    audits: VecCollection<'s, u64, AuditRecord>,
    params: &Params,
) -> StreamVec<'s, u64, ChangeRecord> {
    let audits = audits.filter(|a| !a.actor.is_empty() && is_change(&a.action));
    let by_trace = audits
        .clone()
        .filter(|a| a.trace != 0)
        .map(|a| (a.trace, a.actor));
    let by_service = audits.map(|a| {
        (
            a.resource.service.clone(),
            (a.time, a.resource.environment.clone(), a.actor),
        )
    });
    let p = params.clone();
    let deploys = deploys.map(move |d| (p.window_of(d.time), d));
    let traced = deploys
        .clone()
        .filter(|(_, d)| d.trace != 0)
        .map(|(w, d)| (d.trace, (w, d)))
        .join_map(by_trace, |_, (w, d), actor| {
            (*w, d.clone(), Some((0u8, actor.clone())))
        });
    let grace = params.grace_s * causeway_schemas::time::NANOS_PER_SEC;
    let nearby = deploys
        .clone()
        .map(|(w, d)| (d.service.clone(), (w, d)))
        .join_map(by_service, move |_, (w, d), (t, env, actor)| {
            let env_ok = d.environment.is_empty() || env.is_empty() || *env == d.environment;
            let near = t.abs_diff(d.time) <= grace;
            (
                *w,
                d.clone(),
                (env_ok && near).then(|| (1u8, actor.clone())),
            )
        })
        .filter(|(_, _, a)| a.is_some());
    finalize(
        deploys
            .map(|(w, d)| (w, d, None))
            .concat(traced)
            .concat(nearby),
        "FinalizeChanges",
        params,
        |(w, _, _)| *w,
        |(w, _, _)| stable_hash(w),
        |(w, d, _)| (*w, d.clone()),
        |acc: &mut Actors, (_, _, actor), diff| {
            *acc.entry(actor.clone()).or_default() += diff as i64
        },
        emit_changes,
    )
}

/// Whether an audit action changes something (Kubernetes read verbs do not).
fn is_change(action: &str) -> bool {
    !matches!(action, "get" | "list" | "watch")
}

/// Candidate actors of a deploy: `None` (the deploy itself), `(0, actor)` from a
/// trace match, `(1, actor)` from a same-service match; with their counts.
type Actors = BTreeMap<Option<(u8, String)>, i64>;

fn emit_changes(groups: BTreeMap<(u64, DeployEvent), Actors>, _: &Params) -> Vec<ChangeRecord> {
    groups
        .into_iter()
        .filter(|(_, actors)| actors.get(&None).is_some_and(|n| *n > 0))
        .map(|((_, d), actors)| ChangeRecord {
            time_unix_nano: d.time,
            action: action_name(d.action).to_string(),
            actor: actors
                .iter()
                .find_map(|(a, n)| {
                    a.as_ref()
                        .filter(|_| *n > 0)
                        .map(|(_, actor)| actor.clone())
                })
                .unwrap_or_default(),
            service: d.service,
            environment: d.environment,
            version: d.version,
            artifact: d.artifact,
            id: d.id,
        })
        .collect()
}

/// The CDEvents predicate of a deploy action.
pub fn action_name(a: DeployAction) -> &'static str {
    match a {
        DeployAction::Deployed => "deployed",
        DeployAction::Upgraded => "upgraded",
        DeployAction::Rolledback => "rolledback",
        DeployAction::Removed => "removed",
    }
}
