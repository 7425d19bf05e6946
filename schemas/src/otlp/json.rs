//! OTLP JSON (the OTLP/JSON mapping of the protobuf schema).
//!
//! Keys are lowerCamelCase (snake_case is accepted too, as protobuf JSON parsers
//! must); trace and span ids are hex strings of either case; 64-bit integers may be
//! strings or numbers; enums may be numbers or their names. One malformed span or
//! log record rejects only itself.
//!
//! A message is first read in one pass (see "One-pass decoding" below); when that
//! gives up, it is read again with the serde types of this file, each record on
//! its own from its `RawValue`, which is what defines the result.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Any, AttrFlags, RawLog, RawSpan, ResourceAttrs};
use crate::ids;
use crate::model::Origin;
use crate::reject::{Reason, Rejection};
use crate::{DecodeOptions, Decoded};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TracesData {
    #[serde(default, alias = "resource_spans")]
    pub resource_spans: Vec<ResourceSpans>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceSpans {
    #[serde(default)]
    pub resource: Option<Resource>,
    #[serde(default, alias = "scope_spans")]
    pub scope_spans: Vec<ScopeSpans>,
}

#[derive(Deserialize)]
pub(crate) struct Resource {
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
}

#[derive(Deserialize)]
pub(crate) struct ScopeSpans {
    #[serde(default)]
    pub spans: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Span {
    #[serde(default, alias = "trace_id")]
    pub trace_id: String,
    #[serde(default, alias = "span_id")]
    pub span_id: String,
    #[serde(default, alias = "parent_span_id")]
    pub parent_span_id: String,
    #[serde(default, alias = "start_time_unix_nano", deserialize_with = "de_u64")]
    pub start_time_unix_nano: u64,
    #[serde(default, alias = "end_time_unix_nano", deserialize_with = "de_u64")]
    pub end_time_unix_nano: u64,
    #[serde(default, deserialize_with = "de_span_kind")]
    pub kind: i32,
    #[serde(default = "no_name", deserialize_with = "de_span_name")]
    pub name: Arc<str>,
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
    #[serde(default)]
    pub status: Option<Status>,
}

#[derive(Deserialize)]
pub(crate) struct Status {
    #[serde(default, deserialize_with = "de_status_code")]
    pub code: i32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LogsData {
    #[serde(default, alias = "resource_logs")]
    pub resource_logs: Vec<ResourceLogs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceLogs {
    #[serde(default)]
    pub resource: Option<Resource>,
    #[serde(default, alias = "scope_logs")]
    pub scope_logs: Vec<ScopeLogs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ScopeLogs {
    #[serde(default, alias = "log_records")]
    pub log_records: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LogRecord {
    #[serde(default, alias = "time_unix_nano", deserialize_with = "de_u64")]
    pub time_unix_nano: u64,
    #[serde(
        default,
        alias = "observed_time_unix_nano",
        deserialize_with = "de_u64"
    )]
    pub observed_time_unix_nano: u64,
    #[serde(default, alias = "severity_number", deserialize_with = "de_severity")]
    pub severity_number: i32,
    #[serde(default)]
    pub body: Option<AnyValue>,
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
    #[serde(default, alias = "trace_id")]
    pub trace_id: String,
    #[serde(default, alias = "span_id")]
    pub span_id: String,
}

#[derive(Deserialize)]
pub(crate) struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: Option<AnyValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AnyValue {
    #[serde(default, alias = "string_value")]
    string_value: Option<String>,
    #[serde(default, alias = "bool_value")]
    bool_value: Option<bool>,
    #[serde(default, alias = "int_value", deserialize_with = "de_opt_i64")]
    int_value: Option<i64>,
    #[serde(default, alias = "double_value")]
    double_value: Option<f64>,
    #[serde(default, alias = "array_value")]
    array_value: Option<Values<AnyValue>>,
    #[serde(default, alias = "kvlist_value")]
    kvlist_value: Option<Values<KeyValue>>,
    #[serde(default, alias = "bytes_value")]
    bytes_value: Option<String>,
}

#[derive(Deserialize)]
struct Values<T> {
    #[serde(default = "Vec::new")]
    values: Vec<T>,
}

impl AnyValue {
    /// The value, taking the first present field in the order of the protobuf oneof.
    fn to_any(&self, opts: &DecodeOptions) -> Any<'_> {
        if let Some(s) = &self.string_value {
            Any::Str(Cow::Borrowed(s))
        } else if self.bool_value.is_some() {
            Any::Other
        } else if let Some(i) = self.int_value {
            Any::Int(i)
        } else if let Some(d) = self.double_value {
            Any::Double(d)
        } else if let Some(a) = &self.array_value {
            Any::Array(a.values.iter().any(|v| v.to_any(opts).pii(opts)))
        } else if let Some(kv) = &self.kvlist_value {
            Any::Kvlist(kv.values.iter().any(|kv| kv.value_any(opts).pii(opts)))
        } else if self.bytes_value.is_some() {
            Any::Other
        } else {
            Any::Unset
        }
    }
}

impl KeyValue {
    fn value_any(&self, opts: &DecodeOptions) -> Any<'_> {
        self.value.as_ref().map_or(Any::Unset, |v| v.to_any(opts))
    }
}

/// The flags of a record's attributes and (for a log record) body.
pub(crate) fn attr_flags(
    attributes: &[KeyValue],
    body: Option<&AnyValue>,
    opts: &DecodeOptions,
) -> AttrFlags {
    let mut flags = AttrFlags::default();
    for kv in attributes {
        flags.log_attribute(kv.key.as_bytes(), &kv.value_any(opts), opts);
    }
    if let Some(b) = body {
        flags.body(&b.to_any(opts), opts);
    }
    flags
}

/// The SPEC §1 resource attributes.
pub(crate) fn resource_attrs<'a>(
    resource: Option<&'a Resource>,
    opts: &DecodeOptions,
) -> ResourceAttrs<Cow<'a, str>> {
    let mut attrs = ResourceAttrs::default();
    for kv in resource.map_or(&[][..], |r| &r.attributes) {
        attrs.offer(kv.key.as_bytes(), kv.value_any(opts).into_str());
    }
    attrs
}

