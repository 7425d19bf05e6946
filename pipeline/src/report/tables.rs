//! The report's tables and sentences, built once from a [`Report`] so that the
//! Markdown and the HTML say the same thing.

use causeway_schemas::time::format_rfc3339;

use super::model::{Counts, Report, SloTarget};

/// A table: header cells and rows of text cells.
pub struct Table {
    /// Header cells.
    pub head: Vec<&'static str>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
}

/// A ratio as a percentage with 3 decimals, `–` when undefined.
pub fn pct(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{:.3}%", r * 100.0))
}

/// A budget fraction as a percentage with 1 decimal.
pub fn budget(r: f64) -> String {
    format!("{:.1}%", r * 100.0)
}

fn counts(c: &Counts) -> String {
    format!("{} ({}/{})", pct(c.ratio), c.good, c.total)
}

fn ms(v: f64) -> String {
    format!("{v:.3}")
}

/// The title line.
pub fn title(r: &Report) -> String {
    format!(
        "SLO report, {} {} to {}",
        r.period.method, r.period.start, r.period.as_of
    )
}

/// The sentences that state the period and the budget method.
pub fn period_lines(r: &Report) -> Vec<String> {
    let p = &r.period;
    let mut out = vec![
        format!(
            "Period: {} {}, from {} to {}{}.",
            p.method,
            p.length,
            p.start,
            p.end,
            if p.complete {
                String::new()
            } else {
                format!(" (not over: data counted until {})", p.as_of)
            }
        ),
        format!("Error budget: {}.", p.budget_method),
        format!(
            "Data in the period: windows of {} s from {} to {}; charts in steps of {} s.",
            r.window_seconds,
            format_rfc3339(r.axis.start),
            format_rfc3339(r.axis.end),
            r.chart_step_seconds
        ),
    ];
    if !r.services_filter.is_empty() {
        out.push(format!("Services: {}.", r.services_filter.join(", ")));
    }
    if !r.slos_filter.is_empty() {
        out.push(format!("SLOs: {}.", r.slos_filter.join(", ")));
    }
    out
}

/// The SLO summary table.
pub fn summary(r: &Report) -> Table {
    Table {
        head: vec![
            "SLO",
            "service",
            "SLI",
            "objective",
            "attainment",
            "good / total",
            "bad",
            "budget remaining",
            "met",
        ],
        rows: r
            .slos
            .iter()
            .map(|t| {
                vec![
                    t.slo.clone(),
                    t.service.clone(),
                    sli_name(t),
                    pct(Some(t.objective)),
                    pct(t.attainment),
                    format!("{} / {}", t.good, t.total),
                    t.bad.to_string(),
                    budget(t.error_budget_remaining),
                    match t.met {
                        Some(true) => "yes".into(),
                        Some(false) => "**no**".into(),
                        None => "no events".into(),
                    },
                ]
            })
            .collect(),
    }
}

fn sli_name(t: &SloTarget) -> String {
    match t.threshold_ms {
        Some(ms) => format!("{} ≤ {ms} ms", t.sli),
        None => t.sli.clone(),
    }
}

/// The heading of a target's section.
pub fn target_heading(t: &SloTarget) -> String {
    format!("{}: {}", t.slo, t.service)
}

/// The sentences of a target's section.
pub fn target_lines(t: &SloTarget) -> Vec<String> {
    let mut out = vec![format!(
        "{} of {} against an objective of {}: attainment {} ({} good of {} events), {}.",
        sli_name(t),
        t.service,
        pct(Some(t.objective)),
        pct(t.attainment),
        t.good,
        t.total,
        match t.met {
            Some(true) => "objective met",
            Some(false) => "objective missed",
            None => "no events",
        }
    )];
    out.push(format!(
        "Error budget: {} bad events allowed, {} spent, {} remaining.",
        format_args!("{:.1}", t.budget_events),
        t.bad,
        budget(t.error_budget_remaining)
    ));
    let peaks: Vec<String> = t
        .burn_rates
        .iter()
        .map(|b| format!("{} {:.1}x", b.window, b.peak))
        .collect();
    if !peaks.is_empty() {
        out.push(format!("Peak burn rates: {}.", peaks.join(", ")));
    }
    if let Some(e) = &t.evaluator {
        out.push(format!(
            "The evaluator at {} (over the SLO's own {} s period): {} bad of {}, budget remaining {}.",
            format_rfc3339(e.evaluated_at),
            t.slo_period_seconds,
            e.period_bad,
            e.period_total,
            budget(e.error_budget_remaining)
        ));
    }
    if let Some(worst) = t.deploys.iter().filter(|d| d.bad > 0).max_by_key(|d| d.bad) {
        out.push(format!(
            "Most budget burned after {} {} {} by {}: {} bad events, {} of the budget.",
            worst.deploy.service,
            worst.deploy.action,
            worst.deploy.version,
            actor(&worst.deploy.actor),
            worst.bad,
            worst.budget_share.map_or("–".into(), budget)
        ));
    }
    out
}

fn actor(a: &str) -> String {
    if a.is_empty() {
        "unknown".into()
    } else {
        a.to_string()
    }
}

