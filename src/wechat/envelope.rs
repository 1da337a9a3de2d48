//! The envelope: how a message travels between WeChat and the webhook in each mode.
//!
//! * **plain**: the body is the message XML; the query carries `signature`, `timestamp`, `nonce`.
//! * **compat**: WeChat sends the plaintext fields *and* an `Encrypt` element, and adds
//!   `encrypt_type=aes&msg_signature=…`; replies may be plaintext or encrypted.
//! * **safe**: the body is `<xml><ToUserName/><Encrypt/></xml>` only; the reply must be
//!   encrypted too: `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>`, signed over a
//!   fresh timestamp and nonce of ours.
//!
//! The server side ([`Envelope::open`], [`Envelope::seal`]) and the client side
//! ([`Envelope::wrap`], [`Envelope::unwrap_reply`], used by `wxoa replay`, the bench and the fake
//! WeChat) live together so they cannot drift apart.

use super::crypto::{CryptoError, MsgCrypt};
use super::reply::{SUCCESS, cdata};
use super::signature;
use super::xml::{self, XmlError};
use rand::Rng;
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Plain,
    Compat,
    Safe,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Plain => "plain",
            Mode::Compat => "compat",
            Mode::Safe => "safe",
        })
    }
}

/// The query string WeChat signs a webhook call with, its values borrowed from it (decoded
/// copies only where a proxy escaped one): six allocations a call saved on the hot path.
#[derive(Debug, Default, Clone)]
pub struct SignedQuery<'q> {
    pub signature: Option<Cow<'q, str>>,
    pub timestamp: Option<Cow<'q, str>>,
    pub nonce: Option<Cow<'q, str>>,
    pub echostr: Option<Cow<'q, str>>,
    pub encrypt_type: Option<Cow<'q, str>>,
    pub msg_signature: Option<Cow<'q, str>>,
    /// WeChat adds the sender's openid on POSTs; we read it from the body instead.
    pub openid: Option<Cow<'q, str>>,
}

impl<'q> SignedQuery<'q> {
    /// Reads the parameters we use from a query string, ignoring the rest; repeated names keep
    /// the first value. Values longer than 1 KiB are dropped (no signature parameter is that long).
    pub fn parse(query: &'q str) -> SignedQuery<'q> {
        let mut q = SignedQuery::default();
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if value.len() > 3 * 1024 {
                continue;
            }
            let slot = match name {
                "signature" => &mut q.signature,
                "timestamp" => &mut q.timestamp,
                "nonce" => &mut q.nonce,
                "echostr" => &mut q.echostr,
                "encrypt_type" => &mut q.encrypt_type,
                "msg_signature" => &mut q.msg_signature,
                "openid" => &mut q.openid,
                _ => continue,
            };
            if slot.is_none() {
                // Every value WeChat sends is plain ASCII; decode only what a proxy escaped.
                let value = if value.bytes().any(|b| b == b'%' || b == b'+') {
                    form_urlencoded::parse(pair.as_bytes())
                        .next()
                        .map(|(_, v)| Cow::Owned(v.into_owned()))
                        .unwrap_or_default()
                } else {
                    Cow::Borrowed(value)
                };
                if value.len() <= 1024 {
                    *slot = Some(value);
                }
            }
        }
        q
    }

    fn encrypted(&self) -> bool {
        self.encrypt_type.as_deref() == Some("aes")
    }
}

/// Why a call was refused. `Unauthorized` maps to 401, `BadRequest` to 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Unauthorized(&'static str),
    BadRequest(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Unauthorized(why) => f.write_str(why),
            Rejection::BadRequest(why) => f.write_str(why),
        }
    }
}

impl From<CryptoError> for Rejection {
    fn from(e: CryptoError) -> Self {
        Rejection::BadRequest(e.to_string())
    }
}

impl From<XmlError> for Rejection {
    fn from(e: XmlError) -> Self {
        Rejection::BadRequest(e.to_string())
    }
}

/// A verified, decrypted inbound body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub xml: String,
    /// Whether the request was encrypted, and so the reply must be.
    pub encrypted: bool,
}

