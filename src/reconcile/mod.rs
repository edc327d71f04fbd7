//! The reconciler: commits on the main branch in, promotion decisions out.
//!
//! Every pass walks the first-parent commits since the last reconciled one,
//! oldest first, so each merged pull request gets its own decision even when
//! several land at once. For each commit:
//!
//! - a pack whose content changed becomes a `promote` decision (challenger
//!   against the champion it replaces) with the rollout plan from its
//!   promotion thresholds;
//! - a pack returning to content reconciled earlier (a git revert,
//!   missionctl's rollback commit) becomes a `rollback`, applied at once to
//!   100%; the message alone never makes one;
//! - content that fails validation is refused (`reject`): the last good
//!   version keeps serving and the errors are recorded;
//! - history rewritten under the reconciler (a force-push dropping reconciled
//!   commits) halts it until an operator acknowledges.
//!
//! Each commit's decisions, serving changes and the new position are written
//! in one transaction that only succeeds if the position is unchanged, so a
//! crash, a restart or a second replica never loses or duplicates a decision.
//! The trigger (CLI, poll, file watch, webhook) is invisible here: a pass is
//! always "catch up to the tip", which makes every trigger safe to repeat.

pub mod daemon;
mod plan;
pub mod rollback;
mod rollouts;
pub mod webhook;

use std::collections::HashMap;

pub(crate) use plan::plan_commit;
pub use plan::{History, ServingMap, decision_id, pack_version};

use crate::git::{self, CommitId, GitError};
pub use crate::git::{Source, SourceKind};
use crate::model::{Decision, DecisionKind};
use crate::pack;
use crate::store::{CommitApply, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the reconcile task failed: {0}")]
    Task(String),
}

/// What one pass did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    pub tip: String,
    pub commits: usize,
    pub decisions: Vec<Decision>,
    pub halted: Option<String>,
    /// Another replica reconciled first; this pass stopped without writing.
    pub lost_race: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Write each decision as a git note under `refs/notes/missionctl` (and push it for remotes).
    pub notes: bool,
    /// Accept rewritten history and resume from the current tip.
    pub acknowledge: bool,
}

fn write_notes(repo: &git::Repo, source: &Source, apply: &CommitApply) -> Result<(), GitError> {
    if apply.decisions.is_empty() {
        return Ok(());
    }
    let body: String = apply
        .decisions
        .iter()
        .filter_map(|d| serde_json::to_string(d).ok())
        .collect::<Vec<_>>()
        .join("\n");
    git::write_note(repo, source, apply.new_last.parse()?, &body)
}

/// The commits to reconcile after `last` up to `tip`, or the reason history
/// was rewritten under the reconciler.
fn pending(
    repo: &git::Repo,
    source: &Source,
    last: Option<&str>,
    tip: CommitId,
) -> Result<Result<Vec<CommitId>, String>, ReconcileError> {
    let Some(l) = last else {
        return Ok(Ok(vec![tip]));
    };
    if *l == tip.to_string() {
        return Ok(Ok(vec![]));
    }
    let last_id: Option<CommitId> = l.parse().ok();
    let known = last_id.filter(|id| repo.has_commit(*id));
    match known {
        Some(id) if repo.descends_from(tip, id)? => Ok(Ok(repo.first_parent_since(tip, Some(id))?)),
        _ => Ok(Err(format!(
            "history rewritten: the last reconciled commit {l:.8} is no longer on {} (now at {tip:.8}); \
             check the branch, then run `missionctl reconcile --acknowledge-rewrite` to resume from the new tip",
            source.branch
        ))),
    }
}

/// One pass: catch up from the last reconciled commit to the branch tip.
/// Blocking (libgit2); call from a blocking context.
pub(crate) fn reconcile_blocking(
    source: &Source,
    store: &Store,
    opts: &Options,
    rt: &tokio::runtime::Handle,
) -> Result<Outcome, ReconcileError> {
    let repo = source.sync()?;
    let tip = source.tip(&repo)?;
    let mut out = Outcome {
        tip: tip.to_string(),
        ..Outcome::default()
    };
    let state = rt.block_on(store.source_state(&source.key))?;
    if opts.acknowledge {
        rt.block_on(store.acknowledge(&source.key, &source.branch, &tip.to_string()))?;
        return Ok(out);
    }
    if let Some(h) = state.as_ref().and_then(|s| s.halted.clone()) {
        out.halted = Some(h);
        return Ok(out);
    }
    let last = state.as_ref().and_then(|s| s.last_commit.clone());
    let commits = match pending(&repo, source, last.as_deref(), tip)? {
        Ok(c) => c,
        Err(reason) => {
            rt.block_on(store.halt(&source.key, &source.branch, &reason))?;
            out.halted = Some(reason);
            return Ok(out);
        }
    };
    // Everything reconciled before, to recognise returns to earlier content.
    let mut history: History = rt
        .block_on(store.history(&source.key))?
        .into_iter()
        .map(|h| ((h.pack_id, h.digest), (h.version, h.commit)))
        .collect();
    let mut serving: ServingMap = rt
        .block_on(store.serving(&source.key))?
        .into_iter()
        .map(|s| (s.pack_id.clone(), s))
        .collect();
    let holds: HashMap<String, String> =
        rt.block_on(store.holds(&source.key))?.into_iter().collect();
    let mut initial = last.is_none();
    let mut expected = last;
    for id in commits {
        let info = repo.commit_info(id)?;
        let cur = pack::load(&repo.tree(id, &info.sha)?);
        let mut apply = plan_commit(source, &serving, &holds, initial, &cur, &info, &history);
        apply.expected_last.clone_from(&expected);
        if apply
            .decisions
            .iter()
            .any(|d| d.decision != DecisionKind::Reject)
        {
            let existing = rt.block_on(store.rollouts(false))?;
            apply.rollouts = rollouts::changes(
                &source.key,
                &apply.decisions,
                &existing,
                &crate::time_util::now_rfc3339(),
            );
            rollouts::name_quarantined(&mut apply.decisions, &apply.rollouts, &existing);
        }
        if !rt.block_on(store.apply_commit(&apply))? {
            out.lost_race = true;
            return Ok(out);
        }
        if opts.notes
            && let Err(e) = write_notes(&repo, source, &apply)
        {
            tracing::warn!(error = %e, commit = %info.sha, "could not write the decision note");
        }
        for s in &apply.serving {
            history.insert(
                (s.pack_id.clone(), s.digest.clone()),
                (s.version.clone(), s.commit.clone()),
            );
            serving.insert(s.pack_id.clone(), s.clone());
        }
        for r in &apply.removed {
            serving.remove(r);
        }
        initial = false;
        out.commits += 1;
        out.decisions.extend(apply.decisions);
        expected = Some(info.sha.clone());
    }
    Ok(out)
}

/// Async wrapper: runs the pass on the blocking pool.
pub async fn reconcile(
    source: &Source,
    store: &Store,
    opts: &Options,
) -> Result<Outcome, ReconcileError> {
    let (source, store, opts) = (source.clone(), store.clone(), opts.clone());
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || reconcile_blocking(&source, &store, &opts, &rt))
        .await
        .map_err(|e| ReconcileError::Task(e.to_string()))?
}
