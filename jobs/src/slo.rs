//! SLO burn rates and correlated alerts (SPEC §4, §5), evaluated in event time.
//!
//! [`Evaluator`] is a deterministic state machine fed, in time order, with
//! everything that became final at one time: the window's SLI records, service
//! graph edges, exemplars and changes ([`Final`]). It runs inside the dataflow on
//! the worker that gathers the outputs, so replaying the same input gives the same
//! burn rates and alerts whatever the number of workers.
//!
//! Per SLO target (SLO × service, for `service = "*"` each service seen) it keeps
//! bad/total per window for the longest of the period and the policy windows, and
//! at each window end `e`:
//! - `burn(W) = (bad(W) / total(W)) / (1 - objective)` over the windows starting
//!   in `[e - W, e)`, and 0 when `total(W) < min_events`;
//! - a policy row fires when `burn(long) >= factor` and `burn(short) >= factor`;
//! - the alert of a severity fires while any of its rows fire, and resolves when
//!   none does;
//! - `error_budget_remaining = 1 - bad(period) / (total(period) * (1 - objective))`
//!   (1 when the period has no events).
//!
//! Evidence is attached when an alert starts firing (and carried to its
//! resolution): exemplars of the last `short` window of the firing rows, changes in
//! `[starts_at - change_lookback, starts_at]` of the service and of the services it
//! called (service-graph edges in that range), the culprit and the group key.

use std::collections::{BTreeMap, BTreeSet};

use causeway_schemas::records::{
    AlertRecord, ChangeRecord, ExemplarRecord, ServiceGraphRecord, SliRecord, SloRecord, WindowBurn,
};
use causeway_schemas::time::{format_rfc3339, NANOS_PER_SEC};

use crate::obs::Sli;
use crate::operators::finalize::histogram_count_up_to;

/// The SLI id of M7, whose records the evaluator writes.
pub const CORRELATED_ALERT_RATE: &str = "correlated_alert_rate";

/// The `alertname` label of every Causeway SLO alert.
pub const ALERT_NAME: &str = "CausewaySLOErrorBudgetBurn";

/// `page` or `ticket`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Wake someone up.
    Page,
    /// Look at it during working hours.
    Ticket,
}

impl Severity {
    /// The label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

/// One multi-window burn-rate rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Severity of the alert this row raises.
    pub severity: Severity,
    /// Long window, seconds, and its label (`"1h"`).
    pub long: (u64, String),
    /// Short window, seconds, and its label.
    pub short: (u64, String),
    /// Burn-rate factor both windows must reach.
    pub factor: f64,
}

impl Row {
    /// The SRE-workbook multi-window, multi-burn-rate policy (SPEC §4): page
    /// 14.4× over 1h & 5m, page 6× over 6h & 30m, ticket 1× over 3d & 6h.
    pub fn workbook() -> Vec<Row> {
        let row = |severity, long: u64, ll: &str, short: u64, sl: &str, factor| Row {
            severity,
            long: (long, ll.into()),
            short: (short, sl.into()),
            factor,
        };
        vec![
            row(Severity::Page, 3600, "1h", 300, "5m", 14.4),
            row(Severity::Page, 6 * 3600, "6h", 1800, "30m", 6.0),
            row(Severity::Ticket, 3 * 86400, "3d", 6 * 3600, "6h", 1.0),
        ]
    }
}

/// One SLO, resolved from the config.
#[derive(Clone, Debug, PartialEq)]
pub struct SloSpec {
    /// Name.
    pub name: String,
    /// Service, or `None` for every service seen (`"*"`).
    pub service: Option<String>,
    /// Environment filter; `None` sums all environments.
    pub environment: Option<String>,
    /// The SLI.
    pub sli: Sli,
    /// Objective, 0 < o < 1.
    pub objective: f64,
    /// Budget period, seconds.
    pub period_s: u64,
    /// `latency` only: good when at most this many microseconds.
    pub threshold_us: Option<u64>,
    /// Low-traffic guard.
    pub min_events: u64,
    /// Alerting policy.
    pub policy: Vec<Row>,
}

