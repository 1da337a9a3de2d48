//! `wxoa members …`: points by hand, lapsed points, the tier review, and a CRM export's import.

use super::{block_on, open_store};
use crate::config::Config;
use crate::text::Failure;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum MembersCommand {
    /// Record lapsed points as expire entries in the ledger (serve does this hourly).
    Expire,
    /// Review tiers against the points earned in the window, now (serve does this hourly).
    Tiers,
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
    /// Print everything wxoa holds about a person (openid or card number) as JSON (PIPL).
    Export { key: String },
    /// Erase a person's data (openid or card number) in one transaction (PIPL); prints what went.
    Erase { key: String },
}

pub fn run(config: Config, command: MembersCommand) -> Result<ExitCode, Failure> {
    match command {
        MembersCommand::Adjust { card, points, reason, reference } => adjust(config, card, points, reason, reference),
        MembersCommand::Expire => housekeeping(config, false),
        MembersCommand::Tiers => housekeeping(config, true),
        MembersCommand::Import { file } => import(config, file),
        MembersCommand::Export { key } => block_on(async {
            let store = open_store(&config).await?;
            let person = find(&store, &key).await?;
            let doc = crate::privacy::export(&store, &person).await.map_err(|e| format!("database: {e}"))?;
            println!("{}", serde_json::to_string_pretty(&doc).expect("JSON serializes"));
            Ok(ExitCode::SUCCESS)
        }),
        MembersCommand::Erase { key } => block_on(async {
            let store = open_store(&config).await?;
            let person = find(&store, &key).await?;
            let by = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
            let events = crate::crm::Events::new(&config.crm.webhook_url);
            let removed =
                crate::privacy::erase(&store, &person, &by, events).await.map_err(|e| format!("database: {e}"))?;
            let counts: Vec<String> =
                removed.iter().filter(|(_, n)| **n > 0).map(|(t, n)| format!("{t} {n}")).collect();
            println!("erased; rows removed or anonymised: {}", counts.join(", "));
            Ok(ExitCode::SUCCESS)
        }),
    }
}

async fn find(store: &crate::store::Store, key: &str) -> Result<crate::privacy::Person, Failure> {
    Ok(crate::privacy::find(store, key)
        .await
        .map_err(|e| format!("database: {e}"))?
        .ok_or_else(|| format!("{key}: no member or follower with that openid or card number"))?)
}

/// What the hourly job does, now: lapsed points recorded, or tiers reviewed.
fn housekeeping(config: Config, tiers: bool) -> Result<ExitCode, Failure> {
    let notices =
        crate::notices::Notices::load(&config.notices.file, &config.notices.templates, &config.h5.public_url)?;
    block_on(async {
        let store = open_store(&config).await?;
        let rules = rules(&config, &notices);
        if tiers {
            let n = crate::members::points::review_tiers(&store, &rules).await.map_err(|e| format!("database: {e}"))?;
            println!("{n} tiers changed");
        } else {
            let n = crate::members::points::expire(&store, &rules).await.map_err(|e| format!("database: {e}"))?;
            println!("{n} expiries recorded");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The points rules of `config`, telling followers with `notices`.
fn rules<'a>(config: &'a Config, notices: &'a crate::notices::Notices) -> crate::members::points::Rules<'a> {
    crate::members::points::Rules {
        loyalty: &config.loyalty,
        crm: crate::crm::Events::new(&config.crm.webhook_url),
        notices: Some(notices),
        tiers: true,
        now: config.clock.now_ms(),
    }
}

fn adjust(
    config: Config,
    card: String,
    points: i64,
    reason: String,
    reference: Option<String>,
) -> Result<ExitCode, Failure> {
    if points == 0 || points.abs() > 10_000_000 || reason.trim().is_empty() || reason.len() > 100 {
        return Err("points must be non-zero (at most 10,000,000) and --reason 1 to 100 bytes".into());
    }
    let notices = crate::notices::Notices::load(&config.notices.file, &config.notices.templates, &config.h5.public_url)
        .map_err(|e| e.to_string())?;
    let card = crate::members::import::normalise_card(&card).ok_or_else(|| format!("{card:?} is not a card number"))?;
    // Namespaced, so a reference given by hand can never take the CRM's or the tills' own.
    let reference = format!("adjust:{}", reference.unwrap_or_else(|| format!("{card}:{points}:{}", reason.trim())));
    block_on(async {
        use crate::members::points::{self, Change, Kind, Outcome, Who};
        let store = open_store(&config).await?;
        let mut change = Change::new(&reference, Who::Card(card.clone()), Kind::Adjust, points, config.clock.now_ms());
        change.note = Some(reason.trim().to_owned());
        let mut tx = store.begin().await.map_err(|e| format!("database: {e}"))?;
        let outcome =
            points::post(&mut tx, &rules(&config, &notices), &[change]).await.map_err(|e| format!("database: {e}"))?;
        tx.commit().await.map_err(|e| format!("database: {e}"))?;
        match outcome.first() {
            Some(Outcome::Applied { balance, .. }) => {
                println!("{card}: {points:+} points ({}); balance {balance}", reason.trim())
            }
            Some(Outcome::Duplicate) => {
                println!("{card}: already adjusted under reference {reference:?}; nothing changed")
            }
            Some(Outcome::Rejected(why)) => return Err(format!("{card}: {why}").into()),
            None => unreachable!("one change, one outcome"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn import(config: Config, file: PathBuf) -> Result<ExitCode, Failure> {
    let meta = std::fs::metadata(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    if meta.len() > 64 * 1024 * 1024 {
        return Err(Failure(format!("{}: larger than 64 MiB", file.display())));
    }
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    block_on(async {
        let store = open_store(&config).await?;
        let reports =
            crate::members::import::import_with(&store, &text, &config.loyalty).await.map_err(|e| e.to_string())?;
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
