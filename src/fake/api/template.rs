//! Template messages: `message/template/send` (100,000 a day, then 45009), answered with a
//! msgid and followed by TEMPLATESENDJOBFINISH posted to the webhook.

use super::{Answer, Req};
use crate::fake::FakeWeChat;
use crate::wechat::client::QUOTA;
use serde_json::json;

const TEMPLATE_DAILY_QUOTA: i64 = 100_000;

pub(super) fn answer(fake: &FakeWeChat, api: &str, req: &Req) -> Answer {
    let body = req.body;
    if api != "message/template/send" {
        return Err((404, "no such API in the fake"));
    }
    let openid = {
        let mut s = fake.0.state.lock().unwrap();
        let openid = fake.follower(&mut s, body["touser"].as_str())?;
        if body["template_id"].as_str().is_none_or(str::is_empty) {
            return Err((40037, "invalid template_id"));
        }
        let quota = if s.knobs.template_quota > 0 { s.knobs.template_quota } else { TEMPLATE_DAILY_QUOTA };
        if s.templates_sent >= quota {
            return Err((QUOTA, "reach max api daily quota limit"));
        }
        s.templates_sent += 1;
        openid
    };
    let msgid = fake.next_id();
    fake.finish_event(&openid, "TEMPLATESENDJOBFINISH", msgid, "<Status><![CDATA[success]]></Status>".into());
    Ok(json!({ "errcode": 0, "errmsg": "ok", "msgid": msgid }))
}
