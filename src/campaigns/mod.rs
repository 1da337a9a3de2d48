//! Launch campaigns: articles and a product, pushed to followers on a schedule.
//!
//! A **campaign** holds 1 to 8 articles (WeChat's limit for one mass-sent draft) and the product
//! they sell. A **push** sends the campaign at a time (a teaser the day before, the launch at
//! 00:13 on launch day) or on a cron schedule, in a time zone, to all followers, a tag or an
//! openid list, as:
//! * `mpnews`: the articles become a draft (`draft/add`), the draft is mass-sent;
//! * `text`: a mass-sent text;
//! * `news`: a link card per follower of an openid list, sent as customer-service messages
//!   through the outbox (WeChat delivers those only within 48 hours of the follower's last
//!   message, and they do not count against the monthly mass-send limit).
//!
//! Each firing of a push is a **run** ([`scheduler`] owns firing and exactly-once); WeChat
//! reports a mass send's outcome later with MASSSENDJOBFINISH, recorded on the run
//! ([`record_finish`]). WeChat's limits are checked when a push is scheduled ([`limits`]).

pub mod api;
pub mod funnel;
pub mod html;
pub mod limits;
pub mod recall;
pub mod schedule;
pub mod scheduler;
pub mod send;

use crate::store::{Store, Tx};
use crate::{with_pool, with_tx};
use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// One article of a campaign: what followers read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Article {
    /// Its title (1 to 64 characters).
    pub title: String,
    /// Its author, as WeChat shows it (up to 16 characters).
    #[serde(default)]
    pub author: String,
    /// The line under the title in chat lists.
    #[serde(default)]
    pub digest: String,
    /// The body (HTML; images in it must be WeChat-hosted). Cleaned to an allow-list on the way
    /// in ([`html`]).
    #[serde(default)]
    pub content: String,
    /// The cover's `media_id` in the account's material library (an mpnews draft needs it).
    #[serde(default)]
    pub cover_media_id: String,
    /// The cover's URL, for the console preview and `news` cards.
    #[serde(default)]
    pub cover_url: String,
    /// "Read more" target; the campaign's checkout landing (`/buy/{id}`) when empty.
    #[serde(default)]
    pub link: String,
}

/// What a campaign is made of, as the API and the CLI take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignInput {
    /// Its name, unique among campaigns (1 to 100 characters).
    pub name: String,
    /// Its articles, 1 to 8, in the order followers see them.
    pub articles: Vec<Article>,
    /// The product sold, if any: the shop's SKU (stock comes from `POST /api/v1/stock`).
    #[serde(default)]
    pub product: Option<ProductInput>,
}

/// The product a campaign sells, as the API and the CLI take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    /// The shop's SKU.
    pub sku: String,
    /// Its name; empty keeps the name it has (or the SKU, for a new product).
    #[serde(default)]
    pub name: String,
    /// Initial stock of a product not known yet (the shop's `POST /api/v1/stock` is the word
    /// after that).
    #[serde(default)]
    pub stock: Option<i64>,
}

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Campaign {
    /// The campaign's id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// The SKU of the product it sells, if any.
    pub product_sku: Option<String>,
    /// Its articles, cleaned.
    pub articles: Vec<Article>,
    /// When it was created, unix ms.
    pub created_at: i64,
    /// When it was last changed, unix ms.
    pub updated_at: i64,
}

/// Who a push reaches: `{"type": "all"}`, `{"type": "tag", "tag_id": 7}`,
/// `{"type": "list", "openids": […]}`, or a segment — `{"segment": 3}` (also written
/// `{"type": "segment", "segment": 3}`), synced to its WeChat tag when the push fires and then
/// sent to that tag.
///
/// It lives here, beside [`Error`], because both [`schedule`] (which stores it) and [`limits`]
/// (which counts who it overlaps) need it, and neither should import the other for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Audience {
    /// Every follower.
    All,
    /// The followers WeChat has under tag `tag_id`.
    Tag { tag_id: i64 },
    /// These followers (2 to 10,000 for a mass send, 1 to 10,000 for a `news` push).
    List { openids: Vec<String> },
    /// Segment `segment` ([`crate::audiences`]), sent to its tag once synced.
    Segment { segment: i64 },
}

