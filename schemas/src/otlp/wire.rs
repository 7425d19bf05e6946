//! A single-pass, zero-copy walk of the OTLP protobuf wire format.
//!
//! It reads exactly the fields of the structs in [`super::proto`] and behaves like
//! prost decoding them: unknown fields are skipped by wire type (groups included),
//! a known field with the wrong wire type is an error, the last occurrence of a
//! scalar field wins, repeated occurrences of an embedded message merge, strings
//! must be UTF-8, and nesting deeper than prost's recursion limit (100) is an
//! error. Errors carry the same text prost's `DecodeError` displays.
//!
//! Nothing is allocated per span or attribute: ids and strings are byte slices
//! of the message (strings checked to be UTF-8), and attributes are folded into
//! the flags the validation needs ([`AttrFlags`]) as they are read.
//!
//! **Fast paths.** A span, log record, attribute or value written the usual
//! way is read at once by [`plain`]: a loop over a slice holding just that
//! message, which gives up at anything unusual (then the general code reads
//! the same bytes). The general code reads each message field by field,
//! dispatched on the raw key (`tag << 3 | wire type`): a field Causeway reads,
//! with a one-byte key and the wire type its type needs, is read straight away;
//! any other key (unknown field, wrong wire type, a key written in more bytes
//! than needed) goes to code that behaves like prost field by field. A string
//! value that is PII-scanned (span and log attribute values, log bodies) is
//! checked for UTF-8 in the same pass over its bytes
//! ([`crate::pii::PiiDetector::scan_utf8`]).

use std::fmt;

use super::memo::{Memo, MemoKey};
use super::{int_pii, AttrFlags, ResourceAttrs, REQUEST_ATTRIBUTES, STATUS_CODE_ATTRIBUTES};
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

/// A field key that [`Reader::key`] accepted, as its value `tag << 3 | wire type`.
type Key = u32;

/// The one-byte keys of the fields read on the fast path.
mod keys {
    use super::Key;

    const fn key(tag: u32, wire_type: u32) -> Key {
        tag << 3 | wire_type
    }

    const VARINT: u32 = 0;
    const I64: u32 = 1;
    const LEN: u32 = 2;

    /// Tag 1, length-delimited: `resource_spans`, `resource`, `Resource.attributes`,
    /// `Span.trace_id`, `KeyValue.key`, `AnyValue.string_value`, `ArrayValue.values`,
    /// `KeyValueList.values`.
    pub const LEN_1: Key = key(1, LEN);
    /// Tag 2, length-delimited: `scope_spans`, `spans`, `Span.span_id`,
    /// `KeyValue.value`, `Status.message`.
    pub const LEN_2: Key = key(2, LEN);
    pub const SPAN_PARENT: Key = key(4, LEN);
    pub const SPAN_NAME: Key = key(5, LEN);
    pub const SPAN_KIND: Key = key(6, VARINT);
    pub const SPAN_START: Key = key(7, I64);
    pub const SPAN_END: Key = key(8, I64);
    pub const SPAN_ATTRIBUTE: Key = key(9, LEN);
    pub const SPAN_STATUS: Key = key(15, LEN);
    pub const STATUS_CODE: Key = key(3, VARINT);
    pub const ANY_BOOL: Key = key(2, VARINT);
    pub const ANY_INT: Key = key(3, VARINT);
    pub const ANY_DOUBLE: Key = key(4, I64);
    pub const ANY_ARRAY: Key = key(5, LEN);
    pub const ANY_KVLIST: Key = key(6, LEN);
    pub const ANY_BYTES: Key = key(7, LEN);
    pub const LOG_TIME: Key = key(1, I64);
    pub const LOG_SEVERITY: Key = key(2, VARINT);
    pub const LOG_BODY: Key = key(5, LEN);
    pub const LOG_ATTRIBUTE: Key = key(6, LEN);
    pub const LOG_TRACE: Key = key(9, LEN);
    pub const LOG_SPAN: Key = key(10, LEN);
    pub const LOG_OBSERVED: Key = key(11, I64);
}

/// The tag and wire type of an accepted key.
#[inline(always)]
fn split(key: Key) -> (u32, WireType) {
    let wire_type = match key & 7 {
        0 => WireType::Varint,
        1 => WireType::SixtyFourBit,
        2 => WireType::LengthDelimited,
        3 => WireType::StartGroup,
        4 => WireType::EndGroup,
        // 5; 6 and 7 are never accepted.
        _ => WireType::ThirtyTwoBit,
    };
    (key >> 3, wire_type)
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

/// Whether every byte is ASCII; short slices (most keys and names) in one or
/// two overlapping loads.
#[inline(always)]
fn is_ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let n = b.len();
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    match n {
        0 => true,
        1..=3 => (b[0] | b[n / 2] | b[n - 1]) < 0x80,
        4..=7 => (half(0) | half(n - 4)) & (HIGH as u32) == 0,
        8..=16 => (word(0) | word(n - 8)) & HIGH == 0,
        _ => b.is_ascii(),
    }
}

