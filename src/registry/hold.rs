//! Holding and resuming a rollout: declared transitions, like a rollback.
//!
//! A held rollout keeps its current traffic split (the registry serves the
//! canary at the share it had) and the controller neither advances it nor
//! completes it, however good its figures. Safety wins over a hold: a
//! regression the sequential test or a KPI ceiling detects still rolls it
//! back automatically, and a manual rollback still works. Resuming puts it
//! back to `running` at the same step, with the same step window: the runs
//! served while it was held count, so the next tick may advance it at once.
//!
//! Each request is one transaction ([`Store::apply_transition`]): the
//! rollout's new state, written only from the row version it was read at
//! (a controller tick that moved the rollout meanwhile makes the request
//! retry on the new state, and a tick computed before the hold writes
//! nothing after it), the `hold` or `resume` decision and the audit row,
//! all or nothing. Nothing reaches outside the store, so there is nothing
//! to finish after a crash; asking again for what is already so changes
//! nothing and says so (`"changed": false`, audited).

use serde::Serialize;
use time::OffsetDateTime;

use crate::model::{Decision, DecisionKind, Rollout, RolloutDetail, RolloutPlan, RolloutState};
use crate::store::{Applied, Store, StoreError, Transition};

/// Hold a rollout, or resume it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    Hold,
    Resume,
}

impl Pause {
    fn word(self) -> &'static str {
        match self {
            Pause::Hold => "hold",
            Pause::Resume => "resume",
        }
    }
}

/// What a hold or resume request did.
#[derive(Debug, Clone, Serialize)]
pub struct PauseOutcome {
    pub rollout_id: String,
    pub pack_id: String,
    pub state: RolloutState,
    /// False when the rollout was already so (nothing written but the audit row).
    pub changed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    /// The reason is not one line of plain text (see [`crate::model::reason_problem`]): 400.
    #[error("{0}")]
    BadReason(String),
    #[error("no rollout `{0}` (missionctl status --all lists them)")]
    NotFound(String),
    #[error("rollout {rollout} is {state}: only a rollout in progress can be held or resumed")]
    Finished {
        rollout: String,
        state: RolloutState,
    },
    #[error("rollout {0} kept moving while this request was recorded; nothing was changed, retry")]
    Moved(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The rollout `id` as the store has it now.
pub async fn find(store: &Store, id: &str) -> Result<Option<Rollout>, StoreError> {
    Ok(store
        .rollouts(false)
        .await?
        .into_iter()
        .find(|r| r.rollout_id == id))
}

/// Hold or resume rollout `id` for `by`, asked through `via` (the route or
/// command, as the decision and the audit row name it). Retried on a
/// rollout that moved meanwhile, a few times.
pub async fn pause(
    store: &Store,
    what: Pause,
    id: &str,
    reason: &str,
    by: &str,
    via: &str,
) -> Result<PauseOutcome, PauseError> {
    if let Some(why) = crate::model::reason_problem(reason) {
        return Err(PauseError::BadReason(why));
    }
    for _ in 0..5 {
        let r = find(store, id)
            .await?
            .ok_or_else(|| PauseError::NotFound(id.to_string()))?;
        if !r.state.in_progress() {
            return Err(PauseError::Finished {
                rollout: id.to_string(),
                state: r.state,
            });
        }
        let already = match what {
            Pause::Hold => r.state == RolloutState::Held,
            Pause::Resume => r.state != RolloutState::Held,
        };
        if already {
            let detail = serde_json::json!({"rollout_id": id, "pack_id": r.pack_id, "changed": false, "state": r.state});
            store.audit(by, via, "ok", &detail.to_string()).await?;
            return Ok(PauseOutcome {
                rollout_id: r.rollout_id,
                pack_id: r.pack_id,
                state: r.state,
                changed: false,
                decision_id: None,
            });
        }
        let t = transition(store, what, r.clone(), reason, by, via).await?;
        let decision_id = t.decisions.first().map(|(_, d)| d.decision_id.clone());
        match store.apply_transition(&t).await? {
            Applied::Written => {
                return Ok(PauseOutcome {
                    rollout_id: r.rollout_id,
                    pack_id: r.pack_id,
                    state: t.rollout.map_or(r.state, |n| n.state),
                    changed: true,
                    decision_id,
                });
            }
            Applied::Fenced | Applied::Stale => continue,
        }
    }
    Err(PauseError::Moved(id.to_string()))
}

/// The transition holding or resuming `r`, computed on its row version.
async fn transition(
    store: &Store,
    what: Pause,
    mut r: Rollout,
    reason: &str,
    by: &str,
    via: &str,
) -> Result<Transition, StoreError> {
    let now = crate::time_util::canonical(OffsetDateTime::now_utc());
    // The promotion that started the rollout names its scope.
    let (scope_type, scope_id) = store
        .decisions(Some(&r.pack_id))
        .await?
        .into_iter()
        .find(|d| d.decision_id == r.decision_id)
        .map_or_else(
            || ("domain".to_string(), r.pack_id.clone()),
            |d| (d.scope_type, d.scope_id),
        );
    // Derived from the row version: the same request on the same state is
    // the same decision, whichever replica records it.
    let key = format!("{}:{}@{}", what.word(), r.rollout_id, r.row_version);
    let reason = format!("{reason} (requested by {by})");
    let (state, why, kind) = match what {
        Pause::Hold => (
            RolloutState::Held,
            format!(
                "held at {}% by {by}: {reason}; it does not advance until resumed (a regression still rolls it back)",
                r.percent()
            ),
            DecisionKind::Hold,
        ),
        Pause::Resume => (
            RolloutState::Running,
            format!("resumed at {}% by {by}: {reason}", r.percent()),
            DecisionKind::Resume,
        ),
    };
    r.state = state;
    r.detail = Some(RolloutDetail::next(r.detail.as_ref(), why));
    r.updated_at = now.clone();
    let d = Decision {
        decision_id: crate::reconcile::decision_id(&key, &r.pack_id),
        scope_type,
        scope_id,
        champion_pack_version: r.from_version.clone(),
        challenger_pack_version: r.to_version.clone(),
        decision: kind,
        reason: reason.clone(),
        decided_by: if via.starts_with('/') {
            format!("{by} (POST {via})")
        } else {
            format!("{by} ({via})")
        },
        created_at: now,
        pack_id: r.pack_id.clone(),
        // No commit: a hold changes nothing in git. The key stands in its
        // place (decisions are unique per commit and pack).
        commit: key,
        pull_request: None,
        evidence_url: None,
        rollout: Some(RolloutPlan {
            steps: r.steps.clone(),
            rollout_id: Some(r.rollout_id.clone()),
            ..RolloutPlan::default()
        }),
        figures: None,
    };
    let summary = serde_json::json!({
        "rollout_id": r.rollout_id,
        "pack_id": r.pack_id,
        "state": r.state,
        "percent": r.percent(),
        "decision_id": d.decision_id,
    });
    Ok(Transition {
        fence: None,
        decisions: vec![(r.source.clone(), d)],
        rollout: Some(r),
        hold: None,
        effects: Vec::new(),
        audit: Some((
            by.to_string(),
            via.to_string(),
            "ok".into(),
            summary.to_string(),
        )),
    })
}
