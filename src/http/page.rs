//! Server-rendered HTML pages: the H5 pages followers open and the marketing console.
//!
//! A handler returns a [`Page`] (a template name and its context) or a
//! [`PageError`](crate::error::PageError) (sign in,
//! go elsewhere, a refusal to read, the database is down); neither needs the templates. The
//! router's [`render`] layer, which holds them, turns both into HTML, so handlers use `?` and
//! read as their contract. The same layer puts the security headers on every page: a Content
//! Security Policy without inline script, no framing (except by this site in `wxoa dev`, whose
//! simulator frames the H5 pages), `nosniff`, a strict referrer policy, and `no-store` — pages
//! show personal data (points, bookings, a card number) and must not stay in a shared cache.

use crate::state::Pages;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

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
    if let Some(m) = response.extensions_mut().remove::<crate::error::MessagePage>() {
        let ctx = minijinja::context! { title => m.title, text => m.text };
        let status = response.status();
        response.extensions_mut().insert(Page { status, template: "message.html", ctx });
    }
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
