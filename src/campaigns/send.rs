//! From a campaign to what WeChat is sent: the draft of an `mpnews` push, a text, a link card,
//! and previews of each to test followers (`mass/preview`).

use super::schedule::MsgType;
use super::{Article, Audience, Campaign, Error, Refusal, article_link};
use crate::wechat::client::mass::{Audience as MassAudience, MassContent, MassSent};
use crate::wechat::client::media::DraftArticle;
use crate::wechat::client::message::{CustomMessage, NewsArticle};
use crate::wechat::client::{CallError, Client};

/// An article's link: its own, or the campaign's landing naming the push (`push_id` 0: none,
/// as in previews), so the funnel counts its opens under the push.
fn link(public_url: &str, campaign: &Campaign, a: &Article, push_id: i64) -> String {
    match (a.link.is_empty(), push_id) {
        (false, _) => a.link.clone(),
        (true, 0) => article_link(public_url, campaign.id),
        (true, p) => crate::shop::push_link(public_url, campaign.id, p),
    }
}

/// An article a push chose that its campaign no longer has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the campaign has {count} article(s); article index {index} is gone")]
pub struct ArticleGone {
    /// The articles the campaign has.
    pub count: usize,
    /// The index chosen.
    pub index: i64,
}

/// The articles a push sends: those `chosen` (indexes, in that order), or all. An index the
/// campaign no longer has (its articles were edited since) is an error naming it, never a
/// silently shorter draft.
pub fn chosen<'a>(campaign: &'a Campaign, chosen: Option<&[i64]>) -> Result<Vec<&'a Article>, ArticleGone> {
    match chosen {
        None => Ok(campaign.articles.iter().collect()),
        Some(indexes) => indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| campaign.articles.get(i))
                    .ok_or(ArticleGone { count: campaign.articles.len(), index: i })
            })
            .collect(),
    }
}

/// The chosen articles (all when `None`) of a campaign as a draft (`draft/add`) for push
/// `push_id`; returns its media_id.
pub async fn add_draft(
    client: &Client,
    public_url: &str,
    campaign: &Campaign,
    push_id: i64,
    selection: Option<&[i64]>,
) -> Result<String, CallError> {
    let articles: Vec<DraftArticle> = chosen(campaign, selection)
        .map_err(|e| CallError::Invalid(e.to_string()))?
        .into_iter()
        .map(|a| DraftArticle {
            title: a.title.clone(),
            author: a.author.clone(),
            digest: a.digest.clone(),
            // Cleaned when stored; cleaned again (it changes nothing then) for campaigns stored
            // before bodies were cleaned.
            content: super::html::clean(&a.content),
            content_source_url: link(public_url, campaign, a, push_id),
            thumb_media_id: a.cover_media_id.clone(),
            need_open_comment: 0,
            only_fans_can_comment: 0,
        })
        .collect();
    client.draft_add(&articles).await
}

/// The link card of a `news` push: its chosen article, or the first.
pub fn news_card(public_url: &str, campaign: &Campaign, push_id: i64, selection: Option<&[i64]>) -> CustomMessage {
    let a = chosen(campaign, selection).ok().and_then(|a| a.first().map(|a| (*a).clone())).unwrap_or_default();
    CustomMessage::News {
        articles: vec![NewsArticle {
            url: link(public_url, campaign, &a, push_id),
            title: a.title,
            description: a.digest,
            picurl: a.cover_url,
        }],
    }
}

/// One mass send (`sendall` for all or a tag, `send` for a list).
pub async fn mass_send(
    client: &Client,
    audience: &Audience,
    content: &MassContent,
    clientmsgid: &str,
) -> Result<MassSent, CallError> {
    match audience {
        Audience::All => client.mass_send_all(&MassAudience::All, content, Some(clientmsgid)).await,
        Audience::Tag { tag_id } => client.mass_send_all(&MassAudience::Tag(*tag_id), content, Some(clientmsgid)).await,
        Audience::List { openids } => {
            let to: Vec<&str> = openids.iter().map(String::as_str).collect();
            client.mass_send(&to, content, Some(clientmsgid)).await
        }
        // The scheduler syncs a segment and sends to its tag; an unsynced one never goes out.
        Audience::Segment { segment } => {
            Err(CallError::Invalid(format!("segment {segment} must be synced to its tag before sending")))
        }
    }
}

/// What one test follower's preview came to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Previewed {
    pub openid: String,
    pub ok: bool,
    pub error: Option<String>,
}

/// Followers one preview may go to (each is one `mass/preview` call).
pub const MAX_PREVIEW_RECIPIENTS: usize = 20;

/// Sends the campaign as `msg_type` to each test follower only (WeChat's `mass/preview`; a
/// `news` card goes as a customer-service message).
pub async fn preview(
    client: &Client,
    public_url: &str,
    campaign: &Campaign,
    msg_type: MsgType,
    text: Option<&str>,
    selection: Option<&[i64]>,
    openids: &[String],
) -> Result<Vec<Previewed>, Error> {
    if openids.is_empty() || openids.len() > MAX_PREVIEW_RECIPIENTS {
        return Err(Error::Refused(Refusal::Invalid(
            "a preview goes to 1 to 20 test followers (name them, or set campaigns.test_openids)".into(),
        )));
    }
    if let Some(s) = selection {
        super::schedule::check_selection(msg_type, s)?;
        super::schedule::check_in_range(Some(s), campaign.articles.len())?;
    }
    let content = match msg_type {
        MsgType::Mpnews => match add_draft(client, public_url, campaign, 0, selection).await {
            Ok(media_id) => Some(MassContent::Mpnews { media_id }),
            Err(e) => return Err(Error::Refused(Refusal::Rule(format!("WeChat refused the draft: {e}")))),
        },
        MsgType::Text => {
            let text = text
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| Error::Refused(Refusal::Invalid("a text preview needs its text".into())))?;
            Some(MassContent::Text { content: text.trim().to_owned() })
        }
        MsgType::News => None,
    };
    let mut out = Vec::new();
    for openid in openids {
        let sent = match &content {
            Some(c) => client.mass_preview(openid, c).await,
            None => client.custom_send(openid, &news_card(public_url, campaign, 0, selection)).await,
        };
        out.push(Previewed { openid: openid.clone(), ok: sent.is_ok(), error: sent.err().map(|e| e.to_string()) });
    }
    Ok(out)
}