/// The segment spelling without a `type`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentShort {
    /// The segment's id.
    segment: i64,
}

/// The spelling with a `type`: [`Audience`]'s own.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum TaggedAudience {
    All,
    Tag { tag_id: i64 },
    List { openids: Vec<String> },
    Segment { segment: i64 },
}

impl<'de> Deserialize<'de> for Audience {
    /// Either spelling, with the tagged form's own error messages (an untagged enum would say
    /// only "did not match any variant").
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Audience, D::Error> {
        use serde::de::Error as _;
        let v = serde_json::Value::deserialize(d)?;
        if v.get("type").is_none() && v.get("segment").is_some() {
            let s: SegmentShort = serde_json::from_value(v).map_err(D::Error::custom)?;
            return Ok(Audience::Segment { segment: s.segment });
        }
        Ok(match serde_json::from_value(v).map_err(D::Error::custom)? {
            TaggedAudience::All => Audience::All,
            TaggedAudience::Tag { tag_id } => Audience::Tag { tag_id },
            TaggedAudience::List { openids } => Audience::List { openids },
            TaggedAudience::Segment { segment } => Audience::Segment { segment },
        })
    }
}

impl Audience {
    /// Who it is, for messages and logs: `tag 7`, `120 followers`.
    pub fn describe(&self) -> String {
        match self {
            Audience::All => "all followers".into(),
            Audience::Tag { tag_id } => format!("tag {tag_id}"),
            Audience::List { openids } => format!("{} followers", openids.len()),
            Audience::Segment { segment } => format!("segment {segment}"),
        }
    }
}

/// `2026-11-23 00:13 CST` in `tz`. Here rather than in [`schedule`] for the same reason as
/// [`Audience`]: [`limits`] names times in its refusals.
pub fn local_time(ms: i64, tz: &str) -> String {
    let tz = Tz::from_str(tz).unwrap_or(chrono_tz::Asia::Shanghai);
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string(),
        None => ms.to_string(),
    }
}

/// Why a campaign or push was refused; shown to the user as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The input is malformed or out of bounds.
    Invalid(String),
    /// It breaks one of WeChat's limits, or the push is in a state that forbids it.
    Rule(String),
    NotFound(String),
    /// The push already fired (or was cancelled).
    Conflict(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Invalid(m) | Refusal::Rule(m) | Refusal::NotFound(m) | Refusal::Conflict(m) => f.write_str(m),
        }
    }
}

#[derive(Debug)]
pub enum Error {
    Refused(Refusal),
    Db(sqlx::Error),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Db(e)
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Error::Refused(r)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Refused(r) => r.fmt(f),
            Error::Db(e) => write!(f, "database: {e}"),
        }
    }
}

/// The largest body a campaign call (API or console form) may have. A campaign holds up to 8 articles of up to 20,000
/// characters each (WeChat's draft limits): in UTF-8 that is up to ~480 KB of Chinese, and a
/// JSON encoder that writes `\uXXXX` escapes can double it. `server.max_body_bytes` (64 KiB) is
/// for everything else.
pub const MAX_BODY: usize = 1536 * 1024;

fn invalid(m: impl Into<String>) -> Error {
    Error::Refused(Refusal::Invalid(m.into()))
}

fn check_len(what: &str, value: &str, min: usize, max: usize) -> Result<(), Error> {
    crate::text::check_len(what, value, min, max).map_err(invalid)
}

impl CampaignInput {
    /// The input as it is stored: validated, its article bodies cleaned ([`html::clean`]), and
    /// validated again (cleaning escapes and adds `rel`, so a body at the limit may pass it).
    /// Every way a campaign enters (API, console, CLI) goes through [`create`] or [`update`],
    /// and so through this.
    pub fn cleaned(&self) -> Result<CampaignInput, Error> {
        self.validate()?;
        let mut input = self.clone();
        for a in &mut input.articles {
            a.content = html::clean(&a.content);
        }
        input.validate()?;
        Ok(input)
    }