/// A JSON number or string, as the record-by-record decoder buffers it (an
/// untagged enum: its error is serde's "data did not match any variant").
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    U(u64),
    I(i64),
    F(f64),
    S(String),
}

impl NumOrStr {
    fn num(&self) -> Num<'_> {
        match self {
            NumOrStr::U(u) => Num::U(*u),
            NumOrStr::I(i) => Num::I(*i),
            NumOrStr::F(f) => Num::F(*f),
            NumOrStr::S(s) => Num::S(s),
        }
    }
}

/// A JSON number or string, as both decoders read it: a non-negative integer is
/// `U`, a negative one `I`, any other number `F`.
#[derive(Clone, Copy)]
enum Num<'a> {
    U(u64),
    I(i64),
    F(f64),
    S(&'a str),
}

type NumResult<T> = Result<T, Cow<'static, str>>;

/// A 64-bit timestamp: an integer, a float with no fraction, or a decimal string
/// (empty is 0).
fn u64_of(n: Num<'_>) -> NumResult<u64> {
    match n {
        Num::U(u) => Ok(u),
        Num::I(i) => u64::try_from(i).map_err(|_| "negative timestamp".into()),
        Num::F(f) if f >= 0.0 && f.fract() == 0.0 => Ok(f as u64),
        Num::F(_) => Err("timestamp is not an integer".into()),
        Num::S("") => Ok(0),
        Num::S(s) => decimal_u64(s).ok_or_else(|| "timestamp is not an integer".into()),
    }
}

/// `s.parse::<u64>()`, with a shortcut for up to 19 plain digits (which cannot
/// overflow).
fn decimal_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if (1..=19).contains(&b.len()) && b.iter().all(u8::is_ascii_digit) {
        return Some(b.iter().fold(0u64, |v, d| v * 10 + u64::from(d - b'0')));
    }
    s.parse().ok()
}

/// An `intValue`.
fn i64_of(n: Num<'_>) -> NumResult<i64> {
    match n {
        Num::U(u) => i64::try_from(u).map_err(|_| "int64 overflow".into()),
        Num::I(i) => Ok(i),
        Num::F(f) if f.fract() == 0.0 => Ok(f as i64),
        Num::F(_) => Err("intValue is not an integer".into()),
        Num::S(s) => s.parse().map_err(|_| "intValue is not an integer".into()),
    }
}

const SPAN_KINDS: [(&str, i32); 6] = [
    ("SPAN_KIND_UNSPECIFIED", 0),
    ("SPAN_KIND_INTERNAL", 1),
    ("SPAN_KIND_SERVER", 2),
    ("SPAN_KIND_CLIENT", 3),
    ("SPAN_KIND_PRODUCER", 4),
    ("SPAN_KIND_CONSUMER", 5),
];

const STATUS_CODES: [(&str, i32); 3] = [
    ("STATUS_CODE_UNSET", 0),
    ("STATUS_CODE_OK", 1),
    ("STATUS_CODE_ERROR", 2),
];

/// An enum: its number, as a number or a decimal string, or its name.
fn enum_of(n: Num<'_>, names: &[(&str, i32)]) -> NumResult<i32> {
    match n {
        Num::U(u) => i32::try_from(u).map_err(|_| "enum out of range".into()),
        Num::I(i) => i32::try_from(i).map_err(|_| "enum out of range".into()),
        Num::F(_) => Err("enum is not an integer".into()),
        Num::S(s) => s
            .parse()
            .ok()
            .or_else(|| names.iter().find(|(n, _)| *n == s).map(|(_, v)| *v))
            .ok_or_else(|| format!("unknown enum value {s}").into()),
    }
}

