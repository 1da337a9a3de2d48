//! Server-rendered HTML pages: the H5 pages followers open and the marketing console.
//!
//! A handler returns a [`Page`] (a template name and its context) or a [`PageError`] (sign in,
//! go elsewhere, a refusal to read, the database is down); neither needs the templates. The
//! router's [`render`] layer, which holds them, turns both into HTML, so handlers use `?` and
//! read as their contract. The same layer puts the security headers on every page: a Content
//! Security Policy without inline script, no framing (except by this site in `wxoa dev`, whose
//! simulator frames the H5 pages), `nosniff`, a strict referrer policy, and `no-store` — pages
//! show personal data (points, bookings, a card number) and must not stay in a shared cache.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::path::Path;
use std::sync::Arc;

/// A set of page templates (`*.html`, HTML-escaped), loaded once at start.
pub struct Pages(minijinja::Environment<'static>);

impl Pages {
    /// Every `*.html` in `dir`, refusing to start without the `required` ones.
    pub fn load(dir: &Path, required: &[&str]) -> Result<Pages, String> {
        let mut env = minijinja::Environment::new();
        let entries = std::fs::read_dir(dir).map_err(|e| format!("pages: cannot read {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| format!("pages: {e}"))?.path();
            if path.extension().is_some_and(|e| e == "html") {
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                let source = std::fs::read_to_string(&path).map_err(|e| format!("pages: {}: {e}", path.display()))?;
                env.add_template_owned(name.clone(), source).map_err(|e| format!("pages: {name}: {e}"))?;
            }
        }
        for required in required {
            env.get_template(required).map_err(|_| format!("pages: {required} missing in {}", dir.display()))?;
        }
        Ok(Pages(env))
    }

    /// `name` rendered with `ctx`.
    pub fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, minijinja::Error> {
        self.0.get_template(name)?.render(ctx)
    }
}

/// A page to render: a template and its context, with a status.
#[derive(Clone)]
pub struct Page {
    pub status: StatusCode,
    pub template: &'static str,
    pub ctx: minijinja::Value,
}

impl Page {
    pub fn new(template: &'static str, ctx: minijinja::Value) -> Page {
        Page { status: StatusCode::OK, template, ctx }
    }

    pub fn with_status(mut self, status: StatusCode) -> Page {
        self.status = status;
        self
    }
}

impl IntoResponse for Page {
    /// An empty response carrying the page; [`render`] fills it in.
    fn into_response(self) -> Response {
        let mut r = self.status.into_response();
        r.extensions_mut().insert(self);
        r
    }
}

/// Why a page handler answers something other than its page.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in: to this URL (the sign-in start, or the console's login).
    SignIn(String),
    /// Somewhere else first (an H5 page needs a bound card: to the bind page).
    Redirect(String),
    /// A refusal the reader should see: a page of its own with a title and a sentence.
    Refused { status: StatusCode, title: &'static str, text: String },
    /// The database or WeChat failed; logged, and a "try again" page.
    Unavailable(String),
}

impl PageError {
    pub fn refused(status: StatusCode, title: &'static str, text: impl Into<String>) -> PageError {
        PageError::Refused { status, title, text: text.into() }
    }

    /// A form that was not this session's own (a cross-site post, or a page from another sign-in).
    pub fn foreign_form() -> PageError {
        PageError::refused(
            StatusCode::FORBIDDEN,
            "请求无效 / Invalid request",
            "请从对话中重新打开页面。Please open the page again from the chat.",
        )
    }

    pub fn not_found() -> PageError {
        PageError::refused(StatusCode::NOT_FOUND, "未找到 / Not found", "此页面不存在。This page does not exist.")
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        PageError::Unavailable(format!("database: {e}"))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn(to) | PageError::Redirect(to) => see_other(&to),
            PageError::Refused { status, title, text } => {
                Page::new("message.html", minijinja::context! { title, text }).with_status(status).into_response()
            }
            PageError::Unavailable(why) => {
                tracing::error!(error = %why, "page: database or API failure");
                Page::new(
                    "message.html",
                    minijinja::context! {
                        title => "请稍后再试 / Please try again",
                        text => "系统繁忙，请稍后再试。Something went wrong on our side. Please try again in a moment.",
                    },
                )
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .into_response()
            }
        }
    }
}

/// A 303 to `to` (after a form: the browser GETs the result, and a reload does not post again).
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response()
}

/// Who may frame the pages: nobody, or this site too (the `wxoa dev` simulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Deny,
    SameOrigin,
}

/// The templates a [`render`] layer uses, and its headers.
#[derive(Clone)]
pub struct Renderer {
    pub pages: Arc<Pages>,
    pub framing: Framing,
}

/// The layer function: renders a [`Page`] left in a response's extensions, and puts the
/// security headers on every HTML response.
pub async fn render(
    axum::extract::State(renderer): axum::extract::State<Renderer>,
    mut response: Response,
) -> Response {
    if let Some(page) = response.extensions_mut().remove::<Page>() {
        // Into the response the handler made, keeping its status and headers (a cookie set
        // or cleared on an error page, say).
        match renderer.pages.render(page.template, page.ctx) {
            Ok(html) => {
                *response.body_mut() = axum::body::Body::from(html);
                response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            }
            Err(e) => {
                tracing::error!(page = page.template, error = %e, "page failed to render");
                response = (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
            }
        }
    }
    let html = response.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let headers = response.headers_mut();
    if html || headers.contains_key(LOCATION) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if html {
        let csp = match renderer.framing {
            Framing::Deny => CSP_DENY,
            Framing::SameOrigin => CSP_SAME_ORIGIN,
        };
        headers.insert(HeaderName::from_static("content-security-policy"), HeaderValue::from_static(csp));
        let frame = if renderer.framing == Framing::Deny { "DENY" } else { "SAMEORIGIN" };
        headers.insert(HeaderName::from_static("x-frame-options"), HeaderValue::from_static(frame));
        headers.insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
        headers.insert(HeaderName::from_static("referrer-policy"), HeaderValue::from_static("same-origin"));
    }
    response
}

/// Scripts only from this site (the pages have no inline script); styles may be inline (each
/// page carries its own small stylesheet); images also as data: URIs (the card's QR code) and
/// from WeChat's CDN over https (article covers).
const CSP_DENY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: https:; form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'";
const CSP_SAME_ORIGIN: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: https:; form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'self'";
