//! Media and drafts: `media/uploadimg` (an article's image, multipart `media`) and `draft/add`
//! (1 to 8 articles; the fake keeps them so a mass-sent article can be shown).
//!
//! `uploadimg` judges the file as WeChat does: no `media` part is 41005, anything but a JPEG or
//! PNG 40005, more than 1 MB (or nothing) 40006; a good one gets an `mmbiz.qpic.cn`-like URL,
//! and the fake keeps the file and serves it at that path (`GET /mmbiz_png/…`), as WeChat's
//! image host does.

use super::{Answer, Req};
use crate::fake::{FakeWeChat, Image};
use crate::wechat::client::media::{ArticleImage, MAX_ARTICLE_IMAGE_BYTES};
use axum::body::Bytes;
use serde_json::{Value, json};

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
            let (kind, mime) = match ArticleImage::sniff(file).ok_or((40005, "invalid file type"))? {
                ArticleImage::Jpeg => ("jpg", "image/jpeg"),
                ArticleImage::Png => ("png", "image/png"),
            };
            let path = format!("mmbiz_{kind}/fake{}/0", fake.next_id());
            let url = format!("http://mmbiz.qpic.cn/{path}?wx_fmt={kind}");
            fake.keep_image(path, Image { mime, bytes: Bytes::copy_from_slice(file) });
            Ok(json!({ "url": url }))
        }
        "draft/add" => {
            let mut articles = req.body["articles"].as_array().cloned().ok_or((47001, "data format error"))?;
            if articles.is_empty() || articles.len() > 8 {
                return Err((45008, "article size out of limit"));
            }
            // As `draft/get` answers: each article with its cover's URL.
            for a in &mut articles {
                if let Some(url) = a["thumb_media_id"].as_str().and_then(|m| fake.material_url(m)) {
                    a["thumb_url"] = json!(url);
                }
            }
            let media_id = format!("DRAFT_{}", fake.next_id());
            fake.0.state.lock().unwrap().drafts.insert(media_id.clone(), Value::Array(articles));
            Ok(json!({ "media_id": media_id }))
        }
        _ => Err((404, "no such API in the fake")),
    }
}
