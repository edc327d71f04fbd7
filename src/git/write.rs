//! What missionctl writes to git: decision notes, rollback commits, the
//! template's first commit, and pushes. Branch moves are compare-and-swap.

use std::path::Path;

use super::source::{push, push_with};
use super::{CommitId, GitError, Repo, Source};

/// Where a rollback commit goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Commit onto the branch itself (and push it for remotes).
    Push,
    /// Commit onto a new branch for review.
    Branch(String),
}

fn signature(repo: &git2::Repository) -> Result<git2::Signature<'static>, git2::Error> {
    repo.signature()
        .or_else(|_| git2::Signature::now("missionctl", "missionctl@localhost"))
}

/// Attach `body` as the note of `commit` under `refs/notes/missionctl`, and
/// push the notes ref when the source is remote.
pub(crate) fn write_note(
    repo: &Repo,
    source: &Source,
    commit: CommitId,
    body: &str,
) -> Result<(), GitError> {
    let sig = git2::Signature::now("missionctl", "missionctl@localhost")?;
    repo.inner.note(
        &sig,
        &sig,
        Some("refs/notes/missionctl"),
        commit.0,
        body,
        true,
    )?;
    if let Some(url) = source.remote_url() {
        push(
            &repo.inner,
            url,
            &["+refs/notes/missionctl:refs/notes/missionctl"],
        )?;
    }
    Ok(())
}

/// A commit on top of the branch tip that gives directory `dir` the content
/// it had at `from`.
pub struct RestoreDir<'a> {
    pub dir: &'a str,
    pub from: CommitId,
    pub tip: CommitId,
    pub message: &'a str,
    pub target: &'a Target,
}

/// Replace the tree at `path` (components) inside `root` with `new`.
fn replace_subtree(
    repo: &git2::Repository,
    root: &git2::Tree<'_>,
    path: &[&str],
    new: git2::Oid,
) -> Result<git2::Oid, git2::Error> {
    let mut builder = repo.treebuilder(Some(root))?;
    match path {
        [] => Ok(new),
        [leaf] => {
            builder.insert(leaf, new, 0o040_000)?;
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
            builder.insert(head, replaced, 0o040_000)?;
            builder.write()
        }
    }
}

/// Whether `tree` holds a pack of its own (a `pack.yaml` at any depth).
fn holds_pack(repo: &git2::Repository, tree: &git2::Tree<'_>) -> bool {
    tree.iter().any(|e| match e.kind() {
        Some(git2::ObjectType::Blob) => e.name().ok() == Some("pack.yaml"),
        Some(git2::ObjectType::Tree) => repo.find_tree(e.id()).is_ok_and(|t| holds_pack(repo, &t)),
        _ => false,
    })
}

/// `old` (a pack's folder as it was), except that every sub-folder that
/// holds another pack, in either version, is taken from `tip` (or left out
/// when the tip has none).
fn keep_nested_packs(
    repo: &git2::Repository,
    old: git2::Tree<'_>,
    tip: &git2::Tree<'_>,
) -> Result<git2::Oid, git2::Error> {
    let mut b = repo.treebuilder(Some(&old))?;
    let subtree = |t: &git2::Tree<'_>, name: &str| {
        t.get_name(name)
            .filter(|e| e.kind() == Some(git2::ObjectType::Tree))
            .and_then(|e| repo.find_tree(e.id()).ok())
    };
    let names: std::collections::BTreeSet<String> = old
        .iter()
        .chain(tip.iter())
        .filter(|e| e.kind() == Some(git2::ObjectType::Tree))
        .filter_map(|e| e.name().ok().map(String::from))
        .collect();
    for name in names {
        let (o, t) = (subtree(&old, &name), subtree(tip, &name));
        let nested = o.as_ref().is_some_and(|x| holds_pack(repo, x))
            || t.as_ref().is_some_and(|x| holds_pack(repo, x));
        if !nested {
            continue;
        }
        match tip.get_name(&name) {
            Some(e) => {
                b.insert(&name, e.id(), e.filemode())?;
            }
            None => {
                b.remove(&name)?;
            }
        }
    }
    b.write()
}

