//! The catalogs `mission.yaml` lists (`marketplace.catalogs`), fetched with
//! the reconciler's credential rules, cached under `.missionctl/market/`,
//! and checked before use: the index against its schema and caps, its
//! digests against the content, a pinned index against its sha256.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{
    CatalogIndex, FORMAT, MAX_INDEX_BYTES, MAX_PACK_BYTES, MAX_PACK_FILES, MarketError,
    VersionEntry, check_digests, pack_digest, safe_rel_path, valid_id,
};
use crate::git::{self, Source};

/// One entry of `marketplace.catalogs`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSpec {
    pub name: String,
    /// A git repository of packs (a path, `file://`, `https://`, `ssh://`
    /// or `git@host:path`): missionctl indexes it itself.
    pub git: Option<String>,
    /// Its branch (default: the repository's `mission.yaml` main branch,
    /// else `main`).
    pub branch: Option<String>,
    /// The https URL of a published index (`market index --out`).
    pub index: Option<String>,
    /// The index's sha256, pinned: a different file is refused.
    pub sha256: Option<String>,
}

/// `marketplace.catalogs` of `mission.yaml` (`value` is the `marketplace`
/// mapping), checked.
pub fn configured(value: &serde_json::Value) -> Result<Vec<CatalogSpec>, MarketError> {
    let bad = |field: String, message: String| MarketError::Config {
        file: "mission.yaml".into(),
        field,
        message,
    };
    if value.is_null() {
        return Ok(Vec::new());
    }
    let list = value
        .get("catalogs")
        .cloned()
        .unwrap_or(serde_json::Value::Array(Vec::new()));
    let specs: Vec<CatalogSpec> = serde_json::from_value(list).map_err(|e| {
        bad(
            "marketplace.catalogs".into(),
            format!("{e}; each catalog is `{{name, git, branch}}` or `{{name, index, sha256}}`"),
        )
    })?;
    let mut seen = std::collections::BTreeSet::new();
    for (i, s) in specs.iter().enumerate() {
        let field = |k: &str| format!("marketplace.catalogs[{i}].{k}");
        if !valid_id(&s.name) {
            return Err(bad(
                field("name"),
                format!(
                    "`{}` is not a catalog name: use lower-case letters, digits and `-`",
                    s.name
                ),
            ));
        }
        if !seen.insert(&s.name) {
            return Err(bad(
                field("name"),
                format!(
                    "`{}` is listed twice; give each catalog its own name",
                    s.name
                ),
            ));
        }
        match (&s.git, &s.index) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(bad(
                    field("git"),
                    "give exactly one of `git` (a repository of packs) and `index` (the https URL of an index)".into(),
                ));
            }
        }
        if let Some(u) = &s.index
            && !index_url_allowed(u)
        {
            return Err(bad(
                field("index"),
                format!(
                    "`{u}` is not an https URL; an index is fetched over https (plain http only from 127.0.0.1 or localhost)"
                ),
            ));
        }
        if s.git.is_some() && s.sha256.is_some() {
            return Err(bad(
                field("sha256"),
                "`sha256` pins an index file; a `git` catalog is checked file by file against the digests it is indexed with (to pin one, host its index and list it with `index:`)".into(),
            ));
        }
        if s.index.is_some() && s.branch.is_some() {
            return Err(bad(
                field("branch"),
                "`branch` applies to a `git` catalog, not an `index`".into(),
            ));
        }
        if s.sha256
            .as_deref()
            .is_some_and(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(bad(
                field("sha256"),
                "a sha256 is 64 hexadecimal digits".into(),
            ));
        }
    }
    Ok(specs)
}

/// A `git:` catalog given as a path: relative to the fleet repository's
/// root (where `mission.yaml` is), not the current directory, and fetched
/// as `file://` into a mirror like any remote, so `--offline` and a
/// catalog that went away fall back to the copy fetched before.
pub fn relative_to(specs: &mut [CatalogSpec], root: &Path) {
    for s in specs {
        if let Some(g) = &s.git
            && !g.contains("://")
            && !(g.contains('@') && g.contains(':'))
        {
            let abs = if Path::new(g).is_relative() {
                root.join(g)
            } else {
                PathBuf::from(g)
            };
            let abs = std::fs::canonicalize(&abs).unwrap_or(abs);
            s.git = Some(format!("file://{}", abs.display()));
        }
    }
}

