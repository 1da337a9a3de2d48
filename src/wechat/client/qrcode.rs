//! Parametric QR codes: temporary (up to 30 days) or permanent, with a numeric or string scene.
//! Scanning one sends `subscribe` (EventKey `qrscene_<scene>`) or `SCAN` (EventKey `<scene>`).

use super::{CallError, Client, Family};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scene {
    Id(u32),
    Str(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrCode {
    pub ticket: String,
    #[serde(default)]
    pub expire_seconds: Option<i64>,
    pub url: String,
}

impl QrCode {
    /// Where the QR image for this ticket can be downloaded.
    pub fn image_url(&self) -> String {
        format!(
            "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket={}",
            form_urlencoded::byte_serialize(self.ticket.as_bytes()).collect::<String>()
        )
    }
}

impl Client {
    /// `expire_seconds: None` makes a permanent code.
    pub async fn qrcode_create(&self, scene: &Scene, expire_seconds: Option<u32>) -> Result<QrCode, CallError> {
        if let Scene::Str(s) = scene
            && (s.is_empty() || s.len() > 64)
        {
            return Err(CallError::Invalid("a string scene is 1 to 64 characters".into()));
        }
        let (action, scene_json) = match (scene, expire_seconds) {
            (Scene::Id(id), Some(_)) => ("QR_SCENE", json!({ "scene_id": id })),
            (Scene::Str(s), Some(_)) => ("QR_STR_SCENE", json!({ "scene_str": s })),
            (Scene::Id(id), None) => ("QR_LIMIT_SCENE", json!({ "scene_id": id })),
            (Scene::Str(s), None) => ("QR_LIMIT_STR_SCENE", json!({ "scene_str": s })),
        };
        let mut body = json!({ "action_name": action, "action_info": { "scene": scene_json } });
        if let Some(secs) = expire_seconds {
            body["expire_seconds"] = json!(secs.min(2_592_000));
        }
        self.post(Family::Qrcode, "/cgi-bin/qrcode/create", &body).await
    }
}
