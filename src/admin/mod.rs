//! Who may use the admin API and the console: bearer tokens from `[admin] tokens`, stored as
//! SHA-256 hashes only, each with a role. `marketing` runs campaigns and pushes; `admin` may do
//! everything (menu, member lookup too).

pub mod api;
pub mod console;

use crate::config::{AdminToken, Role};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Who is calling the admin API: the holder of a configured bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// 403 unless the caller's role allows `needed`.
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role may not do this; it needs {}",
                self.role.as_str(),
                needed.as_str()
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim).filter(|t| !t.is_empty())
        else {
            return Err(ApiError::Unauthorized("send Authorization: Bearer <token>".into()));
        };
        if token.len() > 256 {
            return Err(ApiError::Unauthorized("unknown token".into()));
        }
        let known = authenticate(&state.config.admin.tokens, token)
            .ok_or_else(|| ApiError::Unauthorized("unknown token".into()))?;
        Ok(Caller { name: known.name.clone(), role: known.role })
    }
}

/// Lowercase hex SHA-256 of a token, as `[admin] tokens` keeps it.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The caller a token belongs to, if any. Every configured hash is compared, in constant time,
/// so timing tells nothing about which came close.
pub fn authenticate<'a>(tokens: &'a [AdminToken], token: &str) -> Option<&'a AdminToken> {
    let hash = hash_token(token);
    let mut found = None;
    for t in tokens {
        if bool::from(t.sha256.as_bytes().ct_eq(hash.as_bytes())) {
            found = Some(t);
        }
    }
    found
}

impl Role {
    /// Whether this role may do what `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Marketing => "marketing",
            Role::Admin => "admin",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_by_hash_and_roles_nest() {
        let tokens = vec![AdminToken { name: "m".into(), role: Role::Marketing, sha256: hash_token("secret-m") }];
        assert_eq!(authenticate(&tokens, "secret-m").map(|t| t.name.as_str()), Some("m"));
        assert!(authenticate(&tokens, "secret-x").is_none());
        assert!(authenticate(&tokens, "").is_none());
        assert!(Role::Admin.allows(Role::Marketing) && Role::Marketing.allows(Role::Marketing));
        assert!(!Role::Marketing.allows(Role::Admin));
    }
}
