//! The `causeway demo` story (`causeway::demo`), written as replay inputs and
//! replayed: the bad deploy pages with its actor and version, context loss rises
//! for the async service inside its window, PII, late and malformed messages are
//! counted as an independent decoding of the input files says they should be, and
//! the story is deterministic.
//!
//! The expectations are recomputed here from the input files (protobuf decoded
//! with prost, lateness by SPEC §2's per-partition rule, PII by a detector of its
//! own), never taken from the pipeline's output.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use causeway::commands::replay::{replay, ReplayOptions, Summary};
use causeway::demo::{Counts, Story, StoryConfig, Timeline};
use causeway::sources::file::DelimitedReader;
use causeway::sources::{PartitionReader, Topic};
use causeway_schemas::otlp::proto::{
    any_value::Value, AnyValue, KeyValue, LogsData, Resource, TracesData,
};
use causeway_schemas::records::{AlertRecord, DlqRecord, SliRecord};
use causeway_schemas::time::parse_rfc3339;
use causeway_schemas::Reason;
use causeway_tests::reference::read_jsonl;
use prost::Message;

const NS: u64 = 1_000_000_000;
const MIN: u64 = 60 * NS;

/// 105 minutes at two requests a second (the pages resolve about 30 minutes
/// after the rollback at 65, when the 30-minute window of the default policy's
/// second page row has cleared); context loss from 10 to 25 minutes, so that it
/// does not overlap the incident (35 to 65 minutes).
fn config() -> StoryConfig {
    StoryConfig {
        seed: 11,
        duration: Duration::from_secs(105 * 60),
        traces_per_second: 2.0,
        context_loss_from: Duration::from_secs(10 * 60),
        context_loss_until: Duration::from_secs(25 * 60),
        ..StoryConfig::default()
    }
}

struct Run {
    input: PathBuf,
    out: PathBuf,
    counts: Counts,
    timeline: Timeline,
    summary: Summary,
    decoded: Decoded,
}

/// The story written and replayed once for all the tests of this file.
fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("causeway-demo-story-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (input, out) = (root.join("input"), root.join("out"));
        let cfg = config();
        let counts = Story::write_replay_inputs(&cfg, &input).unwrap();
        let story = Story::new(cfg);
        let config = root.join("causeway.toml");
        std::fs::write(&config, story.config_toml()).unwrap();
        let summary = replay(&ReplayOptions {
            input: input.clone(),
            out: out.clone(),
            config: Some(config.clone()),
            workers: 2,
            progress: false,
        })
        .unwrap();
        let lateness = causeway::config::Config::load(Some(&config))
            .and_then(|c| c.settings())
            .unwrap()
            .allowed_lateness_ns;
        let decoded = decode_inputs(&input, lateness);
        Run {
            input,
            out,
            counts,
            timeline: story.timeline().clone(),
            summary,
            decoded,
        }
    })
}

/// A span admitted into the windows (well-formed, valid ids, not late).
struct SpanSeen {
    service: String,
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
    start: u64,
    error: bool,
}

/// What the input files hold, by this test's own decoding.
#[derive(Default)]
struct Decoded {
    spans: Vec<SpanSeen>,
    /// (service, record start) of admitted spans and log records that carry PII.
    pii: Vec<(String, u64)>,
    /// The PII values found (attribute values and bodies).
    pii_values: BTreeSet<String>,
    /// Dead letters other than `late`: (file, offset, record index, reason).
    malformed: BTreeSet<(String, u64, Option<u32>, String)>,
    /// Late records per (file, offset).
    late: BTreeMap<(String, u64), u64>,
}

fn attr<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    kvs.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
}

fn service(r: &Option<Resource>) -> String {
    r.as_ref()
        .and_then(|r| attr(&r.attributes, "service.name"))
        .unwrap_or_default()
        .to_string()
}

/// An e-mail address (`local@domain.tld`), if `s` holds one.
fn email_in(s: &str) -> Option<&str> {
    let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+');
    s.match_indices('@').find_map(|(i, _)| {
        let from = s[..i].rfind(|c: char| !word(c)).map_or(0, |k| k + 1);
        let to = s[i + 1..]
            .find(|c: char| !word(c))
            .map_or(s.len(), |k| i + 1 + k);
        let (local, domain) = (&s[from..i], s[i + 1..to].trim_end_matches('.'));
        (!local.is_empty() && domain.contains('.')).then(|| &s[from..i + 1 + domain.len()])
    })
}

