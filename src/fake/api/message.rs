//! Customer-service messages: `message/custom/send` (to a follower who left: 43004; an empty
//! text: 44003) and `message/custom/typing`.

use super::{Answer, Req, ok};
use crate::fake::FakeWeChat;

pub(super) fn answer(fake: &FakeWeChat, api: &str, req: &Req) -> Answer {
    let body = req.body;
    match api {
        "message/custom/send" => {
            let mut s = fake.0.state.lock().unwrap();
            fake.follower(&mut s, body["touser"].as_str())?;
            let msgtype = body["msgtype"].as_str().unwrap_or_default();
            if body[msgtype].is_null() {
                return Err((47001, "data format error"));
            }
            if msgtype == "text" && body["text"]["content"].as_str().is_none_or(str::is_empty) {
                return Err((44003, "empty content"));
            }
            ok()
        }
        "message/custom/typing" => {
            let mut s = fake.0.state.lock().unwrap();
            fake.follower(&mut s, body["touser"].as_str())?;
            ok()
        }
        _ => Err((404, "no such API in the fake")),
    }
}
