//! ClawHub skills, vendored into a pack: `missionctl openclaw skill-add
//! @owner/slug@VERSION --pack-dir DIR` downloads the version's archive from
//! ClawHub (`GET /api/v1/download?slug&ownerHandle&version`, the endpoint
//! OpenClaw's own `skills install` uses, at `OPENCLAW_CLAWHUB_URL` or
//! <https://clawhub.ai>), unpacks it into `DIR/skills/<slug>/` and records
//! where it came from in `.clawhub/origin.json` (OpenClaw's version 1
//! origin fields, plus the archive's and every file's sha256).
//!
//! The skill's content then lives in git like any other skill: reviewed in
//! the pull request that adds `skills/<slug>/SKILL.md` to the pack's
//! `skills.add`, evaluated by the gate, delivered by sync. Nothing reaches
//! an agent from ClawHub at delivery time, so a re-published or withdrawn
//! version cannot change what a reviewed pack serves.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// ClawHub's public registry (OpenClaw's default).
pub const DEFAULT_REGISTRY: &str = "https://clawhub.ai";
/// The most an archive may hold, compressed.
pub const MAX_ARCHIVE_BYTES: usize = 8 * 1024 * 1024;
/// How long a download may take in all.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClawHubError {
    #[error(
        "`{0}` is not a pinned ClawHub reference: write `@owner/slug@VERSION` (or `slug@VERSION`), with a version such as 1.2.3"
    )]
    BadRef(String),
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("the archive of {slug}@{version}: {message}")]
    Archive {
        slug: String,
        version: String,
        message: String,
    },
    #[error("{path}: {source} (check the pack directory and its permissions)")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{0} already exists; remove it first to replace it with another version (its .clawhub/origin.json says which it holds)"
    )]
    Exists(PathBuf),
}

/// `@owner/slug@VERSION`, pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillRef {
    pub owner: Option<String>,
    pub slug: String,
    pub version: String,
}

fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Parse a pinned reference. The slug becomes the skill's folder and name,
/// so it must be a skill name OpenClaw accepts.
pub fn parse_ref(s: &str) -> Result<SkillRef, ClawHubError> {
    let bad = || ClawHubError::BadRef(s.to_string());
    let (owner, rest) = match s.strip_prefix('@') {
        Some(r) => {
            let (o, rest) = r.split_once('/').ok_or_else(bad)?;
            (Some(o.to_string()), rest)
        }
        None => (None, s),
    };
    let (slug, version) = rest.rsplit_once('@').ok_or_else(bad)?;
    let version_ok = semver::Version::parse(version).is_ok();
    if !version_ok
        || !crate::pack::valid_skill_name(slug)
        || owner.as_deref().is_some_and(|o| !plain(o))
    {
        return Err(bad());
    }
    Ok(SkillRef {
        owner,
        slug: slug.to_string(),
        version: version.to_string(),
    })
}