    /// WeChat's bounds for a draft, and ours for everything else.
    pub fn validate(&self) -> Result<(), Error> {
        check_len("name", self.name.trim(), 1, 100)?;
        if self.articles.is_empty() || self.articles.len() > 8 {
            return Err(invalid(format!("a campaign has 1 to 8 articles (got {})", self.articles.len())));
        }
        for (i, a) in self.articles.iter().enumerate() {
            let n = i + 1;
            check_len(&format!("article {n} title"), a.title.trim(), 1, 64)?;
            check_len(&format!("article {n} author"), &a.author, 0, 16)?;
            check_len(&format!("article {n} digest"), &a.digest, 0, 120)?;
            check_len(&format!("article {n} content"), &a.content, 0, 20_000)?;
            check_len(&format!("article {n} cover_media_id"), &a.cover_media_id, 0, 128)?;
            for (what, url) in [("cover_url", &a.cover_url), ("link", &a.link)] {
                check_len(&format!("article {n} {what}"), url, 0, 1024)?;
                if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(invalid(format!("article {n} {what} must be an http(s) URL")));
                }
            }
        }
        if let Some(p) = &self.product {
            check_len("product sku", &p.sku, 1, 64)?;
            check_len("product name", &p.name, 0, 200)?;
            if p.stock.is_some_and(|s| !(0..=1_000_000_000).contains(&s)) {
                return Err(invalid("product stock must be 0 or more"));
            }
        }
        Ok(())
    }
}

fn row_to_campaign(id: i64, name: String, sku: Option<String>, articles: String, c: i64, u: i64) -> Campaign {
    Campaign {
        id,
        name,
        product_sku: sku,
        // Written by us from validated input; an unreadable value would be a bug, shown as empty.
        articles: serde_json::from_str(&articles).unwrap_or_default(),
        created_at: c,
        updated_at: u,
    }
}

type CampaignRow = (i64, String, Option<String>, String, i64, i64);

/// Records the product a campaign sells. Its stock is the shop's word: an initial stock is
/// used only for a product not known yet, and without one an unknown product stays unknown
/// (which the checkout treats as available) rather than becoming "0 left".
async fn note_product(tx: &mut Tx, p: &ProductInput) -> Result<(), sqlx::Error> {
    let name = p.name.trim();
    let now = tx.now_ms();
    match p.stock {
        Some(stock) => with_tx!(tx, conn => sqlx::query(
            "INSERT INTO products (sku, name, stock, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (sku) DO UPDATE SET name = CASE WHEN $5 THEN excluded.name ELSE products.name END"
        )
        .bind(&p.sku).bind(if name.is_empty() { &p.sku } else { name }).bind(stock).bind(now).bind(!name.is_empty())
        .execute(conn).await.map(|r| r.rows_affected()))?,
        None if !name.is_empty() => with_tx!(tx, conn => sqlx::query("UPDATE products SET name = $1 WHERE sku = $2")
            .bind(name).bind(&p.sku).execute(conn).await.map(|r| r.rows_affected()))?,
        None => 0,
    };
    Ok(())
}

fn name_taken(name: &str) -> Error {
    Error::Refused(Refusal::Conflict(format!("a campaign named {name:?} exists already")))
}

/// Creates a campaign (and notes its product) in one transaction.
pub async fn create(store: &Store, input: &CampaignInput) -> Result<Campaign, Error> {
    let input = &input.cleaned()?;
    let now = store.now_ms();
    let articles = serde_json::to_string(&input.articles).expect("serializable");
    let sku = input.product.as_ref().map(|p| p.sku.clone());
    let mut tx = store.begin().await?;
    let inserted: Result<(i64,), sqlx::Error> = with_tx!(&mut tx, conn => sqlx::query_as(
        "INSERT INTO campaigns (name, product_sku, articles, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
         RETURNING id"
    )
    .bind(input.name.trim()).bind(&sku).bind(&articles).bind(now)
    .fetch_one(conn).await);
    let id = match inserted {
        Ok((id,)) => id,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(name_taken(input.name.trim())),
        Err(e) => return Err(e.into()),
    };
    if let Some(p) = &input.product {
        note_product(&mut tx, p).await?;
    }
    tx.commit().await?;
    Ok(row_to_campaign(id, input.name.trim().to_owned(), sku, articles, now, now))
}

