//! The membership card, and how a follower gets one: bind an existing card (card number and
//! the phone on file) or enrol; unbind. Binding and enrolling confirm in the chat as well (a
//! customer-service message, queued with the change).

use super::{Follower, Member, form, form_fields, once_only};
use crate::error::PageError;
use crate::http::page::{Page, see_other};
use crate::jobs::Kind;
use crate::jobs::outbox::NewJob;
use crate::members::binding::{self, BindInput, EnrolInput};
use crate::members::{self, Refusal, ledger::last_day};
use crate::state::AppState;
use crate::store::Tx;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use minijinja::context;

#[derive(serde::Deserialize, Default)]
pub struct CardQuery {
    /// Set by the result of enrolling (`welcome`) or binding (`bound`).
    #[serde(default)]
    welcome: Option<String>,
    #[serde(default)]
    bound: Option<String>,
}

pub async fn card(
    State(app): State<AppState>,
    Member { session, member, .. }: Member,
    Query(q): Query<CardQuery>,
) -> Result<Page, PageError> {
    let now = app.clock.now_ms();
    let (balance, history) = tokio::try_join!(
        members::points::summary(&app.store, member.id, now, 3),
        members::ledger::history(&app.store, member.id, 10, 0)
    )?;
    // The three soonest lapses.
    let expiring: Vec<_> =
        balance.expiring.iter().map(|(p, at)| context! { points => p, date => last_day(*at) }).collect();
    let history: Vec<_> = history.iter().map(super::account::history_line).collect();
    let banner = if q.welcome.is_some() {
        Some("入会成功，欢迎！Welcome: your membership card is ready.")
    } else if q.bound.is_some() {
        Some("绑定成功。Your card is now bound to this WeChat account.")
    } else {
        None
    };
    Ok(Page::new(
        "card.html",
        context! {
            qr => member.card_no.as_deref().and_then(super::card_qr).map(minijinja::Value::from_safe_string),
            name => member.name, card_no => member.card_no, tier => app.config.loyalty.tier_label(&member.tier), points => balance.points,
            expiring, history, banner, ..form_fields(&app, &session),
        },
    ))
}

#[derive(serde::Deserialize, Default)]
pub struct BindQuery {
    #[serde(default)]
    unbound: Option<String>,
}

pub async fn bind_page(
    State(app): State<AppState>,
    Follower { session, openid }: Follower,
    Query(q): Query<BindQuery>,
) -> Result<Response, PageError> {
    if members::by_openid(&app.store, &openid).await?.is_some() {
        return Ok(see_other("/h5/card"));
    }
    let banner = q.unbound.is_some().then_some("已解绑。The card is no longer bound to this WeChat account.");
    Ok(bind_form(&app, &session, None, None, banner).into_response())
}

/// The bind/enrol page, with a refusal shown at the form it concerns.
fn bind_form(
    app: &AppState,
    session: &super::Session,
    bind_error: Option<&Refusal>,
    enrol_error: Option<&Refusal>,
    banner: Option<&str>,
) -> Page {
    let status = bind_error.or(enrol_error).map(crate::error::members_status).unwrap_or(axum::http::StatusCode::OK);
    Page::new(
        "bind.html",
        context! {
            bind_error => bind_error.map(ToString::to_string), enrol_error => enrol_error.map(ToString::to_string),
            nickname => session.nickname, banner, ..form_fields(app, session),
        },
    )
    .with_status(status)
}

/// The chat confirmation `notice` for the follower, queued in `tx` (a notice that fails to
/// render is logged, not a reason to refuse the change).
async fn confirm_in_chat(
    app: &AppState,
    tx: &mut Tx,
    notice: &str,
    openid: &str,
    member_id: i64,
    name: Option<&str>,
    card_no: &str,
) -> Result<(), sqlx::Error> {
    match app.notices.chat(notice, openid, context! { name, card_no }) {
        Ok(message) => {
            let job = NewJob::new(Kind::CustomMessage, message, format!("{notice}:{member_id}:{}", tx.now_ms()));
            crate::jobs::outbox::enqueue_tx(tx, &job).await.map(|_| ())
        }
        Err(e) => {
            tracing::error!(error = %e, "h5: chat confirmation not rendered");
            Ok(())
        }
    }
}