/// Signing and encryption for one account.
#[derive(Debug, Clone)]
pub struct Envelope {
    token: String,
    crypt: Option<MsgCrypt>,
    mode: Mode,
    timestamp_tolerance_secs: u64,
}

impl Envelope {
    /// `crypt` is required in compat and safe mode.
    pub fn new(token: &str, crypt: Option<MsgCrypt>, mode: Mode, timestamp_tolerance_secs: u64) -> Self {
        assert!(mode == Mode::Plain || crypt.is_some(), "{mode} mode needs an EncodingAESKey");
        Self { token: token.to_owned(), crypt, mode, timestamp_tolerance_secs }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn crypt(&self) -> Option<&MsgCrypt> {
        self.crypt.as_ref()
    }

    /// Checks `signature` and the timestamp window; returns the timestamp and nonce.
    fn verify_signature<'q>(&self, q: &'q SignedQuery<'_>, now: i64) -> Result<(&'q str, &'q str), Rejection> {
        let (Some(sig), Some(ts), Some(nonce)) = (&q.signature, &q.timestamp, &q.nonce) else {
            return Err(Rejection::Unauthorized("missing signature, timestamp or nonce"));
        };
        if ts.len() > 20 || nonce.len() > 64 {
            return Err(Rejection::Unauthorized("bad signature"));
        }
        if !signature::verify(sig, &[&self.token, ts, nonce]) {
            return Err(Rejection::Unauthorized("bad signature"));
        }
        let Ok(ts_secs) = ts.parse::<i64>() else {
            return Err(Rejection::Unauthorized("bad timestamp"));
        };
        if self.timestamp_tolerance_secs > 0 && now.abs_diff(ts_secs) > self.timestamp_tolerance_secs {
            return Err(Rejection::Unauthorized("stale timestamp"));
        }
        Ok((ts, nonce))
    }

    /// The GET handshake: the `echostr` to echo back, only when the signature verifies.
    pub fn handshake<'q>(&self, q: &'q SignedQuery<'_>, now: i64) -> Result<&'q str, Rejection> {
        self.verify_signature(q, now)?;
        match q.echostr.as_deref() {
            Some(e) if !e.is_empty() && e.len() <= 1024 => Ok(e),
            _ => Err(Rejection::BadRequest("missing echostr".into())),
        }
    }

    /// Verifies and, when encrypted, decrypts an inbound POST body.
    pub fn open(&self, q: &SignedQuery<'_>, body: &[u8], now: i64) -> Result<Opened, Rejection> {
        let (ts, nonce) = self.verify_signature(q, now)?;
        let body = std::str::from_utf8(body).map_err(|_| Rejection::BadRequest("body is not UTF-8".into()))?;
        if !q.encrypted() {
            if self.mode == Mode::Safe {
                return Err(Rejection::BadRequest("plaintext message refused in safe mode".into()));
            }
            return Ok(Opened { xml: body.to_owned(), encrypted: false });
        }
        let Some(crypt) = &self.crypt else {
            return Err(Rejection::BadRequest("encrypted message but no EncodingAESKey (plain mode)".into()));
        };
        let Some(msg_sig) = &q.msg_signature else {
            return Err(Rejection::Unauthorized("missing msg_signature"));
        };
        let fields = xml::parse(body)?;
        let encrypt = fields.get("Encrypt").ok_or_else(|| Rejection::BadRequest("missing <Encrypt>".into()))?;
        if !signature::verify(msg_sig, &[&self.token, ts, nonce, encrypt]) {
            return Err(Rejection::Unauthorized("bad msg_signature"));
        }
        Ok(Opened { xml: crypt.decrypt(encrypt)?, encrypted: true })
    }

    /// The response body for a plaintext reply document (or `None`: nothing to say).
    pub fn seal(&self, reply_xml: Option<&str>, encrypted: bool, now: i64) -> String {
        match (reply_xml, encrypted, &self.crypt) {
            (None, _, _) => SUCCESS.to_owned(),
            (Some(xml), true, Some(crypt)) => {
                let nonce = random_nonce();
                encrypted_document(&self.token, crypt, xml, &now.to_string(), &nonce)
            }
            (Some(xml), _, _) => xml.to_owned(),
        }
    }

