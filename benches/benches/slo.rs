//! The SLO evaluator: one window's evaluation (burn rates over every policy
//! window, budget over a 28-day period, alert lifecycle) for 100 services whose
//! history already holds 28 days of one-minute windows.

use causeway_jobs::obs::Sli;
use causeway_jobs::slo::{AlertOptions, Evaluator, Final, Row, SloSpec};
use causeway_schemas::records::SliRecord;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const W: u64 = 60;
const SERVICES: usize = 100;

fn window(w: u64) -> Vec<SliRecord> {
    (0..SERVICES)
        .map(|s| {
            let service = format!("svc-{s:03}");
            // A steady 0.05% error rate: half the budget, so nothing fires.
            let total = 2000;
            SliRecord::ratio(
                "availability",
                (&service, "prod", "1.0"),
                (w, w + W),
                total - 1,
                total,
            )
        })
        .collect()
}

fn evaluator(c: &mut Criterion) {
    let spec = SloSpec {
        name: "availability".into(),
        service: None,
        environment: None,
        sli: Sli::Availability,
        objective: 0.999,
        period_s: 28 * 86400,
        threshold_us: None,
        min_events: 1,
        policy: Row::workbook(),
    };
    let mut ev = Evaluator::new(
        vec![spec],
        AlertOptions {
            window_s: W,
            exemplars: 5,
            change_lookback_s: 3600,
            maintenance: Vec::new(),
            runbook_url: None,
        },
    );
    let start = 1_800_000_000u64;
    let windows = 28 * 86400 / W;
    for i in 0..windows {
        let w = start + i * W;
        ev.evaluate(Final {
            window_start: w,
            sli: &window(w),
            ..Final::default()
        });
    }
    let mut next = start + windows * W;
    let mut g = c.benchmark_group("slo");
    g.throughput(Throughput::Elements(SERVICES as u64));
    g.bench_function("evaluate_window_100_services_28d_history", |b| {
        b.iter_batched(
            || {
                let w = next;
                next += W;
                (w, window(w))
            },
            |(w, records)| {
                ev.evaluate(Final {
                    window_start: w,
                    sli: &records,
                    ..Final::default()
                })
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, evaluator);
criterion_main!(benches);
