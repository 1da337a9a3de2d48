//! Storage: one [`Store`] over SQLite (the embedded default) or PostgreSQL (several instances
//! behind a load balancer).
//!
//! Most SQL is shared: `$1` placeholders work on both, integers are `BIGINT`/`INTEGER`, time is
//! unix milliseconds in UTC. Where the dialects differ the repository says so beside the query.
//! Migrations live in `migrations/{sqlite,postgres}/`, are compiled into the binary, and are
//! applied at start (and by `wxoa migrate`) under a lock, so two instances starting together
//! do not race.

pub mod committed;
pub mod messages;
pub mod retention;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

/// The database, and the clock its rows are stamped with (see [`crate::clock`]): every domain
/// function is handed the store, so it reads "now" from the same place as the app.
#[derive(Clone, Debug)]
pub struct Store {
    /// The connections.
    pub pool: Pool,
    /// The app's clock.
    pub clock: Clock,
}

/// The connection pool of either backend.
#[derive(Clone, Debug)]
pub enum Pool {
    /// The pool, and the file it was opened on (see [`SqliteFile`]).
    Sqlite(SqlitePool, Arc<SqliteFile>),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store holds; the body is compiled once
/// per backend, so shared SQL is written once.
#[macro_export]
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool, ..) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}

/// The SQLite file a store opened, by identity (device and inode), not just by name.
///
/// Why: a SQLite database deleted or replaced under a running process keeps working through the
/// descriptors already open — writes succeed and go nowhere anyone will read again (the file is
/// unlinked), and a new connection would open (or create) a different file at the same path. So
/// the path is checked against the identity seen at start: after every message-log commit
/// (nothing is acknowledged that went to a lost file), at every write transaction, and by
/// `/readyz`. A file whose mode no longer lets its owner read and write it counts as lost too.
#[derive(Debug)]
pub struct SqliteFile {
    pub path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SqliteFile {
    fn open(path: &Path) -> std::io::Result<SqliteFile> {
        let (dev, ino) = identity(path)?;
        Ok(SqliteFile { path: path.to_owned(), dev, ino })
    }

    /// Whether the path still holds the file we opened, readable and writable.
    pub fn check(&self) -> Result<(), StoreLost> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&self.path).map_err(|e| StoreLost(format!("{}: {e}", self.path.display())))?;
        let now = file_id(&meta);
        if now != (self.dev, self.ino) {
            return Err(StoreLost(format!("{} was replaced by another file", self.path.display())));
        }
        if meta.permissions().mode() & 0o600 != 0o600 {
            return Err(StoreLost(format!(
                "{} is not readable and writable by its owner (mode {:o})",
                self.path.display(),
                meta.permissions().mode() & 0o777
            )));
        }
        Ok(())
    }
}

/// The marker a created SQLite database leaves beside itself.
fn created_marker(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.created"))
}

fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    std::fs::metadata(path).map(|m| file_id(&m))
}

/// The database is not the one we opened, or cannot be written: nothing must be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("database lost: {0}")]
pub struct StoreLost(pub String);

/// Why the database is not ready ([`Store::probe`]).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The SQLite file is not the one opened.
    #[error(transparent)]
    Lost(#[from] StoreLost),
    /// The probe row is not there: another database than the one migrated.
    #[error("the probe row is missing: not the database we migrated")]
    NotOurs,
    /// The write failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The write did not commit in time.
    #[error("a write did not commit within {0:?} (the database is locked)")]
    Timeout(Duration),
}

