//! The rules a push must satisfy before it is stored: its input's shape and bounds, its
//! choice of articles, its time, and what WeChat's limits ([`crate::campaigns::limits`]) are
//! to count of it.

use super::push::{MsgType, PushInput};
use super::time::{next_occurrence, occurrences, parse_cron, parse_time, parse_tz};
use crate::campaigns::limits::Planned;
use crate::campaigns::{Audience, Error, Refusal, check_len, invalid, local_time};
use crate::config::CampaignsConfig;
use chrono_tz::Tz;

/// The most openids one list push names (`mass/send` takes up to 10,000).
const MAX_LIST: usize = 10_000;
/// Cron pushes closer together than this are refused (a typo'd `* * * * *` would spam).
const MIN_CRON_GAP_MS: i64 = 3600 * 1000;
/// How far ahead limits are checked for a repeating push.
const HORIZON_MS: i64 = 62 * 24 * 3600 * 1000;

/// What validation makes of an input.
pub(super) struct Checked {
    /// The push's time zone.
    pub(super) tz: Tz,
    /// A one-time push's time, unix ms; `None` for a repeating one.
    pub(super) at: Option<i64>,
    /// A repeating push's pattern; `None` for a one-time one.
    pub(super) cron: Option<croner::Cron>,
    /// When it fires first, unix ms (its `next_at`): a one-time push's time (now, if that was
    /// a few seconds ago), a repeating one's next occurrence.
    pub(super) first: i64,
}

/// Whether `input` is a push that can go at `now`: its name and text, its audience, its
/// choice of articles, and its time (not past, at most 400 days ahead, at most hourly).
pub(super) fn check_input(cfg: &CampaignsConfig, input: &PushInput, now: i64) -> Result<Checked, Error> {
    check_len("push name", input.name.trim(), 1, 64)?;
    match (input.msg_type, &input.text) {
        (MsgType::Text, Some(t)) => check_len("text", t.trim(), 1, 2000)?,
        (MsgType::Text, None) => return Err(invalid("a text push needs its text")),
        (_, Some(_)) => return Err(invalid("only a text push has a text; the others send the articles")),
        _ => {}
    }
    match &input.audience {
        Audience::All => {}
        Audience::Tag { tag_id } => {
            if *tag_id < 0 {
                return Err(invalid("tag_id must be 0 or more"));
            }
        }
        Audience::Segment { segment } => {
            if *segment <= 0 {
                return Err(invalid("segment: a segment id is 1 or more"));
            }
        }
        Audience::List { openids } => {
            // mass/send takes 2 to 10,000 openids; customer-service messages go one by one.
            let min = if input.msg_type.is_mass() { 2 } else { 1 };
            if openids.len() < min || openids.len() > MAX_LIST {
                return Err(invalid(format!(
                    "an openid list for {} has {min} to {MAX_LIST} openids (got {})",
                    input.msg_type.as_str(),
                    openids.len()
                )));
            }
            for o in openids {
                if o.is_empty()
                    || o.len() > 64
                    || !o.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(invalid(format!("{:?} is not an openid", crate::mask(o))));
                }
            }
        }
    }
    if let Some(chosen) = &input.articles {
        check_selection(input.msg_type, chosen)?;
    }
    if input.msg_type == MsgType::News && !matches!(input.audience, Audience::List { .. }) {
        return Err(invalid(
            "a news push goes to an openid list (customer-service messages); use mpnews for all or a tag",
        ));
    }
    let tz = parse_tz(input.time_zone.as_deref().unwrap_or(&cfg.time_zone))?;
    match (&input.at, &input.cron) {
        (Some(at), None) => {
            let at = parse_time(at, tz)?;
            // A few seconds of slack for a form submitted "now".
            if at < now - 5_000 {
                return Err(Error::Refused(Refusal::Rule(format!("{} is in the past", local_time(at, tz.name())))));
            }
            if at > now + 400 * 24 * 3600 * 1000 {
                return Err(invalid("a push is scheduled at most 400 days ahead"));
            }
            Ok(Checked { tz, at: Some(at), cron: None, first: at.max(now) })
        }
        (None, Some(pattern)) => {
            check_len("cron", pattern, 1, 100)?;
            let cron = parse_cron(pattern)?;
            let first = next_occurrence(&cron, tz, now).ok_or_else(|| invalid("the cron pattern never fires"))?;
            // Every gap, not just the first: `0,30 9 * * *` is 30 minutes apart each morning.
            let times = occurrences(None, Some(&cron), tz, now, now + HORIZON_MS);
            if times.windows(2).any(|w| w[1] - w[0] < MIN_CRON_GAP_MS) {
                return Err(invalid("a repeating push fires at most once an hour"));
            }
            Ok(Checked { tz, at: None, cron: Some(cron), first })
        }
        _ => Err(invalid("give either at (a time) or cron (a pattern)")),
    }
}