/// A payment card number (13 to 19 digits, grouped by single spaces or dashes,
/// passing the Luhn check), if `s` holds one.
fn card_in(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    for start in (0..b.len()).filter(|&i| digit(i) && (i == 0 || !digit(i - 1))) {
        let mut digits = Vec::new();
        let mut end = start;
        while digit(end) || (matches!(b.get(end), Some(b' ' | b'-')) && digit(end + 1)) {
            if digit(end) {
                digits.push(u32::from(b[end] - b'0'));
            }
            end += 1;
        }
        let luhn: u32 = digits
            .iter()
            .rev()
            .enumerate()
            .map(|(k, d)| {
                if k % 2 == 1 {
                    (d * 2) % 10 + d * 2 / 10
                } else {
                    *d
                }
            })
            .sum();
        if (13..=19).contains(&digits.len()) && luhn.is_multiple_of(10) {
            return Some(&s[start..end]);
        }
    }
    None
}

/// Whether an attribute value or the body holds PII; adds what matched to `found`.
fn pii_in(kvs: &[KeyValue], body: Option<&AnyValue>, found: &mut BTreeSet<String>) -> bool {
    let mut any = false;
    let strs = kvs
        .iter()
        .filter_map(|kv| kv.value.as_ref())
        .chain(body)
        .filter_map(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        });
    for s in strs {
        for m in [email_in(s), card_in(s)].into_iter().flatten() {
            found.insert(m.to_string());
            any = true;
        }
    }
    any
}

/// Decodes every `.pb` input file as `replay` numbers them (file ordinal =
/// partition, message ordinal = offset) and applies SPEC §2's lateness rule per
/// partition: a record is late when its time is below the newest admitted time
/// of the earlier messages of its partition minus `allowed_lateness`.
fn decode_inputs(dir: &Path, lateness: u64) -> Decoded {
    let mut d = Decoded::default();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names.iter().filter(|n| n.ends_with(".pb")) {
        let spans = name.starts_with("otlp_spans");
        let mut reader = DelimitedReader::new(std::fs::File::open(dir.join(name)).unwrap());
        let mut newest: Option<u64> = None;
        while let Some(msg) = reader.next_message().unwrap() {
            assert!(msg.framing_error.is_none(), "{name}: framing");
            let watermark = newest.map(|n| n.saturating_sub(lateness));
            let late = |t: u64| watermark.is_some_and(|w| t < w);
            let mut admitted_max = newest;
            let mut late_here = 0;
            let mut admit = |t: u64| {
                if late(t) {
                    late_here += 1;
                    false
                } else {
                    admitted_max = admitted_max.max(Some(t));
                    true
                }
            };
            if spans {
                let Ok(data) = TracesData::decode(msg.payload.as_slice()) else {
                    d.malformed.insert((
                        name.clone(),
                        msg.offset,
                        None,
                        "malformed_protobuf".into(),
                    ));
                    continue;
                };
                let mut index = 0u32;
                for rs in &data.resource_spans {
                    let svc = service(&rs.resource);
                    for s in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                        if s.trace_id.len() != 16 {
                            d.malformed.insert((
                                name.clone(),
                                msg.offset,
                                Some(index),
                                "invalid_trace_id".into(),
                            ));
                        } else if admit(s.start_time_unix_nano) {
                            if pii_in(&s.attributes, None, &mut d.pii_values) {
                                d.pii.push((svc.clone(), s.start_time_unix_nano));
                            }
                            d.spans.push(SpanSeen {
                                service: svc.clone(),
                                trace: s.trace_id.clone(),
                                id: s.span_id.clone(),
                                parent: s.parent_span_id.clone(),
                                start: s.start_time_unix_nano,
                                error: s.status.as_ref().is_some_and(|st| st.code == 2),
                            });
                        }
                        index += 1;
                    }
                }
            } else {
                let Ok(data) = LogsData::decode(msg.payload.as_slice()) else {
                    d.malformed.insert((
                        name.clone(),
                        msg.offset,
                        None,
                        "malformed_protobuf".into(),
                    ));
                    continue;
                };
                for rl in &data.resource_logs {
                    let svc = service(&rl.resource);
                    for l in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
                        if admit(l.time_unix_nano)
                            && pii_in(&l.attributes, l.body.as_ref(), &mut d.pii_values)
                        {
                            d.pii.push((svc.clone(), l.time_unix_nano));
                        }
                    }
                }
            }
            if late_here > 0 {
                d.late.insert((name.clone(), msg.offset), late_here);
            }
            newest = admitted_max;
        }
    }
    d
}

