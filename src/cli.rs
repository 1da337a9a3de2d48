//! The `wxoa` command line. Each subcommand loads the config, builds what it needs and runs;
//! any failure is one line on stderr and a non-zero exit.

use crate::app::{App, shutdown_signal};
use crate::bot::handlers::Handlers;
use crate::config::Config;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "wxoa", version, about = "The server behind a WeChat Official Account")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ConfigArg {
    /// Configuration file; every key can be overridden with WXOA_<SECTION>__<KEY>.
    #[arg(long, default_value = "config/default.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (webhook, health, metrics).
    Serve(ConfigArg),
    /// Apply database migrations and exit.
    Migrate(ConfigArg),
    /// Check config, routes and templates without starting anything.
    Check(ConfigArg),
    /// Post recorded messages to a running server as WeChat would, and check the replies.
    Replay {
        #[command(flatten)]
        config: ConfigArg,
        /// Webhook URL (default: http://<server.listen>/wechat).
        #[arg(long)]
        url: Option<String>,
        /// Directory of golden replies (<name>.xml); any mismatch exits non-zero.
        #[arg(long)]
        expect: Option<PathBuf>,
        /// Fixture files or directories of *.xml.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Recorded-fixture tools.
    Fixtures {
        #[command(subcommand)]
        command: FixturesCommand,
    },
    /// Load-test a running server with encrypted messages.
    Bench {
        #[command(flatten)]
        config: ConfigArg,
        /// Server address (default: server.listen).
        #[arg(long)]
        addr: Option<String>,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 200_000)]
        requests: usize,
        #[arg(long, default_value_t = 10_000)]
        warmup: usize,
        /// Decrypt and check every k-th reply (0: none).
        #[arg(long, default_value_t = 100)]
        verify_every: usize,
    },
}

#[derive(Subcommand)]
enum FixturesCommand {
    /// Write logged messages and their replies as fixtures: DIR/inbound, DIR/replies.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// Unix seconds, YYYY-MM-DD, RFC 3339, or an age such as 24h.
        #[arg(long)]
        since: Option<String>,
        /// Only this follower's messages.
        #[arg(long)]
        openid: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        dir: PathBuf,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// The runtime for `serve`: one worker thread per core, or as configured. A single worker runs
/// on the current-thread scheduler, which skips the work-stealing machinery it cannot use.
fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let workers =
        if workers == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { workers };
    if workers == 1 {
        return tokio::runtime::Builder::new_current_thread().enable_all().build();
    }
    tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()
}

fn load(arg: &ConfigArg) -> Result<Config, String> {
    Config::load(&arg.config).map_err(|e| e.to_string())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wxoa: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Serve(arg) => {
            let config = load(&arg)?;
            let rt = runtime(config.server.workers).map_err(|e| e.to_string())?;
            rt.block_on(async {
                let listen = config.server.listen.clone();
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
                let app = App::build(config, Handlers::builtin()).await.map_err(|e| e.to_string())?;
                tracing::info!(
                    listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or(listen),
                    database = app.state.store.backend(),
                    mode = %app.state.config.wechat.mode,
                    "wxoa serving; webhook at /wechat"
                );
                app.serve(listener, shutdown_signal()).await.map_err(|e| e.to_string())?;
                tracing::info!("stopped");
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Migrate(arg) => {
            let config = load(&arg)?;
            runtime(1).map_err(|e| e.to_string())?.block_on(async {
                let store = crate::store::Store::connect(&config.database.url, 1)
                    .await
                    .map_err(|e| format!("database: {e}"))?;
                let ran = store.migrate().await.map_err(|e| format!("database migration: {e}"))?;
                println!("{ran} migration(s) applied ({})", store.backend());
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Check(arg) => {
            let config = load(&arg)?;
            let (rules, _) = crate::app::load_routing(&config, &Handlers::builtin()).map_err(|e| e.to_string())?;
            println!(
                "config ok: {} mode, {} rules, database {}",
                config.wechat.mode,
                rules.len(),
                config.database.url.split('@').next_back().unwrap_or("")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { config, url, expect, paths } => {
            let config = load(&config)?;
            let url = url.unwrap_or_else(|| format!("http://{}/wechat", config.server.listen));
            let ok = runtime(1).map_err(|e| e.to_string())?.block_on(crate::tools::replay::run(
                &config.envelope(),
                &url,
                expect.as_deref(),
                &paths,
            ))?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Fixtures { command: FixturesCommand::Export { config, since, openid, limit, dir } } => {
            let config = load(&config)?;
            if !(1..=100_000).contains(&limit) {
                return Err("--limit must be between 1 and 100000".into());
            }
            let since_ms =
                since.map(|s| crate::tools::fixtures::parse_since(&s, crate::store::now_ms())).transpose()?;
            let filter = crate::tools::fixtures::Filter { since_ms, openid, limit };
            runtime(1).map_err(|e| e.to_string())?.block_on(async {
                let store = crate::store::Store::connect(&config.database.url, 1)
                    .await
                    .map_err(|e| format!("database: {e}"))?;
                let n = crate::tools::fixtures::export(&store, &filter, &dir).await?;
                println!("{n} fixture(s) written to {}/inbound and {}/replies", dir.display(), dir.display());
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Bench { config, addr, connections, requests, warmup, verify_every } => {
            let config = load(&config)?;
            let opts = crate::tools::bench::BenchOptions {
                addr: addr.unwrap_or_else(|| config.server.listen.clone()),
                path: "/wechat".into(),
                connections,
                requests,
                warmup,
                verify_every,
            };
            // One thread: the generator must not take the server's core.
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            let report = rt.block_on(crate::tools::bench::run(&config.envelope(), &opts))?;
            println!("{report}");
            Ok(if report.errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
