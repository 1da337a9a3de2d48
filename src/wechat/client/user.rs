//! Follower information: one, a batch (up to 100), and the follower list.

use super::{CallError, Client, Family};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// 0: not following (then little else is filled in).
    #[serde(default)]
    pub subscribe: i64,
    pub openid: String,
    #[serde(default)]
    pub language: String,
    #[serde(default)]
    pub subscribe_time: i64,
    #[serde(default)]
    pub unionid: Option<String>,
    #[serde(default)]
    pub remark: String,
    #[serde(default)]
    pub tagid_list: Vec<i64>,
    #[serde(default)]
    pub subscribe_scene: String,
    #[serde(default)]
    pub qr_scene: i64,
    #[serde(default)]
    pub qr_scene_str: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FollowerPage {
    /// All followers (absent in a tag's follower list).
    #[serde(default)]
    pub total: i64,
    pub count: i64,
    #[serde(default)]
    pub data: OpenidList,
    #[serde(default)]
    pub next_openid: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct OpenidList {
    #[serde(default)]
    pub openid: Vec<String>,
}

impl Client {
    pub async fn user_info(&self, openid: &str) -> Result<UserInfo, CallError> {
        self.get(Family::User, "/cgi-bin/user/info", &[("openid", openid), ("lang", "zh_CN")]).await
    }

    /// Up to 100 followers at once.
    pub async fn user_info_batch(&self, openids: &[&str]) -> Result<Vec<UserInfo>, CallError> {
        if openids.is_empty() || openids.len() > 100 {
            return Err(CallError::Invalid(format!("user_info_batch takes 1 to 100 openids, got {}", openids.len())));
        }
        #[derive(Deserialize)]
        struct Answer {
            user_info_list: Vec<UserInfo>,
        }
        let list: Vec<_> = openids.iter().map(|o| json!({ "openid": o, "lang": "zh_CN" })).collect();
        self.post::<_, Answer>(Family::User, "/cgi-bin/user/info/batchget", &json!({ "user_list": list }))
            .await
            .map(|a| a.user_info_list)
    }

    /// Followers after `next_openid` (empty for the first page), up to 10,000 a page.
    pub async fn user_list(&self, next_openid: &str) -> Result<FollowerPage, CallError> {
        self.get(Family::User, "/cgi-bin/user/get", &[("next_openid", next_openid)]).await
    }
}