fn span_kind_of(n: Num<'_>) -> NumResult<i32> {
    enum_of(n, &SPAN_KINDS)
}

fn status_code_of(n: Num<'_>) -> NumResult<i32> {
    enum_of(n, &STATUS_CODES)
}

/// A `severityNumber`: its number or `SEVERITY_NUMBER_<name>`.
fn severity_of(n: Num<'_>) -> NumResult<i32> {
    const NAMES: [&str; 24] = [
        "TRACE", "TRACE2", "TRACE3", "TRACE4", "DEBUG", "DEBUG2", "DEBUG3", "DEBUG4", "INFO",
        "INFO2", "INFO3", "INFO4", "WARN", "WARN2", "WARN3", "WARN4", "ERROR", "ERROR2", "ERROR3",
        "ERROR4", "FATAL", "FATAL2", "FATAL3", "FATAL4",
    ];
    match n {
        Num::S(s) => {
            if let Ok(n) = s.parse() {
                return Ok(n);
            }
            match s.strip_prefix("SEVERITY_NUMBER_") {
                Some("UNSPECIFIED") => Ok(0),
                Some(name) => NAMES
                    .iter()
                    .position(|n| *n == name)
                    .map(|p| p as i32 + 1)
                    .ok_or_else(|| format!("unknown severity {s}").into()),
                None => Err(format!("unknown severity {s}").into()),
            }
        }
        Num::U(u) => i32::try_from(u).map_err(|_| "enum out of range".into()),
        Num::I(i) => i32::try_from(i).map_err(|_| "enum out of range".into()),
        Num::F(_) => Err("enum is not an integer".into()),
    }
}

/// Reads a [`NumOrStr`] and converts it, as the record-by-record decoder does.
fn de_num<'de, D: Deserializer<'de>, T>(
    d: D,
    convert: impl FnOnce(Num<'_>) -> NumResult<T>,
) -> Result<T, D::Error> {
    convert(NumOrStr::deserialize(d)?.num()).map_err(de::Error::custom)
}

fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    de_num(d, u64_of)
}

fn de_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    de_num(d, i64_of).map(Some)
}

fn de_span_kind<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    de_num(d, span_kind_of)
}

fn de_status_code<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    de_num(d, status_code_of)
}

fn de_severity<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    de_num(d, severity_of)
}

// One-pass decoding.
//
// The whole message is read in one pass: strings are borrowed (copied only when
// they hold escapes), a number or string is read by one visitor without trying
// variants, members not read are skipped as `IgnoredAny`, and attributes are
// folded into flags as they are read. It follows the serde types above and gives
// up at the first thing they would reject (a member of the wrong type, a
// duplicate member, an unknown enum name, a syntax error) or that it does not
// handle (an object written as an array, invalid UTF-8); the message is then
// decoded record by record, which rejects only the bad records, with serde's
// messages. A message it accepts decodes to the same records either way.

/// The one-pass decoder gives up; the text is never shown.
fn give_up<E: de::Error>() -> E {
    E::custom("")
}

/// A member name, mapped to a field number (0: not read).
struct Field<N>(N);

impl<'de, N: Fn(&str) -> u8> DeserializeSeed<'de> for Field<N> {
    type Value = u8;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u8, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de, N: Fn(&str) -> u8> Visitor<'de> for Field<N> {
    type Value = u8;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u8, E> {
        Ok((self.0)(v))
    }
}

/// Reads an object's members: `member` reads the value of each member `names`
/// maps to a field number; the others are skipped. A field read twice gives up,
/// as a duplicate field is an error of serde derive.
fn members<'de, A, N, M>(map: &mut A, names: N, mut member: M) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    N: Fn(&str) -> u8 + Copy,
    M: FnMut(u8, &mut A) -> Result<(), A::Error>,
{
    let mut seen = 0u32;
    while let Some(f) = map.next_key_seed(Field(names))? {
        if f == 0 {
            map.next_value::<IgnoredAny>()?;
            continue;
        }
        let bit = 1 << f;
        if seen & bit != 0 {
            return Err(give_up());
        }
        seen |= bit;
        member(f, map)?;
    }
    Ok(())
}

/// Implements `DeserializeSeed` for a visitor that reads itself with `$method`.
macro_rules! seed {
    ($method:ident, [$($gen:tt)*], $ty:ty, $value:ty) => {
        impl<'de, $($gen)*> DeserializeSeed<'de> for $ty {
            type Value = $value;

            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<$value, D::Error> {
                d.$method(self)
            }
        }
    };
}

/// A string, borrowed unless it holds escapes.
struct Str;

