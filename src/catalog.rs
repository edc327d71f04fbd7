//! `missionctl packs list`: one `prompt_pack` record per pack version, with
//! status from git: `champion` on the main branch, `challenger` for a
//! different version on another revision, `archived` for earlier versions in
//! main's history. `created_by` / `created_at` come from the commit that
//! introduced that version (the first commit, walking first-parent history,
//! whose pack file carries it).

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::git::{self, CommitId, GitError, PackFileVersion, Tree};
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
type History = HashMap<String, Vec<PackFileVersion>>;

fn records_for(
    repo: &git::Repo,
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
                .and_then(|h| h.iter().rev().find(|v| v.version == p.pack.version))
                .map(|v| v.commit);
            let (by, at) = intro
                .and_then(|c: CommitId| repo.commit_info(c).ok())
                .map_or_else(|| ("unknown".into(), String::new()), |i| (i.author, i.time));
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
    let repo = git::open(root)?;
    // The main branch's name comes from mission.yaml at HEAD when readable.
    let main_name = Tree::at_rev_lazy(root, "HEAD")
        .ok()
        .and_then(|t| pack::mission(&t))
        .map_or_else(|| "main".into(), |m| m.main_branch().to_string());
    let main_commit = repo
        .resolve(&format!("refs/heads/{main_name}"))
        .or_else(|_| repo.resolve("HEAD"))?;
    let main = pack::load(&repo.tree(main_commit, &main_name)?);
    let main_hist = git::first_parent_pack_versions(&repo, main_commit)?;
    let mut diags = main.diagnostics.clone();
    let mut out = match rev {
        Some(r) => {
            let c = repo.resolve(r)?;
            let loaded = pack::load(&repo.tree(c, r)?);
            diags = loaded.diagnostics.clone();
            let hist = git::first_parent_pack_versions(&repo, c)?;
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
            for PackFileVersion {
                id,
                version: v,
                commit: c,
            } in versions
            {
                if Some(v) == current || out.iter().any(|r| &r.id == id && &r.version == v) {
                    continue;
                }
                let Some(loc) = pack::Location::from_path(path) else {
                    continue;
                };
                let (by, at) = repo.commit_info(*c).map_or_else(
                    |_| ("unknown".into(), String::new()),
                    |i| (i.author, i.time),
                );
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
