//! `wxoa members import FILE.csv`: load an existing member base that was typed in by hand.
//!
//! The CRM export is messy, so every row is normalised and the report says what changed:
//! phone numbers lose `+86`, spaces and dashes (and are dropped if they are not mainland mobile
//! numbers); names are trimmed, full-width letters and spaces made half-width and runs of spaces
//! collapsed; card numbers are upper-cased without spaces or dashes; birthdays in any common
//! form become `YYYY-MM-DD`. Rows that repeat a card number or phone of an earlier row are
//! merged into it (blanks filled, conflicts reported, the first row wins). A row with neither a
//! usable card number nor a usable phone is rejected. Existing members are matched the same way
//! and only their blank fields are filled. Imported points become one ledger entry per member
//! with a unique reference, so running the same file again changes nothing. The file is read one
//! record at a time and written in transactions of [`CHUNK_ROWS`] members, with the writer left
//! free between them: an import beside a live webhook must not hold SQLite's one writer for
//! its whole length. A bad row never stops it; a failure stops it after the last whole chunk,
//! and running the same file again finishes it, changing nothing twice.

pub use super::csv::{CsvError, read_csv, records};
use crate::store::{Store, Tx};
use crate::with_tx;
use std::collections::HashMap;
use std::time::Duration;

/// Members written per transaction: short enough that the webhook's writer never waits long.
const CHUNK_ROWS: usize = 500;
/// Between two chunks on SQLite the writer is left free for half as long as a chunk held it,
/// within these bounds (scripts/bench-import.sh: 100,000 rows beside 50 messages/s).
const YIELD_MIN: Duration = Duration::from_millis(5);
const YIELD_MAX: Duration = Duration::from_millis(200);

/// Why a member import applied nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not CSV within bounds.
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// No header, no rows.
    #[error("the file is empty")]
    Empty,
    /// The header names no column a member is found by.
    #[error("the header has neither a card number nor a phone column")]
    NoKeyColumn,
    /// The database failed (beginning or committing the import).
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// The database failed on this line's member.
    #[error("line {line}: {source}")]
    Line { line: usize, source: sqlx::Error },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    pub line: usize,
    pub card_no: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub birthday: Option<String>,
    pub points: Option<i64>,
    pub tier: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created(i64),
    Updated(i64),
    Unchanged(i64),
    /// Merged into the row on that line.
    Merged(usize),
    Rejected(String),
}

/// What happened to one line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub line: usize,
    pub outcome: Outcome,
    /// Normalisations, fills and conflicts, in words.
    pub notes: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.outcome {
            Outcome::Created(id) => write!(f, "created member {id}")?,
            Outcome::Updated(id) => write!(f, "updated member {id}")?,
            Outcome::Unchanged(id) => write!(f, "unchanged (member {id})")?,
            Outcome::Merged(line) => write!(f, "merged into line {line}")?,
            Outcome::Rejected(why) => write!(f, "rejected: {why}")?,
        }
        for n in &self.notes {
            write!(f, "; {n}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Card,
    Name,
    Phone,
    Birthday,
    Points,
    Tier,
}

fn column(header: &str) -> Option<Column> {
    let h = header.trim().to_lowercase().replace([' ', '-'], "_");
    Some(match h.as_str() {
        "card" | "card_no" | "card_number" | "cardno" | "卡号" | "会员卡号" => Column::Card,
        "name" | "full_name" | "姓名" | "名字" => Column::Name,
        "phone" | "mobile" | "phone_number" | "tel" | "手机" | "手机号" | "电话" => Column::Phone,
        "birthday" | "birth_date" | "dob" | "生日" | "出生日期" => Column::Birthday,
        "points" | "balance" | "积分" => Column::Points,
        "tier" | "level" | "等级" | "会员等级" => Column::Tier,
        _ => return None,
    })
}

/// Full-width ASCII and the ideographic space made half-width.
fn half_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
            c => c,
        })
        .collect()
}

/// An 11-digit mainland mobile number from what someone typed, or `None`.
pub fn normalise_phone(raw: &str) -> Option<String> {
    let digits: String = half_width(raw).chars().filter(char::is_ascii_digit).collect();
    let digits = digits.strip_prefix("0086").map(str::to_owned).unwrap_or(digits);
    let digits = if digits.len() == 13 && digits.starts_with("86") { digits[2..].to_owned() } else { digits };
    let b = digits.as_bytes();
    (b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1])).then_some(digits)
}