seed!(deserialize_string, [], Str, Cow<'de, str>);

impl<'de> Visitor<'de> for Str {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// An optional string (`null` is `None`).
struct OptStr;

seed!(deserialize_option, [], OptStr, Option<Cow<'de, str>>);

impl<'de> Visitor<'de> for OptStr {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Str.deserialize(d).map(Some)
    }
}

/// A hex id string, read by `parse` without copying it.
struct Hex<F>(F);

impl<'de, T, F: FnOnce(&str) -> T> DeserializeSeed<'de> for Hex<F> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_string(self)
    }
}

impl<'de, T, F: FnOnce(&str) -> T> Visitor<'de> for Hex<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a hex string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Ok((self.0)(v))
    }
}

/// A number or a string, converted by `convert`.
struct Number<F>(F);

impl<'de, T, F: FnOnce(Num<'_>) -> NumResult<T>> DeserializeSeed<'de> for Number<F> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }
}

impl<T, F: FnOnce(Num<'_>) -> NumResult<T>> Number<F> {
    fn convert<E: de::Error>(self, n: Num<'_>) -> Result<T, E> {
        (self.0)(n).map_err(|_| give_up())
    }
}

impl<'de, T, F: FnOnce(Num<'_>) -> NumResult<T>> Visitor<'de> for Number<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or a string")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.convert(Num::U(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        // As the untagged enum: a non-negative value is a `U`.
        match u64::try_from(v) {
            Ok(u) => self.convert(Num::U(u)),
            Err(_) => self.convert(Num::I(v)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.convert(Num::F(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.convert(Num::S(v))
    }
}

/// An `AnyValue` object.
struct AnyObj<'o>(&'o DecodeOptions);

seed!(deserialize_map, ['o], AnyObj<'o>, Any<'de>);

impl<'de> Visitor<'de> for AnyObj<'_> {
    type Value = Any<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AnyValue")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Any<'de>, A::Error> {
        let opts = self.0;
        let (mut string, mut boolean, mut int, mut double) = (None, false, None, None);
        let (mut array, mut kvlist, mut bytes) = (None, None, false);
        let names = |k: &str| match k {
            "stringValue" | "string_value" => 1,
            "boolValue" | "bool_value" => 2,
            "intValue" | "int_value" => 3,
            "doubleValue" | "double_value" => 4,
            "arrayValue" | "array_value" => 5,
            "kvlistValue" | "kvlist_value" => 6,
            "bytesValue" | "bytes_value" => 7,
            _ => 0,
        };
        members(&mut map, names, |f, map| {
            match f {
                1 => string = map.next_value_seed(OptStr)?,
                2 => boolean = map.next_value::<Option<bool>>()?.is_some(),
                3 => int = Some(map.next_value_seed(Number(i64_of))?),
                4 => double = map.next_value::<Option<f64>>()?,
                5 => {
                    array = map.next_value_seed(OptValues {
                        kvlist: false,
                        opts,
                    })?
                }
                6 => kvlist = map.next_value_seed(OptValues { kvlist: true, opts })?,
                _ => bytes = map.next_value_seed(OptStr)?.is_some(),
            }
            Ok(())
        })?;
        // The first present field in the order of the protobuf oneof.
        Ok(if let Some(s) = string {
            Any::Str(s)
        } else if boolean {
            Any::Other
        } else if let Some(i) = int {
            Any::Int(i)
        } else if let Some(d) = double {
            Any::Double(d)
        } else if let Some(pii) = array {
            Any::Array(pii)
        } else if let Some(pii) = kvlist {
            Any::Kvlist(pii)
        } else if bytes {
            Any::Other
        } else {
            Any::Unset
        })
    }
}

/// An optional `AnyValue` (`null` is unset).
struct OptAny<'o>(&'o DecodeOptions);

seed!(deserialize_option, ['o], OptAny<'o>, Any<'de>);

impl<'de> Visitor<'de> for OptAny<'_> {
    type Value = Any<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AnyValue or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Any<'de>, E> {
        Ok(Any::Unset)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Any<'de>, D::Error> {
        AnyObj(self.0).deserialize(d)
    }
}

/// An optional `ArrayValue`/`KeyValueList` object: whether an element holds PII.
struct OptValues<'o> {
    kvlist: bool,
    opts: &'o DecodeOptions,
}

seed!(deserialize_option, ['o], OptValues<'o>, Option<bool>);

impl<'de> Visitor<'de> for OptValues<'_> {
    type Value = Option<bool>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ArrayValue, a KeyValueList or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<bool>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<bool>, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<bool>, A::Error> {
        let mut pii = false;
        let names = |k: &str| u8::from(k == "values");
        members(&mut map, names, |_, map| {
            pii = map.next_value_seed(ValueList {
                kvlist: self.kvlist,
                opts: self.opts,
            })?;
            Ok(())
        })?;
        Ok(Some(pii))
    }
}

