//! `wxoa campaign …` and `wxoa push …`: the marketing console's work from a terminal. They
//! work on the configured database directly; a running server's scheduler picks up a push
//! scheduled here within `campaigns.poll_ms`.

use crate::campaigns::schedule::{self, Audience, MsgType, PushInput};
use crate::campaigns::{self, Campaign, CampaignInput, send};
use crate::config::Config;
use crate::text::Failure;
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign from a JSON file (name, articles, product; see README).
    Create { file: PathBuf },
    /// Replace a campaign's name, articles and product from a JSON file.
    Update { campaign: String, file: PathBuf },
    /// List campaigns, newest first.
    List,
    /// A campaign, its pushes and their figures, as JSON.
    Show { campaign: String },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    Mpnews,
    Text,
    News,
}

#[derive(Subcommand)]
pub enum PushCommand {
    /// Schedule a push of a campaign (by id or name).
    Schedule {
        campaign: String,
        #[arg(long)]
        name: String,
        /// When: RFC 3339, or local "YYYY-MM-DD HH:MM" in --tz.
        #[arg(long, conflicts_with = "cron", required_unless_present = "cron")]
        at: Option<String>,
        /// Or a repeating cron pattern (croner), e.g. "13 0 * * *".
        #[arg(long)]
        cron: Option<String>,
        /// Time zone (default campaigns.time_zone).
        #[arg(long)]
        tz: Option<String>,
        /// To everyone (the default when neither --tag, --segment nor --openids is given).
        #[arg(long, conflicts_with_all = ["tag", "openids", "segment"])]
        all: bool,
        #[arg(long, conflicts_with_all = ["openids", "segment"])]
        tag: Option<i64>,
        /// A segment's id: synced to its WeChat tag when the push fires, then sent to it.
        #[arg(long, conflicts_with = "openids")]
        segment: Option<i64>,
        /// Comma-separated openids.
        #[arg(long, value_delimiter = ',')]
        openids: Vec<String>,
        #[arg(long = "type", value_enum, default_value = "mpnews")]
        kind: Kind,
        /// The text of a text push.
        #[arg(long)]
        text: Option<String>,
        /// Which of the campaign's articles it sends: comma-separated indexes from 0, in order
        /// (all by default).
        #[arg(long, value_delimiter = ',')]
        articles: Option<Vec<i64>>,
        /// Recorded as who scheduled it.
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Pushes, latest time first, with their runs.
    List {
        #[arg(long)]
        campaign: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Cancel a push that has not fired.
    Cancel { push: i64 },
    /// Take a sent push back (WeChat's message/mass/delete): its article pages stop opening;
    /// followers keep the card.
    Recall {
        push: i64,
        /// Only this article (from 1); all of them by default.
        #[arg(long)]
        article: Option<i64>,
        /// Recorded as who recalled it.
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Move a push that has not fired to a new time (WeChat's limits checked again).
    Reschedule {
        push: i64,
        /// The new time: RFC 3339, or local "YYYY-MM-DD HH:MM" in --tz.
        #[arg(long, conflicts_with = "cron", required_unless_present = "cron")]
        at: Option<String>,
        /// Or a repeating cron pattern.
        #[arg(long)]
        cron: Option<String>,
        /// Time zone (default: the push's own).
        #[arg(long)]
        tz: Option<String>,
    },
    /// Send a campaign to test followers only (campaigns.test_openids unless --openid is given).
    Preview {
        campaign: String,
        #[arg(long = "openid")]
        openids: Vec<String>,
        #[arg(long = "type", value_enum, default_value = "mpnews")]
        kind: Kind,
        #[arg(long)]
        text: Option<String>,
        /// Which articles (comma-separated indexes from 0; all by default).
        #[arg(long, value_delimiter = ',')]
        articles: Option<Vec<i64>>,
    },
}

fn msg_type(k: Kind) -> MsgType {
    match k {
        Kind::Mpnews => MsgType::Mpnews,
        Kind::Text => MsgType::Text,
        Kind::News => MsgType::News,
    }
}

fn read_campaign(file: &PathBuf) -> Result<CampaignInput, Failure> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?)
}

async fn find(store: &crate::store::Store, key: &str) -> Result<Campaign, Failure> {
    Ok(campaigns::find(store, key).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("no campaign {key:?}"))?)
}

fn when(ms: Option<i64>, tz: &str) -> String {
    ms.map(|t| schedule::local_time(t, tz)).unwrap_or_else(|| "-".into())
}

pub async fn campaign(config: &Config, command: CampaignCommand) -> Result<ExitCode, Failure> {
    let store = super::open_store(config).await?;
    match command {
        CampaignCommand::Create { file } => {
            let c = campaigns::create(&store, &read_campaign(&file)?).await.map_err(|e| e.to_string())?;
            println!("campaign {} created: {}", c.id, c.name);
        }
        CampaignCommand::Update { campaign, file } => {
            let id = find(&store, &campaign).await?.id;
            let c = campaigns::update(&store, id, &read_campaign(&file)?).await.map_err(|e| e.to_string())?;
            println!("campaign {} updated: {}", c.id, c.name);
        }
        CampaignCommand::List => {
            for c in campaigns::list(&store, 1000).await.map_err(|e| e.to_string())? {
                println!(
                    "{:>5}  {:<30}  {} article(s)  product {}",
                    c.id,
                    c.name,
                    c.articles.len(),
                    c.product_sku.as_deref().unwrap_or("-")
                );
            }
        }
        CampaignCommand::Show { campaign } => {
            let c = find(&store, &campaign).await?;
            let pushes = schedule::list(&store, Some(c.id), 1000).await.map_err(|e| e.to_string())?;
            let mut v = serde_json::json!(c);
            v["pushes"] = serde_json::json!(pushes);
            println!("{}", serde_json::to_string_pretty(&v).expect("serializable"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn push(config: &Config, command: PushCommand) -> Result<ExitCode, Failure> {
    let store = super::open_store(config).await?;
    match command {
        PushCommand::Schedule {
            campaign,
            name,
            at,
            cron,
            tz,
            all: _,
            tag,
            segment,
            openids,
            kind,
            text,
            articles,
            by,
        } => {
            let id = find(&store, &campaign).await?.id;
            let audience = match (tag, segment, openids.is_empty()) {
                (Some(tag_id), _, _) => Audience::Tag { tag_id },
                (None, Some(segment), _) => Audience::Segment { segment },
                (None, None, false) => Audience::List { openids },
                (None, None, true) => Audience::All,
            };
            let input = PushInput { name, msg_type: msg_type(kind), text, audience, at, cron, time_zone: tz, articles };
            let p = schedule::schedule(&store, &config.campaigns, id, &input, &by).await.map_err(|e| e.to_string())?;
            println!(
                "push {} scheduled: {} to {}, next {}",
                p.id,
                p.name,
                p.audience.describe(),
                when(p.next_at, &p.time_zone)
            );
        }
        PushCommand::List { campaign, limit } => {
            let id = match campaign {
                Some(c) => Some(find(&store, &c).await?.id),
                None => None,
            };
            for p in schedule::list(&store, id, limit.clamp(1, 1000)).await.map_err(|e| e.to_string())? {
                println!(
                    "{:>5}  {:<20} {:<12} {:<7} {:<10} {:<18} next {}",
                    p.id,
                    p.campaign,
                    p.name,
                    p.msg_type.as_str(),
                    p.status,
                    p.audience.describe(),
                    when(p.next_at, &p.time_zone)
                );
                for r in &p.runs {
                    println!(
                        "         run {} due {}: {}  sent {} / total {}  filtered {}  errors {}{}",
                        r.id,
                        when(Some(r.due_at), &p.time_zone),
                        r.status,
                        r.sent_count.unwrap_or(0),
                        r.total_count.unwrap_or(0),
                        r.filter_count.unwrap_or(0),
                        r.error_count.unwrap_or(0),
                        r.error.as_deref().map(|e| format!("  ({e})")).unwrap_or_default()
                    );
                }
            }
        }
        PushCommand::Cancel { push } => {
            let p = schedule::cancel(&store, push).await.map_err(|e| e.to_string())?;
            println!("push {} cancelled: {}", p.id, p.name);
        }
        PushCommand::Recall { push, article, by } => {
            let client =
                crate::wechat::client::Client::new(&config.wechat.account(), &config.rate_limits, store.clone());
            let p = crate::campaigns::recall::recall(&store, &client, push, article, &by).await?;
            let what = article.map_or("all its articles".to_owned(), |a| format!("article {a}"));
            println!("push {} recalled ({what}): {}", p.id, p.name);
        }
        PushCommand::Reschedule { push, at, cron, tz } => {
            let time = schedule::NewTime { at, cron, time_zone: tz };
            let p = schedule::reschedule(&store, &config.campaigns, push, &time).await.map_err(|e| e.to_string())?;
            println!("push {} rescheduled: {}, next {}", p.id, p.name, when(p.next_at, &p.time_zone));
        }
        PushCommand::Preview { campaign, openids, kind, text, articles } => {
            let c = find(&store, &campaign).await?;
            let client =
                crate::wechat::client::Client::new(&config.wechat.account(), &config.rate_limits, store.clone());
            let to = if openids.is_empty() { config.campaigns.test_openids.clone() } else { openids };
            let results = send::preview(
                &client,
                &config.h5.public_url,
                &c,
                msg_type(kind),
                text.as_deref(),
                articles.as_deref(),
                &to,
            )
            .await
            .map_err(|e| e.to_string())?;
            let mut failed = false;
            for r in results {
                failed |= !r.ok;
                match r.error {
                    None => println!("preview sent to {}", crate::mask(&r.openid)),
                    Some(e) => println!("preview to {} failed: {e}", crate::mask(&r.openid)),
                }
            }
            return Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS });
        }
    }
    Ok(ExitCode::SUCCESS)
}
