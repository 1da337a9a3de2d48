//! What the SQLite log writer committed, handed to the log's readers so they need not read it
//! back.
//!
//! The follower directory and the activity counts read every row of the message log behind the
//! webhook. Reading it back took three scans of each second's rows on the server's one core:
//! about a tenth of the webhook's throughput under `scripts/bench-wrk.sh`, and long reads that
//! kept the writer's WAL restart waiting (the WAL grew past 64 MB). The writer holds each row
//! anyway, so after a commit it moves the few fields the readers use (no copy: the strings are the
//! request's own) into [`Committed`], and a reader takes them from there.
//!
//! Only rows with consecutive ids are kept (SQLite gives a new row the highest id plus one, so a
//! gap means someone else wrote, or the newest row was deleted and its id reused): a reader uses
//! them only from the row after its position, and reads the log itself up to the first one
//! kept. A crash loses only memory — the reader's position is in the database, and the log is
//! read from it — so nothing is counted twice or missed whichever way a process dies.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Rows held at most; past it they are dropped and the readers read the log instead (a reader
/// that stopped taking them must not grow the process).
const CAP: usize = 200_000;

/// A message the writer committed, as the log's readers need it (its XML and reply left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// Its id in `inbound_messages`.
    pub id: i64,
    pub openid: String,
    /// `MsgType` as received.
    pub msg_type: String,
    /// `Event`, as received (events only).
    pub event: Option<String>,
    /// `EventKey`, as received.
    pub event_key: Option<String>,
    /// When it was received (unix ms).
    pub received_at: i64,
}

/// The rows committed since a reader last took them, ids consecutive.
#[derive(Debug, Default)]
pub struct Committed {
    rows: Mutex<Vec<Logged>>,
    /// Rows are kept only once a reader has asked for them.
    wanted: AtomicBool,
}

impl Committed {
    /// Adds a committed batch's new rows (in id order).
    pub(crate) fn extend(&self, batch: Vec<Logged>) {
        if batch.is_empty() || !self.wanted.load(Ordering::Relaxed) {
            return;
        }
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        for row in batch {
            let follows = rows.last().is_none_or(|last| last.id + 1 == row.id);
            if !follows || rows.len() >= CAP {
                rows.clear();
            }
            rows.push(row);
        }
    }

    /// Takes the rows held (ids consecutive, possibly none); rows are kept from the first call on.
    pub fn take(&self) -> Vec<Logged> {
        self.wanted.store(true, Ordering::Relaxed);
        std::mem::take(&mut *self.rows.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64) -> Logged {
        Logged { id, openid: format!("o{id}"), msg_type: "text".into(), event: None, event_key: None, received_at: id }
    }

    fn ids(rows: &[Logged]) -> Vec<i64> {
        rows.iter().map(|r| r.id).collect()
    }

    #[test]
    fn only_consecutive_rows_are_kept_and_only_once_wanted() {
        let c = Committed::default();
        c.extend(vec![row(1), row(2)]);
        assert_eq!(ids(&c.take()), Vec::<i64>::new(), "nobody asked yet");
        c.extend(vec![row(3), row(4)]);
        c.extend(vec![row(5)]);
        assert_eq!(ids(&c.take()), vec![3, 4, 5]);
        // A gap (another writer's row 7) starts over from the row after it.
        c.extend(vec![row(6)]);
        c.extend(vec![row(8), row(9)]);
        assert_eq!(ids(&c.take()), vec![8, 9]);
        // An id reused after the newest row was deleted starts over too.
        c.extend(vec![row(10), row(11)]);
        c.extend(vec![row(11)]);
        assert_eq!(ids(&c.take()), vec![11]);
    }

    #[test]
    fn past_the_cap_it_starts_over() {
        let c = Committed::default();
        c.take();
        c.extend((1..=CAP as i64 + 3).map(row).collect());
        assert_eq!(ids(&c.take()), vec![CAP as i64 + 1, CAP as i64 + 2, CAP as i64 + 3]);
    }
}