/// Replaces a campaign's articles and product. Pushes that fire later send the new articles.
pub async fn update(store: &Store, id: i64, input: &CampaignInput) -> Result<Campaign, Error> {
    write(store, id, input, None).await
}

/// Removes article `index` of campaign `id`; the articles after it move up one. Refused while a
/// scheduled push sends that article or one after it (the push would send another article than
/// the one it was told to, or fail): cancel that push first.
pub async fn remove_article(store: &Store, id: i64, index: usize) -> Result<Campaign, Error> {
    let not_found = || Error::Refused(Refusal::NotFound(format!("no campaign {id}")));
    let c = get(store, id).await?.ok_or_else(not_found)?;
    if index >= c.articles.len() {
        return Err(Error::Refused(Refusal::NotFound(format!("campaign {id} has no article index {index}"))));
    }
    let mut articles = c.articles;
    articles.remove(index);
    let product = c.product_sku.map(|sku| ProductInput { sku, name: String::new(), stock: None });
    write(store, id, &CampaignInput { name: c.name, articles, product }, Some(index)).await
}

/// [`update`]; `moved_from` is the first index whose article this edit moves (none: only the
/// ones past the new end go).
async fn write(store: &Store, id: i64, input: &CampaignInput, moved_from: Option<usize>) -> Result<Campaign, Error> {
    let input = &input.cleaned()?;
    let articles = serde_json::to_string(&input.articles).expect("serializable");
    let sku = input.product.as_ref().map(|p| p.sku.clone());
    let mut tx = store.begin().await?;
    let done = with_tx!(&mut tx, conn => sqlx::query(
        "UPDATE campaigns SET name = $1, product_sku = $2, articles = $3, updated_at = $4 WHERE id = $5"
    )
    .bind(input.name.trim()).bind(&sku).bind(&articles).bind(store.now_ms()).bind(id)
    .execute(conn).await.map(|r| r.rows_affected()));
    match done {
        Ok(0) => return Err(Error::Refused(Refusal::NotFound(format!("no campaign {id}")))),
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(name_taken(input.name.trim())),
        Err(e) => return Err(e.into()),
    }
    let count = input.articles.len();
    check_chosen_articles_remain(&mut tx, id, moved_from.unwrap_or(count), count).await?;
    if let Some(p) = &input.product {
        note_product(&mut tx, p).await?;
    }
    tx.commit().await?;
    get(store, id).await?.ok_or_else(|| Error::Refused(Refusal::NotFound(format!("no campaign {id}"))))
}

/// An edit may not remove (or move) an article a scheduled push was told to send: the push would
/// fail at its time (or send another article). Change or cancel that push first. Indexes from
/// `moved_from` on are the edit's; `count` is how many articles remain.
async fn check_chosen_articles_remain(
    tx: &mut Tx,
    campaign_id: i64,
    moved_from: usize,
    count: usize,
) -> Result<(), Error> {
    let rows: Vec<(i64, String, String)> = with_tx!(tx, conn => sqlx::query_as(
        "SELECT id, name, articles FROM pushes WHERE campaign_id = $1 AND status = 'scheduled' AND articles IS NOT NULL"
    )
    .bind(campaign_id).fetch_all(conn).await)?;
    for (push, name, articles) in rows {
        let chosen: Vec<i64> = serde_json::from_str(&articles).unwrap_or_default();
        if let Some(&i) = chosen.iter().find(|&&i| i as usize >= moved_from) {
            let change = if i as usize == moved_from || i as usize >= count { "removes" } else { "moves" };
            return Err(Error::Refused(Refusal::Conflict(format!(
                "push {push} ({name}) is to send article index {i}, which this edit {change}: cancel that push first (and schedule it anew)"
            ))));
        }
    }
    Ok(())
}