fn secs(s: &str) -> u64 {
    parse_rfc3339(s).unwrap() / NS
}

#[test]
fn the_bad_deploy_pages_with_its_actor_and_version() {
    let r = run();
    let tl = &r.timeline;
    let alerts: Vec<AlertRecord> = read_jsonl(&r.out.join("alerts.jsonl"));
    let deploy = tl.bad_deploy().expect("the bad deploy is in the story");
    let errors: HashSet<String> = r
        .decoded
        .spans
        .iter()
        .filter(|s| s.error)
        .map(|s| s.trace.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let pages = |service: &str, status: &str| -> Vec<&AlertRecord> {
        alerts
            .iter()
            .filter(|a| {
                a.label("service") == service && a.label("severity") == "page" && a.status == status
            })
            .collect()
    };
    for service in [tl.culprit.as_str(), "gateway"] {
        let firing = pages(service, "firing");
        assert_eq!(firing.len(), 1, "{service}: {alerts:#?}");
        let a = firing[0];
        assert_eq!(a.culprit, tl.culprit, "{service}");
        let fired = secs(&a.starts_at);
        assert!(
            fired > deploy.at_ns / NS && fired <= deploy.at_ns / NS + 15 * 60,
            "{service} paged at {} for a deploy at {}",
            a.starts_at,
            deploy.at_ns / NS
        );
        let suspected = a
            .suspected_changes
            .iter()
            .find(|c| c.service == tl.culprit && c.version == tl.bad_version)
            .unwrap_or_else(|| panic!("{service}: the deploy is not suspected: {a:#?}"));
        assert_eq!(suspected.actor, tl.deploy_actor);
        assert_eq!(suspected.action, "deployed");
        assert_eq!(suspected.id, deploy.id);
        assert_eq!(suspected.artifact, deploy.artifact);
        assert!(!a.exemplar_trace_ids.is_empty());
        for t in &a.exemplar_trace_ids {
            assert!(
                errors.contains(t),
                "{service}: exemplar {t} holds no ERROR span"
            );
        }
        let resolved = pages(service, "resolved");
        assert_eq!(resolved.len(), 1, "{service} did not resolve: {alerts:#?}");
        let ended = secs(resolved[0].ends_at.as_deref().unwrap());
        assert!(
            ended > tl.rollback_ns / NS,
            "{service} resolved before the rollback"
        );
    }
    // The innocent search deploy is suspected by the gateway (search is
    // downstream of it), never by checkout.
    let co = pages(&tl.culprit, "firing")[0];
    assert!(co.suspected_changes.iter().all(|c| c.service == tl.culprit));
    // Nothing else pages.
    for a in &alerts {
        let s = a.label("service");
        assert!(
            s == tl.culprit || s == "gateway",
            "unexpected alert: {a:#?}"
        );
    }
}

/// (bad, total) per service of an SLI, summed over the windows that start in `[from, until)`.
fn sums(sli: &[SliRecord], name: &str, from: u64, until: u64) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in sli.iter().filter(|r| r.sli == name) {
        let start = r.window_start * NS;
        if start < from || start >= until {
            continue;
        }
        let (good, total) = (r.good.unwrap_or(0), r.total.unwrap_or(0));
        let e = out.entry(r.service.clone()).or_default();
        e.0 += total - good;
        e.1 += total;
    }
    out
}

