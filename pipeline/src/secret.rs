//! Secrets: the PagerDuty routing key, the webhook token, the `/metrics`
//! bearer token and librdkafka's passwords. A secret is never written in the
//! config file: the config names an environment variable or a file that holds
//! it, read once at start. A [`Secret`] never shows its value in `Debug`, and
//! every error about one names the config key, the variable or the path, never
//! the value.

use std::fmt;

/// A secret value whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (tests; the commands read theirs with [`read_secret`]).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A secret that could not be read, naming where it was looked for.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set.
    #[error("environment variable {var} ({key}) is not set; set it or change {key}")]
    Unset {
        /// Config key naming the variable.
        key: String,
        /// Variable name.
        var: String,
    },
    /// The file cannot be read.
    #[error("cannot read {path} ({key}): {source}")]
    File {
        /// Config key naming the file.
        key: String,
        /// Path.
        path: String,
        /// The I/O error (never the content).
        source: std::io::Error,
    },
    /// The variable or file holds nothing but whitespace.
    #[error("the secret named by {key} is empty")]
    Empty {
        /// Config key.
        key: String,
    },
    /// Both an environment variable and a file are named.
    #[error("{key}_env and {key}_file are both set; keep one")]
    Both {
        /// Config key without the `_env`/`_file` suffix.
        key: String,
    },
}

/// Reads the secret named by `<key>_env` (an environment variable, looked up
/// with `env`) or `<key>_file` (a path); `None` when neither is set.
pub fn read_secret(
    key: &str,
    var: Option<&str>,
    file: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, SecretError> {
    match (var, file) {
        (Some(_), Some(_)) => Err(SecretError::Both { key: key.into() }),
        (Some(var), None) => from_env(&format!("{key}_env"), var, env).map(Some),
        (None, Some(path)) => from_file(&format!("{key}_file"), path).map(Some),
        (None, None) => Ok(None),
    }
}

/// The secret in environment variable `var` (named by config key `key`),
/// without surrounding whitespace.
pub fn from_env(
    key: &str,
    var: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, SecretError> {
    let value = env(var).ok_or_else(|| SecretError::Unset {
        key: key.into(),
        var: var.into(),
    })?;
    non_empty(key, &value)
}

/// The secret in file `path` (named by config key `key`), without surrounding
/// whitespace (a final newline).
pub fn from_file(key: &str, path: &str) -> Result<Secret, SecretError> {
    let value = std::fs::read_to_string(path).map_err(|source| SecretError::File {
        key: key.into(),
        path: path.into(),
        source,
    })?;
    non_empty(key, &value)
}

fn non_empty(key: &str, value: &str) -> Result<Secret, SecretError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(SecretError::Empty { key: key.into() });
    }
    Ok(Secret(value.to_string()))
}

/// The process environment, for [`read_secret`].
pub fn process_env(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_env_or_file_and_never_show() {
        let env = |v: &str| (v == "TOKEN").then(|| "s3cr3t-env\n".to_string());
        let s = read_secret("metrics.bearer_token", Some("TOKEN"), None, &env)
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "s3cr3t-env");
        assert_eq!(format!("{s:?}"), "<redacted>");

        let dir = std::env::temp_dir().join(format!("causeway-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "s3cr3t-file\n").unwrap();
        let s = read_secret("k", None, Some(path.to_str().unwrap()), &env)
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "s3cr3t-file");

        let e = read_secret("metrics.bearer_token", Some("NOPE"), None, &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable NOPE (metrics.bearer_token_env) is not set; set it or change metrics.bearer_token_env"
        );
        std::fs::write(&path, " \n").unwrap();
        let e = read_secret("k", None, Some(path.to_str().unwrap()), &env).unwrap_err();
        assert_eq!(e.to_string(), "the secret named by k_file is empty");
        assert!(matches!(
            read_secret("k", Some("TOKEN"), Some("f"), &env),
            Err(SecretError::Both { .. })
        ));
        assert!(read_secret("k", None, None, &env).unwrap().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
