//! `market add`, `verify` and `upgrade`: a catalog pack written under
//! `packs/domains/<id>/` on a new branch (never the main branch) with its
//! provenance lock, the lock checked against the files, and a three-way
//! upgrade that keeps local edits and names every conflict.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use super::{LOCK_FILE, Lock, MarketError, SourceRef, check_digests, digests, pack_digest};
use crate::git::{self, CommitId, Tree};

/// The branch an install or upgrade of `id` at `version` is proposed on.
pub fn branch_name(id: &str, version: &str) -> String {
    let v: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("missionctl/market/{id}-{v}")
}

/// The fleet's main branch name and tip.
pub fn main_tip(repo: &git::Repo, root: &Path) -> Result<(String, CommitId), MarketError> {
    let main = Tree::at_rev_lazy(root, "HEAD")
        .ok()
        .and_then(|t| crate::pack::mission(&t))
        .map_or_else(|| "main".to_string(), |m| m.main_branch().to_string());
    let tip = repo.resolve(&format!("refs/heads/{main}")).map_err(|_| {
        MarketError::Refused(format!(
            "the fleet repository has no branch `{main}` (mission.yaml's main_branch); commit the fleet first"
        ))
    })?;
    Ok((main, tip))
}

/// A proposal made: the branch, its commit, what it holds.
#[derive(Debug, Clone, Serialize)]
pub struct Proposal {
    pub branch: String,
    pub commit: String,
    pub base: String,
    /// Repository paths written (`None` in `removed`).
    pub written: Vec<String>,
    pub removed: Vec<String>,
    pub lock: Lock,
    /// The branch already held exactly this proposal (a re-run).
    pub existing: bool,
}

/// The lock a version installs with.
pub fn lock_for(
    catalog: &str,
    id: &str,
    pack_id: &str,
    version: &str,
    source: &SourceRef,
    files: &BTreeMap<String, Vec<u8>>,
) -> Lock {
    let files = digests(files);
    Lock {
        missionctl_market_lock: 1,
        catalog: catalog.to_string(),
        id: id.to_string(),
        pack_id: pack_id.to_string(),
        version: version.to_string(),
        source: source.clone(),
        digest: pack_digest(&files),
        files,
    }
}

fn lock_bytes(lock: &Lock) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(lock).unwrap_or_default();
    b.push(b'\n');
    b
}

/// Write `files` of catalog pack `id` on a new branch off the main branch.
/// Refuses an id the fleet already has.
pub fn add(
    root: &Path,
    lock: &Lock,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Proposal, MarketError> {
    let repo = git::open(root)?;
    let (_, base) = main_tip(&repo, root)?;
    let tree = repo.tree(base, "main")?;
    let dir = format!("packs/domains/{}", lock.id);
    if tree.is_dir(&dir) || tree.contains(&format!("{dir}/pack.yaml")) {
        return Err(MarketError::Refused(
            if tree.contains(&format!("{dir}/{LOCK_FILE}")) {
                format!(
                    "`{dir}/` is installed already; to move it to another catalog version use `missionctl market upgrade {}`",
                    lock.id
                )
            } else {
                format!(
                    "`{dir}/` already exists in this fleet and was not installed from a catalog (it has no {LOCK_FILE}); nothing was written. Install the catalog's pack under another id, or retire this one first (a pull request that removes it)"
                )
            },
        ));
    }
    let mut changes: BTreeMap<String, Option<Vec<u8>>> = files
        .iter()
        .map(|(rel, b)| (format!("{dir}/{rel}"), Some(b.clone())))
        .collect();
    changes.insert(format!("{dir}/{LOCK_FILE}"), Some(lock_bytes(lock)));
    let message = format!(
        "market: add {} {} from catalog {}\n\nSource: {} {} {}\nDigest: {}",
        lock.id,
        lock.version,
        lock.catalog,
        lock.source.repository,
        lock.source.commit,
        lock.source.path,
        lock.digest
    );
    propose(
        &repo,
        base,
        &branch_name(&lock.id, &lock.version),
        &changes,
        &message,
        lock,
    )
}

/// Commit `changes` on `branch` off `base`. A branch that already holds
/// exactly this change is reused; one that holds something else is refused.
fn propose(
    repo: &git::Repo,
    base: CommitId,
    branch: &str,
    changes: &BTreeMap<String, Option<Vec<u8>>>,
    message: &str,
    lock: &Lock,
) -> Result<Proposal, MarketError> {
    let commit = git::commit_changes(repo, base, changes, message)?;
    let mut existing = false;
    if let Some(tip) = git::branch_tip(repo, branch) {
        if git::same_proposal(repo, tip, commit)? {
            existing = true;
        } else if repo.holds_ancestor(base, tip) {
            // Merged already (an earlier install or upgrade to this
            // version): the branch is free, and moving it is a fast-forward.
        } else {
            return Err(MarketError::Refused(format!(
                "branch `{branch}` exists with other commits; delete it (`git branch -D {branch}`) or finish the review it is in"
            )));
        }
    }
    let commit = if existing {
        git::branch_tip(repo, branch).unwrap_or(commit)
    } else {
        git::set_branch(repo, branch, commit)?;
        commit
    };
    Ok(Proposal {
        branch: branch.to_string(),
        commit: commit.to_string(),
        base: base.to_string(),
        written: changes
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone())
            .collect(),
        removed: changes
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.clone())
            .collect(),
        lock: lock.clone(),
        existing,
    })
}

