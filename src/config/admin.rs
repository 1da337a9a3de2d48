//! `[admin]` and its `[[admin.tokens]]`: who may use the console and the admin API.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Who may use the admin API and console: bearer tokens, kept as SHA-256 hashes only
/// (`wxoa admin hash-token` prints one).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    pub tokens: Vec<AdminToken>,
    /// The console's page templates (`*.html`).
    pub pages: PathBuf,
    /// How long a console sign-in lasts.
    pub session_ttl_secs: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { tokens: Vec::new(), pages: "templates/admin".into(), session_ttl_secs: 12 * 3600 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    /// Who holds it (shown in the console and the log).
    pub name: String,
    /// `marketing` (campaigns and pushes) or `admin` (everything).
    pub role: Role,
    /// Lowercase hex SHA-256 of the token.
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Marketing,
    Admin,
}
