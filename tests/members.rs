//! CRM import of a deliberately dirty member base, checked row by row, on both databases.

mod common;

use common::*;
use wxoa::members::import::{Outcome, import};
use wxoa::store::Store;

fn report_for(reports: &[wxoa::members::import::Report], line: usize) -> &wxoa::members::import::Report {
    reports.iter().find(|r| r.line == line).unwrap_or_else(|| panic!("no report for line {line}"))
}

#[tokio::test]
async fn a_dirty_crm_export_is_normalised_merged_and_reported_row_by_row() {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/crm/dirty.csv")).unwrap();
    for backend in backends() {
        let db = Db::new(backend).await;
        let store = Store::connect(&db.url, 4).await.unwrap();
        store.migrate().await.unwrap();

        let reports = import(&store, &text).await.unwrap();
        assert_eq!(reports.len(), 8, "{backend:?}: the blank line is skipped: {reports:#?}");
        let outcome = |line: usize| std::mem::discriminant(&report_for(&reports, line).outcome);
        let created = std::mem::discriminant(&Outcome::Created(0));
        // (line, outcome kind, notes it must mention)
        let expect: &[(usize, std::mem::Discriminant<Outcome>, &[&str])] = &[
            (
                2,
                created,
                &[
                    "card \"C-1001\" → C1001",
                    "name \"  Li   Lei \" → \"Li Lei\"",
                    "phone \"+86 138-1234-5678\" → 13812345678",
                    "birthday \"1990/1/5\" → 1990-01-05",
                    "points 999 conflicts with 1200",
                ],
            ),
            (3, created, &["name \"王\\u{3000}小明\" → \"王 小明\"", "phone \"0086 13912345678\" → 13912345678"]),
            (
                4,
                std::mem::discriminant(&Outcome::Merged(3)),
                &["same phone as line 3", "name \"Zhang San\" conflicts with \"王 小明\""],
            ),
            (
                5,
                created,
                &[
                    "phone \"021-6123-4567\" is not a mainland mobile number: left empty",
                    "birthday \"not a date\" is not a date",
                    "points \"abc\" is not a balance",
                ],
            ),
            (7, created, &["birthday \"1990-13-40\" is not a date"]),
            (
                8,
                std::mem::discriminant(&Outcome::Rejected(String::new())),
                &["phone \"12345\" is not a mainland mobile number"],
            ),
            (
                9,
                std::mem::discriminant(&Outcome::Merged(2)),
                &["same card number as line 2", "tier \"platinum\" conflicts with \"gold\""],
            ),
            (10, created, &["name \"Ｚｈａｏ\\u{3000}Ｌｉｕ\" → \"Zhao Liu\""]),
        ];
        for (line, kind, notes) in expect {
            let r = report_for(&reports, *line);
            assert_eq!(outcome(*line), *kind, "{backend:?} line {line}: {r}");
            for n in *notes {
                assert!(r.notes.iter().any(|x| x.contains(n)), "{backend:?} line {line} should say {n:?}: {r}");
            }
        }
        assert_eq!(report_for(&reports, 8).outcome, Outcome::Rejected("no usable card number or phone".into()));
        assert_eq!(report_for(&reports, 9).outcome, Outcome::Merged(2));

        type Member = (String, Option<String>, Option<String>, Option<String>, String);
        let members: Vec<Member> = wxoa::with_pool!(&store, pool => sqlx::query_as(
            "SELECT card_no, name, phone, birthday, tier FROM members ORDER BY card_no").fetch_all(pool).await)
        .unwrap();
        assert_eq!(members.len(), 5, "{members:#?}");
        assert_eq!(
            members[0],
            (
                "C1001".into(),
                Some("Li Lei".into()),
                Some("13812345678".into()),
                Some("1990-01-05".into()),
                "gold".into()
            )
        );
        assert_eq!(members[1].1.as_deref(), Some("王 小明"));
        assert_eq!(members[2], ("C1004".into(), Some("Chen, Wei".into()), None, None, "gold".into()));
        assert_eq!(members[4].4, "platinum");
        let balance = |card: &'static str| {
            let store = store.clone();
            async move {
                wxoa::with_pool!(&store, pool => sqlx::query_scalar::<_, i64>(
                    "SELECT CAST(COALESCE(SUM(l.points), 0) AS BIGINT) FROM points_ledger l JOIN members m ON m.id = l.member_id WHERE m.card_no = $1")
                    .bind(card).fetch_one(pool).await).unwrap()
            }
        };
        assert_eq!(balance("C1001").await, 1200, "the first row's balance; the duplicate's is reported, not added");
        assert_eq!(balance("C1002").await, 300);
        assert_eq!(balance("C1006").await, 0);

        // The same file again changes nothing.
        let again = import(&store, &text).await.unwrap();
        for r in &again {
            assert!(
                matches!(r.outcome, Outcome::Unchanged(_) | Outcome::Merged(_) | Outcome::Rejected(_)),
                "{backend:?}: {r}"
            );
        }
        let entries: i64 = wxoa::with_pool!(&store, pool => sqlx::query_scalar("SELECT COUNT(*) FROM points_ledger").fetch_one(pool).await).unwrap();
        assert_eq!(entries, 3);

        // An existing member gets its blanks filled; a row that points at two members is refused.
        let more = "card,name,phone\nC1005,Sun Qi,13600000000\nC1004,,13812345678\n";
        let reports = import(&store, more).await.unwrap();
        assert!(matches!(reports[0].outcome, Outcome::Updated(_)), "{}", reports[0]);
        assert!(reports[0].notes.iter().any(|n| n.contains("name \"Sun Qi\" filled in")), "{}", reports[0]);
        assert!(
            matches!(&reports[1].outcome, Outcome::Rejected(why) if why.contains("card number belongs to member")),
            "{}",
            reports[1]
        );

        // A name with a NUL or an escape in it is no one's name: the row is refused, whole.
        let members_before: i64 =
            wxoa::with_pool!(&store, pool => sqlx::query_scalar("SELECT COUNT(*) FROM members").fetch_one(pool).await)
                .unwrap();
        let control =
            "card,name,phone,points\nC1101,\"Li\0Lei\",13600001101,50\nC1102,\"Wu\u{1b}[2J\",13600001102,50\n";
        let reports = import(&store, control).await.unwrap();
        assert_eq!(reports[0].outcome, Outcome::Rejected(r#"name "Li\0Lei" contains control characters"#.into()));
        assert_eq!(reports[1].outcome, Outcome::Rejected(r#"name "Wu\u{1b}[2J" contains control characters"#.into()));
        let members_after: i64 =
            wxoa::with_pool!(&store, pool => sqlx::query_scalar("SELECT COUNT(*) FROM members").fetch_one(pool).await)
                .unwrap();
        assert_eq!(members_after, members_before, "{backend:?}: nothing stored");
        let entries: i64 = wxoa::with_pool!(&store, pool => sqlx::query_scalar("SELECT COUNT(*) FROM points_ledger").fetch_one(pool).await).unwrap();
        assert_eq!(entries, 3, "{backend:?}: no points");

        // Files it cannot read at all are one clear error.
        assert!(import(&store, "").await.unwrap_err().to_string().contains("empty"));
        assert!(
            import(&store, "name,birthday\nx,1990-01-01\n")
                .await
                .unwrap_err()
                .to_string()
                .contains("neither a card number nor a phone")
        );
        store.close().await;
        db.drop_db().await;
    }
}

/// A hand adjustment (what `wxoa members adjust` posts): one ledger entry, a notice to the bound
/// follower in the same transaction, idempotent by reference, never below zero.
#[tokio::test]
async fn points_adjustments_notify_and_are_idempotent() {
    use wxoa::members::points::{self, Change, Kind, Outcome, Rejection, Rules, Who};
    for backend in backends() {
        let db = Db::new(backend).await;
        let store = Store::connect(&db.url, 4).await.unwrap();
        store.migrate().await.unwrap();
        let config = test_config(&db, wxoa::wechat::envelope::Mode::Safe);
        let notices =
            wxoa::notices::Notices::load(&config.notices.file, &config.notices.templates, "https://wx.example.com")
                .unwrap();
        import(&store, "card,phone,points\nC5001,13800000051,100\n").await.unwrap();
        wxoa::with_pool!(&store, pool => sqlx::query("UPDATE members SET openid = 'oAdjusted' WHERE card_no = 'C5001'").execute(pool).await.map(|_| ())).unwrap();
        let adjust = async |card: &str, points: i64, reference: &str| {
            let rules = Rules {
                loyalty: &config.loyalty,
                crm: wxoa::crm::Events::off(),
                notices: Some(&notices),
                tiers: true,
                now: store.now_ms(),
            };
            let mut change = Change::new(reference, Who::Card(card.into()), Kind::Adjust, points, rules.now);
            change.note = Some("goodwill".into());
            let mut tx = store.begin().await.unwrap();
            let out = points::post(&mut tx, &rules, &[change]).await.unwrap().pop().unwrap();
            tx.commit().await.unwrap();
            out
        };
        let applied = |balance: i64| Outcome::Applied { member_id: 1, points: 0, balance };
        let balance_of = |o: Outcome| match o {
            Outcome::Applied { balance, .. } => applied(balance),
            other => other,
        };
        assert_eq!(balance_of(adjust("C5001", 200, "adjust:ticket-1").await), applied(300));
        assert_eq!(adjust("C5001", 200, "adjust:ticket-1").await, Outcome::Duplicate, "same reference");
        assert_eq!(
            adjust("C5001", -500, "adjust:ticket-2").await,
            Outcome::Rejected(Rejection::Insufficient { balance: 300, needed: 500 })
        );
        assert_eq!(adjust("C9999", 5, "adjust:ticket-3").await, Outcome::Rejected(Rejection::UnknownCard));
        assert_eq!(balance_of(adjust("C5001", -50, "adjust:ticket-4").await), applied(250));
        let jobs = wxoa::jobs::outbox::list(&store, None, 10).await.unwrap();
        assert_eq!(jobs.len(), 2, "{jobs:?}");
        assert!(jobs.iter().all(|j| j.payload.contains("TPL_POINTS_CHANGED") && j.payload.contains("oAdjusted")));
        assert!(jobs.iter().any(|j| j.payload.contains("\"value\":\"+200\"")), "{jobs:?}");
        store.close().await;
        db.drop_db().await;
    }
}

/// A ledger written before lots existed is upgraded once: its lots are what the replay gives
/// (a redemption after a lapse paid from the lot still alive), and the lapse the old hourly
/// job had not recorded yet is recorded. Then lapsing is the hourly job's: recorded once, and
/// afterwards the ledger's plain sum equals the balance.
#[tokio::test]
async fn old_ledgers_get_their_lots_and_lapsed_points_are_recorded_once() {
    use wxoa::members::points::{self, Rules};
    for backend in backends() {
        let db = Db::new(backend).await;
        let store = Store::connect(&db.url, 4).await.unwrap();
        store.migrate().await.unwrap();
        import(&store, "card,phone\nC6001,13800000061\n").await.unwrap();
        let now = store.now_ms();
        let day = 86_400_000;
        for (kind, points, until, at, reference) in [
            ("earn", 100, Some(now - 10 * day), now - 100 * day, "a"),
            ("earn", 100, Some(now + 10 * day), now - 50 * day, "b"),
            ("redeem", -50, None, now - 5 * day, "c"),
        ] {
            wxoa::with_pool!(&store, pool => sqlx::query(
                "INSERT INTO points_ledger (member_id, kind, points, valid_until, reference, note, created_at) \
                 SELECT id, $1, $2, $3, $4, NULL, $5 FROM members WHERE card_no = 'C6001'")
                .bind(kind).bind(points).bind(until).bind(reference).bind(at).execute(pool).await.map(|_| ()))
            .unwrap();
        }
        let member: i64 = wxoa::with_pool!(&store, pool => sqlx::query_scalar("SELECT id FROM members WHERE card_no = 'C6001'").fetch_one(pool).await).unwrap();
        assert_eq!(points::balance(&store, member, now).await.unwrap().points, 0, "no lots yet");
        points::upgrade(&store).await.unwrap();
        points::upgrade(&store).await.unwrap();
        let after = points::balance(&store, member, now).await.unwrap();
        assert_eq!(after.points, 50, "the redemption came after lot a lapsed: it is paid from lot b");
        assert_eq!(after.expiring, vec![(50, now + 10 * day)]);
        let entries = |kind: &'static str| {
            let store = store.clone();
            async move {
                wxoa::with_pool!(&store, pool => sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM points_ledger WHERE kind = $1").bind(kind).fetch_one(pool).await)
                .unwrap()
            }
        };
        assert_eq!(entries("expire").await, 1, "lot a's lapse recorded by the upgrade, once");
        let loyalty = wxoa::config::LoyaltyConfig::default();
        let rules = |now| Rules { loyalty: &loyalty, crm: wxoa::crm::Events::off(), notices: None, tiers: true, now };
        assert_eq!(points::expire(&store, &rules(now)).await.unwrap(), 0, "nothing else has lapsed");
        // Eleven days on, lot b lapses too.
        let later = now + 11 * day;
        assert_eq!(points::expire(&store, &rules(later)).await.unwrap(), 1);
        assert_eq!(points::expire(&store, &rules(later)).await.unwrap(), 0, "once");
        assert_eq!(points::balance(&store, member, later).await.unwrap().points, 0);
        assert_eq!(entries("expire").await, 2);
        let sum: i64 = wxoa::with_pool!(&store, pool => sqlx::query_scalar(
            "SELECT CAST(SUM(points) AS BIGINT) FROM points_ledger WHERE member_id = $1").bind(member).fetch_one(pool).await).unwrap();
        assert_eq!(sum, 0);
        let replay = wxoa::members::ledger::replay(&store, member, later).await.unwrap();
        assert_eq!(
            replay.balance,
            points::balance(&store, member, later).await.unwrap(),
            "the lots agree with the replay"
        );
        store.close().await;
        db.drop_db().await;
    }
}

/// The lots a balance reads agree with the ledger's replay (`ledger::compute`, the reference
/// derivation) after any sequence of changes: a few hundred random earns with their own lapse
/// dates, adjustments either way, voids (whole, and partial ones taking back what is left),
/// redemptions and hourly expiries, over simulated months.
#[tokio::test]
async fn lots_agree_with_the_replay_of_the_ledger() {
    use wxoa::members::points::{self, Change, Kind, Outcome, Rules, Who};
    for backend in backends() {
        let db = Db::new(backend).await;
        let store = Store::connect(&db.url, 4).await.unwrap();
        store.migrate().await.unwrap();
        import(&store, "card,phone\nC9101,13800000101\nC9102,13800000102\n").await.unwrap();
        let loyalty = wxoa::config::LoyaltyConfig::default();
        let day = 86_400_000i64;
        let start = store.now_ms();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut credits: Vec<String> = Vec::new();
        let mut applied = 0;
        for step in 0..400i64 {
            let now = start + step * day / 2;
            let rules = Rules { loyalty: &loyalty, crm: wxoa::crm::Events::off(), notices: None, tiers: false, now };
            let card = if next(3) == 0 { "C9102" } else { "C9101" };
            let reference = format!("R{step}");
            let mut change = match next(10) {
                0..=4 => {
                    let mut c = Change::new(&reference, Who::Card(card.into()), Kind::Earn, 1 + next(500) as i64, now);
                    c.valid_until = Some(now + (1 + next(90) as i64) * day);
                    c
                }
                5 => Change::new(&reference, Who::Card(card.into()), Kind::Adjust, 50 - next(200) as i64, now),
                6 | 7 => Change::new(&reference, Who::Card(card.into()), Kind::Redeem, -(1 + next(300) as i64), now),
                _ if !credits.is_empty() => {
                    let voided = credits[next(credits.len() as u64) as usize].clone();
                    let mut c = Change::new(&reference, Who::OfVoided, Kind::Void, 0, now);
                    c.voids = Some(voided);
                    c.partial = next(2) == 0;
                    c
                }
                _ => continue,
            };
            if change.kind == Kind::Adjust && change.points == 0 {
                change.points = 1;
            }
            let mut tx = store.begin().await.unwrap();
            let out = points::post(&mut tx, &rules, std::slice::from_ref(&change)).await.unwrap();
            tx.commit().await.unwrap();
            if let [Outcome::Applied { .. }] = out.as_slice() {
                applied += 1;
                if matches!(change.kind, Kind::Earn | Kind::Adjust) {
                    credits.push(reference);
                }
            }
            if step % 20 == 0 {
                points::expire(&store, &rules).await.unwrap();
            }
            if step % 10 == 0 {
                for card in ["C9101", "C9102"] {
                    let member = wxoa::members::by_card(&store, card).await.unwrap().unwrap();
                    let lots = points::balance(&store, member.id, now).await.unwrap();
                    let replay = wxoa::members::ledger::replay(&store, member.id, now).await.unwrap();
                    assert_eq!(lots, replay.balance, "{backend:?} {card} at step {step}");
                }
            }
        }
        assert!(applied > 250, "most changes applied: {applied}");
        store.close().await;
        db.drop_db().await;
    }
}
