//! `[loyalty]` (with its `[[loyalty.tiers]]`), `[stores]` and `[crm]`: the loyalty programme.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrmConfig {
    /// The CRM and the stores' tills sign `/api/v1/crm/…` with this, and wxoa signs the events it
    /// delivers with it (HMAC-SHA256); at least 32 characters, or empty to switch the API off.
    pub secret: Secret,
    /// A call whose timestamp is further than this from our clock is refused as a replay.
    pub max_skew_secs: u64,
    /// Where member events are delivered (`POST`); empty: no events are recorded at all.
    pub webhook_url: String,
    /// A delivery not answered within this is a failure, retried later.
    pub timeout_ms: u64,
}

impl Default for CrmConfig {
    fn default() -> Self {
        Self { secret: Secret::default(), max_skew_secs: 300, webhook_url: String::new(), timeout_ms: 5000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoyaltyConfig {
    /// Earned points stay valid this many days after the purchase, unless the till says otherwise.
    pub points_valid_days: u32,
    /// Points a paid shop order earns per yuan (up to two decimals: 0.5 is a point per ¥2).
    pub points_per_yuan: f64,
    /// A member's tier is set by the points earned in this many trailing days.
    pub tier_window_days: u32,
    /// The tiers, lowest first; the first must start at 0 points. None: tiers are not computed
    /// (a member keeps the tier an import gave them).
    pub tiers: Vec<TierConfig>,
}

impl Default for LoyaltyConfig {
    fn default() -> Self {
        Self { points_valid_days: 365, points_per_yuan: 1.0, tier_window_days: 365, tiers: Vec::new() }
    }
}

impl LoyaltyConfig {
    /// How followers read the tier `name`: its `label`, else the name itself.
    pub fn tier_label<'a>(&'a self, name: &'a str) -> &'a str {
        self.tiers.iter().find(|t| t.name == name).and_then(|t| t.label.as_deref()).unwrap_or(name)
    }

    /// Points per yuan in hundredths (0.5 → 50), so earning is integer arithmetic.
    pub fn points_per_yuan_cents(&self) -> i64 {
        (self.points_per_yuan * 100.0).round() as i64
    }
}

/// `[stores]`: how the brand's stores are offered to followers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoresConfig {
    /// `stores_nearby` lists only stores within this many kilometres of the follower; with none
    /// that near it names the nearest and how far it is, instead of calling it "nearby".
    pub nearby_km: u32,
}

impl Default for StoresConfig {
    fn default() -> Self {
        Self { nearby_km: 50 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// The tier as systems name it: imports, the CRM's events and API, segments ("gold").
    pub name: String,
    /// Points earned in the window that reach this tier.
    pub min_points: i64,
    /// As followers read it on their card, in the chat and in notices, Chinese first
    /// ("金卡会员 Gold"); none: the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}
