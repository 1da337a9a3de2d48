//! Checkout tokens: how a follower's identity travels to the external H5 checkout.
//!
//! A follower's checkout link is `{checkout.base_url}?token=TOKEN` with
//!
//! ```text
//! TOKEN   = b64(payload) "." b64(HMAC-SHA256(checkout.secret, b64(payload)))
//! payload = {"c": campaign id, "p": "sku", "o": "openid", "exp": unix seconds}   (JSON)
//! b64     = base64url without padding (RFC 4648 §5)
//! ```
//!
//! The MAC covers the *encoded* payload exactly as it appears in the token, so the shop checks
//! it before decoding anything and never has to reproduce our JSON byte for byte. The shop
//! verifies tokens itself (README, "Shop integration", has the snippet); [`verify`] is the same
//! check in Rust. A token is a bearer credential for "this follower may buy this product until
//! `exp`": it names the openid so the shop can tell us who bought (`/api/v1/orders`), and it
//! expires after `checkout.token_ttl_secs` so a forwarded link stops working.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A token longer than this is refused unread (a real one is ~200 characters).
pub const MAX_TOKEN_LEN: usize = 1024;

/// What a checkout token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The campaign the link came from.
    #[serde(rename = "c")]
    pub campaign_id: i64,
    /// The product's SKU.
    #[serde(rename = "p")]
    pub sku: String,
    /// The follower's openid.
    #[serde(rename = "o")]
    pub openid: String,
    /// Unix seconds after which the token is refused.
    pub exp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not `payload.signature`, too long, or a verified payload that is not the claims JSON.
    Malformed,
    /// The signature is not ours (tampered payload or signature, another secret).
    BadSignature,
    /// Signed by us, but `exp` has passed.
    Expired,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenError::Malformed => "malformed token",
            TokenError::BadSignature => "bad token signature",
            TokenError::Expired => "token expired",
        })
    }
}

impl std::error::Error for TokenError {}

fn mac(secret: &str) -> hmac::Hmac<Sha256> {
    <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length")
}

/// A token for `claims` under `secret`.
pub fn sign(secret: &str, claims: &Claims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let mut m = mac(secret);
    m.update(payload.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{payload}.{signature}")
}

/// A token for `openid` to buy `sku` from campaign `campaign_id`, valid `ttl_secs` from `now`
/// (unix seconds).
pub fn issue(secret: &str, campaign_id: i64, sku: &str, openid: &str, now: i64, ttl_secs: u64) -> String {
    let exp = now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX));
    sign(secret, &Claims { campaign_id, sku: sku.to_owned(), openid: openid.to_owned(), exp })
}

/// The claims of `token` if `secret` signed it and it has not expired at `now` (unix seconds).
///
/// The signature is checked (in constant time) before the payload is decoded: nothing an
/// attacker wrote is parsed.
pub fn verify(secret: &str, token: &str, now: i64) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let Some((payload, signature)) = token.split_once('.') else { return Err(TokenError::Malformed) };
    if payload.is_empty() || signature.contains('.') {
        return Err(TokenError::Malformed);
    }
    // A signature that is not base64url of 32 bytes cannot be ours.
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::BadSignature)?;
    let mut m = mac(secret);
    m.update(payload.as_bytes());
    m.verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
    let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    if now >= claims.exp {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// The checkout URL for a token: `base_url?token=…` (or `&token=…` if the base has a query).
pub fn checkout_url(base_url: &str, token: &str) -> String {
    let sep = if base_url.contains('?') { '&' } else { '?' };
    // base64url and '.' need no percent-encoding in a query.
    format!("{base_url}{sep}token={token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "unit-test-checkout-secret-0123456789";
    const NOW: i64 = 1_800_000_000;

    fn claims() -> Claims {
        Claims { campaign_id: 7, sku: "LE-2026".into(), openid: "oFollower123456789".into(), exp: NOW + 60 }
    }

    #[test]
    fn round_trip() {
        let token = sign(SECRET, &claims());
        assert_eq!(verify(SECRET, &token, NOW), Ok(claims()));
        assert!(!token.contains('=') && !token.contains('+') && !token.contains('/'), "base64url, no padding");
        let issued = issue(SECRET, 7, "LE-2026", "oFollower123456789", NOW - 1740, 1800);
        assert_eq!(issued, token, "issue = sign with exp = now + ttl");
    }

    #[test]
    fn expiry_is_exclusive() {
        let token = sign(SECRET, &claims());
        assert!(verify(SECRET, &token, NOW + 59).is_ok());
        assert_eq!(verify(SECRET, &token, NOW + 60), Err(TokenError::Expired));
    }

    #[test]
    fn tampering_with_any_part_is_refused() {
        let token = sign(SECRET, &claims());
        let (payload, signature) = token.split_once('.').unwrap();
        // Each claim changed and re-encoded, with the original signature.
        let mut changed = Vec::new();
        for f in [
            |c: &mut Claims| c.campaign_id = 8,
            |c: &mut Claims| c.sku = "OTHER".into(),
            |c: &mut Claims| c.openid = "oSomeoneElse".into(),
            |c: &mut Claims| c.exp += 86_400,
        ] {
            let mut c = claims();
            f(&mut c);
            changed.push(format!("{}.{signature}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap())));
        }
        for t in &changed {
            assert_eq!(verify(SECRET, t, NOW), Err(TokenError::BadSignature), "{t}");
        }
        // One character of the payload or the signature flipped.
        let flip = |s: &str, i: usize| {
            let mut b = s.as_bytes().to_vec();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).unwrap()
        };
        assert_eq!(verify(SECRET, &format!("{}.{signature}", flip(payload, 3)), NOW), Err(TokenError::BadSignature));
        assert_eq!(verify(SECRET, &format!("{payload}.{}", flip(signature, 5)), NOW), Err(TokenError::BadSignature));
        // Another secret; a signature cut short; a forged "none".
        assert_eq!(verify("another-secret-another-secret-0000", &token, NOW), Err(TokenError::BadSignature));
        assert_eq!(verify(SECRET, &token[..token.len() - 2], NOW), Err(TokenError::BadSignature));
        assert_eq!(verify(SECRET, &format!("{payload}."), NOW), Err(TokenError::BadSignature));
        // Not the shape of a token at all.
        for bad in ["", "nodot", ".sig", "a.b.c", &format!("{token}.x"), &"a".repeat(MAX_TOKEN_LEN + 1)] {
            assert_eq!(verify(SECRET, bad, NOW), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn a_signed_payload_that_is_not_claims_is_malformed() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"c":1}"#);
        let mut m = mac(SECRET);
        m.update(payload.as_bytes());
        let token = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()));
        assert_eq!(verify(SECRET, &token, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn checkout_urls() {
        assert_eq!(checkout_url("https://s.example/co", "a.b"), "https://s.example/co?token=a.b");
        assert_eq!(checkout_url("https://s.example/co?x=1", "a.b"), "https://s.example/co?x=1&token=a.b");
    }
}