#[test]
fn context_loss_rises_inside_its_window() {
    let r = run();
    let tl = &r.timeline;
    let sli: Vec<SliRecord> = read_jsonl(&r.out.join("sli.jsonl"));
    let svc = tl.context_loss_service.as_str();
    let (from, until) = (tl.context_loss_from_ns, tl.context_loss_until_ns);
    let inside = sums(&sli, "context_loss", from, until)[svc];
    let before = sums(&sli, "context_loss", 0, from)[svc];
    let after = sums(&sli, "context_loss", until, u64::MAX)[svc];
    let rate = |(bad, total): (u64, u64)| bad as f64 / total as f64;
    assert!(inside.1 > 100 && before.1 > 100 && after.1 > 100);
    assert!(rate(inside) > 0.2, "inside {inside:?}");
    assert!(
        rate(inside) > 10.0 * rate(before).max(rate(after)),
        "inside {inside:?}, before {before:?}, after {after:?}"
    );

    // The counts are exactly the orphans of SPEC §3 M4 among the admitted spans:
    // a parent id that names no admitted span of the trace (all spans of a
    // trace start within seconds of each other, well inside the horizon).
    let ids: HashSet<(&[u8], &[u8])> = r
        .decoded
        .spans
        .iter()
        .map(|s| (s.trace.as_slice(), s.id.as_slice()))
        .collect();
    let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in &r.decoded.spans {
        let orphan = !s.parent.iter().all(|b| *b == 0)
            && !ids.contains(&(s.trace.as_slice(), s.parent.as_slice()));
        let e = want.entry(s.service.clone()).or_default();
        e.0 += u64::from(orphan);
        e.1 += 1;
    }
    assert_eq!(sums(&sli, "context_loss", 0, u64::MAX), want);
    // Inside the window, the async service's orphans are those the story made.
    let made_inside = r
        .decoded
        .spans
        .iter()
        .filter(|s| s.service == svc && (from..until).contains(&(s.start / MIN * MIN)))
        .filter(|s| {
            !s.parent.is_empty() && !ids.contains(&(s.trace.as_slice(), s.parent.as_slice()))
        })
        .count() as u64;
    assert_eq!(inside.0, made_inside);
}

#[test]
fn pii_exposure_counts_the_records_with_pii() {
    let r = run();
    let sli: Vec<SliRecord> = read_jsonl(&r.out.join("sli.jsonl"));
    let got = sums(&sli, "sensitive_exposure", 0, u64::MAX);
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (svc, _) in &r.decoded.pii {
        *want.entry(svc.clone()).or_default() += 1;
    }
    let bad: BTreeMap<String, u64> = got
        .iter()
        .filter(|(_, (b, _))| *b > 0)
        .map(|(s, (b, _))| (s.clone(), *b))
        .collect();
    assert!(!want.is_empty());
    // Both e-mail addresses and card numbers.
    let values = &r.decoded.pii_values;
    assert!(values.iter().any(|v| v.contains('@')) && values.iter().any(|v| !v.contains('@')));
    assert_eq!(bad, want);
    assert_eq!(r.counts.pii_records, r.decoded.pii.len() as u64);
    // The matched values are never written anywhere.
    for e in std::fs::read_dir(&r.out).unwrap() {
        let path = e.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        for v in &r.decoded.pii_values {
            assert!(
                !text.contains(v.as_str()),
                "{} holds a PII value",
                path.display()
            );
        }
    }
}

#[test]
fn dlq_holds_the_malformed_and_the_late() {
    let r = run();
    let dlq: Vec<DlqRecord> = read_jsonl(&r.out.join("dlq.jsonl"));
    let malformed: BTreeSet<(String, u64, Option<u32>, String)> = dlq
        .iter()
        .filter(|d| d.reason != "late")
        .map(|d| (d.source.clone(), d.offset, d.record_index, d.reason.clone()))
        .collect();
    assert!(!r.decoded.malformed.is_empty());
    assert_eq!(malformed, r.decoded.malformed);
    assert_eq!(
        r.decoded.malformed.len() as u64,
        r.counts.truncated_messages + r.counts.bad_trace_id_spans
    );
    let mut late: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for d in dlq.iter().filter(|d| d.reason == "late") {
        *late.entry((d.source.clone(), d.offset)).or_default() += 1;
    }
    assert!(!late.is_empty());
    assert_eq!(late, r.decoded.late);
    // Every record of the messages the story delayed is late.
    let late_records: u64 = late.values().sum();
    assert_eq!(late_records, r.counts.late_records);
    let reported: u64 = r
        .summary
        .stats
        .rejected
        .iter()
        .filter(|((_, reason), _)| *reason == Reason::Late)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(reported, late_records);
    // Deploy and audit events are all accepted.
    assert_eq!(r.summary.stats.accepted.get(&Topic::Deploys), Some(&3));
    assert_eq!(r.summary.stats.accepted.get(&Topic::Audit), Some(&3));
}

