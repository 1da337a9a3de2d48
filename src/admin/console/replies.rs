//! The console's reply pages: every keyword and menu-click reply stored in the database with
//! its place among `routes.toml`'s rules, a form to write one, a preview in the phone frame of
//! what a follower would get (and which rule would really answer them), each reply's history.
//! Saving goes through the same [`crate::replies`] functions as `/api/v1/replies`, so a change
//! is checked whole, refused with its reason, and applied on this instance at once.

use super::error::{Error, Invalid, NO_REPLY};
use super::{Notice, Outcome, Posted, Signed, Staff, redirect, render};
use crate::replies::{self, Answer, Match, NewsArticle, ReplyInput, Stored};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;

/// The reply form's fields (one news article; more come from the API).
#[derive(Deserialize, Default)]
pub(super) struct ReplyForm {
    form_token: String,
    /// The reply being edited; empty for a new one.
    #[serde(default)]
    id: String,
    /// The version the edit was made from.
    #[serde(default)]
    version: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    priority: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    enabled: Option<String>,
    /// `keyword`, `exact`, `prefix`, `regex` or `click`.
    #[serde(default)]
    match_kind: String,
    /// The words (one a line, or comma-separated), the text, the pattern or the menu key.
    #[serde(default)]
    match_value: String,
    /// `text` or `news`.
    #[serde(default)]
    reply_kind: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    pic_url: String,
    /// What the preview pretends a follower said.
    #[serde(default)]
    sample: String,
}

impl Posted for ReplyForm {
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

impl ReplyForm {
    fn id(&self) -> Option<i64> {
        self.id.trim().parse().ok()
    }

