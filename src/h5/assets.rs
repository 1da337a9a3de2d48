//! Images wxoa ships for followers' chats, compiled into the binary so that a fresh deployment
//! serves them from any working directory: the balance card's cover
//! ([`crate::bot::handlers::BALANCE_COVER_PATH`]). WeChat fetches a news card's `PicUrl` itself
//! and wants a JPG or PNG; what it and phones cache may stay cached for a month.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::response::IntoResponse;

/// 900×383 (a news cover's 2.35:1), made by `scripts/balance-cover.py`.
const BALANCE_COVER: &[u8] = include_bytes!("static/balance-cover.png");

/// `GET /h5/static/balance-cover.png`.
pub async fn balance_cover() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "image/png"), (CACHE_CONTROL, "public, max-age=2592000"), (X_CONTENT_TYPE_OPTIONS, "nosniff")],
        BALANCE_COVER,
    )
}
