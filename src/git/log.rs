//! History reads over first-parent lines: which versions a pack file had,
//! and in which commit each appeared.

use std::collections::HashMap;
use std::path::Path;

use super::{CommitId, GitError, Repo};

/// A pack file's (id, version) as of one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackFileVersion {
    pub id: String,
    pub version: String,
    pub commit: CommitId,
}

fn id_and_version(bytes: &[u8]) -> Option<(String, String)> {
    let node = crate::yaml::parse(std::str::from_utf8(bytes).ok()?).ok()?;
    Some((
        node.get("id")?.as_str()?.to_string(),
        node.get("version")?.as_str()?.to_string(),
    ))
}

fn version_of(bytes: &[u8]) -> Option<String> {
    let node = crate::yaml::parse(std::str::from_utf8(bytes).ok()?).ok()?;
    node.get("version")?.as_str().map(String::from)
}

/// Per `packs/**/pack.yaml` path: the versions it has had on the first-parent
/// line to `tip`, oldest first, each with the commit that introduced it.
pub(crate) fn first_parent_pack_versions(
    repo: &Repo,
    tip: CommitId,
) -> Result<HashMap<String, Vec<PackFileVersion>>, GitError> {
    let g = &repo.inner;
    let mut out: HashMap<String, Vec<PackFileVersion>> = HashMap::new();
    for id in repo.first_parent_since(tip, None)? {
        let commit = g.find_commit(id.0)?;
        let tree = commit.tree()?;
        let parent_tree = commit.parent(0).ok().and_then(|p| p.tree().ok());
        let mut opts = git2::DiffOptions::new();
        opts.pathspec("packs");
        let d = g.diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), Some(&mut opts))?;
        for delta in d.deltas() {
            let Some(path) = delta.new_file().path().and_then(Path::to_str) else {
                continue;
            };
            if !path.ends_with("/pack.yaml") || delta.new_file().id().is_zero() {
                continue;
            }
            let Some((pack, version)) = g
                .find_blob(delta.new_file().id())
                .ok()
                .and_then(|b| id_and_version(b.content()))
            else {
                continue;
            };
            let entry = out.entry(path.to_string()).or_default();
            if entry.last().is_none_or(|v| v.version != version) {
                entry.push(PackFileVersion {
                    id: pack,
                    version,
                    commit: id,
                });
            }
        }
    }
    Ok(out)
}

/// The `version:` of pack file `file` at each first-parent commit from `tip`
/// backwards (newest first), for the commits where the file parses.
pub(crate) fn versions_of_file(
    repo: &Repo,
    tip: CommitId,
    file: &str,
) -> Result<Vec<(CommitId, String)>, GitError> {
    let g = &repo.inner;
    let mut walk = g.revwalk()?;
    walk.push(tip.0)?;
    walk.simplify_first_parent()?;
    let mut out = Vec::new();
    for oid in walk {
        let oid = oid?;
        let version = g
            .find_commit(oid)
            .ok()
            .and_then(|c| c.tree().ok())
            .and_then(|t| t.get_path(Path::new(file)).ok())
            .and_then(|e| g.find_blob(e.id()).ok())
            .and_then(|b| version_of(b.content()));
        if let Some(v) = version {
            out.push((CommitId(oid), v));
        }
    }
    Ok(out)
}
