//! Parametric QR codes: `qrcode/create` (temporary `QR_SCENE`/`QR_STR_SCENE` with
//! `expire_seconds`, permanent `QR_LIMIT_SCENE`/`QR_LIMIT_STR_SCENE`).

use super::{Answer, Req};
use crate::fake::FakeWeChat;
use serde_json::json;

pub(super) fn answer(fake: &FakeWeChat, api: &str, req: &Req) -> Answer {
    if api != "qrcode/create" {
        return Err((404, "no such API in the fake"));
    }
    let body = req.body;
    let action = body["action_name"].as_str().unwrap_or_default();
    if !["QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"].contains(&action) {
        return Err((40097, "invalid action_name"));
    }
    let ticket = format!("gQFAKE{}", fake.next_id());
    let mut answer = json!({ "ticket": ticket, "url": format!("http://weixin.qq.com/q/{ticket}") });
    if action.starts_with("QR_SCENE") || action == "QR_STR_SCENE" {
        answer["expire_seconds"] = json!(body["expire_seconds"].as_i64().unwrap_or(60));
    }
    Ok(answer)
}
