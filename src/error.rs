//! The HTTP error types, one per kind of client, and the mapping of every domain error onto
//! them — in one place, so a domain module never decides an HTTP status.
//!
//! * [`WebhookError`]: what WeChat's calls to `/wechat` are refused with (plain text: 401 bad
//!   signature, 400 bad body, 503 when the answer could not be made durable — WeChat retries).
//! * [`ApiError`]: the JSON API (`/api/v1/…`), `{"error": "…"}` a client can show as it is.
//! * [`PageError`]: the HTML pages (H5 and console): sign in, go elsewhere, a refusal page, or
//!   "try again"; rendered by the page layer (`http::page`, which knows the templates).
//!
//! Domain errors follow one pattern — `Refused(…)` (nothing changed; the reason is for the
//! caller) or `Db(…)`/`Upstream(…)` (a dependency failed) — and map to 4xx and 503 here.
//! Internal details are logged, never sent.

use crate::wechat::client::CallError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

// ---- the webhook ----

#[derive(Debug)]
pub enum WebhookError {
    Unauthorized(String),
    BadRequest(String),
    /// A dependency (the database) is not answering; WeChat will retry.
    Unavailable(String),
    Internal(String),
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            WebhookError::Unauthorized(why) => (StatusCode::UNAUTHORIZED, why),
            WebhookError::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            WebhookError::Unavailable(why) => {
                tracing::error!(error = %why, "dependency unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable".into())
            }
            WebhookError::Internal(why) => {
                tracing::error!(error = %why, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
            }
        };
        (status, [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
    }
}

impl From<crate::wechat::envelope::Rejection> for WebhookError {
    fn from(r: crate::wechat::envelope::Rejection) -> Self {
        match r {
            crate::wechat::envelope::Rejection::Unauthorized(why) => WebhookError::Unauthorized(why.into()),
            crate::wechat::envelope::Rejection::BadRequest(why) => WebhookError::BadRequest(why),
        }
    }
}

// ---- the JSON API ----

#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON, a field out of bounds).
    BadRequest(String),
    /// 401: no credentials, or wrong ones (bad token, bad signature, stale timestamp).
    Unauthorized(String),
    /// 403: known caller, not allowed.
    Forbidden(String),
    NotFound(String),
    /// 409: well-formed but refused by the current state (already sent, status going backwards).
    Conflict(String),
    /// 413: the body is larger than the endpoint takes.
    TooLarge(String),
    /// 422: well-formed but breaks a rule (WeChat's limits, unknown follower).
    Unprocessable(String),
    /// 502: WeChat refused or did not answer a call the request needed.
    BadGateway(String),
    /// 503: switched off in config, or a dependency is down.
    Unavailable(String),
    Internal(String),
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl From<sqlx::Error> for ApiError {
    /// A database that cannot be reached, is locked or was lost is a dependency down (503, the
    /// caller retries); anything else is our fault (500).
    fn from(e: sqlx::Error) -> Self {
        if database_unavailable(&e) {
            tracing::warn!(error = %e, "api: database unavailable");
            ApiError::Unavailable("the database is unavailable; try again".into())
        } else {
            ApiError::Internal(format!("database: {e}"))
        }
    }
}

/// Whether `e` says the database is out of reach rather than that a query was wrong: I/O
/// (a lost SQLite file is reported as such by `Store::begin`), the pool, a SQLite file busy,
/// locked, read-only, failing or not a database, a PostgreSQL connection or server going away.
pub fn database_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLite: BUSY 5, LOCKED 6, READONLY 8, IOERR 10, CORRUPT 11, FULL 13, CANTOPEN 14,
            // NOTADB 26 (extended codes keep the primary one in the low byte). PostgreSQL:
            // class 08 (connection), 53 (resources), 57P (operator intervention).
            let sqlite = code.parse::<i32>().ok().map(|c| c & 0xff);
            matches!(sqlite, Some(5 | 6 | 8 | 10 | 11 | 13 | 14 | 26))
                || code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
        }
        _ => false,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m),
            ApiError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            ApiError::BadGateway(m) => (StatusCode::BAD_GATEWAY, m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".to_owned())
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

impl From<crate::campaigns::recall::RecallError> for ApiError {
    fn from(e: crate::campaigns::recall::RecallError) -> Self {
        use crate::campaigns::recall::RecallError;
        match e {
            RecallError::Refused(r) => crate::campaigns::Error::Refused(r).into(),
            RecallError::Db(e) => e.into(),
            RecallError::WeChat { error: CallError::Store(_), .. } => {
                ApiError::Unavailable("the database is unavailable; try again".into())
            }
            e @ RecallError::WeChat { .. } => ApiError::BadGateway(e.to_string()),
        }
    }
}

impl From<crate::campaigns::Error> for ApiError {
    fn from(e: crate::campaigns::Error) -> Self {
        match e {
            crate::campaigns::Error::Refused(crate::campaigns::Refusal::Invalid(m)) => ApiError::BadRequest(m),
            crate::campaigns::Error::Refused(crate::campaigns::Refusal::Rule(m)) => ApiError::Unprocessable(m),
            crate::campaigns::Error::Refused(crate::campaigns::Refusal::NotFound(m)) => ApiError::NotFound(m),
            crate::campaigns::Error::Refused(crate::campaigns::Refusal::Conflict(m)) => ApiError::Conflict(m),
            crate::campaigns::Error::Db(e) => e.into(),
        }
    }
}

impl From<crate::state::ReloadError> for ApiError {
    /// A reload refused for any reason is a 422 naming it; the files in force stay.
    fn from(e: crate::state::ReloadError) -> Self {
        ApiError::Unprocessable(e.to_string())
    }
}

impl From<crate::audiences::Error> for ApiError {
    fn from(e: crate::audiences::Error) -> ApiError {
        use crate::audiences::Error;
        match e {
            Error::Invalid(why) => ApiError::BadRequest(why),
            Error::Taken(_) => ApiError::Conflict(e.to_string()),
            Error::Db(e) => e.into(),
        }
    }
}

impl From<crate::replies::Error> for ApiError {
    fn from(e: crate::replies::Error) -> ApiError {
        use crate::replies::Error;
        match e {
            Error::Invalid(why) => ApiError::BadRequest(why),
            Error::NotFound(why) => ApiError::NotFound(why),
            Error::Conflict(why) => ApiError::Conflict(why),
            Error::TooMany(why) => ApiError::Unprocessable(why),
            Error::Db(e) => e.into(),
        }
    }
}

impl From<crate::shop::Error> for ApiError {
    fn from(e: crate::shop::Error) -> Self {
        use crate::shop::{Error, Refusal};
        match e {
            Error::Refused(Refusal::Invalid(m)) => ApiError::BadRequest(m),
            Error::Refused(Refusal::Conflict(m)) => ApiError::Conflict(m),
            Error::Refused(Refusal::Rule(m)) => ApiError::Unprocessable(m),
            Error::Db(e) => e.into(),
            Error::Notice(e) => ApiError::internal(e),
        }
    }
}

// ---- pages ----

/// Why a page handler answers something other than its page.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in: to this URL (the sign-in start, or the console's login).
    SignIn(String),
    /// Not signed in, and these `Set-Cookie`s sent on the way (several session cookies came:
    /// none is trusted and every copy is expired).
    SignInAgain { to: String, set_cookies: Vec<String> },
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

/// What a [`PageError`] leaves in its response for the page layer to render (`message.html`
/// with a title and a sentence): errors need no templates, and this module no renderer.
#[derive(Debug, Clone)]
pub struct MessagePage {
    pub title: &'static str,
    pub text: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let message = |status: StatusCode, title: &'static str, text: String| {
            let mut r = status.into_response();
            r.extensions_mut().insert(MessagePage { title, text });
            r
        };
        match self {
            PageError::SignIn(to) | PageError::Redirect(to) => {
                (StatusCode::SEE_OTHER, [(axum::http::header::LOCATION, to)]).into_response()
            }
            PageError::SignInAgain { to, set_cookies } => {
                let mut r = (StatusCode::SEE_OTHER, [(axum::http::header::LOCATION, to)]).into_response();
                for c in set_cookies {
                    if let Ok(v) = axum::http::HeaderValue::from_str(&c) {
                        r.headers_mut().append(axum::http::header::SET_COOKIE, v);
                    }
                }
                r
            }
            PageError::Refused { status, title, text } => message(status, title, text),
            PageError::Unavailable(why) => {
                tracing::error!(error = %why, "page: database or API failure");
                message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "请稍后再试 / Please try again",
                    "系统繁忙，请稍后再试。Something went wrong on our side. Please try again in a moment.".into(),
                )
            }
        }
    }
}

