//! The article link: `GET /buy/{campaign_id}` ([`super::article_link`]).
//!
//! Campaign articles link to `{h5.public_url}/buy/{campaign_id}`; that path is a published
//! contract. It only forwards to `/h5/buy/{campaign_id}`, because the H5 session cookie is
//! scoped to `/h5` (`Path=/h5`) and a browser would not send it to `/buy/…`. There:
//!
//! 1. an unknown campaign is a 404 page, one that sells nothing says so, and a sold-out product
//!    shows `sold_out.html` — none of these needs to know who is asking, so no sign-in;
//! 2. otherwise the follower signs in through the usual OAuth (`/h5/start?to=buy/{id}`, which
//!    comes back here) unless the session already knows their openid;
//! 3. then a 302 to `{checkout.base_url}?token=…` with a fresh token for this follower
//!    ([`super::checkout`]). The response is `no-store`: the token is personal.

use super::Offer;
use crate::error::PageError;
use crate::http::page::Page;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::context;

/// A campaign id from the path, if it is one.
fn campaign_id(raw: &str) -> Option<i64> {
    raw.bytes().all(|b| b.is_ascii_digit()).then(|| raw.parse().ok()).flatten().filter(|id| *id > 0)
}

fn not_found() -> PageError {
    PageError::refused(
        StatusCode::NOT_FOUND,
        "未找到 / Not found",
        "此活动不存在。This offer does not exist (any more).",
    )
}

/// `?p=`: the push whose article carried the link ([`super::push_link`]).
#[derive(Debug, Default, serde::Deserialize)]
pub struct FromPush {
    p: Option<String>,
}

impl FromPush {
    /// The push named, or 0 (none, or not a push id: the open still counts, under none).
    fn id(&self) -> i64 {
        self.p.as_deref().and_then(campaign_id).unwrap_or(0)
    }
}

/// Where the landing is, keeping the push (`?p=`).
fn landing(id: i64, push: i64) -> String {
    if push > 0 { format!("/h5/buy/{id}?p={push}") } else { format!("/h5/buy/{id}") }
}

/// `GET /buy/{campaign_id}`: counted as an open of the campaign's link (if it is a campaign),
/// then on to the H5 landing, where the session cookie is sent.
pub async fn article(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    Query(from): Query<FromPush>,
) -> Result<Response, PageError> {
    let id = campaign_id(&raw).ok_or_else(not_found)?;
    if super::campaign(&app.store, id).await?.is_some() {
        super::funnel::opened(&app.store, id, from.id()).await?;
    }
    Ok((StatusCode::FOUND, [(LOCATION, landing(id, from.id()))]).into_response())
}

/// `GET /h5/buy/{campaign_id}`: sold-out page, sign-in, or the checkout.
pub async fn buy(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(from): Query<FromPush>,
) -> Result<Response, PageError> {
    let id = campaign_id(&raw).ok_or_else(not_found)?;
    if !super::checkout_enabled(&app.config.checkout) {
        return Err(PageError::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "暂未开放 / Not available",
            "暂未开放购买，请稍后再试。Buying is not available right now. Please try again later.",
        ));
    }
    let campaign = super::campaign(&app.store, id).await?.ok_or_else(not_found)?;
    let (sku, product) = match super::offer(&app.store, &campaign).await? {
        Offer::Available { sku, product_name } => (sku, product_name),
        Offer::SoldOut { product_name } => {
            let ctx = context! { campaign => campaign.name, product => product_name };
            return Ok(Page::new("sold_out.html", ctx).into_response());
        }
        Offer::NoProduct => {
            let ctx = context! { title => campaign.name, text => "这里暂时没有可购买的商品。There is nothing to buy here yet." };
            return Ok(Page::new("message.html", ctx).into_response());
        }
    };
    // Sign-in comes back here, push and all (`to=buy/<id>?p=<push>`, encoded).
    let push = from.id();
    let page = if push > 0 { format!("buy/{id}%3Fp%3D{push}") } else { format!("buy/{id}") };
    let follower = crate::h5::follower(&app, &headers, &page).await?;
    super::funnel::opener(&app.store, id, push, &follower.openid).await?;
    let url = super::hand_checkout(&app.store, &app.config.checkout, id, push, &sku, &follower.openid).await?;
    tracing::info!(campaign = id, sku, product, buyer = %crate::mask(&follower.openid), "shop: to the checkout");
    Ok((StatusCode::FOUND, [(LOCATION, url), (CACHE_CONTROL, "no-store".to_owned())]).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn campaign_ids() {
        assert_eq!(super::campaign_id("12"), Some(12));
        for bad in ["", "0", "-1", "+1", "1e3", "12a", "99999999999999999999"] {
            assert_eq!(super::campaign_id(bad), None, "{bad}");
        }
    }
}