/// The `values` of an `ArrayValue` or a `KeyValueList`: whether one holds PII.
struct ValueList<'o> {
    kvlist: bool,
    opts: &'o DecodeOptions,
}

seed!(deserialize_seq, ['o], ValueList<'o>, bool);

impl<'de> Visitor<'de> for ValueList<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut pii = false;
        if self.kvlist {
            while let Some((_, v)) = seq.next_element_seed(KeyValueObj(self.opts))? {
                pii = pii || v.pii(self.opts);
            }
        } else {
            while let Some(v) = seq.next_element_seed(AnyObj(self.opts))? {
                pii = pii || v.pii(self.opts);
            }
        }
        Ok(pii)
    }
}

/// A `KeyValue` object: its key and value.
struct KeyValueObj<'o>(&'o DecodeOptions);

seed!(deserialize_map, ['o], KeyValueObj<'o>, (Cow<'de, str>, Any<'de>));

impl<'de> Visitor<'de> for KeyValueObj<'_> {
    type Value = (Cow<'de, str>, Any<'de>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a KeyValue")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut key, mut value) = (None, Any::Unset);
        let names = |k: &str| match k {
            "key" => 1,
            "value" => 2,
            _ => 0,
        };
        members(&mut map, names, |f, map| {
            if f == 1 {
                key = Some(map.next_value_seed(Str)?);
            } else {
                value = map.next_value_seed(OptAny(self.0))?;
            }
            Ok(())
        })?;
        Ok((key.ok_or_else(give_up)?, value))
    }
}

/// A list of `KeyValue` objects, each handed to `each`.
struct KeyValues<'o, F> {
    each: F,
    opts: &'o DecodeOptions,
}

impl<'de, F: FnMut(Cow<'de, str>, Any<'de>)> DeserializeSeed<'de> for KeyValues<'_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Cow<'de, str>, Any<'de>)> Visitor<'de> for KeyValues<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of KeyValue")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some((k, v)) = seq.next_element_seed(KeyValueObj(self.opts))? {
            (self.each)(k, v);
        }
        Ok(())
    }
}

/// An optional `Resource` object; its attributes go to `attrs`.
struct OptResource<'r, 'de, 'o> {
    attrs: &'r mut ResourceAttrs<Cow<'de, str>>,
    opts: &'o DecodeOptions,
}

impl<'de> DeserializeSeed<'de> for OptResource<'_, 'de, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for OptResource<'_, 'de, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Resource or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Self { attrs, opts } = self;
        let names = |k: &str| u8::from(k == "attributes");
        members(&mut map, names, |_, map| {
            map.next_value_seed(KeyValues {
                each: |k: Cow<'de, str>, v: Any<'de>| attrs.offer(k.as_bytes(), v.into_str()),
                opts,
            })
        })
    }
}

/// An optional `Status` object: its code.
struct OptStatus;

seed!(deserialize_option, [], OptStatus, i32);

impl<'de> Visitor<'de> for OptStatus {
    type Value = i32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Status or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<i32, E> {
        Ok(0)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<i32, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<i32, A::Error> {
        let mut code = 0;
        let names = |k: &str| u8::from(k == "code");
        members(&mut map, names, |_, map| {
            code = map.next_value_seed(Number(status_code_of))?;
            Ok(())
        })?;
        Ok(code)
    }
}

/// What a message holds: spans or log records.
pub(super) trait Kind {
    type Raw;
    type Out;
    /// The serde type of one record.
    type Record: de::DeserializeOwned;
    /// Reads the message with its records left as raw JSON.
    fn parse_raw(bytes: &[u8]) -> serde_json::Result<Vec<RawResource>>;
    fn from_record(r: Self::Record, opts: &DecodeOptions) -> Self::Raw;
    /// The member of the top object holding the resources (`resourceSpans`).
    fn resources(k: &str) -> u8;
    /// The members of a resource object (`resource`, `scopeSpans`).
    fn resource_members(k: &str) -> u8;
    /// The member of a scope object holding the records (`spans`).
    fn records(k: &str) -> u8;
    fn record<'de, D: Deserializer<'de>>(d: D, opts: &DecodeOptions)
        -> Result<Self::Raw, D::Error>;
    fn validate(
        raw: Self::Raw,
        resource: &Option<Arc<crate::model::Resource>>,
        origin: Origin,
        opts: &DecodeOptions,
    ) -> Result<Self::Out, Rejection>;
}

/// A resource with its records as raw JSON (the scopes flattened).
pub(super) type RawResource = (Option<Resource>, Vec<Box<RawValue>>);

/// Where the one-pass decoder puts what it reads.
struct Sink<'o, K: Kind> {
    opts: &'o DecodeOptions,
    origin: Origin,
    /// The records of the resource being read (its `resource` may follow them).
    raws: Vec<K::Raw>,
    out: Decoded<K::Out>,
    index: u32,
}

struct Top<'s, 'o, K: Kind>(&'s mut Sink<'o, K>);

