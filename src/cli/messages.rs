//! `wxoa messages …`: the message log's retention, run by hand.

use super::{block_on, open_store};
use crate::config::Config;
use crate::text::Failure;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum MessagesCommand {
    /// Apply [retention] now: drop old messages' XML, delete older messages and finished jobs
    /// (what `serve` does hourly).
    Purge {
        /// Only count what would go.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(config: Config, command: MessagesCommand) -> Result<ExitCode, Failure> {
    match command {
        MessagesCommand::Purge { dry_run } => block_on(async {
            let store = open_store(&config).await?;
            let r = &config.retention;
            let now = config.clock.now_ms();
            let report = if dry_run {
                crate::retention::preview(&store, r, now).await
            } else {
                crate::retention::purge(&store, r, now).await
            }
            .map_err(|e| format!("database: {e}"))?;
            let (strip, delete) = if dry_run { ("would strip", "would delete") } else { ("stripped", "deleted") };
            let age =
                |days: u32| if days == 0 { "(kept for ever)".to_owned() } else { format!("older than {days} days") };
            println!(
                "{strip} the XML of {} messages {}; {delete} {} messages {}; {delete} {} finished jobs {}",
                report.stripped,
                age(r.raw_xml_days),
                report.deleted,
                age(r.messages_days),
                report.jobs,
                age(r.jobs_days),
            );
            Ok(ExitCode::SUCCESS)
        }),
    }
}
