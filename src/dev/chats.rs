//! The simulator's followers and chats, kept in the `dev` database (`simulator_followers`,
//! `simulator_bubbles`; migration 0021) so that restarting `wxoa dev` keeps the conversations
//! as it keeps the memberships they led to. The page still works from memory; every bubble is
//! written through as it is made, and a restart reads the latest [`KEPT`] back.

use crate::store::Store;
use crate::with_pool;

/// A simulated follower.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Follower {
    /// `oSim…`, as WeChat's openids are 28 characters.
    pub openid: String,
    /// What the simulator calls them (Amy, Ben, …).
    pub name: String,
    /// Tag names (the fake holds the ids).
    pub tags: Vec<String>,
}

/// One chat bubble.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Bubble {
    /// In the order the bubbles were made, across every chat.
    pub id: u64,
    /// Whose chat it is in.
    pub openid: String,
    /// `follower` (what they did) or `account` (what came back).
    pub from: String,
    /// `text`, `news`, `image`, `voice`, `video`, `music`, `transfer`, `template`, `action`.
    pub kind: String,
    /// What the page draws, by kind (`text`, `articles`, `fields`, …).
    pub body: serde_json::Value,
}

/// Bubbles read back on start (the page shows every one it is given).
pub const KEPT: i64 = 2000;

/// The followers added so far, in the order they were added.
pub async fn followers(store: &Store) -> Result<Vec<Follower>, sqlx::Error> {
    let rows: Vec<(String, String, String)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT openid, name, tags FROM simulator_followers ORDER BY created_at, openid").fetch_all(pool).await)?;
    Ok(rows
        .into_iter()
        .map(|(openid, name, tags)| Follower {
            openid,
            name,
            tags: tags.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
        })
        .collect())
}

pub async fn add_follower(store: &Store, f: &Follower) -> Result<(), sqlx::Error> {
    with_pool!(store, pool => sqlx::query(
        "INSERT INTO simulator_followers (openid, name, tags, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (openid) DO NOTHING")
        .bind(&f.openid).bind(&f.name).bind(f.tags.join(",")).bind(store.now_ms()).execute(pool).await.map(|_| ()))?;
    Ok(())
}

/// The latest [`KEPT`] bubbles, oldest first.
pub async fn bubbles(store: &Store) -> Result<Vec<Bubble>, sqlx::Error> {
    let rows: Vec<(i64, String, String, String, String)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, openid, sender, kind, body FROM simulator_bubbles ORDER BY id DESC LIMIT $1")
        .bind(KEPT).fetch_all(pool).await)?;
    Ok(rows
        .into_iter()
        .rev()
        .map(|(id, openid, from, kind, body)| Bubble {
            id: id as u64,
            openid,
            from,
            kind,
            body: serde_json::from_str(&body).unwrap_or_default(),
        })
        .collect())
}

pub async fn save(store: &Store, bubbles: &[Bubble]) -> Result<(), sqlx::Error> {
    for b in bubbles {
        with_pool!(store, pool => sqlx::query(
            "INSERT INTO simulator_bubbles (id, openid, sender, kind, body, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO NOTHING")
            .bind(b.id as i64).bind(&b.openid).bind(&b.from).bind(&b.kind).bind(b.body.to_string()).bind(store.now_ms())
            .execute(pool).await.map(|_| ()))?;
    }
    Ok(())
}
