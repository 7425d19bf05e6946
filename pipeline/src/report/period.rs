//! The period a report covers: rolling (the `--period` before `--end`) or a
//! calendar unit (the UTC month or ISO week holding the last second before `--end`).
//!
//! A window counts in the period when it starts at or after `start` and ends at or
//! before `as_of`: only whole windows, so the sums are sums of final SLI records.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// A calendar unit of `--calendar`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calendar {
    /// The UTC calendar month.
    Month,
    /// The ISO week (Monday 00:00 UTC to the next Monday).
    Week,
}

impl Calendar {
    /// Parses `month` or `week`.
    pub fn parse(s: &str) -> Option<Calendar> {
        match s {
            "month" => Some(Calendar::Month),
            "week" => Some(Calendar::Week),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Calendar::Month => "month",
            Calendar::Week => "week",
        }
    }
}

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeriodSpec {
    /// `--period`: this many seconds ending at `--end`, and its label (`"28d"`).
    Rolling(u64, String),
    /// `--calendar`.
    Calendar(Calendar),
}

/// The resolved period, as stated in every report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// `rolling` or `calendar`.
    pub method: String,
    /// `28d`, `month` or `week`.
    pub length: String,
    /// First second of the period, Unix seconds.
    pub start: u64,
    /// End of the period (exclusive), Unix seconds. For a calendar period, the
    /// end of the month or week even when the report is made before it.
    pub end: u64,
    /// Data up to this time (exclusive) is counted: `min(--end, end)`.
    pub as_of: u64,
    /// False for a calendar period reported before it ended (month to date).
    pub complete: bool,
}

impl Period {
    /// Resolves `spec` for a report ending at `end` (Unix seconds).
    pub fn resolve(spec: &PeriodSpec, end: u64) -> Period {
        match spec {
            PeriodSpec::Rolling(len, label) => Period {
                method: "rolling".into(),
                length: label.clone(),
                start: end.saturating_sub(*len),
                end,
                as_of: end,
                complete: true,
            },
            PeriodSpec::Calendar(unit) => {
                let (start, stop) = calendar_bounds(*unit, end.saturating_sub(1));
                Period {
                    method: "calendar".into(),
                    length: unit.as_str().into(),
                    start,
                    end: stop,
                    as_of: end.min(stop),
                    complete: end >= stop,
                }
            }
        }
    }

    /// Whether the window `[start, end)` counts in the period.
    pub fn holds(&self, window_start: u64, window_end: u64) -> bool {
        window_start >= self.start && window_end <= self.as_of
    }
}

/// The calendar month or ISO week holding second `t`, as [start, end).
fn calendar_bounds(unit: Calendar, t: u64) -> (u64, u64) {
    let day = chrono::DateTime::from_timestamp(t as i64, 0)
        .map(|d| d.date_naive())
        .unwrap_or_default();
    let (first, next) = match unit {
        Calendar::Month => {
            let first = day.with_day(1).unwrap_or(day);
            let next = if day.month() == 12 {
                NaiveDate::from_ymd_opt(day.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(day.year(), day.month() + 1, 1)
            }
            .unwrap_or(first);
            (first, next)
        }
        Calendar::Week => {
            let back = u64::from(day.weekday().num_days_from_monday());
            let first = day - chrono::Days::new(back);
            (first, first + chrono::Days::new(7))
        }
    };
    let secs = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map_or(0, |dt| dt.and_utc().timestamp().max(0) as u64)
    };
    (secs(first), secs(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_schemas::time::parse_rfc3339;

    fn at(s: &str) -> u64 {
        parse_rfc3339(s).unwrap() / 1_000_000_000
    }

    #[test]
    fn rolling_ends_at_end() {
        let p = Period::resolve(&PeriodSpec::Rolling(86_400, "1d".into()), 200_000);
        assert_eq!(
            (p.start, p.end, p.as_of),
            (200_000 - 86_400, 200_000, 200_000)
        );
        assert!(p.holds(p.start, p.start + 60) && !p.holds(p.start - 60, p.start));
    }

    #[test]
    fn calendar_month_and_week() {
        let m = Period::resolve(
            &PeriodSpec::Calendar(Calendar::Month),
            at("2026-12-01T00:00:00Z"),
        );
        assert_eq!(m.start, at("2026-11-01T00:00:00Z"));
        assert_eq!(m.end, at("2026-12-01T00:00:00Z"));
        assert!(m.complete);
        let m = Period::resolve(
            &PeriodSpec::Calendar(Calendar::Month),
            at("2026-12-15T10:00:00Z"),
        );
        assert_eq!(m.end, at("2027-01-01T00:00:00Z"));
        assert_eq!(m.as_of, at("2026-12-15T10:00:00Z"));
        assert!(!m.complete);
        // 2026-11-26 is a Thursday.
        let w = Period::resolve(
            &PeriodSpec::Calendar(Calendar::Week),
            at("2026-11-26T12:00:00Z"),
        );
        assert_eq!(w.start, at("2026-11-23T00:00:00Z"));
        assert_eq!(w.end, at("2026-11-30T00:00:00Z"));
    }
}