/// UTF-8 checks the bytes of a string field.
#[inline(always)]
fn utf8(b: &[u8]) -> Result<()> {
    if is_ascii(b) || std::str::from_utf8(b).is_ok() {
        Ok(())
    } else {
        err(ErrorKind::InvalidString)
    }
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

    /// A field key, checked as prost checks it.
    #[inline(always)]
    fn key(&mut self) -> Result<Key> {
        // Tags 1 to 15 with a valid wire type take one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if (8..0x80).contains(&b) && (b & 7) < 6 {
                self.pos += 1;
                return Ok(Key::from(b));
            }
        }
        self.key_long()
    }

    fn key_long(&mut self) -> Result<Key> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return err(ErrorKind::InvalidKey(key));
        }
        if WireType::of(key).is_none() {
            return err(ErrorKind::InvalidWireType(key & 7));
        }
        if key >> 3 == 0 {
            return err(ErrorKind::InvalidTag);
        }
        Ok(key as Key)
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

    /// The 8 bytes of a `fixed64`/`double` whose key was read.
    #[inline(always)]
    fn fixed64(&mut self) -> Result<u64> {
        match self.buf.get(self.pos..self.pos + 8) {
            Some(b) => {
                self.pos += 8;
                Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
            None => err(ErrorKind::BufferUnderflow),
        }
    }

    /// A `fixed64`/`double` field.
    #[inline(always)]
    fn fixed64_field(&mut self, wt: WireType) -> Result<u64> {
        Self::expect(wt, WireType::SixtyFourBit)?;
        self.fixed64()
    }

    /// The body of a length-delimited field whose key was read, borrowed.
    #[inline(always)]
    fn len_delimited(&mut self) -> Result<&'a [u8]> {
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return err(ErrorKind::BufferUnderflow);
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }

    /// A `bytes` field, borrowed.
    #[inline(always)]
    fn bytes(&mut self, wt: WireType) -> Result<&'a [u8]> {
        Self::expect(wt, WireType::LengthDelimited)?;
        self.len_delimited()
    }

    /// The body of a `string` field whose key was read: UTF-8 checked, left as
    /// bytes.
    #[inline(always)]
    fn utf8(&mut self) -> Result<&'a [u8]> {
        let b = self.len_delimited()?;
        utf8(b)?;
        Ok(b)
    }

    /// A `string` field: UTF-8 checked, left as bytes.
    #[inline(always)]
    fn utf8_field(&mut self, wt: WireType) -> Result<&'a [u8]> {
        Self::expect(wt, WireType::LengthDelimited)?;
        self.utf8()
    }

    /// An embedded message: `field` is called with each field's key and
    /// recursion budget, as prost's `message::merge` does with `merge_field`.
    #[inline(always)]
    fn message<F>(&mut self, wt: WireType, ctx: u32, field: F) -> Result<()>
    where
        F: FnMut(&mut Self, Key, u32) -> Result<()>,
    {
        Self::expect(wt, WireType::LengthDelimited)?;
        self.embedded(ctx, field)
    }

    /// The body of an embedded message whose key was read ([`Self::message`]).
    #[inline(always)]
    fn embedded<F>(&mut self, ctx: u32, mut field: F) -> Result<()>
    where
        F: FnMut(&mut Self, Key, u32) -> Result<()>,
    {
        if ctx == 0 {
            return err(ErrorKind::RecursionLimitReached);
        }
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return err(ErrorKind::BufferUnderflow);
        }
        let end = self.pos + len as usize;
        while self.pos < end {
            let key = self.key()?;
            field(self, key, ctx - 1)?;
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
                let (inner_tag, inner_wt) = split(self.key()?);
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

/// The value of an `AnyValue`, reduced to what Causeway reads of it. A oneof: the
/// variant set last wins. Arrays and kvlists only keep whether an element holds
/// PII.
///
/// String values are read in one of two modes, the `SCAN` parameter of the
/// functions below: scanned for PII as they are checked for UTF-8 (attribute
/// values and bodies), or only checked (resource attributes, and the values
/// of a record already found to hold PII).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Val<'a> {
    /// No value.
    Unset,
    /// A string (UTF-8), and whether it holds PII (when scanned).
    Str(&'a [u8], bool),
    Int(i64),
    Double(f64),
    Array(bool),
    Kvlist(bool),
    /// A bool or bytes value.
    Other,
}

impl<'a> Val<'a> {
    /// Whether the value holds PII: a (scanned) string matching a detector, an
    /// integer of 13 or more digits whose decimal form matches, or an
    /// array/kvlist element that does.
    #[inline]
    fn pii(&self, opts: &DecodeOptions) -> bool {
        match *self {
            Val::Str(_, pii) | Val::Array(pii) | Val::Kvlist(pii) => pii,
            Val::Int(i) => i >= 1_000_000_000_000 && int_pii(i as u64, opts),
            _ => false,
        }
    }

    /// The value as an HTTP status code.
    fn status_code(&self) -> Option<i64> {
        match *self {
            Val::Int(i) => Some(i),
            Val::Str(s, _) => std::str::from_utf8(s).ok()?.trim().parse().ok(),
            Val::Double(d) => Some(d as i64),
            _ => None,
        }
    }

    /// The string, if the value is one.
    pub(crate) fn str(&self) -> Option<&'a [u8]> {
        match *self {
            Val::Str(s, _) => Some(s),
            _ => None,
        }
    }
}

/// Checks a string value for UTF-8 and, with `SCAN`, for PII.
#[inline(always)]
fn string_value<const SCAN: bool>(b: &[u8], opts: &DecodeOptions) -> Result<bool> {
    if SCAN {
        match opts.pii.scan_utf8(b) {
            Some(pii) => Ok(pii),
            None => err(ErrorKind::InvalidString),
        }
    } else {
        utf8(b).map(|()| false)
    }
}

