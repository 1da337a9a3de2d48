//! The console's campaign pages: the dashboard (the schedule as a timeline with each run's
//! figures, campaigns with a sold-out badge), a campaign with its article's live preview,
//! scheduling (the articles, tag and test followers picked by name) and previews. A push's own
//! page (reschedule, cancel) is [`super::pushes`].

use super::error::{Error, Invalid, NO_CAMPAIGN};
use super::pickers;
use super::{Notice, Outcome, Posted, Signed, SignedRaw, Staff, redirect, render};
use crate::campaigns::schedule::{self, Audience, MsgType, PushInput, PushStatus, RunStatus};
use crate::campaigns::{self, Article, CampaignInput, ProductInput, send};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;

/// A push type from a form's value; anything else is a refusal, never a default.
fn msg_type(value: &str) -> Result<MsgType, Invalid> {
    MsgType::parse(value).ok_or_else(|| Invalid::NotAPushType(value.to_owned()))
}

/// How the console names a push's audience: tags and segments by name where known.
fn audience_label(a: &Audience, names: &pickers::Names) -> String {
    let named = |name: Option<&String>, id: i64| match name {
        Some(n) => format!("{n} ({id})"),
        None => id.to_string(),
    };
    match a {
        Audience::All => "全部粉丝 all followers".into(),
        Audience::Tag { tag_id } => format!("标签 tag {}", named(names.tags.get(tag_id), *tag_id)),
        Audience::List { openids } => format!("{} 位粉丝 followers", openids.len()),
        Audience::Segment { segment } => format!("分组 segment {}", named(names.segments.get(segment), *segment)),
    }
}

/// How the console names a push's status.
pub(super) fn push_label(status: PushStatus) -> &'static str {
    match status {
        PushStatus::Scheduled => "待发送 scheduled",
        PushStatus::Fired => "已发送 fired",
        PushStatus::Cancelled => "已取消 cancelled",
        PushStatus::Missed => "已错过 missed",
    }
}

/// How the console names a run's status.
pub(super) fn run_label(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Sending => "发送中 sending",
        RunStatus::Submitted => "已提交 submitted",
        RunStatus::Finished => "已完成 finished",
        RunStatus::Failed => "失败 failed",
        RunStatus::Missed => "已错过 missed",
    }
}

/// A push as the timeline shows it.
pub(super) fn push_view(p: &schedule::Push, names: &pickers::Names) -> minijinja::Value {
    let when = p.next_at.or(p.at).or(p.runs.last().map(|r| r.due_at));
    let runs: Vec<minijinja::Value> = p
        .runs
        .iter()
        .map(|r| {
            context! {
                due => schedule::local_time(r.due_at, &p.time_zone),
                status => r.status, status_label => run_label(r.status),
                sent => r.sent_count, total => r.total_count, filtered => r.filter_count, errors => r.error_count,
                error => r.error,
            }
        })
        .collect();
    context! {
        id => p.id, campaign => p.campaign, campaign_id => p.campaign_id, name => p.name,
        msg_type => p.msg_type.as_str(), audience => audience_label(&p.audience, names), status => p.status,
        status_label => push_label(p.status),
        articles => p.articles.as_ref().map(|a| a.iter().map(|i| (i + 1).to_string()).collect::<Vec<_>>().join(", ")),
        when => when.map(|t| schedule::local_time(t, &p.time_zone)),
        day => when.map(|t| schedule::local_time(t, &p.time_zone)[..10].to_owned()),
        cron => p.cron, runs => runs, upcoming => p.next_at.is_some(),
        recallable => crate::campaigns::recall::recallable(p),
        recalled => p.recalled.iter().map(|r| context! {
            what => if r.article_idx == 0 { "全部文章 all articles".to_owned() } else { format!("第 {0} 篇 article {0}", r.article_idx) },
            by => r.by, at => schedule::local_time(r.at, &p.time_zone),
        }).collect::<Vec<_>>(),
    }
}

