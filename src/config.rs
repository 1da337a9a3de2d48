//! Configuration: one TOML file (`config/default.toml` by default) whose every key can be
//! overridden by an environment variable `WXOA_<SECTION>__<KEY>` (e.g. `WXOA_WECHAT__TOKEN`).
//!
//! Loading never panics: a missing or unreadable file, a typo'd key, a wrong type or a bad value
//! (a 42-character AES key) is one [`ConfigError`] line naming the key.

use crate::wechat::crypto::MsgCrypt;
use crate::wechat::envelope::Mode;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The shipped sample secrets, and where they are still in force.
pub mod samples;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub wechat: WechatConfig,
    pub database: DatabaseConfig,
    pub bot: BotConfig,
    pub rate_limits: crate::wechat::client::RateLimits,
    pub outbox: OutboxConfig,
    pub h5: H5Config,
    pub notices: NoticesConfig,
    pub campaigns: CampaignsConfig,
    pub checkout: CheckoutConfig,
    pub shop: ShopConfig,
    pub crm: CrmConfig,
    pub loyalty: LoyaltyConfig,
    pub stores: StoresConfig,
    pub followers: FollowersConfig,
    pub replies: RepliesConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub retention: RetentionConfig,
    /// The clock the app built from this config reads (the system's; tests set a settable
    /// one, which the fake WeChat built from the same config shares). Not read from the file.
    #[serde(skip)]
    pub clock: crate::clock::Clock,
}

// The sections' types, one file per group of sections, re-exported here.
mod admin;
mod loyalty;
mod marketing;
mod server;
mod wechat;
pub use admin::*;
pub use loyalty::*;
pub use marketing::*;
pub use server::*;
pub use wechat::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

