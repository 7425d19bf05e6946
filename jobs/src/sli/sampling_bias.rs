//! M10 `sampling_bias`: |error share among all request records − error share among
//! traced request records|, per service/environment/version/window. The four
//! counts are observed here; the finalizer computes the gauge when both shares
//! are defined.

use crate::correlate::LogRec;

/// Adds a request record to `[requests, error requests, traced, traced errors]`.
pub fn observe(counts: &mut [u64; 4], l: &LogRec, traced: bool) {
    counts[0] += 1;
    counts[1] += u64::from(l.error_request);
    counts[2] += u64::from(traced);
    counts[3] += u64::from(traced && l.error_request);
}
