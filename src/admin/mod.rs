//! Who may use the admin API and the console: bearer tokens from `[admin] tokens`, stored as
//! SHA-256 hashes only, each with a role. `marketing` runs campaigns and pushes; `admin` may do
//! everything (menu, member lookup too).

use crate::config::{AdminToken, Role};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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
