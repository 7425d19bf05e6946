//! OTLP JSON (the OTLP/JSON mapping of the protobuf schema).
//!
//! Keys are lowerCamelCase (snake_case is accepted too, as protobuf JSON parsers
//! must); trace and span ids are hex strings of either case; 64-bit integers may be
//! strings or numbers; enums may be numbers or their names. Each span and log
//! record is parsed on its own, so one malformed record rejects only itself.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::value::RawValue;

use std::borrow::Cow;

use super::{Any, AttrFlags, ResourceAttrs};
use crate::DecodeOptions;

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
) -> ResourceAttrs<'a> {
    let mut attrs = ResourceAttrs::default();
    for kv in resource.map_or(&[][..], |r| &r.attributes) {
        attrs.offer(kv.key.as_bytes(), kv.value_any(opts));
    }
    attrs
}

#[cfg(test)]
impl From<AnyValue> for super::proto::AnyValue {
    fn from(v: AnyValue) -> Self {
        use super::proto::{self, any_value::Value};
        let value = if let Some(s) = v.string_value {
            Some(Value::StringValue(s))
        } else if let Some(b) = v.bool_value {
            Some(Value::BoolValue(b))
        } else if let Some(i) = v.int_value {
            Some(Value::IntValue(i))
        } else if let Some(d) = v.double_value {
            Some(Value::DoubleValue(d))
        } else if let Some(a) = v.array_value {
            Some(Value::ArrayValue(proto::ArrayValue {
                values: a.values.into_iter().map(Into::into).collect(),
            }))
        } else if let Some(kv) = v.kvlist_value {
            Some(Value::KvlistValue(proto::KeyValueList {
                values: kv.values.into_iter().map(Into::into).collect(),
            }))
        } else {
            v.bytes_value.map(|b| Value::BytesValue(b.into_bytes()))
        };
        proto::AnyValue { value }
    }
}

#[cfg(test)]
impl From<KeyValue> for super::proto::KeyValue {
    fn from(kv: KeyValue) -> Self {
        super::proto::KeyValue {
            key: kv.key,
            value: kv.value.map(Into::into),
        }
    }
}

/// Converts JSON attributes into their protobuf representation (the reference
/// decoder of the tests).
#[cfg(test)]
pub(crate) fn attributes(kvs: Vec<KeyValue>) -> Vec<super::proto::KeyValue> {
    kvs.into_iter().map(Into::into).collect()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    U(u64),
    I(i64),
    F(f64),
    S(String),
}

fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::U(u) => Ok(u),
        NumOrStr::I(i) => u64::try_from(i).map_err(|_| de::Error::custom("negative timestamp")),
        NumOrStr::F(f) if f >= 0.0 && f.fract() == 0.0 => Ok(f as u64),
        NumOrStr::F(_) => Err(de::Error::custom("timestamp is not an integer")),
        NumOrStr::S(s) if s.is_empty() => Ok(0),
        NumOrStr::S(s) => s
            .parse()
            .map_err(|_| de::Error::custom("timestamp is not an integer")),
    }
}

fn de_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::U(u) => i64::try_from(u)
            .map(Some)
            .map_err(|_| de::Error::custom("int64 overflow")),
        NumOrStr::I(i) => Ok(Some(i)),
        NumOrStr::F(f) if f.fract() == 0.0 => Ok(Some(f as i64)),
        NumOrStr::F(_) => Err(de::Error::custom("intValue is not an integer")),
        NumOrStr::S(s) => s
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom("intValue is not an integer")),
    }
}

fn de_enum<'de, D: Deserializer<'de>>(d: D, names: &[(&str, i32)]) -> Result<i32, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::U(u) => i32::try_from(u).map_err(|_| de::Error::custom("enum out of range")),
        NumOrStr::I(i) => i32::try_from(i).map_err(|_| de::Error::custom("enum out of range")),
        NumOrStr::F(_) => Err(de::Error::custom("enum is not an integer")),
        NumOrStr::S(s) => s
            .parse()
            .ok()
            .or_else(|| names.iter().find(|(n, _)| *n == s).map(|(_, v)| *v))
            .ok_or_else(|| de::Error::custom(format!("unknown enum value {s}"))),
    }
}

fn de_span_kind<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    de_enum(
        d,
        &[
            ("SPAN_KIND_UNSPECIFIED", 0),
            ("SPAN_KIND_INTERNAL", 1),
            ("SPAN_KIND_SERVER", 2),
            ("SPAN_KIND_CLIENT", 3),
            ("SPAN_KIND_PRODUCER", 4),
            ("SPAN_KIND_CONSUMER", 5),
        ],
    )
}

fn de_status_code<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    de_enum(
        d,
        &[
            ("STATUS_CODE_UNSET", 0),
            ("STATUS_CODE_OK", 1),
            ("STATUS_CODE_ERROR", 2),
        ],
    )
}

fn de_severity<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    const NAMES: [&str; 24] = [
        "TRACE", "TRACE2", "TRACE3", "TRACE4", "DEBUG", "DEBUG2", "DEBUG3", "DEBUG4", "INFO",
        "INFO2", "INFO3", "INFO4", "WARN", "WARN2", "WARN3", "WARN4", "ERROR", "ERROR2", "ERROR3",
        "ERROR4", "FATAL", "FATAL2", "FATAL3", "FATAL4",
    ];
    match NumOrStr::deserialize(d)? {
        NumOrStr::S(s) => {
            if let Ok(n) = s.parse() {
                return Ok(n);
            }
            match s.strip_prefix("SEVERITY_NUMBER_") {
                Some("UNSPECIFIED") => Ok(0),
                Some(name) => NAMES
                    .iter()
                    .position(|n| *n == name)
                    .map(|p| p as i32 + 1)
                    .ok_or_else(|| de::Error::custom(format!("unknown severity {s}"))),
                None => Err(de::Error::custom(format!("unknown severity {s}"))),
            }
        }
        NumOrStr::U(u) => i32::try_from(u).map_err(|_| de::Error::custom("enum out of range")),
        NumOrStr::I(i) => i32::try_from(i).map_err(|_| de::Error::custom("enum out of range")),
        NumOrStr::F(_) => Err(de::Error::custom("enum is not an integer")),
    }
}
