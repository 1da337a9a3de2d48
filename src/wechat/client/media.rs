//! Media for articles: upload an image used inside article bodies (`media/uploadimg`, returns a
//! URL), and add a draft (`draft/add`, returns the `media_id` a mass send of `mpnews` needs).

use super::{CallError, Client, Family, decode};
use serde::{Deserialize, Serialize};

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
    /// Uploads a JPEG or PNG (at most 1 MB) for use inside articles; returns its URL.
    pub async fn media_upload_image(&self, filename: &str, bytes: Vec<u8>) -> Result<String, CallError> {
        if bytes.len() > 1024 * 1024 {
            return Err(CallError::Invalid("article images are at most 1 MB".into()));
        }
        let content_type = if filename.to_ascii_lowercase().ends_with(".png") { "image/png" } else { "image/jpeg" };
        let boundary = format!("wxoa{}", crate::wechat::envelope::random_nonce());
        let safe_name: String = filename.chars().filter(|c| c.is_ascii_alphanumeric() || ".-_".contains(*c)).collect();
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"{safe_name}\"\r\nContent-Type: {content_type}\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        #[derive(Deserialize)]
        struct Answer {
            url: String,
        }
        let token = self.tokens().get().await?;
        let resp = self
            .http()
            .post(format!("{}/cgi-bin/media/uploadimg", self.base()))
            .query(&[("access_token", token.as_str())])
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .map_err(|e| CallError::Http(e.without_url().to_string()))?;
        let answer: Result<Answer, CallError> = decode(resp).await;
        if answer.as_ref().is_err_and(|e| e.is_token_error()) {
            self.tokens().invalidate(&token).await?;
        }
        answer.map(|a| a.url)
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
