//! Replies edited in the console: keyword and menu-click replies (text or news, with the
//! templates' variables) that marketing creates, edits and disables without a developer or a
//! restart.
//!
//! * **One routing.** A stored reply becomes a rule like a `[[rule]]` of `config/routes.toml`,
//!   named `console:<name>`, and sits among the file's rules by its `priority` (higher first; at
//!   equal priority the file's rule wins). `GET /api/v1/replies` shows the merged order.
//! * **Checked whole, applied whole.** A change is checked in the transaction that writes it:
//!   its fields (bounds, a regex that compiles, a template that parses and renders), and the
//!   whole set it joins built into the routing. A broken change is refused with the reason and
//!   changes nothing; a good one writes the reply, its version (the audit trail) and moves the
//!   generation on, together.
//! * **Every instance within two seconds.** Each instance polls the generation every
//!   `replies.poll_ms` (≤ 2000) and, when it moved, builds the new routing beside the one in
//!   force and swaps it in: a message is routed by one version or the next, never a mixture.
//!   The poll reads one row; the webhook's path gains one `Arc` clone.

pub mod api;
mod rule;

pub use rule::{check, routing, rule_name, sample, try_build};

use crate::bot::{Bot, Routing};
use crate::store::{Store, Tx, TxConn};
use crate::text::check_line;
use crate::{with_pool, with_tx};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// What a reply answers: what a follower says (text, or a voice message's recognised speech),
/// or a tap on a menu button (its `EventKey`). `{"keyword": ["hours", "营业时间"]}`,
/// `{"exact": "hi"}`, `{"prefix": "order "}`, `{"regex": "^#\\d+$"}`, `{"click": "MENU_HOURS"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Match {
    /// Contains any of these (case-insensitive).
    Keyword(Vec<String>),
    Exact(String),
    Prefix(String),
    Regex(String),
    /// A CLICK on the menu button with this key.
    Click(String),
}

/// The reply: `{"text": "…"}` or `{"news": [{title, description, url, pic_url}, …]}`; every
/// string is a template (`{{ openid }}`, `{{ Content }}`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Answer {
    Text(String),
    News(Vec<NewsArticle>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewsArticle {
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub url: String,
    #[serde(default)]
    pub pic_url: String,
}

fn yes() -> bool {
    true
}

/// A reply as the API and the console take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyInput {
    pub name: String,
    /// Against `routes.toml`'s rules: higher first, the file's first at equal priority.
    #[serde(default)]
    pub priority: i64,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(rename = "match")]
    pub matching: Match,
    pub reply: Answer,
    /// On an edit: the version it was made from; a reply changed since is refused (409).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// The part of a reply kept as its `spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Spec {
    #[serde(rename = "match")]
    matching: Match,
    reply: Answer,
}

/// A stored reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stored {
    pub id: i64,
    pub name: String,
    pub priority: i64,
    pub enabled: bool,
    #[serde(rename = "match")]
    pub matching: Match,
    pub reply: Answer,
    /// 1 when created, one more for each change.
    pub version: i64,
    /// The rule's name in routing and in the message log.
    pub rule: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_by: String,
    pub updated_at: i64,
}

