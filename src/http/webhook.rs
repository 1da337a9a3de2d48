//! `/wechat`: the endpoint WeChat calls.
//!
//! `GET` is the handshake WeChat does when the URL is configured: echo `echostr`, but only
//! after the signature verifies. `POST` carries every message and event:
//! verify → decrypt → parse → bot (dedup, route, act, record) → seal the reply.

use crate::error::WebhookError;
use crate::state::AppState;
use crate::store::messages::Outcome;
use crate::wechat::envelope::SignedQuery;
use crate::wechat::message::Message;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

pub fn router() -> Router<AppState> {
    Router::new().route("/wechat", get(handshake).post(receive))
}

async fn handshake(State(app): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, WebhookError> {
    let q = SignedQuery::parse(query.as_deref().unwrap_or(""));
    let echo = app.envelope.handshake(&q, app.clock.now_secs()).inspect_err(reject_metric)?;
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], echo.to_owned()).into_response())
}

async fn receive(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, WebhookError> {
    answer(&app, query.as_deref().unwrap_or(""), body).await
}

async fn answer(app: &AppState, query: &str, body: Bytes) -> Result<Response, WebhookError> {
    let received = Instant::now();
    let q = SignedQuery::parse(query);
    let now = app.clock.now_secs();
    let opened = app.envelope.open(&q, &body, now).inspect_err(reject_metric)?;
    let msg = Message::parse(&opened.xml).map_err(|e| {
        metrics::counter!("wxoa_webhook_rejected_total", "reason" => "parse").increment(1);
        WebhookError::BadRequest(e.to_string())
    })?;
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("openid", crate::mask(&msg.openid));
        if let Some(id) = msg.msg_id() {
            span.record("msg_id", id);
        }
    }
    tracing::debug!(msg_type = %msg.msg_type, "message");
    let answer = app
        .bot
        .handle(msg, opened.xml, opened.encrypted, received)
        .await
        .map_err(|e| WebhookError::Unavailable(e.to_string()))?;
    let m = webhook_metrics();
    m.answered(answer.outcome).increment(1);
    m.seconds.record(received.elapsed().as_secs_f64());
    let body = app.envelope.seal(answer.reply_xml.as_deref(), opened.encrypted, now);
    let content_type =
        if answer.reply_xml.is_some() { "application/xml; charset=utf-8" } else { "text/plain; charset=utf-8" };
    Ok(([(CONTENT_TYPE, content_type)], body).into_response())
}

fn reject_metric(r: &crate::wechat::envelope::Rejection) {
    let reason = match r {
        crate::wechat::envelope::Rejection::Unauthorized(_) => "signature",
        crate::wechat::envelope::Rejection::BadRequest(_) => "body",
    };
    tracing::debug!(reason = %r, "webhook call refused");
    metrics::counter!("wxoa_webhook_rejected_total", "reason" => reason).increment(1);
}

/// Metric handles, registered once: looking a metric up by name and labels on every call costs
/// the hot path more than counting.
struct WebhookMetrics {
    answered: [metrics::Counter; Outcome::ALL.len()],
    seconds: metrics::Histogram,
}

impl WebhookMetrics {
    fn answered(&self, outcome: Outcome) -> &metrics::Counter {
        &self.answered[outcome as usize]
    }
}

fn webhook_metrics() -> &'static WebhookMetrics {
    static M: std::sync::OnceLock<WebhookMetrics> = std::sync::OnceLock::new();
    M.get_or_init(|| WebhookMetrics {
        answered: Outcome::ALL.map(|o| metrics::counter!("wxoa_webhook_answered_total", "outcome" => o.as_str())),
        seconds: metrics::histogram!("wxoa_webhook_seconds"),
    })
}

/// The service `serve` runs: `POST /wechat` goes straight to the webhook, everything else
/// (including `GET /wechat`) through the router.
///
/// Why: WeChat's calls are nearly all the traffic, and the router's matching, boxed route
/// services, per-route layers and extractors cost the hot path about a sixth of its throughput
/// (README, Performance). The shortcut keeps what those layers did for it: the body limit (413)
/// and a panic caught as a bare 500.
#[derive(Clone)]
pub struct Dispatch {
    state: AppState,
    router: Router,
}

impl Dispatch {
    pub fn new(state: AppState, router: Router) -> Dispatch {
        Dispatch { state, router }
    }
}

type BoxedResponse = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl tower::Service<Request> for Dispatch {
    type Response = Response;
    type Error = Infallible;
    type Future = Answering;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Answering {
        if req.method() == Method::POST && req.uri().path() == "/wechat" {
            let state = self.state.clone();
            return Answering(Box::pin(async move { Ok(direct(state, req).await) }));
        }
        let mut router = self.router.clone();
        Answering(Box::pin(async move { tower::Service::call(&mut router, req).await }))
    }
}

async fn direct(app: AppState, req: Request) -> Response {
    use tracing::Instrument;
    let id = super::request_id::take_or_make(req.headers());
    // The message's MsgId and masked openid are recorded once it is opened (see `answer`).
    let span = tracing::info_span!(
        "webhook",
        request_id = id.to_str().unwrap_or(""),
        msg_id = tracing::field::Empty,
        openid = tracing::field::Empty
    );
    let mut response = receive_direct(app, req).instrument(span).await;
    response.headers_mut().insert(super::request_id::HEADER, id);
    response
}

async fn receive_direct(app: AppState, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let limit = app.config.server.max_body_bytes;
    let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    // The body within the same time as the head: a client trickling it holds nothing for long.
    // Almost always the body came with the head: then no timer is set (arming and cancelling
    // one per call is hot-path work for nothing); only a body still on its way is timed.
    let in_time = std::time::Duration::from_secs(app.config.server.header_read_timeout_secs);
    let mut reading = std::pin::pin!(read_body(body, limit));
    let read = match std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await {
        Poll::Ready(read) => Ok(read),
        Poll::Pending => tokio::time::timeout(in_time, reading).await,
    };
    let body = match read {
        Ok(Ok(body)) => body,
        Ok(Err(response)) => return response,
        Err(_) => {
            let headers = [(CONTENT_TYPE, "text/plain; charset=utf-8")];
            return (StatusCode::REQUEST_TIMEOUT, headers, "request body too slow").into_response();
        }
    };
    answer(&app, parts.uri.query().unwrap_or(""), body).await.into_response()
}

fn too_large() -> Response {
    (StatusCode::PAYLOAD_TOO_LARGE, [(CONTENT_TYPE, "text/plain; charset=utf-8")], "body too large").into_response()
}

/// The whole body, at most `limit` bytes (a chunked body is not declared up front). One frame,
/// the usual case, is kept without a copy.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    use http_body::Body as _;
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|_| (StatusCode::BAD_REQUEST, "unreadable body").into_response())?;
        let Ok(data) = frame.into_data() else { continue };
        let so_far = first.as_ref().map_or(0, Bytes::len) + joined.len();
        if so_far + data.len() > limit {
            return Err(too_large());
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            Some(earlier) => {
                joined.extend_from_slice(&earlier);
                joined.extend_from_slice(&data);
            }
            None => joined.extend_from_slice(&data),
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

/// A response on its way; a panic while producing it becomes a bare 500, with no message or
/// backtrace leaving the process.
pub struct Answering(BoxedResponse);

impl Future for Answering {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll,
            Err(_) => Poll::Ready(Ok((StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response())),
        }
    }
}
