//! A little demo data for `wxoa dev`: the recorded fixtures' five stores, three advisors, a redemption catalogue, a demo
//! member with points (not yet bound: bind with card 8800123456 and phone 13800138000), and a
//! launch campaign with its product. Running it again changes nothing.

use crate::campaigns::{self, Article, CampaignInput, ProductInput};
use crate::store::Store;
use crate::text::Failure;
use crate::with_pool;

pub const DEMO_CARD: &str = "8800123456";
pub const DEMO_PHONE: &str = "13800138000";
pub const DEMO_CAMPAIGN: &str = "Limited Edition launch";

/// The stores the golden replies of `tests/fixtures` name, so that the README's
/// `wxoa replay --expect tests/fixtures/replies tests/fixtures/inbound` passes against `dev` too.
const STORES: &str = include_str!("../../tests/fixtures/stores.csv");

const ADVISORS: &str = "id,store_id,name
1,21,Lily Wang
2,21,Grace Chen
3,31,Mia Zhang
";

const MEMBERS: &str = "card_no,name,phone,points,tier
8800123456,Demo Member,13800138000,1200,Gold
";

pub async fn run(store: &Store, public_url: &str) -> Result<(), Failure> {
    crate::stores::import(store, STORES).await?;
    crate::stores::import_advisors(store, ADVISORS).await?;
    for (id, name, cost, stock) in [
        (1, "旅行装香水 Travel-size Eau de Parfum", 500, 50),
        (2, "真丝丝巾 Silk Scarf", 1000, 20),
        (3, "礼盒 Gift Box", 3000, 5),
    ] {
        with_pool!(store, pool => sqlx::query(
            "INSERT INTO catalogue (id, name, points_cost, stock, active) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO NOTHING"
        ).bind(id as i64).bind(name).bind(cost as i64).bind(stock as i64).bind(true).execute(pool).await.map(|_| ()))
        .map_err(|e| e.to_string())?;
    }
    crate::members::import::import(store, MEMBERS).await.map_err(|e| e.to_string())?;
    if campaigns::find(store, DEMO_CAMPAIGN).await.map_err(|e| e.to_string())?.is_none() {
        let input = CampaignInput {
            name: DEMO_CAMPAIGN.into(),
            product: Some(ProductInput {
                sku: "LE-2026".into(),
                name: "Limited Edition No. 5".into(),
                stock: Some(300),
            }),
            articles: vec![Article {
                title: "The Limited Edition, tonight at 00:13".into(),
                author: "wxoa".into(),
                digest: "300 numbered pieces. Be first in line.".into(),
                content: "<p>Three hundred numbered pieces, launching at <b>00:13</b> tonight.</p>".into(),
                cover_media_id: "DEMO_THUMB_MEDIA_ID".into(),
                cover_url: format!("{}/simulator/cover.svg", public_url.trim_end_matches('/')),
                link: String::new(),
            }],
        };
        campaigns::create(store, &input).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