impl Config {
    /// Reads `path`, applies `WXOA_*` overrides from the process environment and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text, std::env::vars())
    }

    /// Parses `text`, applies overrides from `env` (name, value) pairs and validates.
    pub fn from_toml(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| err(e.message().to_owned()))?;
        apply_env(&mut table, env)?;
        let config = from_table(table)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let w = &self.wechat;
        for (key, value) in [("wechat.app_id", w.app_id.as_str()), ("wechat.token", w.token.expose())] {
            if value.trim().is_empty() {
                return Err(err(format!("{key} is missing")));
            }
        }
        // WeChat's own rule for the token: 3 to 32 letters and digits.
        if !(3..=32).contains(&w.token.len()) || !w.token.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(err("wechat.token must be 3 to 32 letters or digits"));
        }
        if w.mode != Mode::Plain || !w.encoding_aes_key.is_empty() {
            if w.encoding_aes_key.is_empty() {
                return Err(err(format!("wechat.encoding_aes_key is missing (required in {} mode)", w.mode)));
            }
            MsgCrypt::new(&w.encoding_aes_key, &w.app_id).map_err(|e| err(format!("wechat.encoding_aes_key: {e}")))?;
        }
        if !(w.api_base.starts_with("http://") || w.api_base.starts_with("https://")) {
            return Err(err("wechat.api_base must be an http(s) URL"));
        }
        if !(w.image_base.starts_with("http://") || w.image_base.starts_with("https://")) {
            return Err(err("wechat.image_base must be an http(s) URL"));
        }
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(err(format!("server.listen: {:?} is not an address like 127.0.0.1:8080", self.server.listen)));
        }
        if !(1..=300).contains(&self.server.header_read_timeout_secs) {
            return Err(err("server.header_read_timeout_secs must be between 1 and 300"));
        }
        if !(1..=1_000_000).contains(&self.server.max_connections) {
            return Err(err("server.max_connections must be between 1 and 1000000"));
        }
        let metrics = &self.server.metrics_listen;
        if !metrics.is_empty() && metrics.parse::<std::net::SocketAddr>().is_err() {
            return Err(err("server.metrics_listen must be an address such as 127.0.0.1:9464 (or empty)"));
        }
        if !self.server.metrics_token.is_empty() && self.server.metrics_token.len() < 16 {
            return Err(err("server.metrics_token must be at least 16 characters (or empty)"));
        }
        let r = &self.retention;
        for (key, days) in
            [("raw_xml_days", r.raw_xml_days), ("messages_days", r.messages_days), ("jobs_days", r.jobs_days)]
        {
            if days > 3660 {
                return Err(err(format!("retention.{key} must be at most 3660 (0 keeps for ever)")));
            }
        }
        if r.messages_days != 0 && (r.raw_xml_days == 0 || r.messages_days < r.raw_xml_days) {
            return Err(err("retention.messages_days must be at least retention.raw_xml_days (or 0)"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            return Err(err(format!("log.level: {e}")));
        }
        if !(1..=65_535).contains(&self.server.listen_backlog) {
            return Err(err("server.listen_backlog must be between 1 and 65535"));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(err("server.max_body_bytes must be at least 1024"));
        }
        let url = &self.database.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(err("database.url must start with sqlite: or postgres://"));
        }
        if self.database.max_connections == 0 {
            return Err(err("database.max_connections must be at least 1"));
        }
        let h = &self.h5;
        if h.session_secret.len() < 32 {
            return Err(err("h5.session_secret must be at least 32 characters"));
        }
        if !(1..=100).contains(&h.max_open_bookings) {
            return Err(err("h5.max_open_bookings must be between 1 and 100"));
        }
        for (key, url) in [("h5.public_url", &h.public_url), ("h5.oauth_base", &h.oauth_base)] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(err(format!("{key} must be an http(s) URL")));
            }
        }
        let o = &self.outbox;
        if !(1..=1024).contains(&o.concurrency) {
            return Err(err("outbox.concurrency must be between 1 and 1024"));
        }
        if o.lease_secs < 15 {
            return Err(err("outbox.lease_secs must be at least 15 (longer than one API call may take)"));
        }
        if !(1..=100).contains(&o.max_attempts) {
            return Err(err("outbox.max_attempts must be between 1 and 100"));
        }
        if !(10..=60_000).contains(&o.poll_ms) {
            return Err(err("outbox.poll_ms must be between 10 and 60000"));
        }
        if !(50..=2000).contains(&self.replies.poll_ms) {
            return Err(err("replies.poll_ms must be between 50 and 2000 (a change applies within two seconds)"));
        }
        if !(1..=1000).contains(&self.replies.max) {
            return Err(err("replies.max must be between 1 and 1000"));
        }
        if !(1..=3600).contains(&self.bot.late_takeover_secs) {
            return Err(err("bot.late_takeover_secs must be between 1 and 3600"));
        }
        if !(100..=4800).contains(&self.bot.reply_deadline_ms) {
            return Err(err("bot.reply_deadline_ms must be between 100 and 4800 (WeChat gives up at 5000)"));
        }
        let cover = &self.bot.balance_cover_url;
        if !cover.is_empty() && (!(cover.starts_with("http://") || cover.starts_with("https://")) || cover.len() > 1024)
        {
            return Err(err(
                "bot.balance_cover_url must be an http(s) URL of at most 1024 bytes (or empty for the shipped one)",
            ));
        }
        if !(1..=1000).contains(&self.stores.nearby_km) {
            return Err(err("stores.nearby_km must be between 1 and 1000"));
        }
        let c = &self.campaigns;
        if c.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(err(format!("campaigns.time_zone: {:?} is not a time zone like Asia/Shanghai", c.time_zone)));
        }
        if !(50..=1000).contains(&c.poll_ms) {
            return Err(err("campaigns.poll_ms must be between 50 and 1000 (pushes fire within a second)"));
        }
        if !(5..=3600).contains(&c.lease_secs) {
            return Err(err("campaigns.lease_secs must be between 5 and 3600"));
        }
        if !(1..=1000).contains(&c.monthly_pushes_per_follower) || !(1..=1000).contains(&c.mass_calls_per_minute) {
            return Err(err("campaigns.monthly_pushes_per_follower and mass_calls_per_minute must be 1 to 1000"));
        }
        for (key, secret) in [
            ("checkout.secret", &self.checkout.secret),
            ("shop.secret", &self.shop.secret),
            ("crm.secret", &self.crm.secret),
        ] {
            // Empty switches the integration off (its endpoints answer 503); short is a mistake.
            if !secret.is_empty() && secret.len() < 32 {
                return Err(err(format!("{key} must be at least 32 characters (or empty to switch it off)")));
            }
        }
        if !(self.checkout.base_url.starts_with("http://") || self.checkout.base_url.starts_with("https://")) {
            return Err(err("checkout.base_url must be an http(s) URL"));
        }
        if self.checkout.token_ttl_secs == 0 || self.shop.max_skew_secs == 0 {
            return Err(err("checkout.token_ttl_secs and shop.max_skew_secs must be at least 1"));
        }
        let crm = &self.crm;
        if crm.max_skew_secs == 0 {
            return Err(err("crm.max_skew_secs must be at least 1"));
        }
        if !crm.webhook_url.is_empty() {
            if !(crm.webhook_url.starts_with("http://") || crm.webhook_url.starts_with("https://")) {
                return Err(err("crm.webhook_url must be an http(s) URL (or empty for no events)"));
            }
            if crm.secret.is_empty() {
                return Err(err("crm.webhook_url needs crm.secret: events are signed with it"));
            }
        }
        if !(100..=60_000).contains(&crm.timeout_ms) {
            return Err(err("crm.timeout_ms must be between 100 and 60000"));
        }
        self.validate_loyalty()?;
        for (i, t) in self.admin.tokens.iter().enumerate() {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(err(format!(
                    "admin.tokens[{i}].sha256 must be 64 lowercase hex digits (wxoa admin hash-token)"
                )));
            }
        }
        Ok(())
    }

    fn validate_loyalty(&self) -> Result<(), ConfigError> {
        let l = &self.loyalty;
        if !(1..=3660).contains(&l.points_valid_days) {
            return Err(err("loyalty.points_valid_days must be between 1 and 3660"));
        }
        if !(1..=3660).contains(&l.tier_window_days) {
            return Err(err("loyalty.tier_window_days must be between 1 and 3660"));
        }
        let cents = l.points_per_yuan * 100.0;
        if !(0.0..=100.0).contains(&l.points_per_yuan) || (cents - cents.round()).abs() > 1e-6 {
            return Err(err("loyalty.points_per_yuan must be 0 to 100 with at most two decimals"));
        }
        for (i, t) in l.tiers.iter().enumerate() {
            let name = t.name.trim();
            if name.is_empty() || name != t.name || t.name.chars().count() > 20 || t.name.chars().any(char::is_control)
            {
                return Err(err(format!("loyalty.tiers[{i}].name must be 1 to 20 characters, no spaces around")));
            }
            if let Some(label) = &t.label
                && (label.trim().is_empty()
                    || label.trim() != label
                    || label.chars().count() > 30
                    || label.chars().any(char::is_control))
            {
                return Err(err(format!("loyalty.tiers[{i}].label must be 1 to 30 characters, no spaces around")));
            }
            if l.tiers[..i].iter().any(|e| e.name == t.name) {
                return Err(err(format!("loyalty.tiers[{i}]: {:?} is named twice", t.name)));
            }
            match i {
                0 if t.min_points != 0 => {
                    return Err(err("loyalty.tiers[0] is the lowest tier: its min_points must be 0"));
                }
                0 => {}
                _ if t.min_points <= l.tiers[i - 1].min_points => {
                    return Err(err(format!(
                        "loyalty.tiers must go lowest first: tiers[{i}].min_points must be above {}",
                        l.tiers[i - 1].min_points
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The signing and encryption envelope for this account.
    pub fn envelope(&self) -> crate::wechat::envelope::Envelope {
        let w = &self.wechat;
        let crypt =
            (!w.encoding_aes_key.is_empty()).then(|| MsgCrypt::new(&w.encoding_aes_key, &w.app_id).expect("validated"));
        crate::wechat::envelope::Envelope::new(&w.token, crypt, w.mode, w.timestamp_tolerance_secs)
    }
}

/// Deserializes section by section so an error can name its section.
fn from_table(table: toml::Table) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    for (section, value) in table {
        let ctx = |e: toml::de::Error| err(format!("[{section}]: {}", e.message().trim()));
        match section.as_str() {
            "server" => config.server = value.clone().try_into().map_err(ctx)?,
            "wechat" => config.wechat = value.clone().try_into().map_err(ctx)?,
            "database" => config.database = value.clone().try_into().map_err(ctx)?,
            "bot" => config.bot = value.clone().try_into().map_err(ctx)?,
            "rate_limits" => config.rate_limits = value.clone().try_into().map_err(ctx)?,
            "outbox" => config.outbox = value.clone().try_into().map_err(ctx)?,
            "h5" => config.h5 = value.clone().try_into().map_err(ctx)?,
            "notices" => config.notices = value.clone().try_into().map_err(ctx)?,
            "campaigns" => config.campaigns = value.clone().try_into().map_err(ctx)?,
            "checkout" => config.checkout = value.clone().try_into().map_err(ctx)?,
            "shop" => config.shop = value.clone().try_into().map_err(ctx)?,
            "crm" => config.crm = value.clone().try_into().map_err(ctx)?,
            "loyalty" => config.loyalty = value.clone().try_into().map_err(ctx)?,
            "stores" => config.stores = value.clone().try_into().map_err(ctx)?,
            "followers" => config.followers = value.clone().try_into().map_err(ctx)?,
            "replies" => config.replies = value.clone().try_into().map_err(ctx)?,
            "admin" => config.admin = value.clone().try_into().map_err(ctx)?,
            "log" => config.log = value.clone().try_into().map_err(ctx)?,
            "retention" => config.retention = value.clone().try_into().map_err(ctx)?,
            other => return Err(err(format!("unknown section [{other}]"))),
        }
    }
    Ok(config)
}

/// Applies `WXOA_<SECTION>__<KEY>=value` overrides. The value takes the type the key has in the
/// defaults (so `WXOA_WECHAT__TOKEN=12345` stays a string and `WXOA_SERVER__WORKERS=1` is a number).
fn apply_env(table: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
    let defaults = toml::Table::try_from(Config::default()).expect("defaults serialize");
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("WXOA_") else { continue };
        let Some((section, key)) = rest.split_once("__") else { continue };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let Some(default) = defaults.get(&section).and_then(|s| s.get(&key)) else {
            return Err(err(format!("{name}: no such key {section}.{key}")));
        };
        let value = match default {
            toml::Value::Integer(_) => toml::Value::Integer(
                raw.trim().parse().map_err(|_| err(format!("{name}: {section}.{key} must be a whole number")))?,
            ),
            toml::Value::Float(_) => toml::Value::Float(
                raw.trim().parse().map_err(|_| err(format!("{name}: {section}.{key} must be a number")))?,
            ),
            toml::Value::Boolean(_) => toml::Value::Boolean(
                raw.trim().parse().map_err(|_| err(format!("{name}: {section}.{key} must be true or false")))?,
            ),
            _ => toml::Value::String(raw),
        };
        let section_table = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| err(format!("{section} must be a table")))?;
        section_table.insert(key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[wechat]
app_id = "wx0123456789abcdef"
token = "devtoken"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
[h5]
session_secret = "0123456789abcdef0123456789abcdef"
"#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_toml(
            GOOD,
            env(&[
                ("WXOA_WECHAT__TOKEN", "12345"),
                ("WXOA_SERVER__WORKERS", "1"),
                ("PATH", "/bin"),
                ("WXOA_TEST_POSTGRES_URL", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.wechat.token.expose(), "12345");
        assert_eq!(c.server.workers, 1);
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.wechat.mode, Mode::Safe);
        assert_eq!(c.database.url, "sqlite://data/wxoa.db");
        assert_eq!(c.bot.reply_deadline_ms, 4000);
        assert_eq!(c.stores.nearby_km, 50);
        assert_eq!(c.bot.balance_cover_url, "");
    }

    #[test]
    fn errors_name_the_key() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("", &[], "wechat.app_id is missing"),
            (
                &GOOD.replace("ABCDEFG", "ABCDEF"),
                &[],
                "wechat.encoding_aes_key: bad EncodingAESKey: must be 43 characters, got 42",
            ),
            (GOOD, &[("WXOA_WECHAT__MODE", "secret")], "[wechat]: unknown variant `secret`"),
            (GOOD, &[("WXOA_WECHAT__TOKN", "x")], "WXOA_WECHAT__TOKN: no such key wechat.tokn"),
            (GOOD, &[("WXOA_SERVER__WORKERS", "many")], "server.workers must be a whole number"),
            (&format!("{GOOD}\n[nope]\n"), &[], "unknown section [nope]"),
            (&format!("{GOOD}\n[server]\nlisen = 1\n"), &[], "[server]: unknown field `lisen`"),
            (GOOD, &[("WXOA_DATABASE__URL", "mysql://x")], "database.url must start with"),
            (GOOD, &[("WXOA_BOT__REPLY_DEADLINE_MS", "6000")], "bot.reply_deadline_ms"),
            ("[wechat\n", &[], "config: "),
            (GOOD, &[("WXOA_CRM__SECRET", "short")], "crm.secret must be at least 32 characters"),
            (GOOD, &[("WXOA_CRM__WEBHOOK_URL", "crm.example.com")], "crm.webhook_url must be an http(s) URL"),
            (GOOD, &[("WXOA_CRM__WEBHOOK_URL", "https://crm.example.com/e")], "crm.webhook_url needs crm.secret"),
            (GOOD, &[("WXOA_LOYALTY__POINTS_PER_YUAN", "0.125")], "at most two decimals"),
            (GOOD, &[("WXOA_STORES__NEARBY_KM", "0")], "stores.nearby_km must be between 1 and 1000"),
            (GOOD, &[("WXOA_STORES__NEARBY_KM", "20000")], "stores.nearby_km must be between 1 and 1000"),
            (GOOD, &[("WXOA_BOT__BALANCE_COVER_URL", "cover.png")], "bot.balance_cover_url must be an http(s) URL"),
            (
                &format!("{GOOD}\n[[loyalty.tiers]]\nname = \"silver\"\nmin_points = 10\n"),
                &[],
                "tiers[0] is the lowest tier",
            ),
            (
                &format!(
                    "{GOOD}\n[[loyalty.tiers]]\nname = \"a\"\nmin_points = 0\n[[loyalty.tiers]]\nname = \"b\"\nmin_points = 0\n"
                ),
                &[],
                "tiers[1].min_points must be above 0",
            ),
            (
                &format!(
                    "{GOOD}\n[[loyalty.tiers]]\nname = \"a\"\nmin_points = 0\n[[loyalty.tiers]]\nname = \"a\"\nmin_points = 5\n"
                ),
                &[],
                "is named twice",
            ),
            (
                &format!("{GOOD}\n[[loyalty.tiers]]\nname = \"a\"\nmin_points = 0\nlabel = \" 普通 \"\n"),
                &[],
                "loyalty.tiers[0].label must be 1 to 30 characters",
            ),
        ];
        for (text, vars, want) in cases {
            let e = Config::from_toml(text, env(vars)).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
            assert!(!e.contains('\n') || e.starts_with("config: "), "{e:?}");
        }
    }

    /// The file a fresh clone starts with loads, every section of it known.
    #[test]
    fn the_shipped_file_loads() {
        let c = Config::from_toml(include_str!("../config/default.toml"), env(&[])).unwrap();
        assert_eq!(c.stores.nearby_km, 50);
        assert_eq!(c.bot.balance_cover_url, "");
        assert_eq!(c.loyalty.tier_label("gold"), "金卡会员 Gold");
        assert_eq!(c.loyalty.tier_label("platinum"), "platinum", "a tier the file does not know reads as named");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let mut c = Config::from_toml(GOOD, env(&[])).unwrap();
        c.wechat.app_secret = "s3cret".into();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("devtoken") && !shown.contains("ABCDEFG"));
    }
}