/// Write the restoring commit, move the branch (compare-and-swap against
/// `tip`) or create the review branch, and push for remote sources.
/// Returns the new commit and the branch it is on.
pub(crate) fn restore_dir(
    repo: &Repo,
    source: &Source,
    r: &RestoreDir<'_>,
) -> Result<(CommitId, String), GitError> {
    let g = &repo.inner;
    let branch_ref = format!("refs/heads/{}", source.branch);
    if r.target == &Target::Push
        && let Some(why) = source.checked_out()
    {
        return Err(GitError::Refused(format!(
            "{why}; for a one-off rollback, use --to-branch NAME"
        )));
    }
    let old_dir = g
        .find_commit(r.from.0)?
        .tree()?
        .get_path(Path::new(r.dir))?
        .id();
    let tip_commit = g.find_commit(r.tip.0)?;
    // Folders of other packs inside this one's (a tenant's users) keep the
    // tip's content: rolling a tenant pack back restores its own files only.
    let old_dir = match tip_commit.tree()?.get_path(Path::new(r.dir)) {
        Ok(tip_dir) => keep_nested_packs(g, g.find_tree(old_dir)?, &g.find_tree(tip_dir.id())?)?,
        Err(_) => old_dir,
    };
    let components: Vec<&str> = r.dir.split('/').collect();
    let new_tree = g.find_tree(replace_subtree(
        g,
        &tip_commit.tree()?,
        &components,
        old_dir,
    )?)?;
    let sig = signature(g)?;
    let commit = g.commit(None, &sig, &sig, r.message, &new_tree, &[&tip_commit])?;
    let branch = match r.target {
        Target::Push => {
            g.reference_matching(&branch_ref, commit, true, r.tip.0, "missionctl rollback")?;
            source.branch.clone()
        }
        Target::Branch(name) => {
            g.reference(
                &format!("refs/heads/{name}"),
                commit,
                false,
                "missionctl rollback",
            )?;
            name.clone()
        }
    };
    if let Some(url) = source.remote_url() {
        let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
        push(g, url, &[spec.as_str()])?;
    }
    Ok((CommitId(commit), branch))
}

/// Make `dir` a git repository on `main` (if it is not one) and commit every
/// file in it with `message`.
pub(crate) fn init_with_commit(dir: &Path, message: &str) -> Result<CommitId, GitError> {
    let repo = match git2::Repository::open(dir) {
        Ok(r) => r,
        Err(_) => {
            let mut opts = git2::RepositoryInitOptions::new();
            opts.initial_head("main");
            git2::Repository::init_opts(dir, &opts)?
        }
    };
    let mut index = repo.index()?;
    index.add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = signature(&repo)?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let oid = repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)?;
    Ok(CommitId(oid))
}

/// A commit on top of `base` whose tree is `base`'s with `files` (repository
/// path -> new content) written. No branch moves; the commit is reachable
/// only by its id until [`set_branch`] names it.
pub fn commit_files(
    repo: &Repo,
    base: CommitId,
    files: &std::collections::BTreeMap<String, String>,
    author: (&str, &str),
    message: &str,
) -> Result<CommitId, GitError> {
    let sig = git2::Signature::now(author.0, author.1)?;
    let changes = files.iter().map(|(p, t)| (p.as_str(), Some(t.as_bytes())));
    commit_tree(repo, base, changes, &sig, message)
}

/// As [`commit_files`] with bytes, and `None` removing a path; the author
/// is the repository's configured user (else `missionctl`).
pub fn commit_changes(
    repo: &Repo,
    base: CommitId,
    changes: &std::collections::BTreeMap<String, Option<Vec<u8>>>,
    message: &str,
) -> Result<CommitId, GitError> {
    let sig = signature(&repo.inner)?;
    let changes = changes.iter().map(|(p, b)| (p.as_str(), b.as_deref()));
    commit_tree(repo, base, changes, &sig, message)
}