/// What the campaign pages' redirects can say happened.
pub(super) const DONE: &[(&str, &str)] = &[
    ("created", "活动已创建 Campaign created"),
    ("saved", "已保存 Saved"),
    ("article-added", "文章已添加 Article added"),
    ("article-saved", "文章已保存 Article saved"),
    ("article-removed", "文章已删除 Article removed"),
    ("scheduled", "推送已排期 Push scheduled"),
    ("cancelled", "推送已取消 Push cancelled"),
    ("rescheduled", "推送已改期 Push rescheduled"),
    ("recalled", "推送已撤回 Push recalled"),
    (
        "not-recallable",
        "该推送未发出、不是图文或已撤回，无法撤回 That push was never sent, is not articles, or was recalled already",
    ),
    ("recall-failed", "微信未能撤回该推送，请稍后再试 WeChat did not recall the push: try again later"),
    (
        "not-cancellable",
        "该推送已发出或已取消，无法取消 That push has fired (or was cancelled) and cannot be cancelled",
    ),
];

/// Whether a campaign's product is sold out: the shop says none are left.
async fn sold_out(app: &AppState, sku: Option<&str>) -> Result<Option<crate::shop::Product>, sqlx::Error> {
    match sku {
        Some(sku) => crate::shop::product(&app.store, sku).await,
        None => Ok(None),
    }
}

pub(super) async fn dashboard(
    State(app): State<AppState>,
    Query(q): Query<Notice>,
    s: Staff,
) -> Result<Response, Error> {
    let (campaigns, pushes, charts) = tokio::try_join!(
        campaigns::list(&app.store, 200),
        schedule::list(&app.store, None, 200),
        super::figures::dashboard(&app)
    )?;
    let charts = charts.map(minijinja::Value::from_safe_string);
    // The timeline reads forward in time.
    let mut timeline: Vec<&schedule::Push> = pushes.iter().collect();
    timeline.sort_by_key(|p| p.next_at.or(p.at).or(p.runs.last().map(|r| r.due_at)).unwrap_or(p.created_at));
    let names = pickers::names(&app).await?;
    let timeline: Vec<minijinja::Value> = timeline.into_iter().map(|p| push_view(p, &names)).collect();
    let mut rows = Vec::new();
    for c in &campaigns {
        let product = sold_out(&app, c.product_sku.as_deref()).await?;
        rows.push(context! {
            id => c.id, name => c.name, articles => c.articles.len(), sku => c.product_sku,
            stock => product.as_ref().map(|p| p.stock), sold_out => product.is_some_and(|p| p.stock <= 0),
        });
    }
    let campaigns = rows;
    Ok(render(
        &app,
        StatusCode::OK,
        "dashboard.html",
        context! { who => s.caller.name, role => s.caller.role.as_str(), form_token => s.form_token,
        campaigns, timeline, charts, notice => q.text(DONE) },
    ))
}

/// The campaign form's fields (the first article; the others have their own pages, [`super::articles`]).
#[derive(Deserialize, Default)]
pub(super) struct CampaignForm {
    form_token: String,
    name: String,
    #[serde(default)]
    sku: String,
    #[serde(default)]
    product_name: String,
    #[serde(default)]
    stock: String,
    title: String,
    #[serde(default)]
    author: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    cover_media_id: String,
    #[serde(default)]
    cover_url: String,
    #[serde(default)]
    link: String,
}

