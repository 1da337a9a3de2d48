//! The custom menu as configured in `config/menu.toml`, checked against WeChat's limits, and
//! synced to WeChat (`wxoa menu check | sync | show`).
//!
//! ```toml
//! [[button]]                      # at most 3
//! name = "会员"                    # 16 bytes at most on top, 60 in a sub-menu
//! [[button.sub_button]]           # at most 5; a button with sub-buttons has no type
//! type = "click"                  # click, view, scancode_push, scancode_waitmsg, pic_sysphoto,
//! name = "积分查询"                 # pic_photo_or_album, pic_weixin, location_select,
//! key = "balance"                 # miniprogram, media_id, article_id, view_limited, …
//!
//! [[conditional]]                 # a menu for followers with a tag
//! matchrule = { tag_id = "100" }
//! [[conditional.button]]
//! …
//! ```

use crate::wechat::client::menu::{Button, ConditionalMenu, Menu, MenuInfo};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Why a menu file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MenuError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not TOML of the expected shape.
    #[error("{path}: {}", .source.message().trim())]
    Toml { path: PathBuf, source: toml::de::Error },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MenuFile {
    #[serde(default)]
    pub button: Vec<Button>,
    #[serde(default)]
    pub conditional: Vec<ConditionalMenu>,
}

/// A button's `type`, as the menu file and WeChat name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ButtonType {
    Click,
    View,
    ScancodePush,
    ScancodeWaitmsg,
    PicSysphoto,
    PicPhotoOrAlbum,
    PicWeixin,
    LocationSelect,
    Miniprogram,
    MediaId,
    ViewLimited,
    ArticleId,
    ArticleViewLimited,
}

crate::stored_as!(ButtonType {
    Click => "click",
    View => "view",
    ScancodePush => "scancode_push",
    ScancodeWaitmsg => "scancode_waitmsg",
    PicSysphoto => "pic_sysphoto",
    PicPhotoOrAlbum => "pic_photo_or_album",
    PicWeixin => "pic_weixin",
    LocationSelect => "location_select",
    Miniprogram => "miniprogram",
    MediaId => "media_id",
    ViewLimited => "view_limited",
    ArticleId => "article_id",
    ArticleViewLimited => "article_view_limited",
});

impl ButtonType {
    /// Whether a button of this type needs a `key` (WeChat sends it back in the event).
    fn keyed(self) -> bool {
        use ButtonType::*;
        matches!(
            self,
            Click | ScancodePush | ScancodeWaitmsg | PicSysphoto | PicPhotoOrAlbum | PicWeixin | LocationSelect
        )
    }
}

impl MenuFile {
    /// Reads a menu file; `{public_url}` in it becomes `public_url` (`h5.public_url`), so a
    /// VIEW button can lead to this server's pages in every deployment.
    pub fn load(path: &Path, public_url: &str) -> Result<MenuFile, MenuError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| MenuError::Read { path: path.to_path_buf(), source })?;
        let text = text.replace("{public_url}", public_url.trim_end_matches('/'));
        toml::from_str(&text).map_err(|source| MenuError::Toml { path: path.to_path_buf(), source })
    }

    pub fn menu(&self) -> Menu {
        Menu { button: self.button.clone() }
    }

    /// Every problem, one line each (empty: the menu is valid).
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        check_buttons("button", &self.button, &mut problems);
        for (i, c) in self.conditional.iter().enumerate() {
            let at = format!("conditional[{i}]");
            if c.matchrule.tag_id.is_none() && c.matchrule.client_platform_type.is_none() {
                problems.push(format!("{at}: matchrule needs tag_id or client_platform_type"));
            }
            if let Some(tag) = &c.matchrule.tag_id
                && tag.parse::<u64>().is_err()
            {
                problems.push(format!("{at}: matchrule.tag_id {tag:?} is not a tag id"));
            }
            check_buttons(&format!("{at}.button"), &c.button, &mut problems);
        }
        problems
    }
}

fn check_buttons(at: &str, buttons: &[Button], problems: &mut Vec<String>) {
    if buttons.is_empty() || buttons.len() > 3 {
        problems.push(format!("{at}: a menu has 1 to 3 buttons, not {}", buttons.len()));
    }
    for (i, b) in buttons.iter().enumerate() {
        let here = format!("{at}[{i}] ({:?})", b.name);
        check_name(&here, &b.name, 16, problems);
        if b.sub_button.is_empty() {
            check_action(&here, b, problems);
            continue;
        }
        if b.kind.is_some() {
            problems.push(format!("{here}: a button with sub_button has no type"));
        }
        if b.sub_button.len() > 5 {
            problems.push(format!("{here}: at most 5 sub_button, not {}", b.sub_button.len()));
        }
        for (j, s) in b.sub_button.iter().enumerate() {
            let here = format!("{at}[{i}].sub_button[{j}] ({:?})", s.name);
            check_name(&here, &s.name, 60, problems);
            if !s.sub_button.is_empty() {
                problems.push(format!("{here}: menus are two levels deep at most"));
            }
            check_action(&here, s, problems);
        }
    }
}

fn check_name(at: &str, name: &str, max: usize, problems: &mut Vec<String>) {
    if name.trim().is_empty() {
        problems.push(format!("{at}: name is empty"));
    } else if name.len() > max {
        problems.push(format!("{at}: name is {} bytes (at most {max})", name.len()));
    }
}