impl<'de, K: Kind> Visitor<'de> for Top<'_, '_, K> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OTLP JSON")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let sink = self.0;
        members(&mut map, K::resources, |_, map| {
            map.next_value_seed(Resources(&mut *sink))
        })
    }
}

/// The list of resources (`resourceSpans`).
struct Resources<'s, 'o, K: Kind>(&'s mut Sink<'o, K>);

seed!(deserialize_seq, ['s, 'o, K: Kind], Resources<'s, 'o, K>, ());

impl<'de, K: Kind> Visitor<'de> for Resources<'_, '_, K> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of resources")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(ResourceObj(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// One resource (`ResourceSpans`): its records are validated once it is read.
struct ResourceObj<'s, 'o, K: Kind>(&'s mut Sink<'o, K>);

seed!(deserialize_map, ['s, 'o, K: Kind], ResourceObj<'s, 'o, K>, ());

impl<'de, K: Kind> Visitor<'de> for ResourceObj<'_, '_, K> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a resource")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let sink = self.0;
        let opts = sink.opts;
        let mut attrs = ResourceAttrs::default();
        members(&mut map, K::resource_members, |f, map| {
            if f == 1 {
                map.next_value_seed(OptResource {
                    attrs: &mut attrs,
                    opts,
                })
            } else {
                map.next_value_seed(Scopes(&mut *sink))
            }
        })?;
        let resource = attrs.resource();
        let mut raws = std::mem::take(&mut sink.raws);
        for raw in raws.drain(..) {
            let origin = Origin {
                index: sink.index,
                ..sink.origin
            };
            let result = K::validate(raw, &resource, origin, sink.opts);
            super::push(&mut sink.out, result);
            sink.index += 1;
        }
        sink.raws = raws;
        Ok(())
    }
}

/// The list of scopes (`scopeSpans`).
struct Scopes<'s, 'o, K: Kind>(&'s mut Sink<'o, K>);

seed!(deserialize_seq, ['s, 'o, K: Kind], Scopes<'s, 'o, K>, ());

impl<'de, K: Kind> Visitor<'de> for Scopes<'_, '_, K> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of scopes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(ScopeObj(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// One scope (`ScopeSpans`).
struct ScopeObj<'s, 'o, K: Kind>(&'s mut Sink<'o, K>);

seed!(deserialize_map, ['s, 'o, K: Kind], ScopeObj<'s, 'o, K>, ());

impl<'de, K: Kind> Visitor<'de> for ScopeObj<'_, '_, K> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scope")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let sink = self.0;
        members(&mut map, K::records, |_, map| {
            map.next_value_seed(Records(&mut *sink))
        })
    }
}

/// The list of records (`spans`).
struct Records<'s, 'o, K: Kind>(&'s mut Sink<'o, K>);

seed!(deserialize_seq, ['s, 'o, K: Kind], Records<'s, 'o, K>, ());

impl<'de, K: Kind> Visitor<'de> for Records<'_, '_, K> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let sink = self.0;
        while let Some(raw) = seq.next_element_seed(Record::<K>(sink.opts, PhantomData))? {
            sink.raws.push(raw);
        }
        Ok(())
    }
}

/// One record, read by its [`Kind`].
struct Record<'o, K>(&'o DecodeOptions, PhantomData<K>);

impl<'de, K: Kind> DeserializeSeed<'de> for Record<'_, K> {
    type Value = K::Raw;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<K::Raw, D::Error> {
        K::record(d, self.0)
    }
}

pub(super) struct Traces;

impl Kind for Traces {
    type Raw = RawSpan;
    type Out = crate::model::Span;
    type Record = Span;

    fn parse_raw(bytes: &[u8]) -> serde_json::Result<Vec<RawResource>> {
        let data: TracesData = serde_json::from_slice(bytes)?;
        Ok(data
            .resource_spans
            .into_iter()
            .map(|rs| {
                let spans = rs.scope_spans.into_iter().flat_map(|ss| ss.spans);
                (rs.resource, spans.collect())
            })
            .collect())
    }

    fn from_record(s: Span, opts: &DecodeOptions) -> RawSpan {
        RawSpan {
            trace: ids::trace_id_from_hex(&s.trace_id),
            span: ids::span_id_from_hex(&s.span_id),
            parent: ids::span_id_from_hex(&s.parent_span_id),
            start: s.start_time_unix_nano,
            end: s.end_time_unix_nano,
            kind: s.kind,
            status: s.status.map_or(0, |st| st.code),
            pii: attr_flags(&s.attributes, None, opts).pii,
            name: s.name,
        }
    }

    fn resources(k: &str) -> u8 {
        u8::from(matches!(k, "resourceSpans" | "resource_spans"))
    }

    fn resource_members(k: &str) -> u8 {
        match k {
            "resource" => 1,
            "scopeSpans" | "scope_spans" => 2,
            _ => 0,
        }
    }