impl Posted for CampaignForm {
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

impl CampaignForm {
    fn input(&self, rest: &[Article]) -> Result<CampaignInput, Invalid> {
        let stock = match self.stock.trim() {
            "" => None,
            s => Some(s.parse::<i64>().map_err(|_| Invalid::Stock)?),
        };
        let first = Article {
            title: self.title.trim().to_owned(),
            author: self.author.trim().to_owned(),
            digest: self.digest.trim().to_owned(),
            content: self.content.clone(),
            cover_media_id: self.cover_media_id.trim().to_owned(),
            cover_url: self.cover_url.trim().to_owned(),
            link: self.link.trim().to_owned(),
        };
        let product = (!self.sku.trim().is_empty()).then(|| ProductInput {
            sku: self.sku.trim().to_owned(),
            name: self.product_name.trim().to_owned(),
            stock,
        });
        let articles = std::iter::once(first).chain(rest.iter().cloned()).collect();
        Ok(CampaignInput { name: self.name.trim().to_owned(), articles, product })
    }

    fn view(&self) -> minijinja::Value {
        context! {
            name => self.name, sku => self.sku, product_name => self.product_name, stock => self.stock,
            title => self.title, author => self.author, digest => self.digest, content => self.content,
            cover_media_id => self.cover_media_id, cover_url => self.cover_url, link => self.link,
        }
    }
}

pub(super) async fn new_campaign(State(app): State<AppState>, s: Staff) -> Result<Response, Error> {
    Ok(render(
        &app,
        StatusCode::OK,
        "new.html",
        context! { who => s.caller.name, form_token => s.form_token, form => CampaignForm::default().view() },
    ))
}

pub(super) async fn create_campaign(
    State(app): State<AppState>,
    Signed(s, f): Signed<CampaignForm>,
) -> Result<Response, Error> {
    let refuse = |error: String| {
        Ok(render(
            &app,
            StatusCode::BAD_REQUEST,
            "new.html",
            context! { who => s.caller.name, form_token => s.form_token, form => f.view(), error },
        ))
    };
    let input = match f.input(&[]) {
        Ok(i) => i,
        Err(why) => return refuse(why.to_string()),
    };
    match campaigns::create(&app.store, &input).await {
        Ok(c) => {
            tracing::info!(campaign = c.id, by = %s.caller.name, "campaign created in the console");
            Ok(redirect(&format!("/admin/campaigns/{}?done=created", c.id)))
        }
        Err(campaigns::Error::Refused(r)) => refuse(refused("未能创建 Not created", r)),
        Err(e) => Err(e.into()),
    }
}

/// A refusal from the campaign domain, as the console shows it: what did not happen (in both
/// languages), then the reason.
fn refused(what: &str, r: campaigns::Refusal) -> String {
    format!("{what}: {r}")
}

/// The campaign page: article (editable, live preview), pushes, schedule and preview forms.
pub(super) async fn campaign_page(app: &AppState, s: &Staff, id: i64, out: Outcome) -> Result<Response, Error> {
    let campaign = campaign(app, id).await?;
    let pushes = schedule::list(&app.store, Some(id), campaigns::funnel::MAX_PUSHES).await?;
    let product = sold_out(app, campaign.product_sku.as_deref()).await?;
    let stock = product.as_ref().map(|p| p.stock);
    let is_sold_out = stock.is_some_and(|s| s <= 0);
    let first = campaign.articles.first().cloned().unwrap_or_default();
    // The stock is the shop's: the form never sends it back (only a new product's first figure).
    let form = out.form.unwrap_or_else(|| {
        context! {
            name => campaign.name, sku => campaign.product_sku, product_name => product.map(|p| p.name),
            title => first.title, author => first.author, digest => first.digest, content => first.content,
            cover_media_id => first.cover_media_id, cover_url => first.cover_url, link => first.link,
        }
    });
    let charts = super::figures::campaign(app, &campaign, &pushes).await?.map(minijinja::Value::from_safe_string);
    let segments: Vec<minijinja::Value> = crate::audiences::list(&app.store)
        .await?
        .into_iter()
        .map(|g| context! { id => g.id, name => g.name })
        .collect();
    // Both may ask WeChat (each waits at most a few seconds): asked together.
    let (tags, testers) = tokio::join!(pickers::tags(app), pickers::testers(app));
    let (tags, tags_listed, names) = tags?;
    let pushes: Vec<minijinja::Value> = pushes.iter().map(|p| push_view(p, &names)).collect();
    let testers = testers?;
    Ok(render(
        app,
        out.status,
        "campaign.html",
        context! {
            who => s.caller.name, form_token => s.form_token, id, form, pushes, notice => out.notice,
            error => out.error,
            articles => campaign.articles.len(), more_articles => campaign.articles.len() < super::MAX_ARTICLES,
            article_list => pickers::articles(&campaign),
            stock, sold_out => is_sold_out, segments, tags, tags_listed, testers, charts,
            link => campaigns::article_link(&app.config.h5.public_url, id),
            time_zone => app.config.campaigns.time_zone,
        },
    ))
}

/// Campaign `id`, or the 404 page.
pub(super) async fn campaign(app: &AppState, id: i64) -> Result<campaigns::Campaign, Error> {
    campaigns::get(&app.store, id).await?.ok_or(Error::NotFound(NO_CAMPAIGN))
}

pub(super) async fn show_campaign(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<Notice>,
    s: Staff,
) -> Result<Response, Error> {
    campaign_page(&app, &s, id, Outcome::shown(q.text(DONE))).await
}

pub(super) async fn update_campaign(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Signed(s, f): Signed<CampaignForm>,
) -> Result<Response, Error> {
    let rest: Vec<Article> = campaign(&app, id).await?.articles.into_iter().skip(1).collect();
    let why = match f.input(&rest) {
        Ok(input) => match campaigns::update(&app.store, id, &input).await {
            Ok(_) => return Ok(redirect(&format!("/admin/campaigns/{id}?done=saved"))),
            Err(campaigns::Error::Refused(r)) => refused("未能保存 Not saved", r),
            Err(e) => return Err(e.into()),
        },
        Err(why) => why.to_string(),
    };
    campaign_page(&app, &s, id, Outcome::refused(StatusCode::BAD_REQUEST, why, Some(f.view()))).await
}

#[derive(Deserialize)]
pub(super) struct PushForm {
    form_token: String,
    name: String,
    #[serde(default)]
    msg_type: String,
    #[serde(default)]
    text: String,
    /// `all`, `tag`, `segment` or `list`.
    audience: String,
    #[serde(default)]
    tag_id: String,
    /// A segment's id, for `segment`.
    #[serde(default)]
    segment: String,
    #[serde(default)]
    openids: String,
    /// `at` or `cron`.
    #[serde(default)]
    when: String,
    #[serde(default)]
    at: String,
    #[serde(default)]
    cron: String,
    #[serde(default)]
    time_zone: String,
}

fn openid_list(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == ',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl Posted for PushForm {
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

impl PushForm {
    /// The push the form describes; only the fields its choices make apply are read (a browser
    /// without the script shows and sends them all).
    fn input(&self, articles: Option<Vec<i64>>) -> Result<PushInput, Invalid> {
        let msg_type = msg_type(&self.msg_type)?;
        let audience = match self.audience.as_str() {
            "tag" => Audience::Tag { tag_id: self.tag_id.trim().parse().map_err(|_| Invalid::NoTag)? },
            "list" => Audience::List { openids: openid_list(&self.openids) },
            "segment" => Audience::Segment { segment: self.segment.trim().parse().map_err(|_| Invalid::NoSegment)? },
            "all" => Audience::All,
            other => return Err(Invalid::NotAnAudience(other.to_owned())),
        };
        let (at, cron) =
            if self.when == "cron" { (None, Some(self.cron.clone())) } else { (Some(self.at.clone()), None) };
        Ok(PushInput {
            name: self.name.clone(),
            msg_type,
            text: (msg_type == MsgType::Text).then(|| self.text.clone()),
            audience,
            at,
            cron,
            time_zone: (!self.time_zone.trim().is_empty()).then(|| self.time_zone.trim().to_owned()),
            articles: if msg_type == MsgType::Text { None } else { articles },
        })
    }
}

pub(super) async fn schedule_push(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    SignedRaw(s, f, raw): SignedRaw<PushForm>,
) -> Result<Response, Error> {
    let count = campaign(&app, id).await?.articles.len();
    // A text push sends no article: its (hidden) article boxes are not read.
    let articles = match msg_type(&f.msg_type) {
        Ok(MsgType::Text) => Ok(None),
        _ => pickers::chosen_articles(&raw, count),
    };
    let input = articles.and_then(|articles| f.input(articles));
    let result = match input {
        Ok(input) => schedule::schedule(&app.store, &app.config.campaigns, id, &input, &s.caller.name).await,
        Err(why) => Err(campaigns::Error::Refused(campaigns::Refusal::Invalid(why.to_string()))),
    };
    match result {
        Ok(p) => {
            app.scheduler_wake.notify_one();
            tracing::info!(push = p.id, campaign = id, by = %s.caller.name, "push scheduled in the console");
            Ok(redirect(&format!("/admin/campaigns/{id}?done=scheduled")))
        }
        Err(campaigns::Error::Refused(r)) => {
            let status = match r {
                campaigns::Refusal::Rule(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            campaign_page(&app, &s, id, Outcome::refused(status, refused("未能排期 Not scheduled", r), None)).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub(super) struct PreviewForm {
    form_token: String,
    /// Openids typed in, besides the test followers picked (`testers`).
    #[serde(default)]
    openids: String,
    #[serde(default)]
    msg_type: String,
    #[serde(default)]
    text: String,
}

impl Posted for PreviewForm {
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

pub(super) async fn preview(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    SignedRaw(s, f, raw): SignedRaw<PreviewForm>,
) -> Result<Response, Error> {
    let campaign = campaign(&app, id).await?;
    let bad = |why: String| campaign_page(&app, &s, id, Outcome::refused(StatusCode::BAD_REQUEST, why, None));
    let msg_type = match msg_type(&f.msg_type) {
        Ok(t) => t,
        Err(why) => return bad(why.to_string()).await,
    };
    let articles = match pickers::chosen_articles(&raw, campaign.articles.len()) {
        Ok(a) if msg_type != MsgType::Text => a,
        Ok(_) => None,
        Err(why) => return bad(why.to_string()).await,
    };
    let mut to = match pickers::resolve_testers(&app, &pickers::repeated(&raw, "testers")).await {
        Ok(to) => to,
        Err(Error::Invalid(why)) => return bad(why.to_string()).await,
        Err(e) => return Err(e),
    };
    to.extend(openid_list(&f.openids).into_iter().filter(|o| !to.contains(o)).collect::<Vec<_>>());
    if to.is_empty() {
        return bad(Invalid::NoTester.to_string()).await;
    }
    let text = Some(f.text.as_str());
    match send::preview(&app.client, &app.config.h5.public_url, &campaign, msg_type, text, articles.as_deref(), &to)
        .await
    {
        Ok(results) => {
            let sent = results.iter().filter(|r| r.ok).count();
            let failed: Vec<String> = results
                .iter()
                .filter(|r| !r.ok)
                .map(|r| format!("{}: {}", crate::mask(&r.openid), r.error.clone().unwrap_or_default()))
                .collect();
            let notice = format!(
                "预览已发送给 {sent}/{} 位测试粉丝 Preview sent to {sent} of {} test follower(s)",
                results.len(),
                results.len()
            );
            let error = (!failed.is_empty()).then(|| format!("未送达 Not delivered: {}", failed.join("; ")));
            campaign_page(&app, &s, id, Outcome { notice: Some(notice), error, ..Outcome::default() }).await
        }
        Err(campaigns::Error::Refused(r)) => bad(refused("未能预览 Not previewed", r)).await,
        Err(e) => Err(e.into()),
    }
}
