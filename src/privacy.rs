//! Personal-data rights (China's PIPL): a copy of everything wxoa holds about one person, and
//! its erasure.
//!
//! A person is named by an openid or a card number ([`find`]): the member with that card or
//! openid (and so their openid), or else the follower with that openid. What is theirs:
//!
//! | where | export | erase |
//! |---|---|---|
//! | `members` | the row | anonymised: card, phone, name, birthday, openid, store cleared; `source = 'erased'` |
//! | `points_ledger`, `points_lots` | every entry, the lots | entries replaced by one anonymous sum per kind, and one `adjust` that forfeits the balance, so programme totals stay right; lots deleted |
//! | `redemptions` | every one | kept, now of the anonymous member (stock and catalogue figures) |
//! | `bookings`, `followers`, `follower_tags`, `segment_members`, `segment_ops`, `inbound_messages` (with the XML), `h5_sessions`, `h5_submissions`, `orders`, `order_credits`, `checkouts`, `link_openers` | every row | deleted (booked slots free again; the funnel's per-minute counts stay) |
//! | `jobs` | what is queued for them | deleted, the member's CRM queue too |
//! | `simulator_followers`, `simulator_bubbles` (`wxoa dev` only) | — | deleted |
//! | `pushes.openids`, `follower_syncs.next_openid`, `bind_failures` | — | the openid removed |
//!
//! Erasure is one transaction, recorded in `erasures` (who, which member number, when, how many
//! rows; nothing of the erased data); with a CRM listening it queues `member.erased` (card number
//! only) so the CRM erases its copy.

use crate::store::{Pool, Store, Tx};
use crate::{with_pool, with_tx};
use serde_json::{Map, Value, json};

/// Whose data: found by [`find`].
#[derive(Debug, Clone)]
pub struct Person {
    /// Their member row, if they are a member.
    pub member_id: Option<i64>,
    pub card_no: Option<String>,
    /// Their openid, if wxoa knows it.
    pub openid: Option<String>,
    /// Their follower row, if any.
    pub follower_id: Option<i64>,
}

/// The person `key` (an openid or a card number) names; `None` if wxoa holds nothing of them.
pub async fn find(store: &Store, key: &str) -> Result<Option<Person>, sqlx::Error> {
    let member: Option<(i64, Option<String>, Option<String>)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, card_no, openid FROM members WHERE card_no = $1 OR openid = $1 ORDER BY id LIMIT 1")
        .bind(key).fetch_optional(pool).await)?;
    let (member_id, card_no, openid) = match member {
        Some((id, card, openid)) => (Some(id), card, openid),
        None => (None, None, Some(key.to_owned())),
    };
    let follower_id: Option<i64> = match &openid {
        Some(o) => with_pool!(store, pool => sqlx::query_scalar("SELECT id FROM followers WHERE openid = $1")
            .bind(o).fetch_optional(pool).await)?,
        None => None,
    };
    if member_id.is_none() && follower_id.is_none() {
        return Ok(None);
    }
    Ok(Some(Person { member_id, card_no, openid, follower_id }))
}

/// A bound value of a query.
#[derive(Clone)]
enum Bind {
    Int(i64),
    Text(String),
}

/// Rows as JSON objects of `columns`: `SELECT {columns} FROM {rest}`, built by the database
/// itself (`json_object` on SQLite, `json_build_object` on PostgreSQL) so one query serves both.
async fn objects(store: &Store, columns: &[&str], rest: &str, bind: Bind) -> Result<Vec<Value>, sqlx::Error> {
    let pairs = columns.iter().map(|c| format!("'{c}', {c}")).collect::<Vec<_>>().join(", ");
    let sql = match store.pool {
        Pool::Sqlite(..) => format!("SELECT json_object({pairs}) FROM {rest}"),
        Pool::Postgres(..) => format!("SELECT json_build_object({pairs})::text FROM {rest}"),
    };
    // The SQL is ours: column and table names from this file, the value bound.
    let sql = sqlx::AssertSqlSafe(sql);
    let rows: Vec<String> = match bind {
        Bind::Int(v) => with_pool!(store, pool => sqlx::query_scalar(sql).bind(v).fetch_all(pool).await)?,
        Bind::Text(v) => with_pool!(store, pool => sqlx::query_scalar(sql).bind(v).fetch_all(pool).await)?,
    };
    Ok(rows.iter().filter_map(|r| serde_json::from_str(r).ok()).collect())
}

