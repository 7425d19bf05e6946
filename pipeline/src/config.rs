//! The configuration file (TOML), its defaults and its validation.
//!
//! Every struct denies unknown keys, so a misspelt key is an error that names it.
//! Durations are strings such as `"90s"`, `"10m"`, `"1h"`, `"28d"`, `"250ms"`.
//! Any key can be overridden from the environment:
//! `CAUSEWAY__<SECTION>__<KEY>=<value>`, e.g. `CAUSEWAY__TIME__WINDOW=30s`.
//! See `deploy/causeway.example.toml` for a commented example.

use std::path::Path;

use causeway_jobs::Params;
use causeway_schemas::pii::PiiDetector;
use causeway_schemas::time::NANOS_PER_SEC;
use causeway_schemas::DecodeOptions;
use serde::Deserialize;

/// A configuration mistake, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or a key is unknown or mistyped.
    #[error("invalid config: {0}")]
    Parse(String),
    /// A value is out of range.
    #[error("invalid config: `{key}` {problem}")]
    Value {
        /// Dotted key.
        key: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Event-time semantics (SPEC §2).
    pub time: TimeConfig,
    /// Decoding and detection.
    pub decode: DecodeConfig,
}

/// Windows, watermarks and correlation (SPEC §2, §3).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeConfig {
    /// Tumbling window size; whole seconds. Default `60s`.
    pub window: String,
    /// How far behind its partition's newest event an event may be before it is late. Default `30s`.
    pub allowed_lateness: String,
    /// How long after a window ends it stays open for correlation. Whole seconds. Default `60s`.
    pub correlation_grace: String,
    /// How far back a record may join a span of its trace. Whole seconds. Default `10m`.
    pub trace_horizon: String,
    /// A partition idle this long no longer holds the watermark back. Default `30s`.
    pub idle_timeout: String,
    /// Longest span with valid timing (M3). Default `1h`.
    pub max_span_duration: String,
    /// How far a span may start before its parent (M3). Default `1s`.
    pub skew_tolerance: String,
    /// Events further than this into the future (wall clock) are rejected. Default `10m`.
    pub max_future_skew: String,
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            window: "60s".into(),
            allowed_lateness: "30s".into(),
            correlation_grace: "60s".into(),
            trace_horizon: "10m".into(),
            idle_timeout: "30s".into(),
            max_span_duration: "1h".into(),
            skew_tolerance: "1s".into(),
            max_future_skew: "10m".into(),
        }
    }
}

/// Decoding options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeConfig {
    /// Extra log attribute keys that mark a request record (M1), besides
    /// `http.request.method`, `http.method` and `rpc.method`.
    pub request_attributes: Vec<String>,
    /// Extra PII regexes (M9), added to the built-in detectors.
    pub pii_patterns: Vec<String>,
}

/// Parses `"90s"`, `"10m"`, `"1h"`, `"28d"`, `"250ms"` into nanoseconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        "d" => 86_400 * NANOS_PER_SEC,
        "w" => 7 * 86_400 * NANOS_PER_SEC,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn duration(key: &str, v: &str) -> Result<u64, ConfigError> {
    parse_duration(v).ok_or_else(|| ConfigError::Value {
        key: key.into(),
        problem: format!("is {v:?}; use a number with a unit: ms, s, m, h, d or w (e.g. \"90s\")"),
    })
}

fn whole_seconds(key: &str, v: &str, allow_zero: bool) -> Result<u64, ConfigError> {
    let ns = duration(key, v)?;
    if ns % NANOS_PER_SEC != 0 || (!allow_zero && ns == 0) {
        return Err(ConfigError::Value {
            key: key.into(),
            problem: format!(
                "is {v:?}; it must be a whole number of seconds{}",
                if allow_zero { "" } else { " greater than 0" }
            ),
        });
    }
    Ok(ns / NANOS_PER_SEC)
}

/// The validated, resolved settings the runtime uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Job parameters.
    pub params: Params,
    /// Allowed lateness, ns.
    pub allowed_lateness_ns: u64,
    /// Idle timeout, ns.
    pub idle_timeout_ns: u64,
    /// Decoder options.
    pub decode: DecodeOptions,
}

impl Config {
    /// Loads a config file, applies environment overrides and validates it.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_toml(&text, std::env::vars())
    }

    /// Parses TOML text with `CAUSEWAY__SECTION__KEY` overrides from `env`.
    pub fn from_toml(
        text: &str,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        for (k, v) in env {
            let Some(path) = k.strip_prefix("CAUSEWAY__") else {
                continue;
            };
            let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
            let value = format!("x = {v}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("x"))
                .unwrap_or(toml::Value::String(v.clone()));
            let mut table = &mut doc;
            for p in &parts[..parts.len() - 1] {
                let entry = table
                    .entry(p.clone())
                    .or_insert_with(|| toml::Value::Table(Default::default()));
                table = entry.as_table_mut().ok_or_else(|| ConfigError::Value {
                    key: k.clone(),
                    problem: format!("overrides {p}, which is not a section"),
                })?;
            }
            table.insert(parts[parts.len() - 1].clone(), value);
        }
        let config: Config = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        config.settings()?;
        Ok(config)
    }

    /// Validates and resolves the settings.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let t = &self.time;
        let params = Params {
            window_s: whole_seconds("time.window", &t.window, false)?,
            grace_s: whole_seconds("time.correlation_grace", &t.correlation_grace, true)?,
            horizon_s: whole_seconds("time.trace_horizon", &t.trace_horizon, true)?,
            max_span_duration_ns: duration("time.max_span_duration", &t.max_span_duration)?,
            skew_tolerance_ns: duration("time.skew_tolerance", &t.skew_tolerance)?,
        };
        let pii = PiiDetector::with_patterns(&self.decode.pii_patterns).map_err(|e| {
            ConfigError::Value {
                key: "decode.pii_patterns".into(),
                problem: format!("holds an invalid regex: {e}"),
            }
        })?;
        Ok(Settings {
            params,
            allowed_lateness_ns: duration("time.allowed_lateness", &t.allowed_lateness)?,
            idle_timeout_ns: duration("time.idle_timeout", &t.idle_timeout)?,
            decode: DecodeOptions {
                max_future_skew_ns: duration("time.max_future_skew", &t.max_future_skew)?,
                pii,
                request_attributes: self.decode.request_attributes.clone(),
                ..DecodeOptions::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_loads() {
        let text = include_str!("../../deploy/causeway.example.toml");
        let c = Config::from_toml(text, std::iter::empty()).unwrap();
        assert_eq!(c.settings().unwrap().params, Params::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Config::from_toml("[time]\nwindow_size = \"60s\"", std::iter::empty()).unwrap_err();
        assert!(e.to_string().contains("window_size"), "{e}");
        let e = Config::from_toml("[time]\nwindow = \"1.5m\"", std::iter::empty()).unwrap_err();
        assert!(e.to_string().contains("time.window"), "{e}");
        let e = Config::from_toml("[time]\nwindow = \"1500ms\"", std::iter::empty()).unwrap_err();
        assert!(e.to_string().contains("whole number of seconds"), "{e}");
        let e =
            Config::from_toml("[decode]\npii_patterns = [\"(\"]", std::iter::empty()).unwrap_err();
        assert!(e.to_string().contains("decode.pii_patterns"), "{e}");
    }

    #[test]
    fn environment_overrides() {
        let env = vec![("CAUSEWAY__TIME__WINDOW".to_string(), "30s".to_string())];
        let c = Config::from_toml("", env.into_iter()).unwrap();
        assert_eq!(c.settings().unwrap().params.window_s, 30);
    }
}