/// Whether [`Store::open_migrated`] creates a database that is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Yes (`wxoa migrate`, `wxoa dev`, `serve --create-database`, tests).
    Always,
    /// On a first run only: a SQLite path where no database was ever created (`serve`).
    FirstRun,
    /// No: say so (every other command).
    Never,
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// There is none where the config says, and creating one was not asked for.
    #[error("{0}")]
    Missing(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(sqlx::Error),
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
    (10, "probe", include_str!("../../migrations/sqlite/0010_probe.sql")),
    (11, "points", include_str!("../../migrations/sqlite/0011_points.sql")),
    (12, "followers", include_str!("../../migrations/sqlite/0012_followers.sql")),
    (13, "segments", include_str!("../../migrations/sqlite/0013_segments.sql")),
    (14, "funnel", include_str!("../../migrations/sqlite/0014_funnel.sql")),
    (15, "segment_pushes", include_str!("../../migrations/sqlite/0015_segment_pushes.sql")),
    (16, "replies", include_str!("../../migrations/sqlite/0016_replies.sql")),
    (17, "activity", include_str!("../../migrations/sqlite/0017_activity.sql")),
    (18, "console_signouts", include_str!("../../migrations/sqlite/0018_console_signouts.sql")),
    (19, "retention", include_str!("../../migrations/sqlite/0019_retention.sql")),
    (20, "erasures", include_str!("../../migrations/sqlite/0020_erasures.sql")),
    (21, "simulator", include_str!("../../migrations/sqlite/0021_simulator.sql")),
    (23, "store_names", include_str!("../../migrations/sqlite/0023_store_names.sql")),
    (24, "push_articles", include_str!("../../migrations/sqlite/0024_push_articles.sql")),
    (25, "console_sessions", include_str!("../../migrations/sqlite/0025_console_sessions.sql")),
    (26, "wechat_pace", include_str!("../../migrations/sqlite/0026_wechat_pace.sql")),
    (27, "jsapi_tickets", include_str!("../../migrations/sqlite/0027_jsapi_tickets.sql")),
    (28, "push_recalls", include_str!("../../migrations/sqlite/0028_push_recalls.sql")),
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
    (10, "probe", include_str!("../../migrations/postgres/0010_probe.sql")),
    (11, "points", include_str!("../../migrations/postgres/0011_points.sql")),
    (12, "followers", include_str!("../../migrations/postgres/0012_followers.sql")),
    (13, "segments", include_str!("../../migrations/postgres/0013_segments.sql")),
    (14, "funnel", include_str!("../../migrations/postgres/0014_funnel.sql")),
    (15, "segment_pushes", include_str!("../../migrations/postgres/0015_segment_pushes.sql")),
    (16, "replies", include_str!("../../migrations/postgres/0016_replies.sql")),
    (17, "activity", include_str!("../../migrations/postgres/0017_activity.sql")),
    (18, "console_signouts", include_str!("../../migrations/postgres/0018_console_signouts.sql")),
    (19, "retention", include_str!("../../migrations/postgres/0019_retention.sql")),
    (20, "erasures", include_str!("../../migrations/postgres/0020_erasures.sql")),
    (21, "simulator", include_str!("../../migrations/postgres/0021_simulator.sql")),
    (23, "store_names", include_str!("../../migrations/postgres/0023_store_names.sql")),
    (24, "push_articles", include_str!("../../migrations/postgres/0024_push_articles.sql")),
    (25, "console_sessions", include_str!("../../migrations/postgres/0025_console_sessions.sql")),
    (26, "wechat_pace", include_str!("../../migrations/postgres/0026_wechat_pace.sql")),
    (27, "jsapi_tickets", include_str!("../../migrations/postgres/0027_jsapi_tickets.sql")),
    (28, "push_recalls", include_str!("../../migrations/postgres/0028_push_recalls.sql")),
];

