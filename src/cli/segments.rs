//! `wxoa segments …`: audiences by rules, and their WeChat tags.

use super::{block_on, client, open_store};
use crate::audiences::{self, Rules};
use crate::config::Config;
use crate::text::Failure;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum SegmentsCommand {
    /// Create a segment: `--rules '{"tier": ["Gold"], "min_points": 1000}'` (see the README).
    Create {
        name: String,
        #[arg(long, default_value = "{}")]
        rules: String,
    },
    /// Segments with their live counts.
    List,
    /// Sync a segment to its WeChat tag here and now (resumes its unfinished sync).
    Sync { id: i64 },
}

pub fn run(config: Config, command: SegmentsCommand) -> Result<ExitCode, Failure> {
    block_on(async {
        match command {
            SegmentsCommand::Create { name, rules } => {
                let rules: Rules = serde_json::from_str(&rules).map_err(|e| format!("--rules: {e}"))?;
                let store = open_store(&config).await?;
                let s = audiences::create(&store, &name, &rules, "cli").await.map_err(|e| e.to_string())?;
                let (count, following) = audiences::count(&store, &s.rules).await.map_err(|e| e.to_string())?;
                println!("segment {}: {:?}, {count} followers ({following} following)", s.id, s.name);
            }
            SegmentsCommand::List => {
                let store = open_store(&config).await?;
                for s in audiences::list(&store).await.map_err(|e| e.to_string())? {
                    let (count, following) = audiences::count(&store, &s.rules).await.map_err(|e| e.to_string())?;
                    let tag = s.tag_id.map(|t| format!("tag {t}")).unwrap_or_else(|| "no tag yet".into());
                    println!("{}  {:?}  {count} followers ({following} following), {tag}", s.id, s.name);
                }
            }
            SegmentsCommand::Sync { id } => {
                let (store, client) = client(&config).await?;
                let segment =
                    audiences::get(&store, id).await.map_err(|e| e.to_string())?.ok_or(format!("no segment {id}"))?;
                let (sync, new) =
                    audiences::sync::start(&store, &segment, "cli", false).await.map_err(|e| e.to_string())?;
                println!("{} sync {} of segment {id}", if new { "started" } else { "resuming" }, sync.id);
                let done = audiences::sync::run_to_end(&store, &client, sync.id)
                    .await
                    .map_err(|e| format!("segment sync {} stopped (run this again to resume): {e}", sync.id))?;
                println!(
                    "sync {}: {} — added {}, removed {}, skipped {}{}",
                    done.id,
                    done.state.as_str(),
                    done.added,
                    done.removed,
                    done.skipped,
                    done.error.as_deref().map(|e| format!(" — {e}")).unwrap_or_default()
                );
                if done.state != audiences::sync::State::Done {
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
