//! R2 `latency`: the durations of entry spans, in microseconds, folded into an
//! HDR histogram (3 significant digits) per service/environment/version/window.
//!
//! Each worker ships its durations as sorted (duration, count) runs; the merge
//! ([`summarize`]) computes the record's figures and histogram from the runs
//! directly, exactly as an hdrhistogram fed every duration gives them, without
//! building the histogram's dense counts array (tens of thousands of buckets
//! for durations of seconds, almost all empty).

use hdrhistogram::Histogram;

use crate::correlate::SpanRec;

/// The duration of `s` when it is an entry span.
pub fn duration_us(s: &SpanRec) -> Option<u64> {
    s.is_entry().then(|| s.duration_us())
}

/// Durations as ascending (duration, count) runs.
pub fn runs(mut durations: Vec<u64>) -> Vec<(u64, u64)> {
    durations.sort_unstable();
    durations
        .chunk_by(|a, b| a == b)
        .map(|run| (run[0], run.len() as u64))
        .collect()
}

/// One histogram (µs, 3 significant digits, auto-resizing) from the runs of
/// several workers (any order): what [`summarize`] computes without building it
/// (its tests check the two agree).
///
/// A histogram's state does not depend on the order values are recorded in
/// once it has its final size, so the runs are recorded as they come (each
/// worker's are sorted, and sorting the concatenation cost more than all of
/// the recording).
pub fn merge(runs: Vec<(u64, u64)>) -> Option<Histogram<u64>> {
    let mut hist = Histogram::<u64>::new(3).ok()?;
    // Grow to the final range once: recording the largest value with count 0
    // resizes exactly as recording it would.
    if let Some(max) = runs.iter().map(|(d, _)| *d).max() {
        hist.record_n(max, 0).ok()?;
    }
    for (d, n) in runs {
        hist.record_n(d, n).ok()?;
    }
    Some(hist)
}

/// The figures of a `latency` record: what `merge(runs)` gives as `len()`,
/// `value_at_quantile` of 0.5, 0.9 and 0.99, and [`encode_histogram`]'s text.
///
/// [`encode_histogram`]: crate::operators::finalize::encode_histogram
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Number of durations.
    pub total: u64,
    /// p50, p90, p99 (µs, the highest value equivalent to the quantile's bucket).
    pub quantiles: [u64; 3],
    /// The histogram, hdrhistogram V2 serialization, base64.
    pub histogram: String,
}

/// hdrhistogram's bucket layout for 3 significant digits and lowest value 1:
/// 2048 sub-buckets, the lower half of each bucket above the first unused.
pub(crate) mod layout {
    pub const HALF_COUNT_MAGNITUDE: u32 = 10;
    pub const HALF_COUNT: u64 = 1 << HALF_COUNT_MAGNITUDE;
    const SUB_BUCKET_MASK: u64 = 2 * HALF_COUNT - 1;
    const LEADING_ZERO_COUNT_BASE: u32 = 64 - (HALF_COUNT_MAGNITUDE + 1);

    fn bucket(v: u64) -> u32 {
        LEADING_ZERO_COUNT_BASE - (v | SUB_BUCKET_MASK).leading_zeros()
    }

    /// `Histogram::index_for`.
    pub fn index(v: u64) -> u64 {
        let b = bucket(v);
        ((u64::from(b) + 1) << HALF_COUNT_MAGNITUDE) + (v >> b) - HALF_COUNT
    }

    /// `Histogram::value_for`.
    pub fn value(index: u64) -> u64 {
        let b = (index >> HALF_COUNT_MAGNITUDE) as i64 - 1;
        let sub = (index & (HALF_COUNT - 1)) + HALF_COUNT;
        if b < 0 {
            sub - HALF_COUNT
        } else {
            sub << b
        }
    }

    /// `Histogram::highest_equivalent`.
    pub fn highest_equivalent(v: u64) -> u64 {
        if v == u64::MAX {
            return u64::MAX;
        }
        let b = bucket(v);
        ((v >> b) << b).saturating_add(1 << b) - 1
    }

    /// The counts array length of a histogram resized to hold `v`
    /// (`num_bins(buckets_to_cover(v))`).
    pub fn len_to_cover(v: u64) -> u64 {
        let mut untrackable = 2 * HALF_COUNT;
        let mut buckets = 1;
        while untrackable <= v {
            if untrackable > u64::MAX / 2 {
                buckets += 1;
                break;
            }
            untrackable <<= 1;
            buckets += 1;
        }
        (buckets + 1) * HALF_COUNT
    }
}

