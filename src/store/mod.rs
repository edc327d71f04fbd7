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

use sqlx::AssertSqlSafe;
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

/// A `promotion_decision` record with the documented extras.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    pub decision_id: String,
    pub scope_type: String,
    pub scope_id: String,
    pub champion_pack_version: Option<String>,
    pub challenger_pack_version: String,
    pub decision: String,
    pub reason: String,
    pub decided_by: String,
    pub created_at: String,
    pub pack_id: String,
    pub commit: String,
    pub pull_request: Option<i64>,
    pub evidence_url: Option<String>,
    pub rollout: Option<serde_json::Value>,
    pub figures: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Serving {
    pub pack_id: String,
    pub scope_type: String,
    pub scope_id: String,
    pub version: String,
    pub digest: String,
    pub commit: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceState {
    pub source: String,
    pub branch: String,
    pub last_commit: Option<String>,
    pub halted: Option<String>,
}

/// Everything one reconciled commit changes, applied in one transaction.
#[derive(Debug, Clone, Default)]
pub struct CommitApply {
    pub source: String,
    pub branch: String,
    pub expected_last: Option<String>,
    pub new_last: String,
    pub decisions: Vec<Decision>,
    pub serving: Vec<Serving>,
    pub removed: Vec<String>,
}

/// Run the same SQL (written with `$N` placeholders, which both SQLite and
/// PostgreSQL accept) on whichever database backs the store.
macro_rules! execute {
    ($store:expr, $sql:expr $(, $b:expr)* $(,)?) => {
        match $store {
            Store::Sqlite(p) => sqlx::query($sql)$(.bind($b))*.execute(p).await.map(|r| r.rows_affected()),
            Store::Postgres(p) => sqlx::query($sql)$(.bind($b))*.execute(p).await.map(|r| r.rows_affected()),
        }
    };
}
macro_rules! fetch_optional {
    ($store:expr, $sql:expr $(, $b:expr)* $(,)?) => {
        match $store {
            Store::Sqlite(p) => sqlx::query_as($sql)$(.bind($b))*.fetch_optional(p).await,
            Store::Postgres(p) => sqlx::query_as($sql)$(.bind($b))*.fetch_optional(p).await,
        }
    };
}
macro_rules! fetch_all {
    ($store:expr, $sql:expr $(, $b:expr)* $(,)?) => {
        match $store {
            Store::Sqlite(p) => sqlx::query_as($sql)$(.bind($b))*.fetch_all(p).await,
            Store::Postgres(p) => sqlx::query_as($sql)$(.bind($b))*.fetch_all(p).await,
        }
    };
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
        let v: Option<(String,)> =
            fetch_optional!(self, "SELECT response FROM model_cache WHERE key = $1", key)?;
        Ok(v.map(|r| r.0))
    }

    pub async fn cache_put(&self, key: &str, response: &str) -> Result<(), StoreError> {
        let now = crate::time_util::now_rfc3339();
        execute!(
            self,
            "INSERT INTO model_cache (key, response, created_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
            key,
            response,
            now
        )?;
        Ok(())
    }

    /// USD already spent by `tenant` on UTC `day` (YYYY-MM-DD).
    pub async fn spend_on(&self, tenant: &str, day: &str) -> Result<f64, StoreError> {
        let v: Option<(Option<f64>,)> = fetch_optional!(
            self,
            "SELECT SUM(usd) FROM spend_ledger WHERE tenant = $1 AND day = $2",
            tenant,
            day
        )?;
        Ok(v.and_then(|r| r.0).unwrap_or(0.0))
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
        execute!(
            self,
            "INSERT INTO spend_ledger (tenant, day, usd, kind, run_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            tenant,
            day,
            usd,
            kind,
            run_id,
            now
        )?;
        Ok(())
    }

    pub async fn source_state(&self, source: &str) -> Result<Option<SourceState>, StoreError> {
        let v: Option<(String, String, Option<String>, Option<String>)> = fetch_optional!(
            self,
            "SELECT source, branch, last_commit, halted FROM reconcile_state WHERE source = $1",
            source
        )?;
        Ok(v.map(|(source, branch, last_commit, halted)| SourceState {
            source,
            branch,
            last_commit,
            halted,
        }))
    }

    /// Stop acting on `source` until an operator acknowledges.
    pub async fn halt(&self, source: &str, branch: &str, reason: &str) -> Result<(), StoreError> {
        let now = crate::time_util::now_rfc3339();
        execute!(
            self,
            "INSERT INTO reconcile_state (source, branch, last_commit, halted, updated_at) VALUES ($1, $2, NULL, $3, $4) \
             ON CONFLICT (source) DO UPDATE SET halted = $3, updated_at = $4",
            source,
            branch,
            reason,
            now
        )?;
        Ok(())
    }

    /// Acknowledge rewritten history: resume from `commit` (the new tip).
    pub async fn acknowledge(
        &self,
        source: &str,
        branch: &str,
        commit: &str,
    ) -> Result<(), StoreError> {
        let now = crate::time_util::now_rfc3339();
        execute!(
            self,
            "INSERT INTO reconcile_state (source, branch, last_commit, halted, updated_at) VALUES ($1, $2, $3, NULL, $4) \
             ON CONFLICT (source) DO UPDATE SET last_commit = $3, halted = NULL, updated_at = $4",
            source,
            branch,
            commit,
            now
        )?;
        Ok(())
    }

    /// Record one reconciled commit atomically: its decisions, the serving
    /// changes and history, and the new position, but only if the position is
    /// still `apply.expected_last` (another replica may have moved it).
    /// Returns false when another writer got there first; nothing is written then.
    pub async fn apply_commit(&self, apply: &CommitApply) -> Result<bool, StoreError> {
        macro_rules! body {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                let now = crate::time_util::now_rfc3339();
                let moved = match &apply.expected_last {
                    Some(prev) => sqlx::query(
                        "UPDATE reconcile_state SET last_commit = $1, updated_at = $2 WHERE source = $3 AND last_commit = $4 AND halted IS NULL",
                    )
                    .bind(&apply.new_last)
                    .bind(&now)
                    .bind(&apply.source)
                    .bind(prev)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                    None => sqlx::query(
                        "INSERT INTO reconcile_state (source, branch, last_commit, halted, updated_at) VALUES ($1, $2, $3, NULL, $4) ON CONFLICT (source) DO NOTHING",
                    )
                    .bind(&apply.source)
                    .bind(&apply.branch)
                    .bind(&apply.new_last)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                };
                if moved != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                for d in &apply.decisions {
                    sqlx::query(
                        "INSERT INTO decisions (decision_id, commit_sha, pack_id, scope_type, scope_id, champion_pack_version, \
                         challenger_pack_version, decision, reason, decided_by, created_at, pull_request, evidence_url, rollout, figures, source) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (commit_sha, pack_id) DO NOTHING",
                    )
                    .bind(&d.decision_id)
                    .bind(&d.commit)
                    .bind(&d.pack_id)
                    .bind(&d.scope_type)
                    .bind(&d.scope_id)
                    .bind(&d.champion_pack_version)
                    .bind(&d.challenger_pack_version)
                    .bind(&d.decision)
                    .bind(&d.reason)
                    .bind(&d.decided_by)
                    .bind(&d.created_at)
                    .bind(d.pull_request)
                    .bind(&d.evidence_url)
                    .bind(d.rollout.as_ref().map(|v| v.to_string()))
                    .bind(d.figures.as_ref().map(|v| v.to_string()))
                    .bind(&apply.source)
                    .execute(&mut *tx)
                    .await?;
                }
                for sv in &apply.serving {
                    sqlx::query(
                        "INSERT INTO serving (source, pack_id, scope_type, scope_id, version, digest, commit_sha, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (source, pack_id) DO UPDATE SET \
                         scope_type = $3, scope_id = $4, version = $5, digest = $6, commit_sha = $7, updated_at = $8",
                    )
                    .bind(&apply.source)
                    .bind(&sv.pack_id)
                    .bind(&sv.scope_type)
                    .bind(&sv.scope_id)
                    .bind(&sv.version)
                    .bind(&sv.digest)
                    .bind(&sv.commit)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO pack_history (source, pack_id, digest, version, commit_sha) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(&apply.source)
                    .bind(&sv.pack_id)
                    .bind(&sv.digest)
                    .bind(&sv.version)
                    .bind(&sv.commit)
                    .execute(&mut *tx)
                    .await?;
                }
                for pack in &apply.removed {
                    sqlx::query("DELETE FROM serving WHERE source = $1 AND pack_id = $2")
                        .bind(&apply.source)
                        .bind(pack)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(true)
            }};
        }
        match self {
            Store::Sqlite(p) => body!(p),
            Store::Postgres(p) => body!(p),
        }
    }

    /// The audit history, oldest first; optionally for one pack.
    pub async fn decisions(&self, pack: Option<&str>) -> Result<Vec<Decision>, StoreError> {
        const COLS: &str = "decision_id, commit_sha, pack_id, scope_type, scope_id, champion_pack_version, challenger_pack_version, \
                            decision, reason, decided_by, created_at, pull_request, evidence_url, rollout, figures";
        type Row = (
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            String,
            String,
            String,
            String,
            String,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = match pack {
            Some(p) => fetch_all!(
                self,
                AssertSqlSafe(format!(
                    "SELECT {COLS} FROM decisions WHERE pack_id = $1 ORDER BY seq"
                )),
                p
            )?,
            None => fetch_all!(
                self,
                AssertSqlSafe(format!("SELECT {COLS} FROM decisions ORDER BY seq"))
            )?,
        };
        Ok(rows
            .into_iter()
            .map(|r| Decision {
                decision_id: r.0,
                commit: r.1,
                pack_id: r.2,
                scope_type: r.3,
                scope_id: r.4,
                champion_pack_version: r.5,
                challenger_pack_version: r.6,
                decision: r.7,
                reason: r.8,
                decided_by: r.9,
                created_at: r.10,
                pull_request: r.11,
                evidence_url: r.12,
                rollout: r.13.and_then(|s| serde_json::from_str(&s).ok()),
                figures: r.14.and_then(|s| serde_json::from_str(&s).ok()),
            })
            .collect())
    }

    pub async fn serving(&self, source: &str) -> Result<Vec<Serving>, StoreError> {
        let rows: Vec<(String, String, String, String, String, String)> = fetch_all!(
            self,
            "SELECT pack_id, scope_type, scope_id, version, digest, commit_sha FROM serving WHERE source = $1 ORDER BY pack_id",
            source
        )?;
        Ok(rows
            .into_iter()
            .map(|r| Serving {
                pack_id: r.0,
                scope_type: r.1,
                scope_id: r.2,
                version: r.3,
                digest: r.4,
                commit: r.5,
            })
            .collect())
    }

    /// Every (pack, digest, version, commit) reconciled on main for `source`.
    pub async fn history(
        &self,
        source: &str,
    ) -> Result<Vec<(String, String, String, String)>, StoreError> {
        Ok(fetch_all!(
            self,
            "SELECT pack_id, digest, version, commit_sha FROM pack_history WHERE source = $1",
            source
        )?)
    }

    /// The version and commit at which `pack` last had content `digest` on main, if ever.
    pub async fn history_lookup(
        &self,
        source: &str,
        pack: &str,
        digest: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        Ok(fetch_optional!(
            self,
            "SELECT version, commit_sha FROM pack_history WHERE source = $1 AND pack_id = $2 AND digest = $3",
            source,
            pack,
            digest
        )?)
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
