//! The stand-in shop (`wxoa dev` only): `dev` points `checkout.base_url` at
//! `/simulator/checkout`, which checks the follower's checkout token as the shop would and
//! shows what it carries. Its "模拟支付 Simulate payment" button does what the shop does when a
//! buyer pays: two signed `POST /api/v1/orders` calls over HTTP to this very server, `created`
//! then `paid`, with `shop.secret`, the amount and the checkout token — so the order is
//! credited to the campaign and push the link came from (the funnel), the buyer gets the
//! `order_created` and `order_paid` template messages, and a member earns the points, exactly
//! as a real shop's calls would cause.
//!
//! `/simulator/shop` is the shop's stock screen: each campaign's product with the stock wxoa
//! knows, and a form that sets it the way the shop does — a signed `POST /api/v1/stock` — so
//! "sold out" (the chat's reply, `/buy`'s page, the console's badge) can be tried in `dev`; each
//! simulated payment lowers that stock by one, as a sale does, and at 0 the shop takes no order.

use crate::text::Failure;
use axum::Form;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// What the amount field says before anyone changes it (yuan).
const DEFAULT_AMOUNT: &str = "1299.00";

#[derive(Clone)]
pub struct Shop(Arc<Inner>);

struct Inner {
    /// This server, where the shop's calls go.
    base: String,
    /// Verifies checkout tokens, as the shop does.
    checkout_secret: String,
    /// Signs the calls to `/api/v1/orders`.
    shop_secret: String,
    store: crate::store::Store,
    http: reqwest::Client,
}

impl Shop {
    pub fn new(base: &str, checkout_secret: &str, shop_secret: &str, store: crate::store::Store) -> Shop {
        Shop(Arc::new(Inner {
            base: base.to_owned(),
            checkout_secret: checkout_secret.to_owned(),
            shop_secret: shop_secret.to_owned(),
            store,
            http: reqwest::Client::new(),
        }))
    }
}

pub fn router(shop: Shop) -> Router {
    Router::new()
        .route("/simulator/checkout", get(checkout).post(pay))
        .route("/simulator/shop", get(stock_screen).post(set_stock))
        .with_state(shop)
}

#[derive(Deserialize)]
struct CheckoutQuery {
    #[serde(default)]
    token: String,
}

/// The checkout page: what the token carries once it verifies, and the payment button.
async fn checkout(State(shop): State<Shop>, Query(q): Query<CheckoutQuery>) -> Response {
    let claims = match crate::shop::checkout::verify(&shop.0.checkout_secret, &q.token, shop.0.store.clock.now_secs()) {
        Ok(c) => c,
        Err(e) => {
            return page(&format!(
                "<h2>收银台 Checkout</h2><p id=result>令牌无效 Token refused: {}</p>",
                esc(&e.to_string())
            ));
        }
    };
    let product = product_name(&shop, &claims.sku).await;
    page(&format!(
        "<h2>收银台 Checkout</h2><p>令牌有效 Token verified.</p>\
         <p>活动 Campaign {} · 商品 product {} ({}) · 粉丝 follower {}</p>\
         <form method=post action=/simulator/checkout>\
         <input type=hidden name=token value=\"{}\">\
         <label>金额（元） Amount (yuan) <input id=amount name=amount value={DEFAULT_AMOUNT} inputmode=decimal></label>\
         <p><button id=simulate-payment>模拟支付 Simulate payment</button></p></form>\
         <p style='color:#888;font-size:13px'>这是 wxoa dev 的模拟收银台：付款会像商城一样把签名的订单状态（created、paid）发给 POST /api/v1/orders。\
         The stand-in checkout of wxoa dev: paying posts the signed order statuses (created, paid) to POST /api/v1/orders as the shop would.</p>",
        claims.campaign_id,
        esc(&product),
        esc(&claims.sku),
        esc(&crate::mask(&claims.openid)),
        esc(&q.token),
    ))
}

#[derive(Deserialize)]
struct Payment {
    token: String,
    amount: String,
}

