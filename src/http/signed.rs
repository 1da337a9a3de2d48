//! Signed calls from the brand's systems (the shop, the CRM, the stores' tills):
//!
//! ```text
//! X-Wxoa-Timestamp: 1795000000                      (unix seconds, when the caller sent it)
//! X-Wxoa-Signature: hex(HMAC-SHA256(secret, "1795000000" + "." + raw body))   (64 hex digits)
//! ```
//!
//! For a GET the path (with its query) takes the place of the body. The MAC covers the
//! timestamp, so a captured call cannot be re-dated, and the raw bytes, so the JSON is
//! authenticated before it is parsed. A timestamp further than the caller's `max_skew_secs`
//! from our clock (either way) is refused as a replay: a captured call is useless once the
//! window passes, and within it every signed endpoint is idempotent for the same content.
//!
//! Checks, in order: the integration is on (its secret set, else 503), the body is within the
//! endpoint's limit (413), both headers are present and well formed, the timestamp is in the
//! window and the signature matches in constant time (401).

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};

pub const TIMESTAMP_HEADER: &str = "x-wxoa-timestamp";
pub const SIGNATURE_HEADER: &str = "x-wxoa-signature";

/// The `X-Wxoa-Signature` value for a call (what the caller computes; tests use it too).
pub use crate::secret::signature;

/// A JSON POST of `body` to `url`, signed with `secret` at `timestamp` as the brand's systems
/// sign their calls (the development shop and till send theirs so).
pub fn signed_post(
    http: &reqwest::Client,
    url: String,
    secret: &str,
    timestamp: &str,
    body: String,
) -> reqwest::RequestBuilder {
    let signature = signature(secret, timestamp, body.as_bytes());
    http.post(url)
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, timestamp)
        .header(SIGNATURE_HEADER, signature)
        .body(body)
}

/// 32 bytes from 64 hex digits.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..32).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()).collect()
}

/// Checks the two headers against `body` at `now` (unix seconds).
pub fn verify(
    secret: &str,
    max_skew_secs: u64,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), ApiError> {
    let unauthorized = |why: &str| Err(ApiError::Unauthorized(why.to_owned()));
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return unauthorized("X-Wxoa-Timestamp and X-Wxoa-Signature are required");
    };
    let Some(sent) = timestamp.parse::<i64>().ok().filter(|_| (1..=12).contains(&timestamp.len())) else {
        return unauthorized("X-Wxoa-Timestamp must be unix seconds");
    };
    if !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return unauthorized("X-Wxoa-Timestamp must be unix seconds");
    }
    if now.abs_diff(sent) > max_skew_secs {
        return unauthorized("X-Wxoa-Timestamp is outside the allowed window (replay refused)");
    }
    let Some(signature) = unhex(signature) else { return unauthorized("X-Wxoa-Signature must be 64 hex digits") };
    if !crate::secret::signature_matches(secret, timestamp, body, &signature) {
        return unauthorized("bad signature");
    }
    Ok(())
}

/// Who signs, and how far their clock may be from ours.
pub struct Signer<'a> {
    /// What the integration is called in refusals ("the shop integration is switched off").
    pub name: &'a str,
    pub secret: &'a str,
    pub max_skew_secs: u64,
    /// Our time (unix seconds) on the app's clock, which the caller's timestamp is held to.
    pub now: i64,
}

/// The body of a signed call, once it is known to come from `signer`; at most `max_body` bytes.
pub fn authenticate(
    signer: &Signer,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    max_body: usize,
) -> Result<Bytes, ApiError> {
    if signer.secret.is_empty() {
        return Err(ApiError::Unavailable(format!("the {} integration is switched off", signer.name)));
    }
    let too_large = || ApiError::TooLarge(format!("the body is larger than {max_body} bytes"));
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        _ => ApiError::BadRequest(e.body_text()),
    })?;
    if body.len() > max_body {
        return Err(too_large());
    }
    check(signer, headers, &body)?;
    Ok(body)
}

/// A signed GET: the signature covers `"<timestamp>.<path and query>"`.
pub fn authenticate_get(signer: &Signer, headers: &HeaderMap, path_and_query: &str) -> Result<(), ApiError> {
    if signer.secret.is_empty() {
        return Err(ApiError::Unavailable(format!("the {} integration is switched off", signer.name)));
    }
    check(signer, headers, path_and_query.as_bytes())
}

fn check(signer: &Signer, headers: &HeaderMap, signed: &[u8]) -> Result<(), ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    verify(signer.secret, signer.max_skew_secs, header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER), signed, signer.now)
}

/// The call's `X-Wxoa-Timestamp` (unix seconds), once [`authenticate`] accepted it.
pub fn timestamp(headers: &HeaderMap) -> i64 {
    headers.get(TIMESTAMP_HEADER).and_then(|v| v.to_str().ok()).and_then(|t| t.parse().ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "unit-test-shop-secret-0123456789abcdef";
    const NOW: i64 = 1_800_000_000;

    fn status(r: Result<(), ApiError>) -> Option<String> {
        match r {
            Ok(()) => None,
            Err(ApiError::Unauthorized(m)) => Some(m),
            Err(e) => panic!("not a 401: {e:?}"),
        }
    }

    /// Timestamp header, signature header, body, what the refusal says.
    type Case<'a> = (Option<&'a str>, Option<String>, &'a [u8], &'a str);

    #[test]
    fn signed_calls_pass_and_everything_else_is_401() {
        let body = br#"{"sku":"A","stock":3}"#;
        let ts = NOW.to_string();
        let sig = signature(SECRET, &ts, body);
        assert_eq!(sig.len(), 64);
        assert_eq!(status(verify(SECRET, 300, Some(&ts), Some(&sig), body, NOW)), None);
        assert_eq!(status(verify(SECRET, 300, Some(&ts), Some(&sig.to_uppercase()), body, NOW + 300)), None);
        let old = (NOW - 301).to_string();
        let future = (NOW + 301).to_string();
        let cases: Vec<Case> = vec![
            (None, Some(sig.clone()), body, "required"),
            (Some(&ts), None, body, "required"),
            (Some(&ts), Some(sig.clone()), br#"{"sku":"A","stock":4}"#, "bad signature"),
            (Some(&ts), Some(signature("another-secret-another-secret-000", &ts, body)), body, "bad signature"),
            (Some(&old), Some(signature(SECRET, &old, body)), body, "window"),
            (Some(&future), Some(signature(SECRET, &future, body)), body, "window"),
            (Some("+1800000000"), Some(signature(SECRET, "+1800000000", body)), body, "unix seconds"),
            (Some("soon"), Some(sig.clone()), body, "unix seconds"),
            (Some(&ts), Some(sig[..63].to_owned()), body, "64 hex"),
            (Some(&ts), Some(format!("+{}", &sig[1..])), body, "64 hex"),
        ];
        for (ts, sig, body, why) in cases {
            let got = status(verify(SECRET, 300, ts, sig.as_deref(), body, NOW));
            assert!(got.as_deref().is_some_and(|m| m.contains(why)), "{ts:?} {sig:?}: {got:?}");
        }
    }
}
