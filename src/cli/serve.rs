//! `wxoa serve`, `dev`, `migrate`, `check` and `fake-wechat`: the commands that run something.

use super::runtime;
use crate::app::App;
use crate::bot::handlers::Handlers;
use crate::config::Config;
use crate::http::server::{raise_fd_limit, shutdown_signal};
use crate::text::Failure;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn serve(mut config: Config, create_database: bool) -> Result<ExitCode, Failure> {
    config.database.create |= create_database;
    let rt = runtime(config.server.workers)?;
    rt.block_on(async {
        // Signals first: a SIGTERM from the moment the process runs is kept, however early (a
        // deploy stopping an instance it has just started).
        let shutdown = shutdown_signal().map_err(|e| format!("cannot register signals: {e}"))?;
        if let Err(e) = raise_fd_limit() {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
        }
        // Config, routes and templates before the port: a broken file is reported as such,
        // not as whatever the port says.
        App::check(&config, &Handlers::builtin()).map_err(|e| e.to_string())?;
        let listen = config.server.listen.clone();
        refuse_samples(&config)?;
        let listener = crate::http::server::listen(&listen, config.server.listen_backlog)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let app = App::build(config, Handlers::builtin()).await.map_err(|e| e.to_string())?;
        tracing::info!(
            listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or(listen),
            database = app.state.store.backend(),
            mode = %app.state.config.wechat.mode,
            "wxoa serving; webhook at /wechat"
        );
        app.serve(listener, shutdown).await.map_err(|e| e.to_string())?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// The shipped sample secrets: refused on a public `listen` (each named with how to make a real
/// one), a warning on loopback (see `config::samples`).
fn refuse_samples(config: &Config) -> Result<(), Failure> {
    let samples = crate::config::samples::in_force(config);
    if samples.is_empty() {
        return Ok(());
    }
    let listen = &config.server.listen;
    if crate::config::samples::is_loopback(listen) {
        for (key, how) in &samples {
            tracing::warn!(
                key,
                replace_with = how,
                "a sample secret from config/default.toml is in force (loopback only)"
            );
        }
        return Ok(());
    }
    let named: Vec<String> = samples.iter().map(|(key, how)| format!("{key} (use {how})")).collect();
    Err(Failure(format!(
        "config: refusing to serve on {listen} with the sample secrets of config/default.toml in force: {}",
        named.join("; ")
    )))
}

#[derive(clap::Args)]
pub struct DevArgs {
    /// Listen here (default server.listen).
    #[arg(long)]
    listen: Option<String>,
    /// Database URL (default sqlite://data/dev.db; never the config's).
    #[arg(long)]
    database: Option<String>,
    /// Start without the demo data.
    #[arg(long)]
    no_seed: bool,
    /// Where the simulator saves fixtures.
    #[arg(long, default_value = "tests/fixtures/inbound")]
    fixtures: PathBuf,
}

pub fn dev(config: Config, a: DevArgs) -> Result<ExitCode, Failure> {
    let rt = runtime(config.server.workers)?;
    let shutdown = rt.block_on(async { shutdown_signal() }).map_err(|e| format!("cannot register signals: {e}"))?;
    let _ = raise_fd_limit();
    let options =
        crate::dev::Options { listen: a.listen, database: a.database, seed: !a.no_seed, fixtures: a.fixtures };
    rt.block_on(crate::dev::run(config, options, shutdown, |banner| {
        println!("wxoa dev: the simulator is at {}", banner.simulator);
        println!("          the console at {}/admin (token wxoa-dev-marketing-token)", banner.base);
        println!("          the database is {}", banner.database);
        println!("          other wxoa commands reach it with WXOA_DATABASE__URL={}", banner.database);
        println!("          Ctrl-C stops everything.");
    }))?;
    Ok(ExitCode::SUCCESS)
}

pub fn migrate(config: Config) -> Result<ExitCode, Failure> {
    super::block_on(async {
        // Creates the database (or wxoa's tables in an empty one), then migrates.
        let store = crate::store::Store::open_migrated(&config.database.url, 1, crate::store::Create::Always)
            .await
            .map_err(|e| e.to_string())?;
        crate::app::upgrade(&store).await.map_err(|e| e.to_string())?;
        let version = store.schema_version().await.map_err(|e| format!("database: {e}"))?;
        println!("database ready ({}): schema version {version}", store.backend());
        Ok(ExitCode::SUCCESS)
    })
}

pub fn check(config: Config) -> Result<ExitCode, Failure> {
    App::check(&config, &Handlers::builtin()).map_err(|e| e.to_string())?;
    let (rules, _) = crate::app::load_routing(&config, &Handlers::builtin()).map_err(|e| e.to_string())?;
    println!(
        "config ok: {} mode, {} rules, database {}",
        config.wechat.mode,
        rules.len(),
        config.database.url.split('@').next_back().unwrap_or("")
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct FakeArgs {
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// The webhook job-finish events are posted to (e.g. http://127.0.0.1:8080/wechat).
    #[arg(long)]
    webhook: Option<String>,
    /// Synthetic followers to start with (`oSYN…`), for scale tests of syncs and tag pushes.
    #[arg(long, default_value_t = 0)]
    followers: usize,
}

pub fn fake_wechat(config: Config, a: FakeArgs) -> Result<ExitCode, Failure> {
    runtime(0)?.block_on(async {
        let shutdown = shutdown_signal().map_err(|e| format!("cannot register signals: {e}"))?;
        let fake = crate::fake::FakeWeChat::new(&config);
        fake.set_webhook(a.webhook.clone());
        fake.add_synthetic_followers(a.followers);
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
        println!(
            "fake WeChat API on http://{}  (webhook: {})  — set wechat.api_base to it",
            listener.local_addr().map(|a| a.to_string()).unwrap_or(a.listen.clone()),
            a.webhook.as_deref().unwrap_or("none")
        );
        fake.serve(listener, shutdown).await.map_err(|e| e.to_string())?;
        Ok(ExitCode::SUCCESS)
    })
}
