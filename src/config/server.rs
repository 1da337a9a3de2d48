//! `[server]`, `[database]`, `[outbox]`, `[log]` and `[retention]`: how the process serves, stores, sends and forgets.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// `[retention]`: how long what followers sent is kept (PIPL: no longer than needed). Each age
/// is in days; 0 keeps for ever. The hourly purge in `serve` and `wxoa messages purge` apply it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// A logged message's XML (what the follower sent, what we answered) is dropped after this;
    /// the row's metadata (type, event, times, rule) stays for the figures.
    pub raw_xml_days: u32,
    /// A logged message is deleted after this (at least `raw_xml_days`).
    pub messages_days: u32,
    /// A finished outbox job (done or dead) is deleted after this.
    pub jobs_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { raw_xml_days: 30, messages_days: 180, jobs_days: 90 }
    }
}

/// `[log]`: what the log says and how it is written (to stderr).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (one line a record, for people) or `json` (one JSON object a line, for a
    /// collector), each with the record's spans: request id, route, MsgId, masked openid.
    pub format: LogFormat,
    /// Which records are written: a level (`info`) or `tracing` directives
    /// (`info,wxoa::outbox=debug`). `RUST_LOG`, when set, takes precedence.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info,sqlx=warn,tower_http=warn".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Run the outbox worker in `serve`.
    pub enabled: bool,
    /// Jobs sent at once by one instance.
    pub concurrency: usize,
    /// How long a claimed job is ours before another worker may take it.
    pub lease_secs: u64,
    /// Attempts before a job is dead.
    pub max_attempts: i64,
    /// How often an idle worker looks for due jobs.
    pub poll_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self { enabled: true, concurrency: 64, lease_secs: 60, max_attempts: 8, poll_ms: 250 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    /// Worker threads; 0 means one per core the process may run on.
    pub workers: usize,
    /// Largest request body accepted (WeChat's bodies are a few KiB).
    pub max_body_bytes: usize,
    /// Seconds to wait for in-flight calls on shutdown; connections still open then are closed.
    pub shutdown_grace_secs: u64,
    /// A client must send a whole request head (and body) within this; an idle kept-alive
    /// connection is closed after it too.
    pub header_read_timeout_secs: u64,
    /// Open connections at most (and never more than the descriptor limit allows); one more is
    /// closed at once.
    pub max_connections: usize,
    /// Connections the kernel completes and queues for `accept` before it drops new SYNs (the
    /// client then retries after 1 s, 3 s, …). The kernel caps it at `net.core.somaxconn`
    /// (4096 on Linux ≥ 5.4, 128 before): raise that sysctl too for a larger queue.
    pub listen_backlog: u32,
    /// Where `/metrics` is served to anyone who reaches it (a private address, e.g.
    /// `127.0.0.1:9464`); empty, it is not served apart.
    pub metrics_listen: String,
    /// On the public listener `/metrics` answers only `Authorization: Bearer <this>`; empty,
    /// it is not there at all (404).
    pub metrics_token: Secret,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            workers: 0,
            max_body_bytes: 64 * 1024,
            shutdown_grace_secs: 10,
            header_read_timeout_secs: 10,
            max_connections: 10_000,
            listen_backlog: 1024,
            metrics_listen: String::new(),
            metrics_token: Secret::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path/to.db` or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
    /// Create the database if it is not there, even where one was lost (see
    /// `Store::open_migrated`); `serve --create-database` sets it.
    pub create: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: "sqlite://data/wxoa.db".into(), max_connections: 8, create: false }
    }
}
