//! The sample secrets `config/default.toml` ships with, found where they are still in force.
//!
//! Anyone can read them in the repository, so a `serve` that answers the internet with one of
//! them lets anyone sign into the console, forge WeChat's signature or sign the shop's calls.
//! `serve` refuses a non-loopback `listen` while any is in force and names each one; on
//! loopback it starts with a warning; `wxoa dev` runs on them by design.

use super::Config;
use crate::secret::Secret;

/// The shipped file, read at build time: the samples are whatever it holds.
const SHIPPED: &str = include_str!("../../config/default.toml");

/// Where a config keeps one of its secrets.
type SecretOf = fn(&Config) -> &Secret;

/// `(key, how to make a real one)` for each shipped sample secret in force in `config`.
pub fn in_force(config: &Config) -> Vec<(&'static str, &'static str)> {
    let Ok(shipped) = Config::from_toml(SHIPPED, std::iter::empty()) else { return Vec::new() };
    const RANDOM: &str = "`openssl rand -hex 32`";
    const SHARED: &str = "a secret shared with the shop: `openssl rand -hex 32`";
    let (c, s) = (config, &shipped);
    let mut found = Vec::new();
    let secrets: [(&str, SecretOf, &str); 7] = [
        ("wechat.app_secret", |c| &c.wechat.app_secret, "the AppSecret from WeChat's admin pages"),
        ("wechat.token", |c| &c.wechat.token, "the Token set in WeChat's admin pages (3-32 letters or digits)"),
        (
            "wechat.encoding_aes_key",
            |c| &c.wechat.encoding_aes_key,
            "the EncodingAESKey generated in WeChat's admin pages",
        ),
        ("h5.session_secret", |c| &c.h5.session_secret, RANDOM),
        ("checkout.secret", |c| &c.checkout.secret, SHARED),
        ("shop.secret", |c| &c.shop.secret, SHARED),
        ("crm.secret", |c| &c.crm.secret, "a secret shared with the CRM: `openssl rand -hex 32`"),
    ];
    for (key, secret, how) in secrets {
        let value = secret(c).expose();
        if !value.is_empty() && value == secret(s).expose() {
            found.push((key, how));
        }
    }
    if c.admin.tokens.iter().any(|t| s.admin.tokens.iter().any(|sample| sample.sha256 == t.sha256)) {
        found.push(("admin.tokens", "a token of your own, stored as `wxoa admin hash-token TOKEN` prints it"));
    }
    found
}

/// Whether `listen` (`host:port`) is reachable from this machine only.
pub fn is_loopback(listen: &str) -> bool {
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h).trim_matches(|c| c == '[' || c == ']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_is_all_samples_and_loopback_is_told_apart() {
        let shipped = Config::from_toml(SHIPPED, std::iter::empty()).unwrap();
        let keys: Vec<&str> = in_force(&shipped).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "wechat.app_secret",
                "wechat.token",
                "wechat.encoding_aes_key",
                "h5.session_secret",
                "checkout.secret",
                "shop.secret",
                "crm.secret",
                "admin.tokens"
            ]
        );
        for (listen, want) in [
            ("127.0.0.1:8080", true),
            ("[::1]:8080", true),
            ("localhost:80", true),
            ("0.0.0.0:8080", false),
            ("10.0.0.5:80", false),
            ("[::]:80", false),
        ] {
            assert_eq!(is_loopback(listen), want, "{listen}");
        }
    }
}
