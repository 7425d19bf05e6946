//! File source for `causeway replay`: a directory of files named after their topic.
//!
//! - `otlp_spans*`, `otlp_logs*`, `deploys*`, `audit*`;
//! - `*.jsonl`: one message value per line (blank lines are skipped);
//! - `*.json`: the whole file is one message;
//! - `*.pb`: varint-length-delimited protobuf messages (`writeDelimitedTo`).
//!
//! Each file is one partition; partitions are numbered by sorted file name.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use causeway_schemas::Encoding;

use super::{Message, Partition, PartitionReader, Topic};

/// Why the input directory cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The directory cannot be listed.
    #[error("cannot read input directory {path}: {source}")]
    Dir {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A file cannot be opened.
    #[error("cannot open input file {path}: {source}")]
    Open {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A file name matches no topic or has an unknown extension.
    #[error("input file {0}: name it otlp_spans*, otlp_logs*, deploys* or audit*, ending in .jsonl, .json or .pb (protobuf only for otlp_*)")]
    UnknownFile(String),
    /// No input files at all.
    #[error(
        "input directory {0} holds no input files (otlp_spans*, otlp_logs*, deploys*, audit*)"
    )]
    Empty(String),
}

/// What a file name says about its contents.
pub fn classify(name: &str) -> Option<(Topic, Encoding)> {
    let topic = Topic::ALL
        .into_iter()
        .find(|t| name.starts_with(t.default_name()))?;
    let otlp = matches!(topic, Topic::Spans | Topic::Logs);
    let encoding = if name.ends_with(".pb") && otlp {
        Encoding::OtlpProto
    } else if name.ends_with(".jsonl") || name.ends_with(".json") {
        if otlp {
            Encoding::OtlpJson
        } else {
            Encoding::Json
        }
    } else {
        return None;
    };
    Some((topic, encoding))
}

