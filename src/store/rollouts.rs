//! Canary rollouts as the controller leaves them after each transition.

use super::{Store, StoreError};
use crate::model::{Rollout, RolloutState, Word};

const COLS: &str = "rollout_id, decision_id, pack_id, from_version, to_version, steps, step, state, detail, \
                    started_at, updated_at, source, from_commit, to_commit, step_started_at, params, row_version";

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
    row_version: i64,
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
            row_version: r.row_version,
        })
    }
}

/// Insert a new rollout (a promotion's canary); a second insert of the same
/// rollout changes nothing.
pub(super) const INSERT_ROLLOUT: &str = "INSERT INTO rollouts (rollout_id, decision_id, pack_id, from_version, to_version, steps, step, state, detail, \
     started_at, updated_at, source, from_commit, to_commit, step_started_at, params, row_version) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 0) ON CONFLICT (rollout_id) DO NOTHING";

/// Move a rollout on, only from the row version the change was computed on.
pub(super) const UPDATE_ROLLOUT: &str = "UPDATE rollouts SET step = $2, state = $3, detail = $4, updated_at = $5, step_started_at = $6, \
     row_version = row_version + 1 WHERE rollout_id = $1 AND row_version = $7";

/// Bind a rollout to [`INSERT_ROLLOUT`] or [`UPDATE_ROLLOUT`]; execute it on
/// a pool or a transaction.
macro_rules! write_rollout {
    ($r:expr, None) => {{
        let r: &crate::model::Rollout = $r;
        sqlx::query(crate::store::rollouts::INSERT_ROLLOUT)
            .bind(&r.rollout_id)
            .bind(&r.decision_id)
            .bind(&r.pack_id)
            .bind(&r.from_version)
            .bind(&r.to_version)
            .bind(crate::store::json_text(&r.steps))
            .bind(i64::try_from(r.step).unwrap_or(i64::MAX))
            .bind(r.state.as_str())
            .bind(r.detail.as_ref().map(crate::store::json_text))
            .bind(&r.started_at)
            .bind(&r.updated_at)
            .bind(&r.source)
            .bind(&r.from_commit)
            .bind(&r.to_commit)
            .bind(&r.step_started_at)
            .bind(crate::store::json_text(&r.params))
    }};
    ($r:expr, $expected:expr) => {{
        let r: &crate::model::Rollout = $r;
        sqlx::query(crate::store::rollouts::UPDATE_ROLLOUT)
            .bind(&r.rollout_id)
            .bind(i64::try_from(r.step).unwrap_or(i64::MAX))
            .bind(r.state.as_str())
            .bind(r.detail.as_ref().map(crate::store::json_text))
            .bind(&r.updated_at)
            .bind(&r.step_started_at)
            .bind($expected)
    }};
}
pub(crate) use write_rollout;

impl Store {
    /// Rollouts, newest first; only those in progress when `active`.
    pub async fn rollouts(&self, active: bool) -> Result<Vec<Rollout>, StoreError> {
        let filter = if active {
            "WHERE state IN ('running', 'stalled', 'held') "
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
