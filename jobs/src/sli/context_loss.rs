//! M4 `context_loss`: `good` counts spans that are roots or whose parent resolves
//! (same trace, that span id, starting in `[t - horizon, t + grace]`); every other
//! span is an orphan. `context_loss_rate = (total - good) / total`.

use crate::correlate::SpanRec;

/// Whether `s` is not an orphan, given its resolved parent.
pub fn good(s: &SpanRec, parent: Option<&SpanRec>) -> bool {
    s.parent == 0 || parent.is_some()
}
