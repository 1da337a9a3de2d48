//! When a push goes: times as the user writes them (RFC 3339, or a local time in the push's
//! zone), cron patterns repeating in their zone, and the firings either gives within a window.

use crate::campaigns::{Error, invalid};
use chrono::{DateTime, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use std::str::FromStr;

/// The zone an IANA name (`Asia/Shanghai`) names.
pub fn parse_tz(name: &str) -> Result<Tz, Error> {
    Tz::from_str(name).map_err(|_| invalid(format!("{name:?} is not a time zone like Asia/Shanghai")))
}

/// A time as the user wrote it, to unix ms.
pub fn parse_time(s: &str, tz: Tz) -> Result<i64, Error> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(local) = NaiveDateTime::parse_from_str(s, format) {
            // A local time skipped by a DST change does not exist; one repeated takes the first.
            return tz
                .from_local_datetime(&local)
                .earliest()
                .map(|t| t.timestamp_millis())
                .ok_or_else(|| invalid(format!("{s} does not exist in {tz}")));
        }
    }
    Err(invalid(format!("{s:?} is not a time like 2026-11-23 00:13 or 2026-11-23T00:13:00+08:00")))
}

/// A cron pattern (croner: minute hour day month weekday, optional seconds first).
pub fn parse_cron(pattern: &str) -> Result<croner::Cron, Error> {
    croner::Cron::from_str(pattern.trim()).map_err(|e| invalid(format!("cron {pattern:?}: {e}")))
}

/// The first occurrence of `cron` in `tz` strictly after `after_ms`.
pub fn next_occurrence(cron: &croner::Cron, tz: Tz, after_ms: i64) -> Option<i64> {
    let after = tz.timestamp_millis_opt(after_ms).single()?;
    cron.find_next_occurrence(&after, false).ok().map(|t| t.timestamp_millis())
}

/// When a push fires within `[from, to)`.
pub(super) fn occurrences(at: Option<i64>, cron: Option<&croner::Cron>, tz: Tz, from: i64, to: i64) -> Vec<i64> {
    match (at, cron) {
        (Some(at), _) => (from..to).contains(&at).then_some(at).into_iter().collect(),
        (None, Some(cron)) => {
            let mut out = Vec::new();
            let mut t = from - 1;
            while let Some(next) = next_occurrence(cron, tz, t) {
                if next >= to || out.len() >= 500 {
                    break;
                }
                out.push(next);
                t = next;
            }
            out
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaigns::local_time;

    #[test]
    fn times_parse_in_their_zone() {
        let sh = parse_tz("Asia/Shanghai").unwrap();
        let launch = parse_time("2026-11-23 00:13", sh).unwrap();
        assert_eq!(launch, parse_time("2026-11-22T16:13:00Z", sh).unwrap());
        assert_eq!(launch, parse_time("2026-11-23T00:13:00+08:00", sh).unwrap());
        assert!(parse_time("tomorrow", sh).is_err());
        assert!(parse_tz("Mars/Olympus").is_err());
        assert_eq!(local_time(launch, "Asia/Shanghai"), "2026-11-23 00:13:00 CST");
    }

    #[test]
    fn cron_repeats_in_its_zone() {
        let sh = parse_tz("Asia/Shanghai").unwrap();
        let cron = parse_cron("13 0 * * *").unwrap();
        let from = parse_time("2026-11-22 12:00", sh).unwrap();
        let next = next_occurrence(&cron, sh, from).unwrap();
        assert_eq!(next, parse_time("2026-11-23 00:13", sh).unwrap());
        let week = occurrences(None, Some(&cron), sh, from, from + 7 * 24 * 3600 * 1000);
        assert_eq!(week.len(), 7);
        assert!(parse_cron("61 * * * *").is_err());
    }
}