/// Merges the body of one `AnyValue` occurrence into `value` (a oneof: the last
/// variant wins, an `ArrayValue`/`KeyValueList` merges into one of the same
/// variant).
#[inline]
fn any_value<'a, const SCAN: bool>(
    r: &mut Reader<'a>,
    ctx: u32,
    value: &mut Val<'a>,
    opts: &DecodeOptions,
) -> Result<()> {
    // The usual shape is read at once ([`plain`]); anything else is read by
    // the general code below from the same position. Skipping a field inside
    // takes a level below the `AnyValue`'s.
    if ctx >= 2 {
        if let Some((body, end)) = body_at(r) {
            let mut v = *value;
            if plain::any_value::<SCAN>(body, &mut v, opts).is_some() {
                r.pos = end;
                *value = v;
                return Ok(());
            }
        }
    }
    r.embedded(ctx, |r, key, ctx| {
        match key {
            keys::LEN_1 => {
                let b = r.len_delimited().at("AnyValue", "value")?;
                let pii = string_value::<SCAN>(b, opts).at("AnyValue", "value")?;
                *value = Val::Str(b, pii);
            }
            keys::ANY_INT => *value = Val::Int(r.varint().at("AnyValue", "value")? as i64),
            keys::ANY_BOOL => {
                r.varint().at("AnyValue", "value")?;
                *value = Val::Other;
            }
            keys::ANY_DOUBLE => {
                *value = Val::Double(f64::from_bits(r.fixed64().at("AnyValue", "value")?))
            }
            keys::ANY_ARRAY => array_value::<SCAN>(r, ctx, value, opts)?,
            keys::ANY_KVLIST => kvlist_value::<SCAN>(r, ctx, value, opts)?,
            keys::ANY_BYTES => {
                r.len_delimited().at("AnyValue", "value")?;
                *value = Val::Other;
            }
            _ => any_value_field::<SCAN>(r, key, ctx, value, opts)?,
        }
        Ok(())
    })
}

/// A field of an `AnyValue` off the fast path.
#[inline(never)]
fn any_value_field<'a, const SCAN: bool>(
    r: &mut Reader<'a>,
    key: Key,
    ctx: u32,
    value: &mut Val<'a>,
    opts: &DecodeOptions,
) -> Result<()> {
    let (tag, wt) = split(key);
    match tag {
        1 => {
            let b = r.bytes(wt).at("AnyValue", "value")?;
            let pii = string_value::<SCAN>(b, opts).at("AnyValue", "value")?;
            *value = Val::Str(b, pii);
        }
        2 => {
            r.varint_field(wt).at("AnyValue", "value")?;
            *value = Val::Other;
        }
        7 => {
            r.bytes(wt).at("AnyValue", "value")?;
            *value = Val::Other;
        }
        3 => *value = Val::Int(r.varint_field(wt).at("AnyValue", "value")? as i64),
        4 => *value = Val::Double(f64::from_bits(r.fixed64_field(wt).at("AnyValue", "value")?)),
        5 => {
            Reader::expect(wt, WireType::LengthDelimited).at("AnyValue", "value")?;
            array_value::<SCAN>(r, ctx, value, opts)?;
        }
        6 => {
            Reader::expect(wt, WireType::LengthDelimited).at("AnyValue", "value")?;
            kvlist_value::<SCAN>(r, ctx, value, opts)?;
        }
        _ => r.skip(wt, tag, ctx)?,
    }
    Ok(())
}

/// The body of an `ArrayValue` occurrence, merged into `value`.
fn array_value<const SCAN: bool>(
    r: &mut Reader<'_>,
    ctx: u32,
    value: &mut Val<'_>,
    opts: &DecodeOptions,
) -> Result<()> {
    // Merging into an ArrayValue keeps its elements.
    let mut pii = matches!(value, Val::Array(true));
    r.embedded(ctx, |r, key, ctx| {
        let (tag, wt) = split(key);
        if tag == 1 {
            let mut v = Val::Unset;
            Reader::expect(wt, WireType::LengthDelimited).at("ArrayValue", "values")?;
            any_value::<SCAN>(r, ctx, &mut v, opts).at("ArrayValue", "values")?;
            pii = pii || v.pii(opts);
            Ok(())
        } else {
            r.skip(wt, tag, ctx)
        }
    })
    .at("AnyValue", "value")?;
    *value = Val::Array(pii);
    Ok(())
}

/// The body of a `KeyValueList` occurrence, merged into `value`.
fn kvlist_value<const SCAN: bool>(
    r: &mut Reader<'_>,
    ctx: u32,
    value: &mut Val<'_>,
    opts: &DecodeOptions,
) -> Result<()> {
    let mut pii = matches!(value, Val::Kvlist(true));
    r.embedded(ctx, |r, key, ctx| {
        let (tag, wt) = split(key);
        if tag == 1 {
            Reader::expect(wt, WireType::LengthDelimited).at("KeyValueList", "values")?;
            let (_, v) = key_value::<SCAN>(r, ctx, opts).at("KeyValueList", "values")?;
            pii = pii || v.pii(opts);
            Ok(())
        } else {
            r.skip(wt, tag, ctx)
        }
    })
    .at("AnyValue", "value")?;
    *value = Val::Kvlist(pii);
    Ok(())
}

