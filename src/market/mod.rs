//! The domain-pack marketplace: catalogs of domain packs published from any
//! pack repository, read as data, checked against the installing fleet's own
//! rules before anything is proposed, and installed or upgraded only as a
//! branch (and pull request) that goes through the fleet's gate.
//!
//! - [`index`]: build a catalog's index from a pack repository's history;
//! - [`fetch`]: the catalogs `mission.yaml` lists, fetched, cached, checked;
//! - [`compat`]: the compatibility report (the real validator on the pack
//!   placed, in memory, in the fleet's repository);
//! - [`install`]: `add`, `verify` and `upgrade` with the provenance lock.
//!
//! Nothing from a catalog is ever executed: its files are bytes checked
//! against their digests and written under `packs/domains/<id>/`.

pub mod compat;
pub mod fetch;
pub mod index;
pub mod install;
pub mod publish;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The index format's version (`missionctl_catalog`).
pub const FORMAT: u32 = 1;
/// The lock file written in every installed pack's folder.
pub const LOCK_FILE: &str = "market.lock.json";
/// Caps on what a catalog may make missionctl read.
pub const MAX_INDEX_BYTES: u64 = 16 << 20;
pub const MAX_PACK_FILES: usize = 200;
pub const MAX_FILE_BYTES: u64 = 1 << 20;
pub const MAX_PACK_BYTES: u64 = 4 << 20;

/// A catalog index (`schema/market-index.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogIndex {
    pub missionctl_catalog: u32,
    pub name: String,
    pub source: RepoRef,
    pub packs: Vec<PackEntry>,
}

/// A repository at one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoRef {
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    pub commit: String,
}

/// One domain pack of a catalog, every version it published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackEntry {
    /// The install id: the pack's folder under `packs/domains/`.
    pub id: String,
    /// The pack's own `id:`.
    pub pack_id: String,
    pub domain: String,
    pub description: String,
    pub license: Option<String>,
    pub maintainers: Vec<String>,
    /// Oldest first.
    pub versions: Vec<VersionEntry>,
}

impl PackEntry {
    /// The newest version (highest semver).
    pub fn latest(&self) -> Option<&VersionEntry> {
        self.versions
            .iter()
            .max_by(|a, b| semver_cmp(&a.version, &b.version))
    }

    pub fn version(&self, v: &str) -> Option<&VersionEntry> {
        self.versions.iter().find(|e| e.version == v)
    }

    /// Whether every word (lower-case) is in the pack's id, pack id,
    /// domain, description, or version `v`'s tools and contracts, or the
    /// maintainers: what `market search` and the console's search match.
    pub fn matches(&self, v: &VersionEntry, words: &[String]) -> bool {
        let contracts: Vec<&str> = v.contracts.iter().map(|c| c.id.as_str()).collect();
        let hay = format!(
            "{} {} {} {} {} {} {}",
            self.id,
            self.pack_id,
            self.domain,
            self.description,
            v.tools.allow.join(" "),
            contracts.join(" "),
            self.maintainers.join(" ")
        )
        .to_lowercase();
        words.iter().all(|w| hay.contains(w.as_str()))
    }
}

fn semver_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// One published version: where its files are, their digests, and the
/// facts a team decides on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionEntry {
    pub version: String,
    pub source: SourceRef,
    pub files: Vec<FileDigest>,
    /// `sha256:` over the sorted `path sha256` lines of `files`.
    pub digest: String,
    pub tools: ToolsFacts,
    pub contracts: Vec<ContractFacts>,
    pub eval_cases: CaseCounts,
    pub kpis: serde_json::Value,
    pub prompt_tokens: u64,
    pub evidence: Option<serde_json::Value>,
}

/// Where a version's files are: a repository, a commit, a folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRef {
    pub repository: String,
    pub commit: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// Relative to the pack's folder.
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsFacts {
    pub autonomy: Option<String>,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractFacts {
    pub id: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseCounts {
    pub total: u64,
    /// Cases with at least one assertion of the tag.
    pub by_tag: BTreeMap<String, u64>,
}

/// The provenance lock an installed pack carries
/// (`packs/domains/<id>/market.lock.json`, `schema/market-lock.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub missionctl_market_lock: u32,
    pub catalog: String,
    pub id: String,
    pub pack_id: String,
    pub version: String,
    pub source: SourceRef,
    pub digest: String,
    pub files: Vec<FileDigest>,
}

/// What a version's files say about themselves: what the index must claim.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Facts {
    pub version: String,
    pub pack_id: String,
    pub tools: ToolsFacts,
    pub contracts: Vec<ContractFacts>,
    pub eval_cases: CaseCounts,
    pub kpis: serde_json::Value,
    pub prompt_tokens: u64,
}

