//! The article editor's files, served from the binary: Quill (vendored in `src/admin/vendor/quill`,
//! its README says which version and how to update it) and our glue (`src/admin/editor.js`),
//! which turns the body's textarea into the editor and its image button into an upload
//! ([`super::images`]). Nothing comes from a CDN, and the pages keep their Content Security
//! Policy without inline script: the page still posts the HTML in its `content` field, and
//! without JavaScript the textarea is there as before.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

/// Quill's files carry its version in their path, so they can be cached for good.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub(super) async fn quill_js() -> Response {
    let headers = [(CONTENT_TYPE, "text/javascript; charset=utf-8"), (CACHE_CONTROL, IMMUTABLE)];
    (headers, include_str!("../vendor/quill/quill.js")).into_response()
}

pub(super) async fn quill_css() -> Response {
    let headers = [(CONTENT_TYPE, "text/css; charset=utf-8"), (CACHE_CONTROL, IMMUTABLE)];
    (headers, include_str!("../vendor/quill/quill.snow.css")).into_response()
}

/// Our glue changes with wxoa, so it is revalidated like `console.js`.
pub(super) async fn editor_js() -> Response {
    let headers = [(CONTENT_TYPE, "text/javascript; charset=utf-8"), (CACHE_CONTROL, "no-cache")];
    (headers, include_str!("../editor.js")).into_response()
}
