//! Audiences: segments marketing defines by rules over the follower directory (tier, store,
//! points, binding, follow date, activity, WeChat tags), counted live and pushed to WeChat as a
//! tag of the same name ([`sync`]), so a push "to a tag" reaches exactly them.
//!
//! Rules are validated once, at creation, and kept as the JSON accepted; they become one SQL
//! condition over `followers f LEFT JOIN members m` ([`Rules::condition`]): numbers written
//! into the SQL (they are integers this code produced), strings bound.

pub mod api;
pub mod sync;

use crate::store::Store;
use crate::with_pool;
use serde::{Deserialize, Serialize};

/// A segment's rules; every one optional, all of them ANDed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// The bound member's tier is one of these (in any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Vec<String>>,
    /// The follower's store (the QR code that brought them) or the member's own store is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ids: Option<Vec<i64>>,
    /// The bound member holds at least this many live points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_points: Option<i64>,
    /// Holds a member card (`true`) or not (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<bool>,
    /// Follows now (`true`) or left (`false`). A tag can only hold followers, so a sync takes
    /// the followers among them whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed: Option<bool>,
    /// First followed on or after this day (`YYYY-MM-DD`, China time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub followed_after: Option<String>,
    /// Wrote or tapped within this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_within_days: Option<i64>,
    /// Holds one of these WeChat tags (as the directory last saw them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wechat_tag_ids: Option<Vec<i64>>,
}

/// At most this many values in one list rule.
const MAX_LIST: usize = 500;

/// Why a segment's rules or name cannot be used; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// A list rule empty or too long.
    #[error("{0}: 1 to {max} values", max = MAX_LIST)]
    ListSize(&'static str),
    /// A tier name empty or too long (its first characters).
    #[error("tier: a tier name is 1 to 64 bytes, got {0:?}")]
    Tier(String),
    /// A negative store or tag id.
    #[error("store_ids and wechat_tag_ids are ids, never negative")]
    NegativeId,
    /// `min_points` out of range.
    #[error("min_points: 0 to 100,000,000")]
    MinPoints,
    /// `active_within_days` out of range.
    #[error("active_within_days: 1 to 3650")]
    ActiveWithinDays,
    /// `followed_after` not a day (its first characters).
    #[error("followed_after: a day as YYYY-MM-DD, got {0:?}")]
    FollowedAfter(String),
    /// A name that cannot be a WeChat tag's (its length in bytes).
    #[error(
        "name: 1 to {max} bytes without surrounding spaces (it becomes the WeChat tag's name), got {0} bytes",
        max = crate::wechat::client::tag::MAX_TAG_NAME_BYTES
    )]
    NameLength(usize),
    /// The name of one of WeChat's own tags.
    #[error("name: {0:?} is one of WeChat's own tags")]
    NameReserved(String),
}

impl Rules {
    /// Why these rules cannot be used, if they cannot.
    pub fn check(&self) -> Result<(), Invalid> {
        fn list<T>(name: &'static str, v: &Option<Vec<T>>) -> Result<(), Invalid> {
            match v {
                Some(v) if v.is_empty() || v.len() > MAX_LIST => Err(Invalid::ListSize(name)),
                _ => Ok(()),
            }
        }
        list("tier", &self.tier)?;
        list("store_ids", &self.store_ids)?;
        list("wechat_tag_ids", &self.wechat_tag_ids)?;
        if let Some(t) = self.tier.iter().flatten().find(|t| t.trim().is_empty() || t.len() > 64) {
            return Err(Invalid::Tier(t.chars().take(70).collect()));
        }
        if self.store_ids.iter().flatten().chain(self.wechat_tag_ids.iter().flatten()).any(|id| *id < 0) {
            return Err(Invalid::NegativeId);
        }
        if self.min_points.is_some_and(|p| !(0..=100_000_000).contains(&p)) {
            return Err(Invalid::MinPoints);
        }
        if self.active_within_days.is_some_and(|d| !(1..=3650).contains(&d)) {
            return Err(Invalid::ActiveWithinDays);
        }
        if let Some(d) = &self.followed_after {
            day_start(d).ok_or_else(|| Invalid::FollowedAfter(d.chars().take(20).collect()))?;
        }
        Ok(())
    }