/// Where an index may say a pack's files are: a remote repository over
/// https or ssh (plain http only on 127.0.0.1), never a path or `file://`
/// on this machine (an index is someone else's data: it does not choose
/// what missionctl reads here).
fn source_allowed(url: &str) -> bool {
    if let Ok(u) = reqwest::Url::parse(url) {
        return match u.scheme() {
            "https" | "ssh" => true,
            "http" => matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
            _ => false,
        };
    }
    // scp-like `git@host:path`
    url.split_once('@')
        .and_then(|(_, rest)| rest.split_once(':'))
        .is_some_and(|(host, _)| !host.is_empty() && !host.contains('/'))
        && !url.starts_with('-')
}

fn index_url_allowed(u: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(u) else {
        return false;
    };
    match url.scheme() {
        "https" => true,
        "http" => matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
        _ => false,
    }
}

/// A catalog as fetched: its index and where its content is read.
#[derive(Debug)]
pub struct Catalog {
    pub name: String,
    pub index: CatalogIndex,
    /// For a git catalog, the repository it was indexed from (the content).
    repo_dir: Option<PathBuf>,
}

/// Where catalogs are cached for the fleet repository at `root`.
pub fn cache_dir(root: &Path) -> PathBuf {
    root.join(".missionctl").join("market")
}

