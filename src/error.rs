//! One error type for HTTP handlers, mapped to a status and a short plain-text reason.
//! Internal details are logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub enum AppError {
    Unauthorized(String),
    BadRequest(String),
    /// A dependency (the database) is not answering; WeChat will retry.
    Unavailable(String),
    Internal(String),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            AppError::Unauthorized(why) => (StatusCode::UNAUTHORIZED, why),
            AppError::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            AppError::Unavailable(why) => {
                tracing::error!(error = %why, "dependency unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable".into())
            }
            AppError::Internal(why) => {
                tracing::error!(error = %why, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
            }
        };
        (status, [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
    }
}

impl From<crate::wechat::envelope::Rejection> for AppError {
    fn from(r: crate::wechat::envelope::Rejection) -> Self {
        match r {
            crate::wechat::envelope::Rejection::Unauthorized(why) => AppError::Unauthorized(why.into()),
            crate::wechat::envelope::Rejection::BadRequest(why) => AppError::BadRequest(why),
        }
    }
}
