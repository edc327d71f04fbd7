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

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::model::{Decision, Serving};

pub use audit::{AuditEntry, RefusedTelemetry};
pub use console::{KpiRun, ReplicaBeat};
pub use decisions::HistoryEntry;
pub use improve::ImproveRow;
pub use replicas::{Fence, Positions};
pub use runs::Inserted;
pub use transitions::{Applied, Transition};

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
    #[error(
        "the state store holds a {table} row this version cannot read ({message}); was it written by a newer missionctl?"
    )]
    Row {
        table: &'static str,
        message: String,
    },
    #[error("the spend ledger could not be written: {message}")]
    Ledger { message: String },
    /// A fault point armed with `error` (tests only; see `crate::fault`).
    #[error(transparent)]
    Fault(#[from] crate::fault::Injected),
    #[error("cannot create directory for {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A URL fit to print: user and password (`postgres://u:p@h/db`, a token in
/// the user position, a password containing `@` or `/`) become `***`, and so
/// do query parameters that carry secrets (`?password=…`, `sslpassword`,
/// `token`, `key`, …). Hand-written rather than through a URL parser because
/// it must also redact what a parser refuses (an unencoded `@` or `/` in a
/// password), and over-redacting is the safe side.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let query_at = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(query_at);
    // Userinfo is everything before the last `@` ahead of the query.
    let authority_and_path = match before_query.rfind('@') {
        Some(i) => format!("***@{}", &before_query[i + 1..]),
        None => before_query.to_string(),
    };
    let query = query
        .split_inclusive(['?', '&', '#'])
        .map(|part| {
            let (kv, sep) = match part.chars().last() {
                Some(c @ ('?' | '&' | '#')) => (&part[..part.len() - 1], c.to_string()),
                _ => (part, String::new()),
            };
            match kv.split_once('=') {
                Some((k, _)) if secret_key(k) => format!("{k}=***{sep}"),
                _ => part.to_string(),
            }
        })
        .collect::<String>();
    format!("{scheme}://{authority_and_path}{query}")
}

fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    [
        "pass",
        "pwd",
        "secret",
        "token",
        "key",
        "auth",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// Where the reconciler is on one source.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
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
    /// Rollouts the commit starts (`row_version` -1) or ends (written only
    /// from the `row_version` read), in the commit's transaction: a crash
    /// can never leave a promotion without its canary.
    pub rollouts: Vec<crate::model::Rollout>,
    /// The rollback transition whose revert this commit is
    /// (`Missionctl-Transition:` trailer), if any.
    pub transition: Option<String>,
}

/// Run the same SQL (written with `$N` placeholders, which both SQLite and
/// PostgreSQL accept) on whichever database backs the store.
macro_rules! execute {
    ($store:expr, $sql:expr $(, $b:expr)* $(,)?) => {
        match &$store.db {
            $crate::store::Db::Sqlite(p) => sqlx::query($sql)$(.bind($b))*.execute(p).await.map(|r| r.rows_affected()),
            $crate::store::Db::Postgres(p) => sqlx::query($sql)$(.bind($b))*.execute(p).await.map(|r| r.rows_affected()),
        }
    };
}
macro_rules! fetch_optional {
    ($store:expr, $sql:expr $(, $b:expr)* $(,)?) => {
        match &$store.db {
            $crate::store::Db::Sqlite(p) => sqlx::query_as($sql)$(.bind($b))*.fetch_optional(p).await,
            $crate::store::Db::Postgres(p) => sqlx::query_as($sql)$(.bind($b))*.fetch_optional(p).await,
        }
    };
}
macro_rules! fetch_all {
    ($store:expr, $sql:expr $(, $b:expr)* $(,)?) => {
        match &$store.db {
            $crate::store::Db::Sqlite(p) => sqlx::query_as($sql)$(.bind($b))*.fetch_all(p).await,
            $crate::store::Db::Postgres(p) => sqlx::query_as($sql)$(.bind($b))*.fetch_all(p).await,
        }
    };
}

/// The `LIKE` pattern (with `ESCAPE '\\'`) matching every content digest of
/// `version`: `1.2.0` matches `1.2.0+sha256.<digest>`, as harnesses report
/// the version `/v1/resolve` returned.
fn version_like(version: &str) -> String {
    format!(
        "{}+%",
        version
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

// The table groups, after the macros they use.
mod audit;
mod cache;
mod console;
mod decisions;
mod improve;
pub mod probe;
mod replicas;
mod rollouts;
mod runs;
mod transitions;
mod writer;

/// The database behind a [`Store`].
#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The state store: the database, and the writer that batches the model
/// cache and the spend ledger (see [`writer`]).
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Db,
    writer: writer::Writer,
    /// Bumped after every committed commit application or transition
    /// (decisions, rollouts): in-process watchers such as the console's
    /// live stream wake at once instead of at their next poll. Another
    /// replica's writes are seen by polling only.
    changes: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.db {
            Db::Sqlite(_) => f.write_str("Store::Sqlite"),
            Db::Postgres(_) => f.write_str("Store::Postgres"),
        }
    }
}

/// A record as JSON text for a column. Serialising these plain records
/// (string keys, finite numbers) cannot fail.
fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// An error for a `table` row this version cannot read.
fn row_error<E: std::fmt::Display>(table: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError::Row {
        table,
        message: e.to_string(),
    }
}