/// One entry of a reply's audit trail: who changed it to what, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    pub version: i64,
    /// `created`, `updated`, `disabled` or `enabled`.
    pub action: String,
    pub priority: i64,
    pub enabled: bool,
    #[serde(rename = "match")]
    pub matching: Match,
    pub reply: Answer,
    pub changed_by: String,
    pub changed_at: i64,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the reply (or the set it would join) does not build; nothing changed.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// 409: the name is taken, or the reply changed since the version the edit started from.
    #[error("{0}")]
    Conflict(String),
    /// 422: more replies than `replies.max`.
    #[error("{0}")]
    TooMany(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl From<crate::text::BadField> for Error {
    fn from(e: crate::text::BadField) -> Error {
        Error::Invalid(e.to_string())
    }
}

impl From<crate::bot::ReplyRuleError> for Error {
    fn from(e: crate::bot::ReplyRuleError) -> Error {
        Error::Invalid(e.to_string())
    }
}

type Row = (i64, String, i64, bool, String, i64, String, i64, String, i64);
const COLUMNS: &str = "id, name, priority, enabled, spec, version, created_by, created_at, updated_by, updated_at";

fn from_row(r: Row) -> Result<Stored, sqlx::Error> {
    let spec: Spec = serde_json::from_str(&r.4)
        .map_err(|e| sqlx::Error::Decode(format!("reply {}: unreadable spec: {e}", r.0).into()))?;
    Ok(Stored {
        id: r.0,
        rule: rule_name(&r.1),
        name: r.1,
        priority: r.2,
        enabled: r.3,
        matching: spec.matching,
        reply: spec.reply,
        version: r.5,
        created_by: r.6,
        created_at: r.7,
        updated_by: r.8,
        updated_at: r.9,
    })
}

/// Every stored reply, by id.
pub async fn list(store: &Store) -> Result<Vec<Stored>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM replies ORDER BY id");
    let rows: Vec<Row> = with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await)?;
    rows.into_iter().map(from_row).collect()
}

pub async fn get(store: &Store, id: i64) -> Result<Option<Stored>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM replies WHERE id = $1");
    let row: Option<Row> =
        with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await)?;
    row.map(from_row).transpose()
}

/// A reply's audit trail, newest first.
pub async fn history(store: &Store, id: i64) -> Result<Vec<Version>, sqlx::Error> {
    type V = (i64, String, i64, bool, String, String, i64);
    let rows: Vec<V> = with_pool!(store, pool => sqlx::query_as(
        "SELECT version, action, priority, enabled, spec, changed_by, changed_at FROM reply_versions \
         WHERE reply_id = $1 ORDER BY version DESC")
        .bind(id).fetch_all(pool).await)?;
    rows.into_iter()
        .map(|r| {
            let spec: Spec = serde_json::from_str(&r.4)
                .map_err(|e| sqlx::Error::Decode(format!("reply {id} version {}: {e}", r.0).into()))?;
            Ok(Version {
                version: r.0,
                action: r.1,
                priority: r.2,
                enabled: r.3,
                matching: spec.matching,
                reply: spec.reply,
                changed_by: r.5,
                changed_at: r.6,
            })
        })
        .collect()
}

/// The generation: moved on by every change.
pub async fn generation(store: &Store) -> Result<i64, sqlx::Error> {
    with_pool!(store, pool => sqlx::query_scalar("SELECT generation FROM reply_generation WHERE id = 1")
        .fetch_one(pool).await)
}

async fn locked(store: &Store) -> Result<Tx, sqlx::Error> {
    let mut tx = store.begin().await?;
    if let TxConn::Postgres(t) = &mut tx.conn {
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(crate::store::locks::REPLIES).execute(&mut **t).await?;
    }
    Ok(tx)
}

async fn all_in(tx: &mut Tx) -> Result<Vec<Stored>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM replies ORDER BY id");
    let rows: Vec<Row> = with_tx!(tx, conn => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(conn).await)?;
    rows.into_iter().map(from_row).collect()
}

/// Checks `input` and the set it makes with `others` against `base`.
fn check_change(base: &Routing, input: &ReplyInput, others: &[Stored], max: usize) -> Result<(), Error> {
    check(input)?;
    if others.len() + 1 > max {
        return Err(Error::TooMany(format!("at most {max} console replies (replies.max)")));
    }
    try_build(base, input, None)?;
    let mut set = others.to_vec();
    set.push(stored_from(0, input, 1, "", 0));
    routing(base, &set)?;
    Ok(())
}

fn stored_from(id: i64, input: &ReplyInput, version: i64, by: &str, now: i64) -> Stored {
    Stored {
        id,
        name: input.name.clone(),
        rule: rule_name(&input.name),
        priority: input.priority,
        enabled: input.enabled,
        matching: input.matching.clone(),
        reply: input.reply.clone(),
        version,
        created_by: by.into(),
        created_at: now,
        updated_by: by.into(),
        updated_at: now,
    }
}

fn spec_json(input: &ReplyInput) -> String {
    serde_json::to_string(&Spec { matching: input.matching.clone(), reply: input.reply.clone() }).expect("serializable")
}

