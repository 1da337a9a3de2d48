//! WeChat's limits on mass sends, checked when a push is scheduled so marketing hears "no" then,
//! not at 00:13 on launch day:
//! * a service account reaches each follower at most 4 times a calendar month (China time);
//! * at most 60 mass-send calls a minute.
//!
//! Who overlaps whom: "all" overlaps everything; a tag overlaps the same tag; openid lists
//! overlap when they share an openid; a segment overlaps the same segment. A tag and a list are
//! taken not to overlap (tag membership lives at WeChat), nor are two different tags or
//! segments, nor a segment and a tag (who is in a segment is decided when it fires) — WeChat
//! itself has the last word and refuses a send beyond the limit.

use super::{Audience, local_time};
use crate::config::CampaignsConfig;
use chrono::{Datelike, TimeZone};
use std::collections::{BTreeMap, HashSet};

/// A push's firings as the check sees them.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The push's name, to say which pushes a refusal counted.
    pub label: String,
    /// Who it reaches.
    pub audience: Audience,
    /// Mass sends count; customer-service messages do not.
    pub mass: bool,
    /// When it fires (or fired), unix ms.
    pub times: Vec<i64>,
}

fn overlaps(a: &Audience, b: &Audience) -> bool {
    match (a, b) {
        (Audience::All, _) | (_, Audience::All) => true,
        (Audience::Tag { tag_id: x }, Audience::Tag { tag_id: y }) => x == y,
        (Audience::Segment { segment: x }, Audience::Segment { segment: y }) => x == y,
        (Audience::List { openids: x }, Audience::List { openids: y }) => {
            let (small, large) = if x.len() <= y.len() { (x, y) } else { (y, x) };
            let large: HashSet<&String> = large.iter().collect();
            small.iter().any(|o| large.contains(o))
        }
        _ => false,
    }
}

/// Mass-send calls one firing makes (a list goes in calls of at most 10,000).
fn calls(a: &Audience) -> usize {
    match a {
        Audience::List { openids } => openids.len().div_ceil(10_000).max(1),
        _ => 1,
    }
}

/// `(year, month)` in China time.
fn month(ms: i64) -> (i32, u32) {
    let t = chrono_tz::Asia::Shanghai.timestamp_millis_opt(ms).single().expect("in range");
    (t.year(), t.month())
}

/// Which of WeChat's limits a push would break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// More sends to a follower in a month than WeChat allows (`with`: the pushes counted).
    #[error(
        "WeChat lets a service account reach each follower at most {limit} times a month: this push would make \
         {n} in {year}-{month:02} for {audience}{}",
        if .with.is_empty() { String::new() } else { format!(" (with {})", .with.join(", ")) }
    )]
    Monthly { limit: usize, n: usize, year: i32, month: u32, audience: String, with: Vec<String> },
    /// More mass-send calls in one minute than WeChat takes (`at`: the minute, China time).
    #[error("WeChat takes at most {limit} mass-send calls a minute; {n} would fall in the minute of {at}")]
    PerMinute { limit: usize, n: usize, at: String },
}

