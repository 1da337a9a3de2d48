//! `[wechat]`, `[bot]`, `[replies]`, `[followers]` and `[notices]`: the account and how it answers.

use crate::secret::Secret;
use crate::wechat::envelope::Mode;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepliesConfig {
    /// How often each instance checks for a change of the console's replies (and applies it);
    /// 50 to 2000, so a change answers within two seconds everywhere.
    pub poll_ms: u64,
    /// At most this many console replies (every message is matched against each enabled one).
    pub max: usize,
}

impl Default for RepliesConfig {
    fn default() -> Self {
        Self { poll_ms: 1000, max: 200 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FollowersConfig {
    /// How often `serve` reads the message log into the follower directory (subscribes,
    /// unsubscribes, last interaction); at least 50.
    pub catch_up_ms: u64,
}

impl Default for FollowersConfig {
    fn default() -> Self {
        Self { catch_up_ms: 1000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoticesConfig {
    /// Template ids and text templates of the template messages.
    pub file: PathBuf,
    pub templates: PathBuf,
    /// How long before an advisor booking its reminder is sent.
    pub reminder_lead_mins: u64,
}

impl Default for NoticesConfig {
    fn default() -> Self {
        Self { file: "config/notices.toml".into(), templates: "templates/notices".into(), reminder_lead_mins: 120 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WechatConfig {
    pub app_id: String,
    pub app_secret: Secret,
    pub token: Secret,
    pub encoding_aes_key: Secret,
    pub mode: Mode,
    /// How far a request's timestamp may be from our clock; 0 switches the check off.
    pub timestamp_tolerance_secs: u64,
    pub api_base: String,
    /// Where the images WeChat hosts (`http://mmbiz.qpic.cn/…`, from `media/uploadimg`) are
    /// shown from: WeChat's own https host, or in `dev` this process, which serves what the
    /// fake keeps.
    pub image_base: String,
    /// `stable` (`/cgi-bin/stable_token`) or `classic` (`/cgi-bin/token`).
    pub token_api: crate::wechat::client::token::TokenApi,
}

impl WechatConfig {
    /// What the API client needs of it.
    pub fn account(&self) -> crate::wechat::client::Account {
        crate::wechat::client::Account {
            app_id: self.app_id.clone(),
            app_secret: self.app_secret.clone(),
            api_base: self.api_base.clone(),
            token_api: self.token_api,
        }
    }
}

impl Default for WechatConfig {
    fn default() -> Self {
        Self {
            app_id: String::new(),
            app_secret: Secret::default(),
            token: Secret::default(),
            encoding_aes_key: Secret::default(),
            mode: Mode::Safe,
            timestamp_tolerance_secs: 300,
            api_base: "https://api.weixin.qq.com".into(),
            image_base: "https://mmbiz.qpic.cn".into(),
            token_api: crate::wechat::client::token::TokenApi::Stable,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotConfig {
    /// Routing rules.
    pub routes: PathBuf,
    /// Directory of passive-reply templates (`*.j2`).
    pub templates: PathBuf,
    /// A handler that has not answered by then gets `success` sent for it (WeChat waits 5 s).
    pub reply_deadline_ms: u64,
    /// The custom menu (`wxoa menu sync` and the admin API push it).
    pub menu: PathBuf,
    /// A deferred handler's late reply is taken over (the handler run again from the log) if it
    /// has not been delivered this long after the deadline: the process died, or hung.
    pub late_takeover_secs: u64,
    /// The cover of the `balance_card` news card: a JPG or PNG URL; empty is the one wxoa ships,
    /// served at `h5.public_url` + `/h5/static/balance-cover.png`.
    pub balance_cover_url: String,
}

impl Default for BotConfig {
    fn default() -> Self {
        Self {
            routes: "config/routes.toml".into(),
            templates: "templates/replies".into(),
            reply_deadline_ms: 4000,
            menu: "config/menu.toml".into(),
            late_takeover_secs: 60,
            balance_cover_url: String::new(),
        }
    }
}
