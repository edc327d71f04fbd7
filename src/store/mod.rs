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
    pub good_commit: Option<String>,
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
    /// The commit's content was accepted (not refused): it becomes what the registry serves.
    pub good: bool,
    /// Packs whose post-rollback hold a newer version lifts.
    pub release_holds: Vec<String>,
}

/// One `run_telemetry` record, as stored (with the arm it ran in, when known).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunRow {
    pub run_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub agent_id: String,
    pub pack_id: String,
    pub pack_version: String,
    pub task_type: String,
    pub latency_ms: f64,
    pub cost_usd: f64,
    pub success_bool: bool,
    pub error_code: Option<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm: Option<String>,
}

/// Outcomes of runs of one pack version, for KPIs.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RunSample {
    pub success: Vec<bool>,
    pub latency_ms: Vec<f64>,
    pub cost_usd: f64,
    pub errors: std::collections::BTreeMap<String, u64>,
}

/// A canary rollout started by a promote decision.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rollout {
    pub rollout_id: String,
    pub decision_id: String,
    pub source: String,
    pub pack_id: String,
    pub from_version: Option<String>,
    pub to_version: String,
    pub from_commit: Option<String>,
    pub to_commit: String,
    pub steps: Vec<u32>,
    pub step: usize,
    /// running, completed, rolled_back, stalled or superseded.
    pub state: String,
    pub detail: Option<serde_json::Value>,
    pub started_at: String,
    pub updated_at: String,
    pub step_started_at: String,
    pub params: serde_json::Value,
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
            // sqlx serialises migrations on PostgreSQL with an advisory lock but
            // takes no lock on SQLite: two processes opening a new file at once
            // (a daemon and a CLI reader) race, and the loser sees the winner's
            // rows. Each migration is a transaction, so retrying is safe: the
            // retry finds them applied and has nothing left to do.
            let mut attempt = 0;
            loop {
                match sqlx::migrate!("migrations/sqlite").run(&pool).await {
                    Ok(()) => break,
                    Err(e) if attempt < 40 => {
                        tracing::debug!(error = %e, attempt, "migration raced another process; retrying");
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(25 + 5 * attempt)).await;
                    }
                    Err(e) => {
                        return Err(StoreError::Migrate {
                            url: shown,
                            source: e,
                        });
                    }
                }
            }
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
        type Row = (
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let v: Option<Row> = fetch_optional!(
            self,
            "SELECT source, branch, last_commit, halted, good_commit FROM reconcile_state WHERE source = $1",
            source
        )?;
        Ok(v.map(
            |(source, branch, last_commit, halted, good_commit)| SourceState {
                source,
                branch,
                last_commit,
                halted,
                good_commit,
            },
        ))
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
                if apply.good {
                    sqlx::query("UPDATE reconcile_state SET good_commit = $1 WHERE source = $2")
                        .bind(&apply.new_last)
                        .bind(&apply.source)
                        .execute(&mut *tx)
                        .await?;
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
                for pack in &apply.release_holds {
                    sqlx::query("DELETE FROM holds WHERE source = $1 AND pack_id = $2")
                        .bind(&apply.source)
                        .bind(pack)
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

    /// Record a decision made outside a reconcile pass (an automatic rollback).
    /// Idempotent per (commit, pack).
    pub async fn insert_decision(&self, source: &str, d: &Decision) -> Result<bool, StoreError> {
        let n = execute!(
            self,
            "INSERT INTO decisions (decision_id, commit_sha, pack_id, scope_type, scope_id, champion_pack_version, \
             challenger_pack_version, decision, reason, decided_by, created_at, pull_request, evidence_url, rollout, figures, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (commit_sha, pack_id) DO NOTHING",
            &d.decision_id,
            &d.commit,
            &d.pack_id,
            &d.scope_type,
            &d.scope_id,
            &d.champion_pack_version,
            &d.challenger_pack_version,
            &d.decision,
            &d.reason,
            &d.decided_by,
            &d.created_at,
            d.pull_request,
            &d.evidence_url,
            d.rollout.as_ref().map(|v| v.to_string()),
            d.figures.as_ref().map(|v| v.to_string()),
            source
        )?;
        Ok(n == 1)
    }

    /// Store run records, ignoring run ids already stored. Returns how many were new.
    /// Rows go in multi-row statements inside one transaction: one round trip per
    /// few hundred rows is what makes NDJSON batches fast.
    pub async fn insert_runs(&self, rows: &[RunRow]) -> Result<u64, StoreError> {
        const CHUNK: usize = 500;
        macro_rules! body {
            ($pool:expr, $db:ty) => {{
                let mut tx = $pool.begin().await?;
                let mut inserted = 0u64;
                for chunk in rows.chunks(CHUNK) {
                    let mut qb: sqlx::QueryBuilder<$db> = sqlx::QueryBuilder::new(
                        "INSERT INTO runs (run_id, tenant_id, user_id, agent_id, pack_id, pack_version, task_type, latency_ms, cost_usd, success_bool, error_code, created_at, arm) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(&r.run_id)
                            .push_bind(&r.tenant_id)
                            .push_bind(&r.user_id)
                            .push_bind(&r.agent_id)
                            .push_bind(&r.pack_id)
                            .push_bind(&r.pack_version)
                            .push_bind(&r.task_type)
                            .push_bind(r.latency_ms)
                            .push_bind(r.cost_usd)
                            .push_bind(r.success_bool as i64)
                            .push_bind(&r.error_code)
                            .push_bind(&r.created_at)
                            .push_bind(&r.arm);
                    });
                    qb.push(" ON CONFLICT (run_id) DO NOTHING");
                    inserted += qb.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(inserted)
            }};
        }
        match self {
            Store::Sqlite(p) => body!(p, sqlx::Sqlite),
            // PostgreSQL takes whole columns as arrays: one statement and a
            // handful of parameters per 5,000 rows, far faster than VALUES lists.
            Store::Postgres(p) => {
                let mut tx = p.begin().await?;
                let mut inserted = 0u64;
                for chunk in rows.chunks(5_000) {
                    let col =
                        |f: fn(&RunRow) -> String| chunk.iter().map(f).collect::<Vec<String>>();
                    inserted += sqlx::query(
                        "INSERT INTO runs (run_id, tenant_id, user_id, agent_id, pack_id, pack_version, task_type, latency_ms, cost_usd, success_bool, error_code, created_at, arm) \
                         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::float8[], $9::float8[], $10::int8[], $11::text[], $12::text[], $13::text[]) \
                         ON CONFLICT (run_id) DO NOTHING",
                    )
                    .bind(col(|r| r.run_id.clone()))
                    .bind(col(|r| r.tenant_id.clone()))
                    .bind(col(|r| r.user_id.clone()))
                    .bind(col(|r| r.agent_id.clone()))
                    .bind(col(|r| r.pack_id.clone()))
                    .bind(col(|r| r.pack_version.clone()))
                    .bind(col(|r| r.task_type.clone()))
                    .bind(chunk.iter().map(|r| r.latency_ms).collect::<Vec<f64>>())
                    .bind(chunk.iter().map(|r| r.cost_usd).collect::<Vec<f64>>())
                    .bind(chunk.iter().map(|r| r.success_bool as i64).collect::<Vec<i64>>())
                    .bind(chunk.iter().map(|r| r.error_code.clone()).collect::<Vec<Option<String>>>())
                    .bind(col(|r| r.created_at.clone()))
                    .bind(chunk.iter().map(|r| r.arm.clone()).collect::<Vec<Option<String>>>())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                tx.commit().await?;
                Ok(inserted)
            }
        }
    }

    /// Outcomes of the runs labelled with rollout arm `arm` (`<rollout>:canary`
    /// or `<rollout>:champion`) since `since` (RFC 3339).
    pub async fn run_sample(&self, arm: &str, since: &str) -> Result<RunSample, StoreError> {
        type Row = (i64, f64, f64, Option<String>);
        let rows: Vec<Row> = fetch_all!(
            self,
            "SELECT success_bool, latency_ms, cost_usd, error_code FROM runs WHERE arm = $1 AND created_at >= $2 ORDER BY created_at, run_id",
            arm,
            since
        )?;
        let mut s = RunSample::default();
        for (ok, lat, cost, code) in rows {
            s.success.push(ok != 0);
            s.latency_ms.push(lat);
            s.cost_usd += cost;
            if ok == 0 {
                *s.errors
                    .entry(code.unwrap_or_else(|| "unknown".into()))
                    .or_default() += 1;
            }
        }
        Ok(s)
    }

    pub async fn count_runs(&self) -> Result<i64, StoreError> {
        let v: Option<(i64,)> = fetch_optional!(self, "SELECT COUNT(*) FROM runs")?;
        Ok(v.map_or(0, |r| r.0))
    }

    pub async fn put_rollout(&self, r: &Rollout) -> Result<(), StoreError> {
        execute!(
            self,
            "INSERT INTO rollouts (rollout_id, decision_id, pack_id, from_version, to_version, steps, step, state, detail, started_at, updated_at, \
             source, from_commit, to_commit, step_started_at, params) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (rollout_id) DO UPDATE SET step = $7, state = $8, detail = $9, updated_at = $11, step_started_at = $15",
            &r.rollout_id,
            &r.decision_id,
            &r.pack_id,
            &r.from_version,
            &r.to_version,
            serde_json::to_string(&r.steps).unwrap_or_default(),
            r.step as i64,
            &r.state,
            r.detail.as_ref().map(|v| v.to_string()),
            &r.started_at,
            &r.updated_at,
            &r.source,
            &r.from_commit,
            &r.to_commit,
            &r.step_started_at,
            r.params.to_string()
        )?;
        Ok(())
    }

    /// Rollouts, newest first; only running ones when `active`.
    pub async fn rollouts(&self, active: bool) -> Result<Vec<Rollout>, StoreError> {
        type Row = (
            String,
            String,
            String,
            Option<String>,
            String,
            String,
            i64,
            String,
            Option<String>,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let sql = if active {
            "SELECT rollout_id, decision_id, pack_id, from_version, to_version, steps, step, state, detail, started_at, updated_at, source, from_commit, to_commit, step_started_at, params FROM rollouts WHERE state IN ('running', 'stalled') ORDER BY started_at DESC, rollout_id"
        } else {
            "SELECT rollout_id, decision_id, pack_id, from_version, to_version, steps, step, state, detail, started_at, updated_at, source, from_commit, to_commit, step_started_at, params FROM rollouts ORDER BY started_at DESC, rollout_id"
        };
        let rows: Vec<Row> = fetch_all!(self, sql)?;
        Ok(rows
            .into_iter()
            .map(|r| Rollout {
                rollout_id: r.0,
                decision_id: r.1,
                pack_id: r.2,
                from_version: r.3,
                to_version: r.4,
                steps: serde_json::from_str(&r.5).unwrap_or_default(),
                step: r.6.max(0) as usize,
                state: r.7,
                detail: r.8.and_then(|d| serde_json::from_str(&d).ok()),
                started_at: r.9,
                updated_at: r.10.clone(),
                source: r.11.unwrap_or_default(),
                from_commit: r.12,
                to_commit: r.13.unwrap_or_default(),
                step_started_at: r.14.unwrap_or(r.10),
                params: r
                    .15
                    .and_then(|p| serde_json::from_str(&p).ok())
                    .unwrap_or_default(),
            })
            .collect())
    }

    pub async fn audit(
        &self,
        token: &str,
        action: &str,
        outcome: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let now = crate::time_util::now_rfc3339();
        execute!(
            self,
            "INSERT INTO audit_log (at, token, action, outcome, detail) VALUES ($1, $2, $3, $4, $5)",
            now,
            token,
            action,
            outcome,
            detail
        )?;
        Ok(())
    }

    /// The most recent audit entries, newest first: (at, token, action, outcome, detail).
    pub async fn audit_log(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, String, String, String, String)>, StoreError> {
        Ok(fetch_all!(
            self,
            "SELECT at, token, action, outcome, detail FROM audit_log ORDER BY id DESC LIMIT $1",
            limit
        )?)
    }

    pub async fn hold(
        &self,
        source: &str,
        pack: &str,
        version: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let now = crate::time_util::now_rfc3339();
        execute!(
            self,
            "INSERT INTO holds (source, pack_id, held_version, reason, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (source, pack_id) DO UPDATE SET held_version = $3, reason = $4, created_at = $5",
            source,
            pack,
            version,
            reason,
            now
        )?;
        Ok(())
    }

    pub async fn holds(&self, source: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(fetch_all!(
            self,
            "SELECT pack_id, held_version FROM holds WHERE source = $1",
            source
        )?)
    }

    pub async fn release_hold(&self, source: &str, pack: &str) -> Result<(), StoreError> {
        execute!(
            self,
            "DELETE FROM holds WHERE source = $1 AND pack_id = $2",
            source,
            pack
        )?;
        Ok(())
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
