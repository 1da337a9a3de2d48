//! Routing rules from `config/routes.toml`.
//!
//! ```toml
//! [[rule]]
//! name = "help"                    # unique; recorded with each reply
//! priority = 10                    # higher first; ties keep file order
//! msg_type = "text"                # optional, as are event, event_key, scene and text
//! event = "CLICK"                  # case-insensitive
//! event_key = { prefix = "menu_" } # the EventKey as WeChat sends it
//! scene = { prefix = "store_" }    # a parametric QR code's scene, without `qrscene_`
//! text = { keyword = ["help", "帮助"] }  # "exact" | { exact | keyword | prefix | regex }
//! template = "help.j2"             # the action: a template (text reply by default), or
//! # reply = "news" + articles = [{ title, description, url, pic_url }], or handler = "…"
//! ```
//! The file is checked when loaded: an unknown handler, a bad regex, a missing template or no
//! (or two) actions is one error naming the rule. Rules match the parsed message: type and event
//! from the typed body, the scene from a subscribe or SCAN event, the text from a text message or
//! a voice message's recognised speech; every string of an inline reply is a template too.

use super::templates::{TemplateError, Templates};
use crate::wechat::message::{Message, MsgType};
use regex::Regex;
use serde::Deserialize;

/// Why a routes file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file is not TOML of the expected shape.
    #[error("{}", .0.message().trim())]
    Toml(#[from] toml::de::Error),
    /// Two rules have this name.
    #[error("rule {0:?}: duplicate name")]
    Duplicate(String),
    /// The rule of this name does not build.
    #[error("rule {name:?}: {source}")]
    Rule { name: String, source: RuleError },
}

