//! Web authorisation (OAuth2) for H5 pages: the authorize URL, exchanging the one-time `code`
//! (valid 5 minutes) for the follower's openid server-side, and `sns/userinfo` for
//! `snsapi_userinfo` pages. These calls use the code and a per-user token, not the account's
//! access token.

use super::{CallError, Client, decode};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Silent: the openid only.
    Base,
    /// Asks the follower; adds nickname and avatar.
    UserInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OauthToken {
    pub access_token: String,
    pub expires_in: i64,
    #[serde(default)]
    pub refresh_token: String,
    pub openid: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub unionid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnsUserInfo {
    pub openid: String,
    #[serde(default)]
    pub nickname: String,
    #[serde(default)]
    pub headimgurl: String,
    #[serde(default)]
    pub unionid: Option<String>,
}

/// WeChat's rule for `state`: 1 to 128 letters and digits.
pub fn valid_state(state: &str) -> bool {
    (1..=128).contains(&state.len()) && state.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Client {
    /// `<base>/connect/oauth2/authorize?…#wechat_redirect`, base `https://open.weixin.qq.com`
    /// (or the fake's, in development).
    pub fn oauth_authorize_url(
        &self,
        base: &str,
        redirect_uri: &str,
        scope: Scope,
        state: &str,
    ) -> Result<String, CallError> {
        if !valid_state(state) {
            return Err(CallError::Invalid("OAuth state must be 1 to 128 letters or digits".into()));
        }
        let scope = match scope {
            Scope::Base => "snsapi_base",
            Scope::UserInfo => "snsapi_userinfo",
        };
        let redirect: String = form_urlencoded::byte_serialize(redirect_uri.as_bytes()).collect();
        Ok(format!(
            "{}/connect/oauth2/authorize?appid={}&redirect_uri={redirect}&response_type=code&scope={scope}&state={state}#wechat_redirect",
            base.trim_end_matches('/'),
            self.app_id()
        ))
    }

    /// Exchanges an authorisation code (single use) for the follower's openid and a user token.
    pub async fn oauth_exchange(&self, code: &str, app_secret: &str) -> Result<OauthToken, CallError> {
        let resp = self
            .http()
            .get(format!("{}/sns/oauth2/access_token", self.base()))
            .query(&[
                ("appid", self.app_id()),
                ("secret", app_secret),
                ("code", code),
                ("grant_type", "authorization_code"),
            ])
            .send()
            .await
            .map_err(|e| CallError::Http(e.without_url().to_string()))?;
        decode(resp).await
    }

    pub async fn oauth_userinfo(&self, token: &OauthToken) -> Result<SnsUserInfo, CallError> {
        let resp = self
            .http()
            .get(format!("{}/sns/userinfo", self.base()))
            .query(&[
                ("access_token", token.access_token.as_str()),
                ("openid", token.openid.as_str()),
                ("lang", "zh_CN"),
            ])
            .send()
            .await
            .map_err(|e| CallError::Http(e.without_url().to_string()))?;
        decode(resp).await
    }
}
