//! Notices (`config/notices.toml` + `templates/notices/*.j2`) — what wxoa tells a follower
//! after something happened, outside a reply:
//! * a **template message** (`kind = "template"`, the default) names its WeChat template id and
//!   a text template that renders one `field: value` line per template field; rendering gives
//!   a [`TemplateMessage`] ready for the outbox. Its optional `labels` (`keyword1 = "预约时间
//!   Time"`) are the names the template gives its fields in the WeChat admin console: WeChat
//!   shows them from the template itself, so wxoa never sends them; the simulator shows them
//!   ([`Notices::labels`]) to render the message as a follower would see it;
//! * a **chat message** (`kind = "text"`) renders the text of a customer-service message
//!   ([`Notices::chat`]), for what follows the follower's own action in an H5 page (a passive
//!   reply is impossible there, and WeChat lets an account write to a follower for 48 hours
//!   after they last interacted).

use crate::jobs::worker::CustomMessageJob;
use crate::wechat::client::message::CustomMessage;
use crate::wechat::client::template::{TemplateMessage, TemplateValue};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeSpec {
    #[serde(default)]
    kind: Kind,
    #[serde(default)]
    template_id: String,
    template: String,
    #[serde(default)]
    page: Option<String>,
    /// Field name → the label WeChat shows beside its value (`first` and `remark` have none).
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// A label longer than this is refused (WeChat's template keywords are a few words).
const MAX_LABEL_CHARS: usize = 40;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    #[default]
    Template,
    Text,
}

