//! The records a report is made of, read from a `replay` output directory or
//! from the output topics of `causeway run`.
//!
//! Both sources give the same [`Records`]: each kind de-duplicated by its key (a
//! restarted `run` may repeat a record, with the same key and value) and sorted
//! canonically, so a report does not depend on partitioning or delivery order.
//! A record that does not parse is an error naming its file and line (or topic,
//! partition and offset); nothing is skipped silently.

use std::collections::BTreeMap;
use std::path::Path;

use causeway_schemas::records::{
    AlertRecord, ChangeRecord, EvidenceRecord, ServiceGraphRecord, SliRecord, SloRecord,
};
use serde::de::DeserializeOwned;

use super::ReportError;
use crate::config::KafkaConfig;

/// Everything a report reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Records {
    /// Final SLI records, sorted as `sli.jsonl`.
    pub sli: Vec<SliRecord>,
    /// Burn rates and budgets the evaluator wrote, by (evaluated_at, slo, service, environment).
    pub slo: Vec<SloRecord>,
    /// Alert state changes, by (starts_at, dedup_key, evaluated_at, status).
    pub alerts: Vec<AlertRecord>,
    /// Deploy events with their actors, by (time, id).
    pub changes: Vec<ChangeRecord>,
    /// Service-graph edges, by (window_start, client, server).
    pub edges: Vec<ServiceGraphRecord>,
}

/// The file of a `replay` output directory for each kind of record.
const SLI: &str = "sli.jsonl";
const EDGES: &str = "service_graph.jsonl";
const EVIDENCE: &str = "evidence.jsonl";
const SLO: &str = "slo.jsonl";
const ALERTS: &str = "alerts.jsonl";

/// Reads a `replay` output directory. `sli.jsonl` is required; the other files
/// are read when present (an export of `causeway_sli` alone gives a report
/// without alerts, deploys or service graph).
pub fn from_dir(dir: &Path) -> Result<Records, ReportError> {
    if !dir.is_dir() {
        return Err(ReportError::Input(format!(
            "{} is not a directory; pass the --out directory of `causeway replay`",
            dir.display()
        )));
    }
    if !dir.join(SLI).is_file() {
        return Err(ReportError::Input(format!(
            "{} has no {SLI}; pass the --out directory of `causeway replay`",
            dir.display()
        )));
    }
    let mut b = Builder::default();
    for (file, kind) in [
        (SLI, Kind::Sli),
        (EDGES, Kind::Edge),
        (EVIDENCE, Kind::Evidence),
        (SLO, Kind::Slo),
        (ALERTS, Kind::Alert),
    ] {
        let path = dir.join(file);
        if !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ReportError::Input(format!("cannot read {}: {e}", path.display())))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            b.add(kind, line.as_bytes(), || {
                format!("{}:{}", path.display(), i + 1)
            })?;
        }
    }
    Ok(b.finish())
}

/// Reads the output topics of `k` up to a fence record written to each of their
/// partitions, as `run` reads them back at start-up. The consumer is assigned its
/// partitions and commits nothing, so `run`'s consumer group is left alone.
pub fn from_kafka(k: &KafkaConfig) -> Result<Records, ReportError> {
    use crate::kafka::read_fenced;
    let t = &k.topics;
    let kinds = [
        (t.sli.as_str(), Kind::Sli),
        (t.service_graph.as_str(), Kind::Edge),
        (t.evidence.as_str(), Kind::Evidence),
        (t.slo.as_str(), Kind::Slo),
        (t.alerts.as_str(), Kind::Alert),
    ];
    let topics: Vec<&str> = kinds.iter().map(|(t, _)| *t).collect();
    let stored = read_fenced(k, &topics).map_err(|e| ReportError::Kafka(e.to_string()))?;
    let mut b = Builder::default();
    for s in &stored {
        let Some((_, kind)) = kinds.iter().find(|(t, _)| *t == s.topic) else {
            continue;
        };
        b.add(*kind, &s.value, || {
            format!("{} partition {} offset {}", s.topic, s.partition, s.offset)
        })?;
    }
    Ok(b.finish())
}

#[derive(Clone, Copy)]
enum Kind {
    Sli,
    Edge,
    Evidence,
    Slo,
    Alert,
}

type SliKey = (u64, String, String, String, String);

#[derive(Default)]
struct Builder {
    sli: BTreeMap<SliKey, SliRecord>,
    edges: BTreeMap<(u64, String, String), ServiceGraphRecord>,
    slo: BTreeMap<(u64, String, String, String), SloRecord>,
    alerts: BTreeMap<(String, String, String, String), AlertRecord>,
    changes: BTreeMap<(u64, String), ChangeRecord>,
}

fn parse<T: DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    at: impl FnOnce() -> String,
) -> Result<T, ReportError> {
    serde_json::from_slice(bytes).map_err(|e| ReportError::Record {
        at: at(),
        detail: format!("not a valid {what} record: {e}"),
    })
}

impl Builder {
    fn add(
        &mut self,
        kind: Kind,
        bytes: &[u8],
        at: impl FnOnce() -> String,
    ) -> Result<(), ReportError> {
        match kind {
            Kind::Sli => {
                let r: SliRecord = parse(bytes, "SLI", at)?;
                let key = (
                    r.window_start,
                    r.sli.clone(),
                    r.service.clone(),
                    r.environment.clone(),
                    r.version.clone(),
                );
                self.sli.insert(key, r);
            }
            Kind::Edge => {
                let r: ServiceGraphRecord = parse(bytes, "service-graph", at)?;
                self.edges
                    .insert((r.window_start, r.client.clone(), r.server.clone()), r);
            }
            Kind::Evidence => match parse(bytes, "evidence", at)? {
                EvidenceRecord::Change(c) => {
                    self.changes.insert((c.time_unix_nano, c.id.clone()), c);
                }
                EvidenceRecord::Exemplars(_) => {}
            },
            Kind::Slo => {
                let r: SloRecord = parse(bytes, "SLO", at)?;
                let key = (
                    r.evaluated_at,
                    r.slo.clone(),
                    r.service.clone(),
                    r.environment.clone(),
                );
                self.slo.insert(key, r);
            }
            Kind::Alert => {
                let r: AlertRecord = parse(bytes, "alert", at)?;
                let key = (
                    r.starts_at.clone(),
                    r.dedup_key.clone(),
                    r.evaluated_at.clone(),
                    r.status.clone(),
                );
                self.alerts.insert(key, r);
            }
        }
        Ok(())
    }

    fn finish(self) -> Records {
        Records {
            sli: self.sli.into_values().collect(),
            slo: self.slo.into_values().collect(),
            alerts: self.alerts.into_values().collect(),
            changes: self.changes.into_values().collect(),
            edges: self.edges.into_values().collect(),
        }
    }
}
