//! Request ids: every request — WeChat's `POST /wechat` included — carries one in its log span
//! and in the `X-Request-Id` response header, so an operator can follow one call through the
//! log and a caller can quote it.
//!
//! A caller's own `X-Request-Id` is kept when it is a plausible id (1 to 64 letters, digits and
//! `-_.:`), so a load balancer's id follows the call in; anything else is replaced rather than
//! written into the log. A made id is this process's random prefix and a counter: unique across
//! instances behind one balancer, and cheaper than a UUID on the webhook's hot path.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Instrument;

/// `X-Request-Id`.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest caller-given id kept.
const MAX_LEN: usize = 64;

/// The caller's id if it is a plausible one, else a new one.
pub fn take_or_make(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&HEADER) {
        Some(v) if plausible(v.as_bytes()) => v.clone(),
        _ => make(),
    }
}

fn plausible(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// A new id: `{process prefix}-{counter}`.
pub fn make() -> HeaderValue {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| format!("{:08x}", rand::random::<u32>()));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("{prefix}-{n}")).expect("hex and digits are a header value")
}

/// The routers' middleware: the request's id taken or made, a span around the whole call naming
/// its method, the route it matched (`/api/v1/members/{key}`, not the key) and the id — never
/// the URI, whose path and query can carry an openid, a card number or an OAuth `code` and
/// `state` — and the id echoed in the response.
pub async fn traced(mut req: Request, next: Next) -> Response {
    let id = take_or_make(req.headers());
    req.headers_mut().insert(HEADER, id.clone());
    let route = req.extensions().get::<MatchedPath>().map_or("(unrouted)", |m| m.as_str());
    let span = tracing::info_span!("request", method = %req.method(), route, request_id = id.to_str().unwrap_or(""));
    let started = std::time::Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64, "answered")
    });
    response.headers_mut().insert(HEADER, id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_plausible_ids_and_replaces_the_rest() {
        let mut h = HeaderMap::new();
        h.insert(&HEADER, HeaderValue::from_static("lb-7f3a.42:1"));
        assert_eq!(take_or_make(&h), "lb-7f3a.42:1");
        for bad in ["", "has space", "quote\"", &"x".repeat(65)] {
            h.insert(&HEADER, HeaderValue::from_str(bad).unwrap());
            let made = take_or_make(&h);
            assert_ne!(made, bad);
            assert!(plausible(made.as_bytes()), "{made:?}");
        }
        assert_ne!(make(), make());
    }
}
