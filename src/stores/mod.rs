//! The brand's stores: imported from a CSV (`wxoa stores import`), found by distance for a
//! follower's location (`stores_nearby`), and named in the welcome of a follower who scanned a
//! store's QR code (`welcome_store`, scene `store_<id>`), who is then attributed to that store.
//!
//! A store may have a Chinese name besides its `name` (`name_zh`, an optional CSV column, so
//! older files import unchanged): followers read it first, as they read everything else.

use crate::members::import::{CsvError, read_csv};
use crate::store::Store;
use crate::{with_pool, with_tx};

#[derive(Debug, Clone, PartialEq)]
pub struct BrandStore {
    pub id: i64,
    /// The brand's own code ("SH01"), as tills send it.
    pub code: Option<String>,
    /// The English name, or the only one.
    pub name: String,
    /// The Chinese name, where the store has one (`name_zh` in the CSV).
    pub name_zh: Option<String>,
    pub city: Option<String>,
    pub address: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
    pub opening_hours: Option<String>,
    pub phone: Option<String>,
}

impl BrandStore {
    /// As followers read it: Chinese first, then English (`南京路旗舰店 Nanjing Road Flagship`).
    pub fn display_name(&self) -> String {
        match &self.name_zh {
            Some(zh) => format!("{zh} {}", self.name),
            None => self.name.clone(),
        }
    }

    /// The name for a Chinese sentence: the Chinese one where there is one.
    pub fn chinese_name(&self) -> &str {
        self.name_zh.as_deref().unwrap_or(&self.name)
    }
}

type Row = (
    i64,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    f64,
    f64,
    Option<String>,
    Option<String>,
);

fn from_row((id, code, name, name_zh, city, address, latitude, longitude, opening_hours, phone): Row) -> BrandStore {
    BrandStore { id, code, name, name_zh, city, address, latitude, longitude, opening_hours, phone }
}

const COLUMNS: &str = "id, code, name, name_zh, city, address, latitude, longitude, opening_hours, phone";

/// Great-circle distance in metres.
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * a.sqrt().asin()
}

/// `850 m`, `1.2 km`, `35 km`.
pub fn format_distance(m: f64) -> String {
    if m < 1000.0 {
        format!("{} m", (m / 10.0).round() * 10.0)
    } else if m < 10_000.0 {
        format!("{:.1} km", m / 1000.0)
    } else {
        format!("{:.0} km", m / 1000.0)
    }
}

/// The `n` active stores nearest to a point, with their distance in metres.
pub async fn nearest(store: &Store, lat: f64, lon: f64, n: usize) -> Result<Vec<(BrandStore, f64)>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM stores WHERE active = $1");
    let rows: Vec<Row> =
        with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(true).fetch_all(pool).await)?;
    let mut found: Vec<(BrandStore, f64)> = rows
        .into_iter()
        .map(from_row)
        .map(|s| {
            let d = distance_m(lat, lon, s.latitude, s.longitude);
            (s, d)
        })
        .collect();
    found.sort_by(|a, b| a.1.total_cmp(&b.1));
    found.truncate(n);
    Ok(found)
}

/// Every active store, by city and name.
pub async fn list(store: &Store) -> Result<Vec<BrandStore>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM stores WHERE active = $1 ORDER BY city, name");
    let rows: Vec<Row> =
        with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(true).fetch_all(pool).await)?;
    Ok(rows.into_iter().map(from_row).collect())
}

pub async fn get(store: &Store, id: i64) -> Result<Option<BrandStore>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM stores WHERE id = $1");
    with_pool!(store, pool => sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await)
        .map(|r| r.map(from_row))
}

/// The store id in a QR scene `store_<id>` (with or without `qrscene_`).
pub fn scene_store_id(scene: &str) -> Option<i64> {
    scene.strip_prefix("qrscene_").unwrap_or(scene).strip_prefix("store_")?.parse().ok()
}

/// Records that `openid` follows (or left), attributed to `store_id` when it came from a store's
/// QR code. A later plain follow keeps the first attribution.
pub async fn record_follower(
    store: &Store,
    openid: &str,
    subscribed: bool,
    store_id: Option<i64>,
    scene: Option<&str>,
) -> Result<(), sqlx::Error> {
    with_pool!(store, pool => sqlx::query(
        "INSERT INTO followers (openid, store_id, subscribed, scene, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (openid) DO UPDATE SET subscribed = excluded.subscribed, \
         store_id = COALESCE(followers.store_id, excluded.store_id), scene = COALESCE(excluded.scene, followers.scene), \
         updated_at = excluded.updated_at")
        .bind(openid).bind(store_id).bind(subscribed).bind(scene).bind(store.now_ms())
        .execute(pool).await.map(|_| ()))
}

/// Why a store or advisor import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not CSV within bounds.
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// No header, no rows.
    #[error("the file is empty")]
    Empty,
    /// The header lacks columns the import needs (named).
    #[error("the header needs {0}")]
    Columns(&'static str),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// The database failed on this line.
    #[error("line {line}: {source}")]
    Line { line: usize, source: sqlx::Error },
}

