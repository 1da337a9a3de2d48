//! What a campaign sold, put together from its parts: sent (WeChat's MASSSENDJOBFINISH reports
//! on each push's runs), the counted funnel ([`crate::shop::funnel`]: opens → checkouts →
//! orders → paid, a row a minute), and the moment its product sold out. The API's
//! `/campaigns/{id}/funnel` and the console's campaign charts read the same [`Report`].

use super::{Campaign, schedule};
use crate::shop::funnel::{self, Figures, Minute};
use crate::store::Store;

/// The pushes of a campaign a report covers (and the pages that show it list).
pub const MAX_PUSHES: i64 = 1000;

/// One push's share of the funnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushFunnel {
    pub push: i64,
    pub name: String,
    /// Followers WeChat reports the push reached, over all its runs.
    pub sent: i64,
    pub funnel: Figures,
}

/// A campaign's funnel and its per-minute series over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub sent: i64,
    /// Every push together, with links naming no push.
    pub total: Figures,
    pub pushes: Vec<PushFunnel>,
    /// What links naming no push led to (the article's plain link), if anything.
    pub unattributed_to_a_push: Option<Figures>,
    /// When the product's stock last reached zero, unix ms.
    pub sold_out_at: Option<i64>,
    /// The window's minutes with something in them.
    pub series: Vec<Minute>,
}

/// The report of `campaign`, whose pushes are `pushes` (as [`schedule::list`] gives them: the
/// caller has them already), its series from `from` to `to` (unix ms).
pub async fn report(
    store: &Store,
    campaign: &Campaign,
    pushes: &[schedule::Push],
    from: i64,
    to: i64,
) -> Result<Report, sqlx::Error> {
    let sent_of = |p: &schedule::Push| -> i64 { p.runs.iter().map(|r| r.sent_count.unwrap_or(0)).sum() };
    let counted = funnel::by_push(store, campaign.id).await?;
    let mut total = Figures::default();
    for (_, f) in &counted {
        total.opens += f.opens;
        total.openers += f.openers;
        total.checkouts += f.checkouts;
        total.orders += f.orders;
        total.paid += f.paid;
        total.revenue_fen += f.revenue_fen;
        total.refunds += f.refunds;
        total.refunded_fen += f.refunded_fen;
    }
    let by_push = pushes
        .iter()
        .map(|p| PushFunnel {
            push: p.id,
            name: p.name.clone(),
            sent: sent_of(p),
            funnel: counted.iter().find(|(push, _)| *push == p.id).map(|(_, f)| f.clone()).unwrap_or_default(),
        })
        .collect();
    let sold_out_at = match &campaign.product_sku {
        Some(sku) => crate::shop::product(store, sku).await?.and_then(|p| p.sold_out_at),
        None => None,
    };
    Ok(Report {
        sent: pushes.iter().map(sent_of).sum(),
        total,
        pushes: by_push,
        unattributed_to_a_push: counted.iter().find(|(push, _)| *push == 0).map(|(_, f)| f.clone()),
        sold_out_at,
        series: funnel::series(store, campaign.id, from, to).await?,
    })
}
