//! The console's pictures: what the dashboard and a campaign page draw, from the hourly
//! activity counts ([`crate::followers::activity`]) and the campaign's funnel report
//! ([`crate::campaigns::funnel`]) — both a few hundred rows at most, whatever the log's size.
//! Days and hours are the brand's (`campaigns.time_zone`).

use super::charts::{self, Series};
use crate::campaigns::{Campaign, funnel, schedule};
use crate::followers::activity;
use crate::state::AppState;
use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;

const HOUR: i64 = 3_600_000;
/// Days of follows and unfollows the dashboard draws.
const DAYS: i64 = 14;
/// Hours of messages the dashboard draws.
const HOURS: i64 = 48;
/// Days of menu taps the dashboard sums.
const TAP_DAYS: i64 = 30;
/// Menu buttons drawn (the most tapped).
const TAP_BUTTONS: usize = 12;

fn local(ms: i64, tz: Tz) -> DateTime<Tz> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default().with_timezone(&tz)
}

fn tz(app: &AppState) -> Tz {
    schedule::parse_tz(&app.config.campaigns.time_zone).unwrap_or(chrono_tz::Asia::Shanghai)
}

/// The dashboard's three charts: follows and unfollows per day, messages per hour, menu taps
/// per button.
pub(super) async fn dashboard(app: &AppState) -> Result<[String; 3], sqlx::Error> {
    let tz = tz(app);
    let now = app.clock.now_ms();
    let today = local(now, tz).date_naive();
    let first_day = today - Duration::days(DAYS - 1);
    let day_start = tz
        .from_local_datetime(&first_day.and_hms_opt(0, 0, 0).unwrap_or_default())
        .earliest()
        .map(|t| t.timestamp_millis())
        .unwrap_or(now - DAYS * 24 * HOUR);
    let tap_from = now - TAP_DAYS * 24 * HOUR;
    let hours = activity::hours(
        &app.store,
        day_start.min(tap_from),
        now,
        &["subscribe", "unsubscribe", "message", "click", "view"],
    )
    .await?;

    let days: Vec<chrono::NaiveDate> = (0..DAYS).map(|i| first_day + Duration::days(i)).collect();
    let mut follows = vec![0; days.len()];
    let mut unfollows = vec![0; days.len()];
    let hour_from = (now / HOUR - (HOURS - 1)) * HOUR;
    let mut messages = vec![0; HOURS as usize];
    let mut taps: Vec<(String, i64)> = Vec::new();
    for h in &hours {
        match h.kind.as_str() {
            "subscribe" | "unsubscribe" if h.at >= day_start => {
                let day = local(h.at, tz).date_naive();
                if let Some(i) = days.iter().position(|d| *d == day) {
                    let v = if h.kind == "subscribe" { &mut follows } else { &mut unfollows };
                    v[i] += h.count;
                }
            }
            "message" if h.at >= hour_from => messages[((h.at - hour_from) / HOUR) as usize] += h.count,
            "click" | "view" if h.at >= tap_from => match taps.iter_mut().find(|t| t.0 == h.event_key) {
                Some(t) => t.1 += h.count,
                None => taps.push((h.event_key.clone(), h.count)),
            },
            _ => {}
        }
    }
    let day_labels: Vec<String> = days.iter().map(|d| d.format("%m-%d").to_string()).collect();
    let follow_chart = charts::columns(
        "chart-follows",
        &format!("每日关注与取关（近 {DAYS} 天）Follows and unfollows per day (last {DAYS} days)"),
        &day_labels,
        &[
            Series { name: "关注 follows", class: "s1", values: follows },
            Series { name: "取关 unfollows", class: "s3", values: unfollows },
        ],
    );
    let hour_labels: Vec<String> =
        (0..HOURS).map(|i| local(hour_from + i * HOUR, tz).format("%d %H:00").to_string()).collect();
    let message_chart = charts::columns(
        "chart-messages",
        &format!("每小时消息（近 {HOURS} 小时）Messages per hour (last {HOURS} hours)"),
        &hour_labels,
        &[Series { name: "消息 messages", class: "s2", values: messages }],
    );
    let names = button_names(app);
    taps.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    taps.truncate(TAP_BUTTONS);
    let rows: Vec<(String, i64)> = taps
        .into_iter()
        .map(|(key, n)| (names.iter().find(|(k, _)| *k == key).map(|(_, name)| name.clone()).unwrap_or(key), n))
        .collect();
    let tap_chart = charts::bars(
        "chart-taps",
        &format!("菜单点击（近 {TAP_DAYS} 天）Menu taps per button (last {TAP_DAYS} days)"),
        &rows,
        "s2",
    );
    Ok([follow_chart, message_chart, tap_chart])
}

