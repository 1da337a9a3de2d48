//! JS-SDK: the `jsapi_ticket` (cached until shortly before it expires) and the signature an H5
//! page passes to `wx.config`:
//! `sha1("jsapi_ticket=…&noncestr=…&timestamp=…&url=…")`, the URL without its `#` part.

use super::{CallError, Client, Family};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

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

impl Client {
    pub async fn jsapi_ticket(&self) -> Result<(String, i64), CallError> {
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
        let (ticket, _) = self.jsapi_ticket().await?;
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