fn check_action(at: &str, b: &Button, problems: &mut Vec<String>) {
    use ButtonType::*;
    let Some(name) = b.kind.as_deref() else {
        problems.push(format!("{at}: needs a type (or sub_button)"));
        return;
    };
    let Some(kind) = ButtonType::parse(name) else {
        problems.push(format!("{at}: unknown type {name:?}"));
        return;
    };
    let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    if kind.keyed() {
        match &b.key {
            Some(k) if !k.is_empty() && k.len() <= 128 => {}
            Some(k) if k.len() > 128 => problems.push(format!("{at}: key is {} bytes (at most 128)", k.len())),
            _ => problems.push(format!("{at}: type {kind} needs a key")),
        }
    }
    if matches!(kind, View | Miniprogram) {
        match &b.url {
            Some(u) if u.len() > 1024 => problems.push(format!("{at}: url is {} bytes (at most 1024)", u.len())),
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => {}
            Some(u) => problems.push(format!("{at}: url {u:?} must start with http:// or https://")),
            None => problems.push(format!("{at}: type {kind} needs a url")),
        }
    }
    if kind == Miniprogram && !(has(&b.appid) && has(&b.pagepath)) {
        problems.push(format!("{at}: type miniprogram needs appid and pagepath"));
    }
    if matches!(kind, MediaId | ViewLimited) && !has(&b.media_id) {
        problems.push(format!("{at}: type {kind} needs a media_id"));
    }
    if matches!(kind, ArticleId | ArticleViewLimited) && !has(&b.article_id) {
        problems.push(format!("{at}: type {kind} needs an article_id"));
    }
}

/// One line per button path whose definition differs between `live` and `wanted`.
pub fn diff(live: &MenuInfo, wanted: &MenuFile) -> Vec<String> {
    let mut out = Vec::new();
    let flatten = |buttons: &[Button]| -> Vec<(String, String)> {
        let mut lines = Vec::new();
        for b in buttons {
            let mut top = b.clone();
            top.sub_button.clear();
            lines.push((b.name.clone(), serde_json::to_string(&top).unwrap_or_default()));
            for s in &b.sub_button {
                lines.push((format!("{} / {}", b.name, s.name), serde_json::to_string(s).unwrap_or_default()));
            }
        }
        lines
    };
    let (old, new) = (flatten(&live.menu.button), flatten(&wanted.button));
    for (path, json) in &old {
        match new.iter().find(|(p, _)| p == path) {
            None => out.push(format!("- {path}")),
            Some((_, j)) if j != json => out.push(format!("~ {path}: {json} -> {j}")),
            _ => {}
        }
    }
    for (path, json) in &new {
        if !old.iter().any(|(p, _)| p == path) {
            out.push(format!("+ {path}: {json}"));
        }
    }
    if old.iter().map(|(p, _)| p).ne(new.iter().map(|(p, _)| p)) && out.is_empty() {
        out.push("~ button order".into());
    }
    let strip = |c: &ConditionalMenu| ConditionalMenu { menuid: None, ..c.clone() };
    let live_cond: Vec<_> = live.conditionalmenu.iter().map(strip).collect();
    for c in &wanted.conditional {
        if !live_cond.contains(c) {
            out.push(format!("+ conditional menu for {:?}", c.matchrule));
        }
    }
    for c in &live_cond {
        if !wanted.conditional.contains(c) {
            out.push(format!("- conditional menu for {:?}", c.matchrule));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_menu_is_valid() {
        let menu = MenuFile::load(
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/menu.toml")),
            "https://wx.example.com",
        )
        .unwrap();
        assert!(
            menu.button
                .iter()
                .flat_map(|b| &b.sub_button)
                .any(|b| b.url.as_deref() == Some("https://wx.example.com/h5/start?to=card"))
        );
        assert_eq!(menu.check(), Vec::<String>::new());
    }

    #[test]
    fn every_limit_is_one_line() {
        let text = r#"
[[button]]
name = "This name is far too long"
type = "click"
key = "k"
[[button]]
name = "Sub"
type = "click"
[[button.sub_button]]
type = "view"
name = "Site"
url = "ftp://example.com"
[[button.sub_button]]
type = "click"
name = "NoKey"
[[button.sub_button]]
type = "teleport"
name = "What"
[[button.sub_button]]
type = "miniprogram"
name = "App"
url = "https://example.com"
[[button.sub_button]]
type = "click"
name = "Long key"
key = "KKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKK"
[[button.sub_button]]
type = "click"
name = "Sixth"
key = "six"
[[button]]
name = "Three"
type = "click"
key = "3"
[[button]]
name = "Four"
type = "click"
key = "4"
[[conditional]]
matchrule = { tag_id = "vip" }
[[conditional.button]]
name = "VIP"
type = "click"
key = "vip"
"#;
        let menu: MenuFile = toml::from_str(text).unwrap();
        let problems = menu.check();
        let expect = [
            "button: a menu has 1 to 3 buttons, not 4",
            "button[0] (\"This name is far too long\"): name is 25 bytes (at most 16)",
            "button[1] (\"Sub\"): a button with sub_button has no type",
            "button[1] (\"Sub\"): at most 5 sub_button, not 6",
            "button[1].sub_button[0] (\"Site\"): url \"ftp://example.com\" must start with http:// or https://",
            "button[1].sub_button[1] (\"NoKey\"): type click needs a key",
            "button[1].sub_button[2] (\"What\"): unknown type \"teleport\"",
            "button[1].sub_button[3] (\"App\"): type miniprogram needs appid and pagepath",
            "button[1].sub_button[4] (\"Long key\"): key is 140 bytes (at most 128)",
            "conditional[0]: matchrule.tag_id \"vip\" is not a tag id",
        ];
        for e in expect {
            assert!(problems.iter().any(|p| p == e), "missing {e:?} in {problems:#?}");
        }
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    }
}