/// Each menu button's key (or a VIEW button's URL) and the name a follower sees
/// (`Parent / Child` for a sub-button), from the menu file; an unreadable file names none.
fn button_names(app: &AppState) -> Vec<(String, String)> {
    let Ok(menu) = crate::menu::MenuFile::load(&app.config.bot.menu, &app.config.h5.public_url) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for b in &menu.button {
        for key in [&b.key, &b.url].into_iter().flatten() {
            names.push((key.clone(), b.name.clone()));
        }
        for sub in &b.sub_button {
            for key in [&sub.key, &sub.url].into_iter().flatten() {
                names.push((key.clone(), format!("{} / {}", b.name, sub.name)));
            }
        }
    }
    names
}

/// The most minutes of a launch night the campaign page draws.
const NIGHT_MINUTES: i64 = 24 * 60;

/// A campaign page's charts: each push's delivery, the funnel as bars, and the per-minute
/// night of its latest fired push (opens → checkouts → paid, the sold-out moment marked), from
/// ten minutes before it fired to now or a day later; the last 24 hours before any push fired.
pub(super) async fn campaign(
    app: &AppState,
    campaign: &Campaign,
    pushes: &[schedule::Push],
) -> Result<[String; 3], sqlx::Error> {
    let tz = tz(app);
    let now = app.clock.now_ms();
    let fired = pushes.iter().flat_map(|p| &p.runs).filter_map(|r| r.fired_at).max();
    let from = match fired {
        Some(at) => (at / 60_000 - 10) * 60_000,
        None => (now / 60_000 - NIGHT_MINUTES + 1) * 60_000,
    };
    // While the night unfolds the chart runs to now (an hour at least), then a day at most.
    let to = ((now / 60_000 + 1) * 60_000).clamp(from + 60 * 60_000, from + NIGHT_MINUTES * 60_000);
    let report = funnel::report(&app.store, campaign, pushes, from, to).await?;

    let labels: Vec<String> = pushes.iter().map(|p| p.name.clone()).collect();
    let sum = |f: fn(&schedule::Run) -> Option<i64>| -> Vec<i64> {
        pushes.iter().map(|p| p.runs.iter().filter_map(f).sum()).collect()
    };
    let delivery = charts::columns(
        "chart-delivery",
        "每条推送的送达（微信报告）Each push's delivery (WeChat's report)",
        &labels,
        &[
            // WeChat's MASSSENDJOBFINISH: TotalCount aimed at, FilterCount left after its
            // filters (refusals, the four-a-month limit) to send to, then SentCount, ErrorCount.
            Series { name: "目标 aimed at", class: "s4", values: sum(|r| r.total_count) },
            Series { name: "过滤后 after WeChat filters", class: "s2", values: sum(|r| r.filter_count) },
            Series { name: "送达 sent", class: "s1", values: sum(|r| r.sent_count) },
            Series { name: "错误 errors", class: "s3", values: sum(|r| r.error_count) },
        ],
    );
    let t = &report.total;
    let funnel_rows = [
        ("送达 sent", report.sent),
        ("链接打开 link opens", t.opens),
        ("打开粉丝 followers who opened", t.openers),
        ("结账 checkouts", t.checkouts),
        ("订单 orders", t.orders),
        ("付款 paid", t.paid),
    ]
    .map(|(l, v)| (l.to_owned(), v));
    let funnel_chart = charts::bars("chart-funnel", "漏斗 Funnel", &funnel_rows, "s1");

    let n = ((to - from) / 60_000) as usize;
    let (mut opens, mut checkouts, mut paid) = (vec![0; n], vec![0; n], vec![0; n]);
    for m in &report.series {
        let i = ((m.at - from) / 60_000) as usize;
        if i < n {
            opens[i] = m.opens;
            checkouts[i] = m.checkouts;
            paid[i] = m.paid;
        }
    }
    let ticks: Vec<(usize, String)> = (0..=8)
        .map(|k| k * n / 8)
        .map(|i| (i, local(from + i as i64 * 60_000, tz).format("%H:%M").to_string()))
        .collect();
    let mark = report
        .sold_out_at
        .filter(|at| (from..to).contains(at))
        .map(|at| (((at - from) / 60_000) as usize, format!("售罄 sold out {}", local(at, tz).format("%H:%M"))));
    let night = charts::lanes(
        "chart-night",
        &format!("每分钟 Per minute from {}", local(from, tz).format("%Y-%m-%d %H:%M")),
        &[
            Series { name: "打开 opens", class: "s1", values: opens },
            Series { name: "结账 checkouts", class: "s2", values: checkouts },
            Series { name: "付款 paid", class: "s3", values: paid },
        ],
        &ticks,
        mark,
    );
    Ok([delivery, funnel_chart, night])
}
