//! `wxoa followers …`: the follower directory.

use super::{block_on, client, open_store};
use crate::config::Config;
use crate::followers::sync::{self, Started, State};
use crate::text::Failure;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum FollowersCommand {
    /// Pull WeChat's follower list and details into the directory, here and now (resumes an
    /// unfinished sync, wherever it was started).
    Sync,
    /// The directory's counts and the latest sync.
    Status,
}

pub fn run(config: Config, command: FollowersCommand) -> Result<ExitCode, Failure> {
    match command {
        FollowersCommand::Sync => block_on(async {
            let (store, client) = client(&config).await?;
            // Whatever the log says first, so the sync's "who left" sees every recent follow.
            crate::followers::catch_up(&store, &mut Default::default()).await.map_err(|e| e.to_string())?;
            let (started, how) = sync::start(&store, "cli", false).await.map_err(|e| e.to_string())?;
            println!(
                "{} follower sync {} ({})",
                if how == Started::New { "started" } else { "resuming" },
                started.id,
                started.state.as_str()
            );
            let mut shown = (State::Listing, -1);
            let done = sync::run_to_end(&store, &client, started.id, |s| {
                if (s.state, s.listed / 100_000 + s.detailed / 100_000) != shown {
                    shown = (s.state, s.listed / 100_000 + s.detailed / 100_000);
                    println!("  {}: listed {}, detailed {}", s.state.as_str(), s.listed, s.detailed);
                }
            })
            .await
            .map_err(|e| format!("follower sync {} stopped (run this again to resume): {e}", started.id))?;
            print_sync(&done);
            Ok(if done.state == State::Done { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }),
        FollowersCommand::Status => block_on(async {
            let store = open_store(&config).await?;
            let (following, left) = crate::followers::counts(&store).await.map_err(|e| e.to_string())?;
            println!("followers: {following} following, {left} left");
            match sync::latest(&store).await.map_err(|e| e.to_string())? {
                Some(s) => print_sync(&s),
                None => println!("no follower sync yet"),
            }
            Ok(ExitCode::SUCCESS)
        }),
    }
}

fn print_sync(s: &sync::Sync) {
    println!(
        "sync {}: {} — WeChat total {}, listed {}, detailed {}, no longer following {}{}",
        s.id,
        s.state.as_str(),
        s.total.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
        s.listed,
        s.detailed,
        s.unfollowed,
        s.error.as_deref().map(|e| format!(" — {e}")).unwrap_or_default()
    );
}