    /// The rules as a condition over `followers f LEFT JOIN members m`, with the strings it binds
    /// (as `$1`… after `first` placeholders already taken).
    pub fn condition(&self, first: usize, now: i64) -> (String, Vec<String>) {
        let mut sql = String::from("1 = 1");
        let mut binds = Vec::new();
        let ints = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        if let Some(tiers) = &self.tier {
            let marks: Vec<String> = tiers
                .iter()
                .map(|t| {
                    binds.push(t.trim().to_lowercase());
                    format!("${}", first + binds.len())
                })
                .collect();
            // Tiers are matched as the console shows them, whatever the case ("Gold", "gold").
            sql.push_str(&format!(" AND LOWER(m.tier) IN ({})", marks.join(", ")));
        }
        if let Some(ids) = &self.store_ids {
            let ids = ints(ids);
            sql.push_str(&format!(" AND (f.store_id IN ({ids}) OR m.store_id IN ({ids}))"));
        }
        if let Some(p) = self.min_points {
            sql.push_str(&format!(
                " AND m.id IS NOT NULL AND (SELECT COALESCE(SUM(l.remaining), 0) FROM points_lots l \
                 WHERE l.member_id = m.id AND l.valid_until > {now}) >= {p}"
            ));
        }
        match self.bound {
            Some(true) => sql.push_str(" AND m.id IS NOT NULL"),
            Some(false) => sql.push_str(" AND m.id IS NULL"),
            None => {}
        }
        match self.subscribed {
            Some(true) => sql.push_str(" AND f.subscribed = TRUE"),
            Some(false) => sql.push_str(" AND f.subscribed = FALSE"),
            None => {}
        }
        if let Some(since) = self.followed_after.as_deref().and_then(day_start) {
            sql.push_str(&format!(" AND f.first_subscribed_at >= {since}"));
        }
        if let Some(days) = self.active_within_days {
            sql.push_str(&format!(" AND f.last_interaction_at >= {}", now - days * 86_400_000));
        }
        if let Some(tags) = &self.wechat_tag_ids {
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM follower_tags t WHERE t.follower_id = f.id AND t.tag_id IN ({}))",
                ints(tags)
            ));
        }
        (sql, binds)
    }
}

/// Midnight China time of `YYYY-MM-DD`, unix ms.
fn day_start(day: &str) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    let china = chrono::FixedOffset::east_opt(8 * 3600)?;
    Some(d.and_hms_opt(0, 0, 0)?.and_local_timezone(china).single()?.timestamp_millis())
}

/// A segment as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    pub id: i64,
    pub name: String,
    pub rules: Rules,
    /// The WeChat tag it is synced to, once created.
    pub tag_id: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Why a segment could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input breaks a rule (→ 400).
    #[error("{0}")]
    Invalid(String),
    /// The name is another segment's (→ 409).
    #[error("a segment named {0:?} exists")]
    Taken(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl From<Invalid> for Error {
    fn from(e: Invalid) -> Error {
        Error::Invalid(e.to_string())
    }
}

type SegmentRow = (i64, String, String, Option<i64>, String, i64, i64);
const COLUMNS: &str = "id, name, rules, tag_id, created_by, created_at, updated_at";

fn from_row(r: SegmentRow) -> Result<Segment, sqlx::Error> {
    let rules =
        serde_json::from_str(&r.2).map_err(|e| sqlx::Error::Decode(format!("segment {} rules: {e}", r.0).into()))?;
    Ok(Segment { id: r.0, name: r.1, rules, tag_id: r.3, created_by: r.4, created_at: r.5, updated_at: r.6 })
}

/// Checks a segment's name: it becomes a WeChat tag name (1 to 30 bytes, not WeChat's own).
pub fn check_name(name: &str) -> Result<(), Invalid> {
    use crate::wechat::client::tag::MAX_TAG_NAME_BYTES;
    if name.trim().is_empty() || name.trim() != name || name.len() > MAX_TAG_NAME_BYTES {
        return Err(Invalid::NameLength(name.len()));
    }
    if ["星标组", "黑名单"].contains(&name) {
        return Err(Invalid::NameReserved(name.to_owned()));
    }
    Ok(())
}

/// Creates a segment.
pub async fn create(store: &Store, name: &str, rules: &Rules, by: &str) -> Result<Segment, Error> {
    check_name(name)?;
    rules.check()?;
    let now = store.now_ms();
    let json = serde_json::to_string(rules).expect("rules serialize");
    let inserted: Result<i64, sqlx::Error> = with_pool!(store, pool => sqlx::query_scalar(
        "INSERT INTO segments (name, rules, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING id")
        .bind(name).bind(&json).bind(by).bind(now).fetch_one(pool).await);
    match inserted {
        Ok(id) => Ok(get(store, id).await?.ok_or(sqlx::Error::RowNotFound)?),
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Err(Error::Taken(name.to_owned())),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(store: &Store, id: i64) -> Result<Option<Segment>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM segments WHERE id = $1");
    let row: Option<SegmentRow> =
        with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await)?;
    row.map(from_row).transpose()
}

pub async fn list(store: &Store) -> Result<Vec<Segment>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM segments ORDER BY id");
    let rows: Vec<SegmentRow> =
        with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await)?;
    rows.into_iter().map(from_row).collect()
}

/// How many followers the rules take now: all of them, and those who follow (whom a tag can
/// hold).
pub async fn count(store: &Store, rules: &Rules) -> Result<(i64, i64), sqlx::Error> {
    let (cond, binds) = rules.condition(0, store.now_ms());
    let sql = format!(
        "SELECT COUNT(*), COUNT(CASE WHEN f.subscribed = TRUE THEN 1 END) \
         FROM followers f LEFT JOIN members m ON m.openid = f.openid WHERE {cond}"
    );
    with_pool!(store, pool => {
        let mut q = sqlx::query_as::<_, (i64, i64)>(sqlx::AssertSqlSafe(sql));
        for b in &binds {
            q = q.bind(b.clone());
        }
        q.fetch_one(pool).await
    })
}
