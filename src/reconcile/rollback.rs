//! The one-click rollback: a commit that restores a pack's directory to the
//! previous champion (or a named version), except the folders of other
//! packs inside it (a tenant's users), written through `crate::git` on top of the
//! branch tip and pushed to the branch or to a review branch. Git stays the
//! source of truth: the reconciler sees the commit as a revert and records
//! the `rollback` decision like any other.

use serde::Serialize;

pub use crate::git::Target;
use crate::git::{self, GitError, RestoreDir, Source};
use crate::model::{GitOutcome, RevertEffect};
use crate::pack;

#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("pack `{0}` is not on the branch tip")]
    UnknownPack(String),
    #[error("pack `{pack}` has no earlier version on the branch to roll back to")]
    NoEarlier { pack: String },
    #[error("pack `{pack}` was never at version {version} on the branch; versions seen: {seen}")]
    UnknownVersion {
        pack: String,
        version: String,
        seen: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackOutcome {
    pub pack_id: String,
    pub from_version: String,
    pub to_version: String,
    pub restored_from_commit: String,
    pub commit: String,
    pub branch: String,
}

/// The version a rollback of `pack_id` restores, read from the branch tip
/// without writing anything: (the tip, the pack's directory, its version now,
/// the commit holding the version to restore, that version).
struct Found {
    tip: git::CommitId,
    dir: String,
    cur_version: String,
    from_commit: git::CommitId,
    to_version: String,
}

fn find(
    repo: &git::Repo,
    source: &Source,
    tip: git::CommitId,
    pack_id: &str,
    to: Option<&str>,
) -> Result<Found, RollbackError> {
    let current = pack::load(&repo.tree(tip, &source.branch)?);
    let p = current
        .pack(pack_id)
        .ok_or_else(|| RollbackError::UnknownPack(pack_id.into()))?;
    let dir = git::parent_dir(&p.file).to_string();
    let cur_version = p.pack.version.clone();
    // Walk back along the branch for the version to restore.
    let mut seen: Vec<String> = Vec::new();
    let mut found = None;
    for (id, v) in git::versions_of_file(repo, tip, &p.file)? {
        if !seen.contains(&v) {
            seen.push(v.clone());
        }
        let hit = match to {
            Some(want) => v == want,
            None => v != cur_version,
        };
        if hit {
            found = Some((id, v));
            break;
        }
    }
    let (from_commit, to_version) = found.ok_or_else(|| match to {
        Some(v) => RollbackError::UnknownVersion {
            pack: pack_id.into(),
            version: v.into(),
            seen: seen.join(", "),
        },
        None => RollbackError::NoEarlier {
            pack: pack_id.into(),
        },
    })?;
    Ok(Found {
        tip,
        dir,
        cur_version,
        from_commit,
        to_version,
    })
}

/// What a rollback of `pack_id` would do, checked without writing: (the
/// version now, the version restored, the branch tip it was read at).
/// Refuses what [`rollback`] would.
pub fn plan(
    source: &Source,
    pack_id: &str,
    to: Option<&str>,
    target: &Target,
) -> Result<(String, String, String), RollbackError> {
    if target == &Target::Push
        && let Some(why) = source.checked_out()
    {
        return Err(RollbackError::Git(GitError::Refused(why)));
    }
    let repo = source.sync()?;
    let f = find(&repo, source, source.tip(&repo)?, pack_id, to)?;
    Ok((f.cur_version, f.to_version, f.tip.to_string()))
}

/// Write the rollback commit for `pack_id`; `transition` (the rollback
/// transition it completes) goes into a `Missionctl-Transition:` trailer.
pub fn rollback(
    source: &Source,
    pack_id: &str,
    to: Option<&str>,
    reason: &str,
    target: &Target,
) -> Result<RollbackOutcome, RollbackError> {
    let repo = source.sync()?;
    let tip = source.tip(&repo)?;
    write(&repo, source, tip, pack_id, to, reason, target, None)
}

/// Write the rollback commit on `tip` (the ref moves only from `tip`).
#[allow(clippy::too_many_arguments)]
fn write(
    repo: &git::Repo,
    source: &Source,
    tip: git::CommitId,
    pack_id: &str,
    to: Option<&str>,
    reason: &str,
    target: &Target,
    transition: Option<&str>,
) -> Result<RollbackOutcome, RollbackError> {
    let Found {
        tip,
        dir,
        cur_version,
        from_commit,
        to_version,
    } = find(repo, source, tip, pack_id, to)?;
    let trailer = transition.map_or_else(String::new, |t| format!("Missionctl-Transition: {t}\n"));
    let message = format!(
        "Roll back {pack_id} to {to_version}\n\nThis reverts {pack_id} from {cur_version} to {to_version} (the content of commit {from_commit}).\nReason: {reason}\n\nMissionctl-Rollback: {pack_id}\n{trailer}"
    );
    let (commit, branch) = git::restore_dir(
        repo,
        source,
        &RestoreDir {
            dir: &dir,
            from: from_commit,
            tip,
            message: &message,
            target,
        },
    )?;
    Ok(RollbackOutcome {
        pack_id: pack_id.into(),
        from_version: cur_version,
        to_version,
        restored_from_commit: from_commit.to_string(),
        commit: commit.to_string(),
        branch,
    })
}

/// Finish a rollback transition's revert, idempotently: a revert already
/// written for the transition (found by its trailer on the branch, or as
/// its review branch) is reported, not written again; a branch that no
/// longer holds the rolled-back version needs none; otherwise the revert is
/// written on the tip it was checked against (compare-and-swap; a push
/// that is not a fast-forward is refused by the remote). Returns the
/// outcome and the revert commit.
pub fn revert(
    source: &Source,
    e: &RevertEffect,
) -> Result<(GitOutcome, Option<String>), RollbackError> {
    let repo = source.sync()?;
    let tip = source.tip(&repo)?;
    const KEY: &str = "Missionctl-Transition";
    let written = match &e.review_branch {
        Some(name) => source
            .fetched_branch_tip(&repo, name)
            .map(|t| (t, repo.find_trailer(t, KEY, &e.transition_id, 1)))
            .map(|(t, found)| match found {
                Ok(Some(c)) => Ok((c, name.clone())),
                Ok(None) => Err(RollbackError::Git(GitError::Refused(format!(
                    "branch {name} exists (at {t:.8}) but is not this rollback's revert; delete it or rename it"
                )))),
                Err(err) => Err(err.into()),
            })
            .transpose()?,
        None => repo
            .find_trailer(tip, KEY, &e.transition_id, 500)?
            .map(|c| (c, source.branch.clone())),
    };
    if let Some((c, branch)) = written {
        return Ok((
            GitOutcome::Reverted {
                revert_commit: c.to_string(),
                branch,
            },
            Some(c.to_string()),
        ));
    }
    if let Some(bad) = &e.bad_version {
        let now = pack::load(&repo.tree(tip, &source.branch)?)
            .pack(&e.pack_id)
            .map(|p| p.pack.version.clone());
        if now.as_deref() != Some(bad.as_str()) {
            return Ok((
                GitOutcome::NotNeeded {
                    revert_not_needed: format!(
                        "{} no longer holds {} {bad} at {tip:.8} (now {}): nothing to revert",
                        source.branch,
                        e.pack_id,
                        now.as_deref().unwrap_or("removed")
                    ),
                },
                None,
            ));
        }
    }
    crate::fault::point("revert.before_write").map_err(|f| GitError::Refused(f.to_string()))?;
    let target = e.review_branch.clone().map_or(Target::Push, Target::Branch);
    let out = write(
        &repo,
        source,
        tip,
        &e.pack_id,
        e.to_version.as_deref(),
        &e.reason,
        &target,
        Some(&e.transition_id),
    )?;
    crate::fault::point("revert.after_write").map_err(|f| GitError::Refused(f.to_string()))?;
    Ok((
        GitOutcome::Reverted {
            revert_commit: out.commit.clone(),
            branch: out.branch,
        },
        Some(out.commit),
    ))
}
