//! What a pure rule answers: the routing in force (rules and the templates they name), a
//! template's text, an inline reply's fields, and how a result becomes the logged outcome.

use super::handlers::{HandlerError, HandlerResult};
use super::rules::{self, Action, ReplyKind, Rules};
use super::templates::Templates;
use crate::store::messages::Outcome;
use crate::wechat::message::Message;
use crate::wechat::reply::{Article, Reply};
use std::sync::Arc;

/// What routes a message and renders its reply: the rules (the file's, with the console's
/// replies among them) and the templates they name. Swapped whole, so a message is routed and
/// answered by one version.
#[derive(Debug, Clone)]
pub struct Routing {
    pub rules: Rules,
    pub templates: Arc<Templates>,
}

impl Routing {
    /// This routing with `more` rules (the console's replies) built into a copy of its
    /// templates and merged by priority; the first rule that does not build is the error.
    pub fn with(&self, more: Vec<rules::RuleSpec>) -> Result<Routing, ReplyRuleError> {
        let mut templates = (*self.templates).clone();
        let mut built = Vec::with_capacity(more.len());
        for spec in more {
            let name = spec.name.clone();
            built.push(rules::build(spec, &mut templates, &|_| false).map_err(|why| ReplyRuleError { name, why })?);
        }
        Ok(Routing { rules: self.rules.merged(built), templates: Arc::new(templates) })
    }
}

/// A console reply that does not build into a rule.
#[derive(Debug, thiserror::Error)]
#[error("reply {name:?}: {why}")]
pub struct ReplyRuleError {
    /// The reply's name.
    pub name: String,
    /// What is wrong with it.
    pub why: rules::RuleError,
}

/// A handler's or template's result as the outcome to log and the reply to send: an invalid
/// reply or a failure is answered `success` (logged as failed).
pub(super) fn settle(result: HandlerResult) -> (Outcome, Option<Reply>) {
    match result {
        Ok(Some(reply)) => match reply.validate() {
            Ok(()) => (Outcome::Replied, Some(reply)),
            Err(e) => {
                tracing::warn!(error = %e, "handler produced an invalid reply; answering success");
                (Outcome::Failed, None)
            }
        },
        Ok(None) => (Outcome::Nothing, None),
        Err(e) => {
            tracing::error!(error = %e, "handler failed; answering success");
            (Outcome::Failed, None)
        }
    }
}

pub(super) fn render_text(templates: &Templates, template: &str, msg: &Arc<Message>) -> HandlerResult {
    let text = templates.render(template, msg).map_err(|e| HandlerError::Template(template.into(), e))?;
    // An empty text reply would show followers an error; say nothing instead.
    Ok(Reply::text(text).ok())
}

/// The reply a pure rule gives `msg` (`None` for no reply) — what the console's preview shows.
pub fn render(routing: &Routing, rule: &rules::Rule, msg: &Arc<Message>) -> HandlerResult {
    match &rule.action {
        Action::Text { template } => render_text(&routing.templates, template, msg),
        Action::Inline { kind, fields, articles } => render_inline(&routing.templates, *kind, fields, articles, msg),
        Action::Nothing | Action::Handler(_) => Ok(None),
    }
}

pub(super) fn render_inline(
    templates: &Templates,
    kind: ReplyKind,
    fields: &[(String, String)],
    articles: &[[String; 4]],
    msg: &Arc<Message>,
) -> HandlerResult {
    let render = |name: &str| templates.render(name, msg).map_err(|e| HandlerError::Template(name.into(), e));
    let get = |field: &str| -> Result<String, HandlerError> {
        match fields.iter().find(|(f, _)| f == field) {
            Some((_, name)) => render(name),
            None => Ok(String::new()),
        }
    };
    let reply = match kind {
        ReplyKind::Text => return Ok(Reply::text(get("content")?).ok()),
        ReplyKind::Image => Reply::Image { media_id: get("media_id")? },
        ReplyKind::Voice => Reply::Voice { media_id: get("media_id")? },
        ReplyKind::Video => {
            Reply::Video { media_id: get("media_id")?, title: get("title")?, description: get("description")? }
        }
        ReplyKind::Music => Reply::Music {
            title: get("title")?,
            description: get("description")?,
            music_url: get("music_url")?,
            hq_music_url: get("hq_music_url")?,
            thumb_media_id: get("thumb_media_id")?,
        },
        ReplyKind::News => {
            let mut list = Vec::with_capacity(articles.len());
            for names in articles {
                list.push(Article {
                    title: render(&names[0])?,
                    description: render(&names[1])?,
                    url: render(&names[2])?,
                    pic_url: render(&names[3])?,
                });
            }
            Reply::news(list)?
        }
        ReplyKind::TransferCustomerService => {
            let kf = get("kf_account")?;
            Reply::TransferCustomerService { kf_account: (!kf.is_empty()).then_some(kf) }
        }
    };
    Ok(Some(reply))
}