/// Everything wxoa holds about `person`, as one JSON document.
pub async fn export(store: &Store, person: &Person) -> Result<Value, sqlx::Error> {
    let mut doc = Map::new();
    doc.insert("exported_at".into(), crate::crm::rfc3339(store.now_ms()).into());
    let none = Vec::new;
    if let Some(id) = person.member_id {
        let m = Bind::Int(id);
        let member = objects(store, MEMBER, "members WHERE id = $1", m.clone()).await?;
        doc.insert("member".into(), member.into_iter().next().unwrap_or(Value::Null));
        let ledger = "points_ledger WHERE member_id = $1 ORDER BY id";
        doc.insert("points_ledger".into(), objects(store, LEDGER, ledger, m.clone()).await?.into());
        let lots = "points_lots WHERE member_id = $1 ORDER BY valid_until";
        doc.insert("points_lots".into(), objects(store, &["valid_until", "remaining"], lots, m.clone()).await?.into());
        let redemptions = "redemptions WHERE member_id = $1 ORDER BY id";
        doc.insert("redemptions".into(), objects(store, REDEMPTION, redemptions, m.clone()).await?.into());
        let bookings = "bookings WHERE member_id = $1 ORDER BY id";
        doc.insert("bookings".into(), objects(store, BOOKING, bookings, m).await?.into());
    } else {
        doc.insert("member".into(), Value::Null);
    }
    if let Some(id) = person.follower_id {
        let f = Bind::Int(id);
        let follower = objects(store, FOLLOWER, "followers WHERE id = $1", f.clone()).await?;
        doc.insert("follower".into(), follower.into_iter().next().unwrap_or(Value::Null));
        let tags = "follower_tags WHERE follower_id = $1 ORDER BY tag_id";
        doc.insert("follower_tags".into(), objects(store, &["tag_id"], tags, f).await?.into());
    } else {
        doc.insert("follower".into(), Value::Null);
    }
    let by_openid = async |columns: &[&str], rest: &str| match &person.openid {
        Some(o) => objects(store, columns, rest, Bind::Text(o.clone())).await,
        None => Ok(none()),
    };
    doc.insert("messages".into(), by_openid(MESSAGE, "inbound_messages WHERE openid = $1 ORDER BY id").await?.into());
    let sessions = "h5_sessions WHERE openid = $1 ORDER BY created_at";
    doc.insert("h5_sessions".into(), by_openid(&["nickname", "created_at", "expires_at"], sessions).await?.into());
    let orders = "orders WHERE openid = $1 ORDER BY received_at";
    doc.insert("orders".into(), by_openid(&["order_id", "status", "body", "received_at"], orders).await?.into());
    let checkouts = "checkouts WHERE openid = $1 ORDER BY issued_at";
    doc.insert("checkouts".into(), by_openid(&["campaign_id", "push_id", "issued_at"], checkouts).await?.into());
    let opens = "link_openers WHERE openid = $1 ORDER BY first_at";
    doc.insert("campaign_link_opens".into(), by_openid(&["campaign_id", "push_id", "first_at"], opens).await?.into());
    let jobs = match &person.openid {
        Some(o) => {
            let rest = "jobs WHERE payload LIKE $1 ESCAPE '\\' ORDER BY id";
            objects(store, JOB, rest, Bind::Text(quoted(o))).await?
        }
        None => none(),
    };
    doc.insert("queued_messages".into(), jobs.into());
    Ok(Value::Object(doc))
}

const MEMBER: &[&str] = &[
    "id",
    "card_no",
    "phone",
    "name",
    "birthday",
    "tier",
    "tier_held_until",
    "openid",
    "store_id",
    "source",
    "created_at",
    "updated_at",
];
const LEDGER: &[&str] = &[
    "kind",
    "points",
    "earned",
    "valid_until",
    "reference",
    "note",
    "store_code",
    "amount_fen",
    "voids",
    "occurred_at",
    "created_at",
];
const REDEMPTION: &[&str] = &["id", "item_id", "points", "created_at"];
const BOOKING: &[&str] = &["id", "advisor_id", "slot_start", "status", "created_at", "cancelled_at"];
const FOLLOWER: &[&str] = &[
    "openid",
    "store_id",
    "subscribed",
    "scene",
    "first_subscribed_at",
    "last_subscribed_at",
    "unsubscribed_at",
    "remark",
    "last_interaction_at",
];
const MESSAGE: &[&str] =
    &["msg_type", "event", "event_key", "msg_id", "create_time", "received_at", "raw_xml", "outcome", "reply_xml"];
