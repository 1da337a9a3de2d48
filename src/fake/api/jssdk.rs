//! The JS-SDK ticket: `ticket/getticket?type=jsapi`.

use super::{Answer, Req};
use crate::fake::FakeWeChat;
use serde_json::json;

pub(super) fn answer(fake: &FakeWeChat, api: &str, req: &Req) -> Answer {
    if api != "ticket/getticket" {
        return Err((404, "no such API in the fake"));
    }
    if req.query.get("type").map(String::as_str) != Some("jsapi") {
        return Err((40097, "invalid type"));
    }
    let ticket = format!("FAKE_TICKET_{}", fake.next_id());
    Ok(json!({ "errcode": 0, "errmsg": "ok", "ticket": ticket, "expires_in": 7200 }))
}
