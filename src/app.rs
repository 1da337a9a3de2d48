//! Wiring, and only wiring: from a [`Config`] and the files it names to a running server —
//! load and check the files, open the database, start the message log, the outbox worker, the
//! push scheduler and the hourly housekeeping, build the [`AppState`], merge the routers,
//! serve, and on the shutdown signal stop it all in order, each within the grace.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::bot::Bot;
use crate::bot::handlers::Handlers;
use crate::bot::rules::Rules;
use crate::bot::templates::Templates;
use crate::config::Config;
use crate::jobs::worker::Worker;
use crate::state::{AppState, Files, Inner, Pages};
use crate::store::messages::MessageLog;
use crate::store::{Create, Store};
use crate::wechat::client::Client;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::sync::{Arc, OnceLock};

/// A start-up failure, printed as one line.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// The process-wide Prometheus recorder (installed once, shared by every app in a process).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding program's): keep ours local then.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Loads templates and rules as `serve` would, without touching the database.
pub fn load_routing(config: &Config, handlers: &Handlers) -> Result<(Rules, Templates), StartError> {
    let mut templates = Templates::load_dir(&config.bot.templates).map_err(|e| StartError(e.to_string()))?;
    let path = &config.bot.routes;
    let text = std::fs::read_to_string(path)
        .map_err(|e| StartError(format!("routes: cannot read {}: {e}", path.display())))?;
    let rules = Rules::parse(&text, &mut templates, |h| handlers.contains(h))
        .map_err(|e| StartError(format!("routes: {}: {e}", path.display())))?;
    // Handlers that answer from a template of their own: missing is a start-up error, not a
    // failed reply at the worst moment.
    if handlers.contains("checkout_link") {
        templates
            .require_file(crate::bot::handlers::SOLD_OUT_TEMPLATE)
            .map_err(|e| StartError(format!("templates: {e} (checkout_link answers \"sold out\" with it)")))?;
    }
    Ok((rules, templates))
}