/// The body of a `KeyValue`: its key (UTF-8) and value.
#[inline]
fn key_value<'a, const SCAN: bool>(
    r: &mut Reader<'a>,
    ctx: u32,
    opts: &DecodeOptions,
) -> Result<(&'a [u8], Val<'a>)> {
    // The `KeyValue`, the `AnyValue` inside and a field skipped in that take
    // a level each.
    if ctx >= 3 {
        if let Some((body, end)) = body_at(r) {
            if let Some(kv) = plain::key_value::<SCAN>(body, opts) {
                r.pos = end;
                return Ok(kv);
            }
        }
    }
    let mut key: &[u8] = b"";
    let mut value = Val::Unset;
    r.embedded(ctx, |r, k, ctx| {
        match k {
            keys::LEN_1 => key = r.utf8().at("KeyValue", "key")?,
            keys::LEN_2 => any_value::<SCAN>(r, ctx, &mut value, opts).at("KeyValue", "value")?,
            _ => {
                let (tag, wt) = split(k);
                match tag {
                    1 => key = r.utf8_field(wt).at("KeyValue", "key")?,
                    2 => {
                        Reader::expect(wt, WireType::LengthDelimited).at("KeyValue", "value")?;
                        any_value::<SCAN>(r, ctx, &mut value, opts).at("KeyValue", "value")?;
                    }
                    _ => r.skip(wt, tag, ctx)?,
                }
            }
        }
        Ok(())
    })?;
    Ok((key, value))
}

/// The body of a `Resource` occurrence: its attributes are folded into `attrs`.
fn resource<'a>(
    r: &mut Reader<'a>,
    ctx: u32,
    attrs: &mut ResourceAttrs<&'a [u8]>,
    opts: &DecodeOptions,
) -> Result<()> {
    // The resource, an attribute, its value and a field skipped in that take
    // a level each.
    if ctx >= 4 {
        if let Some((body, end)) = body_at(r) {
            let mut merged = *attrs;
            if plain::resource(body, &mut merged, opts).is_some() {
                r.pos = end;
                *attrs = merged;
                return Ok(());
            }
        }
    }
    r.embedded(ctx, |r, key, ctx| {
        let (tag, wt) = split(key);
        if tag == 1 {
            Reader::expect(wt, WireType::LengthDelimited).at("Resource", "attributes")?;
            let (key, value) = key_value::<false>(r, ctx, opts).at("Resource", "attributes")?;
            attrs.offer(key, value.str());
            Ok(())
        } else {
            r.skip(wt, tag, ctx)
        }
    })
}

/// The body of a `ResourceSpans`/`ResourceLogs` `resource` occurrence, as
/// [`resource`] reads it, with `memo` asked first: a body it holds is not
/// walked again, and one that decodes fine is stored. `seen` records the
/// memo key of the first occurrence, and none once there is a second (then the
/// resource is a merge of several bodies).
#[inline]
fn memo_resource<'a>(
    r: &mut Reader<'a>,
    ctx: u32,
    attrs: &mut ResourceAttrs<&'a [u8]>,
    seen: &mut Option<Option<MemoKey>>,
    memo: &mut Memo,
    opts: &DecodeOptions,
) -> Result<()> {
    let key = match body_at(r) {
        Some((body, end)) => match memo.get(body, ctx) {
            Ok((own, key)) => {
                r.pos = end;
                attrs.merge(&own);
                Some(key)
            }
            Err(hash) => {
                // The body alone, then merged: the same as reading it into
                // `attrs`, since each attribute keeps its first value.
                let mut own = ResourceAttrs::default();
                resource(r, ctx, &mut own, opts)?;
                attrs.merge(&own);
                hash.and_then(|hash| memo.insert(hash, body, ctx, &own))
            }
        },
        None => {
            resource(r, ctx, attrs, opts)?;
            None
        }
    };
    *seen = Some(if seen.is_none() { key } else { None });
    Ok(())
}

/// A span as read off the wire: ids still raw, the name UTF-8.
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

/// The body of a `Span`.
#[inline]
fn span<'a>(r: &mut Reader<'a>, ctx: u32, opts: &DecodeOptions) -> Result<WireSpan<'a>> {
    // The span, an attribute, its value and a field skipped in that take a
    // level each.
    if ctx >= 4 {
        if let Some((body, end)) = body_at(r) {
            if let Some(s) = plain::span(body, opts) {
                r.pos = end;
                return Ok(s);
            }
        }
    }
    let mut s = WireSpan::default();
    r.embedded(ctx, |r, key, ctx| {
        match key {
            keys::LEN_1 => s.trace = r.len_delimited().at("Span", "trace_id")?,
            keys::LEN_2 => s.span = r.len_delimited().at("Span", "span_id")?,
            keys::SPAN_PARENT => s.parent = r.len_delimited().at("Span", "parent_span_id")?,
            keys::SPAN_NAME => s.name = r.utf8().at("Span", "name")?,
            keys::SPAN_KIND => s.kind = r.varint().at("Span", "kind")? as i32,
            keys::SPAN_START => s.start = r.fixed64().at("Span", "start_time_unix_nano")?,
            keys::SPAN_END => s.end = r.fixed64().at("Span", "end_time_unix_nano")?,
            keys::SPAN_ATTRIBUTE => span_attribute(r, ctx, &mut s.pii, opts)?,
            keys::SPAN_STATUS => status(r, ctx, &mut s.status).at("Span", "status")?,
            _ => span_field(r, key, ctx, &mut s, opts)?,
        }
        Ok(())
    })?;
    Ok(s)
}