/// Why a name cannot be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadName {
    /// Nothing but spaces.
    Empty,
    /// A control character other than a space, tab or line break (a NUL, an escape): no one's
    /// name, and a hazard wherever the name goes next (a C string, a terminal, a CSV).
    Control,
}

/// A name with its runs of spaces (full-width ones too) made one, at most 64 characters.
pub fn normalise_name(raw: &str) -> Result<String, BadName> {
    if raw.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Err(BadName::Control);
    }
    let name = half_width(raw).split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() {
        return Err(BadName::Empty);
    }
    Ok(name.chars().take(64).collect())
}

pub fn normalise_card(raw: &str) -> Option<String> {
    let card: String =
        half_width(raw).chars().filter(|c| !c.is_whitespace() && *c != '-').collect::<String>().to_uppercase();
    (4..=32).contains(&card.len()).then_some(card).filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A birthday as `YYYY-MM-DD` (none after `today`, China's date).
pub fn normalise_birthday(raw: &str, today: chrono::NaiveDate) -> Option<String> {
    parse_birthday(raw, today).ok()
}

/// Why a birthday was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadBirthday {
    /// Not a date in any form we read.
    Format,
    /// A date after today (China time).
    Future,
    /// Before 1900.
    TooOld,
}

/// A birthday in any common form as `YYYY-MM-DD`, or why not (one after `today`, China's
/// date, is in the future).
pub fn parse_birthday(raw: &str, today: chrono::NaiveDate) -> Result<String, BadBirthday> {
    let s = half_width(raw.trim());
    let date = ["%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d", "%Y年%m月%d日"]
        .iter()
        .find_map(|f| chrono::NaiveDate::parse_from_str(&s, f).ok())
        .ok_or(BadBirthday::Format)?;
    if date > today {
        return Err(BadBirthday::Future);
    }
    if chrono::Datelike::year(&date) < 1900 {
        return Err(BadBirthday::TooOld);
    }
    Ok(date.format("%Y-%m-%d").to_string())
}

fn normalise_tier(raw: &str) -> Option<&'static str> {
    Some(match raw.trim().to_lowercase().as_str() {
        "standard" | "normal" | "普通" | "普卡" => "standard",
        "silver" | "银卡" => "silver",
        "gold" | "金卡" => "gold",
        "platinum" | "白金" | "白金卡" => "platinum",
        _ => return None,
    })
}

/// One record as a normalised row, with notes of what was changed or dropped, and why the
/// record is refused whole when it is.
fn normalise(
    line: usize,
    columns: &[Option<Column>],
    record: &[String],
    today: chrono::NaiveDate,
) -> (Row, Vec<String>, Option<String>) {
    let mut row = Row { line, ..Row::default() };
    let mut notes = Vec::new();
    let mut refused = None;
    for (col, raw) in columns.iter().zip(record) {
        let (Some(col), raw) = (col, raw.as_str()) else { continue };
        if raw.trim().is_empty() {
            continue;
        }
        match col {
            Column::Card => {
                if let Some(c) = cleaned("card", raw, normalise_card(raw), "is not a card number", &mut notes) {
                    row.card_no = Some(c);
                }
            }
            Column::Name => match normalise_name(raw) {
                Ok(n) => {
                    if n != raw {
                        notes.push(format!("name {raw:?} → {n:?}"));
                    }
                    row.name = Some(n);
                }
                Err(BadName::Empty) => {}
                Err(BadName::Control) => refused = Some(format!("name {raw:?} contains control characters")),
            },
            Column::Phone => {
                let not = "is not a mainland mobile number";
                if let Some(p) = cleaned("phone", raw, normalise_phone(raw), not, &mut notes) {
                    row.phone = Some(p);
                }
            }
            Column::Birthday => {
                if let Some(b) = cleaned("birthday", raw, normalise_birthday(raw, today), "is not a date", &mut notes) {
                    row.birthday = Some(b);
                }
            }
            Column::Points => {
                let cleaned: String = half_width(raw).chars().filter(|c| !matches!(c, ',' | ' ' | '_')).collect();
                match cleaned.parse::<i64>() {
                    Ok(p) if (0..=100_000_000).contains(&p) => row.points = Some(p),
                    _ => notes.push(format!("points {raw:?} is not a balance: ignored")),
                }
            }
            Column::Tier => match normalise_tier(raw) {
                Some("standard") => {}
                Some(t) => {
                    if t != raw.trim() {
                        notes.push(format!("tier {raw:?} → {t}"));
                    }
                    row.tier = Some(t.to_owned());
                }
                None => notes.push(format!("tier {raw:?} unknown: standard")),
            },
        }
    }
    (row, notes, refused)
}

