//! R1 `availability`: entry spans (`SERVER`, `CONSUMER`, or roots) whose status is
//! not `ERROR`.

use crate::correlate::SpanRec;

/// `None` when `s` is not an entry span, else whether it is good.
pub fn good(s: &SpanRec) -> Option<bool> {
    s.is_entry().then(|| !s.is_error())
}
