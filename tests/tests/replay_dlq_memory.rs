//! `causeway replay` of a flood of malformed input (ISSUE 12) keeps its dead
//! letters on disk, not in memory: the peak resident set of the replay stays
//! far below the size of the `dlq.jsonl` it writes, and that file is complete,
//! in (partition, offset, record index) order, with no spool file left over.
//!
//! The replay runs in this test's own process and the peak is this process's
//! VmHWM (reset just before the replay where the kernel allows it): an exact
//! high-water mark, not a sample, so the check does not depend on timing.
//! Tests of one file run as threads of one process, so this file holds this
//! one test only.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use causeway::commands::replay::{replay, ReplayOptions};
use causeway::sinks::file::OUTPUT_FILES;
use causeway_schemas::records::DlqRecord;

/// Malformed lines per input file (two files, one per worker).
const BAD_LINES: u64 = 200_000;

/// Event time of the valid span: 2026-01-01T01:00:00Z.
const T: u64 = 1_767_229_200 * 1_000_000_000;

fn kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn span(trace: &str, id: &str, t: u64) -> String {
    format!(
        r#"{{"traceId":"{trace}","spanId":"{id}","name":"op","kind":2,"startTimeUnixNano":"{t}","endTimeUnixNano":"{}","status":{{"code":0}}}}"#,
        t + 1_000_000
    )
}

fn message(spans: &[String]) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"checkout"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

/// Writes `BAD_LINES` malformed lines to `path`, after `head`. The long file
/// name makes every dead letter (which names its file) about 330 bytes.
fn write_input(path: &Path, head: &[String]) {
    let mut w = BufWriter::new(std::fs::File::create(path).unwrap());
    for l in head {
        writeln!(w, "{l}").unwrap();
    }
    for i in 0..BAD_LINES {
        // Not JSON, or JSON cut short: one dead letter per line.
        let bad = if i % 2 == 0 {
            "x"
        } else {
            "{\"resourceSpans\": ["
        };
        writeln!(w, "{bad}").unwrap();
    }
    w.flush().unwrap();
}

#[test]
fn a_flood_of_dead_letters_is_written_without_being_held_in_memory() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("causeway-dlq-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let pad = "f".repeat(200);
    let trace = "0af7651916cd43dd8448eb211c80319c";
    // Partition 0 starts with a valid span at T, then one message whose
    // dead letters are made out of record-index order: its two late spans
    // (an hour before T) are rejected as they are admitted, before the bad
    // trace id the decoder found in front of them.
    let head = [
        message(&[span(trace, "00f067aa0ba902b7", T)]),
        message(&[
            span(&"ab".repeat(24), "00f067aa0ba902c1", T),
            span(trace, "00f067aa0ba902c2", T - 3_600_000_000_000),
            span(trace, "00f067aa0ba902c3", T - 3_600_000_000_000),
        ]),
    ];
    write_input(&input.join(format!("otlp_spans_0_{pad}.jsonl")), &head);
    write_input(&input.join(format!("otlp_spans_1_{pad}.jsonl")), &[]);

    let before = kib("VmRSS:");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let out = dir.join("out");
    let summary = replay(&ReplayOptions {
        input,
        out: out.clone(),
        config: None,
        workers: 2,
        progress: false,
    })
    .unwrap();
    let peak = kib("VmHWM:");

    let dlq_bytes = std::fs::metadata(out.join("dlq.jsonl")).unwrap().len();
    let want = 2 * BAD_LINES + 3;
    assert_eq!(summary.stats.rejected_total(), want);
    eprintln!(
        "dlq.jsonl {:.1} MiB ({want} dead letters); RSS before the replay {:.1} MiB, peak {:.1} MiB (VmHWM {})",
        dlq_bytes as f64 / 1048576.0,
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        if reset { "reset before the replay" } else { "of the whole test: no clear_refs here" }
    );
    assert!(
        dlq_bytes > 120 << 20,
        "dlq.jsonl of {dlq_bytes} bytes: the flood is too small to show anything"
    );
    // Held in memory, the dead letters would take more than their JSON
    // (measured before the spool: a peak of about 2.4 times dlq.jsonl).
    assert!(
        peak * 1024 < dlq_bytes / 4,
        "peak RSS {peak} KiB for a dlq.jsonl of {dlq_bytes} bytes: dead letters are held in memory"
    );

    // Every dead letter is there once, in (partition, offset, record index) order.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut files = OUTPUT_FILES.map(String::from).to_vec();
    files.sort();
    assert_eq!(names, files, "no spool file is left behind");
    let mut n = 0u64;
    let mut last: Option<(u32, u64, Option<u32>)> = None;
    let mut crafted = Vec::new();
    for line in BufReader::new(std::fs::File::open(out.join("dlq.jsonl")).unwrap()).lines() {
        let r: DlqRecord = serde_json::from_str(&line.unwrap()).unwrap();
        let key = (r.partition, r.offset, r.record_index);
        assert!(last <= Some(key), "{last:?} before {key:?}");
        last = Some(key);
        if (r.partition, r.offset) == (0, 2) {
            crafted.push((r.record_index, r.reason.clone()));
        }
        n += 1;
    }
    assert_eq!(n, want);
    assert_eq!(
        crafted.iter().filter(|(_, r)| r == "late").count(),
        2,
        "{crafted:?}"
    );
    assert!(
        crafted.iter().any(|(_, r)| r == "invalid_trace_id"),
        "{crafted:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
