//! R2 `latency`: the durations of entry spans, in microseconds, folded into an
//! HDR histogram (3 significant digits) per service/environment/version/window.
//!
//! Each worker ships its durations as sorted (duration, count) runs; the merge
//! records them into one histogram sized once for the largest, exactly as if
//! it had been fed every duration.

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
/// several workers (any order).
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