/// "Pays": `created`, then `paid`, each a signed call to `/api/v1/orders`, then the stock one
/// lower (a signed `/api/v1/stock`) when the shop had reported some; at 0 the shop takes no
/// order. The page says what the server answered to each.
async fn pay(State(shop): State<Shop>, Form(p): Form<Payment>) -> Response {
    let claims = match crate::shop::checkout::verify(&shop.0.checkout_secret, &p.token, shop.0.store.clock.now_secs()) {
        Ok(c) => c,
        Err(e) => {
            return page(&format!(
                "<h2>收银台 Checkout</h2><p id=result>令牌无效 Token refused: {}</p>",
                esc(&e.to_string())
            ));
        }
    };
    let Some(amount_fen) = super::till::fen(&p.amount) else {
        return page("<h2>收银台 Checkout</h2><p id=result>金额无效 An amount in yuan, like 1299 or 1299.00</p>");
    };
    // The shop sells only what it has: at 0 it takes no order.
    let stock = crate::shop::product(&shop.0.store, &claims.sku).await.ok().flatten().map(|p| p.stock);
    if stock == Some(0) {
        return page("<h2>收银台 Checkout</h2><p id=result>已售罄，商城未接单 Sold out: the shop takes no order</p>");
    }
    let order_id = format!("SIM-{}", shop.0.store.now_ms());
    let product = product_name(&shop, &claims.sku).await;
    let mut answers = Vec::new();
    for status in ["created", "paid"] {
        let body = json!({
            "order_id": order_id, "status": status, "openid": claims.openid, "sku": claims.sku,
            "product_name": product, "amount_fen": amount_fen, "checkout_token": p.token,
        });
        match call(&shop, "/api/v1/orders", &body.to_string()).await {
            Ok((code, answer)) => answers.push((status, code, answer)),
            Err(e) => return page(&format!("<h2>收银台 Checkout</h2><p id=result>{}</p>", esc(&e.0))),
        }
    }
    let paid = answers.iter().all(|(_, code, _)| *code == 202);
    // A sale lowers the shop's stock, and the shop reports it, as it does after every sale: so
    // "buy until sold out" works in `dev` without setting the stock by hand.
    if let (true, Some(n)) = (paid, stock) {
        let body = json!({ "sku": claims.sku, "stock": n - 1 });
        match call(&shop, "/api/v1/stock", &body.to_string()).await {
            Ok((code, answer)) => answers.push(("stock", code, answer)),
            Err(e) => return page(&format!("<h2>收银台 Checkout</h2><p id=result>{}</p>", esc(&e.0))),
        }
    }
    let lines: String = answers
        .iter()
        .map(|(status, code, answer)| format!("<li>{status}: {code} {}</li>", esc(&answer.to_string())))
        .collect();
    let head = if paid { "支付成功 Paid" } else { "支付未完成 Not paid" };
    page(&format!(
        "<h2>收银台 Checkout</h2><p id=result>{head} · 订单 order {}</p><ul>{lines}</ul>\
         <p style='color:#888;font-size:13px'>POST /api/v1/orders, 签名 signed with shop.secret</p>",
        esc(&order_id)
    ))
}

/// The products of the campaigns, with their stock, and a form to set each.
async fn stock_screen(State(shop): State<Shop>, Query(q): Query<ShopQuery>) -> Response {
    let rows = match products(&shop).await {
        Ok(rows) => rows,
        Err(e) => return page(&format!("<h2>商城库存 Shop stock</h2><p id=result>{}</p>", esc(&e.to_string()))),
    };
    let said = q.said.as_deref().map(|s| format!("<p id=result>{}</p>", esc(s))).unwrap_or_default();
    let list: String = rows
        .iter()
        .map(|(sku, name, stock)| {
            let shown = match stock {
                Some(0) => "<b style='color:#b00020'>售罄 Sold out</b>".to_owned(),
                Some(n) => format!("库存 stock {n}"),
                None => "未报告 not reported yet".to_owned(),
            };
            format!(
                "<li><form method=post action=/simulator/shop>{name} ({sku}) · <span class=stock data-sku=\"{sku}\">{shown}</span>\
                 <input type=hidden name=sku value=\"{sku}\"> <input name=stock size=6 inputmode=numeric value=0 aria-label=stock>\
                 <button>设置库存 Set stock</button></form></li>",
                name = esc(name),
                sku = esc(sku),
            )
        })
        .collect();
    let list =
        if list.is_empty() { "<li>没有带商品的活动 No campaign sells a product</li>".to_owned() } else { list };
    page(&format!(
        "<h2>商城库存 Shop stock</h2>{said}<ul>{list}</ul>\
         <p style='color:#888;font-size:13px'>设置库存会像商城一样发送签名的 POST /api/v1/stock。\
         Setting stock posts a signed POST /api/v1/stock, as the shop does.</p>"
    ))
}

