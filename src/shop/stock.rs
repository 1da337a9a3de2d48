//! `POST /api/v1/stock` (shop-signed, see [`super::auth`]): the shop reports what it has left.
//!
//! ```text
//! {"sku": "LE-2026", "name": "Limited Edition No. 5", "stock": 120}        one product
//! {"products": [{"sku": "…", "stock": 0}, …]}                              up to 1000 at once
//! ```
//!
//! Each product is upserted: `stock` replaces what we had, `name` (optional) replaces the name
//! when given (a new product without one is named by its SKU). A batch is one transaction: all
//! of it or none. Bounds: `sku` 1–64 characters, `name` at most 200, `stock` 0 to 1e9.
//! Answers `200 {"updated": N, "stale": M}`. Stock 0 makes the product sold out (see [`super`]).
//!
//! Reports can arrive out of order (a retry, or a replay inside the signature window): each
//! product keeps the `X-Wxoa-Timestamp` of the report its stock came from, and a report older
//! than that is counted as `stale` and changes nothing.

use crate::error::ApiError;
use crate::http::api::parse_json;
use crate::state::AppState;
use crate::store::{Store, now_ms};
use crate::with_tx;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use serde::Deserialize;

pub const MAX_PRODUCTS: usize = 1000;
pub const MAX_SKU_CHARS: usize = 64;
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_STOCK: i64 = 1_000_000_000;

/// One product's stock as the shop reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockUpdate {
    pub sku: String,
    #[serde(default)]
    pub name: Option<String>,
    pub stock: i64,
}

/// The body: one product, or a batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    sku: Option<String>,
    name: Option<String>,
    stock: Option<i64>,
    products: Option<Vec<StockUpdate>>,
}

/// Text that is `1..=max` characters (or `0..=max` when `may_be_empty`) and has no control
/// characters.
pub(crate) fn bounded(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(ApiError::BadRequest(format!("{field} must be {min} to {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!("{field} must not contain control characters")));
    }
    Ok(())
}

fn validate(u: &StockUpdate) -> Result<(), ApiError> {
    bounded("sku", &u.sku, 1, MAX_SKU_CHARS)?;
    if let Some(name) = &u.name {
        bounded("name", name, 1, MAX_NAME_CHARS)?;
    }
    if !(0..=MAX_STOCK).contains(&u.stock) {
        return Err(ApiError::BadRequest(format!("stock must be 0 to {MAX_STOCK}")));
    }
    Ok(())
}

/// The updates a body asks for, validated.
fn updates(body: Body) -> Result<Vec<StockUpdate>, ApiError> {
    let updates = match body {
        Body { products: Some(list), sku: None, name: None, stock: None } => {
            if list.is_empty() || list.len() > MAX_PRODUCTS {
                return Err(ApiError::BadRequest(format!("products must hold 1 to {MAX_PRODUCTS} entries")));
            }
            list
        }
        Body { products: None, sku: Some(sku), name, stock: Some(stock) } => vec![StockUpdate { sku, name, stock }],
        _ => {
            return Err(ApiError::BadRequest(
                "send either {\"sku\", \"stock\"[, \"name\"]} or {\"products\": […]}".into(),
            ));
        }
    };
    updates.iter().try_for_each(validate)?;
    Ok(updates)
}

/// Upserts `updates`, reported at `reported_at` (the shop's unix seconds), in one transaction;
/// returns how many were applied (the rest were older than what we have).
pub async fn upsert(store: &Store, updates: &[StockUpdate], reported_at: i64) -> Result<usize, sqlx::Error> {
    let now = now_ms();
    let mut tx = store.begin().await?;
    let mut applied = 0;
    for u in updates {
        applied += with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO products (sku, name, stock, updated_at, reported_at) VALUES ($1, COALESCE($2, $1), $3, $4, $5) \
             ON CONFLICT (sku) DO UPDATE SET name = COALESCE($2, products.name), stock = excluded.stock, \
             updated_at = excluded.updated_at, reported_at = excluded.reported_at \
             WHERE products.reported_at IS NULL OR products.reported_at <= excluded.reported_at")
            .bind(&u.sku).bind(u.name.as_deref()).bind(u.stock).bind(now).bind(reported_at)
            .execute(conn).await.map(|r| r.rows_affected()))?;
    }
    tx.commit().await?;
    Ok(applied as usize)
}

pub async fn post(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = super::auth::authenticate(&app, &headers, body)?;
    // Verified by `authenticate`: digits within the allowed window.
    let reported_at = headers
        .get(super::auth::TIMESTAMP_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or_default();
    let updates = updates(parse_json(&body)?)?;
    let n = upsert(&app.store, &updates, reported_at).await?;
    if n < updates.len() {
        tracing::info!(stale = updates.len() - n, "shop: stock reports older than the ones applied were ignored");
    }
    let sold_out: Vec<&str> = updates.iter().filter(|u| u.stock == 0).map(|u| u.sku.as_str()).collect();
    if !sold_out.is_empty() {
        tracing::info!(skus = ?sold_out, "shop: sold out");
    }
    Ok(Json(serde_json::json!({ "updated": n, "stale": updates.len() - n })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Vec<StockUpdate>, String> {
        let body: Body = serde_json::from_str(json).map_err(|e| e.to_string())?;
        updates(body).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn bodies() {
        assert_eq!(
            parse(r#"{"sku":"A","stock":3}"#).unwrap(),
            vec![StockUpdate { sku: "A".into(), name: None, stock: 3 }]
        );
        assert_eq!(parse(r#"{"products":[{"sku":"A","name":"x","stock":0},{"sku":"B","stock":1}]}"#).unwrap().len(), 2);
        let long = "x".repeat(201);
        for bad in [
            r#"{}"#.to_owned(),
            r#"{"sku":"A"}"#.to_owned(),
            r#"{"sku":"A","stock":-1}"#.to_owned(),
            r#"{"sku":"","stock":1}"#.to_owned(),
            format!(r#"{{"sku":"{}","stock":1}}"#, "s".repeat(65)),
            format!(r#"{{"sku":"A","name":"{long}","stock":1}}"#),
            r#"{"sku":"A","stock":1,"products":[]}"#.to_owned(),
            r#"{"products":[]}"#.to_owned(),
            r#"{"sku":"A\u0000","stock":1}"#.to_owned(),
            r#"{"sku":"A","stock":1,"colour":"red"}"#.to_owned(),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_PRODUCTS).map(|i| format!(r#"{{"sku":"S{i}","stock":1}}"#)).collect();
        assert!(parse(&format!(r#"{{"products":[{}]}}"#, many.join(","))).is_err(), "over 1000");
    }
}