/// A built application: state plus the background tasks it owns.
pub struct App {
    pub state: AppState,
    log_writer: tokio::task::JoinHandle<()>,
    worker: Option<(tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
    scheduler: Option<(tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
    /// The hourly housekeeping (lapsed points, tiers, purges).
    expiries: tokio::task::JoinHandle<()>,
    /// The follower directory reading the message log behind the webhook.
    directory: (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>),
    /// Applies changes of the console's replies to the bot.
    replies: (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>),
    /// SIGHUP, registered as the app is built (its default action would end the process).
    hangups: Option<tokio::signal::unix::Signal>,
}

/// The console's page templates (start-up fails without one).
const CONSOLE_PAGES: &[&str] = &[
    "login.html",
    "dashboard.html",
    "new.html",
    "campaign.html",
    "push.html",
    "push_cancel.html",
    "message.html",
    "replies.html",
    "reply.html",
    "segments.html",
    "followers.html",
    "follower.html",
];

fn load_files(config: &Config, handlers: &Handlers) -> Result<Files, StartError> {
    let (rules, templates) = load_routing(config, handlers)?;
    let pages = Pages::load(&config.h5.pages, crate::h5::PAGES).map_err(|e| StartError(e.to_string()))?;
    let admin_pages = Pages::load(&config.admin.pages, CONSOLE_PAGES).map_err(|e| StartError(e.to_string()))?;
    let n = &config.notices;
    let notices = crate::notices::Notices::load(&n.file, &n.templates, &config.h5.public_url)
        .map_err(|e| StartError(e.to_string()))?;
    // The menu is pushed by `wxoa menu sync`, not served; a broken one is reported all the same.
    if config.bot.menu.exists() {
        let menu = crate::menu::MenuFile::load(&config.bot.menu, &config.h5.public_url)
            .map_err(|e| StartError(format!("menu: {e}")))?;
        if let Some(problem) = menu.check().into_iter().next() {
            return Err(StartError(format!("menu: {}: {problem}", config.bot.menu.display())));
        }
    }
    Ok(Files { rules, templates, pages, admin_pages, notices })
}

impl App {
    /// Loads every file `build` would (routes, templates, pages, notices, the menu) and reports the first
    /// problem, touching neither the database nor the network.
    pub fn check(config: &Config, handlers: &Handlers) -> Result<(), StartError> {
        load_files(config, handlers).map(|_| ())
    }

    /// Connects and migrates the database, loads rules and templates, starts the message log.
    pub async fn build(config: Config, handlers: Handlers) -> Result<App, StartError> {
        let Files { rules, templates, pages, admin_pages, notices } = load_files(&config, &handlers)?;
        let reload_files: crate::state::LoadFiles = {
            let (config, handlers) = (config.clone(), handlers.clone());
            Arc::new(move || load_files(&config, &handlers).map_err(Into::into))
        };
        let db = &config.database;
        let store = Store::open_migrated(
            &db.url,
            db.max_connections,
            if db.create { Create::Always } else { Create::FirstRun },
        )
        .await
        .map_err(|e| StartError(e.to_string()))?
        .with_clock(config.clock.clone());
        upgrade(&store).await.map_err(|e| StartError(e.to_string()))?;
        let (log, log_writer) = MessageLog::start(store.clone()).map_err(|e| StartError(e.to_string()))?;
        let committed = log.committed();
        let outbox_wake = Arc::new(tokio::sync::Notify::new());
        let deadline = Duration::from_millis(config.bot.reply_deadline_ms);
        let bot = Arc::new(
            Bot::new(rules, templates, handlers, log, deadline, outbox_wake.clone(), &config.h5.public_url)
                .with_checkout(config.checkout.clone())
                .with_nearby_km(config.stores.nearby_km)
                .with_loyalty(config.loyalty.clone())
                .with_balance_cover(&config.bot.balance_cover_url)
                .with_late_takeover(Duration::from_secs(config.bot.late_takeover_secs)),
        );
        // The console's replies answer from the first message, and follow every change.
        let generation = crate::replies::apply(&store, &bot).await.map_err(|e| StartError(format!("database: {e}")))?;
        let replies = {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let every = Duration::from_millis(config.replies.poll_ms);
            (stop, tokio::spawn(crate::replies::follow_changes(store.clone(), bot.clone(), generation, every, stopped)))
        };
        let client = Client::new(&config.wechat.account(), &config.rate_limits, store.clone());
        let worker = config.outbox.enabled.then(|| {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let worker = Worker::new(
                store.clone(),
                client.clone(),
                executors(&bot, &config),
                config.outbox.clone(),
                outbox_wake.clone(),
            );
            (stop, tokio::spawn(worker.run(stopped)))
        });
        let scheduler_wake = Arc::new(tokio::sync::Notify::new());
        let scheduler = config.campaigns.enabled.then(|| {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let scheduler = crate::campaigns::scheduler::Scheduler::new(
                store.clone(),
                client.clone(),
                config.campaigns.clone(),
                &config.h5.public_url,
                scheduler_wake.clone(),
                outbox_wake.clone(),
            );
            (stop, tokio::spawn(scheduler.run(stopped)))
        });
        let state = AppState(Arc::new(Inner {
            envelope: config.envelope(),
            clock: config.clock.clone(),
            config,
            bot,
            store,
            client,
            pages: Arc::new(pages),
            admin_pages: Arc::new(admin_pages),
            notices,
            reload_files,
            reloading: tokio::sync::Mutex::new(()),
            metrics: metrics_handle(),
            outbox_wake,
            scheduler_wake,
        }));
        let expiries = tokio::spawn(hourly(state.clone()));
        let directory = {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let every = Duration::from_millis(state.config.followers.catch_up_ms.max(50));
            (stop, tokio::spawn(crate::followers::follow_the_log(state.store.clone(), committed, every, stopped)))
        };
        let hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot register SIGHUP; reload with POST /api/v1/reload");
                None
            }
        };
        Ok(App { state, log_writer, worker, scheduler, expiries, directory, replies, hangups })
    }

    pub fn router(&self) -> axum::Router {
        router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, then drains: in-flight calls finish,
    /// the message log commits what is queued, the pool closes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router();
        self.serve_router(listener, router, shutdown).await
    }

