//! The `wxoa` command line. Each subcommand loads the config, builds what it needs and runs;
//! any failure is one line on stderr and a non-zero exit.

use crate::app::App;
use crate::bot::handlers::Handlers;
use crate::config::Config;
use crate::http::server::shutdown_signal;
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
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Create the database if it is not there, even where one was lost (a first run
        /// creates it anyway; see `wxoa migrate`).
        #[arg(long)]
        create_database: bool,
    },
    /// Try the whole account without WeChat: the server, a fake WeChat, demo data and the
    /// follower simulator at /simulator.
    Dev {
        #[command(flatten)]
        config: ConfigArg,
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
    },
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
        /// Send the fixtures' MsgId and CreateTime as recorded (the server answers a message it
        /// has seen with the reply it logged then); by default each is sent as a new message.
        #[arg(long)]
        keep_ids: bool,
        /// Fixture files or directories of *.xml.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Recorded-fixture tools.
    Fixtures {
        #[command(subcommand)]
        command: FixturesCommand,
    },
    /// The custom menu: check, sync, show.
    Menu {
        #[command(subcommand)]
        command: MenuCommand,
    },
    /// Loyalty members.
    Members {
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// The brand's stores.
    Stores {
        #[command(subcommand)]
        command: StoresCommand,
    },
    /// Launch campaigns: create, update, list, show.
    Campaign {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: crate::campaigns::cli::CampaignCommand,
    },
    /// Scheduled pushes of campaigns: schedule, list, cancel, preview.
    Push {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: crate::campaigns::cli::PushCommand,
    },
    /// Admin API and console access.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The outbox: list and retry jobs.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Run a fake WeChat API (and follower) for development and tests.
    FakeWechat {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        /// The webhook job-finish events are posted to (e.g. http://127.0.0.1:8080/wechat).
        #[arg(long)]
        webhook: Option<String>,
    },
    /// Outbox throughput against a fake WeChat (`wxoa fake-wechat`, whose URL is wechat.api_base).
    BenchOutbox {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
        /// Run id (to verify a run enqueued earlier); new by default.
        #[arg(long)]
        run: Option<String>,
        /// Only enqueue (then let `wxoa serve` send them).
        #[arg(long)]
        enqueue_only: bool,
        /// Only wait for the run to finish and check the fake's record.
        #[arg(long)]
        verify_only: bool,
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
enum AdminCommand {
    /// Print the SHA-256 to put in [admin] tokens for a bearer token (read from stdin when not given).
    HashToken { token: Option<String> },
}

#[derive(Subcommand)]
enum MenuCommand {
    /// Validate the menu file against WeChat's limits, one line per problem.
    Check {
        #[arg(long, default_value = "config/menu.toml")]
        file: PathBuf,
    },
    /// Show the difference from the live menu and push the file's menu (and conditional menus).
    Sync {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, default_value = "config/menu.toml")]
        file: PathBuf,
        /// Only show the difference.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the live menu.
    Show {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
enum MembersCommand {
    /// Record lapsed points as expire entries in the ledger (serve does this hourly).
    Expire {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Adjust a member's points by hand; the bound follower is told by template message.
    Adjust {
        #[command(flatten)]
        config: ConfigArg,
        /// Card number.
        card: String,
        /// Points to add (negative to remove).
        #[arg(allow_hyphen_values = true)]
        points: i64,
        /// Why, as the member will read it.
        #[arg(long)]
        reason: String,
        /// Makes the adjustment idempotent (default: card, points and reason).
        #[arg(long)]
        reference: Option<String>,
    },
    /// Load members from a CRM export (CSV with a header row); reports every row.
    Import {
        #[command(flatten)]
        config: ConfigArg,
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum StoresCommand {
    /// Load stores from CSV (id, name, city, address, latitude, longitude, opening_hours, phone[, active]); upserts by id.
    Import {
        #[command(flatten)]
        config: ConfigArg,
        file: PathBuf,
    },
    /// Load beauty advisors from CSV (id, store_id, name); upserts by id.
    Advisors {
        #[command(flatten)]
        config: ConfigArg,
        file: PathBuf,
    },
    /// Create the store's QR code (scene store_<id>) through the API and print its image URL.
    Qrcode {
        #[command(flatten)]
        config: ConfigArg,
        store: i64,
        /// A temporary code valid this many seconds (at most 30 days); permanent by default.
        #[arg(long)]
        expire_seconds: Option<u32>,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// List outbox jobs, newest first.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// queued, running, done or dead.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Put a dead (or done) job back in the queue.
    Retry {
        #[command(flatten)]
        config: ConfigArg,
        id: i64,
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
        Command::Serve { config: arg, create_database } => {
            let mut config = load(&arg)?;
            config.database.create |= create_database;
            let rt = runtime(config.server.workers).map_err(|e| e.to_string())?;
            rt.block_on(async {
                // Signals first: a SIGTERM from the moment the process runs is kept, however
                // early (a deploy stopping an instance it has just started).
                let shutdown = shutdown_signal().map_err(|e| format!("cannot register signals: {e}"))?;
                if let Err(e) = crate::http::server::raise_fd_limit() {
                    tracing::warn!(error = %e, "cannot raise the open-files limit");
                }
                // Config, routes and templates before the port: a broken file is reported as
                // such, not as whatever the port says.
                App::check(&config, &Handlers::builtin()).map_err(|e| e.to_string())?;
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
                app.serve(listener, shutdown).await.map_err(|e| e.to_string())?;
                tracing::info!("stopped");
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Dev { config, listen, database, no_seed, fixtures } => {
            let config = load(&config)?;
            let rt = runtime(config.server.workers).map_err(|e| e.to_string())?;
            let options = crate::dev::Options { listen, database, seed: !no_seed, fixtures };
            let shutdown =
                rt.block_on(async { shutdown_signal() }).map_err(|e| format!("cannot register signals: {e}"))?;
            let _ = crate::http::server::raise_fd_limit();
            rt.block_on(crate::dev::run(config, options, shutdown, |url| {
                println!("wxoa dev: the simulator is at {url}");
                println!(
                    "          the console at {}/admin (token wxoa-dev-marketing-token)",
                    url.trim_end_matches("/simulator")
                );
                println!("          Ctrl-C stops everything.");
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Campaign { config, command } => {
            let config = load(&config)?;
            runtime(1).map_err(|e| e.to_string())?.block_on(crate::campaigns::cli::campaign(&config, command))
        }
        Command::Push { config, command } => {
            let config = load(&config)?;
            runtime(1).map_err(|e| e.to_string())?.block_on(crate::campaigns::cli::push(&config, command))
        }
        Command::Admin { command: AdminCommand::HashToken { token } } => {
            let token = match token {
                Some(t) => t,
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).map_err(|e| e.to_string())?;
                    line.trim().to_owned()
                }
            };
            if token.len() < 16 {
                return Err("a token should be at least 16 characters (e.g. openssl rand -hex 24)".into());
            }
            println!("{}", crate::admin::hash_token(&token));
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(arg) => {
            let config = load(&arg)?;
            runtime(1).map_err(|e| e.to_string())?.block_on(async {
                // Creates the database (or wxoa's tables in an empty one), then migrates.
                let store = crate::store::Store::open_migrated(&config.database.url, 1, true)
                    .await
                    .map_err(|e| e.to_string())?;
                let version = store.schema_version().await.map_err(|e| format!("database: {e}"))?;
                println!("database ready ({}): schema version {version}", store.backend());
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Check(arg) => {
            let config = load(&arg)?;
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
        Command::Replay { config, url, expect, keep_ids, paths } => {
            let config = load(&config)?;
            let url = url.unwrap_or_else(|| format!("http://{}/wechat", config.server.listen));
            let ok = runtime(1).map_err(|e| e.to_string())?.block_on(crate::tools::replay::run(
                &config.envelope(),
                &url,
                expect.as_deref(),
                &paths,
                keep_ids,
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
                let store = open_store(&config).await?;
                let n = crate::tools::fixtures::export(&store, &filter, &dir).await?;
                println!("{n} fixture(s) written to {}/inbound and {}/replies", dir.display(), dir.display());
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Menu { command } => menu(command),
        Command::Jobs { command } => jobs(command),
        Command::Stores { command } => stores(command),
        Command::Members { command: MembersCommand::Adjust { config, card, points, reason, reference } } => {
            let config = load(&config)?;
            if points == 0 || points.abs() > 10_000_000 || reason.trim().is_empty() || reason.len() > 100 {
                return Err("points must be non-zero (at most 10,000,000) and --reason 1 to 100 bytes".into());
            }
            let notices =
                crate::notices::Notices::load(&config.notices.file, &config.notices.templates, &config.h5.public_url)?;
            let reference = reference.unwrap_or_else(|| format!("adjust:{card}:{points}:{}", reason.trim()));
            runtime(1).map_err(|e| e.to_string())?.block_on(async {
                let store = open_store(&config).await?;
                match crate::members::ledger::adjust(&store, &notices, &card, points, reason.trim(), &reference)
                    .await
                    .map_err(|e| format!("database: {e}"))?
                {
                    Ok(Some(balance)) => println!("{card}: {points:+} points ({}); balance {balance}", reason.trim()),
                    Ok(None) => println!("{card}: already adjusted under reference {reference:?}; nothing changed"),
                    Err(why) => return Err(why),
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Members { command: MembersCommand::Expire { config } } => {
            let config = load(&config)?;
            runtime(1).map_err(|e| e.to_string())?.block_on(async {
                let store = open_store(&config).await?;
                let n = crate::members::ledger::record_expiries(&store, crate::store::now_ms())
                    .await
                    .map_err(|e| e.to_string())?;
                println!("{n} expiries recorded");
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Members { command: MembersCommand::Import { config, file } } => {
            let config = load(&config)?;
            let meta = std::fs::metadata(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            if meta.len() > 64 * 1024 * 1024 {
                return Err(format!("{}: larger than 64 MiB", file.display()));
            }
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            runtime(1).map_err(|e| e.to_string())?.block_on(async {
                let store = open_store(&config).await?;
                let reports = crate::members::import::import(&store, &text).await?;
                use crate::members::import::Outcome;
                let mut counts = [0usize; 5];
                for r in &reports {
                    println!("{r}");
                    let i = match r.outcome {
                        Outcome::Created(_) => 0,
                        Outcome::Updated(_) => 1,
                        Outcome::Unchanged(_) => 2,
                        Outcome::Merged(_) => 3,
                        Outcome::Rejected(_) => 4,
                    };
                    counts[i] += 1;
                }
                println!(
                    "{} rows: {} created, {} updated, {} unchanged, {} merged, {} rejected",
                    reports.len(),
                    counts[0],
                    counts[1],
                    counts[2],
                    counts[3],
                    counts[4]
                );
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::FakeWechat { config, listen, webhook } => {
            let config = load(&config)?;
            runtime(0).map_err(|e| e.to_string())?.block_on(async {
                let fake = crate::fake::FakeWeChat::new(&config);
                fake.set_webhook(webhook.clone());
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
                println!(
                    "fake WeChat API on http://{}  (webhook: {})  — set wechat.api_base to it",
                    listener.local_addr().map(|a| a.to_string()).unwrap_or(listen),
                    webhook.as_deref().unwrap_or("none")
                );
                let shutdown = shutdown_signal().map_err(|e| format!("cannot register signals: {e}"))?;
                fake.serve(listener, shutdown).await.map_err(|e| e.to_string())?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::BenchOutbox { config, jobs, run, enqueue_only, verify_only } => {
            use crate::tools::bench_outbox as b;
            let config = load(&config)?;
            let run = run.unwrap_or_else(b::new_run_id);
            runtime(0).map_err(|e| e.to_string())?.block_on(async {
                // A benchmark's own database: created as needed.
                let store =
                    crate::store::Store::open_migrated(&config.database.url, config.database.max_connections, true)
                        .await
                        .map_err(|e| e.to_string())?;
                if !verify_only {
                    b::enqueue(&store, &run, jobs).await?;
                }
                if enqueue_only {
                    println!("run {run}: {jobs} jobs enqueued");
                    return Ok(ExitCode::SUCCESS);
                }
                if verify_only {
                    b::wait_done(&store, &run, jobs, std::time::Duration::from_secs(600)).await?;
                } else {
                    let elapsed = b::drain(&config, &store, &run, jobs).await?;
                    println!(
                        "run {run}: {jobs} template messages in {:.2}s: {:.0}/s",
                        elapsed.as_secs_f64(),
                        jobs as f64 / elapsed.as_secs_f64()
                    );
                }
                let (delivered, extra) = b::verify(&config.wechat.api_base, &run, jobs).await?;
                println!("run {run}: delivered {delivered} of {jobs}, lost {}, duplicated {extra}", jobs - delivered);
                Ok(if delivered == jobs && (verify_only || extra == 0) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
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

/// The configured database, migrated; one that is not there is an error saying so (a command
/// that silently created an empty database would report on nothing).
pub(crate) async fn open_store(config: &Config) -> Result<crate::store::Store, String> {
    crate::store::Store::open_migrated(&config.database.url, 2, config.database.create).await.map_err(|e| e.to_string())
}

/// A client over the configured database (the token is shared with running servers).
async fn client(config: &Config) -> Result<(crate::store::Store, crate::wechat::client::Client), String> {
    let store = open_store(config).await?;
    let client = crate::wechat::client::Client::new(&config.wechat.account(), &config.rate_limits, store.clone());
    Ok((store, client))
}

fn menu(command: MenuCommand) -> Result<ExitCode, String> {
    use crate::menu::MenuFile;
    match command {
        MenuCommand::Check { file } => {
            // Checked as it would be for an https deployment.
            let menu = MenuFile::load(&file, "https://wx.example.com")?;
            let problems = menu.check();
            for p in &problems {
                println!("{}: {p}", file.display());
            }
            if problems.is_empty() {
                println!(
                    "{}: ok ({} buttons, {} conditional menus)",
                    file.display(),
                    menu.button.len(),
                    menu.conditional.len()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::FAILURE)
            }
        }
        MenuCommand::Sync { config, file, dry_run } => {
            let config = load(&config)?;
            let wanted = MenuFile::load(&file, &config.h5.public_url)?;
            let problems = wanted.check();
            if !problems.is_empty() {
                for p in &problems {
                    println!("{}: {p}", file.display());
                }
                return Ok(ExitCode::FAILURE);
            }
            runtime(1).map_err(|e| e.to_string())?.block_on(async {
                let (_, client) = client(&config).await?;
                let live = client.menu_get().await.map_err(|e| e.to_string())?;
                let changes = crate::menu::diff(&live, &wanted);
                if changes.is_empty() {
                    println!("the live menu already matches {}", file.display());
                    return Ok(ExitCode::SUCCESS);
                }
                for c in &changes {
                    println!("{c}");
                }
                if dry_run {
                    return Ok(ExitCode::SUCCESS);
                }
                // menu/create replaces the default menu and drops conditional menus.
                client.menu_create(&wanted.menu()).await.map_err(|e| e.to_string())?;
                for c in &wanted.conditional {
                    client.menu_add_conditional(c).await.map_err(|e| e.to_string())?;
                }
                println!("pushed {} ({} changes)", file.display(), changes.len());
                Ok(ExitCode::SUCCESS)
            })
        }
        MenuCommand::Show { config } => {
            let config = load(&config)?;
            runtime(1).map_err(|e| e.to_string())?.block_on(async {
                let (_, client) = client(&config).await?;
                let live = client.menu_get().await.map_err(|e| e.to_string())?;
                println!("{}", serde_json::to_string_pretty(&live).map_err(|e| e.to_string())?);
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

fn jobs(command: JobsCommand) -> Result<ExitCode, String> {
    match command {
        JobsCommand::List { config, state, limit } => {
            let config = load(&config)?;
            if let Some(s) = &state
                && !["queued", "running", "done", "dead"].contains(&s.as_str())
            {
                return Err(format!("--state {s:?}: use queued, running, done or dead"));
            }
            runtime(1).map_err(|e| e.to_string())?.block_on(async {
                let store = open_store(&config).await?;
                let jobs = crate::jobs::outbox::list(&store, state.as_deref(), limit.clamp(1, 10_000))
                    .await
                    .map_err(|e| e.to_string())?;
                let counts = crate::jobs::outbox::counts(&store).await.map_err(|e| e.to_string())?;
                println!("{}", counts.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join("  "));
                for j in jobs {
                    println!(
                        "{:>8}  {:<8} {:<15} attempts {:<2} {}  {}",
                        j.id,
                        j.state,
                        j.kind,
                        j.attempts,
                        j.dedupe_key,
                        j.last_error.as_deref().unwrap_or("")
                    );
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        JobsCommand::Retry { config, id } => {
            let config = load(&config)?;
            runtime(1).map_err(|e| e.to_string())?.block_on(async {
                let store = open_store(&config).await?;
                if crate::jobs::outbox::retry(&store, id).await.map_err(|e| e.to_string())? {
                    println!("job {id} queued again");
                    Ok(ExitCode::SUCCESS)
                } else {
                    Err(format!("job {id}: no such job, or it is queued or running"))
                }
            })
        }
    }
}

fn stores(command: StoresCommand) -> Result<ExitCode, String> {
    match command {
        StoresCommand::Import { config, file } => {
            let config = load(&config)?;
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            runtime(1).map_err(|e| e.to_string())?.block_on(async {
                let store = open_store(&config).await?;
                report_import("stores", crate::stores::import(&store, &text).await?)
            })
        }
        StoresCommand::Advisors { config, file } => {
            let config = load(&config)?;
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            runtime(1).map_err(|e| e.to_string())?.block_on(async {
                let store = open_store(&config).await?;
                report_import("advisors", crate::stores::import_advisors(&store, &text).await?)
            })
        }
        StoresCommand::Qrcode { config, store: id, expire_seconds } => {
            let config = load(&config)?;
            runtime(1).map_err(|e| e.to_string())?.block_on(async {
                let (store, client) = client(&config).await?;
                let shop =
                    crate::stores::get(&store, id).await.map_err(|e| e.to_string())?.ok_or(format!("no store {id}"))?;
                let scene = crate::wechat::client::qrcode::Scene::Str(format!("store_{id}"));
                let qr = client.qrcode_create(&scene, expire_seconds).await.map_err(|e| e.to_string())?;
                println!("{} (scene store_{id}): {}", shop.name, qr.image_url());
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

/// Prints an import's skipped rows and its summary.
fn report_import(what: &str, (imported, problems): (usize, Vec<String>)) -> Result<ExitCode, String> {
    for p in &problems {
        println!("{p}");
    }
    println!("{imported} {what} imported, {} rows skipped", problems.len());
    Ok(ExitCode::SUCCESS)
}