/// `value`, the cleaned `raw` of `field`, with a note when cleaning changed it, or when it
/// does not read (`not`: why, e.g. "is not a date"; the field is left empty).
fn cleaned(field: &str, raw: &str, value: Option<String>, not: &str, notes: &mut Vec<String>) -> Option<String> {
    match &value {
        Some(v) if v != raw => notes.push(format!("{field} {raw:?} → {v}")),
        Some(_) => {}
        None => notes.push(format!("{field} {raw:?} {not}: left empty")),
    }
    value
}

/// Fills `into`'s blanks from `from`; notes conflicts (where `into` wins).
fn merge(into: &mut Row, from: &Row, notes: &mut Vec<String>) {
    fn field<T: Clone + PartialEq + std::fmt::Debug>(
        name: &str,
        a: &mut Option<T>,
        b: &Option<T>,
        notes: &mut Vec<String>,
    ) {
        match (a.as_ref(), b) {
            (None, Some(v)) => {
                notes.push(format!("{name} {v:?} filled in"));
                *a = Some(v.clone());
            }
            (Some(x), Some(y)) if x != y => notes.push(format!("{name} {y:?} conflicts with {x:?}: kept {x:?}")),
            _ => {}
        }
    }
    field("card", &mut into.card_no, &from.card_no, notes);
    field("name", &mut into.name, &from.name, notes);
    field("phone", &mut into.phone, &from.phone, notes);
    field("birthday", &mut into.birthday, &from.birthday, notes);
    field("points", &mut into.points, &from.points, notes);
    field("tier", &mut into.tier, &from.tier, notes);
}

/// Imports CSV text under the default loyalty rules ([`import_with`]).
pub async fn import(store: &Store, text: &str) -> Result<Vec<Report>, ImportError> {
    import_with(store, text, &crate::config::LoyaltyConfig::default()).await
}

