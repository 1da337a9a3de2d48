//! Passive replies: the XML the webhook answers a message with.
//!
//! A reply swaps the header (`ToUserName` is the follower, `FromUserName` our account), carries
//! a fresh `CreateTime` and one `MsgType` body. Strings go in CDATA sections; a `]]>` inside a
//! string is split across two sections. WeChat shows followers "this account cannot provide
//! service" for an empty `Content` or a body that is not XML, so those are not representable:
//! the constructors refuse them and "nothing to say" is the literal `success` instead.

use std::fmt::Write;

/// The body WeChat expects when we have nothing to say.
pub const SUCCESS: &str = "success";

/// `s` made safe to put inside a text message: WeChat renders `<a href>` in text messages
/// (replies and customer-service texts alike), so a value that came from anyone but the
/// template's author (a product or store name, a member's name, a follower's own words) must
/// not be able to add a link. Angle brackets become their full-width forms, which read the same.
pub fn escape_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['<', '>']) { s.replace('<', "＜").replace('>', "＞").into() } else { s.into() }
}

/// WeChat's limit on articles in one news reply.
pub const MAX_ARTICLES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Text {
        content: String,
    },
    Image {
        media_id: String,
    },
    Voice {
        media_id: String,
    },
    Video {
        media_id: String,
        title: String,
        description: String,
    },
    Music {
        title: String,
        description: String,
        music_url: String,
        hq_music_url: String,
        thumb_media_id: String,
    },
    News {
        articles: Vec<Article>,
    },
    /// Hand the conversation to the customer-service desk (optionally one agent).
    TransferCustomerService {
        kf_account: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Article {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub pic_url: String,
    #[serde(default)]
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    EmptyContent,
    EmptyMediaId,
    ArticleCount(usize),
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::EmptyContent => f.write_str("a text reply needs non-empty content"),
            ReplyError::EmptyMediaId => f.write_str("a media reply needs a media_id"),
            ReplyError::ArticleCount(n) => write!(f, "a news reply needs 1 to {MAX_ARTICLES} articles, got {n}"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// The most a passive text reply's `Content` may hold, in bytes (WeChat's limit).
pub const MAX_TEXT_BYTES: usize = 2048;

impl Reply {
    pub fn text(content: impl Into<String>) -> Result<Reply, ReplyError> {
        let content = content.into();
        if content.trim().is_empty() {
            return Err(ReplyError::EmptyContent);
        }
        Ok(Reply::Text { content })
    }

    pub fn news(articles: Vec<Article>) -> Result<Reply, ReplyError> {
        if articles.is_empty() || articles.len() > MAX_ARTICLES {
            return Err(ReplyError::ArticleCount(articles.len()));
        }
        Ok(Reply::News { articles })
    }

    /// Checks the invariants for replies built directly.
    pub fn validate(&self) -> Result<(), ReplyError> {
        match self {
            Reply::Text { content } if content.trim().is_empty() => Err(ReplyError::EmptyContent),
            Reply::Image { media_id } | Reply::Voice { media_id } | Reply::Video { media_id, .. }
                if media_id.is_empty() =>
            {
                Err(ReplyError::EmptyMediaId)
            }
            Reply::News { articles } if articles.is_empty() || articles.len() > MAX_ARTICLES => {
                Err(ReplyError::ArticleCount(articles.len()))
            }
            _ => Ok(()),
        }
    }

    /// `MsgType` of this reply.
    pub fn msg_type(&self) -> &'static str {
        match self {
            Reply::Text { .. } => "text",
            Reply::Image { .. } => "image",
            Reply::Voice { .. } => "voice",
            Reply::Video { .. } => "video",
            Reply::Music { .. } => "music",
            Reply::News { .. } => "news",
            Reply::TransferCustomerService { .. } => "transfer_customer_service",
        }
    }

    /// The reply document to `openid` from our account `account` (the message's `ToUserName`).
    pub fn to_xml(&self, openid: &str, account: &str, create_time: i64) -> String {
        let mut x = String::with_capacity(256);
        x.push_str("<xml>");
        cdata(&mut x, "ToUserName", openid);
        cdata(&mut x, "FromUserName", account);
        let _ = write!(x, "<CreateTime>{create_time}</CreateTime>");
        cdata(&mut x, "MsgType", self.msg_type());
        match self {
            Reply::Text { content } => cdata(&mut x, "Content", content),
            Reply::Image { media_id } => group(&mut x, "Image", |x| cdata(x, "MediaId", media_id)),
            Reply::Voice { media_id } => group(&mut x, "Voice", |x| cdata(x, "MediaId", media_id)),
            Reply::Video { media_id, title, description } => group(&mut x, "Video", |x| {
                cdata(x, "MediaId", media_id);
                cdata(x, "Title", title);
                cdata(x, "Description", description);
            }),
            Reply::Music { title, description, music_url, hq_music_url, thumb_media_id } => {
                group(&mut x, "Music", |x| {
                    cdata(x, "Title", title);
                    cdata(x, "Description", description);
                    cdata(x, "MusicUrl", music_url);
                    cdata(x, "HQMusicUrl", hq_music_url);
                    cdata(x, "ThumbMediaId", thumb_media_id);
                })
            }
            Reply::News { articles } => {
                let _ = write!(x, "<ArticleCount>{}</ArticleCount>", articles.len());
                group(&mut x, "Articles", |x| {
                    for a in articles {
                        group(x, "item", |x| {
                            cdata(x, "Title", &a.title);
                            cdata(x, "Description", &a.description);
                            cdata(x, "PicUrl", &a.pic_url);
                            cdata(x, "Url", &a.url);
                        });
                    }
                })
            }
            Reply::TransferCustomerService { kf_account } => {
                if let Some(kf) = kf_account {
                    group(&mut x, "TransInfo", |x| cdata(x, "KfAccount", kf));
                }
            }
        }
        x.push_str("</xml>");
        x
    }
}

fn group(x: &mut String, name: &str, body: impl FnOnce(&mut String)) {
    let _ = write!(x, "<{name}>");
    body(x);
    let _ = write!(x, "</{name}>");
}

/// `<name><![CDATA[value]]></name>`, splitting any `]]>` in the value across two sections.
pub fn cdata(x: &mut String, name: &str, value: &str) {
    x.push('<');
    x.push_str(name);
    x.push_str("><![CDATA[");
    // The reader's finder, built once: `str::find` with a `&str` sets its searcher up on every
    // call, and every reply and every sealed envelope writes several sections.
    let mut rest = value;
    while let Some(i) = super::xml::CDATA_END.find(rest.as_bytes()) {
        x.push_str(&rest[..i]);
        x.push_str("]]]]><![CDATA[>");
        rest = &rest[i + 3..];
    }
    x.push_str(rest);
    x.push_str("]]></");
    x.push_str(name);
    x.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::xml;

    #[test]
    fn every_type_round_trips_through_the_reader() {
        let art = |n: usize| Article {
            title: format!("t{n}"),
            description: "d".into(),
            pic_url: "p".into(),
            url: "u".into(),
        };
        let cases = vec![
            (Reply::text("hi ]]> there").unwrap(), vec![("Content", "hi ]]> there")]),
            (Reply::Image { media_id: "m1".into() }, vec![("Image/MediaId", "m1")]),
            (Reply::Voice { media_id: "m2".into() }, vec![("Voice/MediaId", "m2")]),
            (
                Reply::Video { media_id: "m3".into(), title: "T".into(), description: "D".into() },
                vec![("Video/Title", "T")],
            ),
            (
                Reply::Music {
                    title: "a".into(),
                    description: "b".into(),
                    music_url: "c".into(),
                    hq_music_url: "d".into(),
                    thumb_media_id: "e".into(),
                },
                vec![("Music/HQMusicUrl", "d"), ("Music/ThumbMediaId", "e")],
            ),
            (Reply::news(vec![art(1), art(2)]).unwrap(), vec![("ArticleCount", "2"), ("Articles/item/Title", "t1")]),
            (Reply::TransferCustomerService { kf_account: Some("kf@x".into()) }, vec![("TransInfo/KfAccount", "kf@x")]),
        ];
        for (reply, expect) in cases {
            let doc = reply.to_xml("oUser", "gh_acc", 1700000000);
            let f = xml::parse(&doc).unwrap();
            assert_eq!(f.get("ToUserName"), Some("oUser"));
            assert_eq!(f.get("FromUserName"), Some("gh_acc"));
            assert_eq!(f.get("MsgType"), Some(reply.msg_type()));
            for (path, value) in expect {
                assert_eq!(f.get(path), Some(value), "{doc}");
            }
        }
    }

    #[test]
    fn empty_or_oversized_replies_are_unrepresentable() {
        assert_eq!(Reply::text("  \n"), Err(ReplyError::EmptyContent));
        assert_eq!(Reply::news(vec![]), Err(ReplyError::ArticleCount(0)));
        let a = Article { title: "x".into(), description: String::new(), pic_url: String::new(), url: String::new() };
        assert_eq!(Reply::news(vec![a; 9]), Err(ReplyError::ArticleCount(9)));
        assert_eq!(Reply::Image { media_id: String::new() }.validate(), Err(ReplyError::EmptyMediaId));
    }
}
