//! A single-pass, zero-copy walk of the OTLP protobuf wire format.
//!
//! It reads exactly the fields of the structs in [`super::proto`] and behaves like
//! prost decoding them: unknown fields are skipped by wire type (groups included),
//! a known field with the wrong wire type is an error, the last occurrence of a
//! scalar field wins, repeated occurrences of an embedded message merge, strings
//! must be UTF-8, and nesting deeper than prost's recursion limit (100) is an
//! error. Errors carry the same text prost's `DecodeError` displays.
//!
//! Nothing is allocated per span or attribute: ids are byte slices, strings are
//! `&str` borrowed from the message, and attributes are folded into the flags the
//! validation needs ([`AttrFlags`]) as they are read.

use std::borrow::Cow;
use std::fmt;

use super::{Any, AttrFlags, ResourceAttrs};
use crate::DecodeOptions;

/// prost's `RECURSION_LIMIT`.
const RECURSION_LIMIT: u32 = 100;

/// A protobuf wire type (the low three bits of a field key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WireType {
    Varint = 0,
    SixtyFourBit = 1,
    LengthDelimited = 2,
    StartGroup = 3,
    EndGroup = 4,
    ThirtyTwoBit = 5,
}

impl WireType {
    #[inline(always)]
    fn of(key: u64) -> Option<WireType> {
        Some(match key & 7 {
            0 => WireType::Varint,
            1 => WireType::SixtyFourBit,
            2 => WireType::LengthDelimited,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::ThirtyTwoBit,
            _ => return None,
        })
    }
}

#[derive(Debug)]
enum ErrorKind {
    InvalidVarint,
    RecursionLimitReached,
    InvalidWireType(u64),
    InvalidKey(u64),
    InvalidTag,
    UnexpectedWireType {
        actual: WireType,
        expected: WireType,
    },
    BufferUnderflow,
    DelimitedLengthExceeded,
    UnexpectedEndGroupTag,
    InvalidString,
}

/// Why a message does not decode; displays like prost's `DecodeError`.
#[derive(Debug)]
pub(crate) struct Error(Box<Inner>);

#[derive(Debug)]
struct Inner {
    kind: ErrorKind,
    /// (message, field) pairs, innermost first.
    stack: Vec<(&'static str, &'static str)>,
}

impl Error {
    #[cold]
    fn new(kind: ErrorKind) -> Self {
        Error(Box::new(Inner {
            kind,
            stack: Vec::new(),
        }))
    }

    #[cold]
    fn push(mut self, message: &'static str, field: &'static str) -> Self {
        self.0.stack.push((message, field));
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("failed to decode Protobuf message: ")?;
        for (message, field) in &self.0.stack {
            write!(f, "{message}.{field}: ")?;
        }
        match &self.0.kind {
            ErrorKind::InvalidVarint => f.write_str("invalid varint"),
            ErrorKind::RecursionLimitReached => f.write_str("recursion limit reached"),
            ErrorKind::InvalidWireType(v) => write!(f, "invalid wire type value: {v}"),
            ErrorKind::InvalidKey(k) => write!(f, "invalid key value: {k}"),
            ErrorKind::InvalidTag => f.write_str("invalid tag value: 0"),
            ErrorKind::UnexpectedWireType { actual, expected } => {
                write!(f, "invalid wire type: {actual:?} (expected {expected:?})")
            }
            ErrorKind::BufferUnderflow => f.write_str("buffer underflow"),
            ErrorKind::DelimitedLengthExceeded => f.write_str("delimited length exceeded"),
            ErrorKind::UnexpectedEndGroupTag => f.write_str("unexpected end group tag"),
            ErrorKind::InvalidString => {
                f.write_str("invalid string value: data is not UTF-8 encoded")
            }
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, Error>;

/// Adds the (message, field) a failed field belongs to, as prost does.
trait Context<T> {
    fn at(self, message: &'static str, field: &'static str) -> Result<T>;
}

impl<T> Context<T> for Result<T> {
    #[inline(always)]
    fn at(self, message: &'static str, field: &'static str) -> Result<T> {
        self.map_err(|e| e.push(message, field))
    }
}

#[cold]
fn err<T>(kind: ErrorKind) -> Result<T> {
    Err(Error::new(kind))
}

/// A cursor over the whole message. Like prost, every read is bounded by the end
/// of the buffer, and an embedded message checks its own end after its last field.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.varint_long(),
        }
    }

