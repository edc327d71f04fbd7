//! One writer for the model cache and the spend ledger: a bounded channel
//! and a task that commits whatever has queued up in one transaction
//! (group commit), instead of one transaction and one fsync per response.
//! Under a busy disk a gate's ~900 cached responses were ~900 fsyncs that
//! queued behind each other for the pool's four connections; now they are
//! a few dozen commits on one connection, and readers never wait for them.
//!
//! Durability, table by table:
//! - **Spend ledger**: every booking waits for the commit of its batch on the
//!   main connection pool (SQLite `synchronous=FULL`, PostgreSQL's default
//!   `synchronous_commit`), and a failed commit is that booking's error. Many
//!   concurrent bookings share one fsync; none is acknowledged before it is
//!   on disk.
//! - **Model cache**: committed on its own connection with SQLite
//!   `synchronous=NORMAL` (in WAL mode: never corrupt, but a power cut may
//!   lose the last commits) and PostgreSQL `synchronous_commit = off` for the
//!   transaction (the same trade). Safe because the cache only saves money:
//!   a lost entry is one more model request later, never a wrong answer.
//!   Entries not yet committed are answered from memory, so a repeat request
//!   in the same process never misses them. `Store::flush` waits for them
//!   (the gate calls it before it exits).
//!
//! Decisions, rollouts and runs keep their own transactions on the main
//! pool (`synchronous=FULL`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::Db;

/// Queued writes before producers wait (bounded memory under any load).
const QUEUE: usize = 4096;
/// Rows in one transaction at most.
const MAX_BATCH: usize = 1024;
/// A commit slower than this is counted as a slow write.
const SLOW: Duration = Duration::from_secs(1);

/// One spend-ledger row.
pub(crate) struct LedgerRow {
    pub tenant: String,
    pub day: String,
    pub usd: f64,
    pub kind: String,
    pub run_id: String,
    pub created_at: String,
}

enum Item {
    Cache {
        key: String,
        response: String,
    },
    Ledger {
        row: LedgerRow,
        ack: oneshot::Sender<Result<(), String>>,
    },
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Item>,
    /// Cache entries queued or being committed.
    pending: Arc<Mutex<HashMap<String, String>>>,
}

fn lock(m: &Mutex<HashMap<String, String>>) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Writer {
    /// Start the writer task: ledger rows commit on `db`, cache rows on `cache_db`.
    pub fn start(db: Db, cache_db: Db) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let pending: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        tokio::spawn(run(rx, db, cache_db, pending.clone()));
        Writer { tx, pending }
    }

    /// A cache entry not yet committed.
    pub fn pending(&self, key: &str) -> Option<String> {
        lock(&self.pending).get(key).cloned()
    }

    /// Queue a cache entry; `false` when the writer is gone (the caller
    /// writes it itself).
    pub async fn cache(&self, key: &str, response: &str) -> bool {
        // The first answer for a key wins, as `ON CONFLICT DO NOTHING` has it.
        {
            let mut p = lock(&self.pending);
            if p.contains_key(key) {
                return true;
            }
            p.insert(key.to_string(), response.to_string());
        }
        let sent = self
            .tx
            .send(Item::Cache {
                key: key.to_string(),
                response: response.to_string(),
            })
            .await
            .is_ok();
        if !sent {
            lock(&self.pending).remove(key);
        }
        sent
    }

    /// Book a ledger row and wait until it is committed. `None` when the
    /// writer is gone (the caller writes it itself).
    pub async fn ledger(&self, row: LedgerRow) -> Option<Result<(), String>> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Item::Ledger { row, ack }).await.ok()?;
        Some(
            done.await
                .unwrap_or_else(|_| Err("the store's writer stopped before the commit".into())),
        )
    }

    /// Wait until everything queued so far is committed (or has failed).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Item::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Item>,
    db: Db,
    cache_db: Db,
    pending: Arc<Mutex<HashMap<String, String>>>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(i) => batch.push(i),
                Err(_) => break,
            }
        }
        let (mut cache, mut ledger, mut flushes) = (Vec::new(), Vec::new(), Vec::new());
        for item in batch {
            match item {
                Item::Cache { key, response } => cache.push((key, response)),
                Item::Ledger { row, ack } => ledger.push((row, ack)),
                Item::Flush(ack) => flushes.push(ack),
            }
        }
        // The ledger first: spending waits on it.
        if !ledger.is_empty() {
            let started = Instant::now();
            let rows: Vec<&LedgerRow> = ledger.iter().map(|(r, _)| r).collect();
            let result = write_ledger(&db, &rows).await.map_err(|e| e.to_string());
            slow(started, rows.len());
            for (_, ack) in ledger {
                let _ = ack.send(result.clone());
            }
        }
        if !cache.is_empty() {
            let started = Instant::now();
            if let Err(e) = write_cache(&cache_db, &cache).await {
                // The cache only saves money: the answers stand.
                tracing::warn!(
                    error = %e,
                    "could not cache model responses; the answers stand, and a rerun asks the model again"
                );
            }
            slow(started, cache.len());
            let mut p = lock(&pending);
            for (k, _) in &cache {
                p.remove(k);
            }
        }
        for ack in flushes {
            let _ = ack.send(());
        }
    }
}

fn slow(started: Instant, rows: usize) {
    if started.elapsed() > SLOW {
        tracing::debug!(rows, "a batch of writes took more than 1 s to commit");
        tracing::warn!(
            "the state store was slow: writes waited more than 1 s to commit (a busy disk?); the run goes on, see MISSIONCTL_LOG=debug"
        );
    }
}

async fn write_ledger(db: &Db, rows: &[&LedgerRow]) -> Result<(), sqlx::Error> {
    macro_rules! insert {
        ($pool:expr, $db:ty) => {{
            let mut tx = $pool.begin().await?;
            let mut qb: sqlx::QueryBuilder<$db> = sqlx::QueryBuilder::new(
                "INSERT INTO spend_ledger (tenant, day, usd, kind, run_id, created_at) ",
            );
            qb.push_values(rows, |mut b, r| {
                b.push_bind(&r.tenant)
                    .push_bind(&r.day)
                    .push_bind(r.usd)
                    .push_bind(&r.kind)
                    .push_bind(&r.run_id)
                    .push_bind(&r.created_at);
            });
            qb.build().execute(&mut *tx).await?;
            tx.commit().await
        }};
    }
    match db {
        Db::Sqlite(p) => insert!(p, sqlx::Sqlite),
        Db::Postgres(p) => insert!(p, sqlx::Postgres),
    }
}

async fn write_cache(db: &Db, rows: &[(String, String)]) -> Result<(), sqlx::Error> {
    let now = crate::time_util::now_rfc3339();
    macro_rules! insert {
        ($tx:expr, $db:ty) => {{
            // Bounded statements: SQLite allows 32,766 parameters.
            for chunk in rows.chunks(256) {
                let mut qb: sqlx::QueryBuilder<$db> =
                    sqlx::QueryBuilder::new("INSERT INTO model_cache (key, response, created_at) ");
                qb.push_values(chunk, |mut b, (k, v)| {
                    b.push_bind(k).push_bind(v).push_bind(&now);
                });
                qb.push(" ON CONFLICT (key) DO NOTHING");
                qb.build().execute(&mut *$tx).await?;
            }
            $tx.commit().await
        }};
    }
    match db {
        Db::Sqlite(p) => {
            let mut tx = p.begin().await?;
            insert!(tx, sqlx::Sqlite)
        }
        Db::Postgres(p) => {
            let mut tx = p.begin().await?;
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await?;
            insert!(tx, sqlx::Postgres)
        }
    }
}
