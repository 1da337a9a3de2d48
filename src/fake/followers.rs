//! The fake account's followers, as WeChat keeps them: who follows (and since when), who left,
//! their tags and remark, and how many mass sends reached each this month.
//!
//! A follower is known once anything names them — the simulator or a test adding them, a
//! message the fake posts as them, or an API call about them (a template message, tagging,
//! `user/info`) — and is then subscribed until they unfollow. Mass sends to everyone count the
//! subscribed followers the fake knows, sends to a tag its subscribed members, as WeChat does.

use std::collections::{BTreeMap, BTreeSet};

/// A mass send reaches a service account's follower at most this often a calendar month;
/// WeChat filters out whoever already had them.
pub const MASS_PER_MONTH: u32 = 4;

#[derive(Debug, Clone)]
pub struct Follower {
    /// Whether they follow now.
    pub subscribed: bool,
    /// When they (last) followed, unix seconds.
    pub subscribe_time: i64,
    /// When they last unfollowed, unix seconds.
    pub unsubscribe_time: Option<i64>,
    /// WeChat's `subscribe_scene` (`ADD_SCENE_QR_CODE`, `ADD_SCENE_SEARCH`, …).
    pub scene: String,
    /// The QR code's string scene when they followed by scanning one.
    pub qr_scene_str: String,
    pub remark: String,
    pub tags: BTreeSet<i64>,
    /// `(year * 100 + month, mass sends received that month)`.
    mass_month: (i32, u32),
}

impl Follower {
    fn new(now_secs: i64) -> Follower {
        Follower {
            subscribed: true,
            subscribe_time: now_secs,
            unsubscribe_time: None,
            scene: "ADD_SCENE_QR_CODE".into(),
            qr_scene_str: String::new(),
            remark: String::new(),
            tags: BTreeSet::new(),
            mass_month: (0, 0),
        }
    }
}

/// Every follower the fake knows, ordered by openid (WeChat's `user/get` pages in a stable
/// order of its own; `next_openid` continues after the last one returned).
#[derive(Debug, Default)]
pub struct Directory {
    by_openid: BTreeMap<String, Follower>,
}

impl Directory {
    /// The follower, known (and subscribed) from now on if they were not.
    pub fn seen(&mut self, openid: &str, now_secs: i64) -> &mut Follower {
        self.by_openid.entry(openid.to_owned()).or_insert_with(|| Follower::new(now_secs))
    }

    pub fn get(&self, openid: &str) -> Option<&Follower> {
        self.by_openid.get(openid)
    }

    /// Whether `openid` follows: everyone does until they unfollow (an openid the fake has not
    /// seen yet included, so tests can message anyone).
    pub fn is_subscribed(&self, openid: &str) -> bool {
        self.by_openid.get(openid).is_none_or(|f| f.subscribed)
    }

    pub fn subscribe(&mut self, openid: &str, now_secs: i64) {
        let f = self.seen(openid, now_secs);
        if !f.subscribed {
            f.subscribed = true;
            f.subscribe_time = now_secs;
        }
    }

    pub fn unsubscribe(&mut self, openid: &str, now_secs: i64) {
        let f = self.seen(openid, now_secs);
        f.subscribed = false;
        f.unsubscribe_time = Some(now_secs);
    }

    /// Subscribed followers, in order.
    pub fn subscribed(&self) -> impl Iterator<Item = (&String, &Follower)> {
        self.by_openid.iter().filter(|(_, f)| f.subscribed)
    }

    /// Subscribed followers after `after` (exclusive; from the start when empty), at most `n`.
    pub fn page(&self, after: &str, n: usize) -> Vec<&String> {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = if after.is_empty() { Unbounded } else { Excluded(after.to_owned()) };
        self.by_openid.range((start, Unbounded)).filter(|(_, f)| f.subscribed).map(|(o, _)| o).take(n).collect()
    }

    /// How many followers have `tag` (subscribed or not: WeChat keeps a leaver's tags).
    pub fn tag_count(&self, tag: i64) -> usize {
        self.by_openid.values().filter(|f| f.tags.contains(&tag)).count()
    }

    /// Followers with `tag`, in order.
    pub fn with_tag(&self, tag: i64) -> impl Iterator<Item = (&String, &Follower)> {
        self.by_openid.iter().filter(move |(_, f)| f.tags.contains(&tag))
    }

    /// Drops `tag` from everyone (the tag was deleted).
    pub fn forget_tag(&mut self, tag: i64) {
        for f in self.by_openid.values_mut() {
            f.tags.remove(&tag);
        }
    }

    /// A mass send to `targets`: `(total, filtered)` as WeChat reports them — the followers
    /// aimed at, and those it went to after leaving out who left and who already had this
    /// month's four. Those it went to have it counted (and are known from now on, like anyone
    /// an API call names).
    pub fn mass_send<'a>(
        &mut self,
        targets: impl IntoIterator<Item = &'a str>,
        month: i32,
        now_secs: i64,
    ) -> (i64, i64) {
        let (mut total, mut filtered) = (0, 0);
        for openid in targets {
            total += 1;
            let f = self.seen(openid, now_secs);
            if !f.subscribed {
                continue;
            }
            if f.mass_month.0 != month {
                f.mass_month = (month, 0);
            }
            if f.mass_month.1 >= MASS_PER_MONTH {
                continue;
            }
            f.mass_month.1 += 1;
            filtered += 1;
        }
        (total, filtered)
    }

    /// How many follow now.
    pub fn subscribed_count(&self) -> usize {
        self.by_openid.values().filter(|f| f.subscribed).count()
    }

    pub fn len(&self) -> usize {
        self.by_openid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_openid.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_pages_as_wechat_does() {
        let mut d = Directory::default();
        for o in ["oA", "oB", "oC", "oD"] {
            d.seen(o, 1);
        }
        d.unsubscribe("oC", 2);
        assert!(!d.is_subscribed("oC") && d.is_subscribed("oA") && d.is_subscribed("oUnknown"));
        assert_eq!(d.page("", 2), ["oA", "oB"]);
        assert_eq!(d.page("oB", 10), ["oD"], "leavers are not listed");
        let all: Vec<String> = d.subscribed().map(|(o, _)| o.clone()).collect();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        assert_eq!(d.mass_send(refs.iter().copied(), 202612, 3), (3, 3));
        for _ in 0..3 {
            d.mass_send(["oA"], 202612, 3);
        }
        assert_eq!(d.mass_send(["oA", "oB"], 202612, 3), (2, 1), "oA had its four this month");
        assert_eq!(d.mass_send(["oA"], 202701, 3), (1, 1), "a new month");
        assert_eq!(d.mass_send(["oC", "oNew"], 202701, 3), (2, 1), "oC left; oNew is named, so known");
        assert_eq!(d.len(), 5);
    }
}
