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

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use causeway_schemas::ids::trace_hex;
use causeway_schemas::records::{ChangeRecord, Exemplar, ExemplarRecord};
use causeway_schemas::{AuditRecord, DeployAction, DeployEvent, Resource};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;

use crate::correlate::{SpanRec, Winners};
use crate::intern::Res;
use crate::obs::Sli;
use crate::operators::finalize::{finalize, stable_hash};
use crate::params::Params;

/// An entry span that may serve as an exemplar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// `Availability` (an `ERROR` entry span) or `Latency` (any entry span).
    pub sli: Sli,
    /// The entry span's resource.
    pub res: Res,
    /// Trace id.
    pub trace: u128,
    /// Entry span duration, microseconds.
    pub duration_us: u64,
    /// The resource of the trace's deepest `ERROR` span (availability only).
    pub deepest_error: Option<Res>,
}

impl Candidate {
    /// A candidate for `sli` from entry span `s` of `trace`.
    pub fn new(sli: Sli, trace: u128, s: &SpanRec, deepest_error: Option<Res>) -> Self {
        Candidate {
            sli,
            res: s.res,
            trace,
            duration_us: s.duration_us(),
            deepest_error,
        }
    }

    /// Ranking inside its group: smaller is better.
    fn rank(&self) -> (Reverse<u64>, u128) {
        match self.sli {
            Sli::Latency => (Reverse(self.duration_us), self.trace),
            _ => (Reverse(0), self.trace),
        }
    }
}

/// Resolves interned resources, once per id.
#[derive(Default)]
struct Names(HashMap<u32, Arc<Resource>>);

impl Names {
    fn get(&mut self, r: Res) -> Arc<Resource> {
        Arc::clone(self.0.entry(r.id).or_insert_with(|| r.resource()))
    }

    fn service(&mut self, r: Option<Res>) -> String {
        r.map(|r| self.get(r).service.clone()).unwrap_or_default()
    }

    /// Sorts `cands` by group (sli, service, environment), then by rank,
    /// version, trace, duration and deepest service; returns each group's key and length, in order.
    fn group_and_sort(&mut self, cands: &mut [Candidate]) -> Vec<(GroupKey, usize)> {
        // Rank the distinct resources by (service, environment, version) once,
        // so the sort compares integers.
        let mut distinct: Vec<Res> = cands.iter().map(|c| c.res).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let mut named: Vec<(Arc<Resource>, Res)> =
            distinct.into_iter().map(|r| (self.get(r), r)).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rank: HashMap<u32, (u32, u32)> = HashMap::with_capacity(named.len());
        let mut groups: Vec<(String, String)> = Vec::new();
        for (i, (res, r)) in named.iter().enumerate() {
            let g = (res.service.clone(), res.environment.clone());
            if groups.last() != Some(&g) {
                groups.push(g);
            }
            rank.insert(r.id, ((groups.len() - 1) as u32, i as u32));
        }
        // The deepest-error services, ranked by name.
        let mut deepest: Vec<Res> = cands.iter().filter_map(|c| c.deepest_error).collect();
        deepest.sort_unstable();
        deepest.dedup();
        let mut deepest: Vec<(String, u32)> = deepest
            .into_iter()
            .map(|r| (self.service(Some(r)), r.id))
            .collect();
        deepest.sort();
        let mut names: Vec<&String> = deepest.iter().map(|(n, _)| n).collect();
        names.dedup();
        let deepest: HashMap<u32, usize> = deepest
            .iter()
            .map(|(n, id)| (*id, names.partition_point(|x| *x < n) + 1))
            .collect();
        cands.sort_by_cached_key(|c| {
            let (group, version) = rank[&c.res.id];
            let d = c.deepest_error.map_or(0, |r| deepest[&r.id]);
            (c.sli, group, c.rank(), version, c.trace, c.duration_us, d)
        });
        let mut runs: Vec<(GroupKey, usize)> = Vec::new();
        let mut last = None;
        for c in cands.iter() {
            let g = (c.sli, rank[&c.res.id].0);
            match runs.last_mut() {
                Some((_, n)) if last == Some(g) => *n += 1,
                _ => runs.push(((c.sli, groups[g.1 as usize].clone()), 1)),
            }
            last = Some(g);
        }
        runs
    }
}

type GroupKey = (Sli, (String, String));

/// The best `k` candidates of distinct traces of one (sli, resource), kept while
/// a window is evaluated: a trace is ranked by its best candidate. Every
/// candidate of a trace is on the worker that owns the trace, so the final
/// selection over all resources of a group and all workers only needs these.
#[derive(Clone, Debug, Default)]
pub struct TopK(Vec<Candidate>);

impl TopK {
    fn key(c: &Candidate) -> (Reverse<u64>, u128, u64) {
        let (rank, trace) = c.rank();
        (rank, trace, c.duration_us)
    }

