//! Run telemetry: batched inserts and per-arm samples for the canary.

use sqlx::Row as _;

use super::{Db, Store, StoreError};
use crate::model::{ArmLabel, RunRow, RunSample};
use crate::run_query::{ArmFilter, RunFilter};

/// What [`Store::insert_runs`] did: how many rows were new, and which rows
/// (by index) the database refused and why.
#[derive(Debug, Default)]
pub struct Inserted {
    pub inserted: u64,
    pub refused: Vec<(usize, String)>,
}

/// The most runs of one arm a controller tick reads (the newest).
pub const SAMPLE_CAP: i64 = 10_000;

impl Store {
    /// Whether `e` is the database refusing a row's data (a value it cannot
    /// store, a constraint), rather than the store being busy or unreachable:
    /// SQLSTATE classes 22 and 23 on PostgreSQL; TOOBIG, CONSTRAINT, MISMATCH
    /// and RANGE on SQLite.
    fn row_level(&self, e: &StoreError) -> bool {
        let StoreError::Query(sqlx::Error::Database(d)) = e else {
            return false;
        };
        let Some(code) = d.code() else { return false };
        match &self.db {
            Db::Postgres(_) => code.starts_with("22") || code.starts_with("23"),
            Db::Sqlite(_) => code
                .parse::<u32>()
                .is_ok_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25)),
        }
    }

    /// Store run records, ignoring run ids the tenant already stored.
    ///
    /// The batch goes in one transaction. When the database refuses a row
    /// (a value it cannot store), the batch is split in halves, each retried
    /// in its own transaction, down to the refused rows: those are reported
    /// and every other row is kept, in about 2·log2(n) extra transactions
    /// per bad row. A store that is unreachable or busy is an error for the
    /// whole batch (nothing is half-reported).
    pub async fn insert_runs(&self, rows: &[RunRow]) -> Result<Inserted, StoreError> {
        let mut out = Inserted::default();
        let mut todo = vec![(0, rows.len())];
        while let Some((from, to)) = todo.pop() {
            if from >= to {
                continue;
            }
            match self.insert_runs_tx(&rows[from..to]).await {
                Ok(n) => out.inserted += n,
                Err(e) if self.row_level(&e) => {
                    if to - from == 1 {
                        let why = match &e {
                            StoreError::Query(sqlx::Error::Database(d)) => d.message().to_string(),
                            other => other.to_string(),
                        };
                        out.refused.push((from, why));
                    } else {
                        let mid = from + (to - from) / 2;
                        todo.push((mid, to));
                        todo.push((from, mid));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        out.refused.sort_by_key(|r| r.0);
        Ok(out)
    }

    /// Rows go in multi-row statements inside one transaction: one round trip per
    /// few hundred rows is what makes NDJSON batches fast.
    async fn insert_runs_tx(&self, rows: &[RunRow]) -> Result<u64, StoreError> {
        const CHUNK: usize = 500;
        let arm = |r: &RunRow| r.arm.as_ref().map(ToString::to_string);
        match &self.db {
            Db::Sqlite(p) => {
                let mut tx = p.begin().await?;
                let mut inserted = 0u64;
                for chunk in rows.chunks(CHUNK) {
                    let mut qb: sqlx::QueryBuilder<sqlx::Sqlite> = sqlx::QueryBuilder::new(
                        "INSERT INTO runs (run_id, tenant_id, user_id, agent_id, pack_id, pack_version, task_type, latency_ms, cost_usd, success_bool, error_code, created_at, arm, attempts) ",
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
                            .push_bind(i64::from(r.success_bool))
                            .push_bind(&r.error_code)
                            .push_bind(&r.created_at)
                            .push_bind(arm(r))
                            .push_bind(r.attempts.map(i64::from));
                    });
                    qb.push(" ON CONFLICT (tenant_id, run_id) DO NOTHING");
                    if !labelled(chunk) {
                        inserted += qb.build().execute(&mut *tx).await?.rows_affected();
                        continue;
                    }
                    // Which runs were new: only those get their other labels.
                    qb.push(" RETURNING tenant_id, run_id");
                    let new: Vec<(String, String)> =
                        qb.build_query_as().fetch_all(&mut *tx).await?;
                    inserted += new.len() as u64;
                    for labels in other_labels(chunk, &new).chunks(CHUNK) {
                        let mut qb: sqlx::QueryBuilder<sqlx::Sqlite> = sqlx::QueryBuilder::new(
                            "INSERT INTO run_arms (tenant_id, run_id, arm, created_at) ",
                        );
                        qb.push_values(labels, |mut b, l| {
                            b.push_bind(&l.0)
                                .push_bind(&l.1)
                                .push_bind(&l.2)
                                .push_bind(&l.3);
                        });
                        qb.push(" ON CONFLICT (tenant_id, run_id, arm) DO NOTHING");
                        qb.build().execute(&mut *tx).await?;
                    }
                }
                tx.commit().await?;
                Ok(inserted)
            }
            // PostgreSQL takes whole columns as arrays: one statement and a
            // handful of parameters per 5,000 rows, far faster than VALUES lists.
            Db::Postgres(p) => {
                let mut tx = p.begin().await?;
                let mut inserted = 0u64;
                for chunk in rows.chunks(5_000) {
                    let col =
                        |f: fn(&RunRow) -> String| chunk.iter().map(f).collect::<Vec<String>>();
                    let labelled = labelled(chunk);
                    // Which runs were new: only those get their other labels.
                    let returning = if labelled {
                        " RETURNING tenant_id, run_id"
                    } else {
                        ""
                    };
                    let q = sqlx::AssertSqlSafe(format!(
                        "INSERT INTO runs (run_id, tenant_id, user_id, agent_id, pack_id, pack_version, task_type, latency_ms, cost_usd, success_bool, error_code, created_at, arm, attempts) \
                         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::float8[], $9::float8[], $10::int8[], $11::text[], $12::text[], $13::text[], $14::int8[]) \
                         ON CONFLICT (tenant_id, run_id) DO NOTHING{returning}"
                    ));
                    let q = sqlx::query(q)
                        .bind(col(|r| r.run_id.clone()))
                        .bind(col(|r| r.tenant_id.clone()))
                        .bind(col(|r| r.user_id.clone()))
                        .bind(col(|r| r.agent_id.clone()))
                        .bind(col(|r| r.pack_id.clone()))
                        .bind(col(|r| r.pack_version.clone()))
                        .bind(col(|r| r.task_type.clone()))
                        .bind(chunk.iter().map(|r| r.latency_ms).collect::<Vec<f64>>())
                        .bind(chunk.iter().map(|r| r.cost_usd).collect::<Vec<f64>>())
                        .bind(
                            chunk
                                .iter()
                                .map(|r| i64::from(r.success_bool))
                                .collect::<Vec<i64>>(),
                        )
                        .bind(
                            chunk
                                .iter()
                                .map(|r| r.error_code.clone())
                                .collect::<Vec<Option<String>>>(),
                        )
                        .bind(col(|r| r.created_at.clone()))
                        .bind(chunk.iter().map(arm).collect::<Vec<Option<String>>>())
                        .bind(
                            chunk
                                .iter()
                                .map(|r| r.attempts.map(i64::from))
                                .collect::<Vec<Option<i64>>>(),
                        );
                    if !labelled {
                        inserted += q.execute(&mut *tx).await?.rows_affected();
                        continue;
                    }
                    let new = q
                        .fetch_all(&mut *tx)
                        .await?
                        .iter()
                        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                        .collect::<Result<Vec<(String, String)>, sqlx::Error>>()?;
                    inserted += new.len() as u64;
                    let labels = other_labels(chunk, &new);
                    let col =
                        |f: fn(&Label) -> String| labels.iter().map(f).collect::<Vec<String>>();
                    sqlx::query(
                        "INSERT INTO run_arms (tenant_id, run_id, arm, created_at) \
                         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) \
                         ON CONFLICT (tenant_id, run_id, arm) DO NOTHING",
                    )
                    .bind(col(|l| l.0.clone()))
                    .bind(col(|l| l.1.clone()))
                    .bind(col(|l| l.2.clone()))
                    .bind(col(|l| l.3.clone()))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(inserted)
            }
        }
    }

    /// Outcomes of the newest [`SAMPLE_CAP`] runs in rollout arm `arm` since
    /// `since` (RFC 3339), oldest first.
    ///
    /// Capped so that what the controller reads per tick is bounded however
    /// much telemetry arrives: under a flood, an uncapped champion arm grew
    /// by tens of thousands of rows a second and each tick read all of them,
    /// delaying a rollback by seconds. The newest 10,000 runs estimate an
    /// arm's failure rate to within about ±0.5 percentage points, far finer
    /// than any `max_success_rate_drop` the controller tests for.
    ///
    /// A run is in the arm when `runs.arm` names it (the most specific
    /// rollout on its chain) or `run_arms` does (another rollout on the
    /// same chain it is evidence for); a run is in one place or the other
    /// for a given rollout, never both. Each side is capped on its own
    /// index before the merge, so the read stays bounded.
    pub async fn run_sample(&self, arm: &ArmLabel, since: &str) -> Result<RunSample, StoreError> {
        type Row = (i64, f64, f64, Option<String>);
        let mut rows: Vec<Row> = fetch_all!(
            self,
            "SELECT success_bool, latency_ms, cost_usd, error_code FROM ( \
               SELECT * FROM (SELECT created_at, run_id, success_bool, latency_ms, cost_usd, error_code FROM runs \
                 WHERE arm = $1 AND created_at >= $2 ORDER BY created_at DESC, run_id DESC LIMIT $3) AS direct \
               UNION ALL \
               SELECT * FROM (SELECT r.created_at, r.run_id, r.success_bool, r.latency_ms, r.cost_usd, r.error_code \
                 FROM run_arms a JOIN runs r ON r.tenant_id = a.tenant_id AND r.run_id = a.run_id \
                 WHERE a.arm = $1 AND a.created_at >= $2 ORDER BY a.created_at DESC, a.run_id DESC LIMIT $3) AS also \
             ) AS labelled ORDER BY created_at DESC, run_id DESC LIMIT $3",
            arm.to_string(),
            since,
            SAMPLE_CAP
        )?;
        rows.reverse();
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

    /// Runs matching `f`, newest first (created_at, then tenant and run id,
    /// descending), from after `f.after`, at most `f.limit` of them (every
    /// one when `None`). Filters are bound parameters, never SQL text.
    pub async fn query_runs(&self, f: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            f64,
            f64,
            i64,
            Option<String>,
            String,
            Option<String>,
            Option<i64>,
        );
        let mut sql = String::from(
            "SELECT run_id, tenant_id, user_id, agent_id, pack_id, pack_version, task_type, latency_ms, cost_usd, success_bool, error_code, created_at, arm, CAST(attempts AS BIGINT) FROM runs WHERE 1=1",
        );
        let mut binds: Vec<String> = Vec::new();
        let mut bind = |sql: &mut String, cond: &str, v: &str| {
            binds.push(v.to_string());
            sql.push_str(&cond.replace('?', &format!("${}", binds.len())));
        };
        if let Some(t) = &f.tenant {
            bind(&mut sql, " AND tenant_id = ?", t);
        }
        if let Some(p) = &f.pack {
            bind(&mut sql, " AND pack_id = ?", p);
        }
        if let Some(v) = &f.version {
            bind(&mut sql, " AND (pack_version = ?", v);
            // `1.2.0` also matches `1.2.0+<digest>`.
            bind(
                &mut sql,
                " OR pack_version LIKE ? ESCAPE '\\')",
                &super::version_like(v),
            );
        }
        match &f.arm {
            None => {}
            Some(ArmFilter::None) => sql.push_str(" AND arm IS NULL"),
            Some(ArmFilter::Any(a)) => bind(&mut sql, " AND arm LIKE ?", &format!("%:{a}")),
            // One rollout's arm: its runs wherever the label is kept (a
            // run it shares with a more specific rollout is in run_arms).
            Some(ArmFilter::Exact(l)) => {
                bind(&mut sql, " AND (arm = ?", l);
                bind(
                    &mut sql,
                    " OR EXISTS (SELECT 1 FROM run_arms a WHERE a.tenant_id = runs.tenant_id AND a.run_id = runs.run_id AND a.arm = ?))",
                    l,
                );
            }
        }
        if let Some(t) = &f.task_type {
            bind(&mut sql, " AND task_type = ?", t);
        }
        match &f.error_code {
            None => {}
            Some(None) => sql.push_str(" AND error_code IS NULL"),
            Some(Some(c)) => bind(&mut sql, " AND error_code = ?", c),
        }
        if let Some(t) = &f.since {
            bind(&mut sql, " AND created_at >= ?", t);
        }
        if let Some(t) = &f.until {
            bind(&mut sql, " AND created_at < ?", t);
        }
        if let Some((at, tenant, run)) = &f.after {
            // A row-value comparison, not the equivalent OR of ANDs: with
            // bound values SQLite plans the OR form as a multi-index OR that
            // collects and sorts every older run's rowid on each page (an
            // export of 300,000 runs took 76 s); this form is one index
            // range (both SQLite and PostgreSQL compare row values in
            // order, column by column).
            bind(&mut sql, " AND (created_at, tenant_id, run_id) < (?", at);
            bind(&mut sql, ", ?", tenant);
            bind(&mut sql, ", ?)", run);
        }
        sql.push_str(" ORDER BY created_at DESC, tenant_id DESC, run_id DESC");
        if let Some(n) = f.limit {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        let rows: Vec<Row> = match &self.db {
            Db::Sqlite(p) => {
                // Only fixed text and `$N` placeholders: every value is bound.
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
                for b in &binds {
                    q = q.bind(b);
                }
                q.fetch_all(p).await?
            }
            Db::Postgres(p) => {
                // Only fixed text and `$N` placeholders: every value is bound.
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
                for b in &binds {
                    q = q.bind(b);
                }
                q.fetch_all(p).await?
            }
        };
        rows.into_iter()
            .map(|r| {
                let arm = match r.12 {
                    None => None,
                    Some(a) => Some(a.parse::<ArmLabel>().map_err(|e| StoreError::Row {
                        table: "runs",
                        message: e.to_string(),
                    })?),
                };
                Ok(RunRow {
                    run_id: r.0,
                    tenant_id: r.1,
                    user_id: r.2,
                    agent_id: r.3,
                    pack_id: r.4,
                    pack_version: r.5,
                    task_type: r.6,
                    latency_ms: r.7,
                    cost_usd: r.8,
                    success_bool: r.9 != 0,
                    error_code: r.10,
                    created_at: r.11,
                    arm,
                    attempts: r.13.and_then(|a| u32::try_from(a).ok()),
                    // Only `runs.arm` is read back (see `RunRow::arm`).
                    other_arms: Vec::new(),
                })
            })
            .collect()
    }

    pub async fn count_runs(&self) -> Result<i64, StoreError> {
        let v: Option<(i64,)> = fetch_optional!(self, "SELECT COUNT(*) FROM runs")?;
        Ok(v.map_or(0, |r| r.0))
    }
}

/// One `run_arms` row: tenant, run id, label, the run's `created_at`.
type Label = (String, String, String, String);

/// Whether any run of `rows` carries labels beyond `runs.arm`.
fn labelled(rows: &[RunRow]) -> bool {
    rows.iter().any(|r| !r.other_arms.is_empty())
}

/// The `run_arms` rows for the runs of `rows` that were just inserted
/// (`new`, as `RETURNING tenant_id, run_id` gave them): a run already
/// stored, sent again, adds none, so nothing counts twice. A run id twice
/// in one batch is stored from its first row, so the labels are that row's.
fn other_labels(rows: &[RunRow], new: &[(String, String)]) -> Vec<Label> {
    let new: std::collections::HashSet<(&str, &str)> =
        new.iter().map(|(t, r)| (t.as_str(), r.as_str())).collect();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for r in rows {
        let key = (r.tenant_id.as_str(), r.run_id.as_str());
        if !new.contains(&key) || !seen.insert(key) {
            continue;
        }
        out.extend(r.other_arms.iter().map(|l| {
            (
                r.tenant_id.clone(),
                r.run_id.clone(),
                l.to_string(),
                r.created_at.clone(),
            )
        }));
    }
    out
}