#[derive(Deserialize)]
struct ShopQuery {
    said: Option<String>,
}

#[derive(Deserialize)]
struct NewStock {
    sku: String,
    stock: String,
}

/// The shop's stock report for one product, then back to the screen with what wxoa answered.
async fn set_stock(State(shop): State<Shop>, Form(f): Form<NewStock>) -> Response {
    let Ok(stock) = f.stock.trim().parse::<i64>() else {
        return said("库存须为 0 或正整数 Stock is a whole number, 0 or more");
    };
    let body = json!({ "sku": f.sku, "stock": stock });
    match call(&shop, "/api/v1/stock", &body.to_string()).await {
        Ok((200, _)) => said(&format!("已设置 Set: {} → {stock}", f.sku)),
        Ok((code, answer)) => said(&format!("{code} {}", answer["error"].as_str().unwrap_or("refused"))),
        Err(e) => said(&e.0),
    }
}

/// Back to the stock screen (POST, redirect, GET), saying `what`.
fn said(what: &str) -> Response {
    let query = serde_urlencoded::to_string([("said", what)]).unwrap_or_default();
    axum::response::Redirect::to(&format!("/simulator/shop?{query}")).into_response()
}

/// Every campaign's product: SKU, name (the shop's, else the campaign's), the stock wxoa knows.
async fn products(shop: &Shop) -> Result<Vec<(String, String, Option<i64>)>, sqlx::Error> {
    let rows: Vec<(String, String, Option<String>, Option<i64>)> = crate::with_pool!(&shop.0.store, pool => sqlx::query_as(
        "SELECT c.product_sku, MAX(c.name), MAX(p.name), MAX(p.stock) FROM campaigns c \
         LEFT JOIN products p ON p.sku = c.product_sku \
         WHERE c.product_sku IS NOT NULL AND c.product_sku <> '' GROUP BY c.product_sku ORDER BY c.product_sku")
        .fetch_all(pool).await)?;
    Ok(rows
        .into_iter()
        .map(|(sku, campaign, name, stock)| (sku, name.filter(|n| !n.is_empty()).unwrap_or(campaign), stock))
        .collect())
}

/// One signed call to the shop API at `path` (`/api/v1/orders`, `/api/v1/stock`): the status
/// and the answer.
async fn call(shop: &Shop, path: &str, body: &str) -> Result<(u16, Value), Failure> {
    let timestamp = shop.0.store.clock.now_secs().to_string();
    let url = format!("{}{path}", shop.0.base);
    let r = crate::http::signed::signed_post(&shop.0.http, url, &shop.0.shop_secret, &timestamp, body.to_owned())
        .send()
        .await
        .map_err(|e| format!("the shop could not reach the server: {e}"))?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// The product's name as the shop reported it, or its SKU.
async fn product_name(shop: &Shop, sku: &str) -> String {
    match crate::shop::product(&shop.0.store, sku).await {
        Ok(Some(p)) if !p.name.is_empty() => p.name,
        _ => sku.to_owned(),
    }
}

fn page(body: &str) -> Response {
    (
        [(CONTENT_TYPE, "text/html; charset=utf-8"), (CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")],
        format!(
            "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>\
             <title>收银台 Checkout</title><body style='font:16px sans-serif;padding:16px;overflow-wrap:anywhere'>{body}</body>"
        ),
    )
        .into_response()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