    fn varint_long(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for count in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return err(ErrorKind::InvalidVarint);
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (count * 7);
            if byte < 0x80 {
                // The tenth byte may only hold the top bit of a u64.
                if count == 9 && byte >= 0x02 {
                    return err(ErrorKind::InvalidVarint);
                }
                return Ok(value);
            }
        }
        err(ErrorKind::InvalidVarint)
    }

    /// A field key: (tag, wire type).
    #[inline(always)]
    fn key(&mut self) -> Result<(u32, WireType)> {
        // Tags 1 to 15 take one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if (8..0x80).contains(&b) {
                if let Some(wt) = WireType::of(u64::from(b)) {
                    self.pos += 1;
                    return Ok((u32::from(b >> 3), wt));
                }
            }
        }
        self.key_long()
    }

    fn key_long(&mut self) -> Result<(u32, WireType)> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return err(ErrorKind::InvalidKey(key));
        }
        let Some(wire_type) = WireType::of(key) else {
            return err(ErrorKind::InvalidWireType(key & 7));
        };
        let tag = key as u32 >> 3;
        if tag == 0 {
            return err(ErrorKind::InvalidTag);
        }
        Ok((tag, wire_type))
    }

    #[inline(always)]
    fn expect(actual: WireType, expected: WireType) -> Result<()> {
        if actual != expected {
            return err(ErrorKind::UnexpectedWireType { actual, expected });
        }
        Ok(())
    }

    /// An `int32`/`int64`/`bool` field: the raw varint.
    #[inline(always)]
    fn varint_field(&mut self, wt: WireType) -> Result<u64> {
        Self::expect(wt, WireType::Varint)?;
        self.varint()
    }

    /// A `fixed64`/`double` field.
    #[inline(always)]
    fn fixed64(&mut self, wt: WireType) -> Result<u64> {
        Self::expect(wt, WireType::SixtyFourBit)?;
        match self.buf.get(self.pos..self.pos + 8) {
            Some(b) => {
                self.pos += 8;
                Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
            None => err(ErrorKind::BufferUnderflow),
        }
    }

    /// A `bytes` field, borrowed.
    #[inline(always)]
    fn bytes(&mut self, wt: WireType) -> Result<&'a [u8]> {
        Self::expect(wt, WireType::LengthDelimited)?;
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return err(ErrorKind::BufferUnderflow);
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }

    /// A `string` field, borrowed and UTF-8 checked.
    #[inline(always)]
    fn str(&mut self, wt: WireType) -> Result<&'a str> {
        let b = self.bytes(wt)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s),
            Err(_) => err(ErrorKind::InvalidString),
        }
    }

    /// A `string` field whose text is only compared or not read: UTF-8 checked,
    /// left as bytes (cheaper than `from_utf8` for the usual short ASCII text).
    #[inline(always)]
    fn utf8(&mut self, wt: WireType) -> Result<&'a [u8]> {
        let b = self.bytes(wt)?;
        if b.is_ascii() || std::str::from_utf8(b).is_ok() {
            Ok(b)
        } else {
            err(ErrorKind::InvalidString)
        }
    }

    /// An embedded message: `field` is called with each field's tag, wire type and
    /// recursion budget, as prost's `message::merge` does with `merge_field`.
    #[inline(always)]
    fn message<F>(&mut self, wt: WireType, ctx: u32, mut field: F) -> Result<()>
    where
        F: FnMut(&mut Self, u32, WireType, u32) -> Result<()>,
    {
        Self::expect(wt, WireType::LengthDelimited)?;
        if ctx == 0 {
            return err(ErrorKind::RecursionLimitReached);
        }
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return err(ErrorKind::BufferUnderflow);
        }
        let end = self.pos + len as usize;
        while self.pos < end {
            let (tag, wt) = self.key()?;
            field(self, tag, wt, ctx - 1)?;
        }
        if self.pos != end {
            return err(ErrorKind::DelimitedLengthExceeded);
        }
        Ok(())
    }

    /// Skips a field Causeway does not read (prost's `skip_field`).
    fn skip(&mut self, wt: WireType, tag: u32, ctx: u32) -> Result<()> {
        if ctx == 0 {
            return err(ErrorKind::RecursionLimitReached);
        }
        let len = match wt {
            WireType::Varint => {
                self.varint()?;
                0
            }
            WireType::ThirtyTwoBit => 4,
            WireType::SixtyFourBit => 8,
            WireType::LengthDelimited => self.varint()?,
            WireType::StartGroup => loop {
                let (inner_tag, inner_wt) = self.key()?;
                if inner_wt == WireType::EndGroup {
                    if inner_tag != tag {
                        return err(ErrorKind::UnexpectedEndGroupTag);
                    }
                    break 0;
                }
                self.skip(inner_wt, inner_tag, ctx - 1)?;
            },
            WireType::EndGroup => return err(ErrorKind::UnexpectedEndGroupTag),
        };
        if len > self.remaining() as u64 {
            return err(ErrorKind::BufferUnderflow);
        }
        self.pos += len as usize;
        Ok(())
    }
}

