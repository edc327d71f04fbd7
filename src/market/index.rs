//! `market index`: a catalog's index built from a pack repository's
//! first-parent history. Every version a domain pack has had on the line is
//! published, with the files as they were at the last commit that carried
//! that version, their digests, and the facts a team decides on. A version
//! that does not load, or whose files are not all inside its folder, is left
//! out with the reason (a catalog only publishes what installs).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::{
    CatalogIndex, FORMAT, FileDigest, LOCK_FILE, MAX_FILE_BYTES, MAX_PACK_BYTES, MAX_PACK_FILES,
    MarketError, PackEntry, RepoRef, SourceRef, VersionEntry, pack_digest, sha256_hex,
};
use crate::git::{self, CommitId, EntryKind, Tree};
use crate::pack::{self, PackDoc};

/// Where the catalog says its packs come from, and what it is called.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The catalog's name (default: `mission.yaml`'s `name` of the catalog
    /// repository).
    pub name: Option<String>,
    /// The repository URL installers fetch from (default: the `origin`
    /// remote, else the path given).
    pub source_url: Option<String>,
}

/// A version left out of the index, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub id: String,
    pub version: String,
    pub commit: String,
    pub reason: String,
}

/// Build the index of the repository at `root` as it is at `rev` (default:
/// its main branch, else HEAD).
pub fn build(
    root: &Path,
    rev: Option<&str>,
    opts: &Options,
) -> Result<(CatalogIndex, Vec<Skipped>), MarketError> {
    let repo = git::open(root)?;
    let (tip, branch) = match rev {
        Some(r) => (repo.resolve(r)?, None),
        None => {
            let main = Tree::at_rev_lazy(root, "HEAD")
                .ok()
                .and_then(|t| pack::mission(&t))
                .map_or_else(|| "main".to_string(), |m| m.main_branch().to_string());
            match repo.resolve(&format!("refs/heads/{main}")) {
                Ok(c) => (c, Some(main)),
                Err(_) => (repo.resolve("HEAD")?, None),
            }
        }
    };
    let url = opts.source_url.clone().unwrap_or_else(|| {
        git::remote_url(&repo, "origin").unwrap_or_else(|| {
            std::fs::canonicalize(root)
                .unwrap_or_else(|_| root.to_path_buf())
                .display()
                .to_string()
        })
    });
    build_at(&repo, tip, branch, &url, opts.name.as_deref())
}

/// [`build`] on an open repository at commit `tip`.
pub(crate) fn build_at(
    repo: &git::Repo,
    tip: CommitId,
    branch: Option<String>,
    url: &str,
    name: Option<&str>,
) -> Result<(CatalogIndex, Vec<Skipped>), MarketError> {
    let tip_tree = repo.tree(tip, "catalog")?;
    let tip_repo = pack::load_files(&tip_tree, &[]);
    let meta = CatalogMeta::read(&tip_tree, repo)?;
    let catalog_name = name
        .map(str::to_string)
        .or_else(|| meta.name.clone())
        .or_else(|| tip_repo.mission.as_ref().map(|m| m.value.name.clone()))
        .unwrap_or_else(|| "catalog".into());
    let codeowners = tip_repo
        .codeowners
        .as_deref()
        .map(crate::github::codeowners::CodeOwners::parse);
    // Domain packs present at the tip, with their versions on the line.
    let hist = git::first_parent_pack_versions(repo, tip)?;
    let mut wanted: BTreeMap<String, Vec<(String, CommitId)>> = BTreeMap::new();
    for (file, versions) in &hist {
        let Some(id) = domain_of(file) else { continue };
        if !tip_tree.contains(file) {
            continue; // withdrawn from the catalog
        }
        let mut out = Vec::new();
        for (i, v) in versions.iter().enumerate() {
            // The last commit on the line that still carried this version.
            let at = match versions.get(i + 1) {
                Some(next) => match repo.first_parent(next.commit) {
                    Some(p) => p,
                    None => continue,
                },
                None => tip,
            };
            out.push((v.version.clone(), at));
        }
        wanted.insert(id.to_string(), out);
    }
    // One tree and one load per commit, shared by the versions it carries.
    let mut by_commit: HashMap<CommitId, Vec<String>> = HashMap::new();
    for (id, versions) in &wanted {
        for (_, c) in versions {
            by_commit.entry(*c).or_default().push(id.clone());
        }
    }
    let mut found: HashMap<(String, CommitId), Result<VersionEntry, String>> = HashMap::new();
    let mut descriptions: HashMap<String, (String, String)> = HashMap::new();
    for (commit, ids) in &by_commit {
        let tree = if *commit == tip {
            None
        } else {
            Some(repo.tree(*commit, "catalog")?)
        };
        let tree = tree.as_ref().unwrap_or(&tip_tree);
        let files: Vec<String> = ids.iter().map(|d| pack_file(d)).collect();
        let refs: Vec<&str> = files.iter().map(String::as_str).collect();
        let loaded = pack::load_files(tree, &refs);
        let handle = tree.repo();
        for id in ids {
            let entry = version_entry(&loaded, tree, handle.as_ref(), id, url, *commit);
            if *commit == tip
                && let Some(p) = loaded.packs.iter().find(|p| p.file == pack_file(id))
            {
                let description = p
                    .node
                    .get("description")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_string();
                descriptions.insert(id.clone(), (p.pack.id.clone(), description));
            }
            found.insert((id.clone(), *commit), entry);
        }
    }
    let mut packs = Vec::new();
    let mut skipped = Vec::new();
    for (id, versions) in wanted {
        let mut entries = Vec::new();
        for (version, commit) in versions {
            match found.remove(&(id.clone(), commit)) {
                Some(Ok(mut e)) if e.version == version => {
                    e.evidence = evidence(repo, &hist, &id, &e);
                    entries.push(e);
                }
                Some(Ok(e)) => skipped.push(Skipped {
                    id: id.clone(),
                    version,
                    commit: commit.to_string(),
                    reason: format!("the pack file says version {}", e.version),
                }),
                Some(Err(reason)) => skipped.push(Skipped {
                    id: id.clone(),
                    version,
                    commit: commit.to_string(),
                    reason,
                }),
                None => {}
            }
        }
        if entries.is_empty() {
            continue;
        }
        let (pack_id, description) = descriptions
            .remove(&id)
            .unwrap_or_else(|| (id.clone(), String::new()));
        let over = meta.packs.get(&id);
        let maintainers = over
            .and_then(|o| o.maintainers.clone())
            .or_else(|| meta.maintainers.clone())
            .unwrap_or_else(|| {
                codeowners
                    .as_ref()
                    .map(|c| c.owners_of(&pack_file(&id)))
                    .unwrap_or_default()
            });
        packs.push(PackEntry {
            domain: id.clone(),
            id,
            pack_id,
            description,
            license: over
                .and_then(|o| o.license.clone())
                .or_else(|| meta.license.clone()),
            maintainers,
            versions: entries,
        });
    }
    Ok((
        CatalogIndex {
            missionctl_catalog: FORMAT,
            name: catalog_name,
            source: RepoRef {
                repository: url.to_string(),
                branch,
                commit: tip.to_string(),
            },
            packs,
        },
        skipped,
    ))
}

