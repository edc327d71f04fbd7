//! The only user of libgit2. Everything above sees a [`Tree`] to read packs
//! from, a [`Repo`] handle with the few history operations the loop needs
//! (branch tips, first-parent walks, commit metadata), a [`Source`] that
//! fetches with credentials, and the writes missionctl makes to git (decision
//! notes, rollback commits, the template's first commit, pushes). Keeping
//! libgit2 here means one place decides how credentials are sent and how a
//! ref is moved (always compare-and-swap).

mod log;
mod source;
mod tree;
mod write;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use log::PackFileVersion;
pub(crate) use log::{first_parent_pack_versions, versions_of_file};
pub use source::{
    Source, SourceKind, fetch_pull_head, fetch_queue_head, fetch_remote_branch, remote_branch_at,
    remote_branches,
};
pub use tree::{EntryKind, ReadError, RefProblem, Tree};
pub(crate) use tree::{parent_dir, resolve_ref};
pub use write::{
    RestoreDir, Target, branch_tip, commit_changes, commit_files, push_branch, remote_url,
    same_proposal, set_branch,
};
pub(crate) use write::{init_with_commit, restore_dir, write_note};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot open git repository at {path}: {message}")]
    Open { path: String, message: String },
    #[error(
        "cannot resolve revision `{rev}`: {message}; check the name with `git rev-parse {rev}`"
    )]
    Rev { rev: String, message: String },
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("branch `{branch}` does not exist in {repo}")]
    NoBranch { repo: String, branch: String },
    #[error("cannot prepare a mirror of {url} in {dir}: {message}")]
    Mirror {
        url: String,
        dir: String,
        message: String,
    },
    #[error("`{0}` is not a commit id (40 hexadecimal digits)")]
    BadId(String),
    #[error("{0}")]
    Refused(String),
    #[error(
        "the remote refused the update ({0}): someone pushed first; it is retried from the new tip"
    )]
    Rejected(String),
}

/// A commit's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitId(pub(crate) git2::Oid);

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for CommitId {
    type Err = GitError;
    fn from_str(s: &str) -> Result<Self, GitError> {
        if s.len() != 40 {
            return Err(GitError::BadId(s.to_string()));
        }
        git2::Oid::from_str(s)
            .map(CommitId)
            .map_err(|_| GitError::BadId(s.to_string()))
    }
}

/// Who made a commit and when, with its message.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitInfo {
    /// The commit id, as text.
    pub sha: String,
    pub message: String,
    /// `Name <email>` of the committer (the one who merged).
    pub committer: String,
    /// `Name <email>` of the author.
    pub author: String,
    /// Commit time, RFC 3339 in UTC.
    pub time: String,
}

/// An open repository.
pub struct Repo {
    pub(crate) inner: git2::Repository,
}

/// Open the repository at `root` (a work tree or a bare repository).
pub fn open(root: &Path) -> Result<Repo, GitError> {
    git2::Repository::open(root)
        .map(|inner| Repo { inner })
        .map_err(|e| GitError::Open {
            path: root.display().to_string(),
            message: e.message().to_string(),
        })
}

pub(crate) fn resolve_commit<'r>(
    repo: &'r git2::Repository,
    rev: &str,
) -> Result<git2::Commit<'r>, GitError> {
    repo.revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| GitError::Rev {
            rev: rev.to_string(),
            message: e.message().to_string(),
        })
}

/// The `.git` directory of the repository at `root` (to watch its refs).
pub(crate) fn git_dir(root: &Path) -> Option<PathBuf> {
    git2::Repository::open(root)
        .ok()
        .map(|r| r.path().to_path_buf())
}

fn signature_text(s: &git2::Signature<'_>) -> String {
    match (s.name().ok(), s.email().ok()) {
        (Some(n), Some(e)) => format!("{n} <{e}>"),
        (Some(n), None) => n.to_string(),
        (None, Some(e)) => e.to_string(),
        (None, None) => "unknown".into(),
    }
}

impl Repo {
    /// The commit `rev` names.
    pub fn resolve(&self, rev: &str) -> Result<CommitId, GitError> {
        Ok(CommitId(resolve_commit(&self.inner, rev)?.id()))
    }

