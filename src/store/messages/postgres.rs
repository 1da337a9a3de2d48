//! The PostgreSQL writer's side: one batch in one transaction, with multi-row statements in
//! power-of-two chunks so only a handful of statements is ever prepared.

use super::{Claim, Inbound, JOB_INSERT, Op};

/// Rows per multi-row statement (powers of two up to this, so only a handful of distinct
/// statements are ever prepared).
const MAX_CHUNK: usize = 128;

pub(super) async fn pg_batch(pool: &sqlx::PgPool, batch: &[Op], now: i64) -> Result<Vec<Claim>, sqlx::Error> {
    let inserts: Vec<&Inbound> =
        batch.iter().filter_map(|op| if let Op::Insert(m, _) = op { Some(m.as_ref()) } else { None }).collect();
    let mut tx = pool.begin().await?;
    let mut claims = vec![Claim::Duplicate; inserts.len()];
    let mut start = 0;
    for chunk in chunks(inserts.len()) {
        let rows = &inserts[start..start + chunk];
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO inbound_messages (dedup_key, openid, msg_type, event, event_key, msg_id, create_time, \
             encrypted, raw_xml, received_at, claimed_by, claimed_at, outcome, reply_xml, rule, handled_us, replied_at) ",
        );
        q.push_values(rows, |mut b, m| {
            let o = m.outcome.as_ref();
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
                .push_bind(now)
                .push_bind(o.map(|o| o.outcome.as_str()))
                .push_bind(o.and_then(|o| o.reply_xml.as_deref()))
                .push_bind(o.and_then(|o| o.rule.as_deref()))
                .push_bind(o.map(|o| o.handled_us))
                .push_bind(o.map(|_| now));
        });
        q.push(" ON CONFLICT (dedup_key) DO NOTHING RETURNING id, dedup_key");
        let inserted: Vec<(i64, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
        let positions: std::collections::HashMap<&str, usize> =
            rows.iter().enumerate().map(|(i, m)| (m.dedup_key.as_str(), i)).collect();
        for (id, key) in inserted {
            if let Some(&pos) = positions.get(key.as_str()) {
                claims[start + pos] = Claim::Claimed(id);
            }
        }
        start += chunk;
    }
    for op in batch {
        if let Op::Complete(id, o, late, _) = op {
            let done = sqlx::query(
                "UPDATE inbound_messages SET outcome = $2, reply_xml = $3, rule = $4, handled_us = $5, replied_at = $6 \
                 WHERE id = $1 AND outcome IS NULL",
            )
            .bind(id)
            .bind(o.outcome.as_str())
            .bind(&o.reply_xml)
            .bind(&o.rule)
            .bind(o.handled_us)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if let Some(j) = late.as_ref().filter(|_| done == 1) {
                sqlx::query(JOB_INSERT)
                    .bind(j.kind)
                    .bind(&j.payload)
                    .bind(&j.dedupe_key)
                    .bind(j.run_at)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(claims)
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
