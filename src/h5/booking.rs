//! Booking a beauty advisor: store → advisor → the week's hourly slots day by day (taken ones
//! greyed out) → a confirmation page → the booking, made once however often the form is
//! posted, shown on the booking page afterwards. Cancelling has its confirmation too. A member
//! holds at most `h5.max_open_bookings` upcoming bookings.

use super::{Member, form, form_fields, once_only};
use crate::bookings::{self, Refusal};
use crate::error::PageError;
use crate::http::page::{Page, see_other};
use crate::jobs::Kind;
use crate::jobs::outbox::NewJob;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use minijinja::context;

#[derive(serde::Deserialize, Default)]
pub struct BookQuery {
    store: Option<i64>,
    advisor: Option<i64>,
    /// The booking just made, or just cancelled (results of the forms).
    booked: Option<i64>,
    cancelled: Option<i64>,
}

pub async fn book_page(
    State(app): State<AppState>,
    Member { session, member, .. }: Member,
    Query(q): Query<BookQuery>,
) -> Result<Page, PageError> {
    render(&app, &session, &member, q, None).await
}

async fn render(
    app: &AppState,
    session: &super::Session,
    m: &crate::members::Member,
    q: BookQuery,
    refused: Option<&Refusal>,
) -> Result<Page, PageError> {
    let now = app.clock.now_ms();
    let upcoming = bookings::upcoming(&app.store, m.id, now).await?;
    let stores = crate::stores::list(&app.store).await?;
    let advisors = match q.store {
        Some(s) => bookings::advisors(&app.store, s).await?,
        None => vec![],
    };
    let days = match q.advisor {
        Some(a) if advisors.iter().any(|x| x.id == a) => bookings::week(&app.store, a, now).await?,
        _ => vec![],
    };
    let banner = match (q.booked, q.cancelled) {
        (Some(id), _) => bookings::booking(&app.store, m.id, id).await?.map(|(b, _)| {
            format!(
                "预约成功：{time}，{store}，{advisor}。Booked: {time} at {store} with {advisor}.",
                time = bookings::slot_label(b.slot_start),
                store = b.store,
                advisor = b.advisor
            )
        }),
        (None, Some(id)) => bookings::booking(&app.store, m.id, id).await?.map(|(b, _)| {
            format!(
                "已取消 {time} 的预约。Your booking at {time} is cancelled.",
                time = bookings::slot_label(b.slot_start)
            )
        }),
        _ => None,
    };
    let upcoming: Vec<_> = upcoming
        .iter()
        .map(|b| context! { id => b.id, time => bookings::slot_label(b.slot_start), advisor => b.advisor, store => b.store })
        .collect();
    let stores: Vec<_> = stores.iter().map(|s| context! { id => s.id, name => s.display_name() }).collect();
    let advisors: Vec<_> = advisors.iter().map(|a| context! { id => a.id, name => a.name }).collect();
    let days: Vec<_> = days
        .iter()
        .map(|d| {
            let slots: Vec<_> =
                d.slots.iter().map(|s| context! { start => s.start, time => s.time, taken => s.taken }).collect();
            context! { label => d.label, slots }
        })
        .collect();
    let status = refused.map(crate::error::bookings_status).unwrap_or(StatusCode::OK);
    Ok(Page::new(
        "book.html",
        context! {
            upcoming, stores, advisors, days, store => q.store, advisor => q.advisor, banner,
            error => refused.map(ToString::to_string), max_open => app.config.h5.max_open_bookings,
            ..form_fields(app, session),
        },
    )
    .with_status(status))
}

#[derive(serde::Deserialize)]
pub struct ConfirmQuery {
    advisor: Option<i64>,
    slot: Option<i64>,
}

/// "Book this time?": the store, the advisor and the time, and the button that books it.
pub async fn confirm(
    State(app): State<AppState>,
    Member { session, member, .. }: Member,
    Query(q): Query<ConfirmQuery>,
) -> Result<Page, PageError> {
    let found = match q.advisor {
        Some(a) => bookings::advisor(&app.store, a).await?,
        None => None,
    };
    let Some((advisor, store)) = found else {
        return render(&app, &session, &member, BookQuery::default(), Some(&Refusal::NoSuchAdvisor)).await;
    };
    let slot = q.slot.unwrap_or(0);
    let back = BookQuery { store: Some(advisor.store_id), advisor: Some(advisor.id), ..BookQuery::default() };
    if !bookings::free_slots(&app.store, advisor.id, app.clock.now_ms()).await?.contains(&slot) {
        let why =
            if bookings::slot_grid(app.clock.now_ms()).contains(&slot) { Refusal::Taken } else { Refusal::NotASlot };
        return render(&app, &session, &member, back, Some(&why)).await;
    }
    Ok(Page::new(
        "book_confirm.html",
        context! {
            advisor => context! { id => advisor.id, name => advisor.name }, store, store_id => advisor.store_id,
            slot, time => bookings::slot_label(slot), ..form_fields(&app, &session),
        },
    ))
}

