//! What the console reads beyond the other tables' queries: runs for KPI
//! charts and health, the replicas' heartbeats, the newest decisions (for
//! live updates), and the sessions signed out before their expiry.

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

    /// Session `nonce` was signed out: every replica refuses it until
    /// `expires` (unix seconds), when it would have expired anyway. Rows
    /// already past their expiry at `now` are deleted first.
    pub async fn sign_out_session(
        &self,
        nonce: &str,
        expires: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        execute!(
            self,
            "DELETE FROM console_sign_outs WHERE expires <= $1",
            now
        )?;
        execute!(
            self,
            "INSERT INTO console_sign_outs (nonce, expires) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
            nonce,
            expires
        )?;
        Ok(())
    }

    /// When session `nonce`, signed out, would have expired; None when it
    /// was not signed out.
    pub async fn signed_out_until(&self, nonce: &str) -> Result<Option<i64>, StoreError> {
        let row: Option<(i64,)> = fetch_optional!(
            self,
            "SELECT expires FROM console_sign_outs WHERE nonce = $1",
            nonce
        )?;
        Ok(row.map(|(e,)| e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sign_out_is_kept_until_its_expiry_and_pruned_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        let s = Store::connect(&url).await.expect("connect");
        assert_eq!(s.signed_out_until("n1").await.expect("read"), None);
        s.sign_out_session("n1", 1_100, 1_000).await.expect("write");
        s.sign_out_session("n2", 1_300, 1_000).await.expect("write");
        // Twice is once.
        s.sign_out_session("n2", 1_300, 1_001).await.expect("write");
        assert_eq!(s.signed_out_until("n1").await.expect("read"), Some(1_100));
        // The next sign-out after n1's expiry deletes it; n2 stays.
        s.sign_out_session("n3", 1_500, 1_200).await.expect("write");
        assert_eq!(s.signed_out_until("n1").await.expect("read"), None);
        assert_eq!(s.signed_out_until("n2").await.expect("read"), Some(1_300));
        let kept: Option<(i64,)> =
            fetch_optional!(&s, "SELECT COUNT(*) FROM console_sign_outs").expect("count");
        assert_eq!(kept.map(|r| r.0), Some(2));
        // Kept across a reopen (a restart).
        drop(s);
        let s = Store::connect(&url).await.expect("reconnect");
        assert_eq!(s.signed_out_until("n3").await.expect("read"), Some(1_500));
    }
}
