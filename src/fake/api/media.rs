//! Media and drafts: `media/uploadimg` (an article's image, multipart `media`) and `draft/add`
//! (1 to 8 articles; the fake keeps them so a mass-sent article can be shown).
//!
//! `uploadimg` judges the file as WeChat does: no `media` part is 41005, anything but a JPEG or
//! PNG 40005, more than 1 MB (or nothing) 40006; a good one gets an `mmbiz.qpic.cn`-like URL.

use super::{Answer, Req};
use crate::fake::FakeWeChat;
use crate::wechat::client::media::{ArticleImage, MAX_ARTICLE_IMAGE_BYTES};
use serde_json::json;

/// The content of the multipart/form-data part called `name`. The body's first line is the
/// delimiter (`--boundary`), so no header is needed to find the parts.
fn multipart_part<'a>(body: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let line_end = body.windows(2).position(|w| w == b"\r\n")?;
    let delimiter = [b"\r\n", &body[..line_end]].concat();
    let wanted = format!("name=\"{name}\"");
    let mut rest = &body[line_end..];
    loop {
        let headers_end = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
        let headers = &rest[..headers_end];
        let content = &rest[headers_end + 4..];
        let end = content.windows(delimiter.len()).position(|w| w == delimiter.as_slice())?;
        if headers.windows(wanted.len()).any(|w| w == wanted.as_bytes()) {
            return Some(&content[..end]);
        }
        rest = &content[end + delimiter.len()..];
    }
}

pub(super) fn answer(fake: &FakeWeChat, api: &str, req: &Req) -> Answer {
    match api {
        "media/uploadimg" => {
            let file = multipart_part(req.raw, "media").ok_or((41005, "media data missing"))?;
            if file.is_empty() || file.len() > MAX_ARTICLE_IMAGE_BYTES {
                // (sic: WeChat's spelling)
                return Err((40006, "invalid meida size"));
            }
            let kind = match ArticleImage::sniff(file).ok_or((40005, "invalid file type"))? {
                ArticleImage::Jpeg => "jpg",
                ArticleImage::Png => "png",
            };
            Ok(json!({ "url": format!("http://mmbiz.qpic.cn/mmbiz_{kind}/fake{}/0?wx_fmt={kind}", fake.next_id()) }))
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
