//! [`Secret`]: a configured secret (AppSecret, Token, EncodingAESKey, signing secrets) that
//! prints as `***` wherever it is formatted — a `{:?}` of the whole config in a log line, an
//! error message — so none leaks by accident. The value is read where it is used, explicitly
//! ([`Secret::expose`], or as a `&str` through `Deref`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The signature of a signed call (and of an event wxoa signs): HMAC-SHA256 of
/// `"<timestamp>.<body>"` with `secret`, as 64 lowercase hex digits (see `http::signed`).
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    use hmac::Mac;
    crate::text::hex(&signing_mac(secret, timestamp, body).finalize().into_bytes())
}

/// Whether `signature` (the 32 bytes of the MAC) is `secret`'s over `"<timestamp>.<body>"`,
/// compared in constant time.
pub fn signature_matches(secret: &str, timestamp: &str, body: &[u8], signature: &[u8]) -> bool {
    use hmac::Mac;
    signing_mac(secret, timestamp, body).verify_slice(signature).is_ok()
}

fn signing_mac(secret: &str, timestamp: &str, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    use hmac::{KeyInit, Mac};
    let mut m =
        <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_formatted() {
        let s = super::Secret::from("hunter2-hunter2");
        assert_eq!(format!("{s} {s:?} {:?}", Some(&s)), "*** *** Some(***)");
        assert_eq!(s.expose(), "hunter2-hunter2");
        assert_eq!(s.len(), 15);
    }
}
