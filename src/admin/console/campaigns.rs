//! The console's campaign pages: the dashboard (the schedule as a timeline with each run's
//! figures), a campaign with its article's live preview, scheduling, previews, cancelling.

use super::{Notice, Staff, TokenOnly, failure, redirect, render, signed_in};
use crate::campaigns::schedule::{self, Audience, MsgType, PushInput};
use crate::campaigns::{self, Article, CampaignInput, ProductInput, send};
use crate::state::AppState;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Deserialize;

/// A push type from a form's value; anything else is a refusal, never a default.
fn msg_type(value: &str) -> Result<MsgType, String> {
    MsgType::parse(value).ok_or_else(|| format!("{value:?} is not a push type: choose mpnews, text or news"))
}

/// A push as the timeline shows it.
fn push_view(p: &schedule::Push) -> minijinja::Value {
    let when = p.next_at.or(p.at).or(p.runs.last().map(|r| r.due_at));
    let runs: Vec<minijinja::Value> = p
        .runs
        .iter()
        .map(|r| {
            context! {
                due => schedule::local_time(r.due_at, &p.time_zone),
                status => r.status,
                sent => r.sent_count, total => r.total_count, filtered => r.filter_count, errors => r.error_count,
                error => r.error,
            }
        })
        .collect();
    context! {
        id => p.id, campaign => p.campaign, campaign_id => p.campaign_id, name => p.name,
        msg_type => p.msg_type.as_str(), audience => p.audience.describe(), status => p.status,
        when => when.map(|t| schedule::local_time(t, &p.time_zone)),
        day => when.map(|t| schedule::local_time(t, &p.time_zone)[..10].to_owned()),
        cron => p.cron, runs => runs, upcoming => p.next_at.is_some(),
    }
}

/// What the campaign pages' redirects can say happened.
const DONE: &[(&str, &str)] = &[
    ("created", "Campaign created"),
    ("saved", "Saved"),
    ("scheduled", "Push scheduled"),
    ("cancelled", "Push cancelled"),
    ("not-cancellable", "That push has fired (or was cancelled) and cannot be cancelled"),
];

pub(super) async fn dashboard(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<Notice>) -> Response {
    let s = match signed_in(&app, &headers, None).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let (campaigns, pushes, charts) = match tokio::try_join!(
        campaigns::list(&app.store, 200),
        schedule::list(&app.store, None, 200),
        super::figures::dashboard(&app)
    ) {
        Ok(x) => x,
        Err(e) => return failure(&app, e),
    };
    let charts = charts.map(minijinja::Value::from_safe_string);
    // The timeline reads forward in time.
    let mut timeline: Vec<&schedule::Push> = pushes.iter().collect();
    timeline.sort_by_key(|p| p.next_at.or(p.at).or(p.runs.last().map(|r| r.due_at)).unwrap_or(p.created_at));
    let timeline: Vec<minijinja::Value> = timeline.into_iter().map(push_view).collect();
    let campaigns: Vec<minijinja::Value> = campaigns
        .iter()
        .map(|c| context! { id => c.id, name => c.name, articles => c.articles.len(), sku => c.product_sku })
        .collect();
    render(
        &app,
        StatusCode::OK,
        "dashboard.html",
        context! { who => s.caller.name, role => s.caller.role.as_str(), form_token => s.form_token,
        campaigns, timeline, charts, notice => q.text(DONE) },
    )
}

/// The campaign form's fields (the first article; further ones come from the API).
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

