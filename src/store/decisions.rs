//! What the reconciler writes: its position per source, decisions, what
//! serves, the history of reconciled content and post-rollback holds.
//! A commit's changes go in one transaction guarded by the position.

use sqlx::AssertSqlSafe;

use super::{CommitApply, Db, SourceState, Store, StoreError};
use crate::model::{Decision, DecisionKind, Serving, Word};

/// One statement text for every decision insert, in and out of a pass.
pub(super) const INSERT_DECISION: &str = "INSERT INTO decisions (decision_id, commit_sha, pack_id, scope_type, scope_id, champion_pack_version, \
     challenger_pack_version, decision, reason, decided_by, created_at, pull_request, evidence_url, rollout, figures, source) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (commit_sha, pack_id) DO NOTHING";

/// The insert for `d`, bound; execute it on a pool or a transaction.
macro_rules! insert_decision {
    ($d:expr, $source:expr) => {{
        let d: &Decision = $d;
        sqlx::query(crate::store::decisions::INSERT_DECISION)
            .bind(&d.decision_id)
            .bind(&d.commit)
            .bind(&d.pack_id)
            .bind(&d.scope_type)
            .bind(&d.scope_id)
            .bind(&d.champion_pack_version)
            .bind(&d.challenger_pack_version)
            .bind(d.decision.as_str())
            .bind(&d.reason)
            .bind(&d.decided_by)
            .bind(&d.created_at)
            .bind(d.pull_request)
            .bind(&d.evidence_url)
            .bind(d.rollout.as_ref().map(super::json_text))
            .bind(d.figures.as_ref().map(super::json_text))
            .bind($source)
    }};
}

pub(super) use insert_decision;

/// Hold `pack` at a rolled-back version (source, pack, version, reason, at).
pub(super) const UPSERT_HOLD: &str = "INSERT INTO holds (source, pack_id, held_version, reason, created_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (source, pack_id) DO UPDATE SET held_version = $3, reason = $4, created_at = $5";

/// A `decisions` row as stored; enums and JSON are parsed at this boundary.
#[derive(sqlx::FromRow)]
struct DecisionRow {
    decision_id: String,
    commit_sha: String,
    pack_id: String,
    scope_type: String,
    scope_id: String,
    champion_pack_version: Option<String>,
    challenger_pack_version: String,
    decision: String,
    reason: String,
    decided_by: String,
    created_at: String,
    pull_request: Option<i64>,
    evidence_url: Option<String>,
    rollout: Option<String>,
    figures: Option<String>,
}

