//! The member's details (name, birthday, preferred store; validated, an invalid form changes
//! nothing) and their whole points history, ten entries a page.

use super::{Member, form, form_fields, once_only};
use crate::error::PageError;
use crate::http::page::{Page, see_other};
use crate::members::binding::{self, Profile};
use crate::members::{
    self,
    ledger::{self, day},
};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use minijinja::context;

/// History entries per page.
const HISTORY_PAGE: i64 = 10;

#[derive(serde::Deserialize, Default)]
pub struct AccountQuery {
    saved: Option<String>,
}

fn account_form(
    app: &AppState,
    session: &super::Session,
    m: &members::Member,
    shown: &Profile,
    stores: &[crate::stores::BrandStore],
    error: Option<&members::Refusal>,
    saved: bool,
) -> Page {
    let stores: Vec<_> = stores.iter().map(|s| context! { id => s.id, name => s.display_name() }).collect();
    let status = error.map(crate::error::members_status).unwrap_or(axum::http::StatusCode::OK);
    Page::new(
        "account.html",
        context! {
            name => shown.name, birthday => shown.birthday, store_id => shown.store_id, card_no => m.card_no,
            stores, error => error.map(ToString::to_string), saved, ..form_fields(app, session),
        },
    )
    .with_status(status)
}

fn profile_of(m: &members::Member) -> Profile {
    Profile { name: m.name.clone().unwrap_or_default(), birthday: m.birthday.clone(), store_id: m.store_id }
}

pub async fn account_page(
    State(app): State<AppState>,
    Member { session, member, .. }: Member,
    Query(q): Query<AccountQuery>,
) -> Result<Page, PageError> {
    let stores = crate::stores::list(&app.store).await?;
    Ok(account_form(&app, &session, &member, &profile_of(&member), &stores, None, q.saved.is_some()))
}

#[derive(serde::Deserialize)]
struct AccountForm {
    #[serde(default)]
    once: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    birthday: String,
    #[serde(default)]
    store: String,
}

pub async fn account(
    State(app): State<AppState>,
    Member { session, member, .. }: Member,
    body: Bytes,
) -> Result<Response, PageError> {
    let f: AccountForm = form(&app, &session, &body)?;
    let stores = crate::stores::list(&app.store).await?;
    let ids: Vec<i64> = stores.iter().map(|s| s.id).collect();
    let profile = match Profile::parse(&f.name, &f.birthday, &f.store, &ids, app.clock.china_now().date_naive()) {
        Ok(p) => p,
        Err(why) => {
            // What they typed stays in the form, with the reason beside it.
            let typed =
                Profile { name: f.name.clone(), birthday: Some(f.birthday.clone()), store_id: f.store.parse().ok() };
            return Ok(account_form(&app, &session, &member, &typed, &stores, Some(&why), false).into_response());
        }
    };
    let to = once_only(&app, &session, &f.once, async |tx| {
        binding::update_profile_in(tx, &app.points_rules(), member.id, &profile).await?;
        Ok::<_, sqlx::Error>("/h5/account?saved=1".to_owned())
    })
    .await??;
    Ok(see_other(&to))
}

/// A ledger entry as the card and history pages show it (a tier change moves no points); `note`
/// is what the entry says, bilingual for an entry that came without one.
pub fn history_line(t: &members::ledger::Transaction) -> minijinja::Value {
    let points = (t.kind != ledger::Kind::Tier).then_some(t.points);
    context! { date => day(t.occurred_at), kind => t.kind, points, note => t.description() }
}

#[derive(serde::Deserialize)]
pub struct HistoryQuery {
    page: Option<i64>,
}

/// The whole points history, ten entries a page.
pub async fn history(
    State(app): State<AppState>,
    Member { member, .. }: Member,
    Query(q): Query<HistoryQuery>,
) -> Result<Page, PageError> {
    let page = q.page.unwrap_or(1).clamp(1, 10_000);
    // One more than a page tells whether there is a next one.
    let entries = members::ledger::history(&app.store, member.id, HISTORY_PAGE + 1, (page - 1) * HISTORY_PAGE).await?;
    let more = entries.len() as i64 > HISTORY_PAGE;
    let entries: Vec<_> = entries.iter().take(HISTORY_PAGE as usize).map(history_line).collect();
    let prev = (page > 1).then_some(page - 1);
    let next = more.then_some(page + 1);
    Ok(Page::new("history.html", context! { entries, page, prev, next }))
}