/// Fetch (or, `offline`, read from the cache) every catalog of `specs`.
/// A catalog that cannot be fetched falls back to its cached copy with a
/// warning in `warnings`; one with neither is an error.
pub fn load_all(
    specs: &[CatalogSpec],
    cache: &Path,
    offline: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<Catalog>, MarketError> {
    specs
        .iter()
        .map(|s| load(s, cache, offline, warnings))
        .collect()
}

pub fn load(
    spec: &CatalogSpec,
    cache: &Path,
    offline: bool,
    warnings: &mut Vec<String>,
) -> Result<Catalog, MarketError> {
    let dir = cache.join(&spec.name);
    std::fs::create_dir_all(&dir).map_err(|e| MarketError::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    match (&spec.git, &spec.index) {
        (Some(url), _) => load_git(spec, url, &dir, offline, warnings),
        (None, Some(url)) => load_index(spec, url, &dir, offline, warnings),
        (None, None) => Err(MarketError::catalog(
            &spec.name,
            "neither `git` nor `index` is set",
        )),
    }
}

fn load_git(
    spec: &CatalogSpec,
    url: &str,
    dir: &Path,
    offline: bool,
    warnings: &mut Vec<String>,
) -> Result<Catalog, MarketError> {
    let branch = spec.branch.clone().unwrap_or_else(|| "main".into());
    let source = Source::new(url, &branch, dir);
    let repo = if offline {
        source.open_local()?
    } else {
        match source.sync() {
            Ok(r) => r,
            Err(e) => match source.open_local() {
                Ok(r) if r.branch_tip(&branch).is_some() => {
                    warnings.push(format!(
                        "catalog `{}`: fetching {url} failed ({e}); using the copy fetched before",
                        spec.name
                    ));
                    r
                }
                _ => {
                    return Err(MarketError::catalog(
                        &spec.name,
                        format!("cannot fetch {url}: {e}"),
                    ));
                }
            },
        }
    };
    let tip = repo.branch_tip(&branch).ok_or_else(|| {
        MarketError::catalog(
            &spec.name,
            format!("{url} has no branch `{branch}`; set `branch:` for this catalog"),
        )
    })?;
    // The index of a commit never changes: built once, then read.
    let cached = dir.join(format!("index-{tip}.json"));
    let index = match std::fs::read(&cached)
        .ok()
        .and_then(|b| serde_json::from_slice::<CatalogIndex>(&b).ok())
    {
        Some(i) => i,
        None => {
            let (mut i, _skipped) =
                super::index::build_at(&repo, tip, Some(branch.clone()), url, Some(&spec.name))?;
            i.name = spec.name.clone();
            let _ = std::fs::write(&cached, serde_json::to_vec(&i).unwrap_or_default());
            i
        }
    };
    let repo_dir = match &source.kind {
        git::SourceKind::Local(p) => p.clone(),
        git::SourceKind::Remote { mirror, .. } => mirror.clone(),
    };
    Ok(Catalog {
        name: spec.name.clone(),
        index,
        repo_dir: Some(repo_dir),
    })
}

fn load_index(
    spec: &CatalogSpec,
    url: &str,
    dir: &Path,
    offline: bool,
    warnings: &mut Vec<String>,
) -> Result<Catalog, MarketError> {
    let cached = dir.join("index.json");
    let bytes = if offline {
        std::fs::read(&cached).map_err(|_| {
            MarketError::catalog(&spec.name, "not fetched yet; run without --offline once")
        })?
    } else {
        match download(url) {
            Ok(b) => {
                // Checked before it replaces a good cached copy.
                check_bytes(spec, &b)?;
                let _ = std::fs::write(&cached, &b);
                b
            }
            Err(e) => match std::fs::read(&cached) {
                Ok(b) => {
                    warnings.push(format!(
                        "catalog `{}`: fetching {url} failed ({e}); using the copy fetched before",
                        spec.name
                    ));
                    b
                }
                Err(_) => {
                    return Err(MarketError::catalog(
                        &spec.name,
                        format!("cannot fetch {url}: {e}"),
                    ));
                }
            },
        }
    };
    let index = check_bytes(spec, &bytes)?;
    for p in &index.packs {
        for v in &p.versions {
            if !source_allowed(&v.source.repository) {
                return Err(MarketError::catalog(
                    &spec.name,
                    format!(
                        "{}@{}: source repository `{}` is not an https or ssh URL; an index may not point at paths on this machine",
                        p.id,
                        super::shown(&v.version),
                        super::shown(&v.source.repository)
                    ),
                ));
            }
        }
    }
    Ok(Catalog {
        name: spec.name.clone(),
        index,
        repo_dir: None,
    })
}

/// GET `url`, at most [`MAX_INDEX_BYTES`], within 30 seconds.
fn download(url: &str) -> Result<Vec<u8>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let why = |e: reqwest::Error| {
            if e.is_timeout() {
                "timed out after 30 s".to_string()
            } else {
                e.to_string()
            }
        };
        let mut resp = client.get(url).send().await.map_err(why)?;
        if resp.status().is_redirection() {
            return Err(format!(
                "HTTP {}: redirects are not followed; list the final URL in mission.yaml",
                resp.status()
            ));
        }
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        if resp.content_length().is_some_and(|n| n > MAX_INDEX_BYTES) {
            return Err(format!("the index is larger than {MAX_INDEX_BYTES} bytes"));
        }
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(why)? {
            out.extend_from_slice(&chunk);
            if out.len() as u64 > MAX_INDEX_BYTES {
                return Err(format!("the index is larger than {MAX_INDEX_BYTES} bytes"));
            }
        }
        Ok(out)
    })
}

/// An index's bytes checked: the pin, JSON, the schema, then what the
/// schema cannot say ([`check_index`]).
fn check_bytes(spec: &CatalogSpec, bytes: &[u8]) -> Result<CatalogIndex, MarketError> {
    let err = |m: String| MarketError::catalog(&spec.name, m);
    if bytes.len() as u64 > MAX_INDEX_BYTES {
        return Err(err(format!(
            "the index is larger than {MAX_INDEX_BYTES} bytes"
        )));
    }
    if let Some(pin) = &spec.sha256 {
        let got = super::sha256_hex(bytes);
        if !got.eq_ignore_ascii_case(pin) {
            return Err(err(format!(
                "the index has sha256 {got}, not the {pin} mission.yaml pins; it changed since it was pinned (update the pin only once you trust the new index)"
            )));
        }
    }
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| err(format!("the index is not JSON: {e}")))?;
    let problems = crate::schema::check_json(crate::schema::Kind::MarketIndex, &v);
    if let Some(p) = problems.first() {
        return Err(err(format!(
            "the index does not match schema/market-index.schema.json ({} problem(s)); first: {}",
            problems.len(),
            super::shown(&p.message)
        )));
    }
    let index: CatalogIndex =
        serde_json::from_value(v).map_err(|e| err(format!("the index is malformed: {e}")))?;
    check_index(&index).map_err(err)?;
    Ok(index)
}