/// A JSON column parsed back, or an error naming the table.
fn json_column<T: serde::de::DeserializeOwned>(
    table: &'static str,
    text: Option<String>,
) -> Result<Option<T>, StoreError> {
    text.map(|s| serde_json::from_str(&s).map_err(row_error(table)))
        .transpose()
}

/// SQLite's "database is locked / busy" (primary code 5 or 6, with extended codes).
fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
        _ => false,
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
    fn new(db: Db, cache_db: Db) -> Store {
        Store {
            writer: writer::Writer::start(db.clone(), cache_db),
            db,
            changes: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// A receiver that sees [`Store::changed`] wake it whenever this
    /// process commits a decision or a rollout transition.
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Tell in-process watchers that decisions or rollouts changed.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wait until every cache entry and ledger row queued so far is committed.
    pub async fn flush(&self) {
        self.writer.flush().await;
    }

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
                .foreign_keys(true)
                // Decisions, rollouts, runs and the spend ledger: every
                // commit is on disk before it is acknowledged.
                .synchronous(SqliteSynchronous::Full)
                // Rows cross from SQLite's worker thread to the task in a
                // bounded channel (50 by default): a 5,000-row export page
                // then costs a thread wake-up every few rows, which was most
                // of an export's time.
                .row_buffer_size(1024);
            // Opening sets WAL mode, which takes a lock the busy timeout does
            // not wait for: a reader opening the file while the daemon writes
            // can get SQLITE_BUSY at once. Such a refusal is retried briefly;
            // any other error is final.
            let mut attempt = 0u64;
            let pool = loop {
                match SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(opts.clone())
                    .await
                {
                    Ok(p) => break p,
                    Err(e) if is_busy(&e) && attempt < 40 => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(25 + 5 * attempt)).await;
                    }
                    Err(e) => {
                        return Err(StoreError::Connect {
                            url: shown,
                            source: e,
                        });
                    }
                }
            };
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
            // The model cache's own connection: `synchronous=NORMAL` (see
            // `writer` for why that is safe for a cache and only for it).
            let cache_pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts.synchronous(SqliteSynchronous::Normal))
                .await
                .map_err(|e| StoreError::Connect {
                    url: shown.clone(),
                    source: e,
                })?;
            Ok(Store::new(Db::Sqlite(pool), Db::Sqlite(cache_pool)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // A replica frozen (SIGSTOP, a long pause) inside a transaction,
            // or between a statement and its Sync, would hold its row locks
            // for as long as it is frozen, and every other replica's write
            // to those rows (the controller lease among them) would wait
            // behind it. The server ends such a transaction after 5 s idle
            // (its locks go with it), and a write waits at most 5 s for a
            // lock before it fails and is retried.
            let opts = sqlx::postgres::PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::Connect {
                    url: shown.clone(),
                    source: e,
                })?
                .options([
                    ("idle_in_transaction_session_timeout", "5s"),
                    ("lock_timeout", "5s"),
                ]);
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(opts)
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
            Ok(Store::new(Db::Postgres(pool.clone()), Db::Postgres(pool)))
        } else {
            Err(StoreError::Url(shown))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:hunter2@h/db"), "postgres://***@h/db");
        // Issue 10, point 6: every form that leaked.
        assert_eq!(redact("postgres://tok3n@h/db"), "postgres://***@h/db");
        assert_eq!(redact("postgres://u:p@ss@h/db"), "postgres://***@h/db");
        assert_eq!(redact("postgres://u:pa/ss@h/db"), "postgres://***@h/db");
        assert_eq!(
            redact("postgres://h/db?user=u&password=hunter2&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(
            redact("postgres://h/db?sslpassword=x#frag"),
            "postgres://h/db?sslpassword=***#frag"
        );
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        for leaked in ["hunter2", "tok3n", "p@ss", "pa/ss"] {
            for u in [
                format!("postgres://u:{leaked}@h/db"),
                format!("postgres://{leaked}@h/db"),
                format!("postgres://h/db?password={leaked}"),
            ] {
                assert!(!redact(&u).contains(leaked), "{u} -> {}", redact(&u));
            }
        }
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
        // Batched: a thousand cache entries are readable at once (from
        // memory until committed) and all in the table after a flush.
        for i in 0..1000 {
            s.cache_put(&format!("b{i}"), "x").await.expect("put");
        }
        assert_eq!(
            s.cache_get("b999").await.expect("get").as_deref(),
            Some("x")
        );
        s.flush().await;
        let n: Option<(i64,)> =
            fetch_optional!(&s, "SELECT COUNT(*) FROM model_cache WHERE key LIKE 'b%'")
                .expect("count");
        assert_eq!(n.map(|r| r.0), Some(1000));
        // A ledger write that fails is the booking's error, never dropped.
        execute!(&s, "ALTER TABLE spend_ledger RENAME TO spend_ledger_gone").expect("rename");
        let e = s
            .spend_record("acme", "2026-11-26", 0.1, "eval", "r3")
            .await
            .expect_err("a failed ledger write is an error");
        assert!(e.to_string().contains("spend ledger"), "{e}");
        execute!(&s, "ALTER TABLE spend_ledger_gone RENAME TO spend_ledger").expect("rename back");
        // Reopening runs migrations idempotently.
        drop(s);
        let s = Store::connect(&url).await.expect("reconnect");
        assert_eq!(s.cache_get("k").await.expect("get").as_deref(), Some("v"));
    }
}