fn pack_file(id: &str) -> String {
    format!("packs/domains/{id}/pack.yaml")
}

/// `packs/domains/<id>/pack.yaml` → `<id>`.
fn domain_of(file: &str) -> Option<&str> {
    let id = file
        .strip_prefix("packs/domains/")?
        .strip_suffix("/pack.yaml")?;
    (super::valid_id(id)).then_some(id)
}

/// Every file of the pack folder `packs/domains/<id>/` in `tree` (the lock
/// file aside), read within the caps; symlinks and oversized folders refused.
pub(crate) fn folder_files(
    tree: &Tree,
    repo: Option<&git::Repo>,
    id: &str,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let dir = format!("packs/domains/{id}");
    let (paths, truncated) = tree.list_dir(&dir, MAX_PACK_FILES);
    if truncated {
        return Err(format!(
            "`{dir}/` holds more than {MAX_PACK_FILES} files; a catalog pack may have at most {MAX_PACK_FILES}"
        ));
    }
    let mut out = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0u64;
    for path in paths {
        let rel = path[dir.len() + 1..].to_string();
        if rel == LOCK_FILE {
            continue;
        }
        if !super::safe_rel_path(&rel) {
            return Err(format!(
                "`{}` is not a plain file name (control characters, or git's own `.git*` files); a catalog pack holds only its own files",
                rel.escape_debug()
            ));
        }
        if matches!(tree.entry(&path), Some(EntryKind::Symlink { .. })) {
            return Err(format!(
                "`{path}` is a symlink; a catalog pack is plain files (replace the link with the file)"
            ));
        }
        if !seen.insert(rel.to_lowercase()) {
            return Err(format!(
                "`{}` differs from another file of the pack only in case; such names collide on some disks",
                rel.escape_debug()
            ));
        }
        let bytes = tree
            .read(&path, MAX_FILE_BYTES, repo)
            .map_err(|e| match e {
                git::ReadError::TooLarge(n) => format!(
                    "`{path}` is {n} bytes; a catalog pack's files are at most {MAX_FILE_BYTES} bytes"
                ),
                e => format!("`{path}`: {e}"),
            })?;
        total += bytes.len() as u64;
        if total > MAX_PACK_BYTES {
            return Err(format!(
                "`{dir}/` is larger than {MAX_PACK_BYTES} bytes, the cap on a catalog pack"
            ));
        }
        out.insert(rel, bytes);
    }
    Ok(out)
}

