//! `/wechat`: the endpoint WeChat calls.
//!
//! `GET` is the handshake WeChat does when the URL is configured: echo `echostr`, but only
//! after the signature verifies. `POST` carries every message and event:
//! verify → decrypt → parse → bot (dedup, route, act, record) → seal the reply.

use crate::app::AppState;
use crate::error::AppError;
use crate::wechat::envelope::SignedQuery;
use crate::wechat::message::Message;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::time::Instant;

pub fn router() -> Router<AppState> {
    Router::new().route("/wechat", get(handshake).post(receive))
}

fn unix_now() -> i64 {
    crate::store::now_ms() / 1000
}

async fn handshake(State(app): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, AppError> {
    let q = SignedQuery::parse(query.as_deref().unwrap_or(""));
    let echo = app.envelope.handshake(&q, unix_now()).inspect_err(reject_metric)?;
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], echo.to_owned()).into_response())
}

async fn receive(State(app): State<AppState>, RawQuery(query): RawQuery, body: Bytes) -> Result<Response, AppError> {
    let received = Instant::now();
    let q = SignedQuery::parse(query.as_deref().unwrap_or(""));
    let now = unix_now();
    let opened = app.envelope.open(&q, &body, now).inspect_err(reject_metric)?;
    let msg = Message::parse(&opened.xml).map_err(|e| {
        metrics::counter!("wxoa_webhook_rejected_total", "reason" => "parse").increment(1);
        AppError::BadRequest(e.to_string())
    })?;
    tracing::debug!(openid = %crate::mask(&msg.openid), msg_type = %msg.msg_type, "message");
    let answer = app
        .bot
        .handle(msg, opened.xml, opened.encrypted, received)
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    let m = webhook_metrics();
    m.answered(&answer.outcome).increment(1);
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
    answered: [metrics::Counter; 6],
    seconds: metrics::Histogram,
}

const OUTCOMES: [&str; 6] = ["replied", "nothing", "deferred", "failed", "pending", "other"];

impl WebhookMetrics {
    fn answered(&self, outcome: &str) -> &metrics::Counter {
        let i = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(OUTCOMES.len() - 1);
        &self.answered[i]
    }
}

fn webhook_metrics() -> &'static WebhookMetrics {
    static M: std::sync::OnceLock<WebhookMetrics> = std::sync::OnceLock::new();
    M.get_or_init(|| WebhookMetrics {
        answered: OUTCOMES.map(|o| metrics::counter!("wxoa_webhook_answered_total", "outcome" => o)),
        seconds: metrics::histogram!("wxoa_webhook_seconds"),
    })
}