/// The shape of a push's choice of articles (whether each exists is checked against the
/// campaign): 1 to 8 distinct indexes, one for a `news` card (WeChat's link card carries one
/// article), none for a text.
pub fn check_selection(msg_type: MsgType, chosen: &[i64]) -> Result<(), Error> {
    let max = match msg_type {
        MsgType::Text => return Err(invalid("articles: a text push sends its text, not articles")),
        MsgType::News => 1,
        MsgType::Mpnews => 8,
    };
    if chosen.is_empty() || chosen.len() > max {
        return Err(invalid(format!(
            "articles: a {} push sends 1 to {max} of the campaign's articles (got {})",
            msg_type.as_str(),
            chosen.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for &i in chosen {
        if i < 0 {
            return Err(invalid(format!("articles: {i} is not an index (they count from 0)")));
        }
        if !seen.insert(i) {
            return Err(invalid(format!("articles: index {i} is chosen twice")));
        }
    }
    Ok(())
}

/// Whether `chosen` names only articles campaign `campaign` has (`count` of them).
pub fn check_in_range(chosen: Option<&[i64]>, count: usize) -> Result<(), Error> {
    match chosen.unwrap_or_default().iter().find(|&&i| i < 0 || i as usize >= count) {
        Some(i) => Err(invalid(format!(
            "articles: the campaign has {count} article(s), indexes 0 to {}; there is no {i}",
            count.saturating_sub(1)
        ))),
        None => Ok(()),
    }
}

/// What else to check a push's `times` against: the months they touch (a month either side
/// covers any zone).
pub(super) fn limit_window(times: &[i64], now: i64) -> (i64, i64) {
    const MONTH_MS: i64 = 32 * 24 * 3600 * 1000;
    match (times.iter().min(), times.iter().max()) {
        (Some(first), Some(last)) => (first - MONTH_MS, last + MONTH_MS),
        _ => (now, now),
    }
}

/// A push as WeChat's limits count it: its sends within the horizon. A one-time push counts
/// whenever it is (even a few seconds ago, as a form sent "now").
pub(super) fn plan(label: &str, audience: &Audience, msg_type: MsgType, checked: &Checked, now: i64) -> Planned {
    Planned {
        label: label.to_owned(),
        audience: audience.clone(),
        mass: msg_type.is_mass(),
        times: match checked.at {
            Some(at) => vec![at],
            None => occurrences(None, checked.cron.as_ref(), checked.tz, now, now + HORIZON_MS),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_checked() {
        let cfg = CampaignsConfig::default();
        let now = parse_time("2026-11-22T12:00:00+08:00", chrono_tz::UTC).unwrap();
        let base = PushInput {
            name: "launch".into(),
            msg_type: MsgType::Mpnews,
            text: None,
            audience: Audience::All,
            at: Some("2026-11-23 00:13".into()),
            cron: None,
            time_zone: None,
            articles: None,
        };
        assert!(check_input(&cfg, &base, now).is_ok());
        assert!(check_input(&cfg, &PushInput { articles: Some(vec![2, 0]), ..base.clone() }, now).is_ok());
        let cases: Vec<(&str, PushInput)> = vec![
            ("past", PushInput { at: Some("2026-11-01 00:00".into()), ..base.clone() }),
            ("neither", PushInput { at: None, ..base.clone() }),
            ("both", PushInput { cron: Some("13 0 * * *".into()), ..base.clone() }),
            ("every minute", PushInput { at: None, cron: Some("* * * * *".into()), ..base.clone() }),
            ("twice an hour some days", PushInput { at: None, cron: Some("0,30 9 * * *".into()), ..base.clone() }),
            ("text without text", PushInput { msg_type: MsgType::Text, ..base.clone() }),
            ("one openid", PushInput { audience: Audience::List { openids: vec!["oA".into()] }, ..base.clone() }),
            (
                "bad openid",
                PushInput { audience: Audience::List { openids: vec!["o A".into(), "oB".into()] }, ..base.clone() },
            ),
            ("news to all", PushInput { msg_type: MsgType::News, ..base.clone() }),
            ("bad zone", PushInput { time_zone: Some("Nowhere".into()), ..base.clone() }),
            ("empty name", PushInput { name: " ".into(), ..base.clone() }),
            ("no articles chosen", PushInput { articles: Some(vec![]), ..base.clone() }),
            ("an article twice", PushInput { articles: Some(vec![1, 1]), ..base.clone() }),
            ("nine articles", PushInput { articles: Some((0..9).collect()), ..base.clone() }),
            ("a negative index", PushInput { articles: Some(vec![-1]), ..base.clone() }),
            (
                "articles for a text",
                PushInput { msg_type: MsgType::Text, text: Some("hi".into()), articles: Some(vec![0]), ..base.clone() },
            ),
        ];
        for (what, input) in cases {
            assert!(check_input(&cfg, &input, now).is_err(), "{what} was accepted");
        }
    }
}