    // ---- the client side: what WeChat (or our replay tool) does ----

    /// Signs (and, unless in plain mode, encrypts) a plaintext message as WeChat would post it:
    /// returns the query string (without `?`) and the body.
    pub fn wrap(&self, xml: &str, timestamp: i64, nonce: &str) -> (String, String) {
        let ts = timestamp.to_string();
        let sig = signature::sign(&[&self.token, &ts, nonce]);
        let Some(crypt) = self.crypt.as_ref().filter(|_| self.mode != Mode::Plain) else {
            return (format!("signature={sig}&timestamp={ts}&nonce={nonce}"), xml.to_owned());
        };
        let encrypt = crypt.encrypt(xml);
        let msg_sig = signature::sign(&[&self.token, &ts, nonce, &encrypt]);
        let to_user = xml::parse(xml).ok().and_then(|f| f.get("ToUserName").map(str::to_owned)).unwrap_or_default();
        let mut body = String::with_capacity(encrypt.len() + 128);
        body.push_str("<xml>");
        cdata(&mut body, "ToUserName", &to_user);
        cdata(&mut body, "Encrypt", &encrypt);
        body.push_str("</xml>");
        (format!("signature={sig}&timestamp={ts}&nonce={nonce}&openid=&encrypt_type=aes&msg_signature={msg_sig}"), body)
    }

    /// Reads a webhook response as WeChat would: `Ok(None)` for `success` or an empty body,
    /// the plaintext reply otherwise (verified and decrypted when it is encrypted).
    pub fn unwrap_reply(&self, body: &str) -> Result<Option<String>, Rejection> {
        let trimmed = body.trim();
        if trimmed.is_empty() || trimmed == SUCCESS {
            return Ok(None);
        }
        let fields = xml::parse(trimmed)?;
        let Some(encrypt) = fields.get("Encrypt") else {
            return Ok(Some(trimmed.to_owned()));
        };
        let crypt = self.crypt.as_ref().ok_or(Rejection::BadRequest("encrypted reply but no key".into()))?;
        let (Some(sig), Some(ts), Some(nonce)) =
            (fields.get("MsgSignature"), fields.get("TimeStamp"), fields.get("Nonce"))
        else {
            return Err(Rejection::BadRequest("encrypted reply without MsgSignature/TimeStamp/Nonce".into()));
        };
        if !signature::verify(sig, &[&self.token, ts, nonce, encrypt]) {
            return Err(Rejection::Unauthorized("reply MsgSignature does not verify"));
        }
        Ok(Some(crypt.decrypt(encrypt)?))
    }
}

/// `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>` for `xml`.
fn encrypted_document(token: &str, crypt: &MsgCrypt, xml: &str, ts: &str, nonce: &str) -> String {
    let encrypt = crypt.encrypt(xml);
    let sig = signature::sign(&[token, ts, nonce, &encrypt]);
    let mut out = String::with_capacity(encrypt.len() + 200);
    out.push_str("<xml>");
    cdata(&mut out, "Encrypt", &encrypt);
    cdata(&mut out, "MsgSignature", &sig);
    out.push_str("<TimeStamp>");
    out.push_str(ts);
    out.push_str("</TimeStamp>");
    cdata(&mut out, "Nonce", nonce);
    out.push_str("</xml>");
    out
}

