//! JS-SDK: the `jsapi_ticket` (shared by the instances through the database and cached until
//! shortly before it expires, as the access token is) and the signature an H5 page passes to
//! `wx.config`:
//! `sha1("jsapi_ticket=…&noncestr=…&timestamp=…&url=…")`, the URL without its `#` part.

use super::{CallError, Client, Family};
use crate::with_pool;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsConfig {
    #[serde(rename = "appId")]
    pub app_id: String,
    pub timestamp: i64,
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    pub signature: String,
}

/// The `wx.config` signature.
pub fn js_signature(ticket: &str, nonce: &str, timestamp: i64, url: &str) -> String {
    let url = url.split('#').next().unwrap_or(url);
    let plain = format!("jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={url}");
    crate::wechat::signature::hex(&Sha1::digest(plain.as_bytes()))
}

/// Use the ticket until this long before it expires.
const MARGIN_MS: i64 = 5 * 60 * 1000;
/// How long one process may hold the fetch lease.
const LEASE_MS: i64 = 15_000;
/// How long a caller waits for another process's fetch.
const WAIT: Duration = Duration::from_secs(20);

/// The account's `jsapi_ticket` as this process knows it: the last one read, and one fetch at a
/// time.
#[derive(Default)]
pub(super) struct Tickets {
    /// The ticket and when it expires (unix ms).
    cache: std::sync::RwLock<Option<(String, i64)>>,
    /// Held while this process reads or fetches the shared one (single flight).
    flight: tokio::sync::Mutex<()>,
}

impl Tickets {
    fn fresh(&self, now: i64) -> Option<String> {
        let cache = self.cache.read().unwrap();
        cache.as_ref().filter(|(_, expires_at)| expires_at - MARGIN_MS > now).map(|(t, _)| t.clone())
    }
}

impl Client {
    /// The account's `jsapi_ticket`, shared like the access token: WeChat limits how often it may
    /// be fetched, so one process of the deployment (a lease in `jsapi_tickets`) fetches it when
    /// it is within five minutes of expiry, and every other caller reads it from there.
    pub async fn jsapi_ticket(&self) -> Result<String, CallError> {
        let (store, tickets) = (&self.0.store, &self.0.tickets);
        if let Some(t) = tickets.fresh(store.now_ms()) {
            return Ok(t);
        }
        let _flight = tickets.flight.lock().await;
        if let Some(t) = tickets.fresh(store.now_ms()) {
            return Ok(t);
        }
        let db = |e: sqlx::Error| CallError::Store(e.to_string());
        let instance = crate::store::instance_id();
        let started = tokio::time::Instant::now();
        loop {
            let now = store.now_ms();
            let row: Option<(Option<String>, i64)> = with_pool!(store, pool => sqlx::query_as(
                "SELECT ticket, expires_at FROM jsapi_tickets WHERE app_id = $1")
                .bind(self.app_id()).fetch_optional(pool).await)
            .map_err(db)?;
            match row {
                Some((Some(ticket), expires_at)) if expires_at - MARGIN_MS > now => {
                    *tickets.cache.write().unwrap() = Some((ticket.clone(), expires_at));
                    return Ok(ticket);
                }
                Some(_) => {}
                None => {
                    with_pool!(store, pool => sqlx::query(
                        "INSERT INTO jsapi_tickets (app_id, ticket, expires_at, lease_until) VALUES ($1, NULL, 0, 0) \
                         ON CONFLICT (app_id) DO NOTHING")
                        .bind(self.app_id()).execute(pool).await.map(|_| ()))
                    .map_err(db)?;
                }
            }
            // A lease of our own is stale: we hold the single-flight lock, so it was left by a
            // fetch that was cancelled mid-way.
            let leased = with_pool!(store, pool => sqlx::query(
                "UPDATE jsapi_tickets SET lease_by = $2, lease_until = $3 WHERE app_id = $1 AND (lease_until < $4 OR lease_by = $2)")
                .bind(self.app_id()).bind(&instance).bind(now + LEASE_MS).bind(now)
                .execute(pool).await.map(|r| r.rows_affected() == 1))
            .map_err(db)?;
            if leased {
                let fetched = self.fetch_jsapi_ticket().await;
                let (ticket, expires_at) = match fetched {
                    Ok((ticket, expires_in)) => (ticket, store.now_ms() + expires_in * 1000),
                    Err(e) => {
                        let _ = with_pool!(store, pool => sqlx::query(
                            "UPDATE jsapi_tickets SET lease_until = 0 WHERE app_id = $1 AND lease_by = $2")
                            .bind(self.app_id()).bind(&instance).execute(pool).await.map(|_| ()));
                        return Err(e);
                    }
                };
                with_pool!(store, pool => sqlx::query(
                    "UPDATE jsapi_tickets SET ticket = $2, expires_at = $3, lease_until = 0 WHERE app_id = $1")
                    .bind(self.app_id()).bind(&ticket).bind(expires_at).execute(pool).await.map(|_| ()))
                .map_err(db)?;
                *tickets.cache.write().unwrap() = Some((ticket.clone(), expires_at));
                return Ok(ticket);
            }
            if started.elapsed() > WAIT {
                return Err(CallError::Http("timed out waiting for another instance to fetch the jsapi_ticket".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `ticket/getticket?type=jsapi`: a new ticket and its lifetime in seconds.
    async fn fetch_jsapi_ticket(&self) -> Result<(String, i64), CallError> {
        #[derive(Deserialize)]
        struct Answer {
            ticket: String,
            expires_in: i64,
        }
        self.get::<Answer>(Family::Jssdk, "/cgi-bin/ticket/getticket", &[("type", "jsapi")])
            .await
            .map(|a| (a.ticket, a.expires_in))
    }

    /// The `wx.config` parameters for a page at `url`.
    pub async fn js_config(&self, url: &str) -> Result<JsConfig, CallError> {
        let ticket = self.jsapi_ticket().await?;
        let nonce = crate::wechat::envelope::random_nonce();
        let timestamp = self.tokens().clock().now_secs();
        Ok(JsConfig {
            app_id: self.app_id().to_owned(),
            timestamp,
            signature: js_signature(&ticket, &nonce, timestamp, url),
            nonce_str: nonce,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn documented_example() {
        // The example from WeChat's JS-SDK documentation (appendix 1).
        let sig = super::js_signature(
            "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
            "Wm3WZYTPz0wzccnW",
            1414587457,
            "http://mp.weixin.qq.com?params=value#section",
        );
        assert_eq!(sig, "0f9de62fce790f9a083d5c99e95740ceb90c27ed");
    }
}
