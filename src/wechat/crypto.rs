//! Safe-mode message encryption (WeChat's "WXBizMsgCrypt" scheme).
//!
//! The 43-character EncodingAESKey is base64 without its final `=`: decoded it gives the 32-byte
//! AES-256 key, whose first 16 bytes are also the CBC IV. Real keys do not always have zero
//! trailing bits, so the decoder must allow them (a strict decoder rejects valid accounts).
//!
//! The plaintext is `random(16) | len(4, big endian) | msg | appid`, padded PKCS#7-style to a
//! **32-byte** boundary (pad byte 1..=32, not the usual 16), encrypted with AES-256-CBC and
//! base64-encoded into the `Encrypt` element. We check the padding, bound the length and refuse a
//! message addressed to another app id.

use aes::Aes256;
use aes::cipher::{Array, BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit};
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rand::Rng;

const PAD_BLOCK: usize = 32;
const AES_BLOCK: usize = 16;

/// Encoded messages larger than this are refused before any work is done (WeChat's own bodies are
/// far smaller; the webhook's body limit is 64 KiB anyway).
pub const MAX_ENCRYPTED_LEN: usize = 128 * 1024;

/// Base64 as WeChat writes it, tolerant of the non-zero trailing bits found in real AES keys and
/// of a missing `=` at the end.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// The EncodingAESKey is not 43 base64 characters.
    BadKey(String),
    Base64,
    /// The ciphertext is empty, too long or not a whole number of AES blocks.
    BadLength,
    BadPadding,
    /// The 4-byte length prefix points outside the plaintext.
    BadMsgLength,
    NotUtf8,
    AppIdMismatch,
}

impl std::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CryptoError::BadKey(why) => write!(f, "bad EncodingAESKey: {why}"),
            CryptoError::Base64 => f.write_str("Encrypt is not valid base64"),
            CryptoError::BadLength => f.write_str("ciphertext length is not a multiple of 16"),
            CryptoError::BadPadding => f.write_str("bad padding"),
            CryptoError::BadMsgLength => f.write_str("message length prefix out of range"),
            CryptoError::NotUtf8 => f.write_str("decrypted message is not UTF-8"),
            CryptoError::AppIdMismatch => f.write_str("message is for another app id"),
        }
    }
}

impl std::error::Error for CryptoError {}

/// Encrypts and decrypts message bodies for one app id.
#[derive(Clone)]
pub struct MsgCrypt {
    /// The expanded AES key schedule, computed once (expanding it per message costs more than
    /// encrypting a typical message).
    cipher: Aes256,
    iv: [u8; 16],
    app_id: String,
}

impl std::fmt::Debug for MsgCrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("MsgCrypt").field("app_id", &self.app_id).finish_non_exhaustive()
    }
}

