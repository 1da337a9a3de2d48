//! The `wxoa` command line: clap's definition and the dispatch, with one file per command
//! family. `--config FILE` is global (it may come before or after the subcommand); each
//! command loads the config, builds what it needs and runs. Any failure is one line on stderr
//! and exit code 2; a check that finds problems exits 1.

mod admin;
mod campaigns;
mod followers;
mod jobs;
mod members;
mod menu;
mod messages;
mod segments;
mod serve;
mod stores;
mod tools;

use crate::config::Config;
use crate::text::Failure;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "wxoa", version, about = "The server behind a WeChat Official Account")]
struct Cli {
    /// Configuration file; every key can be overridden with WXOA_<SECTION>__<KEY>.
    #[arg(long, global = true, default_value = "config/default.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (webhook, H5 pages, APIs, console, health, metrics).
    Serve {
        /// Create the database if it is not there, even where one was lost (a first run
        /// creates it anyway; see `wxoa migrate`).
        #[arg(long)]
        create_database: bool,
    },
    /// Try the whole account without WeChat: the server, a fake WeChat, demo data and the
    /// follower simulator at /simulator.
    Dev(serve::DevArgs),
    /// Create the database if needed and apply its migrations.
    Migrate,
    /// Check config, routes, templates, pages and notices without starting anything.
    Check,
    /// Post recorded messages to a running server as WeChat would, and check the replies.
    Replay(tools::ReplayArgs),
    /// Recorded-fixture tools.
    Fixtures {
        #[command(subcommand)]
        command: tools::FixturesCommand,
    },
    /// The custom menu: check, sync, show.
    Menu {
        #[command(subcommand)]
        command: menu::MenuCommand,
    },
    /// Loyalty members.
    Members {
        #[command(subcommand)]
        command: members::MembersCommand,
    },
    /// The follower directory: sync it from WeChat, its counts.
    Followers {
        #[command(subcommand)]
        command: followers::FollowersCommand,
    },
    /// Segments: audiences by rules, synced to WeChat tags.
    Segments {
        #[command(subcommand)]
        command: segments::SegmentsCommand,
    },
    /// The brand's stores.
    Stores {
        #[command(subcommand)]
        command: stores::StoresCommand,
    },
    /// Launch campaigns: create, update, list, show.
    Campaign {
        #[command(subcommand)]
        command: campaigns::CampaignCommand,
    },
    /// Scheduled pushes of campaigns: schedule, list, cancel, preview.
    Push {
        #[command(subcommand)]
        command: campaigns::PushCommand,
    },
    /// Admin API and console access.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// The message log: apply [retention] now (`purge [--dry-run]`).
    Messages {
        #[command(subcommand)]
        command: messages::MessagesCommand,
    },
    /// The outbox: list and retry jobs.
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// Run a fake WeChat API (and follower) for development and tests.
    FakeWechat(serve::FakeArgs),
    /// Outbox throughput against a fake WeChat (`wxoa fake-wechat`, whose URL is wechat.api_base).
    BenchOutbox(tools::BenchOutboxArgs),
    /// Load-test a running server with encrypted messages (or page views).
    Bench(tools::BenchArgs),
    /// Load-test a running server's CRM transactions API with signed batches.
    BenchCrm(tools::BenchCrmArgs),
}

/// Logs go to stderr as `[log]` says (text or JSON, which records), text coloured only when it
/// is a terminal (a log file gets no escape codes). Commands run without a readable config
/// (the fake WeChat, the load generators) log text at the default level; a config that does not
/// load is reported by the command itself.
fn init_logging(config: &std::path::Path) {
    use crate::config::LogFormat;
    use std::io::IsTerminal;
    let log = Config::load(config).map(|c| c.log).unwrap_or_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::builder().parse(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        // The record's spans (request id, route, MsgId, openid) as a list, the innermost last.
        LogFormat::Json => builder.json().with_current_span(false).with_span_list(true).try_init(),
    };
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.config);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wxoa: {}", e.0);
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let config = || Config::load(&cli.config).map_err(|e| e.to_string());
    match cli.command {
        Command::Serve { create_database } => serve::serve(config()?, create_database),
        Command::Dev(args) => serve::dev(config()?, args),
        Command::Migrate => serve::migrate(config()?),
        Command::Check => serve::check(config()?),
        Command::FakeWechat(args) => serve::fake_wechat(config()?, args),
        Command::Replay(args) => tools::replay(config()?, args),
        Command::Fixtures { command } => tools::fixtures(config()?, command),
        Command::Bench(args) => tools::bench(config()?, args),
        Command::BenchOutbox(args) => tools::bench_outbox(config()?, args),
        Command::BenchCrm(args) => tools::bench_crm(config()?, args),
        // `menu check` reads no config: a menu file can be checked before there is one.
        Command::Menu { command } => menu::run(&cli.config, command),
        Command::Members { command } => members::run(config()?, command),
        Command::Stores { command } => stores::run(config()?, command),
        Command::Followers { command } => followers::run(config()?, command),
        Command::Segments { command } => segments::run(config()?, command),
        Command::Campaign { command } => block_on(campaigns::campaign(&config()?, command)),
        Command::Push { command } => block_on(campaigns::push(&config()?, command)),
        Command::Admin { command } => admin::run(command),
        Command::Jobs { command } => jobs::run(config()?, command),
        Command::Messages { command } => messages::run(config()?, command),
    }
}

/// The runtime for `serve`: one worker thread per core, or as configured. A single worker runs
/// on the current-thread scheduler, which skips the work-stealing machinery it cannot use.
fn runtime(workers: usize) -> Result<tokio::runtime::Runtime, Failure> {
    let workers =
        if workers == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { workers };
    let built = if workers == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()
    };
    Ok(built.map_err(|e| format!("cannot start the runtime: {e}"))?)
}

/// Runs a one-off command's future on a single-threaded runtime.
fn block_on<T>(f: impl std::future::Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    runtime(1)?.block_on(f)
}

/// The configured database, migrated; one that is not there is an error saying so (a command
/// that silently created an empty database would report on nothing).
async fn open_store(config: &Config) -> Result<crate::store::Store, Failure> {
    let create = if config.database.create { crate::store::Create::Always } else { crate::store::Create::Never };
    let store = crate::store::Store::open_migrated(&config.database.url, 2, create)
        .await
        .map_err(|e| e.to_string())?
        .with_clock(config.clock.clone());
    crate::app::upgrade(&store).await.map_err(|e| e.to_string())?;
    Ok(store)
}

/// A client over the configured database (the token is shared with running servers).
async fn client(config: &Config) -> Result<(crate::store::Store, crate::wechat::client::Client), Failure> {
    let store = open_store(config).await?;
    let client = crate::wechat::client::Client::new(&config.wechat.account(), &config.rate_limits, store.clone());
    Ok((store, client))
}

/// Prints an import's skipped rows and its summary.
fn report_import(what: &str, (imported, problems): (usize, Vec<String>)) -> Result<ExitCode, Failure> {
    for p in &problems {
        println!("{p}");
    }
    println!("{imported} {what} imported, {} rows skipped", problems.len());
    Ok(ExitCode::SUCCESS)
}