#[derive(serde::Deserialize)]
struct BookForm {
    #[serde(default)]
    once: String,
    #[serde(default)]
    advisor: i64,
    #[serde(default)]
    slot: i64,
}

pub async fn book(
    State(app): State<AppState>,
    Member { session, member, openid }: Member,
    body: Bytes,
) -> Result<Response, PageError> {
    let f: BookForm = form(&app, &session, &body)?;
    let lead = app.config.notices.reminder_lead_mins;
    let jobs = |id: i64, d: &bookings::Details| {
        let ctx = context! { store => d.store, advisor => d.advisor, time => d.time };
        let mut jobs = Vec::new();
        match app.notices.render("booking_confirmed", &openid, ctx.clone()) {
            Ok(m) => jobs.push(NewJob::new(Kind::Template, m, format!("booking:{id}:confirmed"))),
            Err(e) => tracing::error!(error = %e, "booking notice not rendered"),
        }
        match app.notices.render("booking_reminder", &openid, ctx) {
            Ok(message) => jobs.push(
                NewJob::new(
                    Kind::BookingReminder,
                    bookings::ReminderJob { booking_id: id, message },
                    format!("booking:{id}:reminder"),
                )
                .at(bookings::reminder_at(f.slot, lead, app.clock.now_ms())),
            ),
            Err(e) => tracing::error!(error = %e, "booking reminder not rendered"),
        }
        jobs
    };
    let max_open = app.config.h5.max_open_bookings;
    let result = once_only(&app, &session, &f.once, async |tx| {
        let b = bookings::book_in(tx, app.crm_events(), member.id, f.advisor, f.slot, max_open, jobs).await?;
        Ok::<_, bookings::Error>(format!("/h5/book?booked={}", b.id))
    })
    .await?;
    match result {
        Ok(to) => Ok(see_other(&to)),
        Err(bookings::Error::Refused(why)) => {
            let back = match bookings::advisor(&app.store, f.advisor).await? {
                Some((a, _)) => BookQuery { store: Some(a.store_id), advisor: Some(a.id), ..BookQuery::default() },
                None => BookQuery::default(),
            };
            Ok(render(&app, &session, &member, back, Some(&why)).await?.into_response())
        }
        Err(bookings::Error::Db(e)) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
pub struct CancelQuery {
    booking: Option<i64>,
}

/// "Cancel this booking?".
pub async fn cancel_confirm(
    State(app): State<AppState>,
    Member { session, member, .. }: Member,
    Query(q): Query<CancelQuery>,
) -> Result<Page, PageError> {
    let found = match q.booking {
        Some(id) => bookings::booking(&app.store, member.id, id).await?,
        None => None,
    };
    match found {
        Some((b, Some(bookings::Status::Confirmed))) if b.slot_start > app.clock.now_ms() => Ok(Page::new(
            "cancel_confirm.html",
            context! {
                booking => context! { id => b.id, time => bookings::slot_label(b.slot_start), store => b.store, advisor => b.advisor },
                ..form_fields(&app, &session),
            },
        )),
        _ => render(&app, &session, &member, BookQuery::default(), Some(&Refusal::NoSuchBooking)).await,
    }
}

#[derive(serde::Deserialize)]
struct CancelForm {
    #[serde(default)]
    once: String,
    #[serde(default)]
    booking: i64,
}

pub async fn cancel(
    State(app): State<AppState>,
    Member { session, member, .. }: Member,
    body: Bytes,
) -> Result<Response, PageError> {
    let f: CancelForm = form(&app, &session, &body)?;
    let result = once_only(&app, &session, &f.once, async |tx| {
        bookings::cancel_in(tx, app.crm_events(), member.id, f.booking).await?;
        Ok::<_, bookings::Error>(format!("/h5/book?cancelled={}", f.booking))
    })
    .await?;
    match result {
        Ok(to) => Ok(see_other(&to)),
        Err(bookings::Error::Refused(why)) => {
            Ok(render(&app, &session, &member, BookQuery::default(), Some(&why)).await?.into_response())
        }
        Err(bookings::Error::Db(e)) => Err(e.into()),
    }
}
