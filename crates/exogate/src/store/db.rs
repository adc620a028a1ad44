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
            let _: sqlx::sqlite::SqliteConnectOptions =
                url.parse().with_context(|| format!("DATABASE_URL {shown:?} is not a valid sqlite URL"))?;
            let url = if url.contains("mode=") || url.contains(":memory:") {
                url.to_string()
            } else {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            };
            AnyPoolOptions::new()
                .max_connections(4)
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
            AnyPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(10)).connect(url).await
        }
    }
    .with_context(|| format!("cannot open database {shown}"))?;
    migrate(&pool, backend).await?;
    Ok((pool, backend))
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

/// Opens a transaction. SQLite's take the write lock up front (`BEGIN IMMEDIATE`): a deferred
/// transaction that reads and then writes fails with SQLITE_BUSY_SNAPSHOT when another connection
/// wrote in between, which no busy timeout waits out; an immediate one waits its turn instead.
pub(super) async fn begin(pool: &AnyPool) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
    if pool.connect_options().database_url.scheme() == "sqlite" {
        pool.begin_with("BEGIN IMMEDIATE").await
    } else {
        pool.begin().await
    }
}