/// What an index must hold beyond its schema: known format, safe ids and
/// paths, capped sizes, digests that add up.
pub fn check_index(index: &CatalogIndex) -> Result<(), String> {
    if index.missionctl_catalog != FORMAT {
        return Err(format!(
            "index format {} is not {FORMAT}, the one this missionctl reads; upgrade missionctl or republish the index",
            index.missionctl_catalog
        ));
    }
    for (pi, p) in index.packs.iter().enumerate() {
        let at = |k: &str| format!("packs[{pi}].{k}");
        if !valid_id(&p.id) {
            return Err(format!(
                "{}: `{}` is not a pack id (lower-case letters, digits and `-`)",
                at("id"),
                p.id
            ));
        }
        if index.packs.iter().filter(|q| q.id == p.id).count() > 1 {
            return Err(format!("{}: `{}` is listed twice", at("id"), p.id));
        }
        for (vi, v) in p.versions.iter().enumerate() {
            let at = |k: &str| format!("packs[{pi}].versions[{vi}].{k}");
            let want = format!("packs/domains/{}", p.id);
            if v.source.path != want {
                return Err(format!(
                    "{}: `{}` is not `{want}`; a catalog pack installs only into its own folder",
                    at("source.path"),
                    super::shown(&v.source.path)
                ));
            }
            if v.files.len() > MAX_PACK_FILES {
                return Err(format!("{}: more than {MAX_PACK_FILES} files", at("files")));
            }
            if v.files.iter().map(|f| f.bytes).sum::<u64>() > MAX_PACK_BYTES {
                return Err(format!("{}: more than {MAX_PACK_BYTES} bytes", at("files")));
            }
            if let Some(f) = v.files.iter().find(|f| !safe_rel_path(&f.path)) {
                return Err(format!(
                    "{}: `{}` leaves the pack's folder or is not a plain relative path",
                    at("files"),
                    super::shown(&f.path)
                ));
            }
            if semver::Version::parse(&v.version).is_err() {
                return Err(format!(
                    "{}: `{}` is not a semantic version (MAJOR.MINOR.PATCH)",
                    at("version"),
                    super::shown(&v.version)
                ));
            }
            if p.versions.iter().filter(|w| w.version == v.version).count() > 1 {
                return Err(format!(
                    "{}: `{}` is listed twice",
                    at("version"),
                    v.version
                ));
            }
            let mut names = std::collections::BTreeSet::new();
            if let Some(f) = v
                .files
                .iter()
                .find(|f| !names.insert(f.path.to_lowercase()))
            {
                return Err(format!(
                    "{}: `{}` is listed twice (names that differ only in case collide on some disks)",
                    at("files"),
                    super::shown(&f.path)
                ));
            }
            if !v.files.iter().any(|f| f.path == "pack.yaml") {
                return Err(format!("{}: no `pack.yaml`", at("files")));
            }
            if v.files.iter().any(|f| f.path == super::LOCK_FILE) {
                return Err(format!(
                    "{}: lists `{}`, which only installs write",
                    at("files"),
                    super::LOCK_FILE
                ));
            }
            if pack_digest(&v.files) != v.digest {
                return Err(format!(
                    "{}: `{}` is not the digest of the files listed; the index was edited after it was built",
                    at("digest"),
                    v.digest
                ));
            }
        }
    }
    Ok(())
}

/// The files of version `v` of pack `id`, read from its source repository
/// at its commit and checked against the catalog's digests.
pub fn version_files(
    cat: &Catalog,
    id: &str,
    v: &VersionEntry,
    cache: &Path,
) -> Result<BTreeMap<String, Vec<u8>>, MarketError> {
    let what = format!("catalog `{}`, {id}@{}", cat.name, v.version);
    source_files(cat, &what, id, &v.source, &v.files, &v.digest, cache)
}