    /// Every path whose blob differs between commits `a` and `b` (added,
    /// removed, changed or renamed: both names), sorted.
    pub fn changed_paths(&self, a: CommitId, b: CommitId) -> Result<Vec<String>, GitError> {
        let (ta, tb) = (
            self.inner.find_commit(a.0)?.tree()?,
            self.inner.find_commit(b.0)?.tree()?,
        );
        let diff = self.inner.diff_tree_to_tree(Some(&ta), Some(&tb), None)?;
        let mut out: Vec<String> = diff
            .deltas()
            .flat_map(|d| [d.old_file().path(), d.new_file().path()])
            .flatten()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The best common ancestor of `a` and `b` (`git merge-base a b`).
    pub fn merge_base(&self, a: CommitId, b: CommitId) -> Result<CommitId, GitError> {
        Ok(CommitId(self.inner.merge_base(a.0, b.0)?))
    }

    /// The tip of `refs/heads/<branch>`, if the branch exists.
    pub(crate) fn branch_tip(&self, branch: &str) -> Option<CommitId> {
        self.inner
            .find_reference(&format!("refs/heads/{branch}"))
            .ok()
            .and_then(|r| r.target())
            .map(CommitId)
    }

    pub(crate) fn has_commit(&self, id: CommitId) -> bool {
        self.inner.find_commit(id.0).is_ok()
    }

    /// Whether `id` is `ancestor` or has it in its history.
    pub(crate) fn descends_from(&self, id: CommitId, ancestor: CommitId) -> Result<bool, GitError> {
        Ok(id == ancestor || self.inner.graph_descendant_of(id.0, ancestor.0)?)
    }

    /// Whether `group`'s tree is what merging `head` into `onto` gives: how
    /// a merge queue builds each entry of a group (by merge, squash or
    /// rebase alike, when nothing conflicts). A conflict is `false`.
    pub fn merges_to(
        &self,
        onto: CommitId,
        head: CommitId,
        group: CommitId,
    ) -> Result<bool, GitError> {
        let (a, b) = (
            self.inner.find_commit(onto.0)?,
            self.inner.find_commit(head.0)?,
        );
        let g = self.inner.find_commit(group.0)?;
        let mut index = self.inner.merge_commits(&a, &b, None)?;
        if index.has_conflicts() {
            return Ok(false);
        }
        Ok(index.write_tree_to(&self.inner)? == g.tree_id())
    }

    /// Whether the object database holds commit `id`, and `id` is `ancestor`
    /// or has it in its history (`false` when it does not hold `id`).
    pub fn holds_ancestor(&self, id: CommitId, ancestor: CommitId) -> bool {
        self.has_commit(ancestor) && self.descends_from(id, ancestor).unwrap_or(false)
    }

    /// The first parent of `id`, if it has one.
    pub(crate) fn first_parent(&self, id: CommitId) -> Option<CommitId> {
        let c = self.inner.find_commit(id.0).ok()?;
        c.parent_id(0).ok().map(CommitId)
    }

    /// The note on `id` under `refs/notes/missionctl`, if any.
    pub(crate) fn note(&self, id: CommitId) -> Option<String> {
        let n = self
            .inner
            .find_note(Some("refs/notes/missionctl"), id.0)
            .ok()?;
        n.message().ok().map(str::to_string)
    }

    /// First-parent commits after `since` up to `tip`, oldest first.
    pub(crate) fn first_parent_since(
        &self,
        tip: CommitId,
        since: Option<CommitId>,
    ) -> Result<Vec<CommitId>, GitError> {
        let mut walk = self.inner.revwalk()?;
        walk.push(tip.0)?;
        if let Some(s) = since {
            walk.hide(s.0)?;
        }
        walk.simplify_first_parent()?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
        walk.map(|o| o.map(CommitId).map_err(GitError::from))
            .collect()
    }

    pub(crate) fn commit_info(&self, id: CommitId) -> Result<CommitInfo, GitError> {
        let c = self.inner.find_commit(id.0)?;
        let t = c.time();
        let time = time::OffsetDateTime::from_unix_timestamp(t.seconds())
            .ok()
            .and_then(|d| {
                d.to_offset(time::UtcOffset::UTC)
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        Ok(CommitInfo {
            sha: id.to_string(),
            message: c.message().unwrap_or_default().to_string(),
            committer: signature_text(&c.committer()),
            author: signature_text(&c.author()),
            time,
        })
    }

    /// The tree of `id`, labelled for messages.
    pub fn tree(&self, id: CommitId, label: &str) -> Result<Tree, GitError> {
        Tree::at_commit(self, id, label)
    }

    /// The full name of the checked-out branch (`refs/heads/main`), if any.
    /// The newest commit among the first `limit` first-parent commits from
    /// `from` whose message has the trailer `key: value`.
    pub(crate) fn find_trailer(
        &self,
        from: CommitId,
        key: &str,
        value: &str,
        limit: usize,
    ) -> Result<Option<CommitId>, GitError> {
        let mut walk = self.inner.revwalk()?;
        walk.push(from.0)?;
        walk.simplify_first_parent()?;
        for id in walk.take(limit) {
            let id = id?;
            let c = self.inner.find_commit(id)?;
            let hit = c.message().unwrap_or_default().lines().any(|l| {
                l.strip_prefix(key)
                    .and_then(|r| r.strip_prefix(':'))
                    .is_some_and(|v| v.trim() == value)
            });
            if hit {
                return Ok(Some(CommitId(id)));
            }
        }
        Ok(None)
    }

    pub(crate) fn head_ref(&self) -> Option<String> {
        self.inner
            .head()
            .ok()
            .and_then(|h| h.name().ok().map(String::from))
    }
}
