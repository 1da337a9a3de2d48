//! Custom menu: create, get, delete; conditional menus (by tag) add, delete, trymatch.

use super::{Ack, CallError, Client, Family};
use serde::{Deserialize, Serialize};

/// One menu button, as WeChat's JSON has it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub article_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagepath: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_button: Vec<Button>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Menu {
    pub button: Vec<Button>,
}

/// Who a conditional menu is for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_platform_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionalMenu {
    pub button: Vec<Button>,
    pub matchrule: MatchRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub menuid: Option<i64>,
}

/// `menu/get`: the default menu and any conditional menus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct MenuInfo {
    #[serde(default)]
    pub menu: Menu,
    #[serde(default)]
    pub conditionalmenu: Vec<ConditionalMenu>,
}

#[derive(Debug, Clone, Deserialize)]
struct MenuId {
    menuid: i64,
}

impl Client {
    pub async fn menu_create(&self, menu: &Menu) -> Result<(), CallError> {
        self.post::<_, Ack>(Family::Menu, "/cgi-bin/menu/create", menu).await.map(|_| ())
    }

    /// The live menu; a 46003 ("no menu") is an empty one.
    pub async fn menu_get(&self) -> Result<MenuInfo, CallError> {
        match self.get(Family::Menu, "/cgi-bin/menu/get", &[]).await {
            Err(CallError::WeChat { errcode: 46003, .. }) => Ok(MenuInfo::default()),
            other => other,
        }
    }

    /// Deletes the menu and every conditional menu.
    pub async fn menu_delete(&self) -> Result<(), CallError> {
        self.get::<Ack>(Family::Menu, "/cgi-bin/menu/delete", &[]).await.map(|_| ())
    }

    pub async fn menu_add_conditional(&self, menu: &ConditionalMenu) -> Result<i64, CallError> {
        self.post::<_, MenuId>(Family::Menu, "/cgi-bin/menu/addconditional", menu).await.map(|m| m.menuid)
    }

    pub async fn menu_delete_conditional(&self, menuid: i64) -> Result<(), CallError> {
        self.post::<_, Ack>(Family::Menu, "/cgi-bin/menu/delconditional", &serde_json::json!({ "menuid": menuid }))
            .await
            .map(|_| ())
    }

    /// The menu `user_id` (an openid or WeChat id) would see.
    pub async fn menu_try_match(&self, user_id: &str) -> Result<Vec<Button>, CallError> {
        #[derive(Deserialize)]
        struct Answer {
            button: Vec<Button>,
        }
        self.post::<_, Answer>(Family::Menu, "/cgi-bin/menu/trymatch", &serde_json::json!({ "user_id": user_id }))
            .await
            .map(|a| a.button)
    }
}