/// The files a pack reads that are not inside its own folder.
pub(crate) fn outside_refs(p: &PackDoc, dir: &str) -> Vec<String> {
    let inside = |f: &str| f.starts_with(&format!("{dir}/"));
    let mut out: Vec<String> = p
        .sections
        .iter()
        .map(|s| s.file.clone())
        .chain(p.cases.iter().map(|c| c.file.clone()))
        .chain(p.skills.iter().map(|s| s.file.clone()))
        .filter(|f| !inside(f))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn version_entry(
    loaded: &pack::Repo,
    tree: &Tree,
    handle: Option<&git::Repo>,
    id: &str,
    url: &str,
    commit: CommitId,
) -> Result<VersionEntry, String> {
    let file = pack_file(id);
    let dir = format!("packs/domains/{id}");
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error() && d.file.starts_with(&format!("{dir}/")))
        .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.col, d.message))
        .collect();
    if !errors.is_empty() {
        return Err(format!("does not load: {}", errors.join("; ")));
    }
    let p = loaded
        .packs
        .iter()
        .find(|p| p.file == file)
        .ok_or_else(|| "the pack file did not load".to_string())?;
    let outside = outside_refs(p, &dir);
    if !outside.is_empty() {
        return Err(format!(
            "reads {} outside its folder; a catalog pack must be self-contained",
            outside.join(", ")
        ));
    }
    let files = folder_files(tree, handle, id)?;
    let digests: Vec<FileDigest> = files
        .iter()
        .map(|(p, b)| FileDigest {
            path: p.clone(),
            sha256: sha256_hex(b),
            bytes: b.len() as u64,
        })
        .collect();
    let facts = super::facts_of(p);
    Ok(VersionEntry {
        version: facts.version,
        source: SourceRef {
            repository: url.to_string(),
            commit: commit.to_string(),
            path: dir,
        },
        digest: pack_digest(&digests),
        files: digests,
        tools: facts.tools,
        contracts: facts.contracts,
        eval_cases: facts.eval_cases,
        kpis: facts.kpis,
        prompt_tokens: facts.prompt_tokens,
        evidence: None,
    })
}

/// The promotion decision the catalog repository recorded for this version
/// (a git note under `refs/notes/missionctl` on the commit that introduced
/// it), summarised; None when it has none.
fn evidence(
    repo: &git::Repo,
    hist: &HashMap<String, Vec<git::PackFileVersion>>,
    id: &str,
    e: &VersionEntry,
) -> Option<serde_json::Value> {
    let intro = hist
        .get(&pack_file(id))?
        .iter()
        .rev()
        .find(|v| v.version == e.version)?
        .commit;
    let note = repo.note(intro)?;
    let decision = note
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|d| {
            let field = |k: &str| d.get(k).and_then(|v| v.as_str());
            // The same commit may introduce several packs' versions: the
            // decision must be this pack's (its scope) and this version's.
            field("challenger_pack_version") == Some(&e.version)
                && field("scope_type") == Some("domain")
                && field("scope_id") == Some(id)
        })?;
    let pick = |k: &str| decision.get(k).cloned().unwrap_or(serde_json::Value::Null);
    let reason: String = pick("reason")
        .as_str()
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect();
    Some(serde_json::json!({
        "decision": pick("decision"),
        "decided_by": pick("decided_by"),
        "created_at": pick("created_at"),
        "pull_request": pick("pull_request"),
        "evidence_url": pick("evidence_url"),
        "reason": reason,
        "commit": intro.to_string(),
    }))
}

/// `market.yaml` at the catalog repository's root: its name, licence and
/// maintainers, overridable per pack. Optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogMeta {
    name: Option<String>,
    license: Option<String>,
    maintainers: Option<Vec<String>>,
    #[serde(default)]
    packs: BTreeMap<String, PackMeta>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PackMeta {
    license: Option<String>,
    maintainers: Option<Vec<String>>,
}

impl CatalogMeta {
    const FILE: &'static str = "market.yaml";

    fn read(tree: &Tree, repo: &git::Repo) -> Result<CatalogMeta, MarketError> {
        let bytes = match tree.read(Self::FILE, 1 << 20, Some(repo)) {
            Ok(b) => b,
            Err(git::ReadError::Missing) => return Ok(CatalogMeta::default()),
            Err(e) => {
                return Err(MarketError::Io {
                    path: Self::FILE.into(),
                    message: e.to_string(),
                });
            }
        };
        let bad = |field: &str, message: String| MarketError::Config {
            file: Self::FILE.into(),
            field: field.into(),
            message,
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| bad("(file)", "not UTF-8 text; save it as UTF-8".into()))?;
        let node = crate::yaml::parse(&text).map_err(|e| bad("(file)", e.to_string()))?;
        serde_json::from_value(node.to_json()).map_err(|e| {
            bad(
                "(file)",
                format!("{e}; expected `name`, `license`, `maintainers` and `packs: {{<id>: {{license, maintainers}}}}`"),
            )
        })
    }
}