/// The facts of a loaded pack.
pub fn facts_of(p: &crate::pack::PackDoc) -> Facts {
    let mut cases = CaseCounts {
        total: p.cases.len() as u64,
        ..CaseCounts::default()
    };
    for case in &p.cases {
        let mut tags: Vec<&str> = case
            .leaves()
            .iter()
            .filter_map(|(a, _)| a.raw().get("tag").and_then(|t| t.as_str()))
            .collect();
        tags.sort_unstable();
        tags.dedup();
        for t in tags {
            *cases.by_tag.entry(t.to_string()).or_default() += 1;
        }
    }
    Facts {
        version: p.pack.version.clone(),
        pack_id: p.pack.id.clone(),
        tools: ToolsFacts {
            autonomy: p.pack.tools.autonomy.map(|a| a.to_string()),
            allow: p.pack.tools.allow.clone().unwrap_or_default(),
            deny: p.pack.tools.deny.clone(),
        },
        contracts: p
            .pack
            .eval
            .contracts
            .iter()
            .map(|(k, v)| ContractFacts {
                id: k.clone(),
                description: v
                    .get("description")
                    .and_then(|d| d.as_str())
                    .map(str::to_string),
            })
            .collect(),
        eval_cases: cases,
        kpis: p
            .node
            .get("kpis")
            .map_or(serde_json::Value::Null, crate::yaml::Node::to_json),
        prompt_tokens: p.prompt_tokens(),
    }
}

