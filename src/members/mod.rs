//! The loyalty programme's members and their points ledger. A member is found by card number
//! or by phone and bound to at most one follower (openid). Points are a ledger: every earn,
//! redeem, expiry and adjustment is an entry, and a balance is always their sum.

pub mod import;
pub mod ledger;
pub mod redeem;

use crate::store::Store;
use crate::with_pool;

/// A member as the chat and the H5 pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: i64,
    pub card_no: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub birthday: Option<String>,
    pub tier: String,
    /// Preferred (or attributed) store.
    pub store_id: Option<i64>,
}

type Row = (i64, Option<String>, Option<String>, Option<String>, Option<String>, String, Option<i64>);

/// The member bound to a follower.
pub async fn by_openid(store: &Store, openid: &str) -> Result<Option<Member>, sqlx::Error> {
    let row: Option<Row> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, card_no, name, phone, birthday, tier, store_id FROM members WHERE openid = $1").bind(openid).fetch_optional(pool).await)?;
    Ok(row.map(|(id, card_no, name, phone, birthday, tier, store_id)| Member {
        id,
        card_no,
        name,
        phone,
        birthday,
        tier,
        store_id,
    }))
}