/// Formats template values for a text message: strings are escaped with
/// [`escape_text`](crate::wechat::reply::escape_text) unless marked safe.
pub fn chat_formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    match value.as_str() {
        Some(s) if !value.is_safe() => {
            out.write_str(&crate::wechat::reply::escape_text(s)).map_err(minijinja::Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// A notice that could not be made: a broken template or configuration, ours to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    #[error("notice {0} is not configured")]
    NotConfigured(String),
    #[error("notice {0}: {1}")]
    Render(String, String),
}

/// Why the notices file (or a template it names) could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum NoticesError {
    /// The notices file could not be read.
    #[error("notices: cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The notices file is not TOML of the expected shape.
    #[error("notices: {path}: {}", .source.message().trim())]
    Toml { path: PathBuf, source: toml::de::Error },
    /// A notice's template file could not be read.
    #[error("notices: [{notice}] {path}: {source}")]
    ReadTemplate { notice: String, path: PathBuf, source: std::io::Error },
    /// A notice's template does not compile.
    #[error("notices: [{notice}] {template}: {source}")]
    Template { notice: String, template: String, source: minijinja::Error },
    /// A template message without its `template_id`.
    #[error("notices: [{0}] template_id is empty")]
    NoTemplateId(String),
    /// Labels on a chat notice.
    #[error("notices: [{0}] labels are for template messages, not kind = \"text\"")]
    TextLabels(String),
    /// A label empty or too long.
    #[error("notices: [{notice}] labels.{field}: a label is 1 to {max} characters", max = MAX_LABEL_CHARS)]
    Label { notice: String, field: String },
    /// A notice the code sends is not configured.
    #[error("notices: [{notice}] is missing in {path}")]
    Missing { notice: &'static str, path: PathBuf },
    /// A notice the code sends is configured as the other kind.
    #[error("notices: [{notice}] must be kind = \"{want}\"")]
    WrongKind { notice: &'static str, want: &'static str },
}

/// The notices in force: loaded at start, replaced whole by a reload ([`Notices::replace`]).
pub struct Notices(std::sync::RwLock<std::sync::Arc<Set>>);

/// One loaded set of notices.
struct Set {
    specs: HashMap<String, NoticeSpec>,
    env: minijinja::Environment<'static>,
    public_url: String,
}

/// Notices the code sends; each must be configured (the chat ones as `kind = "text"`).
pub const REQUIRED_CHAT: &[&str] = &["enrolled", "bound"];
pub const REQUIRED: &[&str] = &[
    "booking_confirmed",
    "booking_reminder",
    "redemption_confirmed",
    "points_changed",
    "tier_changed",
    "order_created",
    "order_paid",
    "order_shipped",
    "order_refunded",
];

impl Notices {
    pub fn load(config: &Path, templates: &Path, public_url: &str) -> Result<Notices, NoticesError> {
        let text = std::fs::read_to_string(config)
            .map_err(|source| NoticesError::Read { path: config.to_path_buf(), source })?;
        let specs: HashMap<String, NoticeSpec> =
            toml::from_str(&text).map_err(|source| NoticesError::Toml { path: config.to_path_buf(), source })?;
        let mut env = minijinja::Environment::new();
        // Chat texts render `<a>`: values are escaped for them (template fields are plain text
        // in WeChat's template messages, where the same escaping does no harm).
        env.set_formatter(chat_formatter);
        for (name, spec) in &specs {
            let path = templates.join(&spec.template);
            let source = std::fs::read_to_string(&path).map_err(|source| NoticesError::ReadTemplate {
                notice: name.clone(),
                path: path.clone(),
                source,
            })?;
            env.add_template_owned(spec.template.clone(), source).map_err(|source| NoticesError::Template {
                notice: name.clone(),
                template: spec.template.clone(),
                source,
            })?;
            if spec.kind == Kind::Template && spec.template_id.trim().is_empty() {
                return Err(NoticesError::NoTemplateId(name.clone()));
            }
            if spec.kind == Kind::Text && !spec.labels.is_empty() {
                return Err(NoticesError::TextLabels(name.clone()));
            }
            for (field, label) in &spec.labels {
                let label = label.trim();
                if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
                    return Err(NoticesError::Label { notice: name.clone(), field: field.clone() });
                }
            }
        }
        if let Some(missing) = REQUIRED.iter().chain(REQUIRED_CHAT).find(|r| !specs.contains_key(**r)) {
            return Err(NoticesError::Missing { notice: missing, path: config.to_path_buf() });
        }
        for (names, kind) in [(REQUIRED, Kind::Template), (REQUIRED_CHAT, Kind::Text)] {
            if let Some(wrong) = names.iter().find(|n| specs[**n].kind != kind) {
                let want = if kind == Kind::Text { "text" } else { "template" };
                return Err(NoticesError::WrongKind { notice: wrong, want });
            }
        }
        let set = Set { specs, env, public_url: public_url.trim_end_matches('/').to_owned() };
        Ok(Notices(std::sync::RwLock::new(std::sync::Arc::new(set))))
    }

    /// Puts the notices of `other` in force; a notice being rendered finishes with the old set.
    pub fn replace(&self, other: Notices) {
        let new = other.0.into_inner().unwrap();
        *self.0.write().unwrap() = new;
    }

    fn set(&self) -> std::sync::Arc<Set> {
        self.0.read().unwrap().clone()
    }

    /// The chat message for `notice` to `openid` (a customer-service text), rendered from `ctx`
    /// (`card` links to the card page, and `link(page)` to any H5 page).
    pub fn chat(&self, notice: &str, openid: &str, ctx: minijinja::Value) -> Result<CustomMessageJob, NoticeError> {
        self.set().chat(notice, openid, ctx)
    }

    /// The labels configured for the template messages sent with `template_id` (field name →
    /// label), for showing a message as WeChat does; empty when none are configured.
    pub fn labels(&self, template_id: &str) -> BTreeMap<String, String> {
        let set = self.set();
        let spec = set.specs.values().find(|s| s.kind == Kind::Template && s.template_id == template_id);
        spec.map(|s| s.labels.iter().map(|(k, v)| (k.clone(), v.trim().to_owned())).collect()).unwrap_or_default()
    }

    /// The template message for `notice` to `openid`, its fields rendered from `ctx`.
    pub fn render(&self, notice: &str, openid: &str, ctx: minijinja::Value) -> Result<TemplateMessage, NoticeError> {
        self.set().render(notice, openid, ctx)
    }
}

impl Set {
    fn text(&self, notice: &str, kind: Kind, ctx: minijinja::Value) -> Result<(&NoticeSpec, String), NoticeError> {
        let spec = self
            .specs
            .get(notice)
            .filter(|s| s.kind == kind)
            .ok_or_else(|| NoticeError::NotConfigured(notice.to_owned()))?;
        let text = self
            .env
            .get_template(&spec.template)
            .and_then(|t| t.render(ctx))
            .map_err(|e| NoticeError::Render(notice.to_owned(), e.to_string()))?;
        Ok((spec, text))
    }

    fn chat(&self, notice: &str, openid: &str, ctx: minijinja::Value) -> Result<CustomMessageJob, NoticeError> {
        let links = minijinja::context! { card => format!("{}/h5/start?to=card", self.public_url) };
        let (_, text) = self.text(notice, Kind::Text, minijinja::context! { ..ctx, ..links })?;
        let content = text.trim().to_owned();
        if content.is_empty() {
            return Err(NoticeError::Render(notice.to_owned(), "it rendered empty".into()));
        }
        Ok(CustomMessageJob { touser: openid.to_owned(), message: CustomMessage::Text { content } })
    }

    fn render(&self, notice: &str, openid: &str, ctx: minijinja::Value) -> Result<TemplateMessage, NoticeError> {
        let (spec, text) = self.text(notice, Kind::Template, ctx)?;
        let mut data = BTreeMap::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (field, value) = line.split_once(':').ok_or_else(|| {
                NoticeError::Render(notice.to_owned(), format!("line {line:?} is not `field: value`"))
            })?;
            data.insert(field.trim().to_owned(), TemplateValue { value: value.trim().to_owned() });
        }
        Ok(TemplateMessage {
            touser: openid.to_owned(),
            template_id: spec.template_id.clone(),
            url: spec.page.as_ref().map(|p| format!("{}/h5/start?to={p}", self.public_url)),
            miniprogram: None,
            data,
            client_msg_id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_notices_render() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let n = Notices::load(
            &root.join("config/notices.toml"),
            &root.join("templates/notices"),
            "https://wx.example.com/",
        )
        .unwrap();
        let m = n
            .render(
                "booking_confirmed",
                "o1",
                minijinja::context! { store => "Xintiandi", advisor => "Amy", time => "2026-12-01 14:00" },
            )
            .unwrap();
        assert_eq!(m.template_id, "TPL_BOOKING_CONFIRMED");
        assert_eq!(m.data["keyword1"].value, "Xintiandi");
        assert_eq!(m.data["keyword3"].value, "2026-12-01 14:00");
        assert_eq!(m.url.as_deref(), Some("https://wx.example.com/h5/start?to=card"));
        // The shipped labels, bilingual, for every keyword a template renders.
        let labels = n.labels("TPL_BOOKING_CONFIRMED");
        assert_eq!(labels["keyword3"], "预约时间 Time");
        assert_eq!(
            labels.keys().collect::<Vec<_>>(),
            m.data.keys().filter(|k| k.starts_with("keyword")).collect::<Vec<_>>()
        );
        assert!(n.labels("TPL_NO_SUCH").is_empty());
        assert!(n.render("nope", "o1", minijinja::context! {}).is_err());
        let chat = n.chat("enrolled", "o1", minijinja::context! { name => "Li Lei", card_no => "WX00000001" }).unwrap();
        let CustomMessage::Text { content } = chat.message else { panic!("a text") };
        assert!(
            content.contains("WX00000001") && content.contains("https://wx.example.com/h5/start?to=card"),
            "{content}"
        );
        assert!(
            n.chat("booking_confirmed", "o1", minijinja::context! {}).is_err(),
            "a template notice is not a chat one"
        );
    }

    #[test]
    fn labels_are_checked() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let shipped = std::fs::read_to_string(root.join("config/notices.toml")).unwrap();
        let dir = std::env::temp_dir().join(format!("wxoa-notice-labels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let load = |text: String| {
            let file = dir.join("notices.toml");
            std::fs::write(&file, text).unwrap();
            Notices::load(&file, &root.join("templates/notices"), "https://wx.example.com")
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let cases = [
            (
                shipped.replace(
                    "keyword3 = \"预约时间 Time\" }\npage = \"card\"\n\n[booking_reminder]",
                    "keyword3 = \" \" }\npage = \"card\"\n\n[booking_reminder]",
                ),
                "notices: [booking_confirmed] labels.keyword3: a label is 1 to 40 characters",
            ),
            (
                shipped.replace("template = \"bound.j2\"", "template = \"bound.j2\"\nlabels = { keyword1 = \"Card\" }"),
                "notices: [bound] labels are for template messages, not kind = \"text\"",
            ),
        ];
        for (text, want) in cases {
            assert_ne!(text, shipped, "the case changes the file");
            assert_eq!(load(text).unwrap_err(), want);
        }
        assert_eq!(load(shipped), Ok(()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