    /// [`App::serve`] with a router of the caller's (`wxoa dev` adds the simulator to ours).
    pub async fn serve_router(
        mut self,
        listener: tokio::net::TcpListener,
        router: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = Duration::from_secs(self.state.config.server.shutdown_grace_secs);
        let reloads = self.hangups.take().map(|hangups| tokio::spawn(reload_on_hangup(self.state.clone(), hangups)));
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let metrics = self.serve_metrics(stopping).await?;
        let service = crate::http::webhook::Dispatch::new(self.state.clone(), router);
        let limits = crate::http::server::Limits::from_config(&self.state.config.server);
        let shutdown = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        crate::http::server::serve(listener, service, limits, shutdown).await?;
        if let Some(mut metrics) = metrics
            && tokio::time::timeout(grace, &mut metrics).await.is_err()
        {
            tracing::warn!("metrics listener still serving after {grace:?}; stopping anyway");
            metrics.abort();
        }
        let App { state, log_writer, worker, scheduler, expiries, directory, replies, .. } = self;
        if let Some(reloads) = reloads {
            reloads.abort();
            let _ = reloads.await;
        }
        expiries.abort();
        let _ = directory.0.send(true);
        let _ = replies.0.send(true);
        let _ = replies.1.await;
        // It holds the state (and so the message log): gone before the log is drained.
        let _ = expiries.await;
        if let Some((stop, scheduler)) = scheduler {
            let _ = stop.send(true);
            if tokio::time::timeout(grace, scheduler).await.is_err() {
                tracing::warn!("push scheduler still sending after {grace:?}; its runs' leases will hand them on");
            }
        }
        if let Some((stop, worker)) = worker {
            let _ = stop.send(true);
            if tokio::time::timeout(grace, worker).await.is_err() {
                tracing::warn!("outbox worker still sending after {grace:?}; its leases will hand the jobs on");
            }
        }
        // Its last read takes in what the webhook answered before the drain.
        if tokio::time::timeout(grace, directory.1).await.is_err() {
            tracing::warn!("follower directory still reading the log after {grace:?}");
        }
        let store = state.store.clone();
        drop(state);
        // The writer ends once the last handle (held by late handlers too) is gone.
        if tokio::time::timeout(grace, log_writer).await.is_err() {
            tracing::warn!("message log still busy after {grace:?}; stopping anyway");
        }
        store.close().await;
        Ok(())
    }
}

impl App {
    /// `/metrics` on `server.metrics_listen`, if set, until `stopping` turns true.
    async fn serve_metrics(
        &self,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<Option<tokio::task::JoinHandle<()>>> {
        let addr = self.state.config.server.metrics_listen.clone();
        if addr.is_empty() {
            return Ok(None);
        }
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {addr} (server.metrics_listen): {e}"))
        })?;
        tracing::info!(listen = %listener.local_addr()?, "metrics at /metrics");
        let router = crate::http::health::metrics_router().with_state(self.state.clone());
        Ok(Some(tokio::spawn(async move {
            let stopped = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stopped).await {
                tracing::warn!(error = %e, "metrics listener failed");
            }
        })))
    }
}

/// Reloads the files on every SIGHUP (see [`crate::state::Inner::reload`]); one log line each.
async fn reload_on_hangup(state: AppState, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        match state.reload().await {
            Ok(()) => tracing::info!("SIGHUP: files reloaded"),
            Err(e) => tracing::error!(error = %e, "SIGHUP: reload refused; the files in force stay"),
        }
    }
}

/// Why the data upgrades after the migrations failed.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// Building the points lots from the ledger failed.
    #[error("database: building points lots: {0}")]
    PointsLots(#[source] sqlx::Error),
}

/// The data upgrades that follow the migrations (each runs once; every command that opens the
/// database calls this after `Store::open_migrated`).
pub async fn upgrade(store: &Store) -> Result<(), UpgradeError> {
    crate::members::points::upgrade(store).await.map_err(UpgradeError::PointsLots)
}

/// What each kind of outbox job means: the messages the outbox sends itself, and each domain
/// module's own kinds (late replies run the bot's handlers again; CRM events go to
/// `crm.webhook_url`).
pub fn executors(bot: &Arc<Bot>, config: &Config) -> crate::jobs::worker::Executors {
    use crate::jobs::Kind;
    let mut e = crate::jobs::worker::Executors::messages();
    e.add(Kind::BookingReminder, crate::bookings::send_reminder);
    let bot = bot.clone();
    e.add(Kind::LateReply, move |ctx, payload| bot.clone().late_reply(ctx, payload));
    let crm = &config.crm;
    if !crm.webhook_url.is_empty() {
        let delivery = crate::crm::deliver::Delivery::new(&crm.webhook_url, &crm.secret, crm.timeout_ms);
        e.add(Kind::CrmEvent, move |ctx, payload| delivery.clone().send(ctx, payload));
    }
    e.add(Kind::FollowerSync, crate::followers::sync::run_job);
    e.add(Kind::SegmentSync, crate::audiences::sync::run_job);
    e
}