async fn record(
    tx: &mut Tx,
    id: i64,
    version: i64,
    action: &str,
    input: &ReplyInput,
    by: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, conn => sqlx::query(
        "INSERT INTO reply_versions (reply_id, version, action, priority, enabled, spec, changed_by, changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(id).bind(version).bind(action).bind(input.priority).bind(input.enabled).bind(spec_json(input))
        .bind(by).bind(now).execute(conn).await.map(|_| ()))?;
    with_tx!(tx, conn => sqlx::query("UPDATE reply_generation SET generation = generation + 1 WHERE id = 1")
        .execute(conn).await.map(|_| ()))
}

/// Creates a reply, checked with the set it joins.
pub async fn create(store: &Store, base: &Routing, max: usize, input: &ReplyInput, by: &str) -> Result<Stored, Error> {
    let now = store.now_ms();
    let mut tx = locked(store).await?;
    let others = all_in(&mut tx).await?;
    if others.iter().any(|r| r.name == input.name) {
        return Err(Error::Conflict(format!("a reply named {:?} exists", input.name)));
    }
    check_change(base, input, &others, max)?;
    let id: i64 = with_tx!(&mut tx, conn => sqlx::query_scalar(
        "INSERT INTO replies (name, priority, enabled, spec, version, created_by, created_at, updated_by, updated_at) \
         VALUES ($1, $2, $3, $4, 1, $5, $6, $5, $6) RETURNING id")
        .bind(&input.name).bind(input.priority).bind(input.enabled).bind(spec_json(input)).bind(by).bind(now)
        .fetch_one(conn).await)?;
    record(&mut tx, id, 1, "created", input, by, now).await?;
    tx.commit().await?;
    Ok(stored_from(id, input, 1, by, now))
}

/// Replaces reply `id` with `input` (disabling it is `enabled: false`), checked with the set.
pub async fn update(
    store: &Store,
    base: &Routing,
    max: usize,
    id: i64,
    input: &ReplyInput,
    by: &str,
) -> Result<Stored, Error> {
    let now = store.now_ms();
    let mut tx = locked(store).await?;
    let all = all_in(&mut tx).await?;
    let Some(current) = all.iter().find(|r| r.id == id).cloned() else {
        return Err(Error::NotFound(format!("no reply {id}")));
    };
    if let Some(v) = input.version
        && v != current.version
    {
        return Err(Error::Conflict(format!(
            "reply {id} is at version {} (changed by {}), not {v}: reload it and edit again",
            current.version, current.updated_by
        )));
    }
    let others: Vec<Stored> = all.into_iter().filter(|r| r.id != id).collect();
    if others.iter().any(|r| r.name == input.name) {
        return Err(Error::Conflict(format!("a reply named {:?} exists", input.name)));
    }
    check_change(base, input, &others, max + 1)?;
    let same = current.name == input.name
        && current.priority == input.priority
        && current.matching == input.matching
        && current.reply == input.reply;
    let action = match (current.enabled, input.enabled) {
        (true, false) if same => "disabled",
        (false, true) if same => "enabled",
        _ => "updated",
    };
    let version = current.version + 1;
    with_tx!(&mut tx, conn => sqlx::query(
        "UPDATE replies SET name = $1, priority = $2, enabled = $3, spec = $4, version = $5, updated_by = $6, \
         updated_at = $7 WHERE id = $8")
        .bind(&input.name).bind(input.priority).bind(input.enabled).bind(spec_json(input)).bind(version)
        .bind(by).bind(now).bind(id).execute(conn).await.map(|_| ()))?;
    record(&mut tx, id, version, action, input, by, now).await?;
    tx.commit().await?;
    Ok(Stored {
        created_by: current.created_by,
        created_at: current.created_at,
        ..stored_from(id, input, version, by, now)
    })
}

