//! File sink for `causeway replay`: `sli.jsonl`, `service_graph.jsonl`,
//! `slo.jsonl` (burn rates and budgets), `evidence.jsonl` (exemplars and
//! deploys) and `alerts.jsonl`.
//!
//! Every file is written under a temporary name (`sli.jsonl.partial`) and
//! renamed to its final name only once the whole replay succeeded
//! ([`FileOutputs::commit`]), so a replay that fails (a full disk, a file-size
//! limit) or dies never leaves a file that looks complete. Outputs of an
//! earlier replay in the same directory are removed when a replay starts.
//!
//! Dead letters are never held in memory: each worker appends them, as they
//! are produced, to one spool file per input partition ([`DlqSpool`],
//! `dlq.jsonl.<partition>.partial`), and [`FileOutputs::merge_dlq`] joins the
//! spool files in partition order into `dlq.jsonl.partial` at the end.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use causeway_schemas::records::{
    AlertRecord, DlqRecord, EvidenceRecord, ServiceGraphRecord, SliRecord, SloRecord,
};

use crate::dataflow::OutputSink;

/// Every file a replay writes, in the order they are renamed into place.
pub const OUTPUT_FILES: [&str; 6] = [
    "sli.jsonl",
    "service_graph.jsonl",
    "slo.jsonl",
    "evidence.jsonl",
    "alerts.jsonl",
    "dlq.jsonl",
];

/// The temporary name `name` is written under until the replay succeeds.
pub fn partial_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.partial"))
}

/// The spool file of the dead letters of input partition `partition`
/// (`dlq.jsonl.<partition>.partial`) until [`FileOutputs::merge_dlq`].
pub fn dlq_part_path(dir: &Path, partition: u32) -> PathBuf {
    partial_path(dir, &format!("dlq.jsonl.{partition}"))
}