impl CampaignForm {
    fn input(&self, rest: &[Article]) -> Result<CampaignInput, String> {
        let stock = match self.stock.trim() {
            "" => None,
            s => Some(s.parse::<i64>().map_err(|_| "stock must be a whole number".to_owned())?),
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

pub(super) async fn new_campaign(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&app, &headers, None).await {
        Ok(s) => render(
            &app,
            StatusCode::OK,
            "new.html",
            context! { who => s.caller.name, form_token => s.form_token, form => CampaignForm::default().view() },
        ),
        Err(r) => r.into_response(),
    }
}

pub(super) async fn create_campaign(
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CampaignForm>,
) -> Response {
    let s = match signed_in(&app, &headers, Some(&f.form_token)).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let refuse = |error: String| {
        render(
            &app,
            StatusCode::BAD_REQUEST,
            "new.html",
            context! { who => s.caller.name, form_token => s.form_token, form => f.view(), error },
        )
    };
    let input = match f.input(&[]) {
        Ok(i) => i,
        Err(e) => return refuse(e),
    };
    match campaigns::create(&app.store, &input).await {
        Ok(c) => {
            tracing::info!(campaign = c.id, by = %s.caller.name, "campaign created in the console");
            redirect(&format!("/admin/campaigns/{}?done=created", c.id))
        }
        Err(campaigns::Error::Refused(r)) => refuse(r.to_string()),
        Err(e) => failure(&app, e),
    }
}

/// The campaign page: article (editable, live preview), pushes, schedule and preview forms.
async fn campaign_page(
    app: &AppState,
    s: &Staff,
    id: i64,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
    form: Option<minijinja::Value>,
) -> Response {
    let campaign = match campaigns::get(&app.store, id).await {
        Ok(Some(c)) => c,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such campaign").into_response(),
        Err(e) => return failure(app, e),
    };
    let pushes = match schedule::list(&app.store, Some(id), campaigns::funnel::MAX_PUSHES).await {
        Ok(p) => p,
        Err(e) => return failure(app, e),
    };
    let product = match &campaign.product_sku {
        Some(sku) => crate::shop::product(&app.store, sku).await.ok().flatten(),
        None => None,
    };
    let stock = product.as_ref().map(|p| p.stock);
    let first = campaign.articles.first().cloned().unwrap_or_default();
    // The stock is the shop's: the form never sends it back (only a new product's first figure).
    let form = form.unwrap_or_else(|| {
        context! {
            name => campaign.name, sku => campaign.product_sku, product_name => product.map(|p| p.name),
            title => first.title, author => first.author, digest => first.digest, content => first.content,
            cover_media_id => first.cover_media_id, cover_url => first.cover_url, link => first.link,
        }
    });
    let charts = match super::figures::campaign(app, &campaign, &pushes).await {
        Ok(c) => c.map(minijinja::Value::from_safe_string),
        Err(e) => return failure(app, e),
    };
    let pushes: Vec<minijinja::Value> = pushes.iter().map(push_view).collect();
    let segments: Vec<minijinja::Value> = match crate::audiences::list(&app.store).await {
        Ok(list) => list.into_iter().map(|g| context! { id => g.id, name => g.name }).collect(),
        Err(e) => return failure(app, e),
    };
    render(
        app,
        status,
        "campaign.html",
        context! {
            who => s.caller.name, form_token => s.form_token, id, form, pushes, notice, error,
            articles => campaign.articles.len(), stock, segments, charts,
            link => campaigns::article_link(&app.config.h5.public_url, id),
            time_zone => app.config.campaigns.time_zone,
            test_openids => app.config.campaigns.test_openids.join("\n"),
        },
    )
}

pub(super) async fn show_campaign(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<Notice>,
) -> Response {
    match signed_in(&app, &headers, None).await {
        Ok(s) => campaign_page(&app, &s, id, StatusCode::OK, q.text(DONE), None, None).await,
        Err(r) => r.into_response(),
    }
}

pub(super) async fn update_campaign(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<CampaignForm>,
) -> Response {
    let s = match signed_in(&app, &headers, Some(&f.form_token)).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let rest = match campaigns::get(&app.store, id).await {
        Ok(Some(c)) => c.articles.into_iter().skip(1).collect::<Vec<_>>(),
        Ok(None) => return (StatusCode::NOT_FOUND, "no such campaign").into_response(),
        Err(e) => return failure(&app, e),
    };
    let result = match f.input(&rest) {
        Ok(input) => campaigns::update(&app.store, id, &input).await.map_err(|e| match e {
            campaigns::Error::Refused(r) => Ok(r.to_string()),
            other => Err(other),
        }),
        Err(e) => Err(Ok(e)),
    };
    match result {
        Ok(_) => redirect(&format!("/admin/campaigns/{id}?done=saved")),
        Err(Ok(why)) => campaign_page(&app, &s, id, StatusCode::BAD_REQUEST, None, Some(why), Some(f.view())).await,
        Err(Err(e)) => failure(&app, e),
    }
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

impl PushForm {
    fn input(&self) -> Result<PushInput, String> {
        let msg_type = msg_type(&self.msg_type)?;
        let audience = match self.audience.as_str() {
            "tag" => Audience::Tag {
                tag_id: self.tag_id.trim().parse().map_err(|_| "the tag id must be a number".to_owned())?,
            },
            "list" => Audience::List { openids: openid_list(&self.openids) },
            "segment" => {
                Audience::Segment { segment: self.segment.trim().parse().map_err(|_| "choose a segment".to_owned())? }
            }
            _ => Audience::All,
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
        })
    }
}

pub(super) async fn schedule_push(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<PushForm>,
) -> Response {
    let s = match signed_in(&app, &headers, Some(&f.form_token)).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let result = match f.input() {
        Ok(input) => schedule::schedule(&app.store, &app.config.campaigns, id, &input, &s.caller.name).await,
        Err(e) => Err(campaigns::Error::Refused(campaigns::Refusal::Invalid(e))),
    };
    match result {
        Ok(p) => {
            app.scheduler_wake.notify_one();
            tracing::info!(push = p.id, campaign = id, by = %s.caller.name, "push scheduled in the console");
            redirect(&format!("/admin/campaigns/{id}?done=scheduled"))
        }
        Err(campaigns::Error::Refused(r)) => {
            let status = match r {
                campaigns::Refusal::Rule(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            campaign_page(&app, &s, id, status, None, Some(r.to_string()), None).await
        }
        Err(e) => failure(&app, e),
    }
}

#[derive(Deserialize)]
pub(super) struct PreviewForm {
    form_token: String,
    #[serde(default)]
    openids: String,
    #[serde(default)]
    msg_type: String,
    #[serde(default)]
    text: String,
}

pub(super) async fn preview(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<PreviewForm>,
) -> Response {
    let s = match signed_in(&app, &headers, Some(&f.form_token)).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let campaign = match campaigns::get(&app.store, id).await {
        Ok(Some(c)) => c,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such campaign").into_response(),
        Err(e) => return failure(&app, e),
    };
    let msg_type = match msg_type(&f.msg_type) {
        Ok(t) => t,
        Err(why) => return campaign_page(&app, &s, id, StatusCode::BAD_REQUEST, None, Some(why), None).await,
    };
    let to = openid_list(&f.openids);
    let to = if to.is_empty() { app.config.campaigns.test_openids.clone() } else { to };
    match send::preview(&app.client, &app.config.h5.public_url, &campaign, msg_type, Some(&f.text), &to).await {
        Ok(results) => {
            let sent = results.iter().filter(|r| r.ok).count();
            let failed: Vec<String> = results
                .iter()
                .filter(|r| !r.ok)
                .map(|r| format!("{}: {}", crate::mask(&r.openid), r.error.clone().unwrap_or_default()))
                .collect();
            let notice = format!("Preview sent to {sent} of {} test follower(s)", results.len());
            let error = (!failed.is_empty()).then(|| failed.join("; "));
            campaign_page(&app, &s, id, StatusCode::OK, Some(notice), error, None).await
        }
        Err(campaigns::Error::Refused(r)) => {
            campaign_page(&app, &s, id, StatusCode::BAD_REQUEST, None, Some(r.to_string()), None).await
        }
        Err(e) => failure(&app, e),
    }
}

pub(super) async fn cancel_push(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<TokenOnly>,
) -> Response {
    let s = match signed_in(&app, &headers, Some(&f.form_token)).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    match schedule::cancel(&app.store, id).await {
        Ok(p) => {
            tracing::info!(push = id, by = %s.caller.name, "push cancelled in the console");
            redirect(&format!("/admin/campaigns/{}?done=cancelled", p.campaign_id))
        }
        Err(campaigns::Error::Refused(_)) => redirect("/admin?done=not-cancellable"),
        Err(e) => failure(&app, e),
    }
}