/// Merges one `AnyValue` occurrence into `value` (a oneof: the last variant wins,
/// an `ArrayValue`/`KeyValueList` merges into one of the same variant).
fn any_value<'a>(
    r: &mut Reader<'a>,
    wt: WireType,
    ctx: u32,
    value: &mut Any<'a>,
    opts: &DecodeOptions,
) -> Result<()> {
    r.message(wt, ctx, |r, tag, wt, ctx| {
        match tag {
            1 => *value = Any::Str(Cow::Borrowed(r.str(wt).at("AnyValue", "value")?)),
            2 | 7 => {
                if tag == 2 {
                    r.varint_field(wt).at("AnyValue", "value")?;
                } else {
                    r.bytes(wt).at("AnyValue", "value")?;
                }
                *value = Any::Other;
            }
            3 => *value = Any::Int(r.varint_field(wt).at("AnyValue", "value")? as i64),
            4 => *value = Any::Double(f64::from_bits(r.fixed64(wt).at("AnyValue", "value")?)),
            5 => {
                // Merging into an ArrayValue keeps its elements.
                let before = matches!(value, Any::Array(true));
                let pii = array_value(r, wt, ctx, opts).at("AnyValue", "value")?;
                *value = Any::Array(before || pii);
            }
            6 => {
                let before = matches!(value, Any::Kvlist(true));
                let pii = kvlist_value(r, wt, ctx, opts).at("AnyValue", "value")?;
                *value = Any::Kvlist(before || pii);
            }
            _ => r.skip(wt, tag, ctx)?,
        }
        Ok(())
    })
}

/// An `ArrayValue`; whether an element holds PII.
fn array_value(r: &mut Reader<'_>, wt: WireType, ctx: u32, opts: &DecodeOptions) -> Result<bool> {
    let mut pii = false;
    r.message(wt, ctx, |r, tag, wt, ctx| {
        if tag == 1 {
            let mut v = Any::Unset;
            any_value(r, wt, ctx, &mut v, opts).at("ArrayValue", "values")?;
            pii = pii || v.pii(opts);
            Ok(())
        } else {
            r.skip(wt, tag, ctx)
        }
    })?;
    Ok(pii)
}

/// A `KeyValueList`; whether a value holds PII.
fn kvlist_value(r: &mut Reader<'_>, wt: WireType, ctx: u32, opts: &DecodeOptions) -> Result<bool> {
    let mut pii = false;
    r.message(wt, ctx, |r, tag, wt, ctx| {
        if tag == 1 {
            let (_, v) = key_value(r, wt, ctx, opts).at("KeyValueList", "values")?;
            pii = pii || v.pii(opts);
            Ok(())
        } else {
            r.skip(wt, tag, ctx)
        }
    })?;
    Ok(pii)
}

