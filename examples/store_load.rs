//! The store traffic of a 1,000-request gate run, replayed on a fresh SQLite
//! file two ways, to measure what batching the writes buys (issue 15):
//!
//! - `per-row`: each cached response and each ledger booking in its own
//!   transaction on a 4-connection pool with `synchronous=FULL`: what
//!   missionctl did before the writer;
//! - `batched`: the same writes through `Store` (one writer, group commit).
//!
//! N responses (about 2 KB each, like a model answer) and N bookings, 8 in
//! flight at a time (the gate's concurrency). Prints each way's wall time and
//! its slowest single write. `benches/store_contention.sh` runs it with the
//! disk idle and busy.
//!
//! Usage: cargo run --release --example store_load -- DIR [N]

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

const CONCURRENCY: usize = 8;

fn response(i: usize) -> String {
    format!(
        "{{\"content\": \"{}\", \"n\": {i}}}",
        "answer text ".repeat(170)
    )
}

async fn per_row(path: &str, n: usize) -> (Duration, Duration) {
    // Migrations and schema as missionctl makes them.
    missionctl::store::Store::connect(&format!("sqlite://{path}"))
        .await
        .expect("migrate");
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
        .expect("opts")
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(30))
        .synchronous(SqliteSynchronous::Full);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .expect("pool");
    drive(n, move |i| {
        let pool = pool.clone();
        async move {
            sqlx::query("INSERT INTO model_cache (key, response, created_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING")
                .bind(format!("k{i}"))
                .bind(response(i))
                .bind(missionctl::time_util::now_rfc3339())
                .execute(&pool)
                .await
                .expect("cache");
            sqlx::query("INSERT INTO spend_ledger (tenant, day, usd, kind, run_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind("acme")
                .bind("2026-11-27")
                .bind(0.0001)
                .bind("eval")
                .bind("bench")
                .bind(missionctl::time_util::now_rfc3339())
                .execute(&pool)
                .await
                .expect("ledger");
        }
    })
    .await
}

async fn batched(path: &str, n: usize) -> (Duration, Duration) {
    let store = missionctl::store::Store::connect(&format!("sqlite://{path}"))
        .await
        .expect("store");
    let s = store.clone();
    let (wall, worst) = drive(n, move |i| {
        let store = s.clone();
        async move {
            store
                .cache_put(&format!("k{i}"), &response(i))
                .await
                .expect("cache");
            store
                .spend_record("acme", "2026-11-27", 0.0001, "eval", "bench")
                .await
                .expect("ledger");
        }
    })
    .await;
    let t = Instant::now();
    store.flush().await;
    (wall + t.elapsed(), worst)
}

/// Run `write(i)` for i in 0..n, `CONCURRENCY` at a time: the wall time and
/// the slowest single call.
async fn drive<F, Fut>(n: usize, write: F) -> (Duration, Duration)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (sem, fut) = (sem.clone(), write(i));
        tasks.spawn(async move {
            let _slot = sem.acquire().await.expect("slot");
            let t = Instant::now();
            fut.await;
            t.elapsed()
        });
    }
    let mut worst = Duration::ZERO;
    while let Some(r) = tasks.join_next().await {
        worst = worst.max(r.expect("task"));
    }
    (started.elapsed(), worst)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).expect("usage: store_load DIR [N]");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let a = format!("{dir}/per-row.db");
    let b = format!("{dir}/batched.db");
    let (wall, worst) = per_row(&a, n).await;
    println!(
        "per-row  {n} responses + {n} bookings: {:>8.0} ms, slowest write {:>6.0} ms",
        wall.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
    let (wall, worst) = batched(&b, n).await;
    println!(
        "batched  {n} responses + {n} bookings: {:>8.0} ms, slowest write {:>6.0} ms",
        wall.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
}
