//! Storage: one [`Store`] over SQLite (the embedded default) or PostgreSQL (several instances
//! behind a load balancer).
//!
//! Most SQL is shared: `$1` placeholders work on both, integers are `BIGINT`/`INTEGER`, time is
//! unix milliseconds in UTC. Where the dialects differ the repository says so beside the query.
//! Migrations live in `migrations/{sqlite,postgres}/`, are compiled into the binary, and are
//! applied at start (and by `wxoa migrate`) under a lock, so two instances starting together
//! do not race.

pub mod messages;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store holds; the body is compiled once
/// per backend, so shared SQL is written once.
#[macro_export]
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}

type Migration = (i64, &'static str, &'static str);

const SQLITE_MIGRATIONS: &[Migration] = &[
    (1, "webhook", include_str!("../../migrations/sqlite/0001_webhook.sql")),
    (2, "outbox", include_str!("../../migrations/sqlite/0002_outbox.sql")),
    (3, "members", include_str!("../../migrations/sqlite/0003_members.sql")),
    (4, "stores", include_str!("../../migrations/sqlite/0004_stores.sql")),
    (5, "h5", include_str!("../../migrations/sqlite/0005_h5.sql")),
    (6, "catalogue", include_str!("../../migrations/sqlite/0006_catalogue.sql")),
    (7, "bookings", include_str!("../../migrations/sqlite/0007_bookings.sql")),
    (8, "campaigns", include_str!("../../migrations/sqlite/0008_campaigns.sql")),
    (9, "h5_forms", include_str!("../../migrations/sqlite/0009_h5_forms.sql")),
];
const POSTGRES_MIGRATIONS: &[Migration] = &[
    (1, "webhook", include_str!("../../migrations/postgres/0001_webhook.sql")),
    (2, "outbox", include_str!("../../migrations/postgres/0002_outbox.sql")),
    (3, "members", include_str!("../../migrations/postgres/0003_members.sql")),
    (4, "stores", include_str!("../../migrations/postgres/0004_stores.sql")),
    (5, "h5", include_str!("../../migrations/postgres/0005_h5.sql")),
    (6, "catalogue", include_str!("../../migrations/postgres/0006_catalogue.sql")),
    (7, "bookings", include_str!("../../migrations/postgres/0007_bookings.sql")),
    (8, "campaigns", include_str!("../../migrations/postgres/0008_campaigns.sql")),
    (9, "h5_forms", include_str!("../../migrations/postgres/0009_h5_forms.sql")),
];

impl Store {
    /// Connects to `url`; a SQLite file (and its directory) is created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, sqlx::Error> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                // WAL with synchronous=NORMAL survives a process crash (the case we promise);
                // only an OS crash can lose the last commits.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            if let Some(dir) = opts.get_filename().parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
            }
            let pool = SqlitePoolOptions::new().max_connections(max_connections).connect_with(opts).await?;
            Ok(Store::Sqlite(pool))
        } else {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            Ok(Store::Postgres(pool))
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Applies the migrations not yet applied; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, sqlx::Error> {
        // Each backend serialises concurrent starts its own way: SQLite takes its write lock up
        // front (BEGIN IMMEDIATE), PostgreSQL a transaction-scoped advisory lock.
        macro_rules! run {
            ($pool:expr, $begin:expr, $lock:expr, $ddl:expr, $migrations:expr) => {{
                let mut tx = $pool.begin_with($begin).await?;
                if let Some(lock) = $lock {
                    sqlx::query(lock).execute(&mut *tx).await?;
                }
                sqlx::raw_sql($ddl).execute(&mut *tx).await?;
                let mut ran = 0;
                for (version, name, sql) in $migrations {
                    let done: Option<i64> =
                        sqlx::query_scalar("SELECT version FROM wxoa_migrations WHERE version = $1")
                            .bind(version)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if done.is_none() {
                        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
                        sqlx::query("INSERT INTO wxoa_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                            .bind(version)
                            .bind(name)
                            .bind(now_ms())
                            .execute(&mut *tx)
                            .await?;
                        ran += 1;
                    }
                }
                tx.commit().await?;
                Ok(ran)
            }};
        }
        match self {
            Store::Sqlite(pool) => run!(
                pool,
                "BEGIN IMMEDIATE",
                None::<&'static str>,
                "CREATE TABLE IF NOT EXISTS wxoa_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
                SQLITE_MIGRATIONS
            ),
            Store::Postgres(pool) => run!(
                pool,
                "BEGIN",
                Some("SELECT pg_advisory_xact_lock(7110001)"),
                "CREATE TABLE IF NOT EXISTS wxoa_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
                POSTGRES_MIGRATIONS
            ),
        }
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.is_ok())
    }

    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }
}

/// A transaction on either backend, for changes that must commit together (a business change
/// and the outbox job it causes).
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` with `$conn` bound to the transaction's connection, once per backend.
#[macro_export]
macro_rules! with_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::store::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

impl Store {
    /// A write transaction. On SQLite it takes the write lock up front (BEGIN IMMEDIATE): a
    /// deferred transaction that reads first and writes later can fail with SQLITE_BUSY when
    /// another writer got in between, instead of waiting its turn.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Store::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Store::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// Now as unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
