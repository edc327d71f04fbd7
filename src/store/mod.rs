//! The state store: one interface, two databases.
//!
//! SQLite (a file, WAL) is the embedded default; PostgreSQL lets several
//! replicas share state. Both run the same versioned migrations (one
//! directory per backend, same numbering) and answer the same methods, so
//! the engine never knows which one it talks to. URLs are redacted in every
//! `Debug` and error so a password never reaches a log.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL `{0}`; use sqlite://PATH or postgres://USER@HOST/DB")]
    Url(String),
    #[error("cannot open state store {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot migrate state store {url}: {source}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("state store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("cannot create directory for {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
}

#[derive(Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Sqlite(_) => f.write_str("Store::Sqlite"),
            Store::Postgres(_) => f.write_str("Store::Postgres"),
        }
    }
}

/// The default database when none is configured: a SQLite file in the
/// user's data directory (`$XDG_DATA_HOME/missionctl/state.db`, else
/// `~/.local/share/missionctl/state.db`).
pub fn default_url() -> String {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    format!("sqlite://{}", base.join("missionctl/state.db").display())
}

impl Store {
    /// Open (creating a SQLite file if needed) and migrate.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let shown = redact(url);
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path != ":memory:"
                && let Some(parent) = Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::Dir {
                    path: path.to_string(),
                    source: e,
                })?;
            }
            let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
                .map_err(|e| StoreError::Connect {
                    url: shown.clone(),
                    source: e,
                })?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts)
                .await
                .map_err(|e| StoreError::Connect {
                    url: shown.clone(),
                    source: e,
                })?;
            sqlx::migrate!("migrations/sqlite")
                .run(&pool)
                .await
                .map_err(|e| StoreError::Migrate {
                    url: shown,
                    source: e,
                })?;
            Ok(Store::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await
                .map_err(|e| StoreError::Connect {
                    url: shown.clone(),
                    source: e,
                })?;
            sqlx::migrate!("migrations/postgres")
                .run(&pool)
                .await
                .map_err(|e| StoreError::Migrate {
                    url: shown,
                    source: e,
                })?;
            Ok(Store::Postgres(pool))
        } else {
            Err(StoreError::Url(shown))
        }
    }

    pub async fn cache_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = match self {
            Store::Sqlite(p) => sqlx::query("SELECT response FROM model_cache WHERE key = ?")
                .bind(key)
                .fetch_optional(p)
                .await?
                .map(|r| r.try_get::<String, _>(0)),
            Store::Postgres(p) => sqlx::query("SELECT response FROM model_cache WHERE key = $1")
                .bind(key)
                .fetch_optional(p)
                .await?
                .map(|r| r.try_get::<String, _>(0)),
        };
        Ok(row.transpose()?)
    }

    pub async fn cache_put(&self, key: &str, response: &str) -> Result<(), StoreError> {
        let now = crate::time_util::now_rfc3339();
        match self {
            Store::Sqlite(p) => {
                sqlx::query("INSERT OR IGNORE INTO model_cache (key, response, created_at) VALUES (?, ?, ?)")
                    .bind(key)
                    .bind(response)
                    .bind(now)
                    .execute(p)
                    .await?;
            }
            Store::Postgres(p) => {
                sqlx::query("INSERT INTO model_cache (key, response, created_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING")
                    .bind(key)
                    .bind(response)
                    .bind(now)
                    .execute(p)
                    .await?;
            }
        }
        Ok(())
    }

    /// USD already spent by `tenant` on UTC `day` (YYYY-MM-DD).
    pub async fn spend_on(&self, tenant: &str, day: &str) -> Result<f64, StoreError> {
        let v: Option<f64> = match self {
            Store::Sqlite(p) => {
                sqlx::query("SELECT SUM(usd) FROM spend_ledger WHERE tenant = ? AND day = ?")
                    .bind(tenant)
                    .bind(day)
                    .fetch_one(p)
                    .await?
                    .try_get(0)?
            }
            Store::Postgres(p) => {
                sqlx::query("SELECT SUM(usd) FROM spend_ledger WHERE tenant = $1 AND day = $2")
                    .bind(tenant)
                    .bind(day)
                    .fetch_one(p)
                    .await?
                    .try_get(0)?
            }
        };
        Ok(v.unwrap_or(0.0))
    }

    pub async fn spend_record(
        &self,
        tenant: &str,
        day: &str,
        usd: f64,
        kind: &str,
        run_id: &str,
    ) -> Result<(), StoreError> {
        let now = crate::time_util::now_rfc3339();
        match self {
            Store::Sqlite(p) => {
                sqlx::query("INSERT INTO spend_ledger (tenant, day, usd, kind, run_id, created_at) VALUES (?, ?, ?, ?, ?, ?)")
                    .bind(tenant)
                    .bind(day)
                    .bind(usd)
                    .bind(kind)
                    .bind(run_id)
                    .bind(now)
                    .execute(p)
                    .await?;
            }
            Store::Postgres(p) => {
                sqlx::query("INSERT INTO spend_ledger (tenant, day, usd, kind, run_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(tenant)
                    .bind(day)
                    .bind(usd)
                    .bind(kind)
                    .bind(run_id)
                    .bind(now)
                    .execute(p)
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:hunter2@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[tokio::test]
    async fn sqlite_cache_and_ledger() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("s/state.db").display());
        let s = Store::connect(&url).await.expect("connect");
        assert_eq!(s.cache_get("k").await.expect("get"), None);
        s.cache_put("k", "v").await.expect("put");
        s.cache_put("k", "other")
            .await
            .expect("put again is ignored");
        assert_eq!(s.cache_get("k").await.expect("get").as_deref(), Some("v"));
        s.spend_record("acme", "2026-11-26", 0.25, "eval", "r1")
            .await
            .expect("rec");
        s.spend_record("acme", "2026-11-26", 0.5, "judge", "r1")
            .await
            .expect("rec");
        s.spend_record("globex", "2026-11-26", 9.0, "eval", "r2")
            .await
            .expect("rec");
        assert!((s.spend_on("acme", "2026-11-26").await.expect("sum") - 0.75).abs() < 1e-9);
        assert_eq!(s.spend_on("acme", "2026-11-27").await.expect("sum"), 0.0);
        // Reopening runs migrations idempotently.
        drop(s);
        let s = Store::connect(&url).await.expect("reconnect");
        assert_eq!(s.cache_get("k").await.expect("get").as_deref(), Some("v"));
    }
}