/// The body of a span attribute, folded into the span's PII flag (values are
/// no longer scanned once it is set).
#[inline(always)]
fn span_attribute(
    r: &mut Reader<'_>,
    ctx: u32,
    pii: &mut bool,
    opts: &DecodeOptions,
) -> Result<()> {
    if *pii {
        key_value::<false>(r, ctx, opts).at("Span", "attributes")?;
    } else {
        let (_, value) = key_value::<true>(r, ctx, opts).at("Span", "attributes")?;
        *pii = value.pii(opts);
    }
    Ok(())
}

/// A field of a `Span` off the fast path.
#[inline(never)]
fn span_field<'a>(
    r: &mut Reader<'a>,
    key: Key,
    ctx: u32,
    s: &mut WireSpan<'a>,
    opts: &DecodeOptions,
) -> Result<()> {
    let (tag, wt) = split(key);
    match tag {
        1 => s.trace = r.bytes(wt).at("Span", "trace_id")?,
        2 => s.span = r.bytes(wt).at("Span", "span_id")?,
        4 => s.parent = r.bytes(wt).at("Span", "parent_span_id")?,
        5 => s.name = r.utf8_field(wt).at("Span", "name")?,
        6 => s.kind = r.varint_field(wt).at("Span", "kind")? as i32,
        7 => s.start = r.fixed64_field(wt).at("Span", "start_time_unix_nano")?,
        8 => s.end = r.fixed64_field(wt).at("Span", "end_time_unix_nano")?,
        9 => {
            Reader::expect(wt, WireType::LengthDelimited).at("Span", "attributes")?;
            span_attribute(r, ctx, &mut s.pii, opts)?;
        }
        15 => {
            Reader::expect(wt, WireType::LengthDelimited).at("Span", "status")?;
            status(r, ctx, &mut s.status).at("Span", "status")?;
        }
        _ => r.skip(wt, tag, ctx)?,
    }
    Ok(())
}

/// The body of a `Status` occurrence.
fn status(r: &mut Reader<'_>, ctx: u32, code: &mut i32) -> Result<()> {
    r.embedded(ctx, |r, key, ctx| {
        match key {
            keys::LEN_2 => {
                r.utf8().at("Status", "message")?;
            }
            keys::STATUS_CODE => *code = r.varint().at("Status", "code")? as i32,
            _ => {
                let (tag, wt) = split(key);
                match tag {
                    2 => {
                        r.utf8_field(wt).at("Status", "message")?;
                    }
                    3 => *code = r.varint_field(wt).at("Status", "code")? as i32,
                    _ => r.skip(wt, tag, ctx)?,
                }
            }
        }
        Ok(())
    })
}

/// Walks a `TracesData`. For each `ResourceSpans`, once all of it is read (its
/// `resource` may follow its spans), calls `emit` with the resource, the key of
/// the `memo` entry it is (when it is one body that `memo` holds) and its spans
/// in wire order; `emit` drains the spans.
pub(crate) fn traces<'a>(
    buf: &'a [u8],
    opts: &DecodeOptions,
    memo: &mut Memo,
    mut emit: impl FnMut(&ResourceAttrs<&'a [u8]>, Option<MemoKey>, &mut Vec<WireSpan<'a>>),
) -> Result<()> {
    let mut r = Reader { buf, pos: 0 };
    let mut spans = Vec::with_capacity(16);
    while r.pos < buf.len() {
        let (tag, wt) = split(r.key()?);
        if tag != 1 {
            r.skip(wt, tag, RECURSION_LIMIT)?;
            continue;
        }
        let mut attrs = ResourceAttrs::default();
        let mut seen = None;
        r.message(wt, RECURSION_LIMIT, |r, key, ctx| match key {
            keys::LEN_1 => memo_resource(r, ctx, &mut attrs, &mut seen, memo, opts)
                .at("ResourceSpans", "resource"),
            keys::LEN_2 => scope_spans(r, ctx, &mut spans, opts).at("ResourceSpans", "scope_spans"),
            _ => {
                let (tag, wt) = split(key);
                match tag {
                    1 => Reader::expect(wt, WireType::LengthDelimited)
                        .and_then(|()| memo_resource(r, ctx, &mut attrs, &mut seen, memo, opts))
                        .at("ResourceSpans", "resource"),
                    2 => Reader::expect(wt, WireType::LengthDelimited)
                        .and_then(|()| scope_spans(r, ctx, &mut spans, opts))
                        .at("ResourceSpans", "scope_spans"),
                    _ => r.skip(wt, tag, ctx),
                }
            }
        })
        .at("TracesData", "resource_spans")?;
        emit(&attrs, seen.flatten(), &mut spans);
        spans.clear();
    }
    Ok(())
}