impl SloSpec {
    /// The distinct (seconds, label) windows of the policy, ascending: the
    /// burn rates an SLO record (and a report) shows.
    pub fn windows(&self) -> Vec<(u64, String)> {
        let mut windows: Vec<(u64, String)> = Vec::new();
        for r in &self.policy {
            for w in [&r.short, &r.long] {
                if !windows.iter().any(|x| x.0 == w.0) {
                    windows.push(w.clone());
                }
            }
        }
        windows.sort();
        windows
    }
}

/// A configured maintenance window: alerts starting inside it are suppressed.
#[derive(Clone, Debug, PartialEq)]
pub struct Maintenance {
    /// Start, Unix seconds (inclusive).
    pub start: u64,
    /// End, Unix seconds (exclusive).
    pub end: u64,
    /// Services it covers; empty means all.
    pub services: Vec<String>,
}

/// Alerting options shared by every SLO.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertOptions {
    /// Window size, seconds.
    pub window_s: u64,
    /// Exemplars per alert (K).
    pub exemplars: usize,
    /// How far before `starts_at` a deploy is a suspect, seconds.
    pub change_lookback_s: u64,
    /// Maintenance windows.
    pub maintenance: Vec<Maintenance>,
    /// Runbook link added to every alert.
    pub runbook_url: Option<String>,
}

/// Everything that became final at one time: one window's outputs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Final<'a> {
    /// The window's start, Unix seconds.
    pub window_start: u64,
    /// SLI records of the window.
    pub sli: &'a [SliRecord],
    /// Service-graph edges of the window.
    pub edges: &'a [ServiceGraphRecord],
    /// Exemplars of the window.
    pub exemplars: &'a [ExemplarRecord],
    /// Deploy events of the window.
    pub changes: &'a [ChangeRecord],
}

/// What one evaluation produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// Burn rates and budget of every SLO target.
    pub slo: Vec<SloRecord>,
    /// Alert state changes, sorted by dedup key.
    pub alerts: Vec<AlertRecord>,
    /// M7 `correlated_alert_rate` records of the window (alerts that started firing).
    pub sli: Vec<SliRecord>,
}

/// `burn_rate` of SPEC §4: 0 below `min_events`.
pub fn burn_rate(bad: u64, total: u64, objective: f64, min_events: u64) -> f64 {
    if total == 0 || total < min_events {
        return 0.0;
    }
    (bad as f64 / total as f64) / (1.0 - objective)
}

/// `burn >= factor`, allowing for the rounding of `1 - objective` in floating
/// point (`1 - 0.999` is `0.0010000000000000009`): a burn within one part in 10^9
/// of the factor reaches it, so the SRE-workbook figures fire exactly at 14.4, 6 and 1.
pub fn reaches(burn: f64, factor: f64) -> bool {
    burn >= factor * (1.0 - 1e-9)
}

/// `error_budget_remaining` of SPEC §4; 1 when there were no events.
pub fn budget_remaining(bad: u64, total: u64, objective: f64) -> f64 {
    if total == 0 {
        return 1.0;
    }
    1.0 - bad as f64 / (total as f64 * (1.0 - objective))
}

