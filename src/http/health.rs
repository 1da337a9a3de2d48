//! `/healthz` (the process answers), `/readyz` (the database is ours and takes writes) and `/metrics`
//! (Prometheus text format).
//!
//! The metrics say how busy the account is and how the brand's systems call it, which is not
//! for anyone who reaches the public port: there `/metrics` answers only the bearer of
//! `server.metrics_token` (and is a 404 without one); a scraper on a private network gets them
//! from `server.metrics_listen`, which serves nothing else.

use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_with_token))
}

/// What `server.metrics_listen` serves: the metrics, to whoever reaches that address.
pub fn metrics_router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// A message-log batch in flight longer than this means the database is not taking writes.
const STUCK_MS: i64 = 1000;

/// Ready when the database is the one we opened and commits a write within a second, and the
/// message log's writer is not stuck: a load balancer stops sending WeChat's calls to an
/// instance that could not make them durable.
async fn readyz(State(app): State<AppState>) -> (StatusCode, String) {
    let stuck = app.bot.log().stuck_for_ms();
    if stuck > STUCK_MS {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the message log has waited {stuck} ms to commit"),
        );
    }
    match app.store.probe(std::time::Duration::from_secs(1)).await {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(why) => {
            tracing::warn!(%why, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}"))
        }
    }
}

async fn metrics(State(app): State<AppState>) -> String {
    app.metrics.render()
}

async fn metrics_with_token(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let token = app.config.server.metrics_token.expose();
    if token.is_empty() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let given = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()?.strip_prefix("Bearer "));
    // Compared as digests, so neither the length nor the first wrong byte shows in the time.
    let digest = |t: &str| <sha2::Sha256 as sha2::Digest>::digest(t.as_bytes());
    let ok = given.is_some_and(|g| bool::from(subtle::ConstantTimeEq::ct_eq(&digest(g)[..], &digest(token)[..])));
    if !ok {
        let challenge = [(axum::http::header::WWW_AUTHENTICATE, "Bearer")];
        return (StatusCode::UNAUTHORIZED, challenge, "a metrics token is required").into_response();
    }
    app.metrics.render().into_response()
}
