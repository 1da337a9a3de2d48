//! Tiers: a member's tier is the highest whose `min_points` the points they earned in the
//! trailing window (`loyalty.tier_window_days`) reach. [`super::post()`] judges again the tier
//! of each member whose earned points a batch changed; the hourly [`review_tiers`] catches
//! those whose points have since left the window. Up is at once; down waits while an imported
//! tier holds (`tier_held_until`, a window from the import), so a member brought over from
//! another system is not moved down before they could earn their tier here.

use super::{BATCH, DAY_MS, MemberRow, Rules};
use crate::config::LoyaltyConfig;
use crate::crm::{Event, MemberRef};
use crate::jobs::outbox::{self, NewJob};
use crate::members::ledger;
use crate::store::{Store, Tx};
use crate::{with_pool, with_tx};
use std::collections::HashMap;

/// The points `member_id` earned in the tier window up to `now`.
pub async fn earned(store: &Store, loyalty: &LoyaltyConfig, member_id: i64, now: i64) -> Result<i64, sqlx::Error> {
    let cutoff = now - loyalty.tier_window_days as i64 * DAY_MS;
    let sum: Option<i64> = with_pool!(store, pool => sqlx::query_scalar(
        "SELECT CAST(SUM(earned) AS BIGINT) FROM points_ledger WHERE member_id = $1 AND earned <> 0 AND occurred_at > $2")
        .bind(member_id).bind(cutoff).fetch_one(pool).await)?;
    Ok(sum.unwrap_or(0))
}

/// A member as a tier review needs them.
#[derive(Debug, Clone)]
pub(super) struct TierMember {
    /// The member's id.
    pub(super) id: i64,
    /// For the CRM's event.
    pub(super) card_no: Option<String>,
    /// The bound follower, whom the `tier_changed` notice goes to.
    pub(super) openid: Option<String>,
    /// Their tier now.
    pub(super) tier: String,
    /// Until when an imported tier holds (unix ms).
    pub(super) held_until: Option<i64>,
}

/// A tier a member moves to.
pub(super) struct TierChange {
    /// Who moves, as they were.
    member: TierMember,
    /// The tier they move to.
    to: String,
    /// The points they earned in the window, which put them there.
    earned: i64,
}

/// The tier `earned` points reach: the highest whose `min_points` they reach.
pub fn tier_for(loyalty: &LoyaltyConfig, earned: i64) -> Option<&str> {
    loyalty.tiers.iter().rev().find(|t| earned >= t.min_points).map(|t| t.name.as_str())
}

fn rank(loyalty: &LoyaltyConfig, name: &str) -> Option<usize> {
    loyalty.tiers.iter().position(|t| t.name == name)
}

/// The change `earned` makes to `member`'s tier, if any: up at once; down (or off a tier the
/// rules do not know) unless an import's tier still holds.
pub(super) fn tier_change(rules: &Rules, member: TierMember, earned: i64) -> Option<TierChange> {
    let to = tier_for(rules.loyalty, earned)?;
    if to == member.tier {
        return None;
    }
    let up = match (rank(rules.loyalty, to), rank(rules.loyalty, &member.tier)) {
        (Some(new), Some(old)) => new > old,
        _ => false,
    };
    let held = member.held_until.is_some_and(|until| until > rules.now);
    if !up && held {
        return None;
    }
    Some(TierChange { to: to.to_owned(), member, earned })
}

/// Points earned in the tier window by each of `members`.
pub(super) async fn earned_in_window(
    tx: &mut Tx,
    rules: &Rules<'_>,
    members: &[i64],
) -> Result<HashMap<i64, i64>, sqlx::Error> {
    let rows = select_in!(tx, (i64, i64), EARNED_SQL, members.to_vec(), earned_suffix(rules));
    Ok(rows.into_iter().collect())
}

/// [`earned_in_window`] outside a transaction (the review's first look).
async fn earned_in_window_now(
    store: &Store,
    rules: &Rules<'_>,
    members: &[i64],
) -> Result<HashMap<i64, i64>, sqlx::Error> {
    let rows = select_in!(pool store, (i64, i64), EARNED_SQL, members.to_vec(), earned_suffix(rules));
    Ok(rows.into_iter().collect())
}

const EARNED_SQL: &str = "SELECT member_id, CAST(SUM(earned) AS BIGINT) FROM points_ledger WHERE member_id";

fn earned_suffix(rules: &Rules) -> String {
    let cutoff = rules.now - rules.loyalty.tier_window_days as i64 * DAY_MS;
    format!(" AND earned <> 0 AND occurred_at > {cutoff} GROUP BY member_id")
}

