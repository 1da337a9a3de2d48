//! `[campaigns]`, `[checkout]`, `[shop]` and `[h5]`: pushes, the shop's checkout and the H5 pages.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CampaignsConfig {
    /// Run the push scheduler inside `serve`.
    pub enabled: bool,
    /// A push found overdue by at most this much (an instance was down at its time) still fires;
    /// an older one is marked `missed`.
    pub grace_secs: u64,
    /// How often the scheduler looks for pushes another instance scheduled.
    pub poll_ms: u64,
    /// A run left `sending` this long (its instance died) is taken over by another instance.
    pub lease_secs: u64,
    /// Time zone of schedules given without one (China is UTC+8).
    pub time_zone: String,
    /// Test followers a preview goes to when none are named.
    pub test_openids: Vec<String>,
    /// Service accounts reach each follower at most this many times a calendar month.
    pub monthly_pushes_per_follower: u32,
    /// WeChat takes at most this many mass-send calls a minute.
    pub mass_calls_per_minute: u32,
}

impl Default for CampaignsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            grace_secs: 900,
            poll_ms: 500,
            lease_secs: 60,
            time_zone: "Asia/Shanghai".into(),
            test_openids: Vec::new(),
            monthly_pushes_per_follower: 4,
            mass_calls_per_minute: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckoutConfig {
    /// The external H5 checkout; followers land on `base_url?token=…`.
    pub base_url: String,
    /// Shared with the shop: signs checkout tokens (HMAC-SHA256); at least 32 characters.
    pub secret: Secret,
    /// How long a checkout link stays valid.
    pub token_ttl_secs: u64,
}

impl Default for CheckoutConfig {
    fn default() -> Self {
        Self { base_url: "https://shop.example.com/checkout".into(), secret: Secret::default(), token_ttl_secs: 1800 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShopConfig {
    /// The shop signs its calls to `/api/v1/stock` and `/api/v1/orders` with this (HMAC-SHA256);
    /// at least 32 characters.
    pub secret: Secret,
    /// A call whose timestamp is further than this from our clock is refused as a replay.
    pub max_skew_secs: u64,
}

impl Default for ShopConfig {
    fn default() -> Self {
        Self { secret: Secret::default(), max_skew_secs: 300 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct H5Config {
    /// Where followers reach this server (links in replies, the OAuth redirect).
    pub public_url: String,
    /// Signs session cookies and form tokens; at least 32 characters.
    pub session_secret: Secret,
    /// Page templates (`*.html`).
    pub pages: PathBuf,
    pub session_ttl_secs: u64,
    /// WeChat's OAuth authorize page (the fake's for development).
    pub oauth_base: String,
    /// Upcoming advisor bookings one member may hold at once.
    pub max_open_bookings: u32,
    /// Whether this site may frame the pages (`wxoa dev` sets it for the simulator; never read
    /// from the file).
    #[serde(skip)]
    pub framed_by_self: bool,
}

impl Default for H5Config {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".into(),
            session_secret: Secret::default(),
            pages: "templates/pages".into(),
            session_ttl_secs: 7 * 24 * 3600,
            oauth_base: "https://open.weixin.qq.com".into(),
            max_open_bookings: 3,
            framed_by_self: false,
        }
    }
}