    fn records(k: &str) -> u8 {
        u8::from(k == "spans")
    }

    fn record<'de, D: Deserializer<'de>>(d: D, opts: &DecodeOptions) -> Result<RawSpan, D::Error> {
        d.deserialize_map(SpanObj(opts))
    }

    fn validate(
        raw: RawSpan,
        resource: &Option<Arc<crate::model::Resource>>,
        origin: Origin,
        opts: &DecodeOptions,
    ) -> Result<Self::Out, Rejection> {
        super::validate_span(raw, resource, origin.index, opts)
    }
}

struct SpanObj<'o>(&'o DecodeOptions);

impl<'de> Visitor<'de> for SpanObj<'_> {
    type Value = RawSpan;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a span")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSpan, A::Error> {
        let opts = self.0;
        let mut s = RawSpan {
            trace: Ok(0),
            span: Ok(0),
            parent: Ok(0),
            start: 0,
            end: 0,
            kind: 0,
            status: 0,
            pii: false,
            name: no_name(),
        };
        let mut attrs = AttrFlags::default();
        let names = |k: &str| match k {
            "traceId" | "trace_id" => 1,
            "spanId" | "span_id" => 2,
            "parentSpanId" | "parent_span_id" => 3,
            "startTimeUnixNano" | "start_time_unix_nano" => 4,
            "endTimeUnixNano" | "end_time_unix_nano" => 5,
            "kind" => 6,
            "attributes" => 7,
            "status" => 8,
            "name" => 9,
            _ => 0,
        };
        members(&mut map, names, |f, map| {
            match f {
                1 => s.trace = map.next_value_seed(Hex(ids::trace_id_from_hex))?,
                2 => s.span = map.next_value_seed(Hex(ids::span_id_from_hex))?,
                3 => s.parent = map.next_value_seed(Hex(ids::span_id_from_hex))?,
                4 => s.start = map.next_value_seed(Number(u64_of))?,
                5 => s.end = map.next_value_seed(Number(u64_of))?,
                6 => s.kind = map.next_value_seed(Number(span_kind_of))?,
                7 => map.next_value_seed(KeyValues {
                    each: |_, v: Any<'_>| attrs.span_attribute(&v, opts),
                    opts,
                })?,
                8 => s.status = map.next_value_seed(OptStatus)?,
                _ => s.name = map.next_value_seed(SpanName)?,
            }
            Ok(())
        })?;
        s.pii = attrs.pii;
        Ok(s)
    }
}

fn no_name() -> Arc<str> {
    crate::model::span_name("")
}

fn de_span_name<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    SpanName.deserialize(d)
}

/// A span's `name`: a string; any other value (which the name is not meant to
/// be, but an unread field never rejected a span) counts as no name.
struct SpanName;

