//! `/healthz` (the process answers), `/readyz` (the database answers) and `/metrics`
//! (Prometheus text format).

use crate::app::AppState;
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

async fn readyz(State(app): State<AppState>) -> (StatusCode, &'static str) {
    if app.store.ping().await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
    }
}

async fn metrics(State(app): State<AppState>) -> String {
    app.metrics.render()
}