/// Imports stores from CSV with columns `id, name, city, address, latitude, longitude,
/// opening_hours, phone[, code][, active][, name_zh]` (any order; `name_zh` is the Chinese name
/// followers read first, at most 50 characters); upserts by id. Returns (imported, problems by line).
pub async fn import(store: &Store, text: &str) -> Result<(usize, Vec<String>), ImportError> {
    let records = read_csv(text)?;
    let Some(((_, header), data)) = records.split_first() else {
        return Err(ImportError::Empty);
    };
    let idx = |name: &str| header.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let (Some(i_id), Some(i_name), Some(i_lat), Some(i_lon)) =
        (idx("id"), idx("name"), idx("latitude"), idx("longitude"))
    else {
        return Err(ImportError::Columns("id, name, latitude and longitude"));
    };
    let opt = |rec: &[String], i: Option<usize>| {
        i.and_then(|i| rec.get(i)).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    };
    let mut problems = Vec::new();
    let mut imported = 0;
    let mut tx = store.begin().await?;
    for (line, rec) in data {
        let field = |i: usize| rec.get(i).map(|v| v.trim()).unwrap_or("");
        let (Ok(id), name, Ok(lat), Ok(lon)) =
            (field(i_id).parse::<i64>(), field(i_name), field(i_lat).parse::<f64>(), field(i_lon).parse::<f64>())
        else {
            problems.push(format!("line {line}: needs a numeric id, latitude and longitude"));
            continue;
        };
        if name.is_empty() || !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            problems.push(format!("line {line}: needs a name and coordinates on Earth"));
            continue;
        }
        let name_zh = opt(rec, idx("name_zh"));
        if name_zh.as_ref().is_some_and(|n| n.chars().count() > 50 || n.chars().any(char::is_control)) {
            problems.push(format!("line {line}: name_zh must be at most 50 characters on one line"));
            continue;
        }
        let code = opt(rec, idx("code"));
        if code
            .as_ref()
            .is_some_and(|c| c.len() > 32 || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        {
            problems.push(format!("line {line}: code must be 1 to 32 of A-Z a-z 0-9 _ -"));
            continue;
        }
        let active = opt(rec, idx("active"))
            .is_none_or(|a| !matches!(a.to_lowercase().as_str(), "0" | "false" | "no" | "closed"));
        with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO stores (id, name, city, address, latitude, longitude, opening_hours, phone, active, code, name_zh) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO UPDATE SET name = excluded.name, name_zh = excluded.name_zh, \
             city = excluded.city, address = excluded.address, latitude = excluded.latitude, longitude = excluded.longitude, \
             opening_hours = excluded.opening_hours, phone = excluded.phone, active = excluded.active, code = excluded.code")
            .bind(id).bind(name).bind(opt(rec, idx("city"))).bind(opt(rec, idx("address"))).bind(lat).bind(lon)
            .bind(opt(rec, idx("opening_hours"))).bind(opt(rec, idx("phone"))).bind(active).bind(&code).bind(&name_zh)
            .execute(conn).await.map(|_| ()))
        .map_err(|source| ImportError::Line { line: *line, source })?;
        imported += 1;
    }
    tx.commit().await?;
    Ok((imported, problems))
}

/// Imports advisors from CSV `id, store_id, name[, active]`; upserts by id. Returns (imported,
/// problems by line).
pub async fn import_advisors(store: &Store, text: &str) -> Result<(usize, Vec<String>), ImportError> {
    let records = read_csv(text)?;
    let Some(((_, header), data)) = records.split_first() else {
        return Err(ImportError::Empty);
    };
    let idx = |name: &str| header.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let (Some(i_id), Some(i_store), Some(i_name)) = (idx("id"), idx("store_id"), idx("name")) else {
        return Err(ImportError::Columns("id, store_id and name"));
    };
    let mut problems = Vec::new();
    let mut imported = 0;
    for (line, rec) in data {
        let field = |i: usize| rec.get(i).map(|v| v.trim()).unwrap_or("");
        let (Ok(id), Ok(store_id), name) = (field(i_id).parse::<i64>(), field(i_store).parse::<i64>(), field(i_name))
        else {
            problems.push(format!("line {line}: needs a numeric id and store_id"));
            continue;
        };
        if name.is_empty() || get(store, store_id).await?.is_none() {
            problems.push(format!("line {line}: needs a name and an existing store"));
            continue;
        }
        crate::bookings::put_advisor(store, &crate::bookings::Advisor { id, store_id, name: name.to_owned() })
            .await
            .map_err(|source| ImportError::Line { line: *line, source })?;
        imported += 1;
    }
    Ok((imported, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_scenes() {
        // People's Square towards the Bund, Shanghai: about 1.9 km.
        let d = distance_m(31.2304, 121.4737, 31.2400, 121.4900);
        assert!((1500.0..2000.0).contains(&d), "{d}");
        assert_eq!(format_distance(853.0), "850 m");
        assert_eq!(format_distance(1234.0), "1.2 km");
        assert_eq!(format_distance(35_400.0), "35 km");
        assert_eq!(scene_store_id("qrscene_store_021"), Some(21));
        assert_eq!(scene_store_id("store_7"), Some(7));
        assert_eq!(scene_store_id("launch_2026"), None);
    }
}
