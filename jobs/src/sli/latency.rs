//! R2 `latency`: the durations of entry spans, in microseconds, which the
//! finalizer folds into an HDR histogram per service/environment/version/window.

use crate::correlate::SpanRec;

/// The duration of `s` when it is an entry span.
pub fn duration_us(s: &SpanRec) -> Option<u64> {
    s.is_entry().then(|| s.duration_us())
}
