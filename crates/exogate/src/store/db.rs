//! Which database: SQLite (a file, the zero-configuration default) or PostgreSQL (several gateways
//! on one database). Both run the same SQL through sqlx's `Any` driver: `$N` placeholders, the
//! `ON CONFLICT` forms both understand, times as RFC 3339 text, JSON as text.

use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    fn migrator(self) -> &'static Migrator {
        match self {
            Self::Sqlite => &SQLITE,
            Self::Postgres => &POSTGRES,
        }
    }
}

/// Opens the database (a SQLite file is created if missing) and brings its schema up to date.
pub(super) async fn open(url: &str) -> anyhow::Result<(AnyPool, Backend)> {
    install_default_drivers();
    let shown = exotel::redact::redact_url(url);
    let Some(backend) = Backend::of(url) else {
        bail!("DATABASE_URL must be sqlite:… or postgres://…, got {shown:?}");
    };
    let pool = match backend {
        Backend::Sqlite => {
            // Validate with the driver's own parser: the Any driver would only say "error".
            let opts: sqlx::sqlite::SqliteConnectOptions =
                url.parse().with_context(|| format!("DATABASE_URL {shown:?} is not a valid sqlite URL"))?;
            private_file(opts.get_filename())?;
            let mut params = Vec::new();
            if !url.contains(":memory:") {
                if !url.contains("mode=") {
                    params.push("mode=rwc");
                }
                // `unix-excl` keeps WAL's index in this process's memory instead of a mapped
                // `-shm` file: when that file can't be written (full or frozen disk) the mapping
                // kills the process with SIGBUS. The price: other processes can't open the file
                // while exogate runs (the API reads the call log).
                if !url.contains("vfs=") && cfg!(unix) {
                    params.push("vfs=unix-excl");
                }
            }
            let mut url = url.to_string();
            for param in params {
                let sep = if url.contains('?') { '&' } else { '?' };
                url = format!("{url}{sep}{param}");
            }
            AnyPoolOptions::new()
                .max_connections(4)
                .after_release(|conn, _| Box::pin(async move { Ok(healthy(conn)) }))
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                        Ok(())
                    })
                })
                .connect(&url)
                .await
        }
        Backend::Postgres => {
            AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .after_release(|conn, _| Box::pin(async move { Ok(healthy(conn)) }))
                .connect(url)
                .await
        }
    }
    .with_context(|| format!("cannot open database {shown}"))?;
    migrate(&pool, backend).await?;
    writable(&pool).await.with_context(|| format!("database {shown} does not take writes"))?;
    Ok((pool, backend))
}

/// The call log holds customers' numbers: the SQLite file is the owner's alone (SQLite gives its
/// `-wal` and `-shm` files the same mode).
fn private_file(path: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if path.as_os_str().is_empty() || path.to_string_lossy().contains(":memory:") {
            return Ok(());
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                // An existing file made by an older exogate (0644): tighten it, if it is ours.
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
            }
            Ok(_) => {}
            Err(_) => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("cannot create the database file {}", path.display()))?;
            }
        }
    }
    let _ = path;
    Ok(())
}

/// A database that opens but can't be written (a read-only file or mount, a read-only replica)
/// would drop every call record: refused at start instead.
async fn writable(pool: &AnyPool) -> anyhow::Result<()> {
    let mut tx = begin(pool).await?;
    sqlx::query("INSERT INTO instances (id, started_at, seen_at) VALUES ('write-probe', '', '')")
        .execute(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(())
}

/// Runs the migrations this binary has; a database already migrated past them belongs to a newer
/// exogate and is refused rather than half-understood.
async fn migrate(pool: &AnyPool, backend: Backend) -> anyhow::Result<()> {
    let migrator = backend.migrator();
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(pool).await.unwrap_or(None);
    if let Some(v) = applied.filter(|v| *v > known) {
        bail!(
            "the database's schema is version {v}, newer than this exogate knows (up to {known}): \
             it was written by a newer exogate; run that version, or point DATABASE_URL elsewhere"
        );
    }
    migrator.run(pool).await.context("database migration failed")?;
    Ok(())
}

/// A connection coming back to the pool still inside a transaction (its COMMIT and ROLLBACK both
/// failed while the database was away) would refuse every later BEGIN: it is closed instead.
fn healthy(conn: &mut sqlx::AnyConnection) -> bool {
    !sqlx::Connection::is_in_transaction(conn)
}

/// [`begin`] on a connection the caller holds (the call-log writer keeps one).
pub(super) async fn begin_on(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    sqlite: bool,
) -> sqlx::Result<sqlx::Transaction<'_, sqlx::Any>> {
    if sqlite {
        sqlx::Connection::begin_with(&mut **conn, "BEGIN IMMEDIATE").await
    } else {
        sqlx::Connection::begin(&mut **conn).await
    }
}

/// Whether the pool is a SQLite file's (else PostgreSQL's).
pub(super) fn is_sqlite(pool: &AnyPool) -> bool {
    pool.connect_options().database_url.scheme() == "sqlite"
}

/// Opens a transaction. SQLite's take the write lock up front (`BEGIN IMMEDIATE`): a deferred
/// transaction that reads and then writes fails with SQLITE_BUSY_SNAPSHOT when another connection
/// wrote in between, which no busy timeout waits out; an immediate one waits its turn instead.
pub(super) async fn begin(pool: &AnyPool) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
    if is_sqlite(pool) { pool.begin_with("BEGIN IMMEDIATE").await } else { pool.begin().await }
}
