//! The loyalty programme's members and their points. A member is found by card number or by
//! phone and bound to at most one follower (openid). Points are a ledger ([`ledger`]): every
//! earn, redemption, void, expiry and adjustment is an entry, posted by [`points`] with the
//! member's lots (what a balance reads), their tier, the notices and the CRM's events.
//!
//! What a follower does to their membership from the H5 pages — bind a card, enrol, unbind,
//! edit their details — is in [`binding`]; redemptions in [`redeem`]. Each takes the caller's
//! transaction, so the page can commit its one-time submission key with the change.

pub mod binding;
pub mod csv;
pub mod import;
pub mod ledger;
pub mod points;
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

/// A members operation that did not happen: refused (nothing changed; the follower reads why)
/// or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Why a follower's request about their membership was refused, in the words they read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("尝试次数过多，请 {minutes} 分钟后再试。Too many attempts: try again in {minutes} minutes.")]
    LockedOut { minutes: i64 },
    #[error("您已绑定会员卡，请先解绑。You already have a card bound; unbind it first.")]
    AlreadyBound,
    #[error("请填写卡号和手机号。Please enter your card number and mobile number.")]
    CardAndPhoneNeeded,
    #[error("卡号或手机号不正确。The card number or mobile number does not match.")]
    NoMatch,
    #[error(
        "此卡已绑定其他微信账号，请到门店处理。This card is bound to another WeChat account; please visit a store."
    )]
    CardTaken,
    #[error("请填写姓名。Please enter your name.")]
    NameNeeded,
    #[error("姓名不能包含控制字符。Your name must not contain control characters.")]
    NameControl,
    #[error("请填写有效的手机号。Please enter a valid mobile number.")]
    BadPhone,
    #[error("生日格式不正确，请按 年-月-日 填写。Please enter your birthday as YYYY-MM-DD.")]
    BirthdayFormat,
    #[error("生日不能晚于今天。Your birthday cannot be in the future.")]
    BirthdayInFuture,
    #[error("生日不能早于 1900 年。Please check the year of your birthday.")]
    BirthdayTooOld,
    #[error("您已有会员卡。You already have a card.")]
    AlreadyMember,
    #[error("此手机号已有会员卡，请用卡号绑定。This mobile number already has a card: bind it with the card number.")]
    PhoneTaken,
    #[error("请从列表中选择门店。Please choose a store from the list.")]
    NoSuchStore,
    #[error("您还未绑定会员卡。You have no card bound.")]
    NotBound,
    #[error("该商品不存在。No such product.")]
    NoSuchItem,
    #[error("该商品已兑完。This product is sold out.")]
    SoldOut,
    #[error("积分不足：需要 {cost}，您有 {balance}。Not enough points: it takes {cost}, you have {balance}.")]
    NotEnoughPoints { balance: i64, cost: i64 },
}

type Row = (i64, Option<String>, Option<String>, Option<String>, Option<String>, String, Option<i64>);

fn member((id, card_no, name, phone, birthday, tier, store_id): Row) -> Member {
    Member { id, card_no, name, phone, birthday, tier, store_id }
}

/// The member with a card number (normalised).
pub async fn by_card(store: &Store, card_no: &str) -> Result<Option<Member>, sqlx::Error> {
    let sql = "SELECT id, card_no, name, phone, birthday, tier, store_id FROM members WHERE card_no = $1";
    let row: Option<Row> = with_pool!(store, pool => sqlx::query_as(sql).bind(card_no).fetch_optional(pool).await)?;
    Ok(row.map(member))
}

/// The member bound to a follower.
pub async fn by_openid(store: &Store, openid: &str) -> Result<Option<Member>, sqlx::Error> {
    let sql = "SELECT id, card_no, name, phone, birthday, tier, store_id FROM members WHERE openid = $1";
    let row: Option<Row> = with_pool!(store, pool => sqlx::query_as(sql).bind(openid).fetch_optional(pool).await)?;
    Ok(row.map(member))
}
