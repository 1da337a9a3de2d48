//! [`AppState`]: what every HTTP handler gets — the config, the loaded files (page sets,
//! notices), the bot, the database, the WeChat client, and the wake-ups of the background
//! workers. Built once by [`crate::app::App::build`]; cheap to clone (one `Arc`).

use crate::bot::Bot;
use crate::config::Config;
use crate::store::Store;
use crate::wechat::client::Client;
use crate::wechat::envelope::Envelope;
use metrics_exporter_prometheus::PrometheusHandle;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What every handler gets (cheap to clone).
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

pub struct Inner {
    pub config: Config,
    /// Where every handler reads the time (the store's clock too).
    pub clock: crate::clock::Clock,
    pub envelope: Envelope,
    pub bot: Arc<Bot>,
    pub store: Store,
    pub client: Client,
    /// The H5 pages.
    pub pages: Arc<Pages>,
    /// The marketing console's pages.
    pub admin_pages: Arc<Pages>,
    pub notices: crate::notices::Notices,
    pub metrics: PrometheusHandle,
    /// Wakes the outbox worker after enqueueing something due now.
    pub outbox_wake: Arc<tokio::sync::Notify>,
    /// Wakes the push scheduler after a push is scheduled.
    pub scheduler_wake: Arc<tokio::sync::Notify>,
    /// Reads the files again, for [`Inner::reload`].
    pub reload_files: LoadFiles,
    /// One reload at a time.
    pub reloading: tokio::sync::Mutex<()>,
}

/// Everything `serve` loads from files: routing rules and reply templates, page sets, notices
/// (the menu file is checked with them).
pub struct Files {
    pub rules: crate::bot::rules::Rules,
    pub templates: crate::bot::templates::Templates,
    pub pages: Pages,
    pub admin_pages: Pages,
    pub notices: crate::notices::Notices,
}

/// How the files are read (by the wiring, which knows where they are and which handlers exist);
/// the error is the wiring's own, shown as it is.
pub type LoadFiles = Arc<dyn Fn() -> Result<Files, Box<dyn std::error::Error + Send + Sync>> + Send + Sync>;

/// Why a reload left the files in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A file does not load: the first problem, as a start would report it.
    #[error("{0}")]
    Files(Box<dyn std::error::Error + Send + Sync>),
    /// The task reading the files did not finish (it panicked).
    #[error("reload: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The console's replies could not be read.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl Inner {
    /// Reads routes, reply templates, pages, notices and the menu file again and puts them in
    /// force together (SIGHUP, `POST /api/v1/reload`). Everything is read and checked before
    /// anything changes: a broken file leaves the running set untouched and is the error. A
    /// message or page in flight finishes with the set it started with.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let _one = self.reloading.lock().await;
        let load = self.reload_files.clone();
        let files = tokio::task::spawn_blocking(move || load()).await?.map_err(ReloadError::Files)?;
        let base = crate::bot::Routing { rules: files.rules, templates: Arc::new(files.templates) };
        // The console's replies on top of the new files, read before anything is swapped.
        let generation = crate::replies::generation(&self.store).await?;
        let routing = crate::replies::load(&self.store, &base).await?;
        self.pages.replace(files.pages);
        self.admin_pages.replace(files.admin_pages);
        self.notices.replace(files.notices);
        let version = self.bot.set_base(base);
        self.bot.set_routing((version, generation), routing);
        Ok(())
    }

    /// How points are posted now: the loyalty rules, the CRM's events, the notices.
    pub fn points_rules(&self) -> crate::members::points::Rules<'_> {
        crate::members::points::Rules {
            loyalty: &self.config.loyalty,
            crm: self.crm_events(),
            notices: Some(&self.notices),
            tiers: true,
            now: self.clock.now_ms(),
        }
    }

    /// Whether member changes are recorded as CRM events (`crm.webhook_url` is set).
    pub fn crm_events(&self) -> crate::crm::Events {
        crate::crm::Events::new(&self.config.crm.webhook_url)
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Why a set of pages could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PagesError {
    /// The directory could not be listed.
    #[error("pages: cannot read {dir}: {source}")]
    ReadDir { dir: PathBuf, source: std::io::Error },
    /// An entry of the directory could not be read.
    #[error("pages: {0}")]
    Entry(std::io::Error),
    /// A page could not be read.
    #[error("pages: {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    /// A page does not compile.
    #[error("pages: {name}: {source}")]
    Syntax { name: String, source: minijinja::Error },
    /// A page the server needs is not in the directory.
    #[error("pages: {name} missing in {dir}")]
    Missing { name: String, dir: PathBuf },
}

/// A set of page templates (`*.html`, HTML-escaped), loaded at start and replaced whole by a
/// reload ([`Pages::replace`]); a page being rendered finishes with the set it started with.
pub struct Pages(std::sync::RwLock<Arc<minijinja::Environment<'static>>>);

impl Pages {
    /// Every `*.html` in `dir`, refusing to start without the `required` ones.
    pub fn load(dir: &Path, required: &[&str]) -> Result<Pages, PagesError> {
        let mut env = minijinja::Environment::new();
        let entries =
            std::fs::read_dir(dir).map_err(|source| PagesError::ReadDir { dir: dir.to_path_buf(), source })?;
        for entry in entries {
            let path = entry.map_err(PagesError::Entry)?.path();
            if path.extension().is_some_and(|e| e == "html") {
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                let source = std::fs::read_to_string(&path)
                    .map_err(|source| PagesError::ReadFile { path: path.clone(), source })?;
                env.add_template_owned(name.clone(), source)
                    .map_err(|source| PagesError::Syntax { name: name.clone(), source })?;
            }
        }
        for required in required {
            env.get_template(required)
                .map_err(|_| PagesError::Missing { name: (*required).to_owned(), dir: dir.to_path_buf() })?;
        }
        Ok(Pages(std::sync::RwLock::new(Arc::new(env))))
    }

    /// `name` rendered with `ctx`.
    pub fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, minijinja::Error> {
        let env = self.0.read().unwrap().clone();
        env.get_template(name)?.render(ctx)
    }

    /// Puts the pages of `other` in force.
    pub fn replace(&self, other: Pages) {
        let new = other.0.into_inner().unwrap();
        *self.0.write().unwrap() = new;
    }
}
