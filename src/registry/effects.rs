//! The effect executor: finishes what rollback transitions owe git.
//!
//! A transition records its revert as a pending effect in the same
//! transaction as the new state (see [`crate::store::Transition`]). The
//! executor writes it, and can run again at any time — after a crash, on
//! another replica, twice at once — without writing a second revert: the
//! revert carries its transition's id in a trailer and is looked for first,
//! and the branch only moves from the tip that look saw. A failed write is
//! loud and persistent: an error line naming the cause, the effect's
//! attempts and last error in `status`, `/v1/rollouts` and `/readyz`, and a
//! retry with backoff (0.5 s doubling to 30 s).

use std::sync::Arc;

use super::Registry;
use crate::model::{Effect, EffectState, GitOutcome};
use crate::reconcile::rollback;
use crate::store::StoreError;

/// What running one effect gave.
#[derive(Debug, Clone)]
pub enum Ran {
    Done(GitOutcome),
    /// It failed this time and is retried later.
    Failed(String),
}

/// Run every pending effect of this registry's source that is due.
pub async fn run_due(reg: &Arc<Registry>) -> Result<Vec<String>, StoreError> {
    let now = crate::time_util::now_rfc3339();
    let mut events = Vec::new();
    for e in reg.store.pending_effects(&reg.source.key).await? {
        if e.next_attempt_at > now {
            continue;
        }
        match run(reg, &e).await? {
            Ran::Done(GitOutcome::Reverted {
                revert_commit,
                branch,
            }) => events.push(format!(
                "{}: revert {revert_commit:.8} on {branch} (git agrees)",
                e.pack_id
            )),
            Ran::Done(other) => events.push(format!("{}: {other:?}", e.pack_id)),
            Ran::Failed(_) => {}
        }
    }
    Ok(events)
}

/// Run effect `e` once.
pub async fn run(reg: &Arc<Registry>, e: &Effect) -> Result<Ran, StoreError> {
    let (source, revert) = (reg.source.clone(), e.revert.clone());
    let result = tokio::task::spawn_blocking(move || rollback::revert(&source, &revert))
        .await
        .map_err(|j| j.to_string())
        .and_then(|r| r.map_err(|err| err.to_string()));
    match result {
        Ok((outcome, commit)) => {
            reg.store
                .finish_effect(e, &outcome, commit.as_deref())
                .await?;
            reg.kick_reconciler();
            Ok(Ran::Done(outcome))
        }
        Err(why) => {
            // Another executor (the leader's tick, an API request) may have
            // finished it while this one lost the race to move the branch.
            if let Some(now) = reg.store.effect(&e.effect_id).await?
                && now.state == EffectState::Done
                && let Some(outcome) = now.result
            {
                return Ok(Ran::Done(outcome));
            }
            let wait = crate::reconcile::daemon::retry_after(
                u32::try_from(e.attempts + 1).unwrap_or(u32::MAX),
            );
            let next = crate::time_util::canonical(
                time::OffsetDateTime::now_utc()
                    + time::Duration::try_from(wait).unwrap_or_default(),
            );
            tracing::error!(
                pack = %e.pack_id,
                transition = %e.revert.transition_id,
                attempt = e.attempts + 1,
                retry_in = ?wait,
                error = %why,
                "the rollback's revert could not be written to git: the registry serves the champion, but git does not agree yet; \
                 fix the cause (a checked-out work tree, credentials, a protected branch), it is retried on its own"
            );
            reg.store.effect_failed(e, &why, &next).await?;
            Ok(Ran::Failed(why))
        }
    }
}
