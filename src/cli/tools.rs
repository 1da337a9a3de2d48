//! `wxoa replay`, `fixtures export`, `bench`, `bench-crm` and `bench-outbox`: the developer's tools.

use super::{block_on, open_store, runtime};
use crate::config::Config;
use crate::text::Failure;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ReplayArgs {
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
}

pub fn replay(config: Config, a: ReplayArgs) -> Result<ExitCode, Failure> {
    let url = a.url.unwrap_or_else(|| format!("http://{}/wechat", config.server.listen));
    let envelope = config.envelope();
    let ok = block_on(crate::tools::replay::run(&envelope, &url, a.expect.as_deref(), &a.paths, a.keep_ids))?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[derive(clap::Subcommand)]
pub enum FixturesCommand {
    /// Write logged messages and their replies as fixtures: DIR/inbound, DIR/replies.
    Export {
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

pub fn fixtures(config: Config, command: FixturesCommand) -> Result<ExitCode, Failure> {
    let FixturesCommand::Export { since, openid, limit, dir } = command;
    if !(1..=100_000).contains(&limit) {
        return Err("--limit must be between 1 and 100000".into());
    }
    let since_ms = since.map(|s| crate::tools::fixtures::parse_since(&s, config.clock.now_ms())).transpose()?;
    let filter = crate::tools::fixtures::Filter { since_ms, openid, limit };
    block_on(async {
        let store = open_store(&config).await?;
        let n = crate::tools::fixtures::export(&store, &filter, &dir).await?;
        println!("{n} fixture(s) written to {}/inbound and {}/replies", dir.display(), dir.display());
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(clap::Args)]
pub struct BenchArgs {
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
    /// What every message says (default `hello <n>`), e.g. 积分 for the balance card.
    #[arg(long)]
    content: Option<String>,
    /// Who sends every message (default: 5,000 followers in turn).
    #[arg(long)]
    openid: Option<String>,
    /// GET this path instead of posting messages (e.g. /h5/card).
    #[arg(long)]
    get: Option<String>,
    /// A request header for --get, e.g. "Cookie: wxoa_session=…" (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Write the warm-up and measured messages to this file (query, tab, body; a line each)
    /// for another load generator, instead of sending them (see scripts/bench-wrk.sh).
    #[arg(long)]
    write_requests: Option<std::path::PathBuf>,
}

pub fn bench(config: Config, a: BenchArgs) -> Result<ExitCode, Failure> {
    let opts = crate::tools::bench::BenchOptions {
        addr: a.addr.unwrap_or_else(|| config.server.listen.clone()),
        path: "/wechat".into(),
        connections: a.connections,
        requests: a.requests,
        warmup: a.warmup,
        verify_every: a.verify_every,
        content: a.content,
        openid: a.openid,
        get: a.get,
        headers: a.headers,
    };
    if let Some(path) = &a.write_requests {
        let n = crate::tools::bench::write_requests(&config.envelope(), &opts, path)?;
        eprintln!("wrote {n} signed, encrypted messages to {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    // One thread: the generator must not take the server's core.
    let report = block_on(crate::tools::bench::run(&config.envelope(), &opts))?;
    println!("{report}");
    Ok(if report.errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[derive(clap::Args)]
pub struct BenchCrmArgs {
    /// Server address (default: server.listen).
    #[arg(long)]
    addr: Option<String>,
    #[arg(long, default_value_t = 40)]
    batches: usize,
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Cards B00000000… taken in turn (as scripts/bench-points.sh imports them).
    #[arg(long, default_value_t = 20_000)]
    members: usize,
    #[arg(long, default_value_t = 2)]
    connections: usize,
}

pub fn bench_crm(config: Config, a: BenchCrmArgs) -> Result<ExitCode, Failure> {
    if config.crm.secret.is_empty() {
        return Err("crm.secret is empty: the API is off".into());
    }
    let opts = crate::tools::bench_crm::CrmBenchOptions {
        addr: a.addr.unwrap_or_else(|| config.server.listen.clone()),
        secret: config.crm.secret.expose().to_owned(),
        batches: a.batches,
        batch_size: a.batch_size.clamp(1, crate::crm::api::MAX_ITEMS),
        members: a.members.max(1),
        connections: a.connections,
    };
    println!("{}", block_on(crate::tools::bench_crm::run(&opts))?);
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct BenchOutboxArgs {
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
}

pub fn bench_outbox(config: Config, a: BenchOutboxArgs) -> Result<ExitCode, Failure> {
    use crate::tools::bench_outbox as b;
    let run = a.run.unwrap_or_else(b::new_run_id);
    let jobs = a.jobs;
    runtime(0)?.block_on(async {
        // A benchmark's own database: created as needed.
        let db = &config.database;
        let store = crate::store::Store::open_migrated(&db.url, db.max_connections, crate::store::Create::Always)
            .await
            .map_err(|e| e.to_string())?;
        if !a.verify_only {
            b::enqueue(&store, &run, jobs).await?;
        }
        if a.enqueue_only {
            println!("run {run}: {jobs} jobs enqueued");
            return Ok(ExitCode::SUCCESS);
        }
        if a.verify_only {
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
        Ok(if delivered == jobs && (a.verify_only || extra == 0) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}
