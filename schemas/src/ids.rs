//! Trace and span identifiers: 16 and 8 bytes, held as `u128` and `u64`.
//!
//! All-zero or empty means absent, so `0` is the absent value of both.

/// Why an identifier could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// The byte or hex length is not the one the id needs.
    Length(usize),
    /// A hex string holds a character outside `[0-9a-fA-F]`.
    Hex,
}

impl std::fmt::Display for IdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdError::Length(n) => write!(f, "wrong length {n}"),
            IdError::Hex => write!(f, "not hexadecimal"),
        }
    }
}

/// Reads a trace id from its 16 raw bytes; empty gives `0` (absent).
pub fn trace_id_from_bytes(b: &[u8]) -> Result<u128, IdError> {
    match b.len() {
        0 => Ok(0),
        16 => Ok(u128::from_be_bytes(b.try_into().expect("length checked"))),
        n => Err(IdError::Length(n)),
    }
}

/// Reads a span id from its 8 raw bytes; empty gives `0` (absent).
pub fn span_id_from_bytes(b: &[u8]) -> Result<u64, IdError> {
    match b.len() {
        0 => Ok(0),
        8 => Ok(u64::from_be_bytes(b.try_into().expect("length checked"))),
        n => Err(IdError::Length(n)),
    }
}

/// The value of each hex digit (either case); 0xff for any other byte.
const HEX_DIGITS: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// The value of 16 hex digits.
fn hex_u64(digits: &[u8]) -> Result<u64, IdError> {
    let mut v = 0u64;
    let mut bad = 0u8;
    for &c in digits {
        let d = HEX_DIGITS[usize::from(c)];
        bad |= d;
        v = (v << 4) | u64::from(d & 0x0f);
    }
    if bad & 0xf0 != 0 {
        return Err(IdError::Hex);
    }
    Ok(v)
}

/// Reads a trace id from 32 hex digits (either case); empty gives `0` (absent).
pub fn trace_id_from_hex(s: &str) -> Result<u128, IdError> {
    match s.len() {
        0 => Ok(0),
        32 => {
            let (hi, lo) = s.as_bytes().split_at(16);
            Ok(u128::from(hex_u64(hi)?) << 64 | u128::from(hex_u64(lo)?))
        }
        n => Err(IdError::Length(n)),
    }
}

/// Reads a span id from 16 hex digits (either case); empty gives `0` (absent).
pub fn span_id_from_hex(s: &str) -> Result<u64, IdError> {
    match s.len() {
        0 => Ok(0),
        16 => hex_u64(s.as_bytes()),
        n => Err(IdError::Length(n)),
    }
}

/// Lowercase hex of a trace id, 32 digits.
pub fn trace_hex(t: u128) -> String {
    format!("{t:032x}")
}

/// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) into (trace id, span id).
/// Returns `None` when the header is malformed or carries an all-zero id.
pub fn parse_traceparent(s: &str) -> Option<(u128, u64)> {
    let mut parts = s.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2 || flags.len() != 2 || version.eq_ignore_ascii_case("ff") {
        return None;
    }
    let t = trace_id_from_hex(trace).ok()?;
    let p = span_id_from_hex(span).ok()?;
    (t != 0 && p != 0).then_some((t, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_accept_either_case() {
        let lower = trace_id_from_hex("5b8efff798038103d269b633813fc60c").unwrap();
        let upper = trace_id_from_hex("5B8EFFF798038103D269B633813FC60C").unwrap();
        assert_eq!(lower, upper);
        assert_eq!(trace_hex(lower), "5b8efff798038103d269b633813fc60c");
        assert_eq!(
            span_id_from_hex("EEE19B7EC3C1B174").unwrap(),
            0xeee19b7ec3c1b174
        );
    }

    #[test]
    fn hex_ids_match_a_digit_by_digit_reading() {
        fn slow(s: &str) -> Result<u128, IdError> {
            let mut v = 0u128;
            for c in s.chars() {
                v = v << 4 | u128::from(c.to_digit(16).ok_or(IdError::Hex)?);
            }
            Ok(v)
        }
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut s = format!("{x:016x}{:016X}", x.rotate_left(i % 64));
            if i % 3 == 0 {
                let at = (x % 32) as usize;
                let c = [b'g', b'G', b' ', b'/', b':', b'@', b'`', 0x7f][i as usize % 8];
                s.replace_range(at..at + 1, std::str::from_utf8(&[c]).unwrap());
            }
            assert_eq!(trace_id_from_hex(&s), slow(&s), "{s}");
            assert_eq!(
                span_id_from_hex(&s[8..24]),
                slow(&s[8..24]).map(|v| v as u64),
                "{s}"
            );
        }
        assert_eq!(span_id_from_hex("é234567890abcde"), Err(IdError::Hex));
    }

    #[test]
    fn bad_ids_are_errors() {
        assert_eq!(trace_id_from_hex(&"a".repeat(48)), Err(IdError::Length(48)));
        assert_eq!(trace_id_from_hex(&"g".repeat(32)), Err(IdError::Hex));
        assert_eq!(span_id_from_bytes(&[1, 2, 3]), Err(IdError::Length(3)));
        assert_eq!(trace_id_from_bytes(&[]), Ok(0));
        assert_eq!(trace_id_from_bytes(&[0; 16]), Ok(0));
    }

    #[test]
    fn traceparent() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert_eq!(
            parse_traceparent(tp),
            Some((0x0af7651916cd43dd8448eb211c80319c, 0xb7ad6b7169203331))
        );
        assert_eq!(
            parse_traceparent("00-00000000000000000000000000000000-b7ad6b7169203331-01"),
            None
        );
        assert_eq!(parse_traceparent("garbage"), None);
    }
}