    fn input(&self) -> Result<ReplyInput, Invalid> {
        let priority = match self.priority.trim() {
            "" => 0,
            p => p.parse().map_err(|_| Invalid::Priority(p.to_owned()))?,
        };
        let value = self.match_value.trim().to_owned();
        let matching = match self.match_kind.as_str() {
            "keyword" => Match::Keyword(
                value
                    .split(['\n', ',', '，', '、'])
                    .map(str::trim)
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            "exact" => Match::Exact(value),
            "prefix" => Match::Prefix(self.match_value.trim_start().to_owned()),
            "regex" => Match::Regex(value),
            "click" => Match::Click(value),
            other => return Err(Invalid::NotAMatch(other.to_owned())),
        };
        let reply = match self.reply_kind.as_str() {
            "text" => Answer::Text(self.text.clone()),
            "news" => Answer::News(vec![NewsArticle {
                title: self.title.trim().to_owned(),
                description: self.description.trim().to_owned(),
                url: self.url.trim().to_owned(),
                pic_url: self.pic_url.trim().to_owned(),
            }]),
            other => return Err(Invalid::NotAReplyType(other.to_owned())),
        };
        let version = match self.version.trim() {
            "" => None,
            v => Some(v.parse().map_err(|_| Invalid::Version)?),
        };
        Ok(ReplyInput {
            name: self.name.trim().to_owned(),
            priority,
            enabled: self.enabled.is_some(),
            matching,
            reply,
            version,
        })
    }

    /// The form as it was posted, to show again.
    fn view(&self) -> minijinja::Value {
        context! {
            id => self.id, version => self.version, name => self.name, priority => self.priority,
            enabled => self.enabled.is_some(), match_kind => self.match_kind, match_value => self.match_value,
            reply_kind => self.reply_kind, text => self.text, title => self.title, description => self.description,
            url => self.url, pic_url => self.pic_url, sample => self.sample,
        }
    }
}

/// A stored reply as the form shows it.
fn form_of(r: &Stored) -> minijinja::Value {
    let (match_kind, match_value) = match_parts(&r.matching);
    let (reply_kind, text, first) = match &r.reply {
        Answer::Text(t) => ("text", t.clone(), None),
        Answer::News(a) => ("news", String::new(), a.first()),
    };
    context! {
        id => r.id, version => r.version, name => r.name, priority => r.priority, enabled => r.enabled,
        match_kind, match_value, reply_kind, text,
        title => first.map(|a| a.title.clone()), description => first.map(|a| a.description.clone()),
        url => first.map(|a| a.url.clone()), pic_url => first.map(|a| a.pic_url.clone()), sample => "",
    }
}

fn match_parts(m: &Match) -> (&'static str, String) {
    match m {
        Match::Keyword(words) => ("keyword", words.join("\n")),
        Match::Exact(t) => ("exact", t.clone()),
        Match::Prefix(t) => ("prefix", t.clone()),
        Match::Regex(t) => ("regex", t.clone()),
        Match::Click(k) => ("click", k.clone()),
    }
}

fn describe(m: &Match) -> String {
    let (kind, value) = match_parts(m);
    format!("{kind}: {}", value.replace('\n', ", "))
}

/// What the reply pages' redirects can say happened.
const DONE: &[(&str, &str)] = &[
    ("created", "回复已创建，即刻生效 Reply created: it answers from now on"),
    ("saved", "已保存，新版本即刻生效 Saved: the new version answers from now on"),
];

pub(super) async fn list(State(app): State<AppState>, Query(q): Query<Notice>, s: Staff) -> Result<Response, Error> {
    list_page(&app, &s, Outcome::shown(q.text(DONE)), None).await
}

/// The list of replies (with the routing order around them) and the new-reply form.
async fn list_page(
    app: &AppState,
    s: &Staff,
    out: Outcome,
    preview: Option<minijinja::Value>,
) -> Result<Response, Error> {
    let stored = replies::list(&app.store).await?;
    let rows: Vec<minijinja::Value> = stored
        .iter()
        .map(|r| {
            context! {
                id => r.id, name => r.name, priority => r.priority, enabled => r.enabled, version => r.version,
                matching => describe(&r.matching), updated_by => r.updated_by,
                updated => crate::campaigns::schedule::local_time(r.updated_at, &app.config.campaigns.time_zone),
            }
        })
        .collect();
    // The order the bot tries rules in: the file's and the console's together.
    let routing = app.bot.routing();
    let order: Vec<minijinja::Value> =
        routing.rules.iter().map(|r| context! { name => r.name, console => r.name.starts_with("console:") }).collect();
    let form = out.form.unwrap_or_else(
        || context! { priority => "10", enabled => true, match_kind => "keyword", reply_kind => "text" },
    );
    Ok(render(
        app,
        out.status,
        "replies.html",
        context! {
            who => s.caller.name, form_token => s.form_token, replies => rows, order, form, notice => out.notice,
            error => out.error, preview,
        },
    ))
}

pub(super) async fn show(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<Notice>,
    s: Staff,
) -> Result<Response, Error> {
    reply_page(&app, &s, id, Outcome::shown(q.text(DONE)), None).await
}

/// One reply: its form, its preview in the phone frame, its history.
async fn reply_page(
    app: &AppState,
    s: &Staff,
    id: i64,
    out: Outcome,
    preview: Option<minijinja::Value>,
) -> Result<Response, Error> {
    let stored = replies::get(&app.store, id).await?.ok_or(Error::NotFound(NO_REPLY))?;
    let history = replies::history(&app.store, id).await?;
    let tz = &app.config.campaigns.time_zone;
    let history: Vec<minijinja::Value> = history
        .iter()
        .rev()
        .map(|v| {
            let reply = match &v.reply {
                Answer::Text(t) => t.clone(),
                Answer::News(a) => a.iter().map(|a| a.title.clone()).collect::<Vec<_>>().join(" · "),
            };
            context! {
                version => v.version, action => v.action, priority => v.priority, enabled => v.enabled,
                matching => describe(&v.matching), reply, by => v.changed_by,
                at => crate::campaigns::schedule::local_time(v.changed_at, tz),
            }
        })
        .collect();
    // Without a posted preview, the stored reply's own.
    let preview = match preview {
        Some(p) => Some(p),
        None => {
            let input = ReplyInput {
                name: stored.name.clone(),
                priority: stored.priority,
                enabled: stored.enabled,
                matching: stored.matching.clone(),
                reply: stored.reply.clone(),
                version: None,
            };
            replies::preview(&app.store, &app.bot.base(), Some(id), &input, None).await.ok().map(preview_view)
        }
    };
    Ok(render(
        app,
        out.status,
        "reply.html",
        context! {
            who => s.caller.name, form_token => s.form_token, id, name => stored.name,
            form => out.form.unwrap_or_else(|| form_of(&stored)), history, notice => out.notice, error => out.error,
            preview,
        },
    ))
}

fn preview_view(p: replies::Preview) -> minijinja::Value {
    use replies::Rendered;
    let (text, articles, other) = match p.reply {
        Some(Rendered::Text { content }) => (Some(content), Vec::new(), None),
        Some(Rendered::News { articles }) => (None, articles, None),
        Some(Rendered::Other { kind }) => (None, Vec::new(), Some(kind)),
        None => (None, Vec::new(), Some("无回复 nothing".to_owned())),
    };
    let articles: Vec<minijinja::Value> = articles
        .into_iter()
        .map(|a| context! { title => a.title, description => a.description, url => a.url, pic_url => a.pic_url })
        .collect();
    context! {
        sample => p.sample, matches => p.matches, answered_by => p.answered_by, text, articles, other,
    }
}

/// A refusal's status and reason (as the API gives them), or the failure it is not.
fn refusal(e: replies::Error) -> Result<(StatusCode, String), replies::Error> {
    match e {
        replies::Error::Invalid(why) => Ok((StatusCode::BAD_REQUEST, why)),
        replies::Error::NotFound(why) => Ok((StatusCode::NOT_FOUND, why)),
        replies::Error::Conflict(why) => Ok((StatusCode::CONFLICT, why)),
        replies::Error::TooMany(why) => Ok((StatusCode::UNPROCESSABLE_ENTITY, why)),
        other => Err(other),
    }
}

pub(super) async fn create(State(app): State<AppState>, Signed(s, f): Signed<ReplyForm>) -> Result<Response, Error> {
    let result = match f.input() {
        Ok(input) => replies::create(&app.store, &app.bot.base(), app.config.replies.max, &input, &s.caller.name)
            .await
            .map_err(refusal),
        Err(why) => Err(Ok((StatusCode::BAD_REQUEST, why.to_string()))),
    };
    match result {
        Ok(r) => {
            replies::apply(&app.store, &app.bot).await?;
            tracing::info!(reply = r.id, by = %s.caller.name, "console: reply created");
            Ok(redirect(&format!("/admin/replies/{}?done=created", r.id)))
        }
        Err(Ok((status, why))) => list_page(&app, &s, Outcome::refused(status, why, Some(f.view())), None).await,
        Err(Err(e)) => Err(e.into()),
    }
}

pub(super) async fn update(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Signed(s, f): Signed<ReplyForm>,
) -> Result<Response, Error> {
    let result = match f.input() {
        Ok(input) => {
            replies::update(&app.store, &app.bot.base(), app.config.replies.max, id, &input, &s.caller.name).await
        }
        Err(why) => Err(replies::Error::Invalid(why.to_string())),
    };
    match result.map_err(refusal) {
        Ok(_) => {
            replies::apply(&app.store, &app.bot).await?;
            tracing::info!(reply = id, by = %s.caller.name, "console: reply saved");
            Ok(redirect(&format!("/admin/replies/{id}?done=saved")))
        }
        Err(Ok((StatusCode::NOT_FOUND, _))) => Err(Error::NotFound(NO_REPLY)),
        Err(Ok((status, why))) => reply_page(&app, &s, id, Outcome::refused(status, why, Some(f.view())), None).await,
        Err(Err(e)) => Err(e.into()),
    }
}

/// The form previewed, unsaved: the page again with the phone frame showing the reply.
pub(super) async fn preview(State(app): State<AppState>, Signed(s, f): Signed<ReplyForm>) -> Result<Response, Error> {
    let id = f.id();
    let result = match f.input() {
        Ok(input) => {
            replies::preview(&app.store, &app.bot.base(), id, &input, Some(f.sample.trim())).await.map_err(refusal)
        }
        Err(why) => Err(Ok((StatusCode::BAD_REQUEST, why.to_string()))),
    };
    let (status, error, preview) = match result {
        Ok(p) => (StatusCode::OK, None, Some(preview_view(p))),
        Err(Ok((status, why))) => (status, Some(why), None),
        Err(Err(e)) => return Err(e.into()),
    };
    let out = Outcome { status, error, form: Some(f.view()), ..Outcome::default() };
    match id {
        Some(id) => reply_page(&app, &s, id, out, preview).await,
        None => list_page(&app, &s, out, preview).await,
    }
}
