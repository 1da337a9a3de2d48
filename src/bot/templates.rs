//! Reply templates (minijinja), loaded once at start from `templates/replies/`.
//!
//! A template sees the message's fields by their WeChat names (`{{ Content }}`, `{{ EventKey }}`,
//! `{{ Recognition }}`, …) plus `openid`, `msg_type`, `event`, `event_key` and `scene` (the QR
//! scene of a subscribe or SCAN event, without `qrscene_`). Missing fields render empty.
//!
//! Every value is escaped for a text message ([`crate::notices::chat_formatter`]): whatever a follower sent or
//! a product is called cannot add a link to a reply. A template that means to put markup in
//! from a value marks it `|safe`.

use crate::wechat::message::{Body, Event, Message};
use minijinja::Environment;
use minijinja::value::{Enumerator, Object, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a reply template could not be loaded or added.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A directory of templates could not be listed.
    #[error("templates: cannot read {dir}: {source}")]
    ReadDir { dir: PathBuf, source: std::io::Error },
    /// An entry of a listed directory could not be read.
    #[error("templates: {0}")]
    Entry(std::io::Error),
    /// A template file could not be read.
    #[error("templates: {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    /// A template file does not compile.
    #[error("templates: {name}: {source}")]
    Syntax { name: String, source: minijinja::Error },
    /// A template is named that the directory does not hold.
    #[error("template {name:?} not found in {dir}")]
    NotFound { name: String, dir: String },
    /// An inline template does not compile.
    #[error(transparent)]
    Inline(minijinja::Error),
}

/// Cloning copies the environment (its compiled templates are shared), so a reload can add
/// to a copy while the running copy keeps answering.
#[derive(Debug, Default, Clone)]
pub struct Templates {
    env: Environment<'static>,
    files: Vec<String>,
    dir: String,
}

impl Templates {
    /// Loads every `*.j2` file below `dir` (names are paths relative to it, with `/`).
    pub fn load_dir(dir: &Path) -> Result<Templates, TemplateError> {
        let mut env = Environment::new();
        env.set_formatter(crate::notices::chat_formatter);
        let mut t = Templates { env, files: Vec::new(), dir: dir.display().to_string() };
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let entries = std::fs::read_dir(&d).map_err(|source| TemplateError::ReadDir { dir: d.clone(), source })?;
            for entry in entries {
                let path = entry.map_err(TemplateError::Entry)?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "j2") {
                    let name = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                    let source = std::fs::read_to_string(&path)
                        .map_err(|source| TemplateError::ReadFile { path: path.clone(), source })?;
                    t.env
                        .add_template_owned(name.clone(), source)
                        .map_err(|source| TemplateError::Syntax { name: name.clone(), source })?;
                    t.files.push(name);
                }
            }
        }
        Ok(t)
    }

    /// An error unless `name` was loaded from the template directory.
    pub fn require_file(&self, name: &str) -> Result<(), TemplateError> {
        if self.files.iter().any(|f| f == name) {
            Ok(())
        } else {
            Err(TemplateError::NotFound { name: name.to_owned(), dir: self.dir.clone() })
        }
    }

    /// Registers an inline template string under `name`.
    pub fn add_inline(&mut self, name: &str, source: &str) -> Result<(), TemplateError> {
        self.env.add_template_owned(name.to_owned(), source.to_owned()).map_err(TemplateError::Inline)
    }

    /// Renders `name` for `msg`, trimmed.
    pub fn render(&self, name: &str, msg: &Arc<Message>) -> Result<String, minijinja::Error> {
        let ctx = Value::from_object(MessageContext(msg.clone()));
        let out = self.env.get_template(name)?.render(ctx)?;
        Ok(out.trim().to_owned())
    }

    /// Renders `name` for `msg` with `extra` values a handler adds (they win over message fields).
    pub fn render_with(&self, name: &str, msg: &Arc<Message>, extra: Value) -> Result<String, minijinja::Error> {
        let ctx = minijinja::context! { ..extra, ..Value::from_object(MessageContext(msg.clone())) };
        let out = self.env.get_template(name)?.render(ctx)?;
        Ok(out.trim().to_owned())
    }
}

/// Lazily exposes a message to templates without copying its fields into a map.
#[derive(Debug)]
struct MessageContext(Arc<Message>);

impl Object for MessageContext {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let m = &self.0;
        let key = key.as_str()?;
        let v = match key {
            "openid" => Value::from(m.openid.as_str()),
            "msg_type" => Value::from(m.msg_type.as_str()),
            "event" => Value::from(m.event()?),
            "event_key" => Value::from(m.event_key()?),
            "scene" => match &m.body {
                Body::Event(Event::Subscribe { scene: Some(s), .. }) | Body::Event(Event::Scan { scene: s, .. }) => {
                    Value::from(s.as_str())
                }
                _ => return None,
            },
            other => Value::from(m.fields.get(other)?),
        };
        Some(v)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::NonEnumerable
    }
}
