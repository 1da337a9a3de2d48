//! Built-in handlers that routing rules can name (`handler = "…"`).
//!
//! A handler is an async function from a [`HandlerCtx`] to an optional [`Reply`]. Adding one is
//! the function plus one line in [`Handlers::builtin`]. Handlers may be slow: the bot answers
//! WeChat with `success` at the reply deadline and lets the handler finish.

use crate::members::ledger::{self, day, last_day};
use crate::store::Store;
use crate::stores;
use crate::wechat::message::{Body, Event, Message};
use crate::wechat::reply::{Reply, escape_text as esc};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a handler gets.
#[derive(Clone)]
pub struct HandlerCtx {
    pub msg: Arc<Message>,
    pub store: Store,
    pub templates: Arc<super::templates::Templates>,
    /// Where followers reach the H5 pages (`h5.public_url`).
    pub public_url: Arc<str>,
    /// The external checkout (`[checkout]`), for `checkout_link`.
    pub checkout: Arc<crate::config::CheckoutConfig>,
    /// How far a store may be and still be "nearby" (`stores.nearby_km`).
    pub nearby_km: u32,
    /// The loyalty programme (`[loyalty]`): the tiers' labels followers read.
    pub loyalty: Arc<crate::config::LoyaltyConfig>,
    /// The balance card's cover image (`bot.balance_cover_url`, or the shipped one).
    pub balance_cover: Arc<str>,
}

impl HandlerCtx {
    /// A chat link to an H5 page: through OAuth, so no openid travels in it.
    pub fn page_link(&self, page: &str) -> String {
        format!("{}/h5/start?to={page}", self.public_url.trim_end_matches('/'))
    }
}

/// Where wxoa serves the balance card's shipped cover (a 900×383 PNG; see `crate::h5::assets`).
pub const BALANCE_COVER_PATH: &str = "/h5/static/balance-cover.png";

/// The shipped balance card cover's URL for followers reaching us at `public_url`.
pub fn shipped_balance_cover(public_url: &str) -> String {
    format!("{}{BALANCE_COVER_PATH}", public_url.trim_end_matches('/'))
}

/// Why a handler gave no reply (the message is answered `success`, and the reason logged).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("template {0}: {1}")]
    Template(String, minijinja::Error),
    #[error("reply: {0}")]
    Reply(#[from] crate::wechat::reply::ReplyError),
    #[error("the handler panicked")]
    Panicked,
}

pub type HandlerResult = Result<Option<Reply>, HandlerError>;
type BoxFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
type HandlerFn = Arc<dyn Fn(HandlerCtx) -> BoxFuture + Send + Sync>;

#[derive(Clone, Default)]
pub struct Handlers(HashMap<String, HandlerFn>);

impl Handlers {
    /// The handlers wxoa ships.
    pub fn builtin() -> Handlers {
        let mut h = Handlers::default();
        h.add("transfer_customer_service", transfer_customer_service);
        h.add("echo", echo);
        h.add("stores_nearby", stores_nearby);
        h.add("store_list", store_list);
        h.add("welcome_store", welcome_store);
        h.add("balance_card", balance_card);
        h.add("bind", bind);
        h.add("history", history);
        h.add("book_advisor", book_advisor);
        h.add("mass_send_finished", mass_send_finished);
        h.add("checkout_link", checkout_link);
        h
    }

