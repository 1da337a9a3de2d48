//! One push's page: what it sends to whom when, a form that moves it to a new time (checked
//! against WeChat's limits as when it was scheduled), and cancelling — a page that asks first,
//! then a form that must say it means it (`confirm=yes`), so no single click cancels a launch.

use super::campaigns::{DONE, push_view};
use super::error::{Error, NO_PUSH};
use super::pickers;
use super::{Notice, Outcome, Posted, Signed, Staff, redirect, render};
use crate::campaigns::{self, schedule};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;

fn no_push() -> Error {
    Error::NotFound(NO_PUSH)
}

/// The push page, with the reschedule form (filled with the form as posted after a refusal).
async fn push_page(app: &AppState, s: &Staff, id: i64, out: Outcome) -> Result<Response, Error> {
    let push = schedule::get(&app.store, id).await?.ok_or_else(no_push)?;
    let names = pickers::names_for(app, &push.audience).await?;
    // The form starts from the push's own time, as the datetime-local field writes it.
    let tz = push.time_zone.clone();
    let current_at = push.at.map(|t| schedule::local_time(t, &tz).get(..19).unwrap_or_default().replace(' ', "T"));
    let form = out.form.unwrap_or_else(|| {
        context! {
            when => if push.cron.is_some() { "cron" } else { "at" },
            at => current_at, cron => push.cron, time_zone => tz,
        }
    });
    Ok(render(
        app,
        out.status,
        "push.html",
        context! {
            who => s.caller.name, form_token => s.form_token, notice => out.notice, error => out.error, form,
            p => push_view(&push, &names), scheduled => push.status == schedule::PushStatus::Scheduled,
        },
    ))
}

pub(super) async fn show(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<Notice>,
    s: Staff,
) -> Result<Response, Error> {
    push_page(&app, &s, id, Outcome::shown(q.text(DONE))).await
}

#[derive(Deserialize)]
pub(super) struct RescheduleForm {
    form_token: String,
    /// `at` or `cron`.
    #[serde(default)]
    when: String,
    #[serde(default)]
    at: String,
    #[serde(default)]
    cron: String,
    #[serde(default)]
    time_zone: String,
}

impl Posted for RescheduleForm {
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

impl RescheduleForm {
    /// The form as it was posted, to show again.
    fn view(&self) -> minijinja::Value {
        context! { when => self.when, at => self.at, cron => self.cron, time_zone => self.time_zone }
    }

    fn new_time(&self) -> schedule::NewTime {
        let (at, cron) =
            if self.when == "cron" { (None, Some(self.cron.clone())) } else { (Some(self.at.clone()), None) };
        let time_zone = Some(self.time_zone.trim().to_owned()).filter(|t| !t.is_empty());
        schedule::NewTime { at, cron, time_zone }
    }
}

pub(super) async fn reschedule(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Signed(s, f): Signed<RescheduleForm>,
) -> Result<Response, Error> {
    match schedule::reschedule(&app.store, &app.config.campaigns, id, &f.new_time()).await {
        Ok(p) => {
            app.scheduler_wake.notify_one();
            tracing::info!(push = id, by = %s.caller.name, "push rescheduled in the console");
            Ok(redirect(&format!("/admin/pushes/{}?done=rescheduled", p.id)))
        }
        Err(campaigns::Error::Refused(campaigns::Refusal::NotFound(_))) => Err(no_push()),
        Err(campaigns::Error::Refused(r)) => {
            let status = match r {
                campaigns::Refusal::Rule(_) => StatusCode::UNPROCESSABLE_ENTITY,
                campaigns::Refusal::Conflict(_) => StatusCode::CONFLICT,
                _ => StatusCode::BAD_REQUEST,
            };
            let why = format!("未能改期 Not rescheduled: {r}");
            push_page(&app, &s, id, Outcome::refused(status, why, Some(f.view()))).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The question before a cancel: which push, when, to whom — and a button that means it.
pub(super) async fn confirm_cancel(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    s: Staff,
) -> Result<Response, Error> {
    let p = schedule::get(&app.store, id).await?.ok_or_else(no_push)?;
    if p.status != schedule::PushStatus::Scheduled {
        return Ok(redirect(&format!("/admin/campaigns/{}?done=not-cancellable", p.campaign_id)));
    }
    let names = pickers::names_for(&app, &p.audience).await?;
    let view = context! { who => s.caller.name, form_token => s.form_token, p => push_view(&p, &names) };
    Ok(render(&app, StatusCode::OK, "push_cancel.html", view))
}

#[derive(Deserialize)]
pub(super) struct CancelForm {
    form_token: String,
    /// `yes`: the confirmation page's button. Anything else cancels nothing.
    #[serde(default)]
    confirm: String,
}

impl Posted for CancelForm {
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

pub(super) async fn cancel(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Signed(s, f): Signed<CancelForm>,
) -> Result<Response, Error> {
    if f.confirm != "yes" {
        // A cancel that did not come through the question: ask it.
        return Ok(redirect(&format!("/admin/pushes/{id}/cancel")));
    }
    match schedule::cancel(&app.store, id).await {
        Ok(p) => {
            tracing::info!(push = id, by = %s.caller.name, "push cancelled in the console");
            Ok(redirect(&format!("/admin/campaigns/{}?done=cancelled", p.campaign_id)))
        }
        Err(campaigns::Error::Refused(campaigns::Refusal::NotFound(_))) => Err(no_push()),
        Err(campaigns::Error::Refused(_)) => {
            let p = schedule::get(&app.store, id).await?.ok_or_else(no_push)?;
            Ok(redirect(&format!("/admin/campaigns/{}?done=not-cancellable", p.campaign_id)))
        }
        Err(e) => Err(e.into()),
    }
}
