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
use std::path::Path;
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

/// How the files are read (by the wiring, which knows where they are and which handlers exist).
pub type LoadFiles = Arc<dyn Fn() -> Result<Files, String> + Send + Sync>;

impl Inner {
    /// Reads routes, reply templates, pages, notices and the menu file again and puts them in
    /// force together (SIGHUP, `POST /api/v1/reload`). Everything is read and checked before
    /// anything changes: a broken file leaves the running set untouched and is the error. A
    /// message or page in flight finishes with the set it started with.
    pub async fn reload(&self) -> Result<(), String> {
        let _one = self.reloading.lock().await;
        let load = self.reload_files.clone();
        let files = tokio::task::spawn_blocking(move || load()).await.map_err(|e| format!("reload: {e}"))??;
        let base = crate::bot::Routing { rules: files.rules, templates: Arc::new(files.templates) };
        // The console's replies on top of the new files, read before anything is swapped.
        let generation = crate::replies::generation(&self.store).await.map_err(|e| format!("database: {e}"))?;
        let routing = crate::replies::load(&self.store, &base).await.map_err(|e| format!("database: {e}"))?;
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

/// A set of page templates (`*.html`, HTML-escaped), loaded at start and replaced whole by a
/// reload ([`Pages::replace`]); a page being rendered finishes with the set it started with.
pub struct Pages(std::sync::RwLock<Arc<minijinja::Environment<'static>>>);

impl Pages {
    /// Every `*.html` in `dir`, refusing to start without the `required` ones.
    pub fn load(dir: &Path, required: &[&str]) -> Result<Pages, String> {
        let mut env = minijinja::Environment::new();
        let entries = std::fs::read_dir(dir).map_err(|e| format!("pages: cannot read {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| format!("pages: {e}"))?.path();
            if path.extension().is_some_and(|e| e == "html") {
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                let source = std::fs::read_to_string(&path).map_err(|e| format!("pages: {}: {e}", path.display()))?;
                env.add_template_owned(name.clone(), source).map_err(|e| format!("pages: {name}: {e}"))?;
            }
        }
        for required in required {
            env.get_template(required).map_err(|_| format!("pages: {required} missing in {}", dir.display()))?;
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
