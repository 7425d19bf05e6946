//! What each fuzz target checks, as plain functions of the input bytes.
//!
//! `fuzz_targets/*.rs` call these under libFuzzer (`cargo fuzz run TARGET`);
//! `tests/tests/fuzz_regressions.rs` includes this file and calls them on every
//! committed corpus and crash file under `cargo test --workspace`, so a crash
//! found once stays a regression test. Besides "does not panic", each checks
//! the decoder's contract on whatever it returns:
//!
//! - OTLP protobuf: the message fails as a whole (one `malformed_protobuf`
//!   rejection without a record index) exactly when prost fails to decode it
//!   into the `proto` structs, and otherwise yields one record or rejection per
//!   span / log record prost sees, with record indexes inside that range.
//!   The compact decoding through a resource memo (`decode_*_batch_with`), on
//!   a miss and then on a hit, gives what it gives without one.
//! - OTLP JSON: a whole-message rejection is a lone `malformed_json`; record
//!   rejections have distinct indexes.
//! - CDEvents and audit records: the decoder returns (never panics), and a
//!   rejection of a whole message has no record index.
//! - Delimited framing: the reader ends, every frame's bytes are accounted for
//!   (prefixes + payloads = input length, or it stops at the one framing error),
//!   and writing the frames back gives the input (up to that error).
//! - Config: the parser returns (on TOML text and `CAUSEWAY__` environment
//!   overrides), and an accepted config also resolves its settings.

use causeway::config::Config;
use causeway::sources::file::{write_delimited, DelimitedReader};
use causeway::sources::PartitionReader;
use causeway_schemas::otlp::{self, proto};
use causeway_schemas::reject::Reason;
use causeway_schemas::{
    audit, cdevents, Declined, DecodeOptions, Decoded, Encoding, Origin, Rejection,
};
use prost::Message as _;

/// 2026-11-26T00:00:00Z: a fixed "now", so that future-timestamp checks do not
/// depend on the wall clock.
pub const NOW_NS: u64 = 1_795_651_200 * 1_000_000_000;

fn opts() -> DecodeOptions {
    DecodeOptions {
        now_ns: NOW_NS,
        ..Default::default()
    }
}

fn origin() -> Origin {
    Origin {
        partition: 0,
        offset: 7,
        index: 0,
    }
}

/// Checks a decoded OTLP message against the number of records prost found
/// (`None`: prost could not decode it).
fn check_otlp<T>(d: &Decoded<T>, whole: Reason, prost_records: Option<usize>) {
    let message_level: Vec<&Rejection> = d.rejects.iter().filter(|r| r.index.is_none()).collect();
    if !message_level.is_empty() {
        assert!(d.records.is_empty(), "a failed message yielded records");
        assert_eq!(d.rejects.len(), 1, "a failed message has one rejection");
        assert_eq!(message_level[0].reason, whole, "{:?}", message_level[0]);
    }
    let mut idx: Vec<u32> = d.rejects.iter().filter_map(|r| r.index).collect();
    let n = idx.len();
    idx.sort_unstable();
    idx.dedup();
    assert_eq!(
        idx.len(),
        n,
        "two rejections of one record: {:?}",
        d.rejects
    );
    if let Some(count) = prost_records {
        assert!(
            message_level.is_empty(),
            "prost decodes it, the walker rejects it: {:?}",
            d.rejects
        );
        assert_eq!(d.records.len() + d.rejects.len(), count);
        assert!(idx.iter().all(|&i| (i as usize) < count));
    } else if whole == Reason::MalformedProtobuf {
        assert_eq!(
            message_level.len(),
            1,
            "prost rejects it, the walker does not: {:?}",
            d.rejects
        );
    }
}

/// `otlp_spans`, OTLP protobuf.
pub fn otlp_traces_proto(data: &[u8]) {
    let d = otlp::decode_traces(data, Encoding::OtlpProto, &opts());
    let prost = proto::TracesData::decode(data).ok().map(|t| {
        t.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    });
    check_otlp(&d, Reason::MalformedProtobuf, prost);
    let plain = otlp::decode_span_batch(data, &opts());
    let mut memo = otlp::ResourceMemo::<()>::new();
    for _ in 0..2 {
        let got = otlp::decode_span_batch_with(data, &opts(), &mut memo);
        assert_eq!(got.spans, plain.spans, "spans through a memo");
        assert_eq!(got.rejects, plain.rejects, "rejections through a memo");
        assert_eq!(strings(&got.resources), strings(&plain.resources));
    }
}

/// The strings of a batch's resources.
fn strings<'a>(resources: &[otlp::ResourceRef<'a>]) -> Vec<[&'a [u8]; 3]> {
    resources.iter().map(|r| r.as_bytes()).collect()
}