/// A `KeyValue`: its key (UTF-8) and value.
#[inline]
fn key_value<'a>(
    r: &mut Reader<'a>,
    wt: WireType,
    ctx: u32,
    opts: &DecodeOptions,
) -> Result<(&'a [u8], Any<'a>)> {
    let mut key: &[u8] = b"";
    let mut value = Any::Unset;
    r.message(wt, ctx, |r, tag, wt, ctx| {
        match tag {
            1 => key = r.utf8(wt).at("KeyValue", "key")?,
            2 => any_value(r, wt, ctx, &mut value, opts).at("KeyValue", "value")?,
            _ => r.skip(wt, tag, ctx)?,
        }
        Ok(())
    })?;
    Ok((key, value))
}

/// A `Resource` occurrence: its attributes are appended to `attrs`.
fn resource<'a>(
    r: &mut Reader<'a>,
    wt: WireType,
    ctx: u32,
    attrs: &mut ResourceAttrs<'a>,
    opts: &DecodeOptions,
) -> Result<()> {
    r.message(wt, ctx, |r, tag, wt, ctx| {
        if tag == 1 {
            let (key, value) = key_value(r, wt, ctx, opts).at("Resource", "attributes")?;
            attrs.offer(key, value);
            Ok(())
        } else {
            r.skip(wt, tag, ctx)
        }
    })
}

/// A span as read off the wire: ids still raw.
#[derive(Default)]
pub(crate) struct WireSpan<'a> {
    pub trace: &'a [u8],
    pub span: &'a [u8],
    pub parent: &'a [u8],
    pub name: &'a [u8],
    pub start: u64,
    pub end: u64,
    pub kind: i32,
    pub status: i32,
    pub pii: bool,
}

fn span<'a>(
    r: &mut Reader<'a>,
    wt: WireType,
    ctx: u32,
    opts: &DecodeOptions,
) -> Result<WireSpan<'a>> {
    let mut s = WireSpan::default();
    let mut attrs = AttrFlags::default();
    r.message(wt, ctx, |r, tag, wt, ctx| {
        match tag {
            1 => s.trace = r.bytes(wt).at("Span", "trace_id")?,
            2 => s.span = r.bytes(wt).at("Span", "span_id")?,
            4 => s.parent = r.bytes(wt).at("Span", "parent_span_id")?,
            5 => s.name = r.utf8(wt).at("Span", "name")?,
            6 => s.kind = r.varint_field(wt).at("Span", "kind")? as i32,
            7 => s.start = r.fixed64(wt).at("Span", "start_time_unix_nano")?,
            8 => s.end = r.fixed64(wt).at("Span", "end_time_unix_nano")?,
            9 => {
                let (_, value) = key_value(r, wt, ctx, opts).at("Span", "attributes")?;
                attrs.span_attribute(&value, opts);
            }
            15 => status(r, wt, ctx, &mut s.status).at("Span", "status")?,
            _ => r.skip(wt, tag, ctx)?,
        }
        Ok(())
    })?;
    s.pii = attrs.pii;
    Ok(s)
}

fn status(r: &mut Reader<'_>, wt: WireType, ctx: u32, code: &mut i32) -> Result<()> {
    r.message(wt, ctx, |r, tag, wt, ctx| {
        match tag {
            2 => {
                r.utf8(wt).at("Status", "message")?;
            }
            3 => *code = r.varint_field(wt).at("Status", "code")? as i32,
            _ => r.skip(wt, tag, ctx)?,
        }
        Ok(())
    })
}

/// Walks a `TracesData`. For each `ResourceSpans`, once all of it is read (its
/// `resource` may follow its spans), calls `emit` with the resource and its spans
/// in wire order; `emit` drains the spans.
pub(crate) fn traces<'a>(
    buf: &'a [u8],
    opts: &DecodeOptions,
    mut emit: impl FnMut(&ResourceAttrs<'a>, &mut Vec<WireSpan<'a>>),
) -> Result<()> {
    let mut r = Reader { buf, pos: 0 };
    let mut spans = Vec::with_capacity(16);
    while r.pos < buf.len() {
        let (tag, wt) = r.key()?;
        if tag != 1 {
            r.skip(wt, tag, RECURSION_LIMIT)?;
            continue;
        }
        let mut attrs = ResourceAttrs::default();
        r.message(wt, RECURSION_LIMIT, |r, tag, wt, ctx| match tag {
            1 => resource(r, wt, ctx, &mut attrs, opts).at("ResourceSpans", "resource"),
            2 => scope_spans(r, wt, ctx, &mut spans, opts).at("ResourceSpans", "scope_spans"),
            _ => r.skip(wt, tag, ctx),
        })
        .at("TracesData", "resource_spans")?;
        emit(&attrs, &mut spans);
        spans.clear();
    }
    Ok(())
}