    /// Registers (or replaces) a handler.
    pub fn add<F, Fut>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(HandlerCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.0.insert(name.to_owned(), Arc::new(move |ctx| Box::pin(f(ctx))));
        self
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&HandlerFn> {
        self.0.get(name)
    }
}

/// Hands the conversation to the customer-service desk.
async fn transfer_customer_service(_: HandlerCtx) -> HandlerResult {
    Ok(Some(Reply::TransferCustomerService { kf_account: None }))
}

/// Says back what the follower said (or recognised speech); handy while developing.
async fn echo(ctx: HandlerCtx) -> HandlerResult {
    let said = match &ctx.msg.body {
        Body::Text { content, .. } => content.clone(),
        Body::Voice { recognition: Some(r), .. } => r.clone(),
        _ => return Ok(None),
    };
    Ok(Reply::text(said).ok())
}

/// The stores within `stores.nearby_km` of a location message or a `location_select` tap, three
/// at most, nearest first. With none that near, nothing is called "nearby": the answer names the
/// nearest store and how far it is.
async fn stores_nearby(ctx: HandlerCtx) -> HandlerResult {
    let (lat, lon) = match &ctx.msg.body {
        Body::Location { location_x, location_y, .. } => (*location_x, *location_y),
        Body::Event(Event::LocationSelect { location_x, location_y, .. }) => (*location_x, *location_y),
        _ => {
            return Ok(Reply::text("发送您的位置即可查看附近门店（点 + → 位置）。\nSend your location (tap + → Location) to see the nearest stores.").ok());
        }
    };
    let mut found = stores::nearest(&ctx.store, lat, lon, 3).await?;
    let Some((nearest, distance)) = found.first().cloned() else {
        return Ok(Reply::text("暂无门店信息。No stores to show yet.").ok());
    };
    let km = ctx.nearby_km;
    found.retain(|(_, d)| *d <= f64::from(km) * 1000.0);
    if found.is_empty() {
        let d = stores::format_distance(distance);
        return Ok(Reply::text(format!(
            "您附近 {km} 公里内暂无门店。离您最近的是{zh}，约 {d}。\nThere is no store within {km} km of you; the nearest is {en}, {d} away.{details}",
            zh = esc(nearest.chinese_name()),
            en = esc(&nearest.name),
            details = store_details(&nearest),
        ))
        .ok());
    }
    let mut text = String::from("离您最近的门店 / Nearest stores:");
    for (i, (s, d)) in found.iter().enumerate() {
        text.push_str(&format!(
            "\n{}. {} — {}{}",
            i + 1,
            esc(&s.display_name()),
            stores::format_distance(*d),
            store_details(s)
        ));
    }
    Ok(Reply::text(text).ok())
}

/// A store's address, hours and phone on an indented line of their own (nothing if none is
/// known).
/// The brand's stores by city and name, as many as one text reply holds, for a follower who
/// asks ("门店", "stores") without sending a location; the reply says how to get the nearest.
async fn store_list(ctx: HandlerCtx) -> HandlerResult {
    let all = stores::list(&ctx.store).await?;
    if all.is_empty() {
        return Ok(Reply::text("暂无门店信息。No stores to show yet.").ok());
    }
    let tail = "\n发送位置可查看离您最近的门店。Send your location to see the nearest.";
    let mut text = String::from("我们的门店 / Our stores:");
    for (i, s) in all.iter().enumerate() {
        let line = format!("\n{}. {}{}", i + 1, esc(&s.display_name()), store_details(s));
        let more = format!("\n… 另有 {n} 家 {n} more", n = all.len() - i);
        if text.len() + line.len() + more.len() + tail.len() > crate::wechat::reply::MAX_TEXT_BYTES {
            text.push_str(&more);
            break;
        }
        text.push_str(&line);
    }
    text.push_str(tail);
    Ok(Reply::text(text).ok())
}

fn store_details(s: &stores::BrandStore) -> String {
    let details: Vec<&str> =
        [s.address.as_deref(), s.opening_hours.as_deref(), s.phone.as_deref()].into_iter().flatten().collect();
    if details.is_empty() { String::new() } else { format!("\n   {}", esc(&details.join(" · "))) }
}

/// Welcome for a follower who scanned a store's QR code (`store_<id>` scene): names the store
/// and attributes the follower to it.
async fn welcome_store(ctx: HandlerCtx) -> HandlerResult {
    let scene = match &ctx.msg.body {
        Body::Event(Event::Subscribe { scene: Some(s), .. }) | Body::Event(Event::Scan { scene: s, .. }) => s.clone(),
        _ => return Ok(None),
    };
    let store = match stores::scene_store_id(&scene) {
        Some(id) => stores::get(&ctx.store, id).await?,
        None => None,
    };
    stores::record_follower(&ctx.store, &ctx.msg.openid, true, store.as_ref().map(|s| s.id), Some(&scene)).await?;
    let text = match store {
        Some(s) => format!(
            "欢迎来到{zh}！Welcome to {en}.{details}\nReply \"help\" (帮助) to see what I can do.",
            zh = esc(s.chinese_name()),
            en = esc(&s.name),
            details = s.address.as_ref().map(|a| format!("\n{}", esc(a))).unwrap_or_default()
        ),
        None => {
            "欢迎关注！Welcome — thank you for following us.\nReply \"help\" (帮助) to see what I can do.".to_owned()
        }
    };
    Ok(Reply::text(text).ok())
}

/// The answer for a follower without a card: where to bind one or join.
fn bind_invitation(ctx: &HandlerCtx) -> HandlerResult {
    Ok(Reply::text(format!(
        "您还未绑定会员卡。<a href=\"{link}\">绑定会员卡或立即入会</a>\nYou have no card bound yet: <a href=\"{link}\">bind your card or join</a>.",
        link = ctx.page_link("bind")
    ))
    .ok())
}

/// The member's card in the chat: points, what expires next and when, tier, a link to the card.
async fn balance_card(ctx: HandlerCtx) -> HandlerResult {
    let Some(member) = crate::members::by_openid(&ctx.store, &ctx.msg.openid).await? else {
        return bind_invitation(&ctx);
    };
    let balance = crate::members::points::summary(&ctx.store, member.id, ctx.store.now_ms(), 1).await?;
    let expiring = match balance.expiring.first() {
        Some((points, at)) => {
            format!("{points} 积分有效期至 {d} / {points} points valid until {d}", d = last_day(*at))
        }
        None => "暂无到期积分 / Nothing expires soon".to_owned(),
    };
    let article = crate::wechat::reply::Article {
        title: format!("积分 {} points · {}", balance.points, ctx.loyalty.tier_label(&member.tier)),
        description: format!("{expiring}\n卡号 Card {}", member.card_no.unwrap_or_default()),
        url: ctx.page_link("card"),
        pic_url: ctx.balance_cover.to_string(),
    };
    Ok(Some(Reply::news(vec![article])?))
}

/// Binding from the chat: the card for a member, the way to bind or join for anyone else.
async fn bind(ctx: HandlerCtx) -> HandlerResult {
    match crate::members::by_openid(&ctx.store, &ctx.msg.openid).await? {
        Some(m) => Ok(Reply::text(format!(
            "您已绑定会员卡 {card}。<a href=\"{link}\">查看会员卡</a>\nYour card {card} is bound: <a href=\"{link}\">open it</a>.",
            card = esc(&m.card_no.unwrap_or_default()),
            link = ctx.page_link("card")
        ))
        .ok()),
        None => bind_invitation(&ctx),
    }
}

/// The last five transactions.
async fn history(ctx: HandlerCtx) -> HandlerResult {
    let Some(member) = crate::members::by_openid(&ctx.store, &ctx.msg.openid).await? else {
        return bind_invitation(&ctx);
    };
    let entries = crate::members::ledger::history(&ctx.store, member.id, 5, 0).await?;
    if entries.is_empty() {
        return Ok(Reply::text("暂无积分记录。No transactions yet.").ok());
    }
    let mut text = String::from("最近积分记录 / Recent transactions:");
    for t in entries {
        let points = if t.kind == ledger::Kind::Tier { String::new() } else { format!(" {:+}", t.points) };
        text.push_str(&format!("\n{}{points} {}", day(t.occurred_at), esc(t.description())));
    }
    text.push_str(&format!("\n<a href=\"{}\">全部记录 All transactions</a>", ctx.page_link("history")));
    Ok(Reply::text(text).ok())
}

/// The link to book a beauty advisor (members only).
async fn book_advisor(ctx: HandlerCtx) -> HandlerResult {
    if crate::members::by_openid(&ctx.store, &ctx.msg.openid).await?.is_none() {
        return bind_invitation(&ctx);
    }
    Ok(Reply::text(format!(
        "<a href=\"{link}\">预约美容顾问</a>：选择门店、顾问和时间。\n<a href=\"{link}\">Book a beauty advisor</a>: pick a store, an advisor and a time.",
        link = ctx.page_link("book")
    ))
    .ok())
}

/// MASSSENDJOBFINISH (routed in config/routes.toml): the campaign's figures recorded, nothing
/// answered.
async fn mass_send_finished(ctx: HandlerCtx) -> HandlerResult {
    let Body::Event(Event::MassSendJobFinish { msg_id, status, total_count, filter_count, sent_count, error_count }) =
        &ctx.msg.body
    else {
        return Ok(None);
    };
    let counts = (*total_count, *filter_count, *sent_count, *error_count);
    let applied = crate::campaigns::record_finish(&ctx.store, *msg_id, status, counts).await?;
    tracing::info!(msg_id, sent = sent_count, errors = error_count, applied, "mass send finished");
    Ok(None)
}

/// The reply template `checkout_link` answers with when the product is sold out (in
/// `bot.templates`; it sees `product` and `campaign` besides the message's fields).
pub const SOLD_OUT_TEMPLATE: &str = "sold_out.j2";

/// The campaign a `BUY_<id>` menu key names; `None` for a plain `BUY` (or no key: a keyword).
fn buy_key_campaign(key: &str) -> Option<i64> {
    let upper = key.trim().to_ascii_uppercase();
    upper.strip_prefix("BUY_").and_then(|id| id.parse().ok()).filter(|id: &i64| *id > 0)
}

/// The "Buy" button and keywords: the follower's own signed checkout link for the campaign the
/// key names (`BUY_<id>`), else the most recent campaign that sells something; the sold-out
/// template once its stock is gone. See `crate::shop`.
async fn checkout_link(ctx: HandlerCtx) -> HandlerResult {
    use crate::shop::{self, Offer};
    let nothing = || Reply::text("暂无在售商品，敬请期待。There is nothing on sale right now — stay tuned.").ok();
    if !shop::checkout_enabled(&ctx.checkout) {
        return Ok(Reply::text("暂未开放购买，请稍后再试。Buying is not available right now; please try later.").ok());
    }
    let campaign = match ctx.msg.event_key().and_then(buy_key_campaign) {
        Some(id) => shop::campaign(&ctx.store, id).await,
        None => shop::latest_campaign_with_product(&ctx.store).await,
    }?;
    let Some(campaign) = campaign else { return Ok(nothing()) };
    match shop::offer(&ctx.store, &campaign).await? {
        Offer::NoProduct => Ok(nothing()),
        Offer::SoldOut { product_name } => {
            let extra = minijinja::context! { product => product_name, campaign => campaign.name };
            let text = ctx
                .templates
                .render_with(SOLD_OUT_TEMPLATE, &ctx.msg, extra)
                .map_err(|e| HandlerError::Template(SOLD_OUT_TEMPLATE.into(), e))?;
            Ok(Reply::text(text).ok())
        }
        Offer::Available { sku, product_name } => {
            // Whoever we hand a checkout link is a follower we know: the shop's order
            // notifications for them are accepted (see `shop::orders`).
            stores::record_follower(&ctx.store, &ctx.msg.openid, true, None, None).await?;
            let link = shop::hand_checkout(&ctx.store, &ctx.checkout, campaign.id, 0, &sku, &ctx.msg.openid).await?;
            let mins = ctx.checkout.token_ttl_secs.div_ceil(60);
            let product_name = esc(&product_name);
            Ok(Reply::text(format!(
                "<a href=\"{link}\">立即购买 {product_name}</a>（链接 {mins} 分钟内有效）\n\
                 <a href=\"{link}\">Buy {product_name} now</a> (the link is valid for {mins} minutes)."
            ))
            .ok())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn buy_keys() {
        assert_eq!(super::buy_key_campaign("BUY"), None);
        assert_eq!(super::buy_key_campaign("BUY_12"), Some(12));
        assert_eq!(super::buy_key_campaign("buy_7"), Some(7));
        assert_eq!(super::buy_key_campaign("BUY_x"), None);
        assert_eq!(super::buy_key_campaign("BUY_0"), None);
    }
}
