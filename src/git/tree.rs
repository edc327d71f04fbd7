//! Reading a pack repository as it is at one revision, or in the work tree.
//!
//! Everything above this module sees a [`Tree`]: an index of paths with their
//! kind (file with size, or symlink with target) and a way to read a file's
//! bytes. A revision is read straight from the git object database (no
//! checkout), so `validate --rev`, the gate and the reconciler read exactly
//! what was committed. Path references are resolved here, component by
//! component and following symlinks, so nothing can name a file outside the
//! repository, whatever mix of `..`, absolute paths and symlinks it uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

use super::{CommitId, GitError, Repo, open, resolve_commit};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file. `size` is known for the work tree; for git blobs it is
    /// read from the object header on demand.
    File {
        oid: Option<Oid>,
        size: Option<u64>,
    },
    Symlink {
        target: String,
    },
}

/// Where a tree's bytes come from.
enum Backing {
    WorkTree(PathBuf),
    Git(PathBuf),
}

/// How paths are found: a full index built up front (validation reads
/// everything), or on demand (resolving one chain reads a handful of files,
/// and walking 30,000 paths first would dominate its run time).
enum Index {
    Full(BTreeMap<String, EntryKind>),
    LazyFs,
    LazyGit {
        repo: std::sync::Mutex<Repository>,
        tree: Oid,
    },
}

/// A repository snapshot: every path below the root with its kind.
pub struct Tree {
    backing: Backing,
    entries: Index,
    /// The commit this tree was read from (None for the work tree).
    pub commit: Option<CommitId>,
    /// Human label: "work tree" or the revision as given.
    pub label: String,
    /// Symlinks that lead out of the repository (or loop), with why: never
    /// followed, reported by the loader.
    escapes: Vec<(String, String)>,
    /// Files placed over the tree in memory ([`Tree::with_overlay`]).
    overlay: Option<std::sync::Arc<BTreeMap<String, Vec<u8>>>>,
}

/// Directories never indexed in the work tree: they are not pack content and
/// can be huge.
const SKIP_DIRS: &[&str] = &[".git", "target", "node_modules", ".missionctl"];

impl Tree {
    /// The work tree at `root`, as files are on disk now.
    pub fn work_tree(root: &Path) -> Result<Tree, GitError> {
        let mut entries = BTreeMap::new();
        walk_fs(root, root, &mut entries)?;
        Ok(Tree {
            backing: Backing::WorkTree(root.to_path_buf()),
            entries: Index::Full(entries),
            commit: None,
            label: "work tree".into(),
            escapes: Vec::new(),
            overlay: None,
        }
        .with_linked_dirs())
    }

    /// The work tree, with paths looked up on demand.
    pub fn work_tree_lazy(root: &Path) -> Tree {
        Tree {
            backing: Backing::WorkTree(root.to_path_buf()),
            entries: Index::LazyFs,
            commit: None,
            label: "work tree".into(),
            escapes: Vec::new(),
            overlay: None,
        }
    }

    /// A revision, with paths looked up on demand.
    pub fn at_rev_lazy(root: &Path, rev: &str) -> Result<Tree, GitError> {
        let repo = open(root)?.inner;
        let commit = resolve_commit(&repo, rev)?;
        let (cid, tid) = (commit.id(), commit.tree_id());
        drop(commit);
        let git_dir = repo.path().to_path_buf();
        Ok(Tree {
            backing: Backing::Git(git_dir),
            entries: Index::LazyGit {
                repo: std::sync::Mutex::new(repo),
                tree: tid,
            },
            commit: Some(CommitId(cid)),
            label: rev.to_string(),
            escapes: Vec::new(),
            overlay: None,
        })
    }

    /// The tree of `rev` in the repository at `root`, read from the object database.
    pub fn at_rev(root: &Path, rev: &str) -> Result<Tree, GitError> {
        let repo = open(root)?;
        let commit = resolve_commit(&repo.inner, rev)?.id();
        Self::at_commit(&repo, CommitId(commit), rev)
    }

