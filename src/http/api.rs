//! Extractors of the JSON API (`/api/v1/…`) that refuse bad input as [`ApiError`]s — JSON,
//! where axum's own rejections would be plain text.

use crate::error::ApiError;

/// A JSON body that answers 400 with serde's reason (not axum's 415/422 split) when it is wrong.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

/// A numeric path id (`/…/{id}`); anything else is a JSON 400 (axum's own is plain text).
pub struct Id(pub i64);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Id, ApiError> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        raw.parse()
            .map(Id)
            .map_err(|_| ApiError::BadRequest(format!("{:?} is not an id", raw.chars().take(40).collect::<String>())))
    }
}

/// Query parameters, refused as JSON 400 when they do not parse.
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// A request body, refused as JSON when it is over the route's `DefaultBodyLimit` (413) or cannot
/// be read (400); axum's own rejections are plain text.
pub struct ApiBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<ApiBody, ApiError> {
        axum::body::Bytes::from_request(req, state).await.map(ApiBody).map_err(|e| match e.status() {
            axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::TooLarge("the body is larger than this endpoint takes".into())
            }
            _ => ApiError::BadRequest(e.body_text()),
        })
    }
}

/// A path as an error names it: at most 120 characters of it.
fn clipped(path: &str) -> String {
    path.chars().take(120).collect()
}

/// Whether `uri` is the JSON API's (its answers, errors included, are JSON).
fn is_api(uri: &axum::http::Uri) -> bool {
    uri.path().starts_with("/api/")
}

/// No route has this path: under `/api/` a JSON 404 like every other API answer; elsewhere a
/// bare 404 (a browser's or a scanner's guess).
pub async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    if is_api(&uri) {
        ApiError::NotFound(format!("no endpoint {}", clipped(uri.path()))).into_response()
    } else {
        axum::http::StatusCode::NOT_FOUND.into_response()
    }
}

/// The path has routes but not for this method: 405 (axum adds the `Allow` header), JSON under
/// `/api/`.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    if is_api(&uri) {
        let message = format!("{method} is not allowed on {}", clipped(uri.path()));
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
    } else {
        status.into_response()
    }
}
