//! `POST /admin/images`: an image for an article's body, uploaded to WeChat
//! (`media/uploadimg`) for the editor's image button, which inserts the URL it answers.
//!
//! The body is the image itself (JPEG or PNG, at most 1 MB, as WeChat takes them), the session's
//! form token in `X-Form-Token` (what the console's forms carry as a field; a page elsewhere can
//! neither read it nor send the header). The answer is JSON: `{"url": …}`, or `{"error": …}`
//! with 401 (signed out), 403 (no or a foreign form token), 413 (too large), 415 (not a JPEG or
//! PNG), 502 (WeChat refused or was unreachable) or 503 (the session could not be checked). A
//! refused file reaches nobody.

use super::{Error, signed_in};
use crate::config::Role;
use crate::state::AppState;
use crate::wechat::client::media::{ArticleImage, MAX_ARTICLE_IMAGE_BYTES};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The route's body limit: WeChat's own (1 MB), so a larger file is read no further and is
/// refused with [`TOO_LARGE`].
pub(super) fn limit() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(MAX_ARTICLE_IMAGE_BYTES)
}

pub(super) const TOO_LARGE: &str = "图片不能超过 1 MB · An article image is at most 1 MB";
pub(super) const NOT_AN_IMAGE: &str = "只能上传 JPEG 或 PNG 图片 · An article image must be a JPEG or PNG";

fn refuse(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

pub(super) async fn upload(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let token = headers.get("x-form-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    let s = match signed_in(&app, &headers, Some(token)).await {
        Ok(s) => s,
        Err(Error::SignIn) => return refuse(StatusCode::UNAUTHORIZED, "请重新登录 · Please sign in again"),
        Err(Error::ForeignForm) => return refuse(StatusCode::FORBIDDEN, "invalid form; reload the page"),
        Err(e) => {
            // The session could not be checked: nobody is let in, and nobody is told to sign in.
            tracing::error!(error = ?e, "console: could not check the session for an image upload");
            let why = "系统出错，请稍后再试 · Something went wrong on our side; please try again";
            return refuse(StatusCode::SERVICE_UNAVAILABLE, why);
        }
    };
    if !s.caller.role.allows(Role::Marketing) {
        return refuse(StatusCode::FORBIDDEN, "the marketing role uploads article images");
    }
    let bytes = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE);
        }
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let kind = match ArticleImage::check(&bytes) {
        Ok(kind) => kind,
        Err(_) if bytes.is_empty() => return refuse(StatusCode::BAD_REQUEST, "没有图片 · No image was sent"),
        Err(_) => return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, NOT_AN_IMAGE),
    };
    let size = bytes.len();
    match app.client.media_upload_image("article", bytes.to_vec()).await {
        Ok(url) => {
            tracing::info!(by = %s.caller.name, bytes = size, kind = kind.mime(), "console: article image uploaded");
            (StatusCode::OK, Json(json!({ "url": shown_url(&url, &app.config.wechat.image_base) }))).into_response()
        }
        Err(e) => {
            tracing::warn!(by = %s.caller.name, error = %e, "console: article image upload failed");
            let status = match e.errcode() {
                Some(40006) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE),
                Some(40005) => return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, NOT_AN_IMAGE),
                _ => StatusCode::BAD_GATEWAY,
            };
            refuse(status, &format!("微信未接受图片 · WeChat did not take the image: {e}"))
        }
    }
}

/// WeChat answers `http://mmbiz.qpic.cn/…`; the same image is served over https, which is what
/// the console's pages may show (their CSP takes https images only) and what WeChat's own
/// editor writes into articles. `wechat.image_base` names that host (in `dev`, the process
/// itself, which serves what the fake was sent).
fn shown_url(url: &str, image_base: &str) -> String {
    match url.strip_prefix("http://mmbiz.qpic.cn/") {
        Some(rest) => format!("{}/{rest}", image_base.trim_end_matches('/')),
        None => url.to_owned(),
    }
}
