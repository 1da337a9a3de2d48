//! wxoa: the server a brand runs behind its WeChat Official Account.
//!
//! Data flow of one webhook call (see README, "Architecture"):
//! [`http::webhook`] → [`wechat::envelope`] (signature, decrypt) → [`wechat::message`] (parse)
//! → [`bot`] (dedup, route, act, record via [`store::messages`]) → [`wechat::reply`] → sealed.

pub mod admin;
pub mod app;
pub mod bookings;
pub mod bot;
pub mod campaigns;
pub mod cli;
pub mod config;
pub mod dev;
pub mod error;
pub mod fake;
pub mod h5;
pub mod http;
pub mod jobs;
pub mod members;
pub mod menu;
pub mod notices;
pub mod secret;
pub mod shop;
pub mod state;
pub mod store;
pub mod stores;
pub mod text;
pub mod tools;
pub mod wechat;

/// An openid (or any identifier) shortened for logs: enough to correlate, not to identify.
pub fn mask(id: &str) -> String {
    let n = id.chars().count();
    if n <= 6 {
        return "*".repeat(n);
    }
    let head: String = id.chars().take(4).collect();
    let tail: String = id.chars().skip(n - 2).collect();
    format!("{head}…{tail}")
}