impl Store {
    /// Opens the database at `url` and applies the migrations not yet applied; whether one that
    /// is not there is created depends on `create`.
    ///
    /// Why not always: a server that silently started over on an empty database after losing
    /// its file would answer WeChat and keep nothing, and a command pointed at the wrong path
    /// would report on an empty database as if it were the real one. Creating a SQLite
    /// database leaves a marker beside it (`.<file>.created`, which `rm wxoa.db*` does not
    /// match), so a missing file whose marker is there is known to be lost.
    pub async fn open_migrated(url: &str, max_connections: u32, create: Create) -> Result<Store, OpenError> {
        if url.starts_with("sqlite:") {
            let path = SqliteConnectOptions::from_str(url)?.get_filename().to_owned();
            let marker = created_marker(&path);
            if !path.exists() {
                match create {
                    Create::Always => {}
                    Create::FirstRun if !marker.exists() => {}
                    Create::FirstRun => {
                        return Err(OpenError::Missing(format!(
                            "no database at {} although one was created there (see {}): it was lost or moved; \
                             restore it, or start an empty one with `wxoa migrate` or `serve --create-database`",
                            path.display(),
                            marker.display()
                        )));
                    }
                    Create::Never => {
                        return Err(OpenError::Missing(format!(
                            "no database at {} (database.url): `wxoa serve` or `wxoa migrate` creates it; \
                             `wxoa dev` keeps its own (see its banner) — point commands at it with WXOA_DATABASE__URL",
                            path.display()
                        )));
                    }
                }
            }
            let store = Store::connect(url, max_connections).await?;
            if !marker.exists()
                && let Err(e) = std::fs::write(&marker, "wxoa created a database here; see store::open_migrated\n")
            {
                tracing::warn!(marker = %marker.display(), error = %e, "cannot write the database marker");
            }
            store.migrate().await.map_err(OpenError::Migrate)?;
            return Ok(store);
        }
        let store = Store::connect(url, max_connections).await?;
        if create != Create::Always && !store.has_schema().await? {
            store.close().await;
            return Err(OpenError::Missing(
                "the PostgreSQL database has no wxoa tables: `wxoa migrate` creates them (or `serve --create-database`)"
                    .into(),
            ));
        }
        store.migrate().await.map_err(OpenError::Migrate)?;
        Ok(store)
    }

    /// The latest migration applied.
    pub async fn schema_version(&self) -> Result<i64, sqlx::Error> {
        with_pool!(self, pool => sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM wxoa_migrations").fetch_one(pool).await)
    }

    /// Whether wxoa's migrations table exists.
    async fn has_schema(&self) -> Result<bool, sqlx::Error> {
        let Pool::Postgres(pool) = &self.pool else { return Ok(true) };
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'wxoa_migrations' AND schemaname = current_schema()",
        )
        .fetch_one(pool)
        .await?;
        Ok(n > 0)
    }

    /// Connects to `url`; a SQLite file (and its directory) is created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, sqlx::Error> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
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
            // Only the first connection may create the file: a connection opened later, after
            // the file was deleted, must fail rather than start an empty database.
            let first = sqlx::ConnectOptions::connect(&opts.clone().create_if_missing(true)).await?;
            let file = Arc::new(SqliteFile::open(opts.get_filename()).map_err(sqlx::Error::Io)?);
            sqlx::Connection::close(first).await?;
            let pool = SqlitePoolOptions::new().max_connections(max_connections).connect_with(opts).await?;
            Ok(Store { pool: Pool::Sqlite(pool, file), clock: Clock::system() })
        } else {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            Ok(Store { pool: Pool::Postgres(pool), clock: Clock::system() })
        }
    }

    /// The same database on `clock` (the app's; a store is opened on the system clock).
    pub fn with_clock(self, clock: Clock) -> Store {
        Store { clock, ..self }
    }

    /// Now, as unix milliseconds, on the app's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(..) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Whether the database is still the one we opened (for SQLite; see [`SqliteFile`]).
    pub fn check_file(&self) -> Result<(), StoreLost> {
        match &self.pool {
            Pool::Sqlite(_, file) => file.check(),
            Pool::Postgres(_) => Ok(()),
        }
    }

    /// Applies the migrations not yet applied; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, sqlx::Error> {
        let now = self.now_ms();
        // Each backend serialises concurrent starts its own way: SQLite takes its write lock up
        // front (BEGIN IMMEDIATE), PostgreSQL a transaction-scoped advisory lock.
        macro_rules! run {
            ($pool:expr, $begin:expr, $lock:expr, $ddl:expr, $migrations:expr) => {{
                let mut tx = $pool.begin_with($begin).await?;
                if let Some(lock) = $lock {
                    sqlx::query(lock).bind(locks::MIGRATIONS).execute(&mut *tx).await?;
                }
                sqlx::raw_sql($ddl).execute(&mut *tx).await?;
                let mut ran = 0;
                for (version, name, sql) in $migrations {
                    let done: Option<String> =
                        sqlx::query_scalar("SELECT name FROM wxoa_migrations WHERE version = $1")
                            .bind(version)
                            .fetch_optional(&mut *tx)
                            .await?;
                    // A version applied under another name was another build's migration: going
                    // on would skip this one and fail later in a way that names neither.
                    if let Some(recorded) = done.as_deref().filter(|recorded| recorded != name) {
                        return Err(sqlx::Error::Protocol(format!(
                            "migration {version} of this database is {recorded:?}, this build's is {name:?}: \
                             the database was migrated by another build"
                        )));
                    }
                    if done.is_none() {
                        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
                        sqlx::query("INSERT INTO wxoa_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                            .bind(version)
                            .bind(name)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        ran += 1;
                    }
                }
                tx.commit().await?;
                Ok(ran)
            }};
        }
        match &self.pool {
            Pool::Sqlite(pool, _) => run!(
                pool,
                "BEGIN IMMEDIATE",
                None::<&'static str>,
                "CREATE TABLE IF NOT EXISTS wxoa_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
                SQLITE_MIGRATIONS
            ),
            Pool::Postgres(pool) => run!(
                pool,
                "BEGIN",
                Some("SELECT pg_advisory_xact_lock($1)"),
                "CREATE TABLE IF NOT EXISTS wxoa_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
                POSTGRES_MIGRATIONS
            ),
        }
    }

    /// Whether the database is ours and takes a write, within `timeout` (for `/readyz`): the
    /// file check, then a one-row update of `wxoa_probe` committed.
    pub async fn probe(&self, timeout: Duration) -> Result<(), ProbeError> {
        self.check_file()?;
        let write = async {
            let mut tx = self.begin().await?;
            let n = crate::with_tx!(&mut tx, conn => sqlx::query("UPDATE wxoa_probe SET at = $1 WHERE id = 1")
                .bind(self.now_ms()).execute(conn).await.map(|r| r.rows_affected()))?;
            tx.commit().await?;
            Ok::<u64, sqlx::Error>(n)
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(1)) => Ok(()),
            Ok(Ok(_)) => Err(ProbeError::NotOurs),
            Ok(Err(e)) => Err(ProbeError::Db(e)),
            Err(_) => Err(ProbeError::Timeout(timeout)),
        }
    }

    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }
}

