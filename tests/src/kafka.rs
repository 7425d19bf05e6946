//! Kafka test harness: the broker side lives in `causeway_benches::kafka` (the
//! broker benchmark uses it too); this adds what only the tests need.

use std::path::{Path, PathBuf};

use causeway::sources::file::list_inputs;
pub use causeway_benches::kafka::*;

/// A config file for `run` against `brokers`, with short idle and commit
/// intervals, no `/metrics` endpoint and the OTLP encoding of the files in
/// `input`; `extra` is appended and may replace `[time]` or `[metrics]`.
pub fn run_config(dir: &Path, input: &Path, brokers: &str, group: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{group}.toml"));
    let json = list_inputs(input)
        .expect("input dir")
        .iter()
        .any(|(_, _, e)| *e == causeway_schemas::Encoding::OtlpJson);
    let otlp = if json { "otlp_json" } else { "otlp_proto" };
    let mut text = format!(
        "[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"{group}\"\ncommit_interval = \"200ms\"\n\n[kafka.encodings]\nspans = \"{otlp}\"\nlogs = \"{otlp}\"\n\n"
    );
    // Defaults for the tests, unless `extra` sets the section itself.
    if !extra.contains("[time]") {
        text.push_str("[time]\nidle_timeout = \"3s\"\n\n");
    }
    if !extra.contains("[metrics]") {
        text.push_str("[metrics]\nbind = \"\"\n\n");
    }
    text.push_str(extra);
    std::fs::write(&path, text).expect("write config");
    path
}

/// Starts `causeway run --config config args...` (stdout discarded, stderr shown).
pub fn spawn_run(config: &Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new(causeway_binary())
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn causeway run")
}

/// A timely hostfile for `processes` processes on free loopback ports.
pub fn hostfile(dir: &Path, processes: usize) -> PathBuf {
    let path = dir.join("hosts");
    let lines: String = (0..processes)
        .map(|_| format!("127.0.0.1:{}\n", free_port()))
        .collect();
    std::fs::write(&path, lines).expect("write hostfile");
    path
}

/// The `causeway` binary built alongside the tests.
pub fn causeway_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("causeway");
    assert!(
        bin.exists(),
        "{} is missing; run `cargo build -p causeway` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// Asserts two record lists are equal, reporting the first difference briefly.
pub fn assert_same<T: PartialEq + std::fmt::Debug>(what: &str, got: &[T], want: &[T]) {
    let missing: Vec<&T> = want.iter().filter(|w| !got.contains(w)).collect();
    let extra: Vec<&T> = got.iter().filter(|g| !want.contains(g)).collect();
    if !missing.is_empty() || !extra.is_empty() {
        eprintln!(
            "{what}: {} missing, {} unexpected",
            missing.len(),
            extra.len()
        );
        for m in missing.iter().take(5) {
            eprintln!("  missing {m:?}");
        }
        for m in extra.iter().take(5) {
            eprintln!("  unexpected {m:?}");
        }
    }
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: record {i} differs\n got: {:?}\nwant: {:?}",
            got[i], want[i]
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} records, expected {}",
        got.len(),
        want.len()
    );
}

/// Writes alert records to `causeway_alerts` as `causeway run` does (keyed by
/// dedup key), and waits until the broker has them.
pub fn produce_alerts(brokers: &str, alerts: &[&causeway_schemas::records::AlertRecord]) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let p: ThreadedProducer<DefaultProducerContext> = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for a in alerts {
        let v = serde_json::to_vec(a).unwrap();
        p.send(
            BaseRecord::to("causeway_alerts")
                .key(&a.dedup_key)
                .payload(&v),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    p.flush(std::time::Duration::from_secs(30)).unwrap();
}

/// A record a dead letter stands for: topic, partition, offset, the record's
/// index in its message (`None`: the whole message) and the reason.
pub type DeadRecord = (String, i32, u64, Option<u32>, String);

/// The value of header `key` of `r`, as text.
pub fn header(r: &Record, key: &str) -> Option<String> {
    r.headers
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// The records the dead letters of `causeway_dlq` stand for, sorted, read
/// from their headers; `causeway.record_index` lists indices and ranges
/// (`3,17,40-42`), and `causeway.record_count` must be their number.
pub fn dead_records(letters: &[Record]) -> Vec<DeadRecord> {
    let mut out = Vec::new();
    for r in letters {
        let need = |key: &str| {
            header(r, key).unwrap_or_else(|| panic!("dead letter {} lacks {key}", r.key))
        };
        let topic = need("causeway.source.topic");
        let partition: i32 = need("causeway.source.partition").parse().unwrap();
        let offset: u64 = need("causeway.source.offset").parse().unwrap();
        let reason = need("causeway.reason");
        let Some(list) = header(r, "causeway.record_index") else {
            out.push((topic, partition, offset, None, reason));
            continue;
        };
        let mut count = 0;
        for run in list.split(',') {
            let (first, last) = match run.split_once('-') {
                Some((a, b)) => (a.parse::<u32>().unwrap(), b.parse::<u32>().unwrap()),
                None => (run.parse().unwrap(), run.parse().unwrap()),
            };
            assert!(first <= last, "dead letter {}: run {run}", r.key);
            for i in first..=last {
                out.push((topic.clone(), partition, offset, Some(i), reason.clone()));
                count += 1;
            }
        }
        assert_eq!(
            need("causeway.record_count"),
            count.to_string(),
            "dead letter {}: record count",
            r.key
        );
    }
    out.sort();
    out
}

/// What `replay`'s `dlq.jsonl` lines (`dlq`) of the files in `input` are as
/// [`DeadRecord`]s once [`produce_inputs`] has sent the files, sorted: a
/// protobuf file's message ordinal is its partition's offset, and so is a
/// text file's line number less one (for files without blank lines).
pub fn replay_dead_records(
    input: &Path,
    dlq: &[causeway_schemas::records::DlqRecord],
) -> Vec<DeadRecord> {
    let mut partition_of = std::collections::BTreeMap::new();
    for (topic, files) in layout(input) {
        for (p, path) in files.iter().enumerate() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = !name.ends_with(".pb");
            partition_of.insert(name, (topic.default_name().to_string(), p as i32, text));
        }
    }
    let mut out: Vec<DeadRecord> = dlq
        .iter()
        .map(|d| {
            let (topic, p, text) = partition_of[&d.source].clone();
            let offset = d.offset - u64::from(text);
            (topic, p, offset, d.record_index, d.reason.clone())
        })
        .collect();
    out.sort();
    out
}

/// The messages [`produce_inputs`] sends for `input`, by (topic, partition),
/// in offset order.
pub fn produced_messages(input: &Path) -> std::collections::BTreeMap<(String, i32), Vec<Vec<u8>>> {
    let mut out = std::collections::BTreeMap::new();
    input_messages(input, |(topic, p, _), m| {
        out.entry((topic.default_name().to_string(), p))
            .or_insert_with(Vec::new)
            .push(m.payload);
    });
    out
}