/// The commit both of the above make: `base`'s tree with each path written
/// (`Some`) or removed (`None`), one parent, no branch moved.
fn commit_tree<'a>(
    repo: &Repo,
    base: CommitId,
    changes: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    sig: &git2::Signature<'_>,
    message: &str,
) -> Result<CommitId, GitError> {
    let g = &repo.inner;
    let parent = g.find_commit(base.0)?;
    let mut update = git2::build::TreeUpdateBuilder::new();
    for (path, bytes) in changes {
        match bytes {
            Some(b) => {
                let blob = g.blob(b)?;
                update.upsert(path, blob, git2::FileMode::Blob);
            }
            None => {
                update.remove(path);
            }
        }
    }
    let tree = g.find_tree(update.create_updated(g, &parent.tree()?)?)?;
    Ok(CommitId(g.commit(
        None,
        sig,
        sig,
        message,
        &tree,
        &[&parent],
    )?))
}

/// Point local branch `name` at `commit`, creating it or moving it. A
/// branch that is checked out is refused (its files would be left behind).
pub fn set_branch(repo: &Repo, name: &str, commit: CommitId) -> Result<(), GitError> {
    let full = format!("refs/heads/{name}");
    if repo.head_ref().as_deref() == Some(full.as_str()) && !repo.inner.is_bare() {
        return Err(GitError::Refused(format!(
            "branch {name} is checked out; switch to another branch first"
        )));
    }
    repo.inner
        .reference(&full, commit.0, true, "missionctl improve")?;
    Ok(())
}

/// The URL of remote `name` (e.g. `origin`), if configured.
pub fn remote_url(repo: &Repo, name: &str) -> Option<String> {
    repo.inner
        .find_remote(name)
        .ok()
        .and_then(|r| r.url().ok().map(str::to_string))
}

/// Push local branch `branch` to `url`, never forced: a branch the remote
/// has at another commit is rejected ([`GitError::Rejected`]), so nothing
/// someone may be reviewing is replaced.
/// `token` (a GitHub App's installation token) is used over HTTPS before
/// `MISSIONCTL_GIT_TOKEN`.
pub fn push_branch(
    repo: &Repo,
    url: &str,
    branch: &str,
    token: Option<&str>,
) -> Result<(), GitError> {
    let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
    push_with(
        &repo.inner,
        url,
        &[spec.as_str()],
        token.map(str::to_string),
    )
}

/// The commit local branch `name` points at, if it exists.
pub fn branch_tip(repo: &Repo, name: &str) -> Option<CommitId> {
    repo.inner
        .find_reference(&format!("refs/heads/{name}"))
        .ok()
        .and_then(|r| r.peel_to_commit().ok())
        .map(|c| CommitId(c.id()))
}

/// Whether `tip` proposes exactly what `proposal` does: one commit, on a
/// parent that is `proposal`'s parent or one of its ancestors (main may have
/// moved on since), changing exactly the same files to exactly the same
/// content. A branch named for a proposal is trusted by this, never by its
/// name: a commit pushed onto it by someone else, a tampered local branch or
/// extra changes to other files make it another proposal.
pub fn same_proposal(repo: &Repo, tip: CommitId, proposal: CommitId) -> Result<bool, GitError> {
    let r = &repo.inner;
    let (tip, proposal) = (r.find_commit(tip.0)?, r.find_commit(proposal.0)?);
    if tip.id() == proposal.id() {
        return Ok(true);
    }
    let (Ok(tip_parent), Ok(base)) = (tip.parent(0), proposal.parent(0)) else {
        return Ok(false);
    };
    if tip.parent_count() != 1
        || proposal.parent_count() != 1
        || !(tip_parent.id() == base.id() || r.graph_descendant_of(base.id(), tip_parent.id())?)
    {
        return Ok(false);
    }
    let changes = |parent: &git2::Commit<'_>, c: &git2::Commit<'_>| -> Result<Vec<_>, GitError> {
        let d = r.diff_tree_to_tree(Some(&parent.tree()?), Some(&c.tree()?), None)?;
        let mut v: Vec<_> = d
            .deltas()
            .map(|x| {
                (
                    x.status(),
                    x.new_file().path().map(std::path::Path::to_path_buf),
                    x.old_file().path().map(std::path::Path::to_path_buf),
                    x.new_file().id(),
                )
            })
            .collect();
        v.sort_by(|a, b| (&a.1, &a.2, a.3).cmp(&(&b.1, &b.2, b.3)));
        Ok(v)
    };
    Ok(changes(&tip_parent, &tip)? == changes(&base, &proposal)?)
}