/// The body of a `ScopeSpans`: its spans are appended to `spans`.
fn scope_spans<'a>(
    r: &mut Reader<'a>,
    ctx: u32,
    spans: &mut Vec<WireSpan<'a>>,
    opts: &DecodeOptions,
) -> Result<()> {
    r.embedded(ctx, |r, key, ctx| {
        if key == keys::LEN_2 {
            spans.push(span(r, ctx, opts).at("ScopeSpans", "spans")?);
            return Ok(());
        }
        let (tag, wt) = split(key);
        if tag == 2 {
            Reader::expect(wt, WireType::LengthDelimited).at("ScopeSpans", "spans")?;
            spans.push(span(r, ctx, opts).at("ScopeSpans", "spans")?);
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

/// The body of a `LogRecord`.
#[inline]
fn log_record<'a>(r: &mut Reader<'a>, ctx: u32, opts: &DecodeOptions) -> Result<WireLog<'a>> {
    if ctx >= 4 {
        if let Some((body, end)) = body_at(r) {
            if let Some(l) = plain::log_record(body, opts) {
                r.pos = end;
                return Ok(l);
            }
        }
    }
    let mut l = WireLog::default();
    let mut body = Val::Unset;
    r.embedded(ctx, |r, key, ctx| {
        match key {
            keys::LOG_TIME => l.time = r.fixed64().at("LogRecord", "time_unix_nano")?,
            keys::LOG_SEVERITY => {
                l.severity = r.varint().at("LogRecord", "severity_number")? as i32
            }
            keys::LOG_BODY => any_value::<true>(r, ctx, &mut body, opts).at("LogRecord", "body")?,
            keys::LOG_ATTRIBUTE => log_attribute(r, ctx, &mut l.attrs, opts)?,
            keys::LOG_TRACE => l.trace = r.len_delimited().at("LogRecord", "trace_id")?,
            keys::LOG_SPAN => l.span = r.len_delimited().at("LogRecord", "span_id")?,
            keys::LOG_OBSERVED => {
                l.observed = r.fixed64().at("LogRecord", "observed_time_unix_nano")?
            }
            _ => log_field(r, key, ctx, &mut l, &mut body, opts)?,
        }
        Ok(())
    })?;
    if !l.attrs.pii {
        l.attrs.pii = body.pii(opts);
    }
    Ok(l)
}

/// The body of a log attribute, folded into the record's flags (values are no
/// longer scanned for PII once the record holds some).
#[inline(always)]
fn log_attribute(
    r: &mut Reader<'_>,
    ctx: u32,
    flags: &mut AttrFlags,
    opts: &DecodeOptions,
) -> Result<()> {
    let (key, value) = if flags.pii {
        key_value::<false>(r, ctx, opts)
    } else {
        key_value::<true>(r, ctx, opts)
    }
    .at("LogRecord", "attributes")?;
    fold_log_attribute(flags, key, &value, opts);
    Ok(())
}

/// Folds a log attribute into the record's flags.
#[inline(always)]
fn fold_log_attribute(flags: &mut AttrFlags, key: &[u8], value: &Val<'_>, opts: &DecodeOptions) {
    if REQUEST_ATTRIBUTES.iter().any(|k| k.as_bytes() == key)
        || opts.request_attributes.iter().any(|k| k.as_bytes() == key)
    {
        flags.request = true;
    }
    if STATUS_CODE_ATTRIBUTES.iter().any(|k| k.as_bytes() == key) {
        flags.status_5xx |= value.status_code().is_some_and(|c| c >= 500);
    }
    if !flags.pii {
        flags.pii = value.pii(opts);
    }
}

/// A field of a `LogRecord` off the fast path.
#[inline(never)]
fn log_field<'a>(
    r: &mut Reader<'a>,
    key: Key,
    ctx: u32,
    l: &mut WireLog<'a>,
    body: &mut Val<'a>,
    opts: &DecodeOptions,
) -> Result<()> {
    let (tag, wt) = split(key);
    match tag {
        1 => l.time = r.fixed64_field(wt).at("LogRecord", "time_unix_nano")?,
        2 => l.severity = r.varint_field(wt).at("LogRecord", "severity_number")? as i32,
        5 => Reader::expect(wt, WireType::LengthDelimited)
            .and_then(|()| any_value::<true>(r, ctx, body, opts))
            .at("LogRecord", "body")?,
        6 => {
            Reader::expect(wt, WireType::LengthDelimited).at("LogRecord", "attributes")?;
            log_attribute(r, ctx, &mut l.attrs, opts)?;
        }
        9 => l.trace = r.bytes(wt).at("LogRecord", "trace_id")?,
        10 => l.span = r.bytes(wt).at("LogRecord", "span_id")?,
        11 => {
            l.observed = r
                .fixed64_field(wt)
                .at("LogRecord", "observed_time_unix_nano")?
        }
        _ => r.skip(wt, tag, ctx)?,
    }
    Ok(())
}

/// Walks a `LogsData`, like [`traces`].
pub(crate) fn logs<'a>(
    buf: &'a [u8],
    opts: &DecodeOptions,
    memo: &mut Memo,
    mut emit: impl FnMut(&ResourceAttrs<&'a [u8]>, Option<MemoKey>, &mut Vec<WireLog<'a>>),
) -> Result<()> {
    let mut r = Reader { buf, pos: 0 };
    let mut records = Vec::with_capacity(16);
    while r.pos < buf.len() {
        let (tag, wt) = split(r.key()?);
        if tag != 1 {
            r.skip(wt, tag, RECURSION_LIMIT)?;
            continue;
        }
        let mut attrs = ResourceAttrs::default();
        let mut seen = None;
        r.message(wt, RECURSION_LIMIT, |r, key, ctx| match key {
            keys::LEN_1 => memo_resource(r, ctx, &mut attrs, &mut seen, memo, opts)
                .at("ResourceLogs", "resource"),
            keys::LEN_2 => scope_logs(r, ctx, &mut records, opts).at("ResourceLogs", "scope_logs"),
            _ => {
                let (tag, wt) = split(key);
                match tag {
                    1 => Reader::expect(wt, WireType::LengthDelimited)
                        .and_then(|()| memo_resource(r, ctx, &mut attrs, &mut seen, memo, opts))
                        .at("ResourceLogs", "resource"),
                    2 => Reader::expect(wt, WireType::LengthDelimited)
                        .and_then(|()| scope_logs(r, ctx, &mut records, opts))
                        .at("ResourceLogs", "scope_logs"),
                    _ => r.skip(wt, tag, ctx),
                }
            }
        })
        .at("LogsData", "resource_logs")?;
        emit(&attrs, seen.flatten(), &mut records);
        records.clear();
    }
    Ok(())
}

