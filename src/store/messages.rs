//! The inbound message log, written with group commit.
//!
//! Every accepted message is *claimed* — inserted under its unique dedup key — before it is
//! handled, and its reply recorded before the response leaves. Doing that with one commit per
//! request would cap the webhook at the disk's commit rate, so requests hand their rows to one
//! writer task that puts everything queued into a single transaction and wakes all of them when
//! it commits. Under load a batch grows to whatever arrived during the previous commit; at rest
//! it is one row and no added latency.
//!
//! A claim that hits an existing key is a retry (or a concurrent duplicate from another
//! instance): the caller then reads the first call's outcome with [`find`].

use super::{Store, now_ms};
use crate::with_pool;
use tokio::sync::{mpsc, oneshot};

/// Rows per statement are powers of two up to this, so each backend prepares at most a handful
/// of distinct statements.
const MAX_CHUNK: usize = 128;
/// Rows per transaction.
const MAX_BATCH: usize = 1024;

/// An inbound message, as claimed.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub dedup_key: String,
    pub openid: String,
    pub msg_type: String,
    pub event: Option<String>,
    pub event_key: Option<String>,
    pub msg_id: Option<String>,
    pub create_time: i64,
    pub encrypted: bool,
    pub raw_xml: String,
    pub received_at: i64,
    pub claimed_by: String,
}

/// What we answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `replied`, `nothing` or `deferred`.
    pub outcome: String,
    pub reply_xml: Option<String>,
    pub rule: Option<String>,
    pub handled_us: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// We own the message; its row id.
    Claimed(i64),
    /// Another call claimed this key first.
    Duplicate,
}

/// A claimed message as stored, with its outcome if there is one yet.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: i64,
    pub claimed_by: String,
    pub claimed_at: i64,
    pub outcome: Option<Outcome>,
}

enum Op {
    Claim(Box<Inbound>, oneshot::Sender<Result<Claim, String>>),
    Complete(i64, Outcome, oneshot::Sender<Result<(), String>>),
}

/// Handle to the group-commit writer. Cloning is cheap; the writer stops when the last handle
/// is dropped, after committing what was queued.
#[derive(Clone)]
pub struct MessageLog {
    tx: mpsc::Sender<Op>,
    store: Store,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogError(pub String);

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "message log: {}", self.0)
    }
}

impl std::error::Error for LogError {}

impl MessageLog {
    /// Starts the writer task; the returned join handle finishes once every handle is dropped
    /// and the queue is flushed.
    pub fn start(store: Store) -> (MessageLog, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(16 * 1024);
        let writer = tokio::spawn(writer(store.clone(), rx));
        (MessageLog { tx, store }, writer)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Inserts the message under its dedup key, committed before this returns.
    pub async fn claim(&self, inbound: Inbound) -> Result<Claim, LogError> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Op::Claim(Box::new(inbound), done)).await.map_err(|_| LogError("writer stopped".into()))?;
        wait.await.map_err(|_| LogError("writer stopped".into()))?.map_err(LogError)
    }

    /// Records the outcome of a claimed message, committed before this returns.
    pub async fn complete(&self, id: i64, outcome: Outcome) -> Result<(), LogError> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Op::Complete(id, outcome, done)).await.map_err(|_| LogError("writer stopped".into()))?;
        wait.await.map_err(|_| LogError("writer stopped".into()))?.map_err(LogError)
    }

    /// The stored message and outcome for a dedup key.
    pub async fn find(&self, dedup_key: &str) -> Result<Option<Stored>, LogError> {
        find(&self.store, dedup_key).await.map_err(|e| LogError(e.to_string()))
    }

    /// Takes over a claim whose owner has gone quiet (it died mid-handling): succeeds only if the
    /// claim is still the one we saw and no outcome was recorded meanwhile.
    pub async fn take_over(&self, stored: &Stored, instance: &str) -> Result<bool, LogError> {
        let sql = "UPDATE inbound_messages SET claimed_by = $1, claimed_at = $2 \
                   WHERE id = $3 AND claimed_at = $4 \
                   AND NOT EXISTS (SELECT 1 FROM inbound_replies WHERE message_id = $3)";
        let done = with_pool!(&self.store, pool => sqlx::query(sql)
            .bind(instance)
            .bind(now_ms())
            .bind(stored.id)
            .bind(stored.claimed_at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| LogError(e.to_string()))?;
        Ok(done == 1)
    }
}

pub async fn find(store: &Store, dedup_key: &str) -> Result<Option<Stored>, sqlx::Error> {
    let sql = "SELECT m.id, m.claimed_by, m.claimed_at, r.outcome, r.reply_xml, r.rule, r.handled_us \
               FROM inbound_messages m LEFT JOIN inbound_replies r ON r.message_id = m.id \
               WHERE m.dedup_key = $1";
    type Row = (i64, String, i64, Option<String>, Option<String>, Option<String>, Option<i64>);
    let row: Option<Row> = with_pool!(store, pool => sqlx::query_as(sql).bind(dedup_key).fetch_optional(pool).await)?;
    Ok(row.map(|(id, claimed_by, claimed_at, outcome, reply_xml, rule, handled_us)| Stored {
        id,
        claimed_by,
        claimed_at,
        outcome: outcome.map(|outcome| Outcome { outcome, reply_xml, rule, handled_us: handled_us.unwrap_or(0) }),
    }))
}

