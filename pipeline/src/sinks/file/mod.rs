//! File sink for `causeway replay`: `sli.jsonl`, `service_graph.jsonl`,
//! `slo.jsonl` (burn rates and budgets), `evidence.jsonl` (exemplars and
//! deploys) and `alerts.jsonl`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use causeway_schemas::records::{
    AlertRecord, EvidenceRecord, ServiceGraphRecord, SliRecord, SloRecord,
};

use crate::dataflow::OutputSink;

/// Open output files and what has been written to them.
pub struct FileOutputs {
    sli: BufWriter<File>,
    edges: BufWriter<File>,
    slo: BufWriter<File>,
    evidence: BufWriter<File>,
    alerts: BufWriter<File>,
    /// Alert records written.
    pub alert_records: u64,
    /// SLI records written.
    pub sli_records: u64,
    /// Service-graph records written.
    pub edge_records: u64,
    /// Distinct windows emitted.
    pub windows: u64,
    /// When each finalization time's SLI records were written.
    pub emitted: Vec<(u64, std::time::Instant)>,
    error: Option<std::io::Error>,
}

impl FileOutputs {
    /// Creates the output files in `dir`.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        Ok(FileOutputs {
            sli: BufWriter::new(File::create(dir.join("sli.jsonl"))?),
            edges: BufWriter::new(File::create(dir.join("service_graph.jsonl"))?),
            slo: BufWriter::new(File::create(dir.join("slo.jsonl"))?),
            evidence: BufWriter::new(File::create(dir.join("evidence.jsonl"))?),
            alerts: BufWriter::new(File::create(dir.join("alerts.jsonl"))?),
            alert_records: 0,
            sli_records: 0,
            edge_records: 0,
            windows: 0,
            emitted: Vec::new(),
            error: None,
        })
    }

    /// Flushes every file, reporting the first write error seen.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.sli.flush()?;
        self.edges.flush()?;
        self.slo.flush()?;
        self.evidence.flush()?;
        self.alerts.flush()
    }

    fn write_lines<T: serde::Serialize>(
        out: &mut BufWriter<File>,
        records: &[T],
    ) -> std::io::Result<()> {
        for r in records {
            serde_json::to_writer(&mut *out, r)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// An [`OutputSink`] writing into shared [`FileOutputs`].
pub struct FileSink(pub Arc<Mutex<FileOutputs>>);

impl FileSink {
    /// Appends `records` to the file `file` picks, counting them with `count`;
    /// the first write error is kept for [`FileOutputs::finish`].
    fn append<T: serde::Serialize>(
        &self,
        records: &[T],
        file: fn(&mut FileOutputs) -> &mut BufWriter<File>,
        count: fn(&mut FileOutputs, u64),
    ) {
        let Ok(mut o) = self.0.lock() else { return };
        count(&mut o, records.len() as u64);
        if let Err(e) = FileOutputs::write_lines(file(&mut o), records) {
            o.error.get_or_insert(e);
        }
    }
}

impl OutputSink for FileSink {
    fn sli(&mut self, time: u64, records: &[SliRecord]) {
        if let Ok(mut o) = self.0.lock() {
            o.windows += 1;
            o.emitted.push((time, std::time::Instant::now()));
        }
        self.append(records, |o| &mut o.sli, |o, n| o.sli_records += n);
    }

    fn edges(&mut self, _time: u64, records: &[ServiceGraphRecord]) {
        self.append(records, |o| &mut o.edges, |o, n| o.edge_records += n);
    }

    fn slo(&mut self, _time: u64, records: &[SloRecord]) {
        self.append(records, |o| &mut o.slo, |_, _| {});
    }

    fn evidence(&mut self, _time: u64, records: &[EvidenceRecord]) {
        self.append(records, |o| &mut o.evidence, |_, _| {});
    }

    fn alerts(&mut self, _time: u64, records: &[AlertRecord]) {
        self.append(records, |o| &mut o.alerts, |o, n| o.alert_records += n);
    }
}