pub async fn get(store: &Store, id: i64) -> Result<Option<Campaign>, sqlx::Error> {
    let row: Option<CampaignRow> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, name, product_sku, articles, created_at, updated_at FROM campaigns WHERE id = $1"
    )
    .bind(id).fetch_optional(pool).await)?;
    Ok(row.map(|(id, n, s, a, c, u)| row_to_campaign(id, n, s, a, c, u)))
}

/// By id (all digits) or by name.
pub async fn find(store: &Store, id_or_name: &str) -> Result<Option<Campaign>, sqlx::Error> {
    if let Ok(id) = id_or_name.parse::<i64>() {
        return get(store, id).await;
    }
    let row: Option<CampaignRow> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, name, product_sku, articles, created_at, updated_at FROM campaigns WHERE name = $1"
    )
    .bind(id_or_name).fetch_optional(pool).await)?;
    Ok(row.map(|(id, n, s, a, c, u)| row_to_campaign(id, n, s, a, c, u)))
}

/// Newest first.
pub async fn list(store: &Store, limit: i64) -> Result<Vec<Campaign>, sqlx::Error> {
    let rows: Vec<CampaignRow> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, name, product_sku, articles, created_at, updated_at FROM campaigns ORDER BY id DESC LIMIT $1"
    )
    .bind(limit).fetch_all(pool).await)?;
    Ok(rows.into_iter().map(|(id, n, s, a, c, u)| row_to_campaign(id, n, s, a, c, u)).collect())
}

/// The link a campaign's articles lead to: the checkout landing, which signs the follower in and
/// sends them on to the shop (or to a sold-out page).
pub use crate::shop::article_link;

/// Records WeChat's MASSSENDJOBFINISH for `msg_id` (idempotent: WeChat retries events) and
/// applies it to the run that sent it, if that run knows its msg_id yet.
pub async fn record_finish(
    store: &Store,
    msg_id: i64,
    status: &str,
    counts: (i64, i64, i64, i64),
) -> Result<bool, sqlx::Error> {
    let (total, filtered, sent, errors) = counts;
    let status: String = status.chars().take(100).collect();
    with_pool!(store, pool => sqlx::query(
        "INSERT INTO mass_send_results (msg_id, finish_status, total_count, filter_count, sent_count, error_count, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (msg_id) DO NOTHING"
    )
    .bind(msg_id).bind(&status).bind(total).bind(filtered).bind(sent).bind(errors).bind(store.now_ms())
    .execute(pool).await.map(|r| r.rows_affected()))?;
    apply_stored_finish(store, msg_id).await
}

/// Copies a stored MASSSENDJOBFINISH onto the run with `msg_id`; whether one was applied.
pub async fn apply_stored_finish(store: &Store, msg_id: i64) -> Result<bool, sqlx::Error> {
    type Row = (String, i64, i64, i64, i64, i64);
    let row: Option<Row> = with_pool!(store, pool => sqlx::query_as(
        "SELECT finish_status, total_count, filter_count, sent_count, error_count, received_at
         FROM mass_send_results WHERE msg_id = $1"
    ).bind(msg_id).fetch_optional(pool).await)?;
    let Some((status, total, filtered, sent, errors, at)) = row else { return Ok(false) };
    let r = with_pool!(store, pool => sqlx::query(
        "UPDATE push_runs SET status = 'finished', finish_status = $1, total_count = $2, filter_count = $3,
             sent_count = $4, error_count = $5, finished_at = $6
         WHERE msg_id = $7 AND status IN ('submitted', 'finished')"
    )
    .bind(&status).bind(total).bind(filtered).bind(sent).bind(errors).bind(at).bind(msg_id)
    .execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(r > 0)
}
