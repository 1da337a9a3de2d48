//! `/healthz` (the process answers), `/readyz` (the database is ours and takes writes) and `/metrics`
//! (Prometheus text format).

use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
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
