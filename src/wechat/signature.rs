//! Request signatures.
//!
//! WeChat signs every call to the webhook with
//! `signature = sha1(sort([token, timestamp, nonce]).concat())` in lowercase hex. In safe and
//! compatible mode the encrypted body gets its own
//! `msg_signature = sha1(sort([token, timestamp, nonce, Encrypt]).concat())`. Both are compared
//! in constant time so a forger learns nothing from how long a rejection takes.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// `sha1` over the lexicographically sorted parts (WeChat signs at most four).
fn digest(parts: &[&str]) -> [u8; 20] {
    let mut sorted: [&str; 4] = [""; 4];
    let parts = &parts[..parts.len().min(4)];
    sorted[..parts.len()].copy_from_slice(parts);
    let sorted = &mut sorted[..parts.len()];
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for part in sorted.iter() {
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// `sha1` over the lexicographically sorted parts, as 40 lowercase hex characters.
pub fn sign(parts: &[&str]) -> String {
    hex(&digest(parts))
}

/// Whether `given` is the signature of `parts`. Case-insensitive in the hex digits, because some
/// proxies upper-case query strings; constant time in the content.
pub fn verify(given: &str, parts: &[&str]) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let given = given.as_bytes();
    if given.len() != 40 {
        return false;
    }
    let mut expected = [0u8; 40];
    let mut lowered = [0u8; 40];
    for (i, b) in digest(parts).iter().enumerate() {
        expected[2 * i] = DIGITS[(b >> 4) as usize];
        expected[2 * i + 1] = DIGITS[(b & 0xf) as usize];
    }
    for (l, g) in lowered.iter_mut().zip(given) {
        *l = g.to_ascii_lowercase();
    }
    lowered.ct_eq(&expected).into()
}

pub use crate::text::hex;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_signatures() {
        // (parts, expected) pairs; the first is the handshake example from WeChat's guide.
        let cases: &[(&[&str], &str)] = &[
            (&["", "", ""], "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            (&["abc"], "a9993e364706816aba3e25717850c26c9cd0d89d"),
        ];
        for (parts, expected) in cases {
            assert_eq!(sign(parts), *expected);
            assert!(verify(expected, parts));
            assert!(verify(&expected.to_uppercase(), parts));
        }
    }

    #[test]
    fn order_does_not_matter_and_tampering_does() {
        let a = sign(&["token", "1409304348", "xxxxxx"]);
        assert_eq!(a, sign(&["xxxxxx", "token", "1409304348"]));
        assert!(!verify(&a, &["token", "1409304349", "xxxxxx"]));
        assert!(!verify(&a[..39], &["token", "1409304348", "xxxxxx"]));
        assert!(!verify("", &["token", "1409304348", "xxxxxx"]));
    }
}
