//! PII detectors for SLI M9 (`sensitive_exposure`).
//!
//! Built in: e-mail addresses, payment card numbers (13–19 digits, optionally
//! grouped by single spaces or dashes, passing the Luhn check), US SSNs
//! (`AAA-GG-SSSS` with the SSA's invalid ranges excluded), bearer tokens
//! (`Bearer <token>`) and JWTs (`eyJ….eyJ….sig`). Configured regexes are added to
//! these. Detectors answer yes/no only; a matched value is never stored, logged
//! or written anywhere.

use regex::RegexSet;

/// The set of PII detectors in force.
#[derive(Clone, Debug, Default)]
pub struct PiiDetector {
    extra: Option<RegexSet>,
}

impl PiiDetector {
    /// The built-in detectors plus the given regexes.
    pub fn with_patterns(patterns: &[String]) -> Result<Self, regex::Error> {
        if patterns.is_empty() {
            return Ok(Self::default());
        }
        Ok(PiiDetector {
            extra: Some(RegexSet::new(patterns)?),
        })
    }

    /// Whether `s` holds PII by any detector.
    pub fn matches(&self, s: &str) -> bool {
        has_email(s)
            || has_card_number(s)
            || has_ssn(s)
            || has_bearer(s)
            || has_jwt(s)
            || self.extra.as_ref().is_some_and(|r| r.is_match(s))
    }
}

fn is_local_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-')
}

/// `local@domain.tld` with a TLD of at least two letters.
pub fn has_email(s: &str) -> bool {
    let b = s.as_bytes();
    for (at, _) in b.iter().enumerate().filter(|(_, c)| **c == b'@') {
        if at == 0 || !is_local_char(b[at - 1]) {
            continue;
        }
        let domain_end = b[at + 1..]
            .iter()
            .position(|c| !is_domain_char(*c))
            .map_or(b.len(), |p| at + 1 + p);
        let domain = &s[at + 1..domain_end];
        let domain = domain.trim_end_matches(['.', '-']);
        if let Some(dot) = domain.rfind('.') {
            let (name, tld) = (&domain[..dot], &domain[dot + 1..]);
            if !name.is_empty()
                && !name.starts_with('.')
                && tld.len() >= 2
                && tld.bytes().all(|c| c.is_ascii_alphabetic())
            {
                return true;
            }
        }
    }
    false
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// 13–19 digits, optionally separated by single spaces or dashes, not touching
/// other digits or letters, that pass the Luhn check.
pub fn has_card_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let mut digits = [0u8; 19];
        let mut n = 0;
        let mut j = i;
        let mut last_digit_end = i;
        while j < b.len() {
            let c = b[j];
            if c.is_ascii_digit() {
                if n == 19 {
                    n = 20;
                    break;
                }
                digits[n] = c - b'0';
                n += 1;
                j += 1;
                last_digit_end = j;
            } else if (c == b' ' || c == b'-')
                && j + 1 < b.len()
                && b[j + 1].is_ascii_digit()
                && j > i
                && b[j - 1].is_ascii_digit()
            {
                j += 1;
            } else {
                break;
            }
        }
        let touches = last_digit_end < b.len() && b[last_digit_end].is_ascii_alphanumeric();
        if (13..=19).contains(&n) && !touches && luhn(&digits[..n]) {
            return true;
        }
        i = last_digit_end.max(i + 1);
    }
    false
}

/// `AAA-GG-SSSS`, area not 000, 666 or 9xx, group not 00, serial not 0000.
pub fn has_ssn(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 11 {
        return false;
    }
    for i in 0..=b.len() - 11 {
        let w = &b[i..i + 11];
        let shape = w.iter().enumerate().all(|(k, c)| {
            if k == 3 || k == 6 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
        if !shape {
            continue;
        }
        if (i > 0 && b[i - 1].is_ascii_alphanumeric())
            || (i + 11 < b.len() && b[i + 11].is_ascii_alphanumeric())
        {
            continue;
        }
        let area = &w[0..3];
        if area == b"000"
            || area == b"666"
            || area[0] == b'9'
            || &w[4..6] == b"00"
            || &w[7..11] == b"0000"
        {
            continue;
        }
        return true;
    }
    false
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

/// `Bearer <token>` (case-insensitive scheme) with a token of at least 8 characters.
pub fn has_bearer(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 15 {
        return false;
    }
    for i in 0..=b.len() - 7 {
        if b[i..i + 7].eq_ignore_ascii_case(b"bearer ")
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
        {
            let token = b[i + 7..].iter().take_while(|c| is_token_char(**c)).count();
            if token >= 8 {
                return true;
            }
        }
    }
    false
}

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// A JWT: `eyJ<b64url>.eyJ<b64url>.<b64url>`.
pub fn has_jwt(s: &str) -> bool {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(p) = s[from..].find("eyJ") {
        let start = from + p;
        let h = b[start..].iter().take_while(|c| is_b64url(**c)).count();
        let dot1 = start + h;
        if h >= 10 && dot1 < b.len() && b[dot1] == b'.' && b[dot1 + 1..].starts_with(b"eyJ") {
            let pl = b[dot1 + 1..].iter().take_while(|c| is_b64url(**c)).count();
            let dot2 = dot1 + 1 + pl;
            if pl >= 10 && dot2 < b.len() && b[dot2] == b'.' {
                return true;
            }
        }
        from = start + 3;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(has_email("contact alice.smith+x@example.co.uk now"));
        assert!(!has_email("user@localhost"));
        assert!(!has_email("@example.com"));
        assert!(!has_email("a@b.c"));
        assert!(!has_email("no at sign"));
    }

    #[test]
    fn cards_need_luhn() {
        assert!(has_card_number("card 4111 1111 1111 1111 ok"));
        assert!(has_card_number("4111-1111-1111-1111"));
        assert!(has_card_number("5500005555555559"));
        assert!(!has_card_number("4111 1111 1111 1112"));
        assert!(!has_card_number("order 1234567890123"));
        assert!(!has_card_number("id x4111111111111111"));
    }

    #[test]
    fn ssns() {
        assert!(has_ssn("ssn=123-45-6789"));
        assert!(!has_ssn("000-45-6789"));
        assert!(!has_ssn("666-45-6789"));
        assert!(!has_ssn("923-45-6789"));
        assert!(!has_ssn("123-00-6789"));
        assert!(!has_ssn("1123-45-6789"));
    }

    #[test]
    fn tokens() {
        assert!(has_bearer("Authorization: Bearer abcdef123456"));
        assert!(has_bearer("bearer abcdefgh"));
        assert!(!has_bearer("Bearer short"));
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert!(has_jwt(jwt));
        assert!(!has_jwt("eyJhbGciOiJIUzI1NiJ9 only"));
    }

    #[test]
    fn configured_patterns() {
        let d = PiiDetector::with_patterns(&["IBAN[A-Z0-9]{10}".to_string()]).unwrap();
        assert!(d.matches("pay to IBANDE89370400440532013000"));
        assert!(!PiiDetector::default().matches("pay to IBANDE89370400440532013000"));
    }
}