impl MsgCrypt {
    pub fn new(encoding_aes_key: &str, app_id: &str) -> Result<Self, CryptoError> {
        if encoding_aes_key.len() != 43 {
            return Err(CryptoError::BadKey(format!(
                "must be 43 characters, got {}",
                encoding_aes_key.chars().count()
            )));
        }
        let bytes = LENIENT_B64.decode(encoding_aes_key).map_err(|_| CryptoError::BadKey("not base64".into()))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey("does not decode to 32 bytes".into()))?;
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&key[..16]);
        Ok(Self { cipher: Aes256::new(&key.into()), iv, app_id: app_id.to_owned() })
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// Encrypts `msg` with 16 fresh random bytes in front.
    pub fn encrypt(&self, msg: &str) -> String {
        let mut random = [0u8; 16];
        rand::rng().fill_bytes(&mut random);
        self.encrypt_with_random(msg, &random)
    }

    /// Encrypts with a given random prefix (deterministic; for tests and known vectors).
    pub fn encrypt_with_random(&self, msg: &str, random: &[u8; 16]) -> String {
        let body_len = 16 + 4 + msg.len() + self.app_id.len();
        let pad = PAD_BLOCK - body_len % PAD_BLOCK; // 1..=32
        let mut buf = Vec::with_capacity(body_len + pad);
        buf.extend_from_slice(random);
        buf.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        buf.extend_from_slice(msg.as_bytes());
        buf.extend_from_slice(self.app_id.as_bytes());
        buf.resize(body_len + pad, pad as u8);

        let mut enc = cbc::Encryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &self.iv.into());
        let (blocks, rest) = Array::slice_as_chunks_mut(&mut buf);
        debug_assert!(rest.is_empty());
        enc.encrypt_blocks(blocks);
        base64::engine::general_purpose::STANDARD.encode(&buf)
    }

    /// Decrypts an `Encrypt` value and returns the message, after checking padding, length prefix
    /// and app id.
    pub fn decrypt(&self, encrypted: &str) -> Result<String, CryptoError> {
        let (msg, app_id) = self.decrypt_parts(encrypted)?;
        if app_id != self.app_id.as_bytes() {
            return Err(CryptoError::AppIdMismatch);
        }
        String::from_utf8(msg).map_err(|_| CryptoError::NotUtf8)
    }

    fn decrypt_parts(&self, encrypted: &str) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        if encrypted.is_empty() || encrypted.len() > MAX_ENCRYPTED_LEN {
            return Err(CryptoError::BadLength);
        }
        let mut buf = LENIENT_B64.decode(encrypted.trim()).map_err(|_| CryptoError::Base64)?;
        if buf.is_empty() || buf.len() % AES_BLOCK != 0 {
            return Err(CryptoError::BadLength);
        }
        let mut dec = cbc::Decryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &self.iv.into());
        let (blocks, _) = Array::slice_as_chunks_mut(&mut buf);
        dec.decrypt_blocks(blocks);

        let pad = *buf.last().unwrap_or(&0) as usize;
        if pad == 0 || pad > PAD_BLOCK || pad > buf.len() {
            return Err(CryptoError::BadPadding);
        }
        if buf[buf.len() - pad..].iter().any(|&b| b as usize != pad) {
            return Err(CryptoError::BadPadding);
        }
        buf.truncate(buf.len() - pad);
        if buf.len() < 20 {
            return Err(CryptoError::BadMsgLength);
        }
        let len = u32::from_be_bytes([buf[16], buf[17], buf[18], buf[19]]) as usize;
        if len > buf.len() - 20 {
            return Err(CryptoError::BadMsgLength);
        }
        let app_id = buf[20 + len..].to_vec();
        buf.truncate(20 + len);
        buf.drain(..20);
        Ok((buf, app_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The official WXBizMsgCrypt sample (WeCom's C#/Java/Python SDK samples use the same vector).
    const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const APP_ID: &str = "wx5823bf96d3bd56c7";
    const SAMPLE: &str = "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==";
    const ECHO: &str = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";

    #[test]
    fn official_sample_message_decrypts() {
        let crypt = MsgCrypt::new(KEY, APP_ID).unwrap();
        let xml = crypt.decrypt(SAMPLE).unwrap();
        assert!(xml.starts_with("<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>"), "{xml}");
        assert!(xml.contains("<MsgType><![CDATA[text]]></MsgType>"), "{xml}");
        assert!(xml.contains("<Content><![CDATA[hello]]></Content>"), "{xml}");
        // The signature WeChat sent with it.
        assert!(crate::wechat::signature::verify(
            "477715d11cdb4164915debcba66cb864d751f3e6",
            &["QDG6eK", "1409659813", "1372623149", SAMPLE]
        ));
    }

    #[test]
    fn official_sample_echostr_decrypts() {
        let crypt = MsgCrypt::new(KEY, APP_ID).unwrap();
        assert_eq!(crypt.decrypt(ECHO).unwrap(), "1616140317555161061");
        assert!(crate::wechat::signature::verify(
            "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
            &["QDG6eK", "1409659589", "263014780", ECHO]
        ));
    }

    #[test]
    fn round_trip_pads_to_32_bytes() {
        let crypt = MsgCrypt::new(KEY, APP_ID).unwrap();
        for len in [0usize, 1, 11, 12, 13, 43, 44, 45, 1000] {
            let msg = "测".repeat(len / 3) + &"x".repeat(len % 3);
            let enc = crypt.encrypt(&msg);
            let raw = base64::engine::general_purpose::STANDARD.decode(&enc).unwrap();
            assert_eq!(raw.len() % 32, 0, "len {len}");
            assert_eq!(crypt.decrypt(&enc).unwrap(), msg);
        }
        // Fresh randomness each time.
        assert_ne!(crypt.encrypt("a"), crypt.encrypt("a"));
    }

    #[test]
    fn rejects_bad_input() {
        let crypt = MsgCrypt::new(KEY, APP_ID).unwrap();
        let other = MsgCrypt::new(KEY, "wx0000000000000000").unwrap();
        let good = crypt.encrypt_with_random("<xml/>", &[7; 16]);
        let mut raw = base64::engine::general_purpose::STANDARD.decode(&good).unwrap();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        // Flip a bit in the last block: the padding no longer checks out.
        let n = raw.len();
        raw[n - 1] ^= 0x55;
        let cases: Vec<(String, CryptoError)> = vec![
            ("".into(), CryptoError::BadLength),
            ("!!!!".into(), CryptoError::Base64),
            (b64(&[1u8; 15]), CryptoError::BadLength),
            (b64(&raw), CryptoError::BadPadding),
            (good.clone(), CryptoError::AppIdMismatch),
        ];
        for (input, want) in cases {
            let who = if want == CryptoError::AppIdMismatch { &other } else { &crypt };
            assert_eq!(who.decrypt(&input), Err(want.clone()), "input {input:?}");
        }
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(matches!(MsgCrypt::new(&KEY[..42], APP_ID), Err(CryptoError::BadKey(_))));
        assert!(matches!(MsgCrypt::new(&"!".repeat(43), APP_ID), Err(CryptoError::BadKey(_))));
        // A key whose last character has non-zero trailing bits, as real keys do.
        assert!(MsgCrypt::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx").is_ok());
    }
}