/// Imports CSV text; returns one report per data line, in file order. Imported points are
/// valid `loyalty.points_valid_days`; an imported tier holds for one tier window (whatever the
/// points earned in it say), after which the tier rules take over. The CRM hears nothing of
/// an import: the file is its own.
pub async fn import_with(
    store: &Store,
    text: &str,
    loyalty: &crate::config::LoyaltyConfig,
) -> Result<Vec<Report>, ImportError> {
    let mut records = records(text);
    let Some((_, header)) = records.next().transpose()? else {
        return Err(ImportError::Empty);
    };
    let columns: Vec<Option<Column>> = header.iter().map(|h| column(h)).collect();
    if !columns.iter().any(|c| matches!(c, Some(Column::Card) | Some(Column::Phone))) {
        return Err(ImportError::NoKeyColumn);
    }

    // Normalise, then merge rows that repeat an earlier row's card number or phone (found by
    // key, not by scanning: a scan made a 100,000-row file quadratic).
    let mut reports: Vec<Report> = Vec::new();
    let mut kept: Vec<(Row, usize)> = Vec::new(); // row, index of its report
    let (mut by_card, mut by_phone) = (HashMap::<String, usize>::new(), HashMap::<String, usize>::new());
    let today = store.clock.china_now().date_naive();
    for record in records {
        let (line, record) = record?;
        let (row, mut notes, refused) = normalise(line, &columns, &record, today);
        let refused = refused.or_else(|| {
            (row.card_no.is_none() && row.phone.is_none()).then(|| "no usable card number or phone".to_owned())
        });
        if let Some(why) = refused {
            reports.push(Report { line, outcome: Outcome::Rejected(why), notes });
            continue;
        }
        let card = row.card_no.as_ref().and_then(|c| by_card.get(c)).copied();
        let phone = row.phone.as_ref().and_then(|p| by_phone.get(p)).copied();
        match card.into_iter().chain(phone).min() {
            Some(earlier) => {
                let (k, idx) = &mut kept[earlier];
                let same = if card == Some(earlier) { "card number" } else { "phone" };
                notes.insert(0, format!("same {same} as line {}", k.line));
                let mut merge_notes = Vec::new();
                merge(k, &row, &mut merge_notes);
                notes.extend(merge_notes.iter().cloned());
                reports[*idx].notes.extend(merge_notes.into_iter().map(|n| format!("{n} from line {}", row.line)));
                reports.push(Report { line, outcome: Outcome::Merged(k.line), notes });
                // A merge may have filled the earlier row's blank card or phone.
                index(&mut by_card, &mut by_phone, &k.clone(), earlier);
            }
            None => {
                index(&mut by_card, &mut by_phone, &row, kept.len());
                kept.push((row, reports.len()));
                reports.push(Report { line, outcome: Outcome::Unchanged(0), notes });
            }
        }
    }

    for chunk in kept.chunks(CHUNK_ROWS) {
        let started = std::time::Instant::now();
        let mut tx = store.begin().await?;
        let now = tx.now_ms();
        // The chunk's imported balances go in as one batch of ledger entries.
        let mut changes = Vec::new();
        let mut owners = Vec::new();
        for (row, idx) in chunk {
            let report = &mut reports[*idx];
            let (outcome, points) = apply(&mut tx, loyalty, row, &mut report.notes)
                .await
                .map_err(|source| ImportError::Line { line: row.line, source })?;
            report.outcome = outcome;
            if let (Some(points), Outcome::Created(id) | Outcome::Updated(id) | Outcome::Unchanged(id)) =
                (points, &report.outcome)
            {
                changes.push(imported_points(*id, points, now));
                owners.push((*idx, points));
            }
        }
        if !changes.is_empty() {
            use super::points::{self, Outcome as Posted, Rules};
            let rules = Rules { loyalty, crm: crate::crm::Events::off(), notices: None, tiers: false, now };
            let posted = points::post(&mut tx, &rules, &changes).await?;
            for (posted, (idx, points)) in posted.into_iter().zip(owners) {
                if let Posted::Applied { .. } = posted {
                    let report = &mut reports[idx];
                    report.notes.push(format!("{points} points imported"));
                    if let Outcome::Unchanged(id) = report.outcome {
                        report.outcome = Outcome::Updated(id);
                    }
                }
            }
        }
        tx.commit().await?;
        // Leave the database's single writer free for half as long as the chunk held it, so
        // the webhook's commits (in another process, waiting in SQLite's busy handler) get in.
        if store.backend() == "sqlite" {
            tokio::time::sleep((started.elapsed() / 2).clamp(YIELD_MIN, YIELD_MAX)).await;
        }
    }
    Ok(reports)
}

/// Files `row` under its card number and phone (the first row with a key keeps it).
fn index(by_card: &mut HashMap<String, usize>, by_phone: &mut HashMap<String, usize>, row: &Row, at: usize) {
    if let Some(c) = &row.card_no {
        by_card.entry(c.clone()).or_insert(at);
    }
    if let Some(p) = &row.phone {
        by_phone.entry(p.clone()).or_insert(at);
    }
}

type Existing = (i64, Option<String>, Option<String>, Option<String>, Option<String>, String);

async fn find(tx: &mut Tx, column: &str, value: &str) -> Result<Option<Existing>, sqlx::Error> {
    let sql =
        format!("SELECT id, card_no, name, phone, birthday, tier FROM members WHERE {column} = $1 ORDER BY id LIMIT 1");
    with_tx!(tx, conn => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(value).fetch_optional(conn).await)
}