/// Every file of `dir` by name.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_story_is_deterministic() {
    let r = run();
    let again = r.input.with_file_name("again");
    let counts = Story::write_replay_inputs(&config(), &again).unwrap();
    let (first, second) = (files(&r.input), files(&again));
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &first {
        assert!(*bytes == second[name], "{name} differs between two writes");
    }
    assert_eq!(counts, r.counts);

    // The files hold, per topic and partition, what `advance` yields, in its
    // order, whatever the steps it is called with.
    let mut story = Story::new(config());
    let end = story.end_ns();
    let mut t = config().start_ns;
    let mut rebuilt: HashMap<String, Vec<u8>> = HashMap::new();
    let mut step = 0u64;
    while t < end {
        step = (step * 7 + 13) % 97 + 1;
        t += step * NS / 3;
        for m in story.advance(t) {
            let (ext, sep) = match m.topic {
                Topic::Spans | Topic::Logs => ("pb", false),
                _ => ("jsonl", true),
            };
            let f = rebuilt
                .entry(format!("{}-{}.{ext}", m.topic.default_name(), m.partition))
                .or_default();
            if sep {
                f.extend_from_slice(&m.payload);
                f.push(b'\n');
            } else {
                causeway::sources::file::write_delimited(f, &m.payload).unwrap();
            }
        }
    }
    assert!(story.advance(u64::MAX).is_empty());
    for (name, bytes) in &first {
        let empty = Vec::new();
        assert!(
            *bytes == *rebuilt.get(name).unwrap_or(&empty),
            "{name} differs from the advance() sequence"
        );
    }

    // Another seed tells another story.
    let other = r.input.with_file_name("other");
    Story::write_replay_inputs(
        &StoryConfig {
            seed: 12,
            ..config()
        },
        &other,
    )
    .unwrap();
    assert!(files(&other)["otlp_spans-0.pb"] != first["otlp_spans-0.pb"]);
}

/// The default story (2 hours at 8 requests a second, as `causeway demo` plays
/// it): the same pages, resolved before the end, nothing else paging, and the
/// context loss in its default window. Slow in a debug build:
/// `cargo test -p causeway-tests --test demo_story -- --ignored`.
#[test]
#[ignore]
fn the_default_story() {
    let root = std::env::temp_dir().join(format!("causeway-demo-default-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let cfg = StoryConfig::default();
    let started = std::time::Instant::now();
    let counts = Story::write_replay_inputs(&cfg, &root.join("input")).unwrap();
    eprintln!("generated in {:?}: {counts:?}", started.elapsed());
    let story = Story::new(cfg);
    std::fs::write(root.join("causeway.toml"), story.config_toml()).unwrap();
    replay(&ReplayOptions {
        input: root.join("input"),
        out: root.join("out"),
        config: Some(root.join("causeway.toml")),
        workers: 2,
        progress: false,
    })
    .unwrap();
    let tl = story.timeline();
    let alerts: Vec<AlertRecord> = read_jsonl(&root.join("out/alerts.jsonl"));
    for service in [tl.culprit.as_str(), "gateway"] {
        for status in ["firing", "resolved"] {
            let a: Vec<&AlertRecord> = alerts
                .iter()
                .filter(|a| {
                    a.label("service") == service
                        && a.label("severity") == "page"
                        && a.status == status
                })
                .collect();
            assert_eq!(a.len(), 1, "{service} {status}: {alerts:#?}");
            assert_eq!(a[0].culprit, tl.culprit);
            assert!(a[0]
                .suspected_changes
                .iter()
                .any(|c| c.version == tl.bad_version && c.actor == tl.deploy_actor));
        }
    }
    assert!(alerts
        .iter()
        .all(|a| [tl.culprit.as_str(), "gateway"].contains(&a.label("service"))));
    let sli: Vec<SliRecord> = read_jsonl(&root.join("out/sli.jsonl"));
    let svc = tl.context_loss_service.as_str();
    let rate = |(bad, total): (u64, u64)| bad as f64 / total as f64;
    let inside = sums(
        &sli,
        "context_loss",
        tl.context_loss_from_ns,
        tl.context_loss_until_ns,
    )[svc];
    let before = sums(&sli, "context_loss", 0, tl.context_loss_from_ns)[svc];
    assert!(
        rate(inside) > 0.2 && rate(before) < 0.02,
        "{inside:?} {before:?}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