impl<'de> DeserializeSeed<'de> for SpanName {
    type Value = Arc<str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Arc<str>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SpanName {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a span name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Arc<str>, E> {
        Ok(crate::model::span_name(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Arc<str>, E> {
        Ok(no_name())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Arc<str>, E> {
        Ok(no_name())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Arc<str>, E> {
        Ok(no_name())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Arc<str>, E> {
        Ok(no_name())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Arc<str>, E> {
        Ok(no_name())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Arc<str>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(no_name())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Arc<str>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(no_name())
    }
}

pub(super) struct Logs;

impl Kind for Logs {
    type Raw = RawLog;
    type Out = crate::model::LogRecord;
    type Record = LogRecord;

    fn parse_raw(bytes: &[u8]) -> serde_json::Result<Vec<RawResource>> {
        let data: LogsData = serde_json::from_slice(bytes)?;
        Ok(data
            .resource_logs
            .into_iter()
            .map(|rl| {
                let records = rl.scope_logs.into_iter().flat_map(|sl| sl.log_records);
                (rl.resource, records.collect())
            })
            .collect())
    }

    fn from_record(l: LogRecord, opts: &DecodeOptions) -> RawLog {
        RawLog {
            trace: ids::trace_id_from_hex(&l.trace_id),
            span: ids::span_id_from_hex(&l.span_id),
            time: l.time_unix_nano,
            observed: l.observed_time_unix_nano,
            severity: l.severity_number,
            attrs: attr_flags(&l.attributes, l.body.as_ref(), opts),
        }
    }

    fn resources(k: &str) -> u8 {
        u8::from(matches!(k, "resourceLogs" | "resource_logs"))
    }

    fn resource_members(k: &str) -> u8 {
        match k {
            "resource" => 1,
            "scopeLogs" | "scope_logs" => 2,
            _ => 0,
        }
    }

    fn records(k: &str) -> u8 {
        u8::from(matches!(k, "logRecords" | "log_records"))
    }

    fn record<'de, D: Deserializer<'de>>(d: D, opts: &DecodeOptions) -> Result<RawLog, D::Error> {
        d.deserialize_map(LogObj(opts))
    }

    fn validate(
        raw: RawLog,
        resource: &Option<Arc<crate::model::Resource>>,
        origin: Origin,
        opts: &DecodeOptions,
    ) -> Result<Self::Out, Rejection> {
        super::validate_log(raw, resource, origin, opts)
    }
}

struct LogObj<'o>(&'o DecodeOptions);

impl<'de> Visitor<'de> for LogObj<'_> {
    type Value = RawLog;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a log record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawLog, A::Error> {
        let opts = self.0;
        let mut l = RawLog {
            trace: Ok(0),
            span: Ok(0),
            time: 0,
            observed: 0,
            severity: 0,
            attrs: AttrFlags::default(),
        };
        let mut body = Any::Unset;
        let names = |k: &str| match k {
            "timeUnixNano" | "time_unix_nano" => 1,
            "observedTimeUnixNano" | "observed_time_unix_nano" => 2,
            "severityNumber" | "severity_number" => 3,
            "body" => 4,
            "attributes" => 5,
            "traceId" | "trace_id" => 6,
            "spanId" | "span_id" => 7,
            _ => 0,
        };
        members(&mut map, names, |f, map| {
            match f {
                1 => l.time = map.next_value_seed(Number(u64_of))?,
                2 => l.observed = map.next_value_seed(Number(u64_of))?,
                3 => l.severity = map.next_value_seed(Number(severity_of))?,
                4 => body = map.next_value_seed(OptAny(opts))?,
                5 => map.next_value_seed(KeyValues {
                    each: |k: Cow<'_, str>, v: Any<'_>| {
                        l.attrs.log_attribute(k.as_bytes(), &v, opts)
                    },
                    opts,
                })?,
                6 => l.trace = map.next_value_seed(Hex(ids::trace_id_from_hex))?,
                _ => l.span = map.next_value_seed(Hex(ids::span_id_from_hex))?,
            }
            Ok(())
        })?;
        l.attrs.body(&body, opts);
        Ok(l)
    }
}

/// Decodes a message: in one pass, or else record by record.
pub(super) fn decode<K: Kind>(
    bytes: &[u8],
    origin: Origin,
    opts: &DecodeOptions,
) -> Decoded<K::Out> {
    one_pass::<K>(bytes, origin, opts).unwrap_or_else(|| record_by_record::<K>(bytes, origin, opts))
}

/// Decodes a message in one pass; `None` when the one-pass decoder gives up.
pub(super) fn one_pass<K: Kind>(
    bytes: &[u8],
    origin: Origin,
    opts: &DecodeOptions,
) -> Option<Decoded<K::Out>> {
    // Checked once here, so strings need no check of their own (and invalid UTF-8
    // in a skipped string, which the record-by-record decoder rejects, gives up).
    let text = std::str::from_utf8(bytes).ok()?;
    let mut de = serde_json::Deserializer::from_str(text);
    let mut sink = Sink::<K> {
        opts,
        origin,
        raws: Vec::new(),
        out: Decoded::default(),
        index: 0,
    };
    (&mut de).deserialize_map(Top(&mut sink)).ok()?;
    de.end().ok()?;
    Some(sink.out)
}

/// Decodes a message whose records are checked one by one: a record that is not
/// valid JSON of its type rejects only itself (`malformed_json` with its index and
/// serde's message). Each record is read by the one-pass reader, or when it gives
/// up, by the serde types, which tell why.
pub(super) fn record_by_record<K: Kind>(
    bytes: &[u8],
    origin: Origin,
    opts: &DecodeOptions,
) -> Decoded<K::Out> {
    let resources = match K::parse_raw(bytes) {
        Ok(r) => r,
        Err(e) => return Decoded::failed(Rejection::message(Reason::MalformedJson, e.to_string())),
    };
    let mut out = Decoded::default();
    let mut index = 0u32;
    for (resource, records) in resources {
        let resource = resource_attrs(resource.as_ref(), opts).resource();
        for record in records {
            let text = record.get();
            let raw = match one_record::<K>(text, opts) {
                Some(raw) => Ok(raw),
                None => serde_json::from_str(text).map(|r| K::from_record(r, opts)),
            };
            let result = match raw {
                Ok(raw) => K::validate(raw, &resource, Origin { index, ..origin }, opts),
                Err(e) => Err(Rejection::record(
                    Reason::MalformedJson,
                    index,
                    e.to_string(),
                )),
            };
            super::push(&mut out, result);
            index += 1;
        }
    }
    out
}

/// Reads one record in one pass; `None` when the one-pass reader gives up.
fn one_record<K: Kind>(text: &str, opts: &DecodeOptions) -> Option<K::Raw> {
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = K::record(&mut de, opts).ok()?;
    de.end().ok()?;
    Some(raw)
}
