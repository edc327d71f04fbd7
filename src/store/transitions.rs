//! Rollout transitions, written intent first and fenced by leadership.
//!
//! A transition (advance, complete, stall, roll back) is one transaction
//! that writes the rollout's new state and everything the transition owes:
//! its decision row, its hold, its audit row and the effects that reach
//! outside the store (a revert commit). It commits only while
//!
//! - the writer's lease epoch is still the lease's (a replica that lost the
//!   lease, however long it was frozen, writes nothing), and
//! - the rollout row is still at the version the transition was computed
//!   on (a newer state is never overwritten with an older one).
//!
//! Effects are then finished by [`crate::registry::effects`], which may run
//! them again after any crash; finishing one is idempotent.

use super::replicas::Fence;
use super::rollouts::write_rollout;
use super::{Db, Store, StoreError};
use crate::model::{
    Decision, Effect, EffectState, GitOutcome, RevertEffect, Rollout, Word, pending_commit,
};

/// Everything one transition writes.
#[derive(Debug, Clone, Default)]
pub struct Transition {
    /// The leadership the transition was computed under; none for a writer
    /// that needs no lease (an API request on any replica, a lone registry).
    pub fence: Option<Fence>,
    /// The rollout's new state, written only from `row_version`.
    pub rollout: Option<Rollout>,
    pub decisions: Vec<(String, Decision)>,
    /// (source, pack, version, reason): the rolled-back version is held.
    pub hold: Option<(String, String, String, String)>,
    pub effects: Vec<Effect>,
    /// (token, action, outcome, detail).
    pub audit: Option<(String, String, String, String)>,
}

/// What became of a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Written, with everything it owes.
    Written,
    /// The writer's lease epoch is no longer current: nothing was written.
    Fenced,
    /// The rollout moved on since the transition was computed: nothing was written.
    Stale,
}

#[derive(sqlx::FromRow)]
struct EffectRow {
    effect_id: String,
    source: String,
    pack_id: String,
    state: String,
    attempts: i64,
    last_error: Option<String>,
    next_attempt_at: String,
    created_at: String,
    done_at: Option<String>,
    payload: String,
    result: Option<String>,
}

impl TryFrom<EffectRow> for Effect {
    type Error = StoreError;
    fn try_from(r: EffectRow) -> Result<Effect, StoreError> {
        let revert: RevertEffect =
            super::json_column("effects", Some(r.payload))?.ok_or_else(|| StoreError::Row {
                table: "effects",
                message: "empty payload".into(),
            })?;
        Ok(Effect {
            state: EffectState::parse(&r.state).map_err(super::row_error("effects"))?,
            result: super::json_column("effects", r.result)?,
            effect_id: r.effect_id,
            source: r.source,
            pack_id: r.pack_id,
            attempts: r.attempts,
            last_error: r.last_error,
            next_attempt_at: r.next_attempt_at,
            created_at: r.created_at,
            done_at: r.done_at,
            revert,
        })
    }
}

/// Write `outcome` into the rollback decision's figures, and its revert
/// commit where the decision still holds the placeholder (the reconciler
/// may have put the commit there first). A macro because the same
/// statements run on either backend's transaction.
macro_rules! set_git_outcome {
    ($tx:expr, $revert:expr, $outcome:expr, $commit:expr) => {{
        let revert: &RevertEffect = $revert;
        let outcome: &GitOutcome = $outcome;
        let figures: Option<(Option<String>,)> =
            sqlx::query_as("SELECT figures FROM decisions WHERE decision_id = $1")
                .bind(&revert.decision_id)
                .fetch_optional(&mut *$tx)
                .await?;
        // Only a decision with figures (an automatic rollback's) records the
        // git outcome there; the effect row keeps it for every rollback.
        if let Some((Some(figures),)) = figures {
            let mut v: serde_json::Value =
                serde_json::from_str(&figures).unwrap_or_else(|_| serde_json::json!({}));
            if let Some(obj) = v.as_object_mut() {
                obj.insert("git".into(), serde_json::to_value(outcome).unwrap_or_default());
            }
            sqlx::query("UPDATE decisions SET figures = $2 WHERE decision_id = $1")
                .bind(&revert.decision_id)
                .bind(v.to_string())
                .execute(&mut *$tx)
                .await?;
        }
        {
            let commit: Option<&str> = $commit;
            if let Some(c) = commit {
                sqlx::query(
                    "UPDATE decisions SET commit_sha = $2 WHERE decision_id = $1 AND commit_sha = $3",
                )
                .bind(&revert.decision_id)
                .bind(c)
                .bind(pending_commit(&revert.transition_id))
                .execute(&mut *$tx)
                .await?;
            }
        }
    }};
}

