//! `wxoa fixtures export`: turn logged traffic into fixtures, so a real conversation becomes a
//! regression test. Writes `DIR/inbound/<name>.xml` (the plaintext message as received) and
//! `DIR/replies/<name>.xml` (what we answered), the layout `wxoa replay --expect` reads:
//! `wxoa replay --expect DIR/replies DIR/inbound`.

use crate::store::Store;
use crate::text::Failure;
use crate::with_pool;
use std::path::Path;

/// Filters for the export.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only messages received at or after this unix time (ms).
    pub since_ms: Option<i64>,
    pub openid: Option<String>,
    pub limit: i64,
}

/// A `--since` that is none of the forms it takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--since {0:?}: use unix seconds, YYYY-MM-DD, RFC 3339, or an age like 24h")]
pub struct BadSince(pub String);

/// Parses `--since`: unix seconds, `2026-11-01`, RFC 3339, or an age such as `30m`, `24h`, `7d`.
pub fn parse_since(s: &str, now_ms: i64) -> Result<i64, BadSince> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs * 1000);
    }
    if let Some((n, unit)) = s.len().checked_sub(1).map(|i| s.split_at(i))
        && let Ok(n) = n.parse::<i64>()
    {
        let unit_ms = match unit {
            "m" => Some(60_000),
            "h" => Some(3_600_000),
            "d" => Some(86_400_000),
            _ => None,
        };
        if let Some(ms) = unit_ms {
            return Ok(now_ms - n * ms);
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis());
    }
    Err(BadSince(s.to_owned()))
}

/// Writes the matching messages; returns how many.
pub async fn export(store: &Store, filter: &Filter, dir: &Path) -> Result<usize, Failure> {
    type Row = (i64, String, Option<String>, String, Option<String>);
    let rows: Vec<Row> = with_pool!(store, pool => {
        let mut q = sqlx::QueryBuilder::new(
            // A message past retention.raw_xml_days has no XML left to export.
            "SELECT id, msg_type, event, raw_xml, reply_xml FROM inbound_messages WHERE raw_xml <> ''",
        );
        if let Some(since) = filter.since_ms {
            q.push(" AND received_at >= ").push_bind(since);
        }
        if let Some(openid) = &filter.openid {
            q.push(" AND openid = ").push_bind(openid.clone());
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(filter.limit);
        q.build_query_as().fetch_all(pool).await
    })
    .map_err(|e| format!("database: {e}"))?;

    let inbound = dir.join("inbound");
    let replies = dir.join("replies");
    for d in [&inbound, &replies] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    for (id, msg_type, event, raw_xml, reply_xml) in &rows {
        let kind = match event {
            Some(e) => format!("{msg_type}_{e}"),
            None => msg_type.clone(),
        };
        let kind: String = kind.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect();
        let name = format!("{id:08}_{kind}.xml");
        let reply = reply_xml.as_deref().unwrap_or(crate::wechat::reply::SUCCESS);
        std::fs::write(inbound.join(&name), raw_xml).map_err(|e| format!("{name}: {e}"))?;
        std::fs::write(replies.join(&name), reply).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn since_forms() {
        let now = 1_000_000_000_000;
        assert_eq!(super::parse_since("1700000000", now), Ok(1_700_000_000_000));
        assert_eq!(super::parse_since("2h", now), Ok(now - 7_200_000));
        assert_eq!(super::parse_since("2026-11-01", now), Ok(1_793_491_200_000));
        assert_eq!(super::parse_since("2026-11-01T08:00:00+08:00", now), Ok(1_793_491_200_000));
        assert!(super::parse_since("yesterday", now).is_err());
    }
}
