//! Redeeming points for catalogue products: the catalogue (what each costs, what the member
//! can afford and how many points short they are of the rest), a confirmation page (the
//! balance before and after), then the redemption — once, however often the form is posted —
//! and its result on the catalogue page.

use super::{Member, form, form_fields, once_only};
use crate::error::PageError;
use crate::http::page::{Page, see_other};
use crate::jobs::Kind;
use crate::jobs::outbox::NewJob;
use crate::members::{self, redeem};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use minijinja::context;

#[derive(serde::Deserialize, Default)]
pub struct CatalogueQuery {
    /// The redemption just made (the result of the form).
    redeemed: Option<i64>,
}

pub async fn catalogue(
    State(app): State<AppState>,
    Member { member, .. }: Member,
    Query(q): Query<CatalogueQuery>,
) -> Result<Page, PageError> {
    catalogue_page(&app, &member, q.redeemed, None).await
}

async fn catalogue_page(
    app: &AppState,
    member: &members::Member,
    redeemed: Option<i64>,
    refused: Option<&members::Refusal>,
) -> Result<Page, PageError> {
    let (items, balance) = tokio::try_join!(
        redeem::catalogue(&app.store),
        members::points::summary(&app.store, member.id, app.clock.now_ms(), 0)
    )?;
    let done = match redeemed {
        Some(id) => redeem::redemption(&app.store, member.id, id).await?,
        None => None,
    };
    let items: Vec<_> = items
        .iter()
        .map(|i| {
            context! {
                id => i.id, name => i.name, cost => i.points_cost, stock => i.stock,
                affordable => balance.points >= i.points_cost, short => (i.points_cost - balance.points).max(0),
            }
        })
        .collect();
    let done = done.map(|r| context! { number => r.id, name => r.item.name, cost => r.item.points_cost });
    let status = refused.map(crate::error::members_status).unwrap_or(StatusCode::OK);
    Ok(Page::new(
        "catalogue.html",
        context! { items, points => balance.points, done, error => refused.map(ToString::to_string) },
    )
    .with_status(status))
}

#[derive(serde::Deserialize)]
pub struct ConfirmQuery {
    item: Option<i64>,
}

/// "Redeem this for N points?": what it costs and what is left after.
pub async fn confirm(
    State(app): State<AppState>,
    Member { session, member, .. }: Member,
    Query(q): Query<ConfirmQuery>,
) -> Result<Page, PageError> {
    let item = match q.item {
        Some(id) => redeem::item(&app.store, id).await?,
        None => None,
    };
    let Some(item) = item else {
        return catalogue_page(&app, &member, None, Some(&members::Refusal::NoSuchItem)).await;
    };
    let points = members::points::summary(&app.store, member.id, app.clock.now_ms(), 0).await?.points;
    if item.stock <= 0 {
        return catalogue_page(&app, &member, None, Some(&members::Refusal::SoldOut)).await;
    }
    if points < item.points_cost {
        let why = members::Refusal::NotEnoughPoints { balance: points, cost: item.points_cost };
        return catalogue_page(&app, &member, None, Some(&why)).await;
    }
    Ok(Page::new(
        "redeem_confirm.html",
        context! {
            item => context! { id => item.id, name => item.name, cost => item.points_cost },
            points, after => points - item.points_cost, ..form_fields(&app, &session),
        },
    ))
}

#[derive(serde::Deserialize)]
struct RedeemForm {
    #[serde(default)]
    once: String,
    #[serde(default)]
    item: i64,
}

pub async fn redeem(
    State(app): State<AppState>,
    Member { session, member, openid }: Member,
    body: Bytes,
) -> Result<Response, PageError> {
    let f: RedeemForm = form(&app, &session, &body)?;
    let notice = |id: i64, item: &redeem::Item| {
        let ctx = context! { item => item.name, points => item.points_cost, number => id };
        match app.notices.render("redemption_confirmed", &openid, ctx) {
            Ok(message) => Some(NewJob::new(Kind::Template, message, format!("redemption:{id}"))),
            Err(e) => {
                tracing::error!(error = %e, "redemption notice not rendered");
                None
            }
        }
    };
    let result = once_only(&app, &session, &f.once, async |tx| {
        // The redemption confirms itself: no points_changed message on top.
        let rules = members::points::Rules { notices: None, ..app.points_rules() };
        let r = redeem::redeem_in(tx, &rules, member.id, f.item, notice).await?;
        Ok::<_, members::Error>(format!("/h5/catalogue?redeemed={}", r.id))
    })
    .await?;
    match result {
        Ok(to) => Ok(see_other(&to)),
        Err(members::Error::Refused(why)) => Ok(catalogue_page(&app, &member, None, Some(&why)).await?.into_response()),
        Err(members::Error::Db(e)) => Err(e.into()),
    }
}