/// The body of a `ScopeLogs`: its records are appended to `records`.
fn scope_logs<'a>(
    r: &mut Reader<'a>,
    ctx: u32,
    records: &mut Vec<WireLog<'a>>,
    opts: &DecodeOptions,
) -> Result<()> {
    r.embedded(ctx, |r, key, ctx| {
        if key == keys::LEN_2 {
            records.push(log_record(r, ctx, opts).at("ScopeLogs", "log_records")?);
            return Ok(());
        }
        let (tag, wt) = split(key);
        if tag == 2 {
            Reader::expect(wt, WireType::LengthDelimited).at("ScopeLogs", "log_records")?;
            records.push(log_record(r, ctx, opts).at("ScopeLogs", "log_records")?);
            Ok(())
        } else {
            r.skip(wt, tag, ctx)
        }
    })
}

/// Whole messages read at once when they are written the usual way.
///
/// Each `plain_*` function reads the body of one embedded message as a slice
/// with a local cursor, and gives up (`None`) at anything it does not expect:
/// a field that runs past the body, a group, a known field with the wrong wire
/// type or a key written in more bytes than needed, an array or kvlist value,
/// a string that is not UTF-8. The caller has then read nothing and reads the
/// message with the general code, which behaves like prost on every input; a
/// body the fast path reads to its end is one the general code reads to the
/// same result, since every field in it is one the general code reads the same
/// way (and the nesting is at most three levels, which the callers check
/// against the recursion budget).
mod plain {
    use super::{string_value, utf8, Val};
    use crate::DecodeOptions;