/// The hourly housekeeping: lapsed points recorded, tiers reviewed, retention applied, expired H5
/// sessions, old one-time form keys and console sign-outs deleted (in batches, so no statement
/// holds the write lock for long).
///
/// Hours are the clock's: a clock moved forward (a test's) runs it at once.
async fn hourly(state: AppState) {
    const HOUR_MS: i64 = 3_600_000;
    let store = state.store.clone();
    let mut next = state.clock.now_ms();
    loop {
        while let wait @ 1.. = next - state.clock.now_ms() {
            state.clock.sleep(Duration::from_millis(wait as u64)).await;
        }
        let now = state.clock.now_ms();
        next = now + HOUR_MS;
        let rules = state.points_rules();
        match crate::members::points::expire(&store, &rules).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(entries = n, "recorded lapsed points"),
            Err(e) => tracing::warn!(error = %e, "recording lapsed points failed"),
        }
        match crate::members::points::review_tiers(&store, &rules).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(members = n, "tiers changed by the hourly review"),
            Err(e) => tracing::warn!(error = %e, "reviewing tiers failed"),
        }
        state.outbox_wake.notify_one();
        match crate::retention::purge(&store, &state.config.retention, now).await {
            Ok(r) if r == crate::retention::Report::default() => {}
            Ok(r) => tracing::info!(stripped = r.stripped, deleted = r.deleted, jobs = r.jobs, "retention applied"),
            Err(e) => tracing::warn!(error = %e, "applying retention failed"),
        }
        drain("expired H5 sessions", || crate::h5::session::purge_expired(&store, now, 1000)).await;
        drain("old H5 form keys", || crate::h5::submission::purge(&store, now, 1000)).await;
        drain("ended console sessions", || crate::admin::console::purge_sessions(&store, now, 1000)).await;
    }
}

/// Runs `batch` (a delete of at most 1,000 rows) until it deletes fewer.
async fn drain<F: Future<Output = Result<u64, sqlx::Error>>>(what: &str, mut batch: impl FnMut() -> F) {
    let mut total = 0;
    loop {
        match batch().await {
            Ok(n) => {
                total += n;
                if n < 1000 {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "purging {what} failed");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(rows = total, "purged {what}");
    }
}

/// Every module's routes, with the middleware they share (body limit, panic catcher, request
/// ids, tracing, a last-resort timeout).
pub fn router(state: AppState) -> axum::Router {
    let max_body = state.config.server.max_body_bytes;
    // The webhook is the hot path and has its own deadline and logging; request ids, spans and a
    // timer per call cost it about a third of its throughput (see README, Performance). `serve`
    // goes further and hands `POST /wechat` to the webhook ahead of this router
    // (`webhook::Dispatch`); the route here serves the handshake and anyone using the router alone.
    let webhook = crate::http::webhook::router()
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(axum::middleware::from_fn(crate::http::request_id::traced))
        .layer(CatchPanicLayer::custom(|_| (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()));
    use crate::http::page::{Framing, Renderer};
    let framing = if state.config.h5.framed_by_self { Framing::SameOrigin } else { Framing::Deny };
    let h5_pages = Renderer { pages: state.pages.clone(), framing };
    let console_pages = Renderer { pages: state.admin_pages.clone(), framing: Framing::Deny };
    axum::Router::new()
        .merge(crate::http::health::router())
        .merge(crate::h5::router(h5_pages.clone()))
        .merge(crate::campaigns::api::router())
        .merge(crate::admin::api::router())
        .merge(crate::admin::console::router(console_pages))
        .merge(crate::shop::api::router(h5_pages))
        .merge(crate::followers::api::router())
        .merge(crate::audiences::api::router())
        .merge(crate::replies::api::router())
        // Bodies stop being read at `server.max_body_bytes`, except where a route says otherwise
        // (a campaign's articles: `campaigns::MAX_BODY`). Every handler here reads its body
        // through an extractor that keeps this limit, so the API can refuse in JSON.
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        // The CRM's batches are larger than anything else; its router bounds them itself.
        .merge(crate::crm::api::router())
        // After every route is in: the method fallback is set on the routes there are.
        .fallback(crate::http::api::not_found)
        .method_not_allowed_fallback(crate::http::api::method_not_allowed)
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
        .layer(CatchPanicLayer::custom(|_| {
            // No panic message or backtrace leaves the process.
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }))
        .layer(axum::middleware::from_fn(crate::http::request_id::traced))
        .merge(webhook)
        .with_state(state)
}