    /// Offers a candidate.
    pub fn offer(&mut self, c: Candidate, k: usize) {
        let key = Self::key(&c);
        // Most offers lose to a full set's worst: then they lose whether or not
        // their trace is kept (its kept candidate is better still), so the
        // search for the trace is skipped (issue 9 profile).
        if self.0.len() >= k && self.0.last().is_none_or(|worst| key >= Self::key(worst)) {
            return;
        }
        if let Some(i) = self.0.iter().position(|x| x.trace == c.trace) {
            if key < Self::key(&self.0[i]) {
                self.0.remove(i);
            } else {
                return;
            }
        } else if self.0.len() >= k {
            match self.0.last() {
                Some(worst) if key < Self::key(worst) => {
                    self.0.pop();
                }
                _ => return,
            }
        }
        let at = self.0.partition_point(|x| Self::key(x) < key);
        self.0.insert(at, c);
    }

    /// The kept candidates, best first.
    pub fn into_vec(self) -> Vec<Candidate> {
        self.0
    }
}

/// The exemplar records of one window from every worker's candidates: per
/// (sli, service, environment), the best `k` distinct traces (a trace is
/// ranked by its best candidate, across versions).
pub fn exemplar_records(mut cands: Vec<Candidate>, window: u64, k: usize) -> Vec<ExemplarRecord> {
    let mut names = Names::default();
    let runs = names.group_and_sort(&mut cands);
    let mut out = Vec::new();
    let mut rest = cands.as_slice();
    for ((sli, (service, environment)), n) in runs {
        let (group, tail) = rest.split_at(n);
        rest = tail;
        let mut seen = std::collections::HashSet::new();
        let present: Vec<&Candidate> = group
            .iter()
            .filter(|c| seen.insert(c.trace))
            .take(k)
            .collect();
        if present.is_empty() {
            continue;
        }
        out.push(ExemplarRecord {
            sli: sli.as_str().to_string(),
            service,
            environment,
            window_start: window,
            exemplars: present
                .into_iter()
                .map(|c| Exemplar {
                    trace_id: trace_hex(c.trace),
                    duration_us: c.duration_us,
                    deepest_error_service: names.service(c.deepest_error),
                })
                .collect(),
        });
    }
    out
}

/// The resource of the deepest `ERROR` span among a trace's winners (depth =
/// parent hops, by span id, to the top-most span of the trace that is present);
/// ties go to the smallest service name.
pub fn deepest_error(w: &Winners<'_>) -> Option<Res> {
    let depth = |s: &SpanRec| {
        let mut d = 0usize;
        let mut parent = s.parent;
        // Bounded by the trace size, so a cycle of bad parent ids cannot loop forever.
        while parent != 0 {
            let Some(p) = w.get(parent) else { break };
            if d > w.len() {
                break;
            }
            d += 1;
            parent = p.parent;
        }
        d
    };
    let mut names = Names::default();
    w.iter()
        .filter(|s| s.is_error())
        .map(|s| (Reverse(depth(s)), s.res))
        .min_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                if a.1.service == b.1.service {
                    Ordering::Equal
                } else {
                    names.get(a.1).service.cmp(&names.get(b.1).service)
                }
            })
        })
        .map(|(_, r)| r)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `TopK` against a naive selection: per trace its best candidate (the
    /// first offered of its best key), the best `k` traces.
    #[test]
    fn top_k_keeps_the_best_candidate_of_the_best_traces() {
        let res: Vec<Res> = ["topk-a", "topk-b"]
            .iter()
            .map(|s| {
                Res::intern(&Resource {
                    service: (*s).into(),
                    ..Resource::default()
                })
            })
            .collect();
        let mut next = crate::xorshift(5);
        for case in 0..300 {
            let k = (case % 6) as usize;
            let sli = if case % 2 == 0 {
                Sli::Latency
            } else {
                Sli::Availability
            };
            let offers: Vec<Candidate> = (0..next() % 60)
                .map(|_| Candidate {
                    sli,
                    res: res[(next() % 2) as usize],
                    trace: u128::from(next() % 12),
                    duration_us: next() % 8,
                    deepest_error: next().is_multiple_of(2).then_some(res[0]),
                })
                .collect();
            let mut top = TopK::default();
            for c in &offers {
                top.offer(c.clone(), k);
            }
            let mut best: Vec<Candidate> = Vec::new();
            for c in &offers {
                match best.iter_mut().find(|b| b.trace == c.trace) {
                    Some(b) if TopK::key(c) < TopK::key(b) => *b = c.clone(),
                    Some(_) => {}
                    None => best.push(c.clone()),
                }
            }
            best.sort_by_key(TopK::key);
            best.truncate(k);
            assert_eq!(top.into_vec(), best, "case {case}");
        }
    }
}
