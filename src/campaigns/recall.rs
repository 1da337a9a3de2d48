//! Taking a wrong push back: `message/mass/delete` for every firing of it that went out.
//!
//! WeChat deletes only what an `mpnews` (or video) send put up, and only once it went out: the
//! article pages stop opening, but followers keep the card in their chat. One article (from 1)
//! or all of them (0) can go. A recall is claimed first — a `push_recalls` row per firing and
//! article, unique — and WeChat is called for the claims only, so two recalls at once call WeChat
//! once; a claim WeChat refuses is removed again and the refusal answered.

use super::schedule::{self, MsgType, Push, Run, RunStatus};
use super::{Refusal, local_time};
use crate::store::Store;
use crate::wechat::client::{CallError, Client};
use crate::with_pool;

/// Why a recall did not happen (or not entirely).
#[derive(Debug, thiserror::Error)]
pub enum RecallError {
    /// No such push, not one WeChat can take back, never sent, already recalled, or a bad
    /// article number.
    #[error("{0}")]
    Refused(Refusal),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// WeChat did not take it down.
    #[error("WeChat did not recall push {push}: {error}")]
    WeChat {
        /// The push.
        push: i64,
        /// What the client said.
        error: CallError,
    },
}

impl From<super::Error> for RecallError {
    fn from(e: super::Error) -> Self {
        match e {
            super::Error::Refused(r) => RecallError::Refused(r),
            super::Error::Db(e) => RecallError::Db(e),
        }
    }
}

/// The firings of `push` that went out to WeChat, each with the msg_id WeChat gave it: what a
/// recall can take back.
pub fn sent(push: &Push) -> impl Iterator<Item = (&Run, i64)> {
    push.runs
        .iter()
        .filter(|r| matches!(r.status, RunStatus::Submitted | RunStatus::Finished))
        .filter_map(|r| Some((r, r.msg_id?)))
}

/// Whether there is anything of `push` to take back: an `mpnews` push with a firing that went
/// out and is not wholly recalled.
pub fn recallable(push: &Push) -> bool {
    push.msg_type == MsgType::Mpnews
        && sent(push).any(|(r, _)| !push.recalled.iter().any(|c| c.run_id == r.id && c.article_idx == 0))
}

/// Recalls push `id` (article `article_idx` from 1, or all with `None`) as `by`; returns the push
/// with what was taken back.
pub async fn recall(
    store: &Store,
    client: &Client,
    id: i64,
    article_idx: Option<i64>,
    by: &str,
) -> Result<Push, RecallError> {
    let refuse = |r| Err(RecallError::Refused(r));
    let Some(push) = schedule::get(store, id).await? else {
        return refuse(Refusal::NotFound(format!("no push {id}")));
    };
    if push.msg_type != MsgType::Mpnews {
        return refuse(Refusal::Conflict(format!(
            "push {id} is a {} push: WeChat takes back only articles (mpnews) once sent",
            push.msg_type.as_str()
        )));
    }
    let sent: Vec<(i64, i64)> = sent(&push).map(|(r, msg_id)| (r.id, msg_id)).collect();
    if sent.is_empty() {
        return refuse(Refusal::Conflict(format!("push {id} was never sent: there is nothing to recall")));
    }
    let articles = match &push.articles {
        Some(chosen) => chosen.len() as i64,
        None => super::get(store, push.campaign_id).await?.map_or(1, |c| c.articles.len() as i64),
    };
    let idx = article_idx.unwrap_or(0);
    if article_idx.is_some() && !(1..=articles).contains(&idx) {
        return refuse(Refusal::Invalid(format!(
            "article_idx must be 1 to {articles} (push {id} sent {articles} article{}); leave it out to recall all",
            if articles == 1 { "" } else { "s" }
        )));
    }
    // Claim each firing not already taken back (whole, or this article).
    let now = store.now_ms();
    let mut claimed = Vec::new();
    for (run_id, msg_id) in sent {
        let taken = push.recalled.iter().any(|r| r.run_id == run_id && (r.article_idx == 0 || r.article_idx == idx));
        if taken {
            continue;
        }
        let won = with_pool!(store, pool => sqlx::query(
            "INSERT INTO push_recalls (run_id, push_id, article_idx, recalled_by, recalled_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (run_id, article_idx) DO NOTHING")
            .bind(run_id).bind(id).bind(idx).bind(by).bind(now)
            .execute(pool).await.map(|r| r.rows_affected() == 1))?;
        if won {
            claimed.push((run_id, msg_id));
        }
    }
    if claimed.is_empty() {
        let what = if idx == 0 { "push".to_owned() } else { format!("article {idx} of push") };
        let last = push.recalled.iter().rev().find(|r| r.article_idx == 0 || r.article_idx == idx);
        let when = last.map(|r| format!(" by {} at {}", r.by, local_time(r.at, &push.time_zone))).unwrap_or_default();
        return refuse(Refusal::Conflict(format!("{what} {id} was already recalled{when}")));
    }
    for (run_id, msg_id) in claimed {
        let article = (idx > 0).then_some(idx as u32);
        if let Err(error) = client.mass_delete(msg_id, article).await {
            with_pool!(store, pool => sqlx::query("DELETE FROM push_recalls WHERE run_id = $1 AND article_idx = $2")
                .bind(run_id).bind(idx).execute(pool).await.map(|_| ()))?;
            return Err(RecallError::WeChat { push: id, error });
        }
    }
    tracing::info!(push = id, article_idx = idx, by, "push recalled");
    Ok(schedule::get(store, id).await?.expect("the push was just read"))
}