/// The input files of `dir`, sorted, with their topic and encoding.
pub fn list_inputs(dir: &Path) -> Result<Vec<(PathBuf, Topic, Encoding)>, InputError> {
    let entries = std::fs::read_dir(dir).map_err(|source| InputError::Dir {
        path: dir.display().to_string(),
        source,
    })?;
    let mut files = Vec::new();
    for e in entries {
        let e = e.map_err(|source| InputError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let path = e.path();
        if !path.is_file() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".md") {
            continue;
        }
        let (topic, enc) =
            classify(&name).ok_or_else(|| InputError::UnknownFile(path.display().to_string()))?;
        files.push((path, topic, enc));
    }
    if files.is_empty() {
        return Err(InputError::Empty(dir.display().to_string()));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// Opens input file `id` as a partition.
pub fn open(
    path: &Path,
    topic: Topic,
    encoding: Encoding,
    id: u32,
) -> Result<Partition, InputError> {
    let file = File::open(path).map_err(|source| InputError::Open {
        path: path.display().to_string(),
        source,
    })?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let reader: Box<dyn PartitionReader> = if name.ends_with(".pb") {
        Box::new(DelimitedReader::new(file))
    } else if name.ends_with(".json") {
        Box::new(WholeFileReader {
            file: Some(file),
            pos: 0,
        })
    } else {
        Box::new(LineReader::new(file))
    };
    Ok(Partition {
        topic,
        encoding,
        id,
        name,
        reader,
    })
}

struct LineReader {
    inner: BufReader<File>,
    line: u64,
    pos: u64,
}

impl LineReader {
    fn new(f: File) -> Self {
        LineReader {
            inner: BufReader::with_capacity(1 << 20, f),
            line: 0,
            pos: 0,
        }
    }
}

impl PartitionReader for LineReader {
    fn next_message(&mut self) -> std::io::Result<Option<Message>> {
        loop {
            let mut buf = Vec::new();
            let n = self.inner.read_until(b'\n', &mut buf)?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            self.pos += n as u64;
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(Message {
                offset: self.line,
                payload: buf,
                traceparent: None,
                framing_error: None,
            }));
        }
    }

    fn position(&self) -> u64 {
        self.pos
    }
}

struct WholeFileReader {
    file: Option<File>,
    pos: u64,
}

impl PartitionReader for WholeFileReader {
    fn next_message(&mut self) -> std::io::Result<Option<Message>> {
        let Some(mut f) = self.file.take() else {
            return Ok(None);
        };
        let mut payload = Vec::new();
        f.read_to_end(&mut payload)?;
        self.pos = payload.len() as u64;
        Ok(Some(Message {
            offset: 0,
            payload,
            traceparent: None,
            framing_error: None,
        }))
    }

    fn position(&self) -> u64 {
        self.pos
    }
}

/// Reads `writeDelimitedTo` framing: a base-128 varint length, then the message.
pub struct DelimitedReader<R> {
    inner: BufReader<R>,
    index: u64,
    pos: u64,
    failed: bool,
}

impl<R: Read> DelimitedReader<R> {
    /// Wraps a reader.
    pub fn new(r: R) -> Self {
        DelimitedReader {
            inner: BufReader::with_capacity(1 << 20, r),
            index: 0,
            pos: 0,
            failed: false,
        }
    }

    fn frame_error(&mut self, payload: Vec<u8>, why: String) -> Option<Message> {
        self.failed = true;
        Some(Message {
            offset: self.index,
            payload,
            traceparent: None,
            framing_error: Some(why),
        })
    }
}

impl<R: Read + Send> PartitionReader for DelimitedReader<R> {
    fn next_message(&mut self) -> std::io::Result<Option<Message>> {
        if self.failed {
            return Ok(None);
        }
        let mut len: u64 = 0;
        let mut shift = 0;
        let mut header = Vec::new();
        loop {
            let mut b = [0u8; 1];
            if self.inner.read(&mut b)? == 0 {
                if header.is_empty() {
                    return Ok(None);
                }
                return Ok(self.frame_error(header, "file ends inside a length prefix".into()));
            }
            header.push(b[0]);
            len |= u64::from(b[0] & 0x7f) << shift;
            if b[0] & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Ok(self.frame_error(header, "length prefix is not a valid varint".into()));
            }
        }
        // Sized up front (a hostile prefix cannot make it allocate more than 64 MiB
        // before the bytes are there), so the read is one copy out of the buffer.
        let mut payload = Vec::with_capacity(len.min(1 << 26) as usize);
        (&mut self.inner).take(len).read_to_end(&mut payload)?;
        self.pos += (header.len() + payload.len()) as u64;
        if (payload.len() as u64) < len {
            let why = format!(
                "truncated message: length prefix says {len} bytes, {} remain",
                payload.len()
            );
            return Ok(self.frame_error(payload, why));
        }
        let m = Message {
            offset: self.index,
            payload,
            traceparent: None,
            framing_error: None,
        };
        self.index += 1;
        Ok(Some(m))
    }

    fn position(&self) -> u64 {
        self.pos
    }
}

/// Writes one message with `writeDelimitedTo` framing.
pub fn write_delimited(out: &mut impl std::io::Write, msg: &[u8]) -> std::io::Result<()> {
    let mut len = msg.len() as u64;
    let mut header = Vec::with_capacity(10);
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            header.push(b);
            break;
        }
        header.push(b | 0x80);
    }
    out.write_all(&header)?;
    out.write_all(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_topics() {
        assert_eq!(
            classify("otlp_spans-0.pb"),
            Some((Topic::Spans, Encoding::OtlpProto))
        );
        assert_eq!(
            classify("otlp_logs.jsonl"),
            Some((Topic::Logs, Encoding::OtlpJson))
        );
        assert_eq!(
            classify("deploys.jsonl"),
            Some((Topic::Deploys, Encoding::Json))
        );
        assert_eq!(classify("deploys.pb"), None);
        assert_eq!(classify("spans.jsonl"), None);
    }

    #[test]
    fn delimited_roundtrip_and_truncation() {
        let mut buf = Vec::new();
        write_delimited(&mut buf, &[1u8; 300]).unwrap();
        write_delimited(&mut buf, b"abc").unwrap();
        buf.extend_from_slice(&[10, 1, 2]);
        let mut r = DelimitedReader::new(buf.as_slice());
        assert_eq!(r.next_message().unwrap().unwrap().payload.len(), 300);
        assert_eq!(r.next_message().unwrap().unwrap().payload, b"abc");
        let bad = r.next_message().unwrap().unwrap();
        assert!(bad.framing_error.unwrap().contains("truncated"));
        assert!(r.next_message().unwrap().is_none());
    }
}