/// `Err` with the reason when scheduling `new` beside `existing` breaks a limit.
pub(super) fn check(new: &Planned, existing: &[Planned], cfg: &CampaignsConfig) -> Result<(), LimitError> {
    if !new.mass {
        return Ok(());
    }
    let others: Vec<&Planned> = existing.iter().filter(|p| p.mass).collect();
    // Per follower per month.
    let mut months: BTreeMap<(i32, u32), (usize, Vec<String>)> = BTreeMap::new();
    for t in &new.times {
        months.entry(month(*t)).or_default().0 += 1;
    }
    for p in others.iter().filter(|p| overlaps(&p.audience, &new.audience)) {
        for t in &p.times {
            if let Some((n, names)) = months.get_mut(&month(*t)) {
                *n += 1;
                if !names.contains(&p.label) {
                    names.push(p.label.clone());
                }
            }
        }
    }
    let limit = cfg.monthly_pushes_per_follower as usize;
    if let Some(((year, month), (n, names))) = months.into_iter().find(|(_, (n, _))| *n > limit) {
        return Err(LimitError::Monthly { limit, n, year, month, audience: new.audience.describe(), with: names });
    }
    // Calls per minute: everything less than a minute either side of each firing could share
    // a minute with it.
    let limit = cfg.mass_calls_per_minute as usize;
    for t in &new.times {
        let n = calls(&new.audience)
            + others
                .iter()
                .map(|p| p.times.iter().filter(|u| (**u - *t).abs() < 60_000).count() * calls(&p.audience))
                .sum::<usize>();
        if n > limit {
            return Err(LimitError::PerMinute { limit, n, at: local_time(*t, "Asia/Shanghai") });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600 * 1000;
    // 2026-11-02 12:00 China time.
    const NOV: i64 = 1_793_592_000_000;

    fn p(label: &str, audience: Audience, times: &[i64]) -> Planned {
        Planned { label: label.into(), audience, mass: true, times: times.to_vec() }
    }

    fn list(ids: &[&str]) -> Audience {
        Audience::List { openids: ids.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn four_a_month_per_follower() {
        let cfg = CampaignsConfig::default();
        let three: Vec<Planned> = (0..3).map(|i| p(&format!("p{i}"), Audience::All, &[NOV + i * DAY])).collect();
        let table: Vec<(&str, Planned, bool)> = vec![
            ("fourth to all", p("new", Audience::All, &[NOV + 5 * DAY]), true),
            ("fourth to a tag", p("new", Audience::Tag { tag_id: 7 }, &[NOV + 5 * DAY]), true),
            ("fifth (two at once)", p("new", Audience::All, &[NOV + 5 * DAY, NOV + 6 * DAY]), false),
            ("next month", p("new", Audience::All, &[NOV + 40 * DAY, NOV + 41 * DAY]), true),
        ];
        for (what, new, ok) in table {
            assert_eq!(check(&new, &three, &cfg).is_ok(), ok, "{what}");
        }
        let err =
            check(&p("new", Audience::All, &[NOV + 5 * DAY, NOV + 6 * DAY]), &three, &cfg).unwrap_err().to_string();
        assert!(err.contains("2026-11") && err.contains("p0"), "{err}");
    }

    #[test]
    fn audiences_overlap_as_documented() {
        let cfg = CampaignsConfig { monthly_pushes_per_follower: 1, ..Default::default() };
        let existing = vec![p("a", list(&["o1", "o2"]), &[NOV]), p("b", Audience::Tag { tag_id: 1 }, &[NOV])];
        let table: Vec<(&str, Audience, bool)> = vec![
            ("shared openid", list(&["o2", "o3"]), false),
            ("disjoint list", list(&["o3", "o4"]), true),
            ("same tag", Audience::Tag { tag_id: 1 }, false),
            ("other tag", Audience::Tag { tag_id: 2 }, true),
            ("all", Audience::All, false),
        ];
        for (what, audience, ok) in table {
            assert_eq!(check(&p("new", audience, &[NOV + DAY]), &existing, &cfg).is_ok(), ok, "{what}");
        }
        // Customer-service pushes are not mass sends.
        let cs = Planned { mass: false, ..p("cs", Audience::All, &[NOV + DAY]) };
        assert!(check(&cs, &existing, &cfg).is_ok());
    }

    #[test]
    fn sixty_calls_a_minute() {
        let cfg = CampaignsConfig { monthly_pushes_per_follower: 1000, ..Default::default() };
        let busy: Vec<Planned> = (0..59).map(|i| p(&format!("t{i}"), Audience::Tag { tag_id: i }, &[NOV])).collect();
        assert!(check(&p("new", Audience::Tag { tag_id: 99 }, &[NOV + 1000]), &busy, &cfg).is_ok());
        let mut full = busy.clone();
        full.push(p("t59", Audience::Tag { tag_id: 59 }, &[NOV]));
        assert!(check(&p("new", Audience::Tag { tag_id: 99 }, &[NOV + 1000]), &full, &cfg).is_err());
        assert!(
            check(&p("new", Audience::Tag { tag_id: 99 }, &[NOV + 59_000]), &full, &cfg).is_err(),
            "across a minute boundary"
        );
        assert!(check(&p("new", Audience::Tag { tag_id: 99 }, &[NOV + 60_000]), &full, &cfg).is_ok());
    }
}
