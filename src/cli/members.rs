//! `wxoa members …`: points by hand, lapsed points, and a CRM export's import.

use super::{block_on, open_store};
use crate::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum MembersCommand {
    /// Record lapsed points as expire entries in the ledger (serve does this hourly).
    Expire,
    /// Adjust a member's points by hand; the bound follower is told by template message.
    Adjust {
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
    Import { file: PathBuf },
}

pub fn run(config: Config, command: MembersCommand) -> Result<ExitCode, String> {
    match command {
        MembersCommand::Adjust { card, points, reason, reference } => adjust(config, card, points, reason, reference),
        MembersCommand::Expire => block_on(async {
            let store = open_store(&config).await?;
            let n = crate::members::ledger::record_expiries(&store, crate::store::now_ms())
                .await
                .map_err(|e| e.to_string())?;
            println!("{n} expiries recorded");
            Ok(ExitCode::SUCCESS)
        }),
        MembersCommand::Import { file } => import(config, file),
    }
}

fn adjust(
    config: Config,
    card: String,
    points: i64,
    reason: String,
    reference: Option<String>,
) -> Result<ExitCode, String> {
    if points == 0 || points.abs() > 10_000_000 || reason.trim().is_empty() || reason.len() > 100 {
        return Err("points must be non-zero (at most 10,000,000) and --reason 1 to 100 bytes".into());
    }
    let notices =
        crate::notices::Notices::load(&config.notices.file, &config.notices.templates, &config.h5.public_url)?;
    let reference = reference.unwrap_or_else(|| format!("adjust:{card}:{points}:{}", reason.trim()));
    block_on(async {
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

fn import(config: Config, file: PathBuf) -> Result<ExitCode, String> {
    let meta = std::fs::metadata(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    if meta.len() > 64 * 1024 * 1024 {
        return Err(format!("{}: larger than 64 MiB", file.display()));
    }
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    block_on(async {
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