/// One installed pack checked against its lock.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub id: String,
    pub version: String,
    pub catalog: String,
    /// Files whose bytes differ from the lock.
    pub modified: Vec<String>,
    /// Files the lock lists that are gone.
    pub missing: Vec<String>,
    /// Files the lock does not list.
    pub added: Vec<String>,
    /// The lock itself is unreadable, inconsistent, gone, or not what its
    /// catalog publishes (why).
    pub broken: Option<String>,
    /// Why the lock could not be checked against its catalog, if it could not.
    pub unconfirmed: Option<String>,
    #[serde(skip)]
    pub lock: Option<Lock>,
}

impl Verified {
    pub fn clean(&self) -> bool {
        self.modified.is_empty()
            && self.missing.is_empty()
            && self.added.is_empty()
            && self.broken.is_none()
    }
}

/// The lock of installed pack `id` in `tree`, if it has one.
pub fn read_lock(tree: &Tree, id: &str) -> Result<Option<Lock>, String> {
    let path = format!("packs/domains/{id}/{LOCK_FILE}");
    let repo = tree.repo();
    let bytes = match tree.read(&path, 1 << 20, repo.as_ref()) {
        Ok(b) => b,
        Err(git::ReadError::Missing) => return Ok(None),
        Err(e) => return Err(format!("{path}: {e}")),
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{path}: not JSON ({e}); restore it from git"))?;
    if let Some(p) = crate::schema::check_json(crate::schema::Kind::MarketLock, &v).first() {
        return Err(format!("{path}: {}; restore it from git", p.message));
    }
    let lock: Lock = serde_json::from_value(v).map_err(|e| format!("{path}: {e}"))?;
    if lock.id != id || lock.source.path != format!("packs/domains/{id}") {
        return Err(format!(
            "{path}: the lock is for `{}`, not this folder; restore it from git",
            lock.id
        ));
    }
    if let Some(f) = lock.files.iter().find(|f| !super::safe_rel_path(&f.path)) {
        return Err(format!(
            "{path}: lists `{}`, which is not a file inside the pack's folder; restore the lock from git",
            super::shown(&f.path)
        ));
    }
    if pack_digest(&lock.files) != lock.digest {
        return Err(format!(
            "{path}: `digest` is not that of the files it lists; the lock was edited by hand, restore it from git"
        ));
    }
    Ok(Some(lock))
}

/// The ids of the packs in `tree` that carry a lock.
fn locked_ids(tree: &Tree) -> BTreeSet<String> {
    tree.paths_under("packs/domains")
        .into_iter()
        .filter_map(|p| {
            p.strip_prefix("packs/domains/")
                .and_then(|r| r.strip_suffix(&format!("/{LOCK_FILE}")))
                .filter(|id| !id.contains('/'))
                .map(str::to_string)
        })
        .collect()
}

/// Every installed pack (a folder with a lock) in `tree`, checked. With
/// `main` (the fleet's main branch, when `tree` is something else), a pack
/// main has a lock for and `tree` has not is named too: removing the lock
/// does not make a hand edit disappear.
pub fn verify(tree: &Tree, main: Option<&Tree>) -> Vec<Verified> {
    let repo = tree.repo();
    let ids = locked_ids(tree);
    let removed: Vec<Verified> = main
        .map(locked_ids)
        .unwrap_or_default()
        .into_iter()
        .filter(|id| !ids.contains(id))
        .map(|id| {
            let (version, catalog) = main
                .and_then(|m| read_lock(m, &id).ok().flatten())
                .map(|l| (l.version, l.catalog))
                .unwrap_or_default();
            Verified {
                broken: Some(format!(
                    "packs/domains/{id}/{LOCK_FILE} is gone (the main branch has it); an installed pack keeps its lock: restore it from git"
                )),
                id,
                version,
                catalog,
                modified: Vec::new(),
                missing: Vec::new(),
                added: Vec::new(),
                unconfirmed: None,
                lock: None,
            }
        })
        .collect();
    let mut out: Vec<Verified> = ids
        .into_iter()
        .map(|id| {
            let mut v = Verified {
                id: id.clone(),
                version: String::new(),
                catalog: String::new(),
                modified: Vec::new(),
                missing: Vec::new(),
                added: Vec::new(),
                broken: None,
                unconfirmed: None,
                lock: None,
            };
            let lock = match read_lock(tree, &id) {
                Ok(Some(l)) => l,
                Ok(None) => return v,
                Err(e) => {
                    v.broken = Some(e);
                    return v;
                }
            };
            v.version.clone_from(&lock.version);
            v.catalog.clone_from(&lock.catalog);
            let files = match super::index::folder_files(tree, repo.as_ref(), &id) {
                Ok(f) => f,
                Err(e) => {
                    v.broken = Some(e);
                    return v;
                }
            };
            let have = digests(&files);
            for f in &lock.files {
                match have.iter().find(|h| h.path == f.path) {
                    None => v.missing.push(format!("packs/domains/{id}/{}", f.path)),
                    Some(h) if h.sha256 != f.sha256 => {
                        v.modified.push(format!("packs/domains/{id}/{}", f.path));
                    }
                    Some(_) => {}
                }
            }
            for h in &have {
                if !lock.files.iter().any(|f| f.path == h.path) {
                    v.added.push(format!("packs/domains/{id}/{}", h.path));
                }
            }
            v.lock = Some(lock);
            v
        })
        .collect();
    out.extend(removed);
    out
}

/// A lock edited to match a hand edit still has to match its catalog: the
/// digest and source the catalog publishes for that version. Sets
/// `broken` when they differ, `unconfirmed` when the catalog cannot say.
pub fn confirm(v: &mut Verified, catalogs: &[super::fetch::Catalog]) {
    let Some(lock) = &v.lock else { return };
    let Some(cat) = catalogs.iter().find(|c| c.name == lock.catalog) else {
        v.unconfirmed = Some(format!(
            "catalog `{}` is not listed in mission.yaml (or could not be read), so the lock was checked against the files only",
            super::shown(&lock.catalog)
        ));
        return;
    };
    match cat
        .index
        .packs
        .iter()
        .find(|p| p.id == lock.id)
        .and_then(|p| p.version(&lock.version))
    {
        None => {
            v.unconfirmed = Some(format!(
                "catalog `{}` no longer lists {}@{}, so the lock was checked against the files only",
                cat.name, lock.id, lock.version
            ));
        }
        Some(pub_) if pub_.digest != lock.digest || pub_.source != lock.source => {
            v.broken = Some(format!(
                "the lock says {} for {}@{}, but catalog `{}` publishes {} (from {} at {}): the lock was edited; restore it from git",
                lock.digest,
                lock.id,
                lock.version,
                cat.name,
                pub_.digest,
                super::shown(&pub_.source.repository),
                pub_.source.commit
            ));
        }
        Some(_) => {}
    }
}

/// A file both sides changed in ways that do not merge.
#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    pub path: String,
    pub why: String,
}

