//! The service graph: an edge for every parent→child pair of spans in different
//! services (the parent must resolve, as in M4), counted in the child's window;
//! failed when either span has status `ERROR`.

use crate::correlate::SpanRec;
use crate::intern::Res;

/// The edge `(client, server, failed)` of `s` and its resolved parent, if any.
pub fn edge(s: &SpanRec, parent: Option<&SpanRec>) -> Option<(Res, Res, bool)> {
    parent
        .filter(|p| p.res.service != s.res.service)
        .map(|p| (p.res, s.res, p.is_error() || s.is_error()))
}
