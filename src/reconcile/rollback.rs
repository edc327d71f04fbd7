//! The one-click rollback: a commit that restores a pack's directory to the
//! previous champion (or a named version), written through `crate::git` on top of the
//! branch tip and pushed to the branch or to a review branch. Git stays the
//! source of truth: the reconciler sees the commit as a revert and records
//! the `rollback` decision like any other.

use serde::Serialize;

pub use crate::git::Target;
use crate::git::{self, GitError, RestoreDir, Source};
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

/// Write the rollback commit for `pack_id`.
pub fn rollback(
    source: &Source,
    pack_id: &str,
    to: Option<&str>,
    reason: &str,
    target: &Target,
) -> Result<RollbackOutcome, RollbackError> {
    let repo = source.sync()?;
    let tip = source.tip(&repo)?;
    let current = pack::load(&repo.tree(tip, &source.branch)?);
    let p = current
        .pack(pack_id)
        .ok_or_else(|| RollbackError::UnknownPack(pack_id.into()))?;
    let dir = git::parent_dir(&p.file).to_string();
    let cur_version = p.pack.version.clone();
    // Walk back along the branch for the version to restore.
    let mut seen: Vec<String> = Vec::new();
    let mut found = None;
    for (id, v) in git::versions_of_file(&repo, tip, &p.file)? {
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
    let message = format!(
        "Roll back {pack_id} to {to_version}\n\nThis reverts {pack_id} from {cur_version} to {to_version} (the content of commit {from_commit}).\nReason: {reason}\n\nMissionctl-Rollback: {pack_id}\n"
    );
    let (commit, branch) = git::restore_dir(
        &repo,
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
