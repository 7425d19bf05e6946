//! Property tests: every record Causeway writes (SLI, service-graph, SLO, alert,
//! evidence, DLQ and checkpoint records) serializes to one JSON line and reads
//! back equal, whatever its strings (any Unicode, control characters, quotes)
//! and numbers (the full `u64`/`i64` ranges, any finite `f64`).

use std::collections::BTreeMap;

use causeway::kafka::{Checkpoint, CheckpointRecord};
use causeway_schemas::records::{
    AlertRecord, ChangeRecord, DlqRecord, EvidenceRecord, Exemplar, ExemplarRecord,
    ServiceGraphRecord, SliRecord, SloRecord, WindowBurn,
};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Serializes `r` as Causeway does (one JSON value per line or Kafka record)
/// and reads it back.
fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(r: &T) {
    let line = serde_json::to_string(r).unwrap();
    assert!(!line.contains('\n'), "a record must fit one JSONL line");
    let back: T = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(&back, r);
    let bytes = serde_json::to_vec(r).unwrap();
    assert_eq!(&serde_json::from_slice::<T>(&bytes).unwrap(), r);
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9._-]{0,12}".prop_map(String::from),
        Just("\"}\n\\u0000\u{2028}\r\t".to_string()),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(-0.0),
    ]
}

fn opt<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::of(s)
}

fn sli() -> impl Strategy<Value = SliRecord> {
    (
        (text(), text(), text(), text(), any::<u64>(), any::<u64>()),
        (
            opt(any::<u64>()),
            opt(any::<u64>()),
            opt(float()),
            opt(float()),
            opt(float()),
        ),
        (opt(text()), opt(float())),
        (
            opt(any::<u64>()),
            opt(any::<u64>()),
            opt(any::<u64>()),
            opt(any::<u64>()),
        ),
    )
        .prop_map(
            |(
                (sli, service, environment, version, ws, we),
                (good, total, p50, p90, p99),
                (histogram, value),
                (rq, erq, trq, terq),
            )| SliRecord {
                sli,
                service,
                environment,
                version,
                window_start: ws,
                window_end: we,
                good,
                total,
                p50_ms: p50,
                p90_ms: p90,
                p99_ms: p99,
                histogram,
                value,
                requests: rq,
                error_requests: erq,
                traced_requests: trq,
                traced_error_requests: terq,
            },
        )
}

fn edge() -> impl Strategy<Value = ServiceGraphRecord> {
    (
        text(),
        text(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(client, server, window_start, window_end, total, failed)| ServiceGraphRecord {
                client,
                server,
                window_start,
                window_end,
                total,
                failed,
            },
        )
}

fn dlq() -> impl Strategy<Value = DlqRecord> {
    (
        text(),
        any::<u32>(),
        any::<u64>(),
        opt(any::<u32>()),
        text(),
        text(),
    )
        .prop_map(
            |(source, partition, offset, record_index, reason, detail)| DlqRecord {
                source,
                partition,
                offset,
                record_index,
                reason,
                detail,
            },
        )
}

fn burns() -> impl Strategy<Value = Vec<WindowBurn>> {
    prop::collection::vec(
        (text(), any::<u64>(), any::<u64>(), float()).prop_map(
            |(window, bad, total, burn_rate)| WindowBurn {
                window,
                bad,
                total,
                burn_rate,
            },
        ),
        0..4,
    )
}

fn slo() -> impl Strategy<Value = SloRecord> {
    (
        (text(), text(), text(), text(), any::<u64>(), float()),
        (burns(), float(), any::<u64>(), any::<u64>()),
    )
        .prop_map(
            |(
                (slo, service, environment, sli, evaluated_at, objective),
                (burn_rates, rem, bad, total),
            )| SloRecord {
                slo,
                service,
                environment,
                sli,
                evaluated_at,
                objective,
                burn_rates,
                error_budget_remaining: rem,
                period_bad: bad,
                period_total: total,
            },
        )
}

fn change() -> impl Strategy<Value = ChangeRecord> {
    (
        any::<u64>(),
        text(),
        text(),
        text(),
        text(),
        text(),
        text(),
        text(),
    )
        .prop_map(
            |(time_unix_nano, service, environment, action, version, artifact, id, actor)| {
                ChangeRecord {
                    time_unix_nano,
                    service,
                    environment,
                    action,
                    version,
                    artifact,
                    id,
                    actor,
                }
            },
        )
}

fn evidence() -> impl Strategy<Value = EvidenceRecord> {
    let exemplar = (text(), any::<u64>(), text()).prop_map(|(trace_id, duration_us, d)| Exemplar {
        trace_id,
        duration_us,
        deepest_error_service: d,
    });
    prop_oneof![
        (
            text(),
            text(),
            text(),
            any::<u64>(),
            prop::collection::vec(exemplar, 0..4)
        )
            .prop_map(|(sli, service, environment, window_start, exemplars)| {
                EvidenceRecord::Exemplars(ExemplarRecord {
                    sli,
                    service,
                    environment,
                    window_start,
                    exemplars,
                })
            }),
        change().prop_map(EvidenceRecord::Change),
    ]
}

fn alert() -> impl Strategy<Value = AlertRecord> {
    (
        (
            text(),
            text(),
            text(),
            any::<bool>(),
            text(),
            opt(text()),
            text(),
        ),
        (
            prop::collection::btree_map(text(), text(), 0..5),
            text(),
            text(),
            float(),
        ),
        (burns(), float(), prop::collection::vec(text(), 0..5)),
        (prop::collection::vec(change(), 0..3), text(), opt(text())),
    )
        .prop_map(
            |(
                (dedup_key, group_key, status, suppressed, starts_at, ends_at, evaluated_at),
                (labels, summary, sli, objective),
                (burn_rates, error_budget_remaining, exemplar_trace_ids),
                (suspected_changes, culprit, runbook_url),
            )| AlertRecord {
                dedup_key,
                group_key,
                status,
                suppressed,
                starts_at,
                ends_at,
                evaluated_at,
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                summary,
                sli,
                objective,
                burn_rates,
                error_budget_remaining,
                exemplar_trace_ids,
                suspected_changes,
                culprit,
                runbook_url,
            },
        )
}

fn checkpoint() -> impl Strategy<Value = CheckpointRecord> {
    (
        any::<u64>(),
        any::<u64>(),
        opt(any::<u64>()),
        any::<u64>(),
        opt(any::<i64>()),
        prop::collection::vec((text(), any::<i32>(), any::<i64>()), 0..4),
    )
        .prop_map(
            |(offset, emitted, max_seen, read, ts_ms, out)| CheckpointRecord {
                offset,
                checkpoint: Checkpoint {
                    emitted,
                    max_seen,
                    read,
                    ts_ms,
                    out,
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn sli_records_read_back_equal(r in sli()) { roundtrip(&r) }

    #[test]
    fn service_graph_records_read_back_equal(r in edge()) { roundtrip(&r) }

    #[test]
    fn slo_records_read_back_equal(r in slo()) { roundtrip(&r) }

    #[test]
    fn alert_records_read_back_equal(r in alert()) { roundtrip(&r) }

    #[test]
    fn evidence_records_read_back_equal(r in evidence()) { roundtrip(&r) }

    #[test]
    fn dlq_records_read_back_equal(r in dlq()) { roundtrip(&r) }

    #[test]
    fn checkpoint_records_read_back_equal(r in checkpoint()) { roundtrip(&r) }
}
