//! The marketing console at `/admin`: server-rendered pages over the same campaign functions
//! the API uses. Sign in with an admin token; create a campaign and write its article with a
//! live preview; schedule pushes; preview to test followers; the schedule as a timeline with
//! each push's delivery figures.
//!
//! Sign-in and sessions: [`session`]. What a page answers instead of itself (the login page,
//! a 404, a 503…) and why a form is refused: [`error`].

mod articles;
mod audiences;
mod campaigns;
mod charts;
mod editor;
mod error;
mod figures;
mod images;
mod pickers;
mod pushes;
mod recall;
mod replies;
mod session;

use crate::state::AppState;
use axum::Router;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use error::Error;
use serde::Deserialize;
pub use session::purge_sessions;
use session::{Posted, Signed, SignedRaw, Staff, signed_in};

/// WeChat's limit: one mpnews draft carries at most 8 articles.
const MAX_ARTICLES: usize = 8;

pub fn router(pages: crate::http::page::Renderer) -> Router<AppState> {
    Router::new()
        .route("/admin", get(campaigns::dashboard))
        .route("/admin/login", get(session::login_page).post(session::login))
        .route("/admin/logout", post(session::logout))
        .route("/admin/campaigns/new", get(campaigns::new_campaign))
        // An article's content may be 20,000 characters: URL-encoded Chinese, 180 KB.
        .route("/admin/campaigns", post(campaigns::create_campaign).layer(article_limit()))
        .route(
            "/admin/campaigns/{id}",
            get(campaigns::show_campaign).post(campaigns::update_campaign).layer(article_limit()),
        )
        .route(
            "/admin/campaigns/{id}/articles",
            get(articles::new_article).post(articles::add_article).layer(article_limit()),
        )
        .route(
            "/admin/campaigns/{id}/articles/{n}",
            get(articles::show_article).post(articles::update_article).layer(article_limit()),
        )
        .route("/admin/campaigns/{id}/articles/{n}/remove", post(articles::remove_article))
        .route("/admin/campaigns/{id}/pushes", post(campaigns::schedule_push))
        .route("/admin/campaigns/{id}/preview", post(campaigns::preview))
        .route("/admin/pushes/{id}", get(pushes::show))
        .route("/admin/pushes/{id}/reschedule", post(pushes::reschedule))
        .route("/admin/pushes/{id}/cancel", get(pushes::confirm_cancel).post(pushes::cancel))
        .route("/admin/pushes/{id}/recall", get(recall::confirm).post(recall::recall))
        .route("/admin/replies", get(replies::list).post(replies::create))
        .route("/admin/replies/preview", post(replies::preview))
        .route("/admin/replies/{id}", get(replies::show).post(replies::update))
        .route("/admin/segments", get(audiences::segments).post(audiences::create))
        .route("/admin/segments/count", post(audiences::count))
        .route("/admin/segments/{id}/sync", post(audiences::start_sync))
        .route("/admin/followers", get(audiences::followers))
        .route("/admin/followers/{id}", get(audiences::follower))
        .route("/admin/images", post(images::upload).layer(images::limit()))
        .route("/admin/console.js", get(script))
        .route("/admin/editor.js", get(editor::editor_js))
        .route("/admin/vendor/quill-2.0.3.js", get(editor::quill_js))
        .route("/admin/vendor/quill-2.0.3.snow.css", get(editor::quill_css))
        .layer(axum::middleware::map_response_with_state(pages, crate::http::page::render))
}

fn article_limit() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(crate::campaigns::MAX_BODY)
}

/// The console's script (the live article preview), served from the binary: pages carry no
/// inline script, so their Content Security Policy can forbid it.
async fn script() -> Response {
    let headers = [
        (axum::http::header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
        (axum::http::header::CACHE_CONTROL, "no-cache"),
    ];
    (headers, include_str!("../console.js")).into_response()
}

fn render(_: &AppState, status: StatusCode, page: &'static str, ctx: minijinja::Value) -> Response {
    crate::http::page::Page::new(page, ctx).with_status(status).into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response()
}

/// What a redirect after a form says happened: a fixed code (`?done=saved`), which each page
/// turns into its own words, so a link cannot put words of its own on the page.
#[derive(Deserialize)]
struct Notice {
    #[serde(default)]
    done: Option<String>,
}

impl Notice {
    /// The words `texts` gives the code; none for a code it does not know.
    fn text(&self, texts: &[(&str, &str)]) -> Option<String> {
        let done = self.done.as_deref()?;
        texts.iter().find(|(code, _)| *code == done).map(|(_, text)| (*text).to_owned())
    }
}

/// A form that carries nothing but this session's form token (a button).
#[derive(Deserialize)]
struct TokenOnly {
    form_token: String,
}

impl session::Posted for TokenOnly {
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

/// What a page says about the request that led to it: its status, a notice or a refusal, and
/// the form as it was posted (shown again in place of the page's own).
#[derive(Default)]
struct Outcome {
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
    form: Option<minijinja::Value>,
}

impl Outcome {
    /// The page as asked for (200), with the notice a redirect's code names, if any.
    fn shown(notice: Option<String>) -> Outcome {
        Outcome { notice, ..Outcome::default() }
    }

    /// The page again with a refusal's status and reason, and the form as posted, if any.
    fn refused(status: StatusCode, why: String, form: Option<minijinja::Value>) -> Outcome {
        Outcome { status, error: Some(why), form, ..Outcome::default() }
    }
}
