//! The shop integration: followers buy through an external H5 checkout; the shop tells us about
//! stock and orders.
//!
//! ```text
//!  article ──► GET /buy/{campaign_id} ──► /h5/buy/{id} ──(OAuth if needed)──► 302 checkout?token=…
//!  chat "buy" / menu BUY[_id] ──► checkout_link handler ──► text reply with the same link
//!  shop ──► POST /api/v1/stock   (signed)  ──► products
//!  shop ──► POST /api/v1/orders  (signed)  ──► orders + the buyer's template message (outbox)
//! ```
//!
//! * [`checkout`]: the signed, expiring token that carries campaign, SKU and openid to the shop.
//! * [`stock`] and [`orders`]: what the shop reports, checked and recorded. Stock 0 is *sold out*
//!   (a sold-out page, `sold_out.j2` in the chat, no checkout links); a product never reported is
//!   available (the shop has the last word at its checkout).
//! * [`api`]: the two signed endpoints ([`crate::http::signed`]); [`landing`]: the article link.
//!
//! Campaign rows belong to the campaigns module; this one only reads `campaigns.product_sku`.

pub mod api;
pub mod checkout;
pub mod funnel;
pub mod landing;
pub mod orders;
pub mod stock;

use crate::config::CheckoutConfig;
use crate::store::Store;
use crate::with_pool;

/// Order statuses, in the only order they may arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Created,
    Paid,
    Shipped,
    Refunded,
}

crate::stored_as!(Status {
    Created => "created",
    Paid => "paid",
    Shipped => "shipped",
    Refunded => "refunded",
});

impl Status {
    /// The notice (in `config/notices.toml`) that tells the buyer.
    pub fn notice(self) -> &'static str {
        match self {
            Status::Created => "order_created",
            Status::Paid => "order_paid",
            Status::Shipped => "order_shipped",
            Status::Refunded => "order_refunded",
        }
    }
}

/// What the shop sent that was not taken: refused (nothing changed) or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A configured notice would not render (a broken template): ours to fix, not the shop's.
    #[error(transparent)]
    Notice(#[from] crate::notices::NoticeError),
}

/// Why: the body is wrong (400), it contradicts what was recorded (409), or it breaks a rule
/// (422). The message is for the shop's developers, as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Rule(String),
}

/// A one-line text field within bounds, or the 400 that says why not.
pub(crate) fn bounded(field: &str, value: &str, min: usize, max: usize) -> Result<(), Error> {
    crate::text::check_line(field, value, min, max).map_err(|e| Error::Refused(Refusal::Invalid(e.to_string())))
}

/// A JSON body, or the 400 with serde's reason.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Refused(Refusal::Invalid(format!("malformed JSON: {e}"))))
}

/// The link a campaign article carries: `{h5.public_url}/buy/{campaign_id}`. This path is a
/// contract with articles already published; it must keep working.
pub fn article_link(public_url: &str, campaign_id: i64) -> String {
    format!("{}/buy/{campaign_id}", public_url.trim_end_matches('/'))
}

/// The article link as one push carries it (`?p=`: the funnel counts its opens under the push).
pub fn push_link(public_url: &str, campaign_id: i64, push_id: i64) -> String {
    format!("{}?p={push_id}", article_link(public_url, campaign_id))
}

/// A product as the shop last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub stock: i64,
    /// When the shop last told us (unix ms).
    pub updated_at: i64,
    /// When the stock last reached zero (unix ms); `None` while there is some.
    pub sold_out_at: Option<i64>,
}

impl Product {
    pub fn sold_out(&self) -> bool {
        self.stock <= 0
    }
}

/// The product with `sku`, if the shop has told us about it.
pub async fn product(store: &Store, sku: &str) -> Result<Option<Product>, sqlx::Error> {
    let row: Option<(String, String, i64, i64, Option<i64>)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT sku, name, stock, updated_at, sold_out_at FROM products WHERE sku = $1").bind(sku).fetch_optional(pool).await)?;
    Ok(row.map(|(sku, name, stock, updated_at, sold_out_at)| Product { sku, name, stock, updated_at, sold_out_at }))
}

/// What the shop part needs of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub id: i64,
    pub name: String,
    pub product_sku: Option<String>,
}

type CampaignRow = (i64, String, Option<String>);

fn campaign_row((id, name, product_sku): CampaignRow) -> Campaign {
    // An empty SKU is as good as none.
    Campaign { id, name, product_sku: product_sku.filter(|s| !s.trim().is_empty()) }
}

pub async fn campaign(store: &Store, id: i64) -> Result<Option<Campaign>, sqlx::Error> {
    let row: Option<CampaignRow> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, name, product_sku FROM campaigns WHERE id = $1").bind(id).fetch_optional(pool).await)?;
    Ok(row.map(campaign_row))
}

/// The most recently created campaign that sells something (what a plain "buy" means).
pub async fn latest_campaign_with_product(store: &Store) -> Result<Option<Campaign>, sqlx::Error> {
    let row: Option<CampaignRow> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, name, product_sku FROM campaigns WHERE product_sku IS NOT NULL AND product_sku <> '' \
         ORDER BY created_at DESC, id DESC LIMIT 1").fetch_optional(pool).await)?;
    Ok(row.map(campaign_row))
}

/// What a follower can do about a campaign right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// The campaign sells nothing.
    NoProduct,
    /// Its product's stock is gone.
    SoldOut { product_name: String },
    /// On sale: `product_name` is the shop's name, or the campaign's if the shop has not told
    /// us about the SKU yet.
    Available { sku: String, product_name: String },
}

/// The offer of `campaign`, from the stock the shop last reported.
pub async fn offer(store: &Store, campaign: &Campaign) -> Result<Offer, sqlx::Error> {
    let Some(sku) = &campaign.product_sku else { return Ok(Offer::NoProduct) };
    Ok(match product(store, sku).await? {
        Some(p) if p.sold_out() => Offer::SoldOut { product_name: p.name },
        Some(p) => Offer::Available { sku: p.sku, product_name: p.name },
        None => Offer::Available { sku: sku.clone(), product_name: campaign.name.clone() },
    })
}

/// A checkout link for `openid`, recorded for the funnel (under `push_id`, 0 for none) so the
/// order that names its token is credited to the campaign.
pub async fn hand_checkout(
    store: &Store,
    config: &CheckoutConfig,
    campaign_id: i64,
    push_id: i64,
    sku: &str,
    openid: &str,
) -> Result<String, sqlx::Error> {
    let now = store.now_ms() / 1000;
    let token = checkout::issue(&config.secret, campaign_id, sku, openid, now, config.token_ttl_secs);
    funnel::checkout_issued(store, campaign_id, push_id, openid, &token).await?;
    Ok(checkout::checkout_url(&config.base_url, &token))
}

/// Whether the checkout is switched on (an empty `checkout.secret` switches it off).
pub fn checkout_enabled(config: &CheckoutConfig) -> bool {
    !config.secret.is_empty()
}

#[cfg(test)]
mod tests {
    #[test]
    fn article_links() {
        assert_eq!(super::article_link("https://wx.example.com/", 12), "https://wx.example.com/buy/12");
        assert_eq!(super::article_link("http://127.0.0.1:8080", 1), "http://127.0.0.1:8080/buy/1");
    }
}