const EFFECT_COLS: &str = "effect_id, source, pack_id, state, attempts, last_error, next_attempt_at, created_at, done_at, payload, result";

impl Store {
    /// Write `t` atomically, or nothing (see [`Applied`]).
    pub async fn apply_transition(&self, t: &Transition) -> Result<Applied, StoreError> {
        let applied = self.apply_transition_inner(t).await;
        if matches!(applied, Ok(Applied::Written)) {
            self.changed();
        }
        applied
    }

    async fn apply_transition_inner(&self, t: &Transition) -> Result<Applied, StoreError> {
        macro_rules! body {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                if let Some(f) = &t.fence {
                    // The fence: this statement matches only while (holder,
                    // epoch) is the lease's, and it locks the lease row until
                    // the transaction ends (PostgreSQL's row lock; SQLite's
                    // single writer), so a takeover waits for this
                    // transaction or makes it write nothing.
                    let held = sqlx::query(
                        "UPDATE leases SET epoch = epoch WHERE name = $1 AND holder = $2 AND epoch = $3",
                    )
                    .bind(&f.lease)
                    .bind(&f.holder)
                    .bind(f.epoch)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if held != 1 {
                        tx.rollback().await?;
                        return Ok(Applied::Fenced);
                    }
                }
                if let Some(r) = &t.rollout {
                    let moved = write_rollout!(r, r.row_version)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if moved != 1 {
                        tx.rollback().await?;
                        return Ok(Applied::Stale);
                    }
                    sqlx::query("UPDATE epochs SET n = n + 1 WHERE name = 'rollouts'")
                        .execute(&mut *tx)
                        .await?;
                }
                for (source, d) in &t.decisions {
                    super::decisions::insert_decision!(d, source)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some((source, pack, version, reason)) = &t.hold {
                    sqlx::query(super::decisions::UPSERT_HOLD)
                        .bind(source)
                        .bind(pack)
                        .bind(version)
                        .bind(reason)
                        .bind(crate::time_util::now_rfc3339())
                        .execute(&mut *tx)
                        .await?;
                }
                for e in &t.effects {
                    let inserted = sqlx::query(
                        "INSERT INTO effects (effect_id, source, pack_id, kind, payload, state, attempts, last_error, next_attempt_at, created_at) \
                         VALUES ($1, $2, $3, 'git_revert', $4, 'pending', 0, NULL, $5, $6) ON CONFLICT (effect_id) DO NOTHING",
                    )
                    .bind(&e.effect_id)
                    .bind(&e.source)
                    .bind(&e.pack_id)
                    .bind(super::json_text(&e.revert))
                    .bind(&e.next_attempt_at)
                    .bind(&e.created_at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    // The same effect owed twice (two rollbacks of one
                    // branch tip at once): the second transition is stale.
                    if inserted != 1 {
                        tx.rollback().await?;
                        return Ok(Applied::Stale);
                    }
                }
                if let Some((token, action, outcome, detail)) = &t.audit {
                    sqlx::query(
                        "INSERT INTO audit_log (at, token, action, outcome, detail) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(crate::time_util::now_rfc3339())
                    .bind(token)
                    .bind(action)
                    .bind(outcome)
                    .bind(detail)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(Applied::Written)
            }};
        }
        match &self.db {
            Db::Sqlite(p) => body!(p),
            Db::Postgres(p) => body!(p),
        }
    }

    /// Effects of `source` not finished yet, oldest first.
    pub async fn pending_effects(&self, source: &str) -> Result<Vec<Effect>, StoreError> {
        let rows: Vec<EffectRow> = fetch_all!(
            self,
            sqlx::AssertSqlSafe(format!(
                "SELECT {EFFECT_COLS} FROM effects WHERE source = $1 AND state = 'pending' ORDER BY created_at, effect_id"
            )),
            source
        )?;
        rows.into_iter().map(Effect::try_from).collect()
    }

    /// Effect `id` as the store has it now.
    pub async fn effect(&self, id: &str) -> Result<Option<Effect>, StoreError> {
        let row: Option<EffectRow> = fetch_optional!(
            self,
            sqlx::AssertSqlSafe(format!(
                "SELECT {EFFECT_COLS} FROM effects WHERE effect_id = $1"
            )),
            id
        )?;
        row.map(Effect::try_from).transpose()
    }

    /// Every effect of `source`, newest first (for status).
    pub async fn effects(&self, source: Option<&str>) -> Result<Vec<Effect>, StoreError> {
        let rows: Vec<EffectRow> = match source {
            Some(s) => fetch_all!(
                self,
                sqlx::AssertSqlSafe(format!(
                    "SELECT {EFFECT_COLS} FROM effects WHERE source = $1 ORDER BY created_at DESC, effect_id"
                )),
                s
            )?,
            None => fetch_all!(
                self,
                sqlx::AssertSqlSafe(format!(
                    "SELECT {EFFECT_COLS} FROM effects ORDER BY created_at DESC, effect_id"
                ))
            )?,
        };
        rows.into_iter().map(Effect::try_from).collect()
    }

    /// The effect is done with `outcome`: record it, and give its decision
    /// the revert commit (in place of the placeholder, unless the reconciler
    /// already did) and the outcome. Idempotent.
    pub async fn finish_effect(
        &self,
        e: &Effect,
        outcome: &GitOutcome,
        commit: Option<&str>,
    ) -> Result<(), StoreError> {
        macro_rules! body {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                sqlx::query(
                    "UPDATE effects SET state = 'done', done_at = $2, result = $3, last_error = NULL WHERE effect_id = $1",
                )
                .bind(&e.effect_id)
                .bind(crate::time_util::now_rfc3339())
                .bind(super::json_text(outcome))
                .execute(&mut *tx)
                .await?;
                set_git_outcome!(tx, &e.revert, outcome, commit);
                tx.commit().await?;
                Ok(())
            }};
        }
        match &self.db {
            Db::Sqlite(p) => body!(p),
            Db::Postgres(p) => body!(p),
        }
    }

    /// The effect failed this time: count it, say why, and when to try again.
    pub async fn effect_failed(
        &self,
        e: &Effect,
        error: &str,
        next_attempt_at: &str,
    ) -> Result<(), StoreError> {
        let outcome = GitOutcome::Failed {
            revert_error: error.to_string(),
        };
        macro_rules! body {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                let pending = sqlx::query(
                    "UPDATE effects SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3 WHERE effect_id = $1 AND state = 'pending'",
                )
                .bind(&e.effect_id)
                .bind(error)
                .bind(next_attempt_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                // Finished meanwhile by another executor: nothing failed.
                if pending == 1 {
                    set_git_outcome!(tx, &e.revert, &outcome, None::<&str>);
                }
                tx.commit().await?;
                Ok(())
            }};
        }
        match &self.db {
            Db::Sqlite(p) => body!(p),
            Db::Postgres(p) => body!(p),
        }
    }
}
