//! The one-click rollback: a commit that restores a pack's directory to the
//! previous champion (or a named version), written with git2 on top of the
//! branch tip and pushed to the branch or to a review branch. Git stays the
//! source of truth: the reconciler sees the commit as a revert and records
//! the `rollback` decision like any other.

use git2::{Oid, Repository};
use serde::Serialize;

use super::{ReconcileError, Source, SourceKind, credentials};
use crate::gitrepo::{self, Tree};
use crate::pack;

#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error(transparent)]
    GitRepo(#[from] gitrepo::GitError),
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
    #[error("{0}")]
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Commit onto the branch itself (and push it for remotes).
    Push,
    /// Commit onto a new branch for review.
    Branch(String),
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

/// Replace the tree at `path` (components) inside `root` with `new`.
fn replace_subtree(
    repo: &Repository,
    root: &git2::Tree<'_>,
    path: &[&str],
    new: Oid,
) -> Result<Oid, git2::Error> {
    let mut builder = repo.treebuilder(Some(root))?;
    match path {
        [] => Ok(new),
        [leaf] => {
            builder.insert(leaf, new, 0o040000)?;
            builder.write()
        }
        [head, rest @ ..] => {
            let child = root
                .get_name(head)
                .and_then(|e| e.to_object(repo).ok())
                .and_then(|o| o.into_tree().ok());
            let child = match child {
                Some(t) => t,
                None => repo.find_tree(repo.treebuilder(None)?.write()?)?,
            };
            let replaced = replace_subtree(repo, &child, rest, new)?;
            builder.insert(head, replaced, 0o040000)?;
            builder.write()
        }
    }
}

fn version_at(repo: &Repository, commit: Oid, file: &str) -> Option<String> {
    let tree = repo.find_commit(commit).ok()?.tree().ok()?;
    let entry = tree.get_path(std::path::Path::new(file)).ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    let node = crate::yaml::parse(std::str::from_utf8(blob.content()).ok()?).ok()?;
    node.get("version")?.as_str().map(String::from)
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
    let branch_ref = format!("refs/heads/{}", source.branch);
    let tip = repo
        .find_reference(&branch_ref)?
        .target()
        .ok_or_else(|| RollbackError::Refused(format!("{branch_ref} is not a direct reference")))?;
    if let SourceKind::Local(_) = source.kind
        && !repo.is_bare()
        && target == &Target::Push
        && repo
            .head()
            .ok()
            .and_then(|h| h.name().ok().map(String::from))
            .as_deref()
            == Some(branch_ref.as_str())
    {
        return Err(RollbackError::Refused(format!(
            "{} is checked out in {}; moving it under the work tree would leave the files behind. Use --branch NAME, or point --repo at the remote",
            source.branch, source.key
        )));
    }
    let current = pack::load(&Tree::at_commit(&repo, tip, &source.branch)?);
    let p = current
        .pack(pack_id)
        .ok_or_else(|| RollbackError::UnknownPack(pack_id.into()))?;
    let dir = gitrepo::parent_dir(&p.file).to_string();
    let cur_version = p.pack.version.clone();

    // Walk back along the branch for the version to restore.
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    walk.simplify_first_parent()?;
    let mut seen: Vec<String> = Vec::new();
    let mut found: Option<(Oid, String)> = None;
    for oid in walk {
        let oid = oid?;
        let Some(v) = version_at(&repo, oid, &p.file) else {
            continue;
        };
        if !seen.contains(&v) {
            seen.push(v.clone());
        }
        let hit = match to {
            Some(want) => v == want,
            None => v != cur_version,
        };
        if hit {
            found = Some((oid, v));
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
    let old_tree = repo.find_commit(from_commit)?.tree()?;
    let old_dir = old_tree.get_path(std::path::Path::new(&dir))?.id();
    let tip_commit = repo.find_commit(tip)?;
    let components: Vec<&str> = dir.split('/').collect();
    let new_tree = repo.find_tree(replace_subtree(
        &repo,
        &tip_commit.tree()?,
        &components,
        old_dir,
    )?)?;
    let sig = repo
        .signature()
        .or_else(|_| git2::Signature::now("missionctl", "missionctl@localhost"))?;
    let message = format!(
        "Roll back {pack_id} to {to_version}\n\nThis reverts {pack_id} from {cur_version} to {to_version} (the content of commit {from_commit}).\nReason: {reason}\n\nMissionctl-Rollback: {pack_id}\n"
    );
    let commit = repo.commit(None, &sig, &sig, &message, &new_tree, &[&tip_commit])?;
    let branch = match target {
        Target::Push => {
            // Compare-and-swap: only move the branch if it is still where we read it.
            repo.reference_matching(&branch_ref, commit, true, tip, "missionctl rollback")?;
            source.branch.clone()
        }
        Target::Branch(name) => {
            repo.reference(
                &format!("refs/heads/{name}"),
                commit,
                false,
                "missionctl rollback",
            )?;
            name.clone()
        }
    };
    if let Some(url) = source.remote_url() {
        let mut remote = repo.remote_anonymous(url)?;
        let mut po = git2::PushOptions::new();
        po.remote_callbacks(credentials());
        let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
        remote.push(&[spec.as_str()], Some(&mut po))?;
    }
    Ok(RollbackOutcome {
        pack_id: pack_id.into(),
        from_version: cur_version,
        to_version,
        restored_from_commit: from_commit.to_string(),
        commit: commit.to_string(),
        branch,
    })
}