/// Writes tier changes (the member's tier, a history line) and returns the jobs they cause.
pub(super) async fn apply_tier_changes(
    tx: &mut Tx,
    rules: &Rules<'_>,
    changes: &[TierChange],
) -> Result<Vec<NewJob>, sqlx::Error> {
    let now = rules.now;
    let mut jobs = Vec::new();
    for c in changes {
        let m = &c.member;
        with_tx!(tx, conn => sqlx::query("UPDATE members SET tier = $2, tier_held_until = NULL, updated_at = $3 WHERE id = $1")
            .bind(m.id).bind(&c.to).bind(now).execute(conn).await.map(|_| ()))?;
        let (from, to) = (rules.loyalty.tier_label(&m.tier), rules.loyalty.tier_label(&c.to));
        let note = format!("会员等级 Tier: {from} → {to}");
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO points_ledger (member_id, kind, points, valid_until, reference, note, created_at, occurred_at, earned) \
             VALUES ($1, 'tier', 0, NULL, $2, $3, $4, $4, 0) ON CONFLICT (reference) DO NOTHING")
            .bind(m.id).bind(format!("tier:{}:{now}:{}", m.id, c.to)).bind(&note).bind(now)
            .execute(conn).await.map(|_| ()))?;
        let member = MemberRef { card_no: m.card_no.clone(), id: m.id };
        let event = Event::TierChanged { from: m.tier.clone(), to: c.to.clone(), earned: c.earned };
        jobs.extend(rules.crm.job(&member, &event, now));
        if let (Some(notices), Some(openid)) = (rules.notices, &m.openid) {
            let ctx = minijinja::context! { from, tier => to, earned => c.earned, date => ledger::day(now) };
            match notices.render("tier_changed", openid, ctx) {
                Ok(message) => jobs.push(NewJob::new(
                    crate::jobs::Kind::Template,
                    message,
                    format!("tier:{}:{now}:{}", m.id, c.to),
                )),
                Err(e) => tracing::error!(error = %e, "points: the tier_changed notice did not render"),
            }
        }
    }
    Ok(jobs)
}

/// The hourly tier review: every member above the lowest tier (or on one the rules do not
/// know) is checked against the points they earned in the window, and moved down when those
/// have left it (unless an import's tier still holds). Returns how many tiers changed.
pub async fn review_tiers(store: &Store, rules: &Rules<'_>) -> Result<usize, sqlx::Error> {
    let Some(lowest) = rules.loyalty.tiers.first() else { return Ok(0) };
    let mut after = 0i64;
    let mut changed = 0;
    loop {
        // A first look without a transaction: most hours change nobody, and a review that only
        // reads must not hold the database's write lock.
        let sql = format!(
            "SELECT id, card_no, openid, tier, tier_held_until FROM members WHERE tier <> $1 AND id > $2 ORDER BY id LIMIT {BATCH}"
        );
        let rows: Vec<MemberRow> = with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&lowest.name).bind(after).fetch_all(pool).await)?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let earned = earned_in_window_now(store, rules, &ids).await?;
        let moving: Vec<i64> = rows
            .into_iter()
            .filter_map(|(id, card_no, openid, tier, held_until)| {
                let member = TierMember { id, card_no, openid, tier, held_until };
                tier_change(rules, member, earned.get(&id).copied().unwrap_or(0)).map(|c| c.member.id)
            })
            .collect();
        if moving.is_empty() {
            continue;
        }
        // Then the changes, judged again on the locked rows.
        let mut tx = store.begin().await?;
        let lock = if tx.is_postgres() { " ORDER BY id FOR UPDATE" } else { "" };
        let locked = select_in!(
            &mut tx,
            MemberRow,
            "SELECT id, card_no, openid, tier, tier_held_until FROM members WHERE id",
            moving,
            lock
        );
        let earned = earned_in_window(&mut tx, rules, &moving).await?;
        let changes: Vec<TierChange> = locked
            .into_iter()
            .filter_map(|(id, card_no, openid, tier, held_until)| {
                let member = TierMember { id, card_no, openid, tier, held_until };
                tier_change(rules, member, earned.get(&id).copied().unwrap_or(0))
            })
            .collect();
        changed += changes.len();
        let jobs = apply_tier_changes(&mut tx, rules, &changes).await?;
        outbox::enqueue_many_tx(&mut tx, &jobs).await?;
        tx.commit().await?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm;

    #[test]
    fn tiers_follow_the_window_and_holds() {
        let loyalty = LoyaltyConfig {
            tiers: vec![
                crate::config::TierConfig { name: "standard".into(), min_points: 0, label: None },
                crate::config::TierConfig { name: "silver".into(), min_points: 2000, label: None },
                crate::config::TierConfig { name: "gold".into(), min_points: 8000, label: None },
            ],
            ..LoyaltyConfig::default()
        };
        let rules = Rules { loyalty: &loyalty, crm: crm::Events::off(), notices: None, tiers: true, now: 1000 };
        let m = |tier: &str, held: Option<i64>| TierMember {
            id: 1,
            card_no: None,
            openid: None,
            tier: tier.into(),
            held_until: held,
        };
        let to = |m: TierMember, earned: i64| tier_change(&rules, m, earned).map(|c| c.to);
        assert_eq!(to(m("standard", None), 1999), None);
        assert_eq!(to(m("standard", None), 2000).as_deref(), Some("silver"));
        assert_eq!(to(m("standard", Some(5000)), 9000).as_deref(), Some("gold"), "up at once, held or not");
        assert_eq!(to(m("gold", None), 100).as_deref(), Some("standard"));
        assert_eq!(to(m("gold", Some(5000)), 100), None, "an imported tier holds");
        assert_eq!(to(m("gold", Some(999)), 100).as_deref(), Some("standard"), "until its hold ends");
        assert_eq!(to(m("platinum", None), 2500).as_deref(), Some("silver"), "off a tier the rules do not know");
    }
}