/// The deploys that may have burned a target's budget.
pub fn target_deploys(t: &SloTarget) -> Table {
    let mut rows: Vec<Vec<String>> = t
        .deploys
        .iter()
        .map(|d| {
            vec![
                d.deploy.at.clone(),
                d.deploy.service.clone(),
                d.deploy.action.clone(),
                d.deploy.version.clone(),
                actor(&d.deploy.actor),
                d.bad.to_string(),
                d.budget_share.map_or("–".into(), budget),
                if d.suspected_by_alert { "yes" } else { "" }.into(),
            ]
        })
        .collect();
    if t.unattributed_bad > 0 {
        rows.push(vec![
            "before any deploy".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            t.unattributed_bad.to_string(),
            if t.budget_events > 0.0 {
                budget(t.unattributed_bad as f64 / t.budget_events)
            } else {
                "–".into()
            },
            String::new(),
        ]);
    }
    Table {
        head: vec![
            "deployed at",
            "service",
            "action",
            "version",
            "actor",
            "bad events until the next deploy",
            "budget burned",
            "suspected by an alert",
        ],
        rows,
    }
}

/// The alert timeline of a target.
pub fn target_alerts(t: &SloTarget) -> Table {
    Table {
        head: vec![
            "severity",
            "fired",
            "resolved",
            "suppressed",
            "culprit",
            "suspected changes",
        ],
        rows: t
            .alerts
            .iter()
            .map(|a| {
                vec![
                    a.severity.clone(),
                    a.starts_at.clone(),
                    a.ends_at.clone().unwrap_or_else(|| "still firing".into()),
                    if a.suppressed { "yes" } else { "no" }.into(),
                    a.culprit.clone(),
                    a.suspects.join("; "),
                ]
            })
            .collect(),
    }
}

/// The burn-rate peaks and policy of a target.
pub fn target_policy(t: &SloTarget) -> Table {
    let peak = |w: &str| {
        t.burn_rates
            .iter()
            .find(|b| b.window == w)
            .map_or("–".into(), |b| format!("{:.2}x", b.peak))
    };
    Table {
        head: vec![
            "severity",
            "long",
            "short",
            "factor",
            "peak burn (long)",
            "peak burn (short)",
        ],
        rows: t
            .policy
            .iter()
            .map(|r| {
                vec![
                    r.severity.clone(),
                    r.long.clone(),
                    r.short.clone(),
                    format!("{}x", r.factor),
                    peak(&r.long),
                    peak(&r.short),
                ]
            })
            .collect(),
    }
}

/// The versions of one service (index into `r.services`).
pub fn versions(r: &Report, i: usize) -> Table {
    Table {
        head: vec![
            "environment",
            "version",
            "role",
            "first seen",
            "last seen",
            "requests",
            "errors",
            "availability",
            "p50 ms",
            "p90 ms",
            "p99 ms",
        ],
        rows: r.services[i]
            .versions
            .iter()
            .map(|v| {
                let l = v.latency.as_ref();
                vec![
                    v.environment.clone(),
                    v.version.clone(),
                    v.role.clone(),
                    format_rfc3339(v.first_seen),
                    format_rfc3339(v.last_seen),
                    v.availability.total.to_string(),
                    (v.availability.total - v.availability.good).to_string(),
                    pct(v.availability.ratio),
                    l.map_or("–".into(), |l| ms(l.p50_ms)),
                    l.map_or("–".into(), |l| ms(l.p90_ms)),
                    l.map_or("–".into(), |l| ms(l.p99_ms)),
                ]
            })
            .collect(),
    }
}

/// The traceability table, worst first.
pub fn traceability(r: &Report) -> Table {
    Table {
        head: vec![
            "service",
            "trace coverage",
            "context loss (orphans)",
            "error-trace ratio",
            "latency capture",
            "provenance completeness",
            "PII exposures",
            "sampling bias",
        ],
        rows: r
            .traceability
            .iter()
            .map(|t| {
                vec![
                    t.service.clone(),
                    counts(&t.trace_coverage),
                    format!(
                        "{} ({}/{})",
                        pct(t.context_loss_rate),
                        t.context_loss.total - t.context_loss.good,
                        t.context_loss.total
                    ),
                    counts(&t.error_trace_ratio),
                    counts(&t.latency_capture),
                    counts(&t.provenance_completeness),
                    format!("{} of {}", t.pii_exposures, t.pii_scanned),
                    t.sampling_bias
                        .as_ref()
                        .and_then(|b| b.value)
                        .map_or("–".into(), |v| format!("{v:.4}")),
                ]
            })
            .collect(),
    }
}

/// The service graph.
pub fn graph(r: &Report) -> Table {
    Table {
        head: vec!["client", "server", "calls", "failed", "failure ratio"],
        rows: r
            .service_graph
            .iter()
            .map(|e| {
                vec![
                    e.client.clone(),
                    e.server.clone(),
                    e.calls.to_string(),
                    e.failed.to_string(),
                    pct((e.calls > 0).then(|| e.failed as f64 / e.calls as f64)),
                ]
            })
            .collect(),
    }
}

/// Every deploy of the period.
pub fn deploys(r: &Report) -> Table {
    Table {
        head: vec![
            "time",
            "service",
            "environment",
            "action",
            "version",
            "artifact",
            "actor",
        ],
        rows: r
            .deploys
            .iter()
            .map(|d| {
                vec![
                    d.at.clone(),
                    d.service.clone(),
                    d.environment.clone(),
                    d.action.clone(),
                    d.version.clone(),
                    d.artifact.clone(),
                    actor(&d.actor),
                ]
            })
            .collect(),
    }
}
