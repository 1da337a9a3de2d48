//! wxoa: the server a brand runs behind its WeChat Official Account.
//!
//! Data flow of one webhook call (see README, "Architecture"):
//! [`http::webhook`] → [`wechat::envelope`] (signature, decrypt) → [`wechat::message`] (parse)
//! → [`bot`] (route, dedup, act, record via [`store::messages`]) → [`wechat::reply`] → sealed.
//!
//! The modules in their layers, lowest first (`tests/layers.rs` keeps imports pointing down):
//! leaf ([`clock`], [`store`], [`secret`], [`text`]) → protocol ([`wechat`]) → [`config`] → domain
//! ([`bot`], [`campaigns`], [`members`], [`bookings`], [`jobs`], [`shop`], [`stores`],
//! [`notices`], [`menu`], [`fake`], [`crm`], [`followers`], [`audiences`], [`replies`], [`retention`], [`privacy`]) → [`state`] → handlers ([`http`], [`h5`], [`admin`],
//! [`error`], `*::api`) → wiring ([`app`], [`dev`], [`tools`]) → [`cli`].

/// The console and admin API's callers: bearer tokens, roles; the console pages.
pub mod admin;
/// Wiring only: files loaded, database opened, workers started, routers merged, served, stopped.
pub mod app;
/// Audiences: segments by rules over the follower directory, counted live, synced to WeChat tags.
pub mod audiences;
/// Advisor bookings: slots, booking, cancelling, reminders.
pub mod bookings;
/// From a parsed message to its answer, exactly once: routing, handlers, templates, late replies.
pub mod bot;
/// Launch campaigns: articles, scheduled pushes fired once, WeChat's limits, delivery figures.
pub mod campaigns;
/// The `wxoa` command line, one file per command family.
pub mod cli;
/// The one clock every "now" is read from: the system's in `serve`, a settable one in tests.
pub mod clock;
/// The configuration file and its `WXOA_*` overrides, validated.
pub mod config;
/// The brand's CRM both ways: its signed points API, and the member events it hears.
pub mod crm;
/// `wxoa dev`: the server with a fake WeChat, demo data and the follower simulator.
pub mod dev;
/// The HTTP error types, and every domain error mapped onto them.
pub mod error;
/// A fake WeChat API (and its followers) for tests, benchmarks and development.
pub mod fake;
/// The follower directory: who follows, from where, with which tags; kept from the log and WeChat's list.
pub mod followers;
/// The H5 pages followers open from the chat: sign-in, card, rewards, bookings, details.
pub mod h5;
/// HTTP infrastructure: the accept loop, the webhook's fast path, pages, signed calls, health.
pub mod http;
/// The outbox of jobs sent later, and the worker that runs them.
pub mod jobs;
/// Loyalty members: points posted with their lots and tiers, binding, enrolment, redemptions, imports.
pub mod members;
/// The custom menu file against WeChat's limits, and its difference from the live menu.
pub mod menu;
/// What wxoa tells a follower after the fact: template messages and chat texts.
pub mod notices;
/// Personal-data rights (PIPL): a copy of everything held about a person, and its erasure.
pub mod privacy;
/// Replies edited in the console: stored, checked whole, applied on every instance within 2 s.
pub mod replies;
/// Bounded retention: old messages' XML dropped, older messages and finished jobs deleted.
pub mod retention;
/// Configured secrets that print as `***`.
pub mod secret;
/// The shop integration: checkout tokens, stock, orders, the article link's landing.
pub mod shop;
/// What every HTTP handler shares: config, loaded files, bot, database, client, wake-ups.
pub mod state;
/// The leaf: SQLite or PostgreSQL behind one `Store`, migrations, the message log.
pub mod store;
/// The brand's stores, the nearest ones, store QR codes and follower attribution.
pub mod stores;
/// Bounds on text from outside, judged alike everywhere.
pub mod text;
/// Developer tools: replaying fixtures, exporting them, the load generators.
pub mod tools;
/// WeChat's protocol: signatures, encryption, messages, replies, and the API client.
pub mod wechat;

/// An enum of unit variants stored as strings: `as_str`, `parse` (the inverse, `None` for a
/// string this build does not know) and `Display`, from one table of variant and string.
#[macro_export]
macro_rules! stored_as {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The string it is stored (and serialized) as.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }

            /// The value a stored string names; `None` for one this build does not know.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

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