const JOB: &[&str] = &["id", "kind", "state", "payload", "run_at", "created_at"];

/// A LIKE pattern (`ESCAPE '\'`) for JSON holding `openid` as a string value: `%"o…"%`, with
/// LIKE's wildcards escaped (openids are letters, digits, `-` and `_`).
fn quoted(openid: &str) -> String {
    format!("%\"{}\"%", openid.replace('%', "").replace('_', "\\_"))
}

/// What an erasure removed, by table (rows deleted or anonymised).
pub type Removed = std::collections::BTreeMap<&'static str, u64>;

/// Erases `person` in one transaction (see the module's table); `by` is who asked (logged in
/// `erasures` with the member number and the counts). With `crm` on, the CRM hears
/// `member.erased`.
pub async fn erase(store: &Store, person: &Person, by: &str, crm: crate::crm::Events) -> Result<Removed, sqlx::Error> {
    let mut removed = Removed::new();
    let mut tx = store.begin().await?;
    let now = store.now_ms();
    if let Some(id) = person.member_id {
        crate::crm::lock_member(&mut tx, id).await?;
        erase_member(&mut tx, id, now, &mut removed).await?;
        // The member's CRM events not yet delivered carry what is being erased.
        let queue = crate::crm::queue(id);
        let n =
            exec(&mut tx, "DELETE FROM jobs WHERE queue_key = $1 AND state <> 'running'", Bind::Text(queue)).await?;
        *removed.entry("jobs").or_default() += n;
    }
    if let Some(openid) = &person.openid {
        erase_openid(&mut tx, openid, &mut removed).await?;
    }
    if let Some(id) = person.follower_id {
        for (table, sql) in [
            ("follower_tags", "DELETE FROM follower_tags WHERE follower_id = $1"),
            ("segment_members", "DELETE FROM segment_members WHERE follower_id = $1"),
            ("segment_ops", "DELETE FROM segment_ops WHERE follower_id = $1"),
            ("followers", "DELETE FROM followers WHERE id = $1"),
        ] {
            removed.insert(table, exec(&mut tx, sql, Bind::Int(id)).await?);
        }
    }
    if let Some(id) = person.member_id {
        let member = crate::crm::MemberRef { card_no: person.card_no.clone(), id };
        crm.emit(&mut tx, &member, crate::crm::Event::MemberErased {}).await?;
    }
    let counts = serde_json::to_string(&removed).expect("counts serialize");
    with_tx!(&mut tx, conn => sqlx::query(
        "INSERT INTO erasures (member_id, erased_by, erased_at, removed) VALUES ($1, $2, $3, $4)")
        .bind(person.member_id).bind(by).bind(now).bind(&counts).execute(&mut *conn).await.map(|_| ()))?;
    tx.commit().await?;
    Ok(removed)
}

async fn exec(tx: &mut Tx, sql: &'static str, bind: Bind) -> Result<u64, sqlx::Error> {
    with_tx!(tx, conn => match bind {
        Bind::Int(v) => sqlx::query(sql).bind(v).execute(&mut *conn).await.map(|r| r.rows_affected()),
        Bind::Text(v) => sqlx::query(sql).bind(v).execute(&mut *conn).await.map(|r| r.rows_affected()),
    })
}

