//! The access token, shared by every instance through the database.
//!
//! WeChat issues one access token per account at a time (valid 7,200 s); two instances that each
//! fetched their own would keep invalidating each other. So the token lives in the
//! `access_tokens` table. A caller uses the cached token until five minutes before it expires;
//! then one caller per process (single flight) reads the table, and if the token there is stale,
//! one process across all of them (a lease row) fetches a new one while the others wait for it.
//!
//! `stable_token` (the default, `wechat.token_api = "stable"`) returns the same token until it
//! is close to expiry, so a refresh after WeChat reported the token invalid asks it to
//! `force_refresh`. `token` (`classic`) always issues a new one.

use super::{CallError, decode};
use crate::store::Store;
use crate::with_pool;
use std::time::Duration;

/// Refresh this long before the token expires.
const MARGIN_MS: i64 = 5 * 60 * 1000;
/// How long one process may hold the refresh lease.
const LEASE_MS: i64 = 15_000;
/// How long a caller waits for another process's refresh.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenApi {
    /// `POST /cgi-bin/stable_token`
    Stable,
    /// `GET /cgi-bin/token`
    Classic,
}

#[derive(Debug, Clone)]
struct Cached {
    token: String,
    expires_at: i64,
}

pub struct TokenManager {
    store: Store,
    http: reqwest::Client,
    base: String,
    app_id: String,
    secret: crate::secret::Secret,
    api: TokenApi,
    instance: String,
    cache: std::sync::RwLock<Option<Cached>>,
    flight: tokio::sync::Mutex<()>,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: i64,
}

impl TokenManager {
    pub fn new(store: Store, http: reqwest::Client, base: &str, account: &super::Account) -> TokenManager {
        TokenManager {
            store,
            http,
            base: base.to_owned(),
            app_id: account.app_id.clone(),
            secret: account.app_secret.clone(),
            api: account.token_api,
            instance: crate::store::instance_id(),
            cache: std::sync::RwLock::new(None),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    /// The clock tokens expire by (the store's).
    pub(super) fn clock(&self) -> &crate::clock::Clock {
        &self.store.clock
    }

    fn cached(&self) -> Option<String> {
        let cache = self.cache.read().unwrap();
        cache.as_ref().filter(|c| c.expires_at - MARGIN_MS > self.store.now_ms()).map(|c| c.token.clone())
    }

    /// A valid access token.
    pub async fn get(&self) -> Result<String, CallError> {
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        let _flight = self.flight.lock().await;
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        let db = |e: sqlx::Error| CallError::Store(e.to_string());
        let started = tokio::time::Instant::now();
        loop {
            let now = self.store.now_ms();
            type Row = (Option<String>, i64, i64, bool);
            let row: Option<Row> = with_pool!(&self.store, pool => sqlx::query_as(
                "SELECT token, expires_at, lease_until, force_refresh FROM access_tokens WHERE app_id = $1")
                .bind(&self.app_id).fetch_optional(pool).await)
            .map_err(db)?;
            let force = match &row {
                Some((Some(token), expires_at, _, _)) if expires_at - MARGIN_MS > now => {
                    *self.cache.write().unwrap() = Some(Cached { token: token.clone(), expires_at: *expires_at });
                    return Ok(token.clone());
                }
                Some((_, _, _, force)) => *force,
                None => {
                    with_pool!(&self.store, pool => sqlx::query(
                        "INSERT INTO access_tokens (app_id, token, expires_at, lease_until, force_refresh) \
                         VALUES ($1, NULL, 0, 0, $2) ON CONFLICT (app_id) DO NOTHING")
                        .bind(&self.app_id).bind(false).execute(pool).await.map(|_| ()))
                    .map_err(db)?;
                    false
                }
            };
            // Take the lease, or wait for whoever has it. A lease of our own is stale: we hold the
            // single-flight lock, so it was left by a refresh that was cancelled mid-way.
            let leased = with_pool!(&self.store, pool => sqlx::query(
                "UPDATE access_tokens SET lease_by = $2, lease_until = $3 WHERE app_id = $1 AND (lease_until < $4 OR lease_by = $2)")
                .bind(&self.app_id).bind(&self.instance).bind(now + LEASE_MS).bind(now)
                .execute(pool).await.map(|r| r.rows_affected() == 1))
            .map_err(db)?;
            if leased {
                let fetched = self.fetch(force).await;
                let (token, expires_at) = match fetched {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = with_pool!(&self.store, pool => sqlx::query(
                            "UPDATE access_tokens SET lease_until = 0 WHERE app_id = $1 AND lease_by = $2")
                            .bind(&self.app_id).bind(&self.instance).execute(pool).await.map(|_| ()));
                        return Err(e);
                    }
                };
                with_pool!(&self.store, pool => sqlx::query(
                    "UPDATE access_tokens SET token = $2, expires_at = $3, lease_until = 0, force_refresh = $4 WHERE app_id = $1")
                    .bind(&self.app_id).bind(&token).bind(expires_at).bind(false)
                    .execute(pool).await.map(|_| ())).map_err(db)?;
                metrics::counter!("wxoa_access_token_refreshes_total").increment(1);
                *self.cache.write().unwrap() = Some(Cached { token: token.clone(), expires_at });
                return Ok(token);
            }
            if started.elapsed() > WAIT {
                return Err(CallError::Http(
                    "timed out waiting for another instance to refresh the access token".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Expires `token` if it is still the current one (compare-and-expire): of fifty callers that
    /// saw it fail, the first expires it and the rest find it already replaced.
    pub async fn invalidate(&self, token: &str) -> Result<(), CallError> {
        {
            let mut cache = self.cache.write().unwrap();
            if cache.as_ref().is_some_and(|c| c.token == token) {
                *cache = None;
            }
        }
        with_pool!(&self.store, pool => sqlx::query(
            "UPDATE access_tokens SET expires_at = 0, force_refresh = $3 WHERE app_id = $1 AND token = $2")
            .bind(&self.app_id).bind(token).bind(true).execute(pool).await.map(|_| ()))
        .map_err(|e| CallError::Store(e.to_string()))
    }

    async fn fetch(&self, force: bool) -> Result<(String, i64), CallError> {
        let req = match self.api {
            TokenApi::Stable => {
                self.http.post(format!("{}/cgi-bin/stable_token", self.base)).json(&serde_json::json!({
                    "grant_type": "client_credential",
                    "appid": self.app_id,
                    "secret": self.secret.expose(),
                    "force_refresh": force,
                }))
            }
            TokenApi::Classic => self.http.get(format!("{}/cgi-bin/token", self.base)).query(&[
                ("grant_type", "client_credential"),
                ("appid", self.app_id.as_str()),
                ("secret", self.secret.expose()),
            ]),
        };
        let resp = req.send().await.map_err(|e| CallError::Http(e.without_url().to_string()))?;
        let answer: TokenAnswer = decode(resp).await?;
        Ok((answer.access_token, self.store.now_ms() + answer.expires_in * 1000))
    }
}
