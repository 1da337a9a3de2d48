//! The storage layer on both backends: migrations, the group-committed message log, claims,
//! outcomes and take-overs.

mod common;

use common::*;
use wxoa::store::Store;
use wxoa::store::messages::{Answered, Claim, Inbound, JobRow, MessageLog, Outcome};

fn inbound(key: &str) -> Inbound {
    Inbound {
        dedup_key: key.into(),
        openid: "oStore".into(),
        msg_type: "text".into(),
        event: None,
        event_key: None,
        msg_id: Some(key.into()),
        create_time: 1,
        encrypted: true,
        raw_xml: format!("<xml><MsgId>{key}</MsgId></xml>"),
        received_at: 1_780_000_000_000,
        claimed_by: "test-1".into(),
        outcome: None,
    }
}

#[tokio::test]
async fn migrations_are_idempotent_and_safe_to_race() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let a = Store::connect(&db.url, 2).await.unwrap();
        let b = Store::connect(&db.url, 2).await.unwrap();
        let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
        let total = ra.unwrap() + rb.unwrap();
        assert!(total >= 1, "{backend:?}: the first start applies the migrations");
        assert_eq!(a.migrate().await.unwrap(), 0, "{backend:?}: nothing left to apply");
        // A version another build applied under another name is refused, naming both, and
        // nothing is applied past it.
        let renamed = "UPDATE wxoa_migrations SET name = 'store_names' WHERE version = 21";
        wxoa::with_pool!(&a, pool => sqlx::query(renamed).execute(pool).await.map(|_| ())).unwrap();
        let err = a.migrate().await.unwrap_err().to_string();
        assert!(
            err.contains("migration 21 of this database is \"store_names\", this build's is \"simulator\": the database was migrated by another build"),
            "{backend:?}: {err}"
        );
        a.close().await;
        b.close().await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn the_message_log_claims_once_and_records_outcomes() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let store = Store::connect(&db.url, 4).await.unwrap();
        store.migrate().await.unwrap();
        let (log, writer) = MessageLog::start(store.clone()).unwrap();

        // Many concurrent claims share few transactions and all get distinct ids.
        let claims = futures_join(&log, 500).await;
        let mut ids: Vec<i64> = claims
            .iter()
            .map(|c| match c {
                Claim::Claimed(id) => *id,
                Claim::Duplicate => panic!("{backend:?}: fresh keys are not duplicates"),
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 500);

        // The same key again is a duplicate, and nothing is recorded for it yet.
        assert_eq!(log.insert(inbound("k7")).await.unwrap(), Claim::Duplicate);
        let stored = log.find("k7").await.unwrap().unwrap();
        assert!(stored.outcome.is_none());

        let outcome = Answered {
            outcome: Outcome::Replied,
            reply_xml: Some("<xml/>".into()),
            rule: Some("r".into()),
            handled_us: 12,
        };
        // An outcome commits with the job it brings (a deferred handler's late reply); a second
        // outcome for the same message changes nothing and brings no job.
        let job = |key: &str| JobRow { kind: "late_reply", payload: "{}".into(), dedupe_key: key.into(), run_at: 0 };
        log.complete(stored.id, outcome.clone(), Some(job("late:k7"))).await.unwrap();
        assert_eq!(log.find("k7").await.unwrap().unwrap().outcome, Some(outcome));
        let mut again = Answered { outcome: Outcome::Failed, reply_xml: None, rule: None, handled_us: 1 };
        log.complete(stored.id, again.clone(), Some(job("late:k7-again"))).await.unwrap();
        again.outcome = Outcome::Replied;
        assert_eq!(log.find("k7").await.unwrap().unwrap().outcome.unwrap().outcome, again.outcome, "the first stays");
        let late: Vec<String> = wxoa::with_pool!(&store, pool => sqlx::query_scalar(
            "SELECT dedupe_key FROM jobs WHERE kind = 'late_reply' ORDER BY dedupe_key").fetch_all(pool).await)
        .unwrap();
        assert_eq!(late, ["late:k7"]);
        assert!(log.find("nope").await.unwrap().is_none());

        // A message logged with its outcome in one write.
        let mut pure = inbound("pure");
        pure.outcome = Some(Answered { outcome: Outcome::Nothing, reply_xml: None, rule: None, handled_us: 3 });
        assert!(matches!(log.insert(pure.clone()).await.unwrap(), Claim::Claimed(_)));
        assert_eq!(log.insert(pure).await.unwrap(), Claim::Duplicate);
        assert_eq!(log.find("pure").await.unwrap().unwrap().outcome.unwrap().outcome, Outcome::Nothing);

        // A take-over succeeds once, only while no outcome exists.
        let k8 = log.find("k8").await.unwrap().unwrap();
        assert!(log.take_over(&k8, "test-2").await.unwrap());
        assert!(!log.take_over(&k8, "test-3").await.unwrap(), "the claim moved on");
        assert!(!log.take_over(&log.find("k7").await.unwrap().unwrap(), "test-2").await.unwrap(), "already answered");
        assert_eq!(log.find("k8").await.unwrap().unwrap().claimed_by, "test-2");

        // Dropping the last handle flushes and stops the writer.
        drop(log);
        writer.await.unwrap();
        store.close().await;
        db.drop_db().await;
    }
}

async fn futures_join(log: &MessageLog, n: usize) -> Vec<Claim> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let log = log.clone();
        set.spawn(async move { (i, log.insert(inbound(&format!("k{i}"))).await.unwrap()) });
    }
    let mut out = vec![Claim::Duplicate; n];
    while let Some(r) = set.join_next().await {
        let (i, c) = r.unwrap();
        out[i] = c;
    }
    out
}
