//! What a push is: how it is delivered, the input it is scheduled from, the push and its runs
//! as stored, and the statuses they pass through.

use crate::campaigns::Audience;
use crate::stored_as;
use serde::{Deserialize, Serialize};

/// How a push is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MsgType {
    /// The articles as a draft, mass-sent.
    Mpnews,
    /// A mass-sent text.
    Text,
    /// A link card per follower of a list, through customer-service messages.
    News,
}

impl MsgType {
    pub fn as_str(self) -> &'static str {
        match self {
            MsgType::Mpnews => "mpnews",
            MsgType::Text => "text",
            MsgType::News => "news",
        }
    }

    /// The type a stored string names; `None` for one this build does not know (an error to
    /// report, never read as mpnews).
    pub fn parse(s: &str) -> Option<MsgType> {
        [MsgType::Mpnews, MsgType::Text, MsgType::News].into_iter().find(|t| t.as_str() == s)
    }

    /// Whether WeChat counts it as a mass send (the monthly and per-minute limits).
    pub fn is_mass(self) -> bool {
        self != MsgType::News
    }
}

fn default_msg_type() -> MsgType {
    MsgType::Mpnews
}

/// A push as the API and the CLI take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushInput {
    /// What the console and the logs call it (1 to 64 characters).
    pub name: String,
    /// How it is delivered; `mpnews` when absent.
    #[serde(default = "default_msg_type")]
    pub msg_type: MsgType,
    /// The text of a `text` push.
    #[serde(default)]
    pub text: Option<String>,
    /// Who it reaches.
    pub audience: Audience,
    /// One time: RFC 3339, or local `YYYY-MM-DD HH:MM[:SS]` in `time_zone`.
    #[serde(default)]
    pub at: Option<String>,
    /// Or a cron pattern, repeating.
    #[serde(default)]
    pub cron: Option<String>,
    /// IANA name; `campaigns.time_zone` when absent.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Which of the campaign's articles it sends: indexes into the campaign's `articles` (from
    /// 0), in the order given; all of them when absent. A teaser can send one article and the
    /// launch all eight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub articles: Option<Vec<i64>>,
}

/// Where a push stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushStatus {
    /// Waiting for its (next) time.
    Scheduled,
    /// A one-time push that went.
    Fired,
    /// Cancelled before it fired (or before its next time).
    Cancelled,
    /// Its time passed while no instance ran, beyond the grace.
    Missed,
}

/// Where one firing of a push stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Claimed; being sent.
    Sending,
    /// WeChat took it; figures to come.
    Submitted,
    /// MASSSENDJOBFINISH's figures are in.
    Finished,
    /// Not sent, for good; the run's `error` says why.
    Failed,
    /// Not sent: too late.
    Missed,
}

stored_as!(PushStatus { Scheduled => "scheduled", Fired => "fired", Cancelled => "cancelled", Missed => "missed" });
stored_as!(RunStatus {
    Sending => "sending",
    Submitted => "submitted",
    Finished => "finished",
    Failed => "failed",
    Missed => "missed",
});

/// One firing of a push and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The run's id.
    pub id: i64,
    /// The push it is a firing of.
    pub push_id: i64,
    /// The time it was due, unix ms (one run per push and time).
    pub due_at: i64,
    /// Where it stands.
    pub status: RunStatus,
    /// The mass send's id at WeChat, once WeChat took it (MASSSENDJOBFINISH names it).
    pub msg_id: Option<i64>,
    /// MASSSENDJOBFINISH's Status (`send success`, `err(…)`).
    pub finish_status: Option<String>,
    /// MASSSENDJOBFINISH's TotalCount: followers aimed at (a `news` push: its openids).
    pub total_count: Option<i64>,
    /// MASSSENDJOBFINISH's FilterCount: those left after WeChat's filtering.
    pub filter_count: Option<i64>,
    /// MASSSENDJOBFINISH's SentCount: those it reached.
    pub sent_count: Option<i64>,
    /// MASSSENDJOBFINISH's ErrorCount: those it failed to reach.
    pub error_count: Option<i64>,
    /// Why it failed or was missed, the last error of an attempt to be retried, or a note.
    pub error: Option<String>,
    /// When WeChat took it (or a `news` push's messages were queued), unix ms.
    pub fired_at: Option<i64>,
    /// When its figures arrived, or it failed or was missed, unix ms.
    pub finished_at: Option<i64>,
}

/// A push as stored, with its runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Push {
    /// The push's id.
    pub id: i64,
    /// The campaign it sends.
    pub campaign_id: i64,
    /// That campaign's name.
    pub campaign: String,
    /// Its name.
    pub name: String,
    /// How it is delivered.
    pub msg_type: MsgType,
    /// The text of a `text` push.
    pub text: Option<String>,
    /// Who it reaches.
    pub audience: Audience,
    /// A one-time push's time, unix ms.
    pub at: Option<i64>,
    /// A repeating push's cron pattern.
    pub cron: Option<String>,
    /// The IANA zone its time (or pattern) is read in.
    pub time_zone: String,
    /// When it fires next, unix ms; `None` once it has no next time.
    pub next_at: Option<i64>,
    /// Where it stands.
    pub status: PushStatus,
    /// Who scheduled it.
    pub created_by: String,
    /// When it was scheduled, unix ms.
    pub created_at: i64,
    /// The campaign's articles it sends (indexes); `None`: all of them.
    pub articles: Option<Vec<i64>>,
    /// Its firings, in time order.
    pub runs: Vec<Run>,
}

/// A scheduled push's new time: `at` or `cron`, and its zone (the push's own when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTime {
    /// One time, as [`PushInput::at`].
    #[serde(default)]
    pub at: Option<String>,
    /// Or a cron pattern, as [`PushInput::cron`].
    #[serde(default)]
    pub cron: Option<String>,
    /// IANA name; the push's own zone when absent.
    #[serde(default)]
    pub time_zone: Option<String>,
}
