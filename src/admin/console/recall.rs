//! Taking a sent push back from the console: a page that names what will disappear — the
//! articles, from which firings, and that followers keep the card — with a choice of one article
//! or all, then a form that must say it means it (`confirm=yes`), as cancelling does.

use super::campaigns::push_view;
use super::error::{Error, NO_PUSH};
use super::pickers;
use super::{Posted, Signed, Staff, redirect, render};
use crate::campaigns::recall::{self, RecallError};
use crate::campaigns::{self, Refusal, schedule};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;

/// The question before a recall.
pub(super) async fn confirm(State(app): State<AppState>, Path(id): Path<i64>, s: Staff) -> Result<Response, Error> {
    let p = schedule::get(&app.store, id).await?.ok_or(Error::NotFound(NO_PUSH))?;
    if !recall::recallable(&p) {
        return Ok(redirect(&format!("/admin/campaigns/{}?done=not-recallable", p.campaign_id)));
    }
    // WeChat numbers the articles as the push's draft had them, from 1.
    let campaign = campaigns::get(&app.store, p.campaign_id).await?;
    let titles: Vec<String> = campaign
        .as_ref()
        .and_then(|c| campaigns::send::chosen(c, p.articles.as_deref()).ok())
        .map(|articles| articles.into_iter().map(|a| a.title.clone()).collect())
        .unwrap_or_default();
    let firings: Vec<String> =
        recall::sent(&p).map(|(r, _)| schedule::local_time(r.fired_at.unwrap_or(r.due_at), &p.time_zone)).collect();
    let names = pickers::names_for(&app, &p.audience).await?;
    let view = context! {
        who => s.caller.name, form_token => s.form_token, p => push_view(&p, &names),
        titles => titles, firings => firings,
    };
    Ok(render(&app, StatusCode::OK, "push_recall.html", view))
}

#[derive(Deserialize)]
pub(super) struct RecallForm {
    form_token: String,
    /// `yes`: the confirmation page's button. Anything else recalls nothing.
    #[serde(default)]
    confirm: String,
    /// `0` or absent: all the articles; else the one, from 1.
    #[serde(default)]
    article_idx: String,
}

impl Posted for RecallForm {
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

pub(super) async fn recall(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Signed(s, f): Signed<RecallForm>,
) -> Result<Response, Error> {
    if f.confirm != "yes" {
        return Ok(redirect(&format!("/admin/pushes/{id}/recall")));
    }
    let article = match f.article_idx.trim() {
        "" | "0" => None,
        n => Some(
            n.parse::<i64>()
                .map_err(|_| Error::Refused(StatusCode::BAD_REQUEST, format!("{n:?} is not an article")))?,
        ),
    };
    let campaign_of = async |app: &AppState| -> Result<i64, Error> {
        Ok(schedule::get(&app.store, id).await?.ok_or(Error::NotFound(NO_PUSH))?.campaign_id)
    };
    match recall::recall(&app.store, &app.client, id, article, &s.caller.name).await {
        Ok(p) => Ok(redirect(&format!("/admin/campaigns/{}?done=recalled", p.campaign_id))),
        Err(RecallError::Refused(Refusal::NotFound(_))) => Err(Error::NotFound(NO_PUSH)),
        Err(RecallError::Refused(Refusal::Invalid(why))) => Err(Error::Refused(StatusCode::BAD_REQUEST, why)),
        Err(RecallError::Refused(_)) => {
            Ok(redirect(&format!("/admin/campaigns/{}?done=not-recallable", campaign_of(&app).await?)))
        }
        Err(RecallError::Db(e)) => Err(e.into()),
        Err(e @ RecallError::WeChat { .. }) => {
            tracing::warn!(push = id, error = %e, "console: recall refused by WeChat");
            Ok(redirect(&format!("/admin/campaigns/{}?done=recall-failed", campaign_of(&app).await?)))
        }
    }
}