fn scope_spans<'a>(
    r: &mut Reader<'a>,
    wt: WireType,
    ctx: u32,
    spans: &mut Vec<WireSpan<'a>>,
    opts: &DecodeOptions,
) -> Result<()> {
    r.message(wt, ctx, |r, tag, wt, ctx| {
        if tag == 2 {
            spans.push(span(r, wt, ctx, opts).at("ScopeSpans", "spans")?);
            Ok(())
        } else {
            r.skip(wt, tag, ctx)
        }
    })
}

/// A log record as read off the wire: ids still raw.
#[derive(Default)]
pub(crate) struct WireLog<'a> {
    pub trace: &'a [u8],
    pub span: &'a [u8],
    pub time: u64,
    pub observed: u64,
    pub severity: i32,
    pub attrs: AttrFlags,
}

fn log_record<'a>(
    r: &mut Reader<'a>,
    wt: WireType,
    ctx: u32,
    opts: &DecodeOptions,
) -> Result<WireLog<'a>> {
    let mut l = WireLog::default();
    let mut body = Any::Unset;
    r.message(wt, ctx, |r, tag, wt, ctx| {
        match tag {
            1 => l.time = r.fixed64(wt).at("LogRecord", "time_unix_nano")?,
            2 => l.severity = r.varint_field(wt).at("LogRecord", "severity_number")? as i32,
            5 => any_value(r, wt, ctx, &mut body, opts).at("LogRecord", "body")?,
            6 => {
                let (key, value) = key_value(r, wt, ctx, opts).at("LogRecord", "attributes")?;
                l.attrs.log_attribute(key, &value, opts);
            }
            9 => l.trace = r.bytes(wt).at("LogRecord", "trace_id")?,
            10 => l.span = r.bytes(wt).at("LogRecord", "span_id")?,
            11 => l.observed = r.fixed64(wt).at("LogRecord", "observed_time_unix_nano")?,
            _ => r.skip(wt, tag, ctx)?,
        }
        Ok(())
    })?;
    l.attrs.body(&body, opts);
    Ok(l)
}

/// Walks a `LogsData`, like [`traces`].
pub(crate) fn logs<'a>(
    buf: &'a [u8],
    opts: &DecodeOptions,
    mut emit: impl FnMut(&ResourceAttrs<'a>, &mut Vec<WireLog<'a>>),
) -> Result<()> {
    let mut r = Reader { buf, pos: 0 };
    let mut records = Vec::with_capacity(16);
    while r.pos < buf.len() {
        let (tag, wt) = r.key()?;
        if tag != 1 {
            r.skip(wt, tag, RECURSION_LIMIT)?;
            continue;
        }
        let mut attrs = ResourceAttrs::default();
        r.message(wt, RECURSION_LIMIT, |r, tag, wt, ctx| match tag {
            1 => resource(r, wt, ctx, &mut attrs, opts).at("ResourceLogs", "resource"),
            2 => scope_logs(r, wt, ctx, &mut records, opts).at("ResourceLogs", "scope_logs"),
            _ => r.skip(wt, tag, ctx),
        })
        .at("LogsData", "resource_logs")?;
        emit(&attrs, &mut records);
        records.clear();
    }
    Ok(())
}

fn scope_logs<'a>(
    r: &mut Reader<'a>,
    wt: WireType,
    ctx: u32,
    records: &mut Vec<WireLog<'a>>,
    opts: &DecodeOptions,
) -> Result<()> {
    r.message(wt, ctx, |r, tag, wt, ctx| {
        if tag == 2 {
            records.push(log_record(r, wt, ctx, opts).at("ScopeLogs", "log_records")?);
            Ok(())
        } else {
            r.skip(wt, tag, ctx)
        }
    })
}