/// The registry to use: the flag, else `OPENCLAW_CLAWHUB_URL` (as
/// OpenClaw reads it), else ClawHub's public one.
pub fn registry(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| std::env::var("OPENCLAW_CLAWHUB_URL").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_REGISTRY.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// Download the archive of `r` from `registry` (a bearer `token` if given).
pub async fn download(
    client: &reqwest::Client,
    registry: &str,
    r: &SkillRef,
    token: Option<&str>,
) -> Result<Vec<u8>, ClawHubError> {
    let url = format!("{registry}/api/v1/download");
    let http = |message: String| ClawHubError::Http {
        url: url.clone(),
        message,
    };
    let mut query = vec![("slug", r.slug.as_str()), ("version", r.version.as_str())];
    if let Some(o) = &r.owner {
        query.push(("ownerHandle", o.as_str()));
    }
    let target = reqwest::Url::parse_with_params(&url, &query).map_err(|e| {
        http(format!(
            "not a URL ({e}); give ClawHub's base URL, such as https://clawhub.ai"
        ))
    })?;
    let mut req = client.get(target).timeout(DOWNLOAD_TIMEOUT);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| http(format!("cannot reach ClawHub ({})", e.without_url())))?;
    let status = resp.status();
    if !status.is_success() {
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(|s| format!("; ClawHub asks to retry after {s} s"))
            .unwrap_or_default();
        let body = resp.text().await.unwrap_or_default();
        let why: String = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v["error"]
                    .as_str()
                    .or(v["message"].as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| body.chars().take(200).collect());
        let hint = match status.as_u16() {
            404 => "; check the owner, slug and version (`openclaw skills search` lists them)",
            401 | 403 => "; a private skill needs a token (--token-env)",
            _ => "",
        };
        return Err(http(format!(
            "ClawHub answered {status}: {why}{retry}{hint}"
        )));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| http(format!("the download broke off ({})", e.without_url())))?
    {
        if out.len() + chunk.len() > MAX_ARCHIVE_BYTES {
            return Err(http(format!(
                "the archive is over {MAX_ARCHIVE_BYTES} bytes; a skill may hold at most 1 MiB"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The files of a skill archive: (path within the skill's folder, bytes).
/// SKILL.md is at the archive's root or in its one top-level folder;
/// every path is a plain relative path (no `..`, no absolute path, no
/// link), and the whole stays within the caps a pack's skill has.
pub fn unpack(bytes: &[u8], r: &SkillRef) -> Result<Vec<(String, Vec<u8>)>, ClawHubError> {
    let err = |message: String| ClawHubError::Archive {
        slug: r.slug.clone(),
        version: r.version.clone(),
        message,
    };
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| err(format!("not a zip archive ({e})")))?;
    if zip.len() > 4 * crate::pack::MAX_SKILL_FILES {
        return Err(err(format!("it holds {} entries", zip.len())));
    }
    let mut files = Vec::new();
    let mut total = 0usize;
    for i in 0..zip.len() {
        let mut f = zip
            .by_index(i)
            .map_err(|e| err(format!("entry {i} cannot be read ({e})")))?;
        if f.is_dir() {
            continue;
        }
        let name = f
            .name()
            .map(|n| n.to_string())
            .map_err(|e| err(format!("entry {i} has no readable name ({e})")))?;
        if f.is_symlink() {
            return Err(err(format!(
                "`{name}` is a link; a skill holds plain files only"
            )));
        }
        let Some(path) = f.enclosed_name() else {
            return Err(err(format!("`{name}` leaves the archive's folder")));
        };
        let path = path
            .to_str()
            .ok_or_else(|| err(format!("`{name}` is not a UTF-8 name")))?
            .replace('\\', "/");
        if f.size() > crate::pack::MAX_SKILL_FILE_BYTES {
            return Err(err(format!("`{path}` is {} bytes unpacked", f.size())));
        }
        let mut data = Vec::new();
        (&mut f)
            .take(crate::pack::MAX_SKILL_FILE_BYTES + 1)
            .read_to_end(&mut data)
            .map_err(|e| err(format!("`{path}` cannot be unpacked ({e})")))?;
        total += data.len();
        if total > crate::pack::MAX_SKILL_TOTAL_BYTES {
            return Err(err(format!(
                "it unpacks to more than {} bytes",
                crate::pack::MAX_SKILL_TOTAL_BYTES
            )));
        }
        files.push((path, data));
    }
    // One top-level folder holding SKILL.md: strip it.
    if !files.iter().any(|(p, _)| p == "SKILL.md") {
        let top: std::collections::BTreeSet<&str> = files
            .iter()
            .map(|(p, _)| p.split('/').next().unwrap_or_default())
            .collect();
        let prefix = match top.iter().next() {
            Some(t) if top.len() == 1 => format!("{t}/"),
            _ => String::new(),
        };
        if prefix.is_empty() || !files.iter().any(|(p, _)| *p == format!("{prefix}SKILL.md")) {
            return Err(err(
                "it has no SKILL.md at its root (or in its one top-level folder)".into(),
            ));
        }
        for (p, _) in &mut files {
            *p = p[prefix.len()..].to_string();
        }
    }
    files.sort();
    Ok(files)
}

/// Write an unpacked skill to `pack_dir/skills/<slug>/` with its origin;
/// returns the folder. Refuses to overwrite an existing folder.
pub fn vendor(
    pack_dir: &Path,
    registry: &str,
    r: &SkillRef,
    archive: &[u8],
    files: &[(String, Vec<u8>)],
    installed_at_ms: i64,
) -> Result<PathBuf, ClawHubError> {
    let dir = pack_dir.join("skills").join(&r.slug);
    if dir.exists() {
        return Err(ClawHubError::Exists(dir));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ClawHubError::Io { path, source }
    };
    let sha = |b: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(b)));
    // Staged beside the destination, then renamed into place whole.
    let stage = pack_dir.join("skills").join(format!(".{}.partial", r.slug));
    let _ = std::fs::remove_dir_all(&stage);
    for (rel, data) in files {
        let to = stage.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&to, data).map_err(io(&to))?;
    }
    let digests: BTreeMap<&str, String> = files.iter().map(|(p, d)| (p.as_str(), sha(d))).collect();
    let mut origin = serde_json::json!({
        "version": 1,
        "registry": registry,
        "slug": r.slug,
        "installedVersion": r.version,
        "installedAt": installed_at_ms,
        "missionctl": { "archiveSha256": sha(archive), "files": digests },
    });
    if let Some(o) = &r.owner {
        origin["ownerHandle"] = serde_json::json!(o);
    }
    let meta = stage.join(".clawhub");
    std::fs::create_dir_all(&meta).map_err(io(&meta))?;
    let o = meta.join("origin.json");
    std::fs::write(
        &o,
        format!(
            "{}\n",
            serde_json::to_string_pretty(&origin).unwrap_or_default()
        ),
    )
    .map_err(io(&o))?;
    std::fs::rename(&stage, &dir).map_err(io(&dir))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_pinned() {
        let r = parse_ref("@acme/leave-lookup@1.2.3").expect("ref");
        assert_eq!(
            (r.owner.as_deref(), r.slug.as_str(), r.version.as_str()),
            (Some("acme"), "leave-lookup", "1.2.3")
        );
        assert!(parse_ref("leave-lookup@0.1.0").is_ok());
        for bad in [
            "@acme/leave-lookup",
            "leave-lookup",
            "@acme/leave-lookup@latest",
            "@acme/../x@1.0.0",
            "@ac me/x@1.0.0",
            "@acme/Leave@1.0.0",
            "@acme/a/b@1.0.0",
        ] {
            assert!(parse_ref(bad).is_err(), "{bad}");
        }
    }
}
