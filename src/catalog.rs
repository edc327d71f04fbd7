//! `missionctl packs list`: one `prompt_pack` record per pack version, with
//! status from git: `champion` on the main branch, `challenger` for a
//! different version on another revision, `archived` for earlier versions in
//! main's history. `created_by` / `created_at` come from the commit that
//! introduced that version (the first commit, walking first-parent history,
//! whose pack file carries it).

use std::collections::HashMap;
use std::path::Path;

use git2::{Oid, Repository};
use serde::Serialize;

use crate::gitrepo::{self, GitError, Tree};
use crate::pack::{self, Repo};

#[derive(Debug, Clone, Serialize)]
pub struct PackRecord {
    pub id: String,
    pub scope_type: String,
    pub scope_id: String,
    pub version: String,
    pub status: String,
    pub created_by: String,
    pub created_at: String,
    pub path: String,
    pub commit: Option<String>,
    pub digest: String,
}

/// Per pack file: the versions it has had on a first-parent line, oldest
/// first, each with the commit that introduced it.
type History = HashMap<String, Vec<(String, String, Oid)>>;

fn pack_version_at(repo: &Repository, blob: Oid) -> Option<(String, String)> {
    let b = repo.find_blob(blob).ok()?;
    let text = std::str::from_utf8(b.content()).ok()?;
    let node = crate::yaml::parse(text).ok()?;
    Some((
        node.get("id")?.as_str()?.to_string(),
        node.get("version")?.as_str()?.to_string(),
    ))
}

fn history(repo: &Repository, tip: Oid) -> Result<History, GitError> {
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    walk.simplify_first_parent()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
    let mut out: History = HashMap::new();
    for oid in walk {
        let oid = oid?;
        let commit = repo.find_commit(oid)?;
        let tree = commit.tree()?;
        let parent_tree = commit.parent(0).ok().and_then(|p| p.tree().ok());
        let mut opts = git2::DiffOptions::new();
        opts.pathspec("packs");
        let d = repo.diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), Some(&mut opts))?;
        for delta in d.deltas() {
            let Some(path) = delta.new_file().path().and_then(Path::to_str) else {
                continue;
            };
            if !path.ends_with("/pack.yaml") || delta.new_file().id().is_zero() {
                continue;
            }
            let Some((id, version)) = pack_version_at(repo, delta.new_file().id()) else {
                continue;
            };
            let entry = out.entry(path.to_string()).or_default();
            if entry.last().is_none_or(|(_, v, _)| *v != version) {
                entry.push((id, version, oid));
            }
        }
    }
    Ok(out)
}

fn records_for(
    repo: &Repository,
    loaded: &Repo,
    hist: &History,
    status_of: &dyn Fn(&pack::PackDoc) -> &'static str,
) -> Vec<PackRecord> {
    loaded
        .packs
        .iter()
        .map(|p| {
            let intro = hist
                .get(&p.file)
                .and_then(|h| h.iter().rev().find(|(_, v, _)| *v == p.pack.version))
                .map(|(_, _, c)| *c);
            let (by, at) = intro
                .and_then(|c| gitrepo::commit_meta(repo, c))
                .unwrap_or_else(|| ("unknown".into(), String::new()));
            PackRecord {
                id: p.pack.id.clone(),
                scope_type: p.location.scope_type().as_str().into(),
                scope_id: p.location.scope_id().into(),
                version: p.pack.version.clone(),
                status: status_of(p).into(),
                created_by: by,
                created_at: at,
                path: p.file.clone(),
                commit: intro.map(|c| c.to_string()),
                digest: format!("sha256:{}", p.own_digest),
            }
        })
        .collect()
}

/// List packs: champions on `main_branch`, or the packs at `rev` with
/// challengers marked, plus archived versions when `with_history`.
pub fn list(
    root: &Path,
    rev: Option<&str>,
    with_history: bool,
) -> Result<(Vec<PackRecord>, Vec<crate::diagnostic::Diagnostic>), GitError> {
    let repo = gitrepo::open(root)?;
    // The main branch's name comes from mission.yaml at HEAD when readable.
    let main_name = Tree::at_rev_lazy(root, "HEAD")
        .ok()
        .and_then(|t| pack::mission(&t))
        .map_or_else(|| "main".into(), |m| m.main_branch().to_string());
    let main_commit = gitrepo::resolve_commit(&repo, &format!("refs/heads/{main_name}"))
        .or_else(|_| gitrepo::resolve_commit(&repo, "HEAD"))?
        .id();
    let main_tree = Tree::at_commit(&repo, main_commit, &main_name)?;
    let main = pack::load(&main_tree);
    let main_hist = history(&repo, main_commit)?;
    let mut diags = main.diagnostics.clone();
    let mut out = match rev {
        Some(r) => {
            let c = gitrepo::resolve_commit(&repo, r)?.id();
            let t = Tree::at_commit(&repo, c, r)?;
            let loaded = pack::load(&t);
            diags = loaded.diagnostics.clone();
            let hist = history(&repo, c)?;
            let status = |p: &pack::PackDoc| match main.pack(&p.pack.id) {
                Some(m) if m.own_digest == p.own_digest => "champion",
                _ => "challenger",
            };
            records_for(&repo, &loaded, &hist, &status)
        }
        None => records_for(&repo, &main, &main_hist, &|_| "champion"),
    };
    if with_history {
        for (path, versions) in &main_hist {
            let current = main
                .packs
                .iter()
                .find(|p| &p.file == path)
                .map(|p| &p.pack.version);
            for (id, v, c) in versions {
                if Some(v) == current || out.iter().any(|r| &r.id == id && &r.version == v) {
                    continue;
                }
                let Some(loc) = pack::Location::from_path(path) else {
                    continue;
                };
                let (by, at) = gitrepo::commit_meta(&repo, *c)
                    .unwrap_or_else(|| ("unknown".into(), String::new()));
                out.push(PackRecord {
                    id: id.clone(),
                    scope_type: loc.scope_type().as_str().into(),
                    scope_id: loc.scope_id().into(),
                    version: v.clone(),
                    status: "archived".into(),
                    created_by: by,
                    created_at: at,
                    path: path.clone(),
                    commit: Some(c.to_string()),
                    digest: String::new(),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.path, &a.status, &a.version).cmp(&(&b.path, &b.status, &b.version)));
    Ok((out, diags))
}
