//! Canary rollouts as the controller leaves them after each transition.

use super::{Store, StoreError};
use crate::model::{Rollout, RolloutState, Word};

const COLS: &str = "rollout_id, decision_id, pack_id, from_version, to_version, steps, step, state, detail, \
                    started_at, updated_at, source, from_commit, to_commit, step_started_at, params";

#[derive(sqlx::FromRow)]
struct RolloutRow {
    rollout_id: String,
    decision_id: String,
    pack_id: String,
    from_version: Option<String>,
    to_version: String,
    steps: String,
    step: i64,
    state: String,
    detail: Option<String>,
    started_at: String,
    updated_at: String,
    source: Option<String>,
    from_commit: Option<String>,
    to_commit: Option<String>,
    step_started_at: Option<String>,
    params: Option<String>,
}

impl TryFrom<RolloutRow> for Rollout {
    type Error = StoreError;
    fn try_from(r: RolloutRow) -> Result<Rollout, StoreError> {
        Ok(Rollout {
            steps: super::json_column("rollouts", Some(r.steps))?.unwrap_or_default(),
            state: RolloutState::parse(&r.state).map_err(super::row_error("rollouts"))?,
            detail: super::json_column("rollouts", r.detail)?,
            params: super::json_column("rollouts", r.params)?.unwrap_or_default(),
            step: usize::try_from(r.step).unwrap_or(0),
            step_started_at: r.step_started_at.unwrap_or_else(|| r.updated_at.clone()),
            rollout_id: r.rollout_id,
            decision_id: r.decision_id,
            pack_id: r.pack_id,
            from_version: r.from_version,
            to_version: r.to_version,
            started_at: r.started_at,
            updated_at: r.updated_at,
            source: r.source.unwrap_or_default(),
            from_commit: r.from_commit,
            to_commit: r.to_commit.unwrap_or_default(),
        })
    }
}

impl Store {
    pub(crate) async fn put_rollout(&self, r: &Rollout) -> Result<(), StoreError> {
        execute!(
            self,
            sqlx::AssertSqlSafe(format!(
                "INSERT INTO rollouts ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
                 ON CONFLICT (rollout_id) DO UPDATE SET step = $7, state = $8, detail = $9, updated_at = $11, step_started_at = $15"
            )),
            &r.rollout_id,
            &r.decision_id,
            &r.pack_id,
            &r.from_version,
            &r.to_version,
            super::json_text(&r.steps),
            i64::try_from(r.step).unwrap_or(i64::MAX),
            r.state.as_str(),
            r.detail.as_ref().map(super::json_text),
            &r.started_at,
            &r.updated_at,
            &r.source,
            &r.from_commit,
            &r.to_commit,
            &r.step_started_at,
            super::json_text(&r.params)
        )?;
        self.bump_rollouts_epoch().await
    }

    /// Rollouts, newest first; only those in progress when `active`.
    pub async fn rollouts(&self, active: bool) -> Result<Vec<Rollout>, StoreError> {
        let filter = if active {
            "WHERE state IN ('running', 'stalled') "
        } else {
            ""
        };
        let rows: Vec<RolloutRow> = fetch_all!(
            self,
            sqlx::AssertSqlSafe(format!(
                "SELECT {COLS} FROM rollouts {filter}ORDER BY started_at DESC, rollout_id"
            ))
        )?;
        rows.into_iter().map(Rollout::try_from).collect()
    }
}
