//! Delivering a member event: `POST crm.webhook_url` with the event's JSON, signed as the
//! brand's systems sign their calls to us (`X-Wxoa-Timestamp`, `X-Wxoa-Signature` =
//! hex HMAC-SHA256 of `"<timestamp>.<body>"` with `crm.secret`), so the receiver checks it the
//! same way. Any 2xx is delivered; anything else, or no answer within `crm.timeout_ms`, is
//! retried by the outbox (the job stays first in its member's queue meanwhile).

use crate::jobs::worker::{JobCtx, SendError, Sent};
use crate::secret::Secret;
use crate::wechat::client::CallError;
use std::sync::Arc;
use std::time::Duration;

pub const TIMESTAMP_HEADER: &str = "x-wxoa-timestamp";
pub const SIGNATURE_HEADER: &str = "x-wxoa-signature";
/// The event's id again, so a receiver can drop a repeat before parsing the body.
pub const EVENT_HEADER: &str = "x-wxoa-event-id";

/// Where and how events go.
pub struct Delivery {
    http: reqwest::Client,
    url: String,
    secret: Secret,
}

impl Delivery {
    pub fn new(url: &str, secret: &Secret, timeout_ms: u64) -> Arc<Delivery> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .connect_timeout(Duration::from_millis(timeout_ms.min(3000)))
            .build()
            .expect("an HTTP client with rustls");
        Arc::new(Delivery { http, url: url.to_owned(), secret: secret.clone() })
    }

    /// Delivers one event (the job's payload is its body, as it will be sent).
    pub async fn send(self: Arc<Self>, ctx: JobCtx, payload: String) -> Sent {
        let id = serde_json::from_str::<serde_json::Value>(&payload)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .ok_or_else(|| SendError::Bad("the event has no id".into()))?;
        let timestamp = ctx.store.clock.now_secs().to_string();
        let signature = crate::secret::signature(self.secret.expose(), &timestamp, payload.as_bytes());
        let answer = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_HEADER, &id)
            .body(payload)
            .send()
            .await
            .map_err(|e| {
                // Without the URL: it may carry the receiver's own credentials.
                let why = if e.is_timeout() { "no answer in time".to_owned() } else { e.without_url().to_string() };
                SendError::Api(CallError::Http(format!("CRM: {why}")))
            })?;
        let status = answer.status();
        if status.is_success() {
            Ok(Some(format!("CRM {}", status.as_u16())))
        } else {
            Err(SendError::Api(CallError::Http(format!("CRM answered {}", status.as_u16()))))
        }
    }
}