/// Why one rule does not build (see [`build`]).
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// A matcher table gives none, or more than one, of its kinds.
    #[error("{0} needs exactly one of exact, prefix, keyword, regex")]
    MatchKinds(&'static str),
    /// `keyword` on a field that is not the text.
    #[error("{0} does not take keyword")]
    NoKeyword(&'static str),
    /// No keywords, or an empty one.
    #[error("{0}: keywords must not be empty")]
    EmptyKeyword(&'static str),
    /// The regex does not compile (or is too large).
    #[error("{what}: bad regex: {source}")]
    Regex { what: &'static str, source: regex::Error },
    /// No action given.
    #[error("needs one of template, reply or handler")]
    NoAction,
    /// More than one action given.
    #[error("give only one of template, reply or handler")]
    TwoActions,
    /// A handler the bot does not have.
    #[error("unknown handler {0:?}")]
    UnknownHandler(String),
    /// The template named is missing.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// `reply` names no reply type.
    #[error("reply must be one of {}", REPLY_KINDS)]
    ReplyKind,
    /// The reply type needs this field.
    #[error("reply {kind:?} needs {field}")]
    Missing { kind: String, field: &'static str },
    /// A field of an inline reply does not compile as a template.
    #[error("{field}: {source}")]
    Field { field: String, source: TemplateError },
    /// A news reply without articles, or with too many.
    #[error("reply \"news\" needs 1 to 8 articles")]
    Articles,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

/// One rule as written: a `[[rule]]` of the file, or a reply edited in the console
/// (`crate::replies` builds these).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    #[serde(default)]
    pub priority: i64,
    pub msg_type: Option<String>,
    pub event: Option<String>,
    pub event_key: Option<MatchSpec>,
    pub scene: Option<MatchSpec>,
    pub text: Option<MatchSpec>,
    pub template: Option<String>,
    pub handler: Option<String>,
    pub reply: Option<String>,
    pub content: Option<String>,
    pub media_id: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub music_url: Option<String>,
    pub hq_music_url: Option<String>,
    pub thumb_media_id: Option<String>,
    pub kf_account: Option<String>,
    #[serde(default)]
    pub articles: Vec<ArticleSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArticleSpec {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub pic_url: String,
}

/// How a field is matched, as written: a bare string is `exact`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MatchSpec {
    Exact(String),
    Table { exact: Option<String>, prefix: Option<String>, keyword: Option<Keywords>, regex: Option<String> },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Keywords {
    One(String),
    Many(Vec<String>),
}

/// How a string field is matched.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Equal after trimming surrounding white space.
    Exact(String),
    Prefix(String),
    /// Contains any of these (case-insensitive), each searched for with a finder built once:
    /// `str::contains` sets its searcher up again on every call, for every keyword of every
    /// rule a message meets.
    Keyword(Vec<memchr::memmem::Finder<'static>>),
    Regex(Regex),
}

impl Matcher {
    pub fn is_match(&self, value: &str) -> bool {
        self.is_match_in(value, &std::cell::OnceCell::new())
    }

    /// As [`Matcher::is_match`], with `lower` holding (or getting) `value` in lower case: a
    /// message meets every keyword rule with the one lowering (a lowering per rule cost 40% of the
    /// webhook's throughput with 200 console replies).
    fn is_match_in(&self, value: &str, lower: &std::cell::OnceCell<String>) -> bool {
        match self {
            Matcher::Exact(s) => value.trim() == s,
            Matcher::Prefix(p) => value.starts_with(p.as_str()),
            Matcher::Keyword(words) => {
                let lower = lower.get_or_init(|| value.to_lowercase());
                words.iter().any(|w| w.find(lower.as_bytes()).is_some())
            }
            Matcher::Regex(re) => re.is_match(value),
        }
    }
}

/// The reply types an inline rule may give (`reply = "news"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Text,
    Image,
    Voice,
    Video,
    Music,
    News,
    TransferCustomerService,
}

impl ReplyKind {
    fn parse(s: &str) -> Option<ReplyKind> {
        Some(match s {
            "text" => ReplyKind::Text,
            "image" => ReplyKind::Image,
            "voice" => ReplyKind::Voice,
            "video" => ReplyKind::Video,
            "music" => ReplyKind::Music,
            "news" => ReplyKind::News,
            "transfer_customer_service" => ReplyKind::TransferCustomerService,
            _ => return None,
        })
    }
}

/// What a matching rule does. Template names refer to [`Templates`].
#[derive(Debug, Clone)]
pub enum Action {
    /// A text reply rendered from a template.
    Text { template: String },
    /// A reply of another type whose string fields are templates (named in `fields`).
    Inline { kind: ReplyKind, fields: Vec<(String, String)>, articles: Vec<[String; 4]> },
    /// A built-in handler.
    Handler(String),
    /// Answer `success`.
    Nothing,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub priority: i64,
    msg_type: Option<MsgType>,
    event: Option<String>,
    event_key: Option<Matcher>,
    scene: Option<Matcher>,
    text: Option<Matcher>,
    pub action: Action,
}

impl Rule {
    pub fn matches(&self, msg: &Message) -> bool {
        self.matches_in(msg, &std::cell::OnceCell::new())
    }

    /// As [`Rule::matches`], sharing the lowered text (`said_lower`) across the rules tried.
    fn matches_in(&self, msg: &Message, said_lower: &std::cell::OnceCell<String>) -> bool {
        if self.msg_type.as_ref().is_some_and(|t| t != msg.kind()) {
            return false;
        }
        let event = msg.as_event();
        if let Some(name) = &self.event
            && !event.is_some_and(|e| e.name().eq_ignore_ascii_case(name))
        {
            return false;
        }
        if let Some(m) = &self.event_key
            && !msg.event_key().is_some_and(|k| m.is_match(k))
        {
            return false;
        }
        if let Some(m) = &self.scene
            && !event.and_then(|e| e.scene()).is_some_and(|s| m.is_match(s))
        {
            return false;
        }
        if let Some(m) = &self.text
            && !msg.said().is_some_and(|t| m.is_match_in(t, said_lower))
        {
            return false;
        }
        true
    }
}

/// The loaded rule set, in match order.
#[derive(Debug, Clone, Default)]
pub struct Rules(Vec<Rule>);

impl Rules {
    /// Parses and validates `text`; templates referenced by rules are registered in `templates`.
    pub fn parse(
        text: &str,
        templates: &mut Templates,
        handler_known: impl Fn(&str) -> bool,
    ) -> Result<Rules, RulesError> {
        let file: File = toml::from_str(text)?;
        let mut rules = Vec::with_capacity(file.rule.len());
        let mut names = std::collections::HashSet::new();
        for spec in file.rule {
            let name = spec.name.clone();
            if !names.insert(name.clone()) {
                return Err(RulesError::Duplicate(name));
            }
            let rule = build(spec, templates, &handler_known).map_err(|source| RulesError::Rule { name, source })?;
            rules.push(rule);
        }
        // Stable: equal priorities keep file order.
        rules.sort_by_key(|r| std::cmp::Reverse(r.priority));
        Ok(Rules(rules))
    }

    /// The first rule that matches.
    pub fn route(&self, msg: &Message) -> Option<&Rule> {
        let said_lower = std::cell::OnceCell::new();
        self.0.iter().find(|r| r.matches_in(msg, &said_lower))
    }

    /// The rules in match order.
    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.0.iter()
    }

    /// These rules with `more` among them by priority; at equal priority these come first
    /// (the file's rule wins over a console reply of the same priority).
    pub fn merged(&self, more: Vec<Rule>) -> Rules {
        let mut all: Vec<Rule> = self.0.iter().cloned().chain(more).collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.priority));
        Rules(all)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn matcher(spec: MatchSpec, what: &'static str, allow_keyword: bool) -> Result<Matcher, RuleError> {
    let m = match spec {
        MatchSpec::Exact(s) => Matcher::Exact(s),
        MatchSpec::Table { exact, prefix, keyword, regex } => {
            let given = [exact.is_some(), prefix.is_some(), keyword.is_some(), regex.is_some()];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err(RuleError::MatchKinds(what));
            }
            if let Some(s) = exact {
                Matcher::Exact(s)
            } else if let Some(p) = prefix {
                Matcher::Prefix(p)
            } else if let Some(k) = keyword {
                if !allow_keyword {
                    return Err(RuleError::NoKeyword(what));
                }
                let words = match k {
                    Keywords::One(w) => vec![w],
                    Keywords::Many(ws) => ws,
                };
                if words.is_empty() || words.iter().any(|w| w.is_empty()) {
                    return Err(RuleError::EmptyKeyword(what));
                }
                Matcher::Keyword(
                    words.into_iter().map(|w| memchr::memmem::Finder::new(&w.to_lowercase()).into_owned()).collect(),
                )
            } else {
                let re = regex.unwrap_or_default();
                // Bounded: a pattern that compiles to a huge automaton is refused, not run.
                let re = regex::RegexBuilder::new(&re).size_limit(1 << 20).build();
                Matcher::Regex(re.map_err(|source| RuleError::Regex { what, source })?)
            }
        }
    };
    Ok(m)
}

const REPLY_KINDS: &str = "text, image, voice, video, music, news, transfer_customer_service, none";

/// Builds one rule, registering its inline templates in `templates`.
pub fn build(
    mut spec: RuleSpec,
    templates: &mut Templates,
    handler_known: &impl Fn(&str) -> bool,
) -> Result<Rule, RuleError> {
    let event_key = spec.event_key.take().map(|m| matcher(m, "event_key", false)).transpose()?;
    let scene = spec.scene.take().map(|m| matcher(m, "scene", false)).transpose()?;
    let text = spec.text.take().map(|m| matcher(m, "text", true)).transpose()?;
    let actions = [spec.template.is_some(), spec.handler.is_some(), spec.reply.is_some()];
    let action = match actions.iter().filter(|a| **a).count() {
        0 => return Err(RuleError::NoAction),
        1 => {
            if let Some(h) = spec.handler.take() {
                if !handler_known(&h) {
                    return Err(RuleError::UnknownHandler(h));
                }
                Action::Handler(h)
            } else if let Some(t) = spec.template.take() {
                templates.require_file(&t)?;
                Action::Text { template: t }
            } else {
                inline(&spec.name, spec.reply.clone().unwrap_or_default(), &spec, templates)?
            }
        }
        _ => {
            // `reply = "text"` with a template is the one allowed pair.
            if spec.handler.is_none() && spec.reply.as_deref() == Some("text") {
                let t = spec.template.take().unwrap_or_default();
                templates.require_file(&t)?;
                Action::Text { template: t }
            } else {
                return Err(RuleError::TwoActions);
            }
        }
    };
    Ok(Rule {
        name: spec.name,
        priority: spec.priority,
        msg_type: spec.msg_type.as_deref().map(MsgType::parse),
        event: spec.event,
        event_key,
        scene,
        text,
        action,
    })
}

fn inline(rule: &str, name: String, spec: &RuleSpec, templates: &mut Templates) -> Result<Action, RuleError> {
    if name == "none" {
        return Ok(Action::Nothing);
    }
    let kind = ReplyKind::parse(&name).ok_or(RuleError::ReplyKind)?;
    let needs: &[&str] = match kind {
        ReplyKind::Text => &["content"],
        ReplyKind::Image | ReplyKind::Voice | ReplyKind::Video => &["media_id"],
        ReplyKind::Music => &["thumb_media_id"],
        ReplyKind::News | ReplyKind::TransferCustomerService => &[],
    };
    let given: [(&str, &Option<String>); 8] = [
        ("content", &spec.content),
        ("media_id", &spec.media_id),
        ("title", &spec.title),
        ("description", &spec.description),
        ("music_url", &spec.music_url),
        ("hq_music_url", &spec.hq_music_url),
        ("thumb_media_id", &spec.thumb_media_id),
        ("kf_account", &spec.kf_account),
    ];
    let mut fields = Vec::new();
    for (field, value) in given {
        match value {
            Some(v) => {
                let name = format!("rule:{rule}:{field}");
                templates
                    .add_inline(&name, v)
                    .map_err(|source| RuleError::Field { field: field.to_owned(), source })?;
                fields.push((field.to_owned(), name));
            }
            None if needs.contains(&field) => return Err(RuleError::Missing { kind: name, field }),
            None => {}
        }
    }
    let mut articles = Vec::new();
    if kind == ReplyKind::News {
        if spec.articles.is_empty() || spec.articles.len() > crate::wechat::reply::MAX_ARTICLES {
            return Err(RuleError::Articles);
        }
        for (i, a) in spec.articles.iter().enumerate() {
            let mut names: [String; 4] = Default::default();
            for (j, (field, v)) in
                [("title", &a.title), ("description", &a.description), ("url", &a.url), ("pic_url", &a.pic_url)]
                    .into_iter()
                    .enumerate()
            {
                let name = format!("rule:{rule}:articles.{i}.{field}");
                templates
                    .add_inline(&name, v)
                    .map_err(|source| RuleError::Field { field: format!("articles[{i}].{field}"), source })?;
                names[j] = name;
            }
            articles.push(names);
        }
    }
    Ok(Action::Inline { kind, fields, articles })
}