/// The outcome of a three-way upgrade.
#[derive(Debug, Clone, Serialize)]
pub struct Upgrade {
    pub from: String,
    pub to: String,
    /// The upstream change (locked version → new version), unified diff.
    pub upstream_diff: String,
    /// Files where local edits were kept (merged with upstream's change or untouched by it).
    pub kept_local: Vec<String>,
    pub conflicts: Vec<Conflict>,
    pub proposal: Option<Proposal>,
}

/// Merge the catalog's `theirs` into the fleet's installed pack: `base`
/// is the locked version's content, `ours` what the fleet's main branch
/// holds. Per file: unchanged on one side takes the other; changed on
/// both is merged line by line (git's merge), and overlapping changes,
/// or an edit against a deletion, are conflicts: then nothing is written.
pub fn upgrade(
    root: &Path,
    old: &Lock,
    base: &BTreeMap<String, Vec<u8>>,
    new_lock: &Lock,
    theirs: &BTreeMap<String, Vec<u8>>,
) -> Result<Upgrade, MarketError> {
    check_digests(
        &format!("the locked version {}", old.version),
        base,
        &old.files,
    )?;
    let repo = git::open(root)?;
    let (_, main) = main_tip(&repo, root)?;
    let tree = repo.tree(main, "main")?;
    let handle = tree.repo();
    let ours = super::index::folder_files(&tree, handle.as_ref(), &old.id)
        .map_err(MarketError::Refused)?;
    let mut out = Upgrade {
        from: old.version.clone(),
        to: new_lock.version.clone(),
        upstream_diff: unified(base, theirs),
        kept_local: Vec::new(),
        conflicts: Vec::new(),
        proposal: None,
    };
    let dir = format!("packs/domains/{}", old.id);
    let mut changes: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    let paths: BTreeSet<&String> = base
        .keys()
        .chain(ours.keys())
        .chain(theirs.keys())
        .collect();
    for p in paths {
        let (b, o, t) = (base.get(p), ours.get(p), theirs.get(p));
        let result: Result<Option<Vec<u8>>, String> = if o == t {
            Ok(o.cloned())
        } else if o == b {
            Ok(t.cloned())
        } else if t == b {
            out.kept_local.push(format!("{dir}/{p}"));
            Ok(o.cloned())
        } else {
            match (o, t) {
                (Some(o), Some(t)) => merge3(b.map_or(&[][..], Vec::as_slice), o, t, p).map(|m| {
                    out.kept_local.push(format!("{dir}/{p}"));
                    Some(m)
                }),
                (Some(_), None) => Err("deleted upstream, edited here".into()),
                (None, Some(_)) => Err("edited upstream, deleted here".into()),
                (None, None) => Ok(None),
            }
        };
        match result {
            Ok(merged) => {
                if merged.as_ref() != o {
                    changes.insert(format!("{dir}/{p}"), merged);
                }
            }
            Err(why) => out.conflicts.push(Conflict {
                path: format!("{dir}/{p}"),
                why,
            }),
        }
    }
    if !out.conflicts.is_empty() {
        return Ok(out);
    }
    changes.insert(format!("{dir}/{LOCK_FILE}"), Some(lock_bytes(new_lock)));
    let message = format!(
        "market: upgrade {} {} -> {} from catalog {}\n\nSource: {} {} {}\nDigest: {}",
        old.id,
        old.version,
        new_lock.version,
        new_lock.catalog,
        new_lock.source.repository,
        new_lock.source.commit,
        new_lock.source.path,
        new_lock.digest
    );
    out.proposal = Some(propose(
        &repo,
        main,
        &branch_name(&old.id, &new_lock.version),
        &changes,
        &message,
        new_lock,
    )?);
    Ok(out)
}