impl TryFrom<DecisionRow> for Decision {
    type Error = StoreError;
    fn try_from(r: DecisionRow) -> Result<Decision, StoreError> {
        Ok(Decision {
            decision: DecisionKind::parse(&r.decision).map_err(super::row_error("decisions"))?,
            rollout: super::json_column("decisions", r.rollout)?,
            figures: super::json_column("decisions", r.figures)?,
            decision_id: r.decision_id,
            commit: r.commit_sha,
            pack_id: r.pack_id,
            scope_type: r.scope_type,
            scope_id: r.scope_id,
            champion_pack_version: r.champion_pack_version,
            challenger_pack_version: r.challenger_pack_version,
            reason: r.reason,
            decided_by: r.decided_by,
            created_at: r.created_at,
            pull_request: r.pull_request,
            evidence_url: r.evidence_url,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ServingRow {
    pack_id: String,
    scope_type: String,
    scope_id: String,
    version: String,
    digest: String,
    commit_sha: String,
}

/// Content reconciled on main: pack `pack_id` had `digest` as `version` at `commit`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HistoryEntry {
    pub pack_id: String,
    pub digest: String,
    pub version: String,
    #[sqlx(rename = "commit_sha")]
    pub commit: String,
}

impl Store {
    pub async fn source_state(&self, source: &str) -> Result<Option<SourceState>, StoreError> {
        Ok(fetch_optional!(
            self,
            "SELECT source, branch, last_commit, halted, good_commit FROM reconcile_state WHERE source = $1",
            source
        )?)
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
        let applied = self.apply_commit_inner(apply).await;
        if matches!(applied, Ok(true)) {
            self.changed();
        }
        applied
    }

    async fn apply_commit_inner(&self, apply: &CommitApply) -> Result<bool, StoreError> {
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
                    // The revert a rollback transition wrote: its decision was
                    // recorded with the transition (with the figures and the
                    // hold); this commit becomes that decision's commit
                    // instead of a second decision.
                    if d.decision == DecisionKind::Rollback
                        && let Some(t) = &apply.transition
                    {
                        let linked = sqlx::query(
                            "UPDATE decisions SET commit_sha = $1 WHERE commit_sha = $2 AND pack_id = $3",
                        )
                        .bind(&d.commit)
                        .bind(crate::model::pending_commit(t))
                        .bind(&d.pack_id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if linked == 1 {
                            continue;
                        }
                    }
                    insert_decision!(d, &apply.source).execute(&mut *tx).await?;
                }
                for r in &apply.rollouts {
                    let written = match r.row_version {
                        // A new rollout (a promotion's canary).
                        -1 => super::rollouts::write_rollout!(r, None)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected(),
                        v => super::rollouts::write_rollout!(r, v)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected(),
                    };
                    // An existing rollout moved since the pass read it (the
                    // controller's transition): nothing is written, and the
                    // pass starts again from the store.
                    if written != 1 && r.row_version >= 0 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                }
                if !apply.rollouts.is_empty() {
                    sqlx::query("UPDATE epochs SET n = n + 1 WHERE name = 'rollouts'")
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
        match &self.db {
            Db::Sqlite(p) => body!(p),
            Db::Postgres(p) => body!(p),
        }
    }

    /// The audit history, oldest first; optionally for one pack.
    pub async fn decisions(&self, pack: Option<&str>) -> Result<Vec<Decision>, StoreError> {
        const COLS: &str = "decision_id, commit_sha, pack_id, scope_type, scope_id, champion_pack_version, challenger_pack_version, \
                            decision, reason, decided_by, created_at, pull_request, evidence_url, rollout, figures";
        let rows: Vec<DecisionRow> = match pack {
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
        rows.into_iter().map(Decision::try_from).collect()
    }

    pub async fn serving(&self, source: &str) -> Result<Vec<Serving>, StoreError> {
        let rows: Vec<ServingRow> = fetch_all!(
            self,
            "SELECT pack_id, scope_type, scope_id, version, digest, commit_sha FROM serving WHERE source = $1 ORDER BY pack_id",
            source
        )?;
        Ok(rows
            .into_iter()
            .map(|r| Serving {
                pack_id: r.pack_id,
                scope_type: r.scope_type,
                scope_id: r.scope_id,
                version: r.version,
                digest: r.digest,
                commit: r.commit_sha,
            })
            .collect())
    }

    /// Held packs of `source`: (pack id, the version that was rolled back).
    pub async fn holds(&self, source: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(fetch_all!(
            self,
            "SELECT pack_id, held_version FROM holds WHERE source = $1",
            source
        )?)
    }

    /// Everything reconciled on main for `source`.
    /// [`Store::history`] of one pack.
    pub async fn history_of(
        &self,
        source: &str,
        pack: &str,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        Ok(fetch_all!(
            self,
            "SELECT pack_id, digest, version, commit_sha FROM pack_history WHERE source = $1 AND pack_id = $2",
            source,
            pack
        )?)
    }

    pub async fn history(&self, source: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        Ok(fetch_all!(
            self,
            "SELECT pack_id, digest, version, commit_sha FROM pack_history WHERE source = $1",
            source
        )?)
    }

    /// When `pack` last had content `digest` on main, if ever.
    pub async fn history_lookup(
        &self,
        source: &str,
        pack: &str,
        digest: &str,
    ) -> Result<Option<HistoryEntry>, StoreError> {
        Ok(fetch_optional!(
            self,
            "SELECT pack_id, digest, version, commit_sha FROM pack_history WHERE source = $1 AND pack_id = $2 AND digest = $3",
            source,
            pack,
            digest
        )?)
    }
}
