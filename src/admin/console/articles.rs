//! A campaign's articles, each on its own page: the campaign page edits article 1 with the
//! campaign; articles 2–8 (and 1 again) are edited, added and removed here. Every change goes
//! through [`campaigns::update`] with the other articles as they are (a removal through
//! [`campaigns::remove_article`]), so the same cleaning and checks apply as everywhere else —
//! among them, that no scheduled push loses (or has moved) an article it sends.

use super::campaigns::campaign;
use super::error::{Error, NO_ARTICLE};
use super::{Outcome, Posted, Signed, Staff, TokenOnly, redirect, render};
use crate::campaigns::{self, Article, Campaign, CampaignInput, ProductInput};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;

/// One article's fields, as `_article.html` names them.
#[derive(Deserialize, Default)]
pub(super) struct ArticleForm {
    form_token: String,
    #[serde(default)]
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

impl Posted for ArticleForm {
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

impl ArticleForm {
    fn article(&self) -> Article {
        Article {
            title: self.title.trim().to_owned(),
            author: self.author.trim().to_owned(),
            digest: self.digest.trim().to_owned(),
            content: self.content.clone(),
            cover_media_id: self.cover_media_id.trim().to_owned(),
            cover_url: self.cover_url.trim().to_owned(),
            link: self.link.trim().to_owned(),
        }
    }
}

fn view(a: &Article) -> minijinja::Value {
    context! {
        title => a.title, author => a.author, digest => a.digest, content => a.content,
        cover_media_id => a.cover_media_id, cover_url => a.cover_url, link => a.link,
    }
}

/// The campaign as an update's input, with `articles` in place of its own.
fn input(c: &Campaign, articles: Vec<Article>) -> CampaignInput {
    let product = c.product_sku.as_ref().map(|sku| ProductInput { sku: sku.clone(), name: String::new(), stock: None });
    CampaignInput { name: c.name.clone(), articles, product }
}

/// Article `n` (1-based) of `c`, or the 404 page for a number the campaign does not have.
fn nth(c: &Campaign, n: usize) -> Result<&Article, Error> {
    n.checked_sub(1).and_then(|i| c.articles.get(i)).ok_or(Error::NotFound(NO_ARTICLE))
}

/// The status a domain refusal answers with on these pages.
fn status_of(r: &campaigns::Refusal) -> StatusCode {
    match r {
        campaigns::Refusal::Conflict(_) => StatusCode::CONFLICT,
        campaigns::Refusal::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The article page: `n` is the article's number, none for a new one.
fn page(
    app: &AppState,
    s: &Staff,
    c: &Campaign,
    n: Option<usize>,
    status: StatusCode,
    form: minijinja::Value,
    error: Option<String>,
) -> Response {
    let ctx = context! {
        who => s.caller.name, form_token => s.form_token, id => c.id, campaign => c.name, n, form, error,
        article_only => true,
    };
    render(app, status, "article.html", ctx)
}

/// Saves `articles` as campaign `c`'s, or shows the article page again with the refusal.
async fn save(
    app: &AppState,
    s: &Staff,
    c: &Campaign,
    n: Option<usize>,
    f: &ArticleForm,
    articles: Vec<Article>,
    done: &str,
) -> Result<Response, Error> {
    match campaigns::update(&app.store, c.id, &input(c, articles)).await {
        Ok(_) => {
            tracing::info!(campaign = c.id, by = %s.caller.name, "{done} in the console");
            Ok(redirect(&format!("/admin/campaigns/{}?done={done}", c.id)))
        }
        Err(campaigns::Error::Refused(r)) => {
            let status = status_of(&r);
            Ok(page(app, s, c, n, status, view(&f.article()), Some(format!("未能保存 Not saved: {r}"))))
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn new_article(State(app): State<AppState>, Path(id): Path<i64>, s: Staff) -> Result<Response, Error> {
    let c = campaign(&app, id).await?;
    Ok(page(&app, &s, &c, None, StatusCode::OK, view(&Article::default()), None))
}

pub(super) async fn add_article(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Signed(s, f): Signed<ArticleForm>,
) -> Result<Response, Error> {
    let c = campaign(&app, id).await?;
    // The domain refuses a 9th article too (with the same limit, in its words).
    let mut articles = c.articles.clone();
    articles.push(f.article());
    save(&app, &s, &c, None, &f, articles, "article-added").await
}

pub(super) async fn show_article(
    State(app): State<AppState>,
    Path((id, n)): Path<(i64, usize)>,
    s: Staff,
) -> Result<Response, Error> {
    let c = campaign(&app, id).await?;
    let a = nth(&c, n)?;
    Ok(page(&app, &s, &c, Some(n), StatusCode::OK, view(a), None))
}

pub(super) async fn update_article(
    State(app): State<AppState>,
    Path((id, n)): Path<(i64, usize)>,
    Signed(s, f): Signed<ArticleForm>,
) -> Result<Response, Error> {
    let c = campaign(&app, id).await?;
    nth(&c, n)?;
    let mut articles = c.articles.clone();
    articles[n - 1] = f.article();
    save(&app, &s, &c, Some(n), &f, articles, "article-saved").await
}

pub(super) async fn remove_article(
    State(app): State<AppState>,
    Path((id, n)): Path<(i64, usize)>,
    Signed(s, _): Signed<TokenOnly>,
) -> Result<Response, Error> {
    let c = campaign(&app, id).await?;
    nth(&c, n)?;
    match campaigns::remove_article(&app.store, id, n - 1).await {
        Ok(_) => {
            tracing::info!(campaign = id, article = n, by = %s.caller.name, "article removed in the console");
            Ok(redirect(&format!("/admin/campaigns/{id}?done=article-removed")))
        }
        Err(campaigns::Error::Refused(r)) => {
            let status = status_of(&r);
            let why = format!("未能删除 Not removed: {r}");
            super::campaigns::campaign_page(&app, &s, id, Outcome::refused(status, why, None)).await
        }
        Err(e) => Err(e.into()),
    }
}