/// A fresh numeric nonce, as WeChat uses.
pub fn random_nonce() -> String {
    (rand::rng().next_u32() % 1_000_000_000 + 1_000_000_000).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const MSG: &str = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>9</MsgId></xml>";

    fn env(mode: Mode) -> Envelope {
        Envelope::new("tok", Some(MsgCrypt::new(KEY, "wxapp").unwrap()), mode, 300)
    }

    fn query(qs: &str) -> SignedQuery<'_> {
        SignedQuery::parse(qs)
    }

    #[test]
    fn reads_the_signed_query() {
        let long = format!("nonce={}&nonce=2", "9".repeat(1025));
        // (query, signature, nonce, encrypt_type)
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
        let cases: &[Case] = &[
            ("signature=ab&timestamp=1&nonce=7&encrypt_type=aes", Some("ab"), Some("7"), Some("aes")),
            ("nonce=7&nonce=8&signature=", Some(""), Some("7"), None),
            ("signature=a%62c&nonce=1+2&x=%zz", Some("abc"), Some("1 2"), None),
            ("&&=&signature&nonce=%31", Some(""), Some("1"), None),
            (&long, None, Some("2"), None),
            ("", None, None, None),
        ];
        for (qs, signature, nonce, encrypt_type) in cases {
            let q = query(qs);
            assert_eq!(q.signature.as_deref(), *signature, "{qs}");
            assert_eq!(q.nonce.as_deref(), *nonce, "{qs}");
            assert_eq!(q.encrypt_type.as_deref(), *encrypt_type, "{qs}");
        }
    }

    #[test]
    fn wrap_then_open_in_every_mode() {
        let now = 1_700_000_000;
        for mode in [Mode::Plain, Mode::Compat, Mode::Safe] {
            let e = env(mode);
            let (qs, body) = e.wrap(MSG, now, "123");
            let opened = e.open(&query(&qs), body.as_bytes(), now).unwrap();
            assert_eq!(opened.xml, MSG);
            assert_eq!(opened.encrypted, mode != Mode::Plain);
            let sealed = e.seal(Some("<xml><A>1</A></xml>"), opened.encrypted, now);
            assert_eq!(e.unwrap_reply(&sealed).unwrap().as_deref(), Some("<xml><A>1</A></xml>"));
            assert_eq!(e.unwrap_reply(&e.seal(None, opened.encrypted, now)).unwrap(), None);
        }
    }

    #[test]
    fn refusals() {
        let now = 1_700_000_000;
        let safe = env(Mode::Safe);
        let plain = env(Mode::Plain);
        let (qs, body) = safe.wrap(MSG, now, "123");
        let (plain_qs, plain_body) = plain.wrap(MSG, now, "123");
        let unauthorized = |r: Result<Opened, Rejection>| matches!(r, Err(Rejection::Unauthorized(_)));
        let bad_request = |r: Result<Opened, Rejection>| matches!(r, Err(Rejection::BadRequest(_)));
        // Wrong token, tampered body, stale timestamp, missing parameters.
        let other = Envelope::new("other", safe.crypt.clone(), Mode::Safe, 300);
        assert!(unauthorized(other.open(&query(&qs), body.as_bytes(), now)));
        let tampered = body.replacen("<Encrypt><![CDATA[", "<Encrypt><![CDATA[A", 1);
        assert!(unauthorized(safe.open(&query(&qs), tampered.as_bytes(), now)));
        assert!(unauthorized(safe.open(&query(&qs), body.as_bytes(), now + 301)));
        assert!(safe.open(&query(&qs), body.as_bytes(), now + 300).is_ok());
        assert!(unauthorized(safe.open(&SignedQuery::default(), body.as_bytes(), now)));
        // Safe mode refuses plaintext; plain mode has no use for Encrypt.
        assert!(bad_request(safe.open(&query(&plain_qs), plain_body.as_bytes(), now)));
        // The tolerance can be switched off.
        let lax = Envelope::new("tok", safe.crypt.clone(), Mode::Safe, 0);
        assert!(lax.open(&query(&qs), body.as_bytes(), now + 86_400).is_ok());
    }

    #[test]
    fn handshake_checks_signature_before_echoing() {
        let e = env(Mode::Safe);
        let (qs, _) = e.wrap(MSG, 100, "5");
        let mut q = query(&qs);
        q.echostr = Some("hello".into());
        assert_eq!(e.handshake(&q, 100), Ok("hello"));
        q.signature = Some("0".repeat(40).into());
        assert!(matches!(e.handshake(&q, 100), Err(Rejection::Unauthorized(_))));
    }
}