/// Creates or fills in one member; returns what became of it and the points to import for it.
async fn apply(
    tx: &mut Tx,
    loyalty: &crate::config::LoyaltyConfig,
    row: &Row,
    notes: &mut Vec<String>,
) -> Result<(Outcome, Option<i64>), sqlx::Error> {
    let by_card = match &row.card_no {
        Some(c) => find(tx, "card_no", c).await?,
        None => None,
    };
    let by_phone = match &row.phone {
        Some(p) => find(tx, "phone", p).await?,
        None => None,
    };
    if let (Some(a), Some(b)) = (&by_card, &by_phone)
        && a.0 != b.0
    {
        return Ok((
            Outcome::Rejected(format!("card number belongs to member {} but phone to member {}", a.0, b.0)),
            None,
        ));
    }
    let now = tx.now_ms();
    let (id, outcome) = match by_card.or(by_phone) {
        Some((id, card_no, name, phone, birthday, tier)) => {
            // "standard" is the default tier, not something the member's record says.
            let before = Row {
                line: 0,
                card_no,
                name,
                phone,
                birthday,
                points: None,
                tier: (tier != "standard").then_some(tier),
            };
            let mut after = before.clone();
            let mut merge_notes = Vec::new();
            merge(&mut after, &Row { points: None, ..row.clone() }, &mut merge_notes);
            notes.extend(merge_notes.into_iter().map(|n| n.replace("kept", "kept the member's")));
            if after == before {
                (id, Outcome::Unchanged(id))
            } else {
                with_tx!(tx, conn => sqlx::query(
                    "UPDATE members SET card_no = $2, name = $3, phone = $4, birthday = $5, tier = $6, updated_at = $7 WHERE id = $1")
                    .bind(id).bind(&after.card_no).bind(&after.name).bind(&after.phone).bind(&after.birthday)
                    .bind(after.tier.as_deref().unwrap_or("standard")).bind(now)
                    .execute(conn).await.map(|_| ()))?;
                (id, Outcome::Updated(id))
            }
        }
        None => {
            let id: i64 = with_tx!(tx, conn => sqlx::query_scalar(
                "INSERT INTO members (card_no, name, phone, birthday, tier, source, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 'import', $6, $6) RETURNING id")
                .bind(&row.card_no).bind(&row.name).bind(&row.phone).bind(&row.birthday)
                .bind(row.tier.as_deref().unwrap_or("standard")).bind(now)
                .fetch_one(conn).await)?;
            (id, Outcome::Created(id))
        }
    };
    if row.tier.is_some() {
        let held_until = now + loyalty.tier_window_days as i64 * 86_400_000;
        with_tx!(tx, conn => sqlx::query("UPDATE members SET tier_held_until = $2 WHERE id = $1")
            .bind(id).bind(held_until).execute(conn).await.map(|_| ()))?;
    }
    Ok((outcome, row.points.filter(|p| *p > 0)))
}

/// The ledger entry of `points` imported for member `id` (its reference makes a second import
/// of the same file change nothing).
fn imported_points(id: i64, points: i64, now: i64) -> super::points::Change {
    use super::points::{Change, Kind, Who};
    let mut change = Change::new(format!("import:member:{id}"), Who::Id(id), Kind::Adjust, points, now);
    change.note = Some("导入积分 Imported balance".into());
    change
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let phones = [
            ("+86 138-1234-5678", Some("13812345678")),
            ("0086 13812345678", Some("13812345678")),
            ("86-138 1234 5678", Some("13812345678")),
            ("１３８１２３４５６７８", Some("13812345678")),
            ("(138) 1234.5678", Some("13812345678")),
            ("021-6123-4567", None),
            ("1381234567", None),
            ("12812345678", None),
        ];
        for (raw, want) in phones {
            assert_eq!(normalise_phone(raw).as_deref(), want, "{raw}");
        }
        assert_eq!(normalise_name("  li\u{3000}\u{3000}LEI ").as_deref(), Ok("li LEI"));
        assert_eq!(normalise_name("王　小明").as_deref(), Ok("王 小明"));
        assert_eq!(normalise_name("two\tparts\n").as_deref(), Ok("two parts"));
        assert_eq!(normalise_name("   "), Err(BadName::Empty));
        assert_eq!(normalise_name("Li\0Lei"), Err(BadName::Control));
        assert_eq!(normalise_name("Li\u{1b}[31mLei"), Err(BadName::Control));
        assert_eq!(normalise_card(" c-1001 23 ").as_deref(), Some("C100123"));
        assert_eq!(normalise_card("x!"), None);
        for raw in ["1990-01-05", "1990/1/5", "19900105", "1990.01.05", "1990年1月5日"] {
            assert_eq!(normalise_birthday(raw, day("2026-06-01")).as_deref(), Some("1990-01-05"), "{raw}");
        }
        assert_eq!(normalise_birthday("1890-01-01", day("2026-06-01")), None);
        assert_eq!(normalise_birthday("soon", day("2026-06-01")), None);
        // The future is judged against the day given, not the day the test runs.
        assert_eq!(normalise_birthday("2026-06-02", day("2026-06-01")), None);
        assert_eq!(normalise_birthday("2026-06-01", day("2026-06-01")).as_deref(), Some("2026-06-01"));
    }

    fn day(s: &str) -> chrono::NaiveDate {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }
}