/// The routing of the bot's files with the stored replies. One that no longer builds (the
/// files changed under it) is left out with an error in the log, so the rest still answer.
pub async fn load(store: &Store, base: &Routing) -> Result<Routing, sqlx::Error> {
    let replies = list(store).await?;
    match routing(base, &replies) {
        Ok(r) => Ok(r),
        Err(e) => {
            tracing::error!(error = %e, "console replies: one does not build; leaving it out");
            let good: Vec<Stored> =
                replies.into_iter().filter(|r| routing(base, std::slice::from_ref(r)).is_ok()).collect();
            Ok(routing(base, &good).unwrap_or_else(|_| base.clone()))
        }
    }
}

/// Puts the stored replies in force on this instance now (the instance that made a change
/// answers with it from the next message; the others follow within `replies.poll_ms`).
pub async fn apply(store: &Store, bot: &Bot) -> Result<i64, sqlx::Error> {
    // The generation first: the replies read after it are at least that new.
    let generation = generation(store).await?;
    let (version, base) = bot.base_versioned();
    bot.set_routing((version, generation), load(store, &base).await?);
    Ok(generation)
}

/// Keeps the bot's routing in step with the stored replies: reads the generation every
/// `every`, and when it moved, builds and swaps in the new routing. Ends when `stop` turns true.
pub async fn follow_changes(
    store: Store,
    bot: Arc<Bot>,
    mut seen: i64,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = match generation(&store).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "console replies: cannot read the generation");
                continue;
            }
        };
        if now == seen {
            continue;
        }
        match apply(&store, &bot).await {
            Ok(applied) => {
                seen = applied;
                metrics::counter!("wxoa_replies_reloads_total").increment(1);
                tracing::info!(generation = applied, "console replies applied");
            }
            Err(e) => tracing::warn!(error = %e, "console replies: cannot load them; keeping the ones in force"),
        }
    }
}

/// A reply rendered for the phone frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "msg_type", rename_all = "lowercase")]
pub enum Rendered {
    Text {
        content: String,
    },
    News {
        articles: Vec<NewsArticle>,
    },
    /// The rule answers `success` (nothing), or with a reply type the console does not draw.
    Other {
        kind: String,
    },
}

/// What a draft would do with a message: whether its match takes it, which rule would answer
/// it with the draft among the stored replies (a higher-priority rule may win), and the
/// draft's reply rendered for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    pub matches: bool,
    pub answered_by: Option<String>,
    pub reply: Option<Rendered>,
    /// The message the preview was made for: what a follower says, or the menu key tapped.
    pub sample: String,
}

fn rendered(reply: crate::wechat::reply::Reply) -> Rendered {
    use crate::wechat::reply::Reply;
    match reply {
        Reply::Text { content } => Rendered::Text { content },
        Reply::News { articles } => Rendered::News {
            articles: articles
                .into_iter()
                .map(|a| NewsArticle { title: a.title, description: a.description, url: a.url, pic_url: a.pic_url })
                .collect(),
        },
        other => Rendered::Other { kind: other.msg_type().into() },
    }
}

/// Previews `input` (as reply `id` when editing one) for `text` (or a message its match takes).
pub async fn preview(
    store: &Store,
    base: &Routing,
    id: Option<i64>,
    input: &ReplyInput,
    text: Option<&str>,
) -> Result<Preview, Error> {
    check(input)?;
    let text = text.filter(|t| !t.is_empty());
    if let Some(t) = text {
        check_line("sample", t, 1, 600)?;
    }
    let (alone, msg) = try_build(base, input, text)?;
    let name = rule_name(&input.name);
    let rule = alone.rules.iter().find(|r| r.name == name).expect("just built");
    let msg = Arc::new(msg);
    let matches = rule.matches(&msg);
    let reply =
        crate::bot::render(&alone, rule, &msg).map_err(|e| Error::Invalid(format!("reply: {e}")))?.map(rendered);
    let mut set: Vec<Stored> = list(store).await?.into_iter().filter(|r| Some(r.id) != id).collect();
    set.push(stored_from(0, input, 1, "", 0));
    let all = routing(base, &set)?;
    let answered_by = all.rules.route(&msg).map(|r| r.name.clone());
    let sample = match &input.matching {
        Match::Click(key) => format!("menu click {key}"),
        _ => msg.said().unwrap_or_default().to_owned(),
    };
    Ok(Preview { matches, answered_by, reply, sample })
}