/// A transaction on either backend, for changes that must commit together (a business change
/// and the outbox job it causes), with the clock of the store it was begun on.
pub struct Tx {
    /// The transaction itself.
    pub conn: TxConn,
    /// The store's clock, so what a transaction stamps reads the app's time.
    clock: Clock,
}

/// The transaction of either backend.
pub enum TxConn {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` with `$conn` bound to the transaction's connection, once per backend.
#[macro_export]
macro_rules! with_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match &mut $tx.conn {
            $crate::store::TxConn::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::store::TxConn::Postgres(tx) => {
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
    /// A SQLite file found lost is refused here, before anything is written to it.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let conn = match &self.pool {
            Pool::Sqlite(pool, file) => {
                file.check().map_err(|e| sqlx::Error::Io(std::io::Error::other(e.to_string())))?;
                TxConn::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?)
            }
            Pool::Postgres(pool) => TxConn::Postgres(pool.begin().await?),
        };
        Ok(Tx { conn, clock: self.clock.clone() })
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.conn {
            TxConn::Sqlite(tx) => tx.commit().await,
            TxConn::Postgres(tx) => tx.commit().await,
        }
    }

    /// Now, as unix milliseconds, on the store's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Whether this is a PostgreSQL transaction (row locks, `FOR UPDATE`).
    pub fn is_postgres(&self) -> bool {
        matches!(self.conn, TxConn::Postgres(_))
    }
}

/// A name for one worker of this process (`<pid>-<random>`), as claims and leases record who
/// holds them: a claim whose holder went quiet can be told from one still working.
pub fn instance_id() -> String {
    let mut id = [0u8; 4];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", std::process::id())
}

/// PostgreSQL advisory-lock keys, one namespace for wxoa (two-key locks use the first as the
/// namespace and a hash as the second).
pub mod locks {
    /// Migrations: two instances starting together do not race.
    pub const MIGRATIONS: i64 = 7110001;
    /// One order's status changes, in arrival order.
    pub const ORDER: i32 = 7110005;
    /// Scheduling pushes, so WeChat's monthly limit is checked against a stable schedule.
    pub const PUSH_SCHEDULE: i64 = 7310001;
    /// Changing the console's replies, so each change is checked against the set it joins.
    pub const REPLIES: i64 = 7310002;
}
