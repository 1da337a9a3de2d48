//! HTTP: each module owns its `router()`; this one stacks them and adds the middleware every
//! route shares (body limit, panic catcher, request ids, tracing, a last-resort timeout).

pub mod api;
pub mod health;
pub mod page;
pub mod server;
pub mod webhook;

use crate::state::AppState;
use axum::Router;
use axum::http::{HeaderValue, Request, StatusCode};
use axum::response::IntoResponse;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub fn router(state: AppState) -> Router {
    let max_body = state.config.server.max_body_bytes;
    // The webhook is the hot path and has its own deadline and logging; request ids, spans and a
    // timer per call cost it about a third of its throughput (see README, Performance). `serve`
    // goes further and hands `POST /wechat` to the webhook ahead of this router
    // (`webhook::Dispatch`); the route here serves the handshake and anyone using the router alone.
    let webhook = webhook::router()
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(CatchPanicLayer::custom(|_| (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()));
    use page::{Framing, Renderer};
    let framing = if state.config.h5.framed_by_self { Framing::SameOrigin } else { Framing::Deny };
    let h5_pages = Renderer { pages: state.pages.clone(), framing };
    let console_pages = Renderer { pages: state.admin_pages.clone(), framing: Framing::Deny };
    Router::new()
        .merge(health::router())
        .merge(crate::h5::router(h5_pages.clone()))
        .merge(crate::campaigns::api::router())
        .merge(crate::admin::api::router())
        .merge(crate::admin::console::router(console_pages))
        .merge(crate::shop::router(h5_pages))
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
        .layer(CatchPanicLayer::custom(|_| {
            // No panic message or backtrace leaves the process.
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(Counter::default()))
        .merge(webhook)
        .with_state(state)
}

/// Request ids: a process-unique counter (cheaper than a UUID, and enough to follow one call
/// through the log).
#[derive(Clone, Default)]
struct Counter(std::sync::Arc<AtomicU64>);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&n.to_string()).ok().map(RequestId::new)
    }
}