/// `otlp_logs`, OTLP protobuf.
pub fn otlp_logs_proto(data: &[u8]) {
    let d = otlp::decode_logs(data, Encoding::OtlpProto, origin(), &opts());
    let prost = proto::LogsData::decode(data).ok().map(|t| {
        t.resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum()
    });
    check_otlp(&d, Reason::MalformedProtobuf, prost);
    for l in &d.records {
        assert_eq!(l.origin.partition, 0);
        assert_eq!(l.origin.offset, 7);
    }
    let plain = otlp::decode_log_batch(data, &opts());
    let mut memo = otlp::ResourceMemo::<()>::new();
    for _ in 0..2 {
        let got = otlp::decode_log_batch_with(data, &opts(), &mut memo);
        assert_eq!(got.logs, plain.logs, "log records through a memo");
        assert_eq!(got.rejects, plain.rejects, "rejections through a memo");
        assert_eq!(strings(&got.resources), strings(&plain.resources));
    }
}

/// `otlp_spans`, OTLP JSON.
pub fn otlp_traces_json(data: &[u8]) {
    let d = otlp::decode_traces(data, Encoding::OtlpJson, &opts());
    check_otlp(&d, Reason::MalformedJson, None);
}

/// `otlp_logs`, OTLP JSON.
pub fn otlp_logs_json(data: &[u8]) {
    let d = otlp::decode_logs(data, Encoding::OtlpJson, origin(), &opts());
    check_otlp(&d, Reason::MalformedJson, None);
}

/// The traceparent header a target passes: the first line of the input when
/// it looks like one, so the fuzzer reaches the header paths too.
fn header(data: &[u8]) -> Option<&str> {
    let line = data.split(|&b| b == b'\n').next()?;
    std::str::from_utf8(line)
        .ok()
        .filter(|l| l.starts_with("00-"))
}

/// `deploys`, CDEvents JSON.
pub fn cdevents(data: &[u8]) {
    let opts = opts();
    for tp in [None, header(data)] {
        match cdevents::decode_deploy(data, origin(), tp, &opts) {
            Ok(d) => assert!(!d.service.is_empty(), "a deploy without a service"),
            Err(Declined::Rejected(r)) => assert!(r.index.is_none(), "{r:?}"),
            Err(Declined::Skipped(_)) => {}
        }
    }
}

/// `audit`, Kubernetes audit events and Causeway's audit record.
pub fn audit(data: &[u8]) {
    let opts = opts();
    for tp in [None, header(data)] {
        match audit::decode_audit(data, origin(), tp, &opts) {
            Ok(a) => assert!(
                !a.resource.service.is_empty(),
                "an audit record without a service"
            ),
            Err(Declined::Rejected(r)) => assert!(r.index.is_none(), "{r:?}"),
            Err(Declined::Skipped(_)) => {}
        }
    }
}

/// `.pb` files: `writeDelimitedTo` framing.
pub fn delimited(data: &[u8]) {
    let mut r = DelimitedReader::new(data);
    let mut rewritten = Vec::new();
    let mut frames = 0usize;
    let mut failed = false;
    while let Some(m) = r.next_message().expect("reading a slice cannot fail") {
        frames += 1;
        assert!(frames <= data.len() + 1, "more frames than bytes");
        if m.framing_error.is_some() {
            failed = true;
            assert!(
                r.next_message().unwrap().is_none(),
                "the reader goes on after a framing error"
            );
            break;
        }
        write_delimited(&mut rewritten, &m.payload).unwrap();
    }
    if !failed {
        assert_eq!(r.position(), data.len() as u64);
        // A varint with redundant continuation bytes (`0x80 0x00`) frames the
        // same payload in more bytes, so compare payloads, not bytes.
        let mut again = DelimitedReader::new(rewritten.as_slice());
        let mut n = 0;
        while let Some(m) = again.next_message().unwrap() {
            assert!(m.framing_error.is_none());
            n += 1;
        }
        assert_eq!(n, frames);
    }
}

/// The config parser: the input up to its first NUL byte is the TOML text, and
/// each line after it a `KEY=VALUE` environment override (`CAUSEWAY__…`).
pub fn config(data: &[u8]) {
    let (text, env) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Ok(c) = Config::from_toml(text, env.into_iter()) {
        c.settings()
            .expect("an accepted config resolves its settings");
    }
}

/// A target's checks.
pub type Check = fn(&[u8]);

/// Every target by name, for the regression test.
pub const TARGETS: [(&str, Check); 8] = [
    ("otlp_traces_proto", otlp_traces_proto),
    ("otlp_traces_json", otlp_traces_json),
    ("otlp_logs_proto", otlp_logs_proto),
    ("otlp_logs_json", otlp_logs_json),
    ("cdevents", cdevents),
    ("audit", audit),
    ("delimited", delimited),
    ("config", config),
];