    /// The tree of `commit`, read from the object database.
    pub(crate) fn at_commit(repo: &Repo, commit: CommitId, label: &str) -> Result<Tree, GitError> {
        let repo = &repo.inner;
        let c = repo.find_commit(commit.0)?;
        let tree = c.tree()?;
        let mut entries = BTreeMap::new();
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            let Ok(name) = entry.name() else {
                return TreeWalkResult::Skip;
            };
            let path = format!("{dir}{name}");
            if entry.kind() == Some(ObjectType::Blob) {
                if entry.filemode() == 0o120000 {
                    let target = repo
                        .find_blob(entry.id())
                        .map(|b| String::from_utf8_lossy(b.content()).into_owned())
                        .unwrap_or_default();
                    entries.insert(path, EntryKind::Symlink { target });
                } else {
                    entries.insert(
                        path,
                        EntryKind::File {
                            oid: Some(entry.id()),
                            size: None,
                        },
                    );
                }
            }
            TreeWalkResult::Ok
        })?;
        let git_dir = repo.path().to_path_buf();
        Ok(Tree {
            backing: Backing::Git(git_dir),
            entries: Index::Full(entries),
            commit: Some(commit),
            label: label.to_string(),
            escapes: Vec::new(),
            overlay: None,
        }
        .with_linked_dirs())
    }

    /// This tree with the directory `dir` replaced, in memory, by `files`
    /// (paths relative to `dir`): what the tree would be with a folder from
    /// elsewhere placed in it (the marketplace's compatibility report).
    /// Nothing is written anywhere. Only a fully indexed tree
    /// ([`Tree::at_rev`], [`Tree::work_tree`]) can take an overlay; a lazy
    /// one is returned as None.
    pub fn with_overlay(mut self, dir: &str, files: &BTreeMap<String, Vec<u8>>) -> Option<Tree> {
        let Index::Full(entries) = &mut self.entries else {
            return None;
        };
        let start = format!("{dir}/");
        entries.retain(|k, _| !k.starts_with(&start));
        let mut placed = BTreeMap::new();
        for (rel, bytes) in files {
            let path = format!("{start}{rel}");
            entries.insert(
                path.clone(),
                EntryKind::File {
                    oid: None,
                    size: Some(bytes.len() as u64),
                },
            );
            placed.insert(path, bytes.clone());
        }
        self.overlay = Some(std::sync::Arc::new(placed));
        Some(self)
    }

    /// All file and symlink paths under `prefix` (a directory, no trailing
    /// slash). Lazy trees list nothing: they serve known paths only.
    pub(crate) fn paths_under(&self, prefix: &str) -> Vec<&str> {
        let Index::Full(entries) = &self.entries else {
            return Vec::new();
        };
        let start = format!("{prefix}/");
        entries
            .range(start.clone()..)
            .take_while(|(k, _)| k.starts_with(&start))
            .map(|(k, _)| k.as_str())
            .collect()
    }

    /// Every file and symlink path under the directory `prefix` (no trailing
    /// slash), for every kind of tree, in path order; at most `max` of them
    /// (a folder holding more is cut short and `truncated` is set). A symlink
    /// is listed, never followed: reading it goes through the same checks as
    /// any reference.
    pub(crate) fn list_dir(&self, prefix: &str, max: usize) -> (Vec<String>, bool) {
        let mut out: Vec<String> = match &self.entries {
            Index::Full(_) => self
                .paths_under(prefix)
                .into_iter()
                .take(max + 1)
                .map(str::to_string)
                .collect(),
            Index::LazyFs => {
                let Backing::WorkTree(root) = &self.backing else {
                    return (Vec::new(), false);
                };
                let mut found = Vec::new();
                let mut stack = vec![prefix.to_string()];
                while let Some(dir) = stack.pop() {
                    let Ok(rd) = std::fs::read_dir(root.join(&dir)) else {
                        continue;
                    };
                    for e in rd.flatten() {
                        let Ok(name) = e.file_name().into_string() else {
                            continue;
                        };
                        let path = format!("{dir}/{name}");
                        match e.file_type() {
                            Ok(t) if t.is_dir() && !SKIP_DIRS.contains(&name.as_str()) => {
                                stack.push(path);
                            }
                            Ok(t) if t.is_dir() => {}
                            Ok(t) if t.is_file() || t.is_symlink() => found.push(path),
                            _ => {}
                        }
                        if found.len() > max {
                            break;
                        }
                    }
                    if found.len() > max {
                        break;
                    }
                }
                found
            }
            Index::LazyGit { repo, tree } => {
                let Ok(repo) = repo.lock() else {
                    return (Vec::new(), false);
                };
                let sub = repo
                    .find_tree(*tree)
                    .ok()
                    .and_then(|t| t.get_path(Path::new(prefix)).ok())
                    .filter(|e| e.kind() == Some(ObjectType::Tree))
                    .and_then(|e| repo.find_tree(e.id()).ok());
                let mut found = Vec::new();
                if let Some(sub) = sub {
                    let _ = sub.walk(TreeWalkMode::PreOrder, |dir, entry| {
                        if entry.kind() == Some(ObjectType::Blob)
                            && let Ok(name) = entry.name()
                        {
                            found.push(format!("{prefix}/{dir}{name}"));
                        }
                        if found.len() > max {
                            TreeWalkResult::Abort
                        } else {
                            TreeWalkResult::Ok
                        }
                    });
                }
                found
            }
        };
        out.sort();
        let truncated = out.len() > max;
        out.truncate(max);
        (out, truncated)
    }

    /// Symlinks that lead out of the repository or loop, with why. They are
    /// never followed; the loader reports them.
    pub fn escapes(&self) -> &[(String, String)] {
        &self.escapes
    }

    /// Follow symlinked directories that stay inside the repository: the
    /// files below the target are listed below the link too (a symlinked
    /// file inside is listed as the file it names), so a full load sees
    /// what an on-demand lookup sees. Links that leave the repository or
    /// loop are recorded in `escapes`. Links within links are followed up
    /// to a few levels.
    fn with_linked_dirs(mut self) -> Tree {
        for _ in 0..4 {
            let Index::Full(entries) = &self.entries else {
                return self;
            };
            let links: Vec<String> = entries
                .iter()
                .filter(|(_, v)| matches!(v, EntryKind::Symlink { .. }))
                .map(|(k, _)| k.clone())
                .collect();
            let mut add: Vec<(String, EntryKind)> = Vec::new();
            let mut escapes = Vec::new();
            for link in links {
                let dir = match walk_ref(&|p: &str| entries.get(p).cloned(), "", &link) {
                    Ok(dir) => dir,
                    Err(RefProblem::Escape(why)) => {
                        escapes.push((link, why));
                        continue;
                    }
                    Err(RefProblem::Loop) => {
                        escapes.push((link.clone(), format!("`{link}` is a symlink loop")));
                        continue;
                    }
                    Err(_) => continue,
                };
                let start = format!("{dir}/");
                for (k, v) in entries
                    .range(start.clone()..)
                    .take_while(|(k, _)| k.starts_with(&start))
                {
                    let alias = format!("{link}/{}", &k[start.len()..]);
                    if entries.contains_key(&alias) {
                        continue;
                    }
                    let kind = match v {
                        EntryKind::File { .. } => Some(v.clone()),
                        EntryKind::Symlink { .. } => {
                            walk_ref(&|p: &str| entries.get(p).cloned(), "", k)
                                .ok()
                                .and_then(|f| entries.get(&f).cloned())
                                .filter(|e| matches!(e, EntryKind::File { .. }))
                        }
                    };
                    if let Some(kind) = kind {
                        add.push((alias, kind));
                    }
                }
            }
            let grew = !add.is_empty();
            if let Index::Full(entries) = &mut self.entries {
                entries.extend(add);
            }
            for e in escapes {
                if !self.escapes.contains(&e) {
                    self.escapes.push(e);
                }
            }
            if !grew {
                break;
            }
        }
        self
    }

    pub fn entry(&self, path: &str) -> Option<EntryKind> {
        match &self.entries {
            Index::Full(e) => e.get(path).cloned(),
            Index::LazyFs | Index::LazyGit { .. } => {
                // The directories on the way are followed the way a full
                // index follows them: within the repository only.
                let parent = parent_dir(path);
                if parent.is_empty() {
                    return self.raw_entry(path);
                }
                let name = &path[parent.len() + 1..];
                match walk_ref(&|p: &str| self.raw_entry(p), "", parent) {
                    Ok(real) if real == parent => self.raw_entry(path),
                    Ok(real) => self.raw_entry(&format!("{real}/{name}")),
                    // Not followed: seen as something that is not a file.
                    Err(_) => Some(EntryKind::Symlink {
                        target: String::new(),
                    }),
                }
            }
        }
    }

    /// What is at `path` itself, no symlink followed (lazy trees).
    fn raw_entry(&self, path: &str) -> Option<EntryKind> {
        // As the work tree's full index: nothing under `.git`, `target`,
        // `node_modules` or `.missionctl` exists, however it is reached (a
        // link to `.git/config` reads as missing in both).
        if matches!(self.entries, Index::LazyFs) && path.split('/').any(|c| SKIP_DIRS.contains(&c))
        {
            return None;
        }
        match &self.entries {
            Index::Full(e) => e.get(path).cloned(),
            Index::LazyFs => {
                let Backing::WorkTree(root) = &self.backing else {
                    return None;
                };
                let full = root.join(path);
                let meta = std::fs::symlink_metadata(&full).ok()?;
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&full)
                        .ok()?
                        .to_string_lossy()
                        .into_owned();
                    Some(EntryKind::Symlink { target })
                } else if meta.is_file() {
                    Some(EntryKind::File {
                        oid: None,
                        size: Some(meta.len()),
                    })
                } else {
                    None
                }
            }
            Index::LazyGit { repo, tree } => {
                let repo = repo.lock().ok()?;
                let tree = repo.find_tree(*tree).ok()?;
                let e = tree.get_path(Path::new(path)).ok()?;
                if e.kind() != Some(ObjectType::Blob) {
                    return None;
                }
                if e.filemode() == 0o120000 {
                    let b = repo.find_blob(e.id()).ok()?;
                    Some(EntryKind::Symlink {
                        target: String::from_utf8_lossy(b.content()).into_owned(),
                    })
                } else {
                    Some(EntryKind::File {
                        oid: Some(e.id()),
                        size: None,
                    })
                }
            }
        }
    }

    pub fn is_dir(&self, path: &str) -> bool {
        match &self.entries {
            Index::Full(entries) => {
                let start = format!("{path}/");
                entries
                    .range(start.clone()..)
                    .next()
                    .is_some_and(|(k, _)| k.starts_with(&start))
            }
            Index::LazyFs => match &self.backing {
                Backing::WorkTree(root) => {
                    std::fs::symlink_metadata(root.join(path)).is_ok_and(|m| m.is_dir())
                }
                Backing::Git(_) => false,
            },
            Index::LazyGit { repo, tree } => repo.lock().ok().is_some_and(|repo| {
                repo.find_tree(*tree)
                    .ok()
                    .and_then(|t| t.get_path(Path::new(path)).ok())
                    .is_some_and(|e| e.kind() == Some(ObjectType::Tree))
            }),
        }
    }

    /// In a work tree, what is at `path` when it exists but is not a
    /// regular file or symlink ("a directory", "a FIFO", …); None otherwise.
    pub fn not_a_file(&self, path: &str) -> Option<&'static str> {
        use std::os::unix::fs::FileTypeExt;
        let Backing::WorkTree(root) = &self.backing else {
            return None;
        };
        let t = std::fs::symlink_metadata(root.join(path)).ok()?.file_type();
        if t.is_file() || t.is_symlink() {
            None
        } else if t.is_dir() {
            Some("a directory")
        } else if t.is_fifo() {
            Some("a FIFO (named pipe)")
        } else if t.is_socket() {
            Some("a socket")
        } else {
            Some("a device or other special file")
        }
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entry(path).is_some()
    }

    /// Open the backing repository (git trees only); one per thread.
    pub fn repo(&self) -> Option<Repo> {
        match &self.backing {
            Backing::Git(dir) => Repository::open(dir).ok().map(|inner| Repo { inner }),
            Backing::WorkTree(_) => None,
        }
    }

    /// Read a file's bytes, refusing anything larger than `cap` before reading it.
    pub fn read(&self, path: &str, cap: u64, repo: Option<&Repo>) -> Result<Vec<u8>, ReadError> {
        let Some(entry) = self.entry(path) else {
            return Err(ReadError::Missing);
        };
        if let Some(bytes) = self.overlay.as_ref().and_then(|o| o.get(path)) {
            if bytes.len() as u64 > cap {
                return Err(ReadError::TooLarge(bytes.len() as u64));
            }
            return Ok(bytes.clone());
        }
        match (entry, &self.backing) {
            (EntryKind::Symlink { .. }, _) => Err(ReadError::NotFile),
            (EntryKind::File { size, .. }, Backing::WorkTree(root)) => {
                if let Some(s) = size
                    && s > cap
                {
                    return Err(ReadError::TooLarge(s));
                }
                std::fs::read(root.join(path)).map_err(|e| ReadError::Io(e.to_string()))
            }
            (EntryKind::File { oid, .. }, Backing::Git(_)) => {
                let oid = oid.ok_or(ReadError::Missing)?;
                let repo = repo.ok_or_else(|| ReadError::Io("repository not open".into()))?;
                let odb = repo.inner.odb().map_err(|e| ReadError::Io(e.to_string()))?;
                let (size, _) = odb
                    .read_header(oid)
                    .map_err(|e| ReadError::Io(e.to_string()))?;
                if size as u64 > cap {
                    return Err(ReadError::TooLarge(size as u64));
                }
                let obj = odb.read(oid).map_err(|e| ReadError::Io(e.to_string()))?;
                Ok(obj.data().to_vec())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("no such file")]
    Missing,
    #[error("not a regular file")]
    NotFile,
    #[error("larger than {0} bytes")]
    TooLarge(u64),
    #[error("cannot read it: {0}")]
    Io(String),
}

fn walk_fs(root: &Path, dir: &Path, out: &mut BTreeMap<String, EntryKind>) -> Result<(), GitError> {
    let rd = std::fs::read_dir(dir).map_err(|e| GitError::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let mut items: Vec<_> = rd.filter_map(Result::ok).collect();
    items.sort_by_key(std::fs::DirEntry::file_name);
    for item in items {
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = item.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let rel = path
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_else(|_| name.to_string());
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.insert(rel, EntryKind::Symlink { target });
        } else if meta.is_dir() {
            if dir == root && SKIP_DIRS.contains(&name) {
                continue;
            }
            walk_fs(root, &path, out)?;
        } else if meta.is_file() {
            out.insert(
                rel,
                EntryKind::File {
                    oid: None,
                    size: Some(meta.len()),
                },
            );
        }
    }
    Ok(())
}

/// Why a reference could not be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefProblem {
    /// Absolute path, `..` above the root, or a symlink pointing outside.
    Escape(String),
    Missing,
    NotFile,
    /// Too many symlink hops (a loop).
    Loop,
}