/// [`Summary`] of the runs of several workers (any order); `None` when they
/// hold no duration (as `merge` gives an empty histogram).
pub fn summarize(runs: Vec<(u64, u64)>) -> Option<Summary> {
    use base64::Engine;
    // Counts by bucket index, ascending. Each worker's runs are sorted, and a
    // stable sort merges sorted runs in linear time.
    let mut counts: Vec<(u64, u64)> = runs
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(d, n)| (layout::index(d), n))
        .collect();
    counts.sort_by_key(|(i, _)| *i);
    counts.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 = kept.1.saturating_add(later.1);
        }
        same
    });
    let total = counts.iter().fold(0u64, |t, (_, n)| t.saturating_add(*n));
    let &(last, _) = counts.last()?;
    if total == 0 {
        return None;
    }
    let mut quantiles = [0u64; 3];
    for (q, out) in [0.5f64, 0.9, 0.99].into_iter().zip(quantiles.iter_mut()) {
        let target = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, n) in &counts {
            seen += n;
            if seen >= target {
                *out = layout::highest_equivalent(layout::value(*i));
                break;
            }
        }
    }
    // The largest duration's index is `last`, and recording it first (with
    // count 0) sized the histogram: a value within the initial 2048 slots
    // leaves the highest trackable value at its initial 2.
    let largest_len = layout::len_to_cover(layout::value(last));
    let highest = if last < 2 * layout::HALF_COUNT {
        2
    } else {
        layout::highest_equivalent(layout::value(largest_len - 1))
    };
    let mut buf = Vec::with_capacity(40 + 2 * counts.len() + 8);
    buf.extend_from_slice(&(0x1c84_9303u32 | 0x10).to_be_bytes());
    buf.extend_from_slice(&0u32.to_be_bytes()); // payload length, set below
    buf.extend_from_slice(&0u32.to_be_bytes()); // normalizing offset
    buf.extend_from_slice(&3u32.to_be_bytes()); // significant digits
    buf.extend_from_slice(&1u64.to_be_bytes()); // lowest discernible value
    buf.extend_from_slice(&highest.to_be_bytes());
    buf.extend_from_slice(&1.0f64.to_bits().to_be_bytes()); // integer to double ratio
                                                            // Counts up to the largest value's index: a zero alone as count 0, a run
                                                            // of zeros as its negated length; zig-zag varints.
    let mut next = 0u64;
    for (i, n) in &counts {
        match i - next {
            0 => {}
            1 => varint(&mut buf, 0),
            gap => varint(&mut buf, zig_zag(-(gap as i64))),
        }
        varint(&mut buf, zig_zag(*n as i64));
        next = i + 1;
    }
    let len = (buf.len() - 40) as u32;
    buf[4..8].copy_from_slice(&len.to_be_bytes());
    Some(Summary {
        total,
        quantiles,
        histogram: base64::engine::general_purpose::STANDARD.encode(buf),
    })
}

fn zig_zag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

/// hdrhistogram's varint: 7 bits a byte, low first, the 9th byte all 8 bits.
fn varint(buf: &mut Vec<u8>, mut v: u64) {
    for _ in 0..8 {
        if v >> 7 == 0 {
            buf.push(v as u8);
            return;
        }
        buf.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::finalize::encode_histogram;

    /// `summarize` against hdrhistogram itself on random runs.
    #[test]
    fn summary_equals_the_histogram() {
        let mut next = crate::xorshift(11);
        let spreads = [
            1,
            5,
            2047,
            2048,
            2049,
            70_000,
            40_000_000,
            1 << 40,
            u64::MAX,
        ];
        for case in 0..600 {
            let spread = spreads[case % spreads.len()];
            let workers = 1 + case % 3;
            let mut runs = Vec::new();
            for _ in 0..workers {
                let mut durations: Vec<u64> = (0..next() % 400)
                    .map(|_| match next() % 10 {
                        0 => spread,
                        1 => 0,
                        _ => next() % spread.max(1),
                    })
                    .collect();
                if case % 11 == 0 {
                    durations.push(u64::MAX);
                }
                runs.extend(super::runs(durations));
            }
            let expected = merge(runs.clone())
                .filter(|h| !h.is_empty())
                .map(|h| Summary {
                    total: h.len(),
                    quantiles: [
                        h.value_at_quantile(0.5),
                        h.value_at_quantile(0.9),
                        h.value_at_quantile(0.99),
                    ],
                    histogram: encode_histogram(&h),
                });
            assert_eq!(summarize(runs), expected, "case {case}");
        }
        assert_eq!(summarize(Vec::new()), None);
        assert_eq!(summarize(vec![(5, 0)]), None);
    }
}