/// The index's claims about version `v` of `entry` against what its
/// verified files say (`facts`): a catalog cannot show a pack as narrower,
/// better tested or another version than its files are. Token counts are
/// not compared (they depend on each fleet's model); the report shows the
/// fleet's own.
pub fn check_claims(entry: &PackEntry, v: &VersionEntry, facts: &Facts) -> Result<(), MarketError> {
    let mut wrong = Vec::new();
    if v.version != facts.version {
        wrong.push(format!(
            "version `{}` (pack.yaml says `{}`)",
            v.version, facts.version
        ));
    }
    if entry.pack_id != facts.pack_id {
        wrong.push(format!(
            "pack_id `{}` (pack.yaml says `{}`)",
            entry.pack_id, facts.pack_id
        ));
    }
    if v.tools != facts.tools {
        wrong.push("tools (allow, deny or autonomy)".into());
    }
    if v.contracts != facts.contracts {
        wrong.push("contracts".into());
    }
    if v.eval_cases != facts.eval_cases {
        wrong.push(format!(
            "eval_cases ({} claimed, {} in the files)",
            v.eval_cases.total, facts.eval_cases.total
        ));
    }
    if v.kpis != facts.kpis {
        wrong.push("kpis".into());
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(MarketError::Refused(format!(
            "{}@{}: the index's {} do not match its verified files; the index was edited after it was built, so nothing from it is shown as fact or installed",
            entry.id,
            shown(&v.version),
            wrong
                .iter()
                .map(|w| shown(w))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// Catalog text for an error message: control and bidirectional
/// characters escaped, at most 200 characters.
pub fn shown(s: &str) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == 200 {
            out.push('…');
            break;
        }
        if c.is_control() || crate::model::is_bidi_control(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// What went wrong, naming the catalog, file or field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    #[error("{file}: {field}: {message}")]
    Config {
        file: String,
        field: String,
        message: String,
    },
    #[error("catalog `{catalog}`: {message}")]
    Catalog { catalog: String, message: String },
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl MarketError {
    fn catalog(name: &str, message: impl Into<String>) -> MarketError {
        MarketError::Catalog {
            catalog: name.to_string(),
            message: message.into(),
        }
    }
}

/// `sha256:` over the sorted `path sha256` lines of `files`: the whole
/// pack's digest.
pub fn pack_digest(files: &[FileDigest]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&FileDigest> = files.iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    for f in sorted {
        h.update(f.path.as_bytes());
        h.update(b" ");
        h.update(f.sha256.as_bytes());
        h.update(b"\n");
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Whether `id` may name a folder under `packs/domains/`: lower-case
/// letters, digits and `-`, starting with a letter or digit, at most 64.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

/// Whether `rel` (a path inside a pack's folder) stays inside it and is a
/// plain file name git and every terminal treat alike: relative, no `.`/`..`
/// or empty components, no backslashes, no control or bidirectional
/// characters, and no component naming git's own files (`.git`,
/// `.gitattributes`, `.gitmodules`…: attributes and submodules would change
/// how the fleet's checkout reads the pack).
pub fn safe_rel_path(rel: &str) -> bool {
    !rel.is_empty()
        && rel.len() <= 512
        && !rel.starts_with('/')
        && !rel.contains('\\')
        && !rel
            .chars()
            .any(|c| c.is_control() || crate::model::is_bidi_control(c))
        && rel.split('/').all(|c| {
            !c.is_empty() && c != "." && c != ".." && !c.to_ascii_lowercase().starts_with(".git")
        })
}

/// `files` (path → bytes) as digests, sorted by path.
pub fn digests(files: &BTreeMap<String, Vec<u8>>) -> Vec<FileDigest> {
    files
        .iter()
        .map(|(p, b)| FileDigest {
            path: p.clone(),
            sha256: sha256_hex(b),
            bytes: b.len() as u64,
        })
        .collect()
}

/// Check `files` against the digests a catalog or lock promised: the same
/// paths, each with its sha256. The first difference is named.
pub fn check_digests(
    what: &str,
    files: &BTreeMap<String, Vec<u8>>,
    promised: &[FileDigest],
) -> Result<(), MarketError> {
    let have = digests(files);
    for p in promised {
        match have.iter().find(|h| h.path == p.path) {
            None => {
                return Err(MarketError::Refused(format!(
                    "{what}: `{}` is listed with sha256 {} but the source has no such file; the catalog does not match its repository, so nothing was installed",
                    p.path, p.sha256
                )));
            }
            Some(h) if h.sha256 != p.sha256 => {
                return Err(MarketError::Refused(format!(
                    "{what}: `{}` has sha256 {} but the catalog promises {}; the content changed after it was indexed (or was tampered with), so nothing was installed",
                    p.path, h.sha256, p.sha256
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = have
        .iter()
        .find(|h| !promised.iter().any(|p| p.path == h.path))
    {
        return Err(MarketError::Refused(format!(
            "{what}: the source has `{}`, which the catalog does not list; nothing was installed",
            extra.path
        )));
    }
    Ok(())
}

/// Catalog text made inert in Markdown (terminal and pull request body):
/// Markdown punctuation backslash-escaped, `<`/`>`/`&` as entities (no HTML
/// reaches GitHub), `@` followed by a word joiner (no mention pings a team),
/// line breaks folded and control characters dropped.
pub fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '|' | '!' | '~' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '@' => out.push_str("@\u{2060}"),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() || crate::model::is_bidi_control(c) => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_text_is_inert_in_markdown() {
        let e = md_escape(
            "<img src=x onerror=alert(1)> **hi** @acme/security [x](javascript:y)\n# h\u{202e}",
        );
        assert!(
            !e.contains('<') && !e.contains("**") && !e.contains('\n'),
            "{e}"
        );
        assert!(
            e.contains("@\u{2060}acme") && !e.contains('\u{202e}'),
            "{e}"
        );
        assert!(e.contains("\\[x\\]\\(javascript"), "{e}");
    }

    #[test]
    fn ids_and_paths_that_escape_are_refused() {
        assert!(valid_id("hr-ops"));
        for bad in ["", "-x", "HR", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad}");
        }
        assert!(safe_rel_path("prompts/role.md"));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
            "a\0",
            "a\nb",
            "x\u{1b}[2J",
            "a\u{202e}b",
            ".git/config",
            "p/.gitattributes",
            ".GitModules",
        ] {
            assert!(!safe_rel_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_pack_digest_ignores_order_and_sees_every_byte() {
        let mut f = BTreeMap::new();
        f.insert("pack.yaml".to_string(), b"id: x".to_vec());
        f.insert("a.md".to_string(), b"hello".to_vec());
        let d = digests(&f);
        let mut rev = d.clone();
        rev.reverse();
        assert_eq!(pack_digest(&d), pack_digest(&rev));
        f.insert("a.md".to_string(), b"hellO".to_vec());
        assert_ne!(pack_digest(&d), pack_digest(&digests(&f)));
        assert!(
            check_digests("t", &f, &d)
                .unwrap_err()
                .to_string()
                .contains("a.md")
        );
        f.insert("a.md".to_string(), b"hello".to_vec());
        assert!(check_digests("t", &f, &d).is_ok());
        f.insert("extra.md".to_string(), b"!".to_vec());
        assert!(
            check_digests("t", &f, &d)
                .unwrap_err()
                .to_string()
                .contains("extra.md")
        );
    }
}