/// The files of the version `lock` installed, read from its source and
/// checked against the lock (an upgrade's merge base).
pub fn locked_files(
    cat: &Catalog,
    lock: &super::Lock,
    cache: &Path,
) -> Result<BTreeMap<String, Vec<u8>>, MarketError> {
    source_files(
        cat,
        &format!("the installed {}@{}", lock.id, lock.version),
        &lock.id,
        &lock.source,
        &lock.files,
        &lock.digest,
        cache,
    )
}

/// The files at `source` (a repository, commit and pack folder), checked
/// against `promised` and `digest` (a catalog's, or an installed lock's).
pub fn source_files(
    cat: &Catalog,
    what: &str,
    id: &str,
    source: &super::SourceRef,
    promised: &[super::FileDigest],
    digest: &str,
    cache: &Path,
) -> Result<BTreeMap<String, Vec<u8>>, MarketError> {
    if source.path != format!("packs/domains/{id}") {
        return Err(MarketError::Refused(format!(
            "{what}: the source folder `{}` is not `packs/domains/{id}`; nothing was installed",
            source.path
        )));
    }
    let repo = match &cat.repo_dir {
        Some(dir) if source.repository == cat.index.source.repository => git::open(dir)?,
        _ => source_repo(&source.repository, &cache.join(&cat.name))?,
    };
    let commit = repo.resolve(&source.commit).map_err(|_| {
        MarketError::catalog(
            &cat.name,
            format!(
                "{what}: commit {} is not in {}; the catalog names a commit its repository does not have",
                source.commit, source.repository
            ),
        )
    })?;
    let tree = repo.tree(commit, &source.commit)?;
    let handle = tree.repo();
    let files = super::index::folder_files(&tree, handle.as_ref(), id)
        .map_err(|m| MarketError::Refused(format!("{what}: {m}")))?;
    if pack_digest(promised) != digest {
        return Err(MarketError::Refused(format!(
            "{what}: the digest {digest} is not that of the files listed; nothing was installed"
        )));
    }
    check_digests(what, &files, promised)?;
    Ok(files)
}

/// The repository at `url` (a path, or fetched with every branch into a
/// mirror under `dir`).
fn source_repo(url: &str, dir: &Path) -> Result<git::Repo, MarketError> {
    let s = Source::new(url, "main", dir);
    match &s.kind {
        git::SourceKind::Local(p) => Ok(git::open(p)?),
        // Named by the index, not by this fleet's operator: fetched without
        // MISSIONCTL_GIT_TOKEN or any other credential.
        git::SourceKind::Remote { .. } => Ok(s.sync_all_heads(true)?),
    }
}

/// Find pack `id` (optionally at `version`) in `catalogs` (only catalog
/// `only` when given). Two catalogs with the pack need `--catalog`.
pub fn find<'a>(
    catalogs: &'a [Catalog],
    only: Option<&str>,
    id: &str,
    version: Option<&str>,
) -> Result<(&'a Catalog, &'a super::PackEntry, &'a VersionEntry), MarketError> {
    let hits: Vec<(&Catalog, &super::PackEntry)> = catalogs
        .iter()
        .filter(|c| only.is_none_or(|o| o == c.name))
        .filter_map(|c| c.index.packs.iter().find(|p| p.id == id).map(|p| (c, p)))
        .collect();
    let (cat, entry) = match hits.as_slice() {
        [] => {
            return Err(MarketError::Refused(format!(
                "no configured catalog{} has a pack `{id}`; `missionctl market search` lists what they have",
                only.map(|o| format!(" named `{o}`")).unwrap_or_default()
            )));
        }
        [one] => *one,
        many => {
            let names: Vec<&str> = many.iter().map(|(c, _)| c.name.as_str()).collect();
            return Err(MarketError::Refused(format!(
                "`{id}` is in several catalogs ({}); choose one with --catalog",
                names.join(", ")
            )));
        }
    };
    let v = match version {
        Some(v) => entry.version(v).ok_or_else(|| {
            let have: Vec<&str> = entry.versions.iter().map(|v| v.version.as_str()).collect();
            MarketError::Refused(format!(
                "catalog `{}` has no version {v} of `{id}`; it has {}",
                cat.name,
                have.join(", ")
            ))
        })?,
        None => entry
            .latest()
            .ok_or_else(|| MarketError::Refused(format!("`{id}` has no versions")))?,
    };
    Ok((cat, entry, v))
}
