//! `wxoa jobs …`: the outbox, as an operator sees it.

use super::{block_on, open_store};
use crate::config::Config;
use crate::jobs::outbox::State;
use crate::text::Failure;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum JobsCommand {
    /// List outbox jobs, newest first.
    List {
        /// queued, running, done or dead.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Put a dead (or done) job back in the queue.
    Retry { id: i64 },
}

pub fn run(config: Config, command: JobsCommand) -> Result<ExitCode, Failure> {
    match command {
        JobsCommand::List { state, limit } => {
            let state = match state.as_deref().map(|s| (s, State::parse(s))) {
                None => None,
                Some((_, Some(state))) => Some(state),
                Some((s, None)) => return Err(Failure(format!("--state {s:?}: use queued, running, done or dead"))),
            };
            block_on(async {
                let store = open_store(&config).await?;
                let jobs = crate::jobs::outbox::list(&store, state, limit.clamp(1, 10_000))
                    .await
                    .map_err(|e| e.to_string())?;
                let counts = crate::jobs::outbox::counts(&store).await.map_err(|e| e.to_string())?;
                println!("{}", counts.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join("  "));
                for j in jobs {
                    println!(
                        "{:>8}  {:<8} {:<15} attempts {:<2} {}  {}",
                        j.id,
                        j.state.as_str(),
                        j.kind.as_str(),
                        j.attempts,
                        j.dedupe_key,
                        j.last_error.as_deref().unwrap_or("")
                    );
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        JobsCommand::Retry { id } => block_on(async {
            let store = open_store(&config).await?;
            if crate::jobs::outbox::retry(&store, id).await.map_err(|e| e.to_string())? {
                println!("job {id} queued again");
                Ok(ExitCode::SUCCESS)
            } else {
                Err(format!("job {id}: no such job, or it is queued or running").into())
            }
        }),
    }
}
