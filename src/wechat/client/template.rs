//! Template messages (`message/template/send`): up to 100,000 a day per account; WeChat reports
//! delivery later with a TEMPLATESENDJOBFINISH event (`success`, `failed:user block`,
//! `failed: system failed`).

use super::{CallError, Client, Family};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateValue {
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MiniProgram {
    pub appid: String,
    pub pagepath: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateMessage {
    pub touser: String,
    pub template_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miniprogram: Option<MiniProgram>,
    pub data: BTreeMap<String, TemplateValue>,
    /// Makes the send idempotent on WeChat's side for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
}

impl TemplateMessage {
    pub fn new(touser: &str, template_id: &str, data: &[(&str, &str)]) -> TemplateMessage {
        TemplateMessage {
            touser: touser.into(),
            template_id: template_id.into(),
            url: None,
            miniprogram: None,
            data: data.iter().map(|(k, v)| (k.to_string(), TemplateValue { value: v.to_string() })).collect(),
            client_msg_id: None,
        }
    }
}

impl Client {
    /// Sends a template message; returns WeChat's msgid (echoed by TEMPLATESENDJOBFINISH).
    pub async fn template_send(&self, message: &TemplateMessage) -> Result<i64, CallError> {
        #[derive(Deserialize)]
        struct Answer {
            msgid: i64,
        }
        self.post::<_, Answer>(Family::Template, "/cgi-bin/message/template/send", message).await.map(|a| a.msgid)
    }
}