async fn erase_member(tx: &mut Tx, id: i64, now: i64, removed: &mut Removed) -> Result<(), sqlx::Error> {
    // The ledger as anonymous sums: one entry per kind, and the balance forfeited.
    let sums: Vec<(String, i64, i64, Option<i64>)> = with_tx!(tx, conn => sqlx::query_as(
        "SELECT kind, CAST(COALESCE(SUM(points), 0) AS BIGINT), CAST(COALESCE(SUM(earned), 0) AS BIGINT), \
                CAST(SUM(amount_fen) AS BIGINT) FROM points_ledger \
         WHERE member_id = $1 GROUP BY kind ORDER BY kind")
        .bind(id).fetch_all(&mut *conn).await)?;
    let entries = exec(tx, "DELETE FROM points_ledger WHERE member_id = $1", Bind::Int(id)).await?;
    removed.insert("points_ledger", entries);
    let balance: i64 = sums.iter().map(|s| s.1).sum();
    let forfeit = (balance != 0).then(|| ("adjust".to_owned(), -balance, 0, None));
    for (i, (kind, points, earned, amount)) in sums.into_iter().chain(forfeit).enumerate() {
        let reference = format!("erased:{id}:{i}");
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO points_ledger (member_id, kind, points, earned, amount_fen, reference, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(id).bind(&kind).bind(points).bind(earned).bind(amount).bind(&reference).bind(now)
            .execute(&mut *conn).await.map(|_| ()))?;
    }
    removed.insert("points_lots", exec(tx, "DELETE FROM points_lots WHERE member_id = $1", Bind::Int(id)).await?);
    removed.insert("bookings", exec(tx, "DELETE FROM bookings WHERE member_id = $1", Bind::Int(id)).await?);
    let card: Option<String> = with_tx!(tx, conn => sqlx::query_scalar("SELECT card_no FROM members WHERE id = $1")
        .bind(id).fetch_one(&mut *conn).await)?;
    if let Some(card) = card {
        let n = exec(tx, "DELETE FROM bind_failures WHERE subject = $1", Bind::Text(format!("card:{card}"))).await?;
        *removed.entry("bind_failures").or_default() += n;
    }
    let n = with_tx!(tx, conn => sqlx::query(
        "UPDATE members SET card_no = NULL, phone = NULL, name = NULL, birthday = NULL, openid = NULL, \
         store_id = NULL, source = 'erased', updated_at = $2 WHERE id = $1")
        .bind(id).bind(now).execute(&mut *conn).await.map(|r| r.rows_affected()))?;
    removed.insert("members", n);
    Ok(())
}

async fn erase_openid(tx: &mut Tx, openid: &str, removed: &mut Removed) -> Result<(), sqlx::Error> {
    let o = || Bind::Text(openid.to_owned());
    // Their orders' campaign credits go with the orders.
    let n =
        exec(tx, "DELETE FROM order_credits WHERE order_id IN (SELECT order_id FROM orders WHERE openid = $1)", o())
            .await?;
    removed.insert("order_credits", n);
    let n =
        exec(tx, "DELETE FROM h5_submissions WHERE session_id IN (SELECT id FROM h5_sessions WHERE openid = $1)", o())
            .await?;
    removed.insert("h5_submissions", n);
    for (table, sql) in [
        ("inbound_messages", "DELETE FROM inbound_messages WHERE openid = $1"),
        ("h5_sessions", "DELETE FROM h5_sessions WHERE openid = $1"),
        ("orders", "DELETE FROM orders WHERE openid = $1"),
        ("checkouts", "DELETE FROM checkouts WHERE openid = $1"),
        ("link_openers", "DELETE FROM link_openers WHERE openid = $1"),
        // `wxoa dev`'s simulated chats (empty on a `serve` database).
        ("simulator_bubbles", "DELETE FROM simulator_bubbles WHERE openid = $1"),
        ("simulator_followers", "DELETE FROM simulator_followers WHERE openid = $1"),
    ] {
        removed.insert(table, exec(tx, sql, o()).await?);
    }
    let n = exec(tx, "DELETE FROM bind_failures WHERE subject = $1", Bind::Text(format!("openid:{openid}"))).await?;
    *removed.entry("bind_failures").or_default() += n;
    // Messages queued for them (their payloads name them).
    let pattern = Bind::Text(quoted(openid));
    let n = exec(tx, "DELETE FROM jobs WHERE payload LIKE $1 ESCAPE '\\' AND state <> 'running'", pattern).await?;
    *removed.entry("jobs").or_default() += n;
    exec(tx, "UPDATE follower_syncs SET next_openid = '' WHERE next_openid = $1", o()).await?;
    // Pushes to a list of openids: the list without theirs.
    let pattern = quoted(openid);
    let lists: Vec<(i64, String)> = with_tx!(tx, conn => sqlx::query_as(
        "SELECT id, openids FROM pushes WHERE openids LIKE $1 ESCAPE '\\'")
        .bind(&pattern).fetch_all(&mut *conn).await)?;
    for (id, list) in lists {
        let mut ids: Vec<String> = serde_json::from_str(&list).unwrap_or_default();
        ids.retain(|i| i != openid);
        let list = json!(ids).to_string();
        with_tx!(tx, conn => sqlx::query("UPDATE pushes SET openids = $2 WHERE id = $1")
            .bind(id).bind(&list).execute(&mut *conn).await.map(|_| ()))?;
    }
    Ok(())
}