/// git's three-way merge of one file; Err names why it does not merge.
fn merge3(base: &[u8], ours: &[u8], theirs: &[u8], path: &str) -> Result<Vec<u8>, String> {
    let mut b = git2::MergeFileInput::new();
    b.content(base).path(path);
    let mut o = git2::MergeFileInput::new();
    o.content(ours).path(path);
    let mut t = git2::MergeFileInput::new();
    t.content(theirs).path(path);
    let r = git2::merge_file(&b, &o, &t, None).map_err(|e| e.message().to_string())?;
    if r.is_automergeable() {
        Ok(r.content().to_vec())
    } else {
        Err("changed here and upstream in overlapping lines".into())
    }
}

/// A unified diff of two file sets (relative paths), text files only.
pub fn unified(old: &BTreeMap<String, Vec<u8>>, new: &BTreeMap<String, Vec<u8>>) -> String {
    let mut out = String::new();
    let paths: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for p in paths {
        let a = old.get(p).map(|b| String::from_utf8_lossy(b).into_owned());
        let b = new.get(p).map(|b| String::from_utf8_lossy(b).into_owned());
        if a == b {
            continue;
        }
        let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
        let diff = similar::TextDiff::from_lines(&a, &b);
        out.push_str(
            &diff
                .unified_diff()
                .context_radius(3)
                .header(&format!("a/{p}"), &format!("b/{p}"))
                .to_string(),
        );
    }
    out
}
