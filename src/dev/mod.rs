//! `wxoa dev`: the whole Official Account on one machine, without WeChat. One command starts
//! the server, a fake WeChat pointed at it (API, OAuth page, and job-finish callbacks), seeds
//! demo data, and mounts the follower simulator at `/simulator` beside the server's own routes.
//!
//! It takes any config — a real deployment's token, AES key, mode, menu and templates — and
//! changes only what must point at the fake: `wechat.api_base`, `wechat.image_base` (the
//! editor's uploaded images, which the fake keeps, served at `/simulator/mmbiz/…`), `h5.oauth_base`,
//! `h5.public_url` (this process), `checkout.base_url` (a stand-in checkout page, see
//! [`checkout`]), `crm.webhook_url` (the simulator's CRM receiver, see [`till`]), and the
//! database (`sqlite://data/dev.db` unless `--database` names one), so nothing real is touched.
//! The checkout, shop and CRM secrets are set when the config leaves them empty, so the
//! stand-in checkout and till can sign. The simulator's followers and chats are kept in the
//! database too ([`chats`]).

pub mod chats;
pub mod checkout;
pub mod seed;
pub mod simulator;
pub mod till;

use crate::app::App;
use crate::bot::handlers::Handlers;
use crate::config::Config;
use crate::fake::FakeWeChat;
use crate::text::Failure;
use std::future::Future;
use std::path::PathBuf;

pub struct Options {
    /// Where to listen (default `server.listen`).
    pub listen: Option<String>,
    /// Database URL (default `sqlite://data/dev.db`).
    pub database: Option<String>,
    /// Seed demo data.
    pub seed: bool,
    /// Where "save as fixture" writes.
    pub fixtures: PathBuf,
}

/// The followers the simulator starts with: names and WeChat tags.
const SIMULATED: [(&str, &[&str]); 3] = [("Amy", &["VIP"]), ("Ben", &["VIP"]), ("Chen", &[])];

/// What `dev` tells its user once it is up.
pub struct Banner {
    /// This server, `http://127.0.0.1:8080`.
    pub base: String,
    /// The simulator page.
    pub simulator: String,
    /// The database URL, for other `wxoa` commands to point at (`WXOA_DATABASE__URL`).
    pub database: String,
}

/// Runs until `shutdown` resolves; `ready` gets the banner once it answers.
pub async fn run(
    mut config: Config,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(&Banner),
) -> Result<(), Failure> {
    // Routes, templates, pages, notices and the menu before the port, as `serve` does: a
    // broken file is reported as such, not as whatever the port says.
    App::check(&config, &Handlers::builtin()).map_err(|e| e.to_string())?;
    crate::menu::MenuFile::load(&config.bot.menu, "http://127.0.0.1").map_err(|e| e.to_string())?;
    let listen = options.listen.unwrap_or_else(|| config.server.listen.clone());
    let listener = crate::http::server::listen(&listen, config.server.listen_backlog)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let base = format!("http://{addr}");
    config.database.url = options.database.unwrap_or_else(|| "sqlite://data/dev.db".into());
    // A sandbox: its database is created whenever it is not there.
    config.database.create = true;
    if let Some(path) = config.database.url.strip_prefix("sqlite://")
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    config.h5.public_url = base.clone();
    // The simulator shows the H5 pages in a frame.
    config.h5.framed_by_self = true;
    config.checkout.base_url = format!("{base}/simulator/checkout");
    if config.checkout.secret.is_empty() {
        config.checkout.secret = "wxoa-dev-checkout-secret-for-the-simulator".into();
    }
    // The stand-in checkout posts order statuses as the shop does.
    if config.shop.secret.is_empty() {
        config.shop.secret = "wxoa-dev-shop-secret-for-the-simulator-checkout".into();
    }
    // The till signs as a POS does, and the simulator's CRM hears every member event.
    if config.crm.secret.is_empty() {
        config.crm.secret = "wxoa-dev-crm-secret-for-the-simulator-till".into();
    }
    config.crm.webhook_url = format!("{base}/simulator/crm/events");
    // Previews go to the simulated followers unless the config names test followers.
    if config.campaigns.test_openids.is_empty() {
        config.campaigns.test_openids = (1..=SIMULATED.len()).map(simulator::openid_of).collect();
    }
    let fake = FakeWeChat::new(&config);
    let fake_url = fake.spawn().await;
    config.wechat.api_base = fake_url.clone();
    config.h5.oauth_base = fake_url.clone();
    // The editor's images are shown from here, as the fake keeps them.
    config.wechat.image_base = format!("{base}/simulator/mmbiz");
    fake.set_webhook(Some(format!("{base}/wechat")));

    let menu = crate::menu::MenuFile::load(&config.bot.menu, &base).map_err(|e| e.to_string())?.button;
    let (checkout_secret, shop_secret) = (config.checkout.secret.clone(), config.shop.secret.clone());
    let (crm_secret, per_yuan) = (config.crm.secret.clone(), config.loyalty.points_per_yuan_cents());
    let database = config.database.url.clone();
    let app = App::build(config, Handlers::builtin()).await.map_err(|e| e.to_string())?;
    let store = app.state.store.clone();
    if options.seed {
        seed::run(&store, &base).await?;
    }
    let sim = simulator::Simulator::new(fake.clone(), menu, options.fixtures, app.state.clone());
    sim.restore(&SIMULATED).await?;
    let till = till::Till::new(&base, crm_secret.expose(), per_yuan, store.clone());
    let shop = checkout::Shop::new(&base, checkout_secret.expose(), shop_secret.expose(), store.clone());
    let router = app.router().merge(simulator::router(sim)).merge(till::router(till)).merge(checkout::router(shop));
    ready(&Banner { base: base.clone(), simulator: format!("{base}/simulator"), database: database.clone() });
    tracing::info!(simulator = %format!("{base}/simulator"), console = %format!("{base}/admin"), fake = %fake_url, "wxoa dev");
    Ok(app.serve_router(listener, router, shutdown).await.map_err(|e| e.to_string())?)
}
