//! Template-message notices (`config/notices.toml` + `templates/notices/*.j2`): each notice names
//! its WeChat template id and a text template that renders one `field: value` line per template
//! field. Rendering produces a [`TemplateMessage`] ready for the outbox.

use crate::wechat::client::template::{TemplateMessage, TemplateValue};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeSpec {
    template_id: String,
    template: String,
    #[serde(default)]
    page: Option<String>,
}

pub struct Notices {
    specs: HashMap<String, NoticeSpec>,
    env: minijinja::Environment<'static>,
    public_url: String,
}

/// Notices the code sends; each must be configured.
pub const REQUIRED: &[&str] = &[
    "booking_confirmed",
    "booking_reminder",
    "redemption_confirmed",
    "points_changed",
    "order_created",
    "order_paid",
    "order_shipped",
    "order_refunded",
];

impl Notices {
    pub fn load(config: &Path, templates: &Path, public_url: &str) -> Result<Notices, String> {
        let text =
            std::fs::read_to_string(config).map_err(|e| format!("notices: cannot read {}: {e}", config.display()))?;
        let specs: HashMap<String, NoticeSpec> =
            toml::from_str(&text).map_err(|e| format!("notices: {}: {}", config.display(), e.message().trim()))?;
        let mut env = minijinja::Environment::new();
        for (name, spec) in &specs {
            let path = templates.join(&spec.template);
            let source =
                std::fs::read_to_string(&path).map_err(|e| format!("notices: [{name}] {}: {e}", path.display()))?;
            env.add_template_owned(spec.template.clone(), source)
                .map_err(|e| format!("notices: [{name}] {}: {e}", spec.template))?;
            if spec.template_id.trim().is_empty() {
                return Err(format!("notices: [{name}] template_id is empty"));
            }
        }
        if let Some(missing) = REQUIRED.iter().find(|r| !specs.contains_key(**r)) {
            return Err(format!("notices: [{missing}] is missing in {}", config.display()));
        }
        Ok(Notices { specs, env, public_url: public_url.trim_end_matches('/').to_owned() })
    }

    /// The template message for `notice` to `openid`, its fields rendered from `ctx`.
    pub fn render(&self, notice: &str, openid: &str, ctx: minijinja::Value) -> Result<TemplateMessage, String> {
        let spec = self.specs.get(notice).ok_or_else(|| format!("notice {notice} is not configured"))?;
        let text = self
            .env
            .get_template(&spec.template)
            .and_then(|t| t.render(ctx))
            .map_err(|e| format!("notice {notice}: {e}"))?;
        let mut data = BTreeMap::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (field, value) =
                line.split_once(':').ok_or_else(|| format!("notice {notice}: line {line:?} is not `field: value`"))?;
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
        assert!(n.render("nope", "o1", minijinja::context! {}).is_err());
    }
}