/// Whether `name` is a spool file of [`dlq_part_path`].
fn is_dlq_part(name: &str) -> bool {
    name.strip_prefix("dlq.jsonl.")
        .and_then(|n| n.strip_suffix(".partial"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes every dead-letter spool file from `dir`.
fn remove_dlq_parts(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name().to_str().is_some_and(is_dlq_part) {
            match std::fs::remove_file(e.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Open output files and what has been written to them.
pub struct FileOutputs {
    dir: PathBuf,
    committed: bool,
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
    /// Removes the outputs of an earlier replay from `dir` and creates the
    /// output files under their temporary names.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        for name in OUTPUT_FILES {
            match std::fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        remove_dlq_parts(dir)?;
        let open = |name: &str| File::create(partial_path(dir, name)).map(BufWriter::new);
        Ok(FileOutputs {
            dir: dir.to_path_buf(),
            committed: false,
            sli: open("sli.jsonl")?,
            edges: open("service_graph.jsonl")?,
            slo: open("slo.jsonl")?,
            evidence: open("evidence.jsonl")?,
            alerts: open("alerts.jsonl")?,
            alert_records: 0,
            sli_records: 0,
            edge_records: 0,
            windows: 0,
            emitted: Vec::new(),
            error: None,
        })
    }

    /// Flushes and syncs every file, reporting the first write error seen.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        for w in [
            &mut self.sli,
            &mut self.edges,
            &mut self.slo,
            &mut self.evidence,
            &mut self.alerts,
        ] {
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        Ok(())
    }

    /// Writes `dlq.jsonl.partial`: the spool files of input partitions
    /// `0..partitions` ([`DlqSpool`], every worker's finished), concatenated
    /// in partition order and removed, then synced. Each spool file is in
    /// (offset, record index) order, so the result is every dead letter in
    /// (partition, offset, record index) order.
    pub fn merge_dlq(&mut self, partitions: u32) -> std::io::Result<()> {
        let mut out = File::create(partial_path(&self.dir, "dlq.jsonl"))?;
        for p in 0..partitions {
            let path = dlq_part_path(&self.dir, p);
            match File::open(&path) {
                Ok(mut part) => {
                    std::io::copy(&mut part, &mut out)?;
                    std::fs::remove_file(&path)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        out.sync_all()
    }

    /// Renames every file (`dlq.jsonl.partial` included, see
    /// [`FileOutputs::merge_dlq`]) to its final name: call only after
    /// [`FileOutputs::finish`] and the dead letters succeeded.
    pub fn commit(&mut self) -> std::io::Result<()> {
        for name in OUTPUT_FILES {
            std::fs::rename(partial_path(&self.dir, name), self.dir.join(name))?;
        }
        self.committed = true;
        Ok(())
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

impl Drop for FileOutputs {
    /// A replay that failed anywhere (a worker, a write, the dead letters)
    /// leaves no temporary file behind, dead-letter spool files included; a
    /// killed one leaves only `*.partial`.
    fn drop(&mut self) {
        if !self.committed {
            for name in OUTPUT_FILES {
                let _ = std::fs::remove_file(partial_path(&self.dir, name));
            }
            let _ = remove_dlq_parts(&self.dir);
        }
    }
}

/// A worker's dead letters, written as they are produced to the spool file
/// of their input partition ([`dlq_part_path`]), so a flood of bad input
/// costs disk, not memory.
///
/// Each input partition is read by exactly one worker, message by message in
/// offset order (offsets strictly increase within a partition), so appending
/// each message's dead letters sorted by record index keeps each spool file in
/// (offset, record index) order. A worker reads its partitions in rounds of a
/// few messages each, so the dead letters of each partition gather in a buffer
/// of their own and go to its file (opened to append, written, closed) once
/// the buffer holds [`SPOOL_CHUNK`] bytes, and at [`DlqSpool::finish`]: memory
/// stays below a chunk per partition, and the files are opened once per chunk,
/// not once per change of partition.
pub struct DlqSpool {
    dir: PathBuf,
    pending: BTreeMap<u32, Vec<u8>>,
}

/// Bytes of a partition's dead letters gathered before they are appended to
/// its spool file.
pub const SPOOL_CHUNK: usize = 32 << 10;

impl DlqSpool {
    /// A spool writing into `dir` (the replay's output directory).
    pub fn new(dir: &Path) -> Self {
        DlqSpool {
            dir: dir.to_path_buf(),
            pending: BTreeMap::new(),
        }
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends the dead letters of one message, taken out of `records`, in
    /// record-index order (a stable sort: ties keep the order they came in).
    pub fn append(&mut self, records: &mut Vec<DlqRecord>) -> std::io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        records.sort_by_key(|r| (r.partition, r.offset, r.record_index));
        for r in records.drain(..) {
            let buf = self.pending.entry(r.partition).or_default();
            serde_json::to_writer(&mut *buf, &r)?;
            buf.push(b'\n');
            if buf.len() >= SPOOL_CHUNK {
                append_to(&dlq_part_path(&self.dir, r.partition), buf)?;
            }
        }
        Ok(())
    }

    /// Appends every partition's gathered dead letters to its spool file.
    pub fn finish(&mut self) -> std::io::Result<()> {
        for (p, buf) in &mut self.pending {
            if !buf.is_empty() {
                append_to(&dlq_part_path(&self.dir, *p), buf)?;
            }
        }
        self.pending.clear();
        Ok(())
    }
}

/// Appends `buf` to the file at `path` (created if missing) and empties it.
fn append_to(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(buf)?;
    buf.clear();
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(partition: u32, offset: u64, index: Option<u32>, reason: &str) -> DlqRecord {
        DlqRecord {
            source: format!("p{partition}"),
            partition,
            offset,
            record_index: index,
            reason: reason.into(),
            detail: String::new(),
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn spooled_dead_letters_merge_in_partition_offset_index_order() {
        let dir = std::env::temp_dir().join(format!("causeway-dlq-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A stale spool file of a killed replay goes when a replay starts.
        std::fs::write(dlq_part_path(&dir, 7), "stale\n").unwrap();
        let mut o = FileOutputs::create(&dir).unwrap();
        assert!(!dir.join("dlq.jsonl.7.partial").exists());

        // Two workers; partitions read in turns, each message's dead letters
        // out of record-index order (ties keep their order).
        let mut w0 = DlqSpool::new(&dir);
        let mut w1 = DlqSpool::new(&dir);
        let m = |w: &mut DlqSpool, mut v: Vec<DlqRecord>| w.append(&mut v).unwrap();
        m(
            &mut w0,
            vec![dead(2, 1, Some(3), "late"), dead(2, 1, Some(0), "a")],
        );
        m(&mut w1, vec![dead(1, 5, None, "m")]);
        m(
            &mut w0,
            vec![dead(0, 4, Some(1), "late"), dead(0, 4, Some(1), "b")],
        );
        m(&mut w0, vec![dead(2, 2, None, "m")]);
        m(&mut w0, vec![dead(0, 9, None, "m")]);
        w0.finish().unwrap();
        w1.finish().unwrap();
        o.finish().unwrap();
        o.merge_dlq(3).unwrap();
        let got: Vec<(u32, u64, Option<u32>, String)> =
            std::fs::read_to_string(partial_path(&dir, "dlq.jsonl"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<DlqRecord>(l).unwrap())
                .map(|r| (r.partition, r.offset, r.record_index, r.reason))
                .collect();
        let want = [
            (0, 4, Some(1), "late"),
            (0, 4, Some(1), "b"),
            (0, 9, None, "m"),
            (1, 5, None, "m"),
            (2, 1, Some(0), "a"),
            (2, 1, Some(3), "late"),
            (2, 2, None, "m"),
        ]
        .map(|(p, o, i, r)| (p, o, i, r.to_string()));
        assert_eq!(got, want);
        assert!(
            !names(&dir).iter().any(|n| is_dlq_part(n)),
            "{:?}",
            names(&dir)
        );

        // A replay that fails after spooling leaves no spool file.
        let mut w = DlqSpool::new(&dir);
        m(&mut w, vec![dead(0, 1, None, "m")]);
        w.finish().unwrap();
        drop(o);
        assert!(names(&dir).is_empty(), "{:?}", names(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
