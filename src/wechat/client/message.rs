//! Customer-service messages (`message/custom/send`, within 48 hours of the follower's last
//! message) and the typing indicator.

use super::{Ack, CallError, Client, Family};
use crate::wechat::reply::Reply;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewsArticle {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub picurl: String,
}

/// A customer-service message body; WeChat nests each under a key named like its `msgtype`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "msgtype", rename_all = "lowercase")]
pub enum CustomMessage {
    Text { content: String },
    Image { media_id: String },
    Voice { media_id: String },
    Video { media_id: String, thumb_media_id: String, title: String, description: String },
    Music { title: String, description: String, musicurl: String, hqmusicurl: String, thumb_media_id: String },
    News { articles: Vec<NewsArticle> },
    Mpnews { media_id: String },
    Miniprogrampage { title: String, appid: String, pagepath: String, thumb_media_id: String },
}

impl CustomMessage {
    pub fn msgtype(&self) -> &'static str {
        match self {
            CustomMessage::Text { .. } => "text",
            CustomMessage::Image { .. } => "image",
            CustomMessage::Voice { .. } => "voice",
            CustomMessage::Video { .. } => "video",
            CustomMessage::Music { .. } => "music",
            CustomMessage::News { .. } => "news",
            CustomMessage::Mpnews { .. } => "mpnews",
            CustomMessage::Miniprogrampage { .. } => "miniprogrampage",
        }
    }

    /// The request body for `touser`: `{"touser":…,"msgtype":"text","text":{…}}`.
    pub fn to_request(&self, touser: &str) -> Value {
        let mut inner = serde_json::to_value(self).expect("serializable");
        if let Value::Object(map) = &mut inner {
            map.remove("msgtype");
        }
        json!({ "touser": touser, "msgtype": self.msgtype(), self.msgtype(): inner })
    }

    /// The customer-service equivalent of a passive reply (for replies that missed the deadline).
    pub fn from_reply(reply: &Reply) -> Option<CustomMessage> {
        Some(match reply {
            Reply::Text { content } => CustomMessage::Text { content: content.clone() },
            Reply::Image { media_id } => CustomMessage::Image { media_id: media_id.clone() },
            Reply::Voice { media_id } => CustomMessage::Voice { media_id: media_id.clone() },
            Reply::Video { media_id, title, description } => CustomMessage::Video {
                media_id: media_id.clone(),
                thumb_media_id: String::new(),
                title: title.clone(),
                description: description.clone(),
            },
            Reply::Music { title, description, music_url, hq_music_url, thumb_media_id } => CustomMessage::Music {
                title: title.clone(),
                description: description.clone(),
                musicurl: music_url.clone(),
                hqmusicurl: hq_music_url.clone(),
                thumb_media_id: thumb_media_id.clone(),
            },
            // A customer-service news message carries one article.
            Reply::News { articles } => CustomMessage::News {
                articles: articles
                    .iter()
                    .take(1)
                    .map(|a| NewsArticle {
                        title: a.title.clone(),
                        description: a.description.clone(),
                        url: a.url.clone(),
                        picurl: a.pic_url.clone(),
                    })
                    .collect(),
            },
            Reply::TransferCustomerService { .. } => return None,
        })
    }
}

impl Client {
    pub async fn custom_send(&self, touser: &str, message: &CustomMessage) -> Result<(), CallError> {
        self.post::<_, Ack>(Family::Message, "/cgi-bin/message/custom/send", &message.to_request(touser))
            .await
            .map(|_| ())
    }

    /// Shows ("Typing") or hides ("CancelTyping") the typing indicator.
    pub async fn custom_typing(&self, touser: &str, typing: bool) -> Result<(), CallError> {
        let command = if typing { "Typing" } else { "CancelTyping" };
        self.post::<_, Ack>(
            Family::Message,
            "/cgi-bin/message/custom/typing",
            &json!({ "touser": touser, "command": command }),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shapes() {
        let text = CustomMessage::Text { content: "hi".into() }.to_request("o1");
        assert_eq!(text, json!({"touser": "o1", "msgtype": "text", "text": {"content": "hi"}}));
        let news = CustomMessage::News {
            articles: vec![NewsArticle {
                title: "t".into(),
                description: "d".into(),
                url: "u".into(),
                picurl: "p".into(),
            }],
        }
        .to_request("o1");
        assert_eq!(news["news"]["articles"][0]["picurl"], "p");
        let mp = CustomMessage::Mpnews { media_id: "m".into() }.to_request("o1");
        assert_eq!(mp, json!({"touser": "o1", "msgtype": "mpnews", "mpnews": {"media_id": "m"}}));
    }
}