/// Join `reference` (relative to the directory `base`) and follow symlinks,
/// returning the repository-relative path of the regular file it names.
pub(crate) fn resolve_ref(tree: &Tree, base: &str, reference: &str) -> Result<String, RefProblem> {
    let path = walk_ref(&|p: &str| tree.entry(p), base, reference)?;
    match tree.entry(&path) {
        Some(EntryKind::File { .. }) => Ok(path),
        Some(EntryKind::Symlink { .. }) => Err(RefProblem::Loop),
        None if tree.is_dir(&path) => Err(RefProblem::NotFile),
        None => Err(RefProblem::Missing),
    }
}

/// Join `reference` to `base` and follow every symlink on the way (as
/// `entry` reports them), component by component, refusing anything that
/// leaves the repository. Returns the path reached, whatever it is.
fn walk_ref(
    entry: &dyn Fn(&str) -> Option<EntryKind>,
    base: &str,
    reference: &str,
) -> Result<String, RefProblem> {
    if reference.is_empty() {
        return Err(RefProblem::Missing);
    }
    if reference.starts_with('/')
        || reference.starts_with('\\')
        || reference.contains('\\')
        || reference.as_bytes().get(1) == Some(&b':')
    {
        return Err(RefProblem::Escape(format!(
            "`{reference}` is an absolute path; references are relative to the pack file"
        )));
    }
    let joined = if base.is_empty() {
        reference.to_string()
    } else {
        format!("{base}/{reference}")
    };
    let mut pending: Vec<String> = normalize(&joined)
        .ok_or_else(|| RefProblem::Escape(format!("`{reference}` leaves the repository")))?;
    pending.reverse();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        done.push(comp);
        let here = done.join("/");
        if let Some(EntryKind::Symlink { target }) = entry(&here) {
            let target = &target;
            hops += 1;
            if hops > 16 {
                return Err(RefProblem::Loop);
            }
            if target.starts_with('/') || target.as_bytes().get(1) == Some(&b':') {
                return Err(RefProblem::Escape(format!(
                    "`{here}` is a symlink to the absolute path `{target}`"
                )));
            }
            done.pop();
            let parent = done.join("/");
            let t = if parent.is_empty() {
                target.clone()
            } else {
                format!("{parent}/{target}")
            };
            let mut rest: Vec<String> = pending.drain(..).rev().collect();
            let mut resolved = normalize(&t).ok_or_else(|| {
                RefProblem::Escape(format!(
                    "`{here}` is a symlink that points outside the repository"
                ))
            })?;
            resolved.append(&mut rest);
            resolved.reverse();
            pending = resolved;
            done.clear();
        }
    }
    Ok(done.join("/"))
}

/// Lexically normalise a relative path; None if it climbs above the root.
pub(crate) fn normalize(path: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c.to_string()),
        }
    }
    Some(out)
}

/// The directory part of a repository path ("a/b/c.yaml" -> "a/b").
pub(crate) fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

#[cfg(test)]
mod tests;