#[derive(serde::Deserialize)]
struct BindForm {
    #[serde(default)]
    once: String,
    #[serde(default)]
    card_no: String,
    #[serde(default)]
    phone: String,
}

pub async fn bind(
    State(app): State<AppState>,
    Follower { session, openid }: Follower,
    body: Bytes,
) -> Result<Response, PageError> {
    let f: BindForm = form(&app, &session, &body)?;
    let input = match BindInput::parse(&f.card_no, &f.phone) {
        Ok(input) => input,
        Err(why) => return Ok(bind_form(&app, &session, Some(&why), None, None).into_response()),
    };
    // A try is taken before the card and phone are compared (see `binding::take_try`).
    if let Some(minutes) = binding::take_try(&app.store, &openid, &input.card_no).await? {
        let why = Refusal::LockedOut { minutes };
        return Ok(bind_form(&app, &session, Some(&why), None, None).into_response());
    }
    let result = once_only(&app, &session, &f.once, async |tx| {
        let member_id = binding::bind_in(tx, &app.points_rules(), &openid, &input).await?;
        let name: Option<String> = crate::with_tx!(tx, conn => sqlx::query_scalar("SELECT name FROM members WHERE id = $1")
            .bind(member_id).fetch_one(conn).await)?;
        confirm_in_chat(&app, tx, "bound", &openid, member_id, name.as_deref(), &input.card_no).await?;
        Ok::<_, members::Error>("/h5/card?bound=1".to_owned())
    })
    .await;
    // Only a wrong phone keeps its try; anything else gives it back.
    let wrong_phone = matches!(result, Ok(Err(members::Error::Refused(Refusal::NoMatch))));
    let settled = if wrong_phone {
        binding::record_failure(&app.store, &openid, &input.card_no).await
    } else {
        binding::return_try(&app.store, &openid, &input.card_no).await
    };
    match result? {
        Ok(to) => {
            settled?;
            Ok(see_other(&to))
        }
        Err(members::Error::Refused(why)) => {
            settled?;
            Ok(bind_form(&app, &session, Some(&why), None, None).into_response())
        }
        Err(members::Error::Db(e)) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct EnrolForm {
    #[serde(default)]
    once: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    birthday: String,
}

pub async fn enrol(
    State(app): State<AppState>,
    Follower { session, openid }: Follower,
    body: Bytes,
) -> Result<Response, PageError> {
    let f: EnrolForm = form(&app, &session, &body)?;
    let input = match EnrolInput::parse(&f.name, &f.phone, &f.birthday, app.clock.china_now().date_naive()) {
        Ok(input) => input,
        Err(why) => return Ok(bind_form(&app, &session, None, Some(&why), None).into_response()),
    };
    let result = once_only(&app, &session, &f.once, async |tx| {
        let (member_id, card_no) = binding::enrol_in(tx, &app.points_rules(), &openid, &input).await?;
        confirm_in_chat(&app, tx, "enrolled", &openid, member_id, Some(&input.name), &card_no).await?;
        Ok::<_, members::Error>("/h5/card?welcome=1".to_owned())
    })
    .await?;
    match result {
        Ok(to) => Ok(see_other(&to)),
        Err(members::Error::Refused(why)) => Ok(bind_form(&app, &session, None, Some(&why), None).into_response()),
        Err(members::Error::Db(e)) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct OnceForm {
    #[serde(default)]
    once: String,
}

pub async fn unbind(
    State(app): State<AppState>,
    Follower { session, openid }: Follower,
    body: Bytes,
) -> Result<Response, PageError> {
    let f: OnceForm = form(&app, &session, &body)?;
    let result = once_only(&app, &session, &f.once, async |tx| {
        binding::unbind_in(tx, &app.points_rules(), &openid).await?;
        Ok::<_, sqlx::Error>("/h5/bind?unbound=1".to_owned())
    })
    .await?;
    Ok(see_other(&result?))
}
