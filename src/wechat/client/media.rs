//! Media for articles: upload an image used inside article bodies (`media/uploadimg`, returns a
//! URL), and add a draft (`draft/add`, returns the `media_id` a mass send of `mpnews` needs).

use super::{CallError, Client, Family};
use serde::{Deserialize, Serialize};

/// The largest image `media/uploadimg` takes.
pub const MAX_ARTICLE_IMAGE_BYTES: usize = 1024 * 1024;

/// The kinds of image `media/uploadimg` takes, told by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArticleImage {
    Jpeg,
    Png,
}

/// Why WeChat would refuse an article image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Empty or over 1 MB (WeChat's 40006); the size given.
    #[error("an article image is 1 byte to 1 MB (got {0} bytes)")]
    Size(usize),
    /// Neither JPEG nor PNG (WeChat's 40005).
    #[error("an article image must be a JPEG or PNG")]
    Kind,
}

impl ArticleImage {
    /// The kind of `bytes`, or why WeChat would refuse them (its 40005 invalid type, 40006
    /// invalid size).
    pub fn check(bytes: &[u8]) -> Result<ArticleImage, ImageError> {
        if bytes.is_empty() || bytes.len() > MAX_ARTICLE_IMAGE_BYTES {
            return Err(ImageError::Size(bytes.len()));
        }
        Self::sniff(bytes).ok_or(ImageError::Kind)
    }

    /// JPEG (`FF D8 FF`) or PNG (its 8-byte signature), by the bytes.
    pub fn sniff(bytes: &[u8]) -> Option<ArticleImage> {
        if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
            Some(ArticleImage::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ArticleImage::Png)
        } else {
            None
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            ArticleImage::Jpeg => "image/jpeg",
            ArticleImage::Png => "image/png",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            ArticleImage::Jpeg => "jpg",
            ArticleImage::Png => "png",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftArticle {
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// HTML body; images in it must be URLs from `uploadimg`.
    pub content: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content_source_url: String,
    pub thumb_media_id: String,
    #[serde(default)]
    pub need_open_comment: u8,
    #[serde(default)]
    pub only_fans_can_comment: u8,
}

impl Client {
    /// Uploads a JPEG or PNG of at most 1 MB for use inside article bodies (multipart field
    /// `media`); returns the URL WeChat hosts it at (`http://mmbiz.qpic.cn/…`), the only kind of
    /// image an article shows. The type is read from the bytes, not the name; anything else, or
    /// anything larger, is refused before calling (WeChat would answer 40005 / 40006).
    pub async fn media_upload_image(&self, filename: &str, bytes: Vec<u8>) -> Result<String, CallError> {
        let image = ArticleImage::check(&bytes).map_err(|e| CallError::Invalid(e.to_string()))?;
        let boundary = format!("wxoa{}", crate::wechat::envelope::random_nonce());
        let stem: String =
            filename.chars().filter(|c| c.is_ascii_alphanumeric() || "-_".contains(*c)).take(64).collect();
        let name = format!("{}.{}", if stem.is_empty() { "image" } else { &stem }, image.extension());
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"{name}\"\r\nContent-Type: {}\r\n\r\n",
            image.mime()
        )
        .into_bytes();
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        #[derive(Deserialize)]
        struct Answer {
            url: String,
        }
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let answer: Answer = self.post_body(Family::Media, "/cgi-bin/media/uploadimg", content_type, body).await?;
        Ok(answer.url)
    }

    /// Adds a draft of up to 8 articles; returns its media_id.
    pub async fn draft_add(&self, articles: &[DraftArticle]) -> Result<String, CallError> {
        if articles.is_empty() || articles.len() > 8 {
            return Err(CallError::Invalid(format!("a draft has 1 to 8 articles, got {}", articles.len())));
        }
        #[derive(Deserialize)]
        struct Answer {
            media_id: String,
        }
        self.post::<_, Answer>(Family::Media, "/cgi-bin/draft/add", &serde_json::json!({ "articles": articles }))
            .await
            .map(|a| a.media_id)
    }
}
