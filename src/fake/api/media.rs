//! Media and drafts: `media/uploadimg` (an article's image, multipart `media`) and `draft/add`
//! (1 to 8 articles; the fake keeps them so a mass-sent article can be shown).

use super::{Answer, Req};
use crate::fake::FakeWeChat;
use serde_json::json;

pub(super) fn answer(fake: &FakeWeChat, api: &str, req: &Req) -> Answer {
    match api {
        "media/uploadimg" => {
            if !req.raw.windows(12).any(|w| w == b"name=\"media\"") {
                return Err((41005, "media data missing"));
            }
            Ok(json!({ "url": format!("http://mmbiz.qpic.cn/mmbiz_jpg/fake{}/0", fake.next_id()) }))
        }
        "draft/add" => {
            let articles = req.body["articles"].as_array().ok_or((47001, "data format error"))?;
            if articles.is_empty() || articles.len() > 8 {
                return Err((45008, "article size out of limit"));
            }
            let media_id = format!("DRAFT_{}", fake.next_id());
            fake.0.state.lock().unwrap().drafts.insert(media_id.clone(), req.body["articles"].clone());
            Ok(json!({ "media_id": media_id }))
        }
        _ => Err((404, "no such API in the fake")),
    }
}
