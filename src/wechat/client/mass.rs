//! Mass sends: to everyone or a tag (`sendall`), to an openid list (`send`, 2 to 10,000), a
//! `preview` to one follower, and `get` for a send's status. `clientmsgid` makes a send
//! idempotent: WeChat refuses a second send with the same one. Service accounts reach each
//! follower at most 4 times a month; WeChat reports results with MASSSENDJOBFINISH.

use super::{CallError, Client, Family};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MassContent {
    /// Articles: the `media_id` of a draft.
    Mpnews {
        media_id: String,
    },
    Text {
        content: String,
    },
    Image {
        media_id: String,
    },
}

impl MassContent {
    fn fields(&self) -> (&'static str, Value) {
        match self {
            MassContent::Mpnews { media_id } => ("mpnews", json!({ "media_id": media_id })),
            MassContent::Text { content } => ("text", json!({ "content": content })),
            MassContent::Image { media_id } => ("image", json!({ "media_id": media_id })),
        }
    }
}

/// Who a `sendall` goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    All,
    Tag(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MassSent {
    pub msg_id: i64,
    #[serde(default)]
    pub msg_data_id: Option<i64>,
    /// 45065 when WeChat had this `clientmsgid` already: nothing new was sent, `msg_id` is the
    /// first send's.
    #[serde(default)]
    pub errcode: i64,
}

impl MassSent {
    /// Whether this answer reports an earlier send with the same `clientmsgid`.
    pub fn is_repeat(&self) -> bool {
        self.errcode == super::CLIENTMSGID_EXISTS
    }
}

fn body(content: &MassContent, clientmsgid: Option<&str>) -> Value {
    let (msgtype, inner) = content.fields();
    let mut b = json!({ "msgtype": msgtype, msgtype: inner, "send_ignore_reprint": 0 });
    if let Some(id) = clientmsgid {
        b["clientmsgid"] = json!(id);
    }
    b
}

impl Client {
    pub async fn mass_send_all(
        &self,
        audience: &Audience,
        content: &MassContent,
        clientmsgid: Option<&str>,
    ) -> Result<MassSent, CallError> {
        let mut b = body(content, clientmsgid);
        b["filter"] = match audience {
            Audience::All => json!({ "is_to_all": true }),
            Audience::Tag(id) => json!({ "is_to_all": false, "tag_id": id }),
        };
        self.post(Family::Mass, "/cgi-bin/message/mass/sendall", &b).await
    }

    /// To 2 to 10,000 openids.
    pub async fn mass_send(
        &self,
        openids: &[&str],
        content: &MassContent,
        clientmsgid: Option<&str>,
    ) -> Result<MassSent, CallError> {
        if !(2..=10_000).contains(&openids.len()) {
            return Err(CallError::Invalid(format!("mass/send takes 2 to 10,000 openids, got {}", openids.len())));
        }
        let mut b = body(content, clientmsgid);
        b["touser"] = json!(openids);
        self.post(Family::Mass, "/cgi-bin/message/mass/send", &b).await
    }

    /// Sends `content` to one follower only, to check how it looks.
    pub async fn mass_preview(&self, openid: &str, content: &MassContent) -> Result<(), CallError> {
        let mut b = body(content, None);
        b["touser"] = json!(openid);
        self.post::<_, super::Ack>(Family::Mass, "/cgi-bin/message/mass/preview", &b).await.map(|_| ())
    }

    /// Takes a sent mass message down (`message/mass/delete`): article `article_idx` (from 1)
    /// of an `mpnews` send, or all of it with `None`. WeChat deletes only articles and videos,
    /// and only sends that went out; those who received it keep the card, its page is gone.
    pub async fn mass_delete(&self, msg_id: i64, article_idx: Option<u32>) -> Result<(), CallError> {
        let body = json!({ "msg_id": msg_id, "article_idx": article_idx.unwrap_or(0) });
        self.post::<_, super::Ack>(Family::Mass, "/cgi-bin/message/mass/delete", &body).await.map(|_| ())
    }

    /// `SEND_SUCCESS`, `SENDING`, `SEND_FAIL` or `DELETE`.
    pub async fn mass_status(&self, msg_id: i64) -> Result<String, CallError> {
        #[derive(Deserialize)]
        struct Answer {
            msg_status: String,
        }
        self.post::<_, Answer>(Family::Mass, "/cgi-bin/message/mass/get", &json!({ "msg_id": msg_id }))
            .await
            .map(|a| a.msg_status)
    }
}
