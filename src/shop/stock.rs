//! What the shop reports it has left (`POST /api/v1/stock`, [`super::api`]).
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

use super::{Error, Refusal, bounded};
use crate::store::Store;
use crate::with_tx;
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

fn validate(u: &StockUpdate) -> Result<(), Error> {
    bounded("sku", &u.sku, 1, MAX_SKU_CHARS)?;
    if let Some(name) = &u.name {
        bounded("name", name, 1, MAX_NAME_CHARS)?;
    }
    if !(0..=MAX_STOCK).contains(&u.stock) {
        return Err(Refusal::Invalid(format!("stock must be 0 to {MAX_STOCK}")).into());
    }
    Ok(())
}

/// The updates a body asks for, validated.
pub fn parse(body: &[u8]) -> Result<Vec<StockUpdate>, Error> {
    updates(super::parse(body)?)
}

fn updates(body: Body) -> Result<Vec<StockUpdate>, Error> {
    let updates = match body {
        Body { products: Some(list), sku: None, name: None, stock: None } => {
            if list.is_empty() || list.len() > MAX_PRODUCTS {
                return Err(Refusal::Invalid(format!("products must hold 1 to {MAX_PRODUCTS} entries")).into());
            }
            list
        }
        Body { products: None, sku: Some(sku), name, stock: Some(stock) } => vec![StockUpdate { sku, name, stock }],
        _ => {
            return Err(
                Refusal::Invalid("send either {\"sku\", \"stock\"[, \"name\"]} or {\"products\": […]}".into()).into()
            );
        }
    };
    updates.iter().try_for_each(validate)?;
    Ok(updates)
}

/// Upserts `updates`, reported at `reported_at` (the shop's unix seconds), in one transaction;
/// returns how many were applied (the rest were older than what we have).
pub async fn upsert(store: &Store, updates: &[StockUpdate], reported_at: i64) -> Result<usize, sqlx::Error> {
    let now = store.now_ms();
    let mut tx = store.begin().await?;
    let mut applied = 0;
    for u in updates {
        applied += with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO products (sku, name, stock, updated_at, reported_at, sold_out_at) \
             VALUES ($1, COALESCE($2, $1), $3, $4, $5, CASE WHEN $3 <= 0 THEN $4 END) \
             ON CONFLICT (sku) DO UPDATE SET name = COALESCE($2, products.name), stock = excluded.stock, \
             updated_at = excluded.updated_at, reported_at = excluded.reported_at, \
             sold_out_at = CASE WHEN excluded.stock > 0 THEN NULL \
                                WHEN products.stock > 0 OR products.sold_out_at IS NULL THEN excluded.updated_at \
                                ELSE products.sold_out_at END \
             WHERE products.reported_at IS NULL OR products.reported_at <= excluded.reported_at")
            .bind(&u.sku).bind(u.name.as_deref()).bind(u.stock).bind(now).bind(reported_at)
            .execute(conn).await.map(|r| r.rows_affected()))?;
    }
    tx.commit().await?;
    Ok(applied as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Vec<StockUpdate>, Error> {
        super::parse(json.as_bytes())
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
