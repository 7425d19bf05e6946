//! The PII detector (`PiiDetector::matches`, the built-in detectors only) on a
//! seeded set of typical span and log attribute values: HTTP methods, routes,
//! status codes and texts, user agents, UUIDs, trace ids, IP addresses,
//! millisecond timestamps, host names and log-ish sentences, about 1% of them
//! PII. Throughput is in values, so criterion's time per iteration divided by
//! the element count is the cost of one `matches` call. `scan_utf8` is the
//! protobuf decoder's one pass for UTF-8 and PII, `from_utf8_then_matches` the
//! two passes it replaced.

use causeway_schemas::pii::PiiDetector;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

const VALUES: usize = 2000;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];
const STATUS_TEXT: [&str; 6] = [
    "OK",
    "Not Found",
    "Internal Server Error",
    "Service Unavailable",
    "Created",
    "STATUS_CODE_OK",
];
const WORDS: [&str; 16] = [
    "request",
    "handled",
    "upstream",
    "timeout",
    "retrying",
    "connection",
    "tenant",
    "payments",
    "checkout",
    "cache",
    "miss",
    "for",
    "after",
    "ms",
    "the",
    "order",
];
const PII: [&str; 5] = [
    "alice@example.com",
    "4111 1111 1111 1111",
    "ssn 123-45-6789",
    "Bearer abcdefghijklmnop",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
];

fn hex(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

fn uuid(rng: &mut ChaCha8Rng) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        hex(rng, 8),
        hex(rng, 4),
        hex(rng, 4),
        hex(rng, 4),
        hex(rng, 12)
    )
}

fn user_agent(rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..3) {
        0 => format!(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{}.0.{}.{} Safari/537.36",
            rng.random_range(100..130),
            rng.random_range(1000..7000),
            rng.random_range(10..200)
        ),
        1 => format!(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{}.1 Safari/605.1.15",
            rng.random_range(14..18)
        ),
        _ => format!("okhttp/4.{}.{}", rng.random_range(0..12), rng.random_range(0..4)),
    }
}

fn sentence(rng: &mut ChaCha8Rng) -> String {
    let n = rng.random_range(6..20);
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        if rng.random_bool(0.15) {
            s.push_str(&rng.random_range(0..100_000u32).to_string());
        } else {
            s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        }
    }
    s
}

/// One typical attribute value, by category.
fn value(rng: &mut ChaCha8Rng, category: usize) -> String {
    match category {
        0 => METHODS[rng.random_range(0..METHODS.len())].to_string(),
        1 => format!("/api/v1/orders/{}", rng.random_range(1..1_000_000u32)),
        2 => ["200", "201", "204", "404", "500", "503"][rng.random_range(0..6)].to_string(),
        3 => STATUS_TEXT[rng.random_range(0..STATUS_TEXT.len())].to_string(),
        4 => user_agent(rng),
        5 => uuid(rng),
        6 => hex(rng, 32),
        7 => format!(
            "{}.{}.{}.{}",
            rng.random_range(1..255),
            rng.random_range(0..255),
            rng.random_range(0..255),
            rng.random_range(1..255)
        ),
        8 => rng
            .random_range(1_600_000_000_000u64..1_800_000_000_000)
            .to_string(),
        9 => format!(
            "svc-{:02}.prod.internal:{}",
            rng.random_range(0..40),
            rng.random_range(1024..9000)
        ),
        10 => sentence(rng),
        _ => PII[rng.random_range(0..PII.len())].to_string(),
    }
}

/// `VALUES` values: ~1% PII, the rest spread over the categories above with
/// short ones (method, route, status) most common.
fn mixed(seed: u64) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let weights = [18, 14, 14, 8, 8, 8, 6, 6, 4, 6, 7, 1]; // sums to 100
    (0..VALUES)
        .map(|_| {
            let mut r = rng.random_range(0..100);
            let mut c = 0;
            while r >= weights[c] {
                r -= weights[c];
                c += 1;
            }
            value(&mut rng, c)
        })
        .collect()
}

fn only(seed: u64, categories: &[usize]) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..VALUES)
        .map(|_| {
            let c = categories[rng.random_range(0..categories.len())];
            value(&mut rng, c)
        })
        .collect()
}

fn pii(c: &mut Criterion) {
    let detector = PiiDetector::default();
    let sets = [
        ("mixed", mixed(7)),
        ("short", only(8, &[0, 1, 2, 3])),
        ("ids_ips_timestamps", only(9, &[5, 6, 7, 8, 9])),
        ("user_agent", only(10, &[4])),
        ("text", only(11, &[10])),
        ("pii", only(12, &[11])),
    ];
    let mut g = c.benchmark_group("pii");
    for (name, values) in &sets {
        g.throughput(Throughput::Elements(values.len() as u64));
        g.bench_with_input(BenchmarkId::new("matches", name), values, |b, values| {
            b.iter(|| {
                values
                    .iter()
                    .filter(|v| detector.matches(black_box(v.as_str())))
                    .count()
            })
        });
        // What the protobuf decoder asks of a string value: UTF-8 and PII,
        // in one pass, against the two passes it took before.
        g.bench_with_input(BenchmarkId::new("scan_utf8", name), values, |b, values| {
            b.iter(|| {
                values
                    .iter()
                    .filter(|v| detector.scan_utf8(black_box(v.as_bytes())) == Some(true))
                    .count()
            })
        });
        g.bench_with_input(
            BenchmarkId::new("from_utf8_then_matches", name),
            values,
            |b, values| {
                b.iter(|| {
                    values
                        .iter()
                        .filter(|v| {
                            std::str::from_utf8(black_box(v.as_bytes()))
                                .is_ok_and(|s| detector.matches(s))
                        })
                        .count()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, pii);
criterion_main!(benches);
