//! What the console reads beyond the other tables' queries: runs for KPI
//! charts and health, the replicas' heartbeats, and the newest decisions
//! (for live updates).

use sqlx::AssertSqlSafe;

use super::{Store, StoreError};

/// One run, as much of it as KPIs need.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct KpiRun {
    pub pack_id: String,
    pub tenant_id: String,
    pub pack_version: String,
    pub created_at: String,
    pub success_bool: i64,
    pub latency_ms: f64,
    pub cost_usd: f64,
    pub error_code: Option<String>,
}

/// A replica's last heartbeat: when, how often it beats, what it serves.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReplicaBeat {
    pub replica: String,
    pub seen_at: String,
    pub every_s: f64,
    pub commit_sha: Option<String>,
}

impl Store {
    /// Runs since `since` (RFC 3339), of `pack` and `tenant` when given,
    /// newest first, at most `cap` of them.
    pub async fn kpi_runs(
        &self,
        pack: Option<&str>,
        tenant: Option<&str>,
        since: &str,
        cap: i64,
    ) -> Result<Vec<KpiRun>, StoreError> {
        let mut clauses = vec!["created_at >= $1".to_string()];
        let mut binds: Vec<String> = vec![since.to_string()];
        for (col, v) in [("pack_id", pack), ("tenant_id", tenant)] {
            if let Some(v) = v {
                binds.push(v.to_string());
                clauses.push(format!("{col} = ${}", binds.len()));
            }
        }
        let sql = format!(
            "SELECT pack_id, tenant_id, pack_version, created_at, success_bool, latency_ms, cost_usd, error_code \
             FROM runs WHERE {} ORDER BY created_at DESC LIMIT {}",
            clauses.join(" AND "),
            cap.max(1)
        );
        macro_rules! run {
            ($pool:expr) => {{
                let mut q = sqlx::query_as::<_, KpiRun>(AssertSqlSafe(sql.clone()));
                for b in &binds {
                    q = q.bind(b.clone());
                }
                q.fetch_all($pool).await?
            }};
        }
        Ok(match &self.db {
            super::Db::Sqlite(p) => run!(p),
            super::Db::Postgres(p) => run!(p),
        })
    }

    /// Replica `replica` is alive, beats every `every_s` seconds and serves `commit`.
    pub async fn heartbeat(
        &self,
        replica: &str,
        commit: Option<&str>,
        every_s: f64,
    ) -> Result<(), StoreError> {
        execute!(
            self,
            "INSERT INTO replica_heartbeats (replica, seen_at, every_s, commit_sha) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (replica) DO UPDATE SET seen_at = $2, every_s = $3, commit_sha = $4",
            replica,
            crate::time_util::now_rfc3339(),
            every_s,
            commit
        )?;
        Ok(())
    }

    /// A replica that stopped cleanly says so: it is no longer expected.
    pub async fn forget_replica(&self, replica: &str) -> Result<(), StoreError> {
        execute!(
            self,
            "DELETE FROM replica_heartbeats WHERE replica = $1",
            replica
        )?;
        Ok(())
    }

    /// Every replica's last heartbeat, by name.
    pub async fn replicas(&self) -> Result<Vec<ReplicaBeat>, StoreError> {
        Ok(fetch_all!(
            self,
            "SELECT replica, seen_at, every_s, commit_sha FROM replica_heartbeats ORDER BY replica"
        )?)
    }

    /// The newest `n` decisions as (decision id, pack id), newest first.
    /// The sequence number of the newest decision on one of `packs` (every
    /// pack when None): it grows with every decision recorded there and
    /// with nothing recorded elsewhere.
    pub async fn newest_decision(&self, packs: Option<&[&str]>) -> Result<Option<i64>, StoreError> {
        let (sql, binds): (String, &[&str]) = match packs {
            None => ("SELECT MAX(seq) FROM decisions".into(), &[]),
            Some([]) => return Ok(None),
            Some(p) => (
                format!(
                    "SELECT MAX(seq) FROM decisions WHERE pack_id IN ({})",
                    (1..=p.len())
                        .map(|i| format!("${i}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                p,
            ),
        };
        macro_rules! run {
            ($pool:expr) => {{
                let mut q = sqlx::query_as::<_, (Option<i64>,)>(AssertSqlSafe(sql.clone()));
                for b in binds {
                    q = q.bind(*b);
                }
                q.fetch_one($pool).await?.0
            }};
        }
        Ok(match &self.db {
            super::Db::Sqlite(p) => run!(p),
            super::Db::Postgres(p) => run!(p),
        })
    }
}