/// The status a members refusal deserves (the page showing it inline uses it too).
pub fn members_status(r: &crate::members::Refusal) -> StatusCode {
    use crate::members::Refusal::*;
    match r {
        LockedOut { .. } => StatusCode::TOO_MANY_REQUESTS,
        AlreadyBound | CardTaken | AlreadyMember | PhoneTaken | SoldOut | NotEnoughPoints { .. } => {
            StatusCode::CONFLICT
        }
        NoSuchItem | NotBound => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<crate::members::Error> for PageError {
    fn from(e: crate::members::Error) -> Self {
        match e {
            crate::members::Error::Refused(r) => {
                PageError::refused(members_status(&r), "无法完成 / Not possible", r.to_string())
            }
            crate::members::Error::Db(e) => e.into(),
        }
    }
}

/// The status a bookings refusal deserves.
pub fn bookings_status(r: &crate::bookings::Refusal) -> StatusCode {
    use crate::bookings::Refusal;
    match r {
        Refusal::NoSuchAdvisor | Refusal::NoSuchBooking => StatusCode::NOT_FOUND,
        Refusal::NotASlot => StatusCode::BAD_REQUEST,
        Refusal::Taken | Refusal::TooMany(_) => StatusCode::CONFLICT,
    }
}

impl From<crate::bookings::Error> for PageError {
    fn from(e: crate::bookings::Error) -> Self {
        match e {
            crate::bookings::Error::Refused(r) => {
                PageError::refused(bookings_status(&r), "无法预约 / Not possible", r.to_string())
            }
            crate::bookings::Error::Db(e) => e.into(),
        }
    }
}