    /// A varint at `b[*i..]`, read as [`super::Reader::varint`] reads it.
    #[inline(always)]
    pub(super) fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
        let first = *b.get(*i)?;
        if first < 0x80 {
            *i += 1;
            return Some(u64::from(first));
        }
        varint_long(b, i)
    }

    fn varint_long(b: &[u8], i: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for count in 0..10 {
            let byte = *b.get(*i)?;
            *i += 1;
            value |= u64::from(byte & 0x7f) << (count * 7);
            if byte < 0x80 {
                return (count < 9 || byte < 0x02).then_some(value);
            }
        }
        None
    }

    /// A length-delimited body at `b[*i..]` (after its key).
    #[inline(always)]
    pub(super) fn len_delimited<'a>(b: &'a [u8], i: &mut usize) -> Option<&'a [u8]> {
        let len = usize::try_from(varint(b, i)?).ok()?;
        let start = *i;
        let body = b.get(start..start.checked_add(len)?)?;
        *i = start + len;
        Some(body)
    }

    /// The 8 bytes of a `fixed64` at `b[*i..]`.
    #[inline(always)]
    fn fixed64(b: &[u8], i: &mut usize) -> Option<u64> {
        let v = u64::from_le_bytes(b.get(*i..*i + 8)?.try_into().ok()?);
        *i += 8;
        Some(v)
    }

    /// Skips a field whose key `key` (read) is not one of `known` tags; gives
    /// up on a known tag (off the fast path), a group or an invalid key.
    #[inline(always)]
    fn skip(b: &[u8], i: &mut usize, key: u64, known: &[u64]) -> Option<()> {
        if key > u64::from(u32::MAX) || key >> 3 == 0 || known.contains(&(key >> 3)) {
            return None;
        }
        match key & 7 {
            0 => {
                varint(b, i)?;
            }
            1 => {
                b.get(*i..*i + 8)?;
                *i += 8;
            }
            2 => {
                len_delimited(b, i)?;
            }
            5 => {
                b.get(*i..*i + 4)?;
                *i += 4;
            }
            _ => return None,
        }
        Some(())
    }

    /// The key at `b[*i - 1..]`, whose first byte was taken for a one-byte
    /// key the fast path does not read.
    #[inline(always)]
    fn key_again(b: &[u8], i: &mut usize) -> Option<u64> {
        *i -= 1;
        varint(b, i)
    }

    /// An `AnyValue` body merged into `value`.
    #[inline(always)]
    pub(super) fn any_value<'a, const SCAN: bool>(
        b: &'a [u8],
        value: &mut Val<'a>,
        opts: &DecodeOptions,
    ) -> Option<()> {
        let mut i = 0;
        while i < b.len() {
            let key = b[i];
            i += 1;
            match key {
                0x0a => {
                    let s = len_delimited(b, &mut i)?;
                    *value = Val::Str(s, string_value::<SCAN>(s, opts).ok()?);
                }
                0x18 => *value = Val::Int(varint(b, &mut i)? as i64),
                0x10 => {
                    varint(b, &mut i)?;
                    *value = Val::Other;
                }
                0x21 => *value = Val::Double(f64::from_bits(fixed64(b, &mut i)?)),
                0x3a => {
                    len_delimited(b, &mut i)?;
                    *value = Val::Other;
                }
                _ => {
                    let key = key_again(b, &mut i)?;
                    skip(b, &mut i, key, &[1, 2, 3, 4, 5, 6, 7])?;
                }
            }
        }
        Some(())
    }

    /// A `KeyValue` body: its key and value.
    #[inline(always)]
    pub(super) fn key_value<'a, const SCAN: bool>(
        b: &'a [u8],
        opts: &DecodeOptions,
    ) -> Option<(&'a [u8], Val<'a>)> {
        let mut key: &[u8] = b"";
        let mut value = Val::Unset;
        let mut i = 0;
        while i < b.len() {
            let k = b[i];
            i += 1;
            match k {
                0x0a => {
                    key = len_delimited(b, &mut i)?;
                    utf8(key).ok()?;
                }
                0x12 => any_value::<SCAN>(len_delimited(b, &mut i)?, &mut value, opts)?,
                _ => {
                    let k = key_again(b, &mut i)?;
                    skip(b, &mut i, k, &[1, 2])?;
                }
            }
        }
        Some((key, value))
    }

    /// A `Resource` body, its attributes folded into `attrs`.
    #[inline(always)]
    pub(super) fn resource<'a>(
        b: &'a [u8],
        attrs: &mut super::ResourceAttrs<&'a [u8]>,
        opts: &DecodeOptions,
    ) -> Option<()> {
        let mut i = 0;
        while i < b.len() {
            let k = b[i];
            i += 1;
            if k == 0x0a {
                let (key, value) = key_value::<false>(len_delimited(b, &mut i)?, opts)?;
                attrs.offer(key, value.str());
            } else {
                let k = key_again(b, &mut i)?;
                skip(b, &mut i, k, &[1])?;
            }
        }
        Some(())
    }

    /// A `Status` body: its code, if set.
    #[inline(always)]
    fn status(b: &[u8], code: &mut i32) -> Option<()> {
        let mut i = 0;
        while i < b.len() {
            let k = b[i];
            i += 1;
            match k {
                0x12 => utf8(len_delimited(b, &mut i)?).ok()?,
                0x18 => *code = varint(b, &mut i)? as i32,
                _ => {
                    let k = key_again(b, &mut i)?;
                    skip(b, &mut i, k, &[2, 3])?;
                }
            }
        }
        Some(())
    }

    /// A `Span` body.
    #[inline(always)]
    pub(super) fn span<'a>(b: &'a [u8], opts: &DecodeOptions) -> Option<super::WireSpan<'a>> {
        let mut s = super::WireSpan::default();
        let mut i = 0;
        while i < b.len() {
            let k = b[i];
            i += 1;
            match k {
                0x0a => s.trace = len_delimited(b, &mut i)?,
                0x12 => s.span = len_delimited(b, &mut i)?,
                0x22 => s.parent = len_delimited(b, &mut i)?,
                0x2a => {
                    s.name = len_delimited(b, &mut i)?;
                    utf8(s.name).ok()?;
                }
                0x30 => s.kind = varint(b, &mut i)? as i32,
                0x39 => s.start = fixed64(b, &mut i)?,
                0x41 => s.end = fixed64(b, &mut i)?,
                0x4a => {
                    let kv = len_delimited(b, &mut i)?;
                    if s.pii {
                        key_value::<false>(kv, opts)?;
                    } else {
                        let (_, value) = key_value::<true>(kv, opts)?;
                        s.pii = value.pii(opts);
                    }
                }
                0x7a => status(len_delimited(b, &mut i)?, &mut s.status)?,
                _ => {
                    let k = key_again(b, &mut i)?;
                    skip(b, &mut i, k, &[1, 2, 4, 5, 6, 7, 8, 9, 15])?;
                }
            }
        }
        Some(s)
    }

    /// A `LogRecord` body.
    #[inline(always)]
    pub(super) fn log_record<'a>(b: &'a [u8], opts: &DecodeOptions) -> Option<super::WireLog<'a>> {
        let mut l = super::WireLog::default();
        let mut body = Val::Unset;
        let mut i = 0;
        while i < b.len() {
            let k = b[i];
            i += 1;
            match k {
                0x09 => l.time = fixed64(b, &mut i)?,
                0x10 => l.severity = varint(b, &mut i)? as i32,
                0x2a => any_value::<true>(len_delimited(b, &mut i)?, &mut body, opts)?,
                0x32 => {
                    let kv = len_delimited(b, &mut i)?;
                    let (key, value) = if l.attrs.pii {
                        key_value::<false>(kv, opts)?
                    } else {
                        key_value::<true>(kv, opts)?
                    };
                    super::fold_log_attribute(&mut l.attrs, key, &value, opts);
                }
                0x4a => l.trace = len_delimited(b, &mut i)?,
                0x52 => l.span = len_delimited(b, &mut i)?,
                0x59 => l.observed = fixed64(b, &mut i)?,
                _ => {
                    let k = key_again(b, &mut i)?;
                    skip(b, &mut i, k, &[1, 2, 5, 6, 9, 10, 11])?;
                }
            }
        }
        if !l.attrs.pii {
            l.attrs.pii = body.pii(opts);
        }
        Some(l)
    }
}

/// The body of the embedded message at `r` if it lies inside the buffer, and
/// the position after it.
#[inline(always)]
fn body_at<'a>(r: &Reader<'a>) -> Option<(&'a [u8], usize)> {
    let mut i = r.pos;
    let body = plain::len_delimited(r.buf, &mut i)?;
    Some((body, i))
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_ascii_agrees_with_std_at_every_length_and_position() {
        for n in 0..40 {
            let ascii = vec![b'a'; n];
            assert!(super::is_ascii(&ascii), "{n}");
            for i in 0..n {
                let mut b = ascii.clone();
                b[i] = 0x80 | (i as u8);
                assert!(!super::is_ascii(&b), "{n} {i}");
            }
        }
    }
}