/// A stable 64-bit FNV-1a hash of `parts` joined by NUL, as 16 hex digits.
pub fn stable_key(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        let sep: &[u8] = if i == 0 { b"" } else { b"\0" };
        for b in sep.iter().chain(p.as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The dedup key of an alert: stable hash of (slo, service, environment, severity).
pub fn dedup_key(slo: &str, service: &str, environment: &str, severity: Severity) -> String {
    stable_key(&[slo, service, environment, severity.as_str()])
}

/// Per SLO (by index in the specs), its targets' series by service: the
/// (slo index, service) order of evaluation, looked up by `&str`.
type History = Vec<BTreeMap<String, Series>>;

/// Bad and total events per window of one target, kept as running sums so that
/// the sum over any span is two lookups, however long the period.
#[derive(Default)]
struct Series {
    /// Sums up to and including each window start.
    cum: BTreeMap<u64, (u64, u64)>,
    /// Sums up to the newest forgotten window.
    base: (u64, u64),
}

impl Series {
    /// Adds events to window `w`, which is the newest window.
    fn add(&mut self, w: u64, bad: u64, total: u64) {
        let last = self.cum.last_key_value().map_or(self.base, |(_, v)| *v);
        let e = self.cum.entry(w).or_insert(last);
        e.0 += bad;
        e.1 += total;
    }

    /// Running sums of the windows starting before `t`.
    fn before(&self, t: u64) -> (u64, u64) {
        self.cum
            .range(..t)
            .next_back()
            .map_or(self.base, |(_, v)| *v)
    }

    /// Bad and total events of the windows starting in `[from, to)`.
    fn sum(&self, from: u64, to: u64) -> (u64, u64) {
        let (a, b) = (self.before(from), self.before(to));
        (b.0 - a.0, b.1 - a.1)
    }

    /// Forgets windows starting before `oldest`.
    fn forget(&mut self, oldest: u64) {
        let keep = self.cum.split_off(&oldest);
        if let Some((_, v)) = self.cum.last_key_value() {
            self.base = *v;
        }
        self.cum = keep;
    }
}

/// The burn-rate and alert state machine.
pub struct Evaluator {
    specs: Vec<SloSpec>,
    opts: AlertOptions,
    /// Per target (slo, service): bad/total per window, as running sums.
    history: History,
    /// (sli, service, environment) → window start → exemplars.
    exemplars:
        BTreeMap<(String, String, String), BTreeMap<u64, Vec<causeway_schemas::records::Exemplar>>>,
    /// Window start → edges (client, server).
    edges: BTreeMap<u64, BTreeSet<(String, String)>>,
    /// Changes, by (time, id).
    changes: BTreeMap<(u64, String), ChangeRecord>,
    /// Firing alerts by dedup key.
    firing: BTreeMap<String, AlertRecord>,
    /// The newest window evaluated: older ones are not evaluated again (a
    /// restarted pipeline recomputes windows whose effect was rebuilt).
    last: Option<u64>,
}

impl Evaluator {
    /// An evaluator for `specs`.
    pub fn new(specs: Vec<SloSpec>, opts: AlertOptions) -> Self {
        Evaluator {
            history: specs.iter().map(|_| BTreeMap::new()).collect(),
            specs,
            opts,
            exemplars: BTreeMap::new(),
            edges: BTreeMap::new(),
            changes: BTreeMap::new(),
            firing: BTreeMap::new(),
            last: None,
        }
    }

    /// True when no SLO is configured (nothing to evaluate).
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Bad and total events of `r` for `spec`, or `None` if `r` does not count for it.
    pub fn counts(spec: &SloSpec, r: &SliRecord) -> Option<(u64, u64)> {
        if r.sli != spec.sli.as_str()
            || spec.service.as_ref().is_some_and(|s| *s != r.service)
            || spec
                .environment
                .as_ref()
                .is_some_and(|e| *e != r.environment)
        {
            return None;
        }
        match (spec.sli, spec.threshold_us) {
            (Sli::Latency, Some(th)) => {
                let (total, good) = histogram_count_up_to(r.histogram.as_deref()?, th)?;
                Some((total.saturating_sub(good), total))
            }
            _ => {
                let (good, total) = (r.good?, r.total?);
                Some((total.saturating_sub(good), total))
            }
        }
    }

    /// The longest span of history any SLO needs, seconds.
    fn retention(&self) -> u64 {
        self.specs
            .iter()
            .flat_map(|s| s.policy.iter().map(|r| r.long.0).chain([s.period_s]))
            .max()
            .unwrap_or(0)
    }

    /// Evaluates every SLO at the end of the window `f.window_start`. Windows at
    /// or before the newest one evaluated are ignored.
    pub fn evaluate(&mut self, f: Final<'_>) -> Evaluation {
        let w = f.window_start;
        if self.last.is_some_and(|l| w <= l) {
            return Evaluation::default();
        }
        self.last = Some(w);
        let end = w + self.opts.window_s;
        for r in f.sli {
            for (spec, history) in self.specs.iter().zip(self.history.iter_mut()) {
                if let Some((bad, total)) = Self::counts(spec, r) {
                    // The service is cloned only for a new target.
                    match history.get_mut(&r.service) {
                        Some(series) => series.add(w, bad, total),
                        None => history
                            .entry(r.service.clone())
                            .or_default()
                            .add(w, bad, total),
                    }
                }
            }
        }
        for x in f.exemplars {
            self.exemplars
                .entry((x.sli.clone(), x.service.clone(), x.environment.clone()))
                .or_default()
                .insert(w, x.exemplars.clone());
        }
        let pairs = f.edges.iter().map(|e| (e.client.clone(), e.server.clone()));
        match self.edges.entry(w) {
            // The usual case, a new window: the set is built at once (from
            // sorted pairs, without a search per pair).
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(pairs.collect());
            }
            std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().extend(pairs),
        }
        for c in f.changes {
            self.changes
                .insert((c.time_unix_nano, c.id.clone()), c.clone());
        }
        self.forget(end);

        let mut out = Evaluation::default();
        // Every target in (slo index, service) order; the specs and history
        // are only read while the alert state changes, so they are borrowed
        // out of `self` instead of cloned per target.
        let specs = std::mem::take(&mut self.specs);
        let history = std::mem::take(&mut self.history);
        for (spec, targets) in specs.iter().zip(&history) {
            let windows = spec.windows();
            for (service, series) in targets {
                self.evaluate_target(spec, &windows, service, series, end, &mut out);
            }
        }
        self.specs = specs;
        self.history = history;
        out.alerts.sort_by(|a, b| a.dedup_key.cmp(&b.dedup_key));
        out.sli = self.correlated_alert_rate(&out.alerts, w);
        out
    }

    /// Drops state older than the SLO periods and policy windows (history), the
    /// short windows (exemplars) and the change lookback (edges, changes) need.
    fn forget(&mut self, end: u64) {
        let oldest = end.saturating_sub(self.retention());
        for targets in &mut self.history {
            for h in targets.values_mut() {
                h.forget(oldest);
            }
            // A target without events for the whole retention is gone (a
            // service that stopped); its alerts resolved long ago, when its
            // short windows emptied.
            targets.retain(|_, h| !h.cum.is_empty());
        }
        let shortest = end.saturating_sub(self.exemplar_retention());
        for x in self.exemplars.values_mut() {
            *x = x.split_off(&shortest);
        }
        let lookback = end.saturating_sub(self.opts.change_lookback_s);
        self.edges = self.edges.split_off(&lookback);
        self.changes = self
            .changes
            .split_off(&(lookback * NANOS_PER_SEC, String::new()));
    }

    /// The longest short window of any policy, seconds.
    fn exemplar_retention(&self) -> u64 {
        self.specs
            .iter()
            .flat_map(|s| s.policy.iter().map(|r| r.short.0))
            .max()
            .unwrap_or(0)
    }

    /// Evaluates the SLO `spec` of `service`, whose policy windows are
    /// `windows` ([`SloSpec::windows`]) and whose events are `series`.
    fn evaluate_target(
        &mut self,
        spec: &SloSpec,
        windows: &[(u64, String)],
        service: &str,
        series: &Series,
        end: u64,
        out: &mut Evaluation,
    ) {
        let environment = spec.environment.clone().unwrap_or_default();
        let sum = |span: u64| series.sum(end.saturating_sub(span), end);
        let burn_rates: Vec<WindowBurn> = windows
            .iter()
            .map(|(secs, label)| {
                let (bad, total) = sum(*secs);
                WindowBurn {
                    window: label.clone(),
                    bad,
                    total,
                    burn_rate: burn_rate(bad, total, spec.objective, spec.min_events),
                }
            })
            .collect();
        let burn = |secs: u64| {
            let i = windows.iter().position(|w| w.0 == secs).unwrap_or(0);
            burn_rates[i].burn_rate
        };
        let (period_bad, period_total) = sum(spec.period_s);
        let remaining = budget_remaining(period_bad, period_total, spec.objective);
        for severity in [Severity::Page, Severity::Ticket] {
            let rows: Vec<&Row> = spec
                .policy
                .iter()
                .filter(|r| r.severity == severity)
                .filter(|r| reaches(burn(r.long.0), r.factor) && reaches(burn(r.short.0), r.factor))
                .collect();
            if spec.policy.iter().all(|r| r.severity != severity) {
                continue;
            }
            let key = dedup_key(&spec.name, service, &environment, severity);
            match (self.firing.contains_key(&key), rows.is_empty()) {
                (false, false) => {
                    let short = rows.iter().map(|r| r.short.0).max().unwrap_or(0);
                    let mut record = self.open_alert(spec, service, severity, end, short);
                    record.dedup_key = key.clone();
                    record.burn_rates = burn_rates.clone();
                    record.error_budget_remaining = remaining;
                    out.alerts.push(record.clone());
                    self.firing.insert(key, record);
                }
                (true, true) => {
                    if let Some(mut record) = self.firing.remove(&key) {
                        record.status = "resolved".into();
                        record.ends_at = Some(format_rfc3339(end));
                        record.evaluated_at = format_rfc3339(end);
                        record.burn_rates = burn_rates.clone();
                        record.error_budget_remaining = remaining;
                        out.alerts.push(record);
                    }
                }
                _ => {}
            }
        }
        // Last: the alerts above copy the burn rates, the record takes them.
        out.slo.push(SloRecord {
            slo: spec.name.clone(),
            service: service.to_string(),
            environment,
            sli: spec.sli.as_str().to_string(),
            evaluated_at: end,
            objective: spec.objective,
            burn_rates,
            error_budget_remaining: remaining,
            period_bad,
            period_total,
        });
    }

    /// A new firing alert with its evidence.
    fn open_alert(
        &self,
        spec: &SloSpec,
        service: &str,
        severity: Severity,
        starts_at: u64,
        short: u64,
    ) -> AlertRecord {
        let environment = spec.environment.clone().unwrap_or_default();
        let exemplars = self.pick_exemplars(spec, service, starts_at, short);
        let culprit = culprit(&exemplars).unwrap_or_else(|| service.to_string());
        let lookback_from = starts_at.saturating_sub(self.opts.change_lookback_s);
        let mut suspects: BTreeSet<String> = BTreeSet::from([service.to_string()]);
        for (_, es) in self.edges.range(lookback_from..starts_at) {
            suspects.extend(
                es.iter()
                    .filter(|(client, _)| client == service)
                    .map(|(_, server)| server.clone()),
            );
        }
        let mut changes: Vec<ChangeRecord> = self
            .changes
            .range((lookback_from * NANOS_PER_SEC, String::new())..)
            .map(|(_, c)| c)
            .filter(|c| c.time_unix_nano <= starts_at * NANOS_PER_SEC)
            .filter(|c| suspects.contains(&c.service))
            .filter(|c| {
                spec.environment.is_none()
                    || c.environment.is_empty()
                    || c.environment == environment
            })
            .cloned()
            .collect();
        changes.reverse();
        // The change that groups the alert: the culprit's newest, else the newest.
        let suspect = changes
            .iter()
            .find(|c| c.service == culprit)
            .or(changes.first());
        let suspected = suspect.map(|c| c.id.clone()).unwrap_or_default();
        let suppressed = self.opts.maintenance.iter().any(|m| {
            (m.start..m.end).contains(&starts_at)
                && (m.services.is_empty() || m.services.iter().any(|s| s == service))
        });
        let labels = BTreeMap::from([
            ("alertname".to_string(), ALERT_NAME.to_string()),
            ("slo".to_string(), spec.name.clone()),
            ("service".to_string(), service.to_string()),
            ("environment".to_string(), environment.clone()),
            ("severity".to_string(), severity.as_str().to_string()),
        ]);
        let mut summary = format!(
            "{service}: SLO {} ({} {}) is burning its error budget; culprit {culprit}",
            spec.name,
            spec.sli.as_str(),
            spec.objective
        );
        if let Some(c) = suspect {
            summary.push_str(&format!(
                "; suspected change: {} {} {}",
                c.service, c.version, c.action
            ));
            if !c.actor.is_empty() {
                summary.push_str(&format!(" by {}", c.actor));
            }
        }
        AlertRecord {
            dedup_key: String::new(),
            group_key: stable_key(&[&culprit, &suspected]),
            status: "firing".into(),
            suppressed,
            starts_at: format_rfc3339(starts_at),
            ends_at: None,
            evaluated_at: format_rfc3339(starts_at),
            labels,
            summary,
            sli: spec.sli.as_str().to_string(),
            objective: spec.objective,
            burn_rates: Vec::new(),
            error_budget_remaining: 1.0,
            exemplar_trace_ids: exemplars.iter().map(|e| e.trace_id.clone()).collect(),
            suspected_changes: changes,
            culprit,
            runbook_url: self.opts.runbook_url.clone(),
        }
    }

    /// Up to K exemplars of bad events of the target from the windows starting in
    /// `[end - short, end)`: for availability the smallest trace ids, for latency
    /// the slowest spans above the threshold.
    fn pick_exemplars(
        &self,
        spec: &SloSpec,
        service: &str,
        end: u64,
        short: u64,
    ) -> Vec<causeway_schemas::records::Exemplar> {
        let sli = match spec.sli {
            Sli::Availability | Sli::Latency => spec.sli.as_str(),
            _ => return Vec::new(),
        };
        let mut all: Vec<causeway_schemas::records::Exemplar> = self
            .exemplars
            .iter()
            .filter(|((s, svc, env), _)| {
                s == sli && svc == service && spec.environment.as_ref().is_none_or(|e| e == env)
            })
            .flat_map(|(_, by_window)| by_window.range(end.saturating_sub(short)..end))
            .flat_map(|(_, xs)| xs.iter().cloned())
            .filter(|x| spec.threshold_us.is_none_or(|th| x.duration_us > th))
            .collect();
        if spec.sli == Sli::Latency {
            all.sort_by(|a, b| {
                b.duration_us
                    .cmp(&a.duration_us)
                    .then_with(|| a.trace_id.cmp(&b.trace_id))
            });
        } else {
            all.sort_by(|a, b| a.trace_id.cmp(&b.trace_id));
        }
        let mut seen = BTreeSet::new();
        all.retain(|x| seen.insert(x.trace_id.clone()));
        all.truncate(self.opts.exemplars);
        all
    }

    /// M7: per (service, environment), alerts that started firing in window `w`
    /// (total) and those carrying an exemplar (good).
    fn correlated_alert_rate(&self, alerts: &[AlertRecord], w: u64) -> Vec<SliRecord> {
        let mut counts: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
        for a in alerts.iter().filter(|a| a.status == "firing") {
            let c = counts
                .entry((a.label("service"), a.label("environment")))
                .or_default();
            c.1 += 1;
            if !a.exemplar_trace_ids.is_empty() {
                c.0 += 1;
            }
        }
        counts
            .into_iter()
            .map(|((service, env), (good, total))| {
                SliRecord::ratio(
                    CORRELATED_ALERT_RATE,
                    (service, env, ""),
                    (w, w + self.opts.window_s),
                    good,
                    total,
                )
            })
            .collect()
    }
}

/// The service that most often owns the deepest `ERROR` span among `exemplars`
/// (ties: smallest name); `None` when none has an `ERROR` span.
pub fn culprit(exemplars: &[causeway_schemas::records::Exemplar]) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for x in exemplars
        .iter()
        .filter(|x| !x.deepest_error_service.is_empty())
    {
        *counts.entry(&x.deepest_error_service).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(s, _)| s.to_string())
}