async fn writer(store: Store, mut rx: mpsc::Receiver<Op>) {
    let mut ops = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut ops, MAX_BATCH).await > 0 {
        metrics::histogram!("wxoa_message_log_batch_rows").record(ops.len() as f64);
        let mut claims = Vec::new();
        let mut completes = Vec::new();
        for op in ops.drain(..) {
            match op {
                Op::Claim(inbound, done) => claims.push((inbound, done)),
                Op::Complete(id, outcome, done) => completes.push((id, outcome, done)),
            }
        }
        let claim_rows: Vec<&Inbound> = claims.iter().map(|(i, _)| i.as_ref()).collect();
        let complete_rows: Vec<(i64, &Outcome)> = completes.iter().map(|(id, o, _)| (*id, o)).collect();
        match write_batch(&store, &claim_rows, &complete_rows).await {
            Ok(ids) => {
                for ((inbound, done), id) in claims.into_iter().zip(ids) {
                    let claim = match id {
                        Some(id) => Claim::Claimed(id),
                        None => Claim::Duplicate,
                    };
                    let _ = done.send(Ok(claim));
                    drop(inbound);
                }
                for (_, _, done) in completes {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "message log batch failed");
                let msg = e.to_string();
                for (_, done) in claims {
                    let _ = done.send(Err(msg.clone()));
                }
                for (_, _, done) in completes {
                    let _ = done.send(Err(msg.clone()));
                }
            }
        }
    }
}

/// Writes one batch in one transaction; returns the new row id of each claim (`None` for a
/// duplicate key).
async fn write_batch(
    store: &Store,
    claims: &[&Inbound],
    completes: &[(i64, &Outcome)],
) -> Result<Vec<Option<i64>>, sqlx::Error> {
    let now = now_ms();
    with_pool!(store, pool => {
        let mut tx = pool.begin().await?;
        let mut ids: Vec<Option<i64>> = vec![None; claims.len()];
        let mut start = 0;
        for chunk in chunks(claims.len()) {
            let rows = &claims[start..start + chunk];
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO inbound_messages (dedup_key, openid, msg_type, event, event_key, msg_id, \
                 create_time, encrypted, raw_xml, received_at, claimed_by, claimed_at) ",
            );
            q.push_values(rows, |mut b, m| {
                b.push_bind(m.dedup_key.as_str())
                    .push_bind(m.openid.as_str())
                    .push_bind(m.msg_type.as_str())
                    .push_bind(m.event.as_deref())
                    .push_bind(m.event_key.as_deref())
                    .push_bind(m.msg_id.as_deref())
                    .push_bind(m.create_time)
                    .push_bind(m.encrypted)
                    .push_bind(m.raw_xml.as_str())
                    .push_bind(m.received_at)
                    .push_bind(m.claimed_by.as_str())
                    .push_bind(now);
            });
            q.push(" ON CONFLICT (dedup_key) DO NOTHING RETURNING id, dedup_key");
            let inserted: Vec<(i64, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
            for (id, key) in inserted {
                if let Some(pos) = rows.iter().position(|m| m.dedup_key == key) {
                    ids[start + pos] = Some(id);
                }
            }
            start += chunk;
        }
        let mut start = 0;
        for chunk in chunks(completes.len()) {
            let rows = &completes[start..start + chunk];
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO inbound_replies (message_id, outcome, reply_xml, rule, handled_us, replied_at) ",
            );
            q.push_values(rows, |mut b, (id, o)| {
                b.push_bind(*id)
                    .push_bind(o.outcome.as_str())
                    .push_bind(o.reply_xml.as_deref())
                    .push_bind(o.rule.as_deref())
                    .push_bind(o.handled_us)
                    .push_bind(now);
            });
            q.push(" ON CONFLICT (message_id) DO NOTHING");
            q.build().execute(&mut *tx).await?;
            start += chunk;
        }
        tx.commit().await?;
        Ok(ids)
    })
}

/// Splits `n` rows into power-of-two chunks of at most [`MAX_CHUNK`].
fn chunks(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let c = if n >= MAX_CHUNK { MAX_CHUNK } else { 1 << (usize::BITS - 1 - n.leading_zeros()) };
        n -= c;
        Some(c)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_are_powers_of_two() {
        let got: Vec<usize> = super::chunks(300).collect();
        assert_eq!(got, [128, 128, 32, 8, 4]);
        assert_eq!(super::chunks(0).count(), 0);
        assert_eq!(super::chunks(1).collect::<Vec<_>>(), [1]);
    }
}
