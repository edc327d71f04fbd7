//! The pack repository format: where files live, how they load, and which
//! files a pack may read.
//!
//! ```text
//! mission.yaml                              repository config
//! policies/hard-constraints.yaml            rules no scope may break
//! policies/guardrails.yaml                  budget guardrails
//! policies/tiers.yaml                       personal / team / enterprise presets
//! packs/global/pack.yaml                    scope global
//! packs/domains/<domain>/pack.yaml          scope domain
//! packs/tenants/<tenant>/pack.yaml          scope tenant
//! packs/tenants/<tenant>/users/<user>/pack.yaml   scope user (of that tenant)
//! packs/users/<user>/pack.yaml              scope user (personal tier, no tenant)
//! ```
//!
//! A pack's scope is where its file lives; the `scope` it declares must agree.
//! Loading never stops at the first problem: every file is read, every
//! problem becomes a [`Diagnostic`], and what loaded cleanly is kept for the
//! semantic checks and for resolution.

pub mod model;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::diagnostic::{Code, Diagnostic, render::Sources};
use crate::git::{RefProblem, Tree};
use crate::schema::Kind;
use crate::yaml::{Node, Pos};
pub(crate) use file::valid_skill_name;
pub use model::*;

pub mod assertion;
mod cases;
mod file;
#[cfg(test)]
mod fuzz;
mod read;
use file::{PackLoad, load_pack};
pub(crate) use read::parse_checked;
use read::{load_doc, read_text, text_of, typed};

pub const MISSION_FILE: &str = "mission.yaml";
pub const HARD_CONSTRAINTS_FILE: &str = "policies/hard-constraints.yaml";
pub const GUARDRAILS_FILE: &str = "policies/guardrails.yaml";
pub const TIERS_FILE: &str = "policies/tiers.yaml";
pub const PACK_FILE: &str = "pack.yaml";
pub const CODEOWNERS_FILES: &[&str] = &[".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"];

/// Size caps: configuration is small, and a cap keeps a hostile or
/// accidental huge file from stalling validation or the reconciler.
pub const MAX_YAML_BYTES: u64 = 1024 * 1024;
pub const MAX_PROMPT_BYTES: u64 = 256 * 1024;

/// Where a pack file lives, which fixes its scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    Global,
    Domain(String),
    Tenant(String),
    TenantUser { tenant: String, user: String },
    PersonalUser(String),
}

impl Location {
    /// The location a pack file's path implies, if it is a place packs live.
    pub(crate) fn from_path(path: &str) -> Option<Location> {
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["packs", "global", "pack.yaml"] => Some(Location::Global),
            ["packs", "domains", d, "pack.yaml"] => Some(Location::Domain((*d).into())),
            ["packs", "tenants", t, "pack.yaml"] => Some(Location::Tenant((*t).into())),
            ["packs", "tenants", t, "users", u, "pack.yaml"] => Some(Location::TenantUser {
                tenant: (*t).into(),
                user: (*u).into(),
            }),
            ["packs", "users", u, "pack.yaml"] => Some(Location::PersonalUser((*u).into())),
            _ => None,
        }
    }

    pub fn scope_type(&self) -> ScopeType {
        match self {
            Location::Global => ScopeType::Global,
            Location::Domain(_) => ScopeType::Domain,
            Location::Tenant(_) => ScopeType::Tenant,
            Location::TenantUser { .. } | Location::PersonalUser(_) => ScopeType::User,
        }
    }

    pub fn scope_id(&self) -> &str {
        match self {
            Location::Global => "global",
            Location::Domain(d) => d,
            Location::Tenant(t) => t,
            Location::TenantUser { user, .. } | Location::PersonalUser(user) => user,
        }
    }

    pub fn tenant(&self) -> Option<&str> {
        match self {
            Location::Tenant(t) | Location::TenantUser { tenant: t, .. } => Some(t),
            _ => None,
        }
    }
}

/// Whose data a repository path holds, for the isolation rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone {
    Shared,
    Tenant(String),
    TenantUser(String, String),
    PersonalUser(String),
}

pub(crate) fn zone_of(path: &str) -> Zone {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["packs", "tenants", t, "users", u, _, ..] => Zone::TenantUser((*t).into(), (*u).into()),
        ["packs", "tenants", t, _, ..] => Zone::Tenant((*t).into()),
        ["packs", "users", u, _, ..] => Zone::PersonalUser((*u).into()),
        _ => Zone::Shared,
    }
}

/// Whether a pack at `loc` may read a file in `zone`; the code to report if not.
pub(crate) fn may_read(loc: &Location, zone: &Zone, bounds: &DataBoundaries) -> Result<(), Code> {
    let tenant_err = if bounds.tenant_isolation {
        Err(Code::TenantIsolation)
    } else {
        Ok(())
    };
    let user_err = if bounds.user_isolation {
        Err(Code::UserIsolation)
    } else {
        Ok(())
    };
    match zone {
        Zone::Shared => Ok(()),
        Zone::Tenant(t) => match loc {
            Location::Tenant(lt) | Location::TenantUser { tenant: lt, .. } if lt == t => Ok(()),
            _ => tenant_err,
        },
        Zone::TenantUser(t, u) => match loc {
            Location::TenantUser { tenant, user } if tenant == t && user == u => Ok(()),
            Location::TenantUser { tenant, .. } | Location::Tenant(tenant) if tenant == t => {
                user_err
            }
            _ => tenant_err,
        },
        Zone::PersonalUser(u) => match loc {
            Location::PersonalUser(lu) if lu == u => Ok(()),
            Location::PersonalUser(_) => user_err,
            _ => user_err.and(tenant_err),
        },
    }
}

/// A parsed and schema-valid file.
#[derive(Debug, Clone)]
pub struct Doc<T> {
    pub file: String,
    pub node: Node,
    pub value: T,
}

/// One prompt section with its text, as read from the referenced Markdown file.
#[derive(Debug, Clone)]
pub struct SectionText {
    pub id: String,
    /// The repository path the reference resolved to.
    pub file: String,
    pub text: Arc<str>,
    /// The family [`SectionText::tokens`] counts with.
    pub family: crate::tokens::Family,
    /// Counted on first use only (most checks settle on the byte bound).
    pub counted: std::sync::OnceLock<u64>,
    /// Where the section is declared in the pack file.
    pub pos: Pos,
}

impl SectionText {
    /// The exact token count, counted the first time it is asked for.
    pub fn tokens(&self) -> u64 {
        *self
            .counted
            .get_or_init(|| crate::tokens::count(&self.text, self.family))
    }

    /// Never below [`SectionText::tokens`], and free.
    pub fn tokens_upper_bound(&self) -> u64 {
        self.counted
            .get()
            .copied()
            .unwrap_or_else(|| crate::tokens::upper_bound(&self.text))
    }
}

/// An OpenClaw skill a pack adds: its SKILL.md, read through its reference.
#[derive(Debug, Clone)]
pub struct SkillText {
    /// The frontmatter `name` (also the skill's folder name).
    pub name: String,
    pub description: String,
    /// The repository path of the SKILL.md.
    pub file: String,
    pub text: Arc<str>,
    /// The folder's other files (scripts, references, templates), each as
    /// (path relative to the skill's folder, text), in path order.
    pub files: Vec<(String, Arc<str>)>,
    /// Where the skill is added in the pack file.
    pub pos: Pos,
}

/// The most a SKILL.md may hold.
pub const MAX_SKILL_BYTES: u64 = 64 * 1024;
/// The most files a skill's folder may hold besides SKILL.md.
pub const MAX_SKILL_FILES: usize = 64;
/// The most one of those files may hold.
pub const MAX_SKILL_FILE_BYTES: u64 = 256 * 1024;
/// The most a skill's folder may hold in all.
pub const MAX_SKILL_TOTAL_BYTES: usize = 1024 * 1024;

/// One assertion of an eval case (schema-checked), with typed access to the
/// fields the engine reads. It serialises as written, so what the registry
/// serves and the resolved digest are the author's text, not a re-encoding.
/// `value` is the value the assertion compares with: `file://` references
/// read and `{{var}}` expanded when the case was loaded, as promptfoo does.
#[derive(Debug, Clone, PartialEq)]
pub struct AssertSpec {
    /// `type`, e.g. `contains` or `not-is-json`.
    pub kind: String,
    pub value: Option<serde_json::Value>,
    pub threshold: Option<f64>,
    pub tag: Option<crate::model::Tag>,
    /// promptfoo's `weight` (default 1; 0 makes the assertion always pass).
    pub weight: f64,
    pub metric: Option<String>,
    /// `transform`, a supported expression on `output`.
    pub transform: Option<crate::js::transform::Transform>,
    /// An `assert-set`'s own assertions.
    pub children: Vec<AssertSpec>,
    /// Why it cannot run as written (see [`assertion::problem`]),
    /// decided when the case is loaded.
    pub problem: Option<String>,
    raw: serde_json::Value,
}

impl AssertSpec {
    pub fn new(raw: serde_json::Value) -> AssertSpec {
        use crate::model::Word;
        let str_of = |k: &str| raw.get(k).and_then(serde_json::Value::as_str);
        AssertSpec {
            kind: str_of("type").unwrap_or_default().to_string(),
            value: raw.get("value").cloned(),
            threshold: raw.get("threshold").and_then(serde_json::Value::as_f64),
            tag: str_of("tag").and_then(|t| crate::model::Tag::parse(t).ok()),
            weight: raw
                .get("weight")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(1.0),
            metric: str_of("metric").map(String::from),
            transform: str_of("transform")
                .and_then(|t| crate::js::transform::Transform::parse(t).ok()),
            children: raw
                .get("assert")
                .and_then(serde_json::Value::as_array)
                .map(|a| a.iter().cloned().map(AssertSpec::new).collect())
                .unwrap_or_default(),
            problem: None,
            raw,
        }
    }

    /// The assertion as written.
    pub fn raw(&self) -> &serde_json::Value {
        &self.raw
    }

    /// `assert-set`: a group scored as one assertion.
    pub fn is_set(&self) -> bool {
        self.kind == "assert-set"
    }
}

impl serde::Serialize for AssertSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

/// One eval case, as promptfoo reads a test.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalCase {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub vars: serde_json::Value,
    #[serde(rename = "assert")]
    pub asserts: Vec<AssertSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// `options.transform`: applied to the output before every assertion.
    #[serde(skip)]
    pub transform: Option<crate::js::transform::Transform>,
    /// The user message, rendered from the prompt template and `vars` (of
    /// a chat-format prompt, its last `user` message).
    #[serde(skip)]
    pub user: String,
    /// A chat-format prompt's messages, rendered: sent after the pack's
    /// system prompt instead of the one user message. Empty for a text prompt.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<ChatTurn>,
    pub file: String,
    pub line: u32,
}

impl EvalCase {
    /// Every assertion that produces a result, in order: top-level ones and
    /// the members of each `assert-set`, with the index of their set.
    pub fn leaves(&self) -> Vec<(&AssertSpec, Option<usize>)> {
        let mut out = Vec::new();
        for (i, a) in self.asserts.iter().enumerate() {
            if a.is_set() {
                out.extend(a.children.iter().map(|c| (c, Some(i))));
            } else {
                out.push((a, None));
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct PackDoc {
    pub file: String,
    pub node: Node,
    pub pack: Pack,
    pub location: Location,
    pub sections: Vec<SectionText>,
    pub cases: Vec<EvalCase>,
    pub skills: Vec<SkillText>,
    /// sha256 of the pack file and every file it references: changes iff the
    /// pack's own content changes (what `--base` version checks compare).
    pub own_digest: String,
}

impl PackDoc {
    pub fn version(&self) -> Option<semver::Version> {
        semver::Version::parse(&self.pack.version).ok()
    }

    pub fn prompt_tokens(&self) -> u64 {
        self.sections.iter().map(SectionText::tokens).sum()
    }

    /// The prompt sections in the pack's own directory (or below it). A
    /// section may reference shared text elsewhere in the repository (a
    /// global safety clause, say): that file is another pack's or nobody's,
    /// so only these are the pack's own to rewrite.
    pub fn own_sections(&self) -> impl Iterator<Item = &SectionText> {
        let dir = crate::git::parent_dir(&self.file);
        self.sections.iter().filter(move |s| {
            dir.is_empty()
                || s.file
                    .strip_prefix(dir)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// Never below [`PackDoc::prompt_tokens`]; exact where already counted.
    pub fn prompt_tokens_upper_bound(&self) -> u64 {
        self.sections
            .iter()
            .map(SectionText::tokens_upper_bound)
            .sum()
    }
}

/// Everything in a repository at one revision, loaded and indexed.
#[derive(Default)]
pub struct Repo {
    pub label: String,
    pub commit: Option<crate::git::CommitId>,
    pub mission: Option<Doc<Mission>>,
    pub hard: Option<Doc<HardConstraints>>,
    pub guardrails: Option<Doc<Guardrails>>,
    pub tiers: Option<Doc<Tiers>>,
    pub packs: Vec<PackDoc>,
    pub by_id: HashMap<String, usize>,
    pub global: Option<usize>,
    pub domains: BTreeMap<String, usize>,
    pub tenants: BTreeMap<String, usize>,
    pub tenant_users: BTreeMap<(String, String), usize>,
    pub personal_users: BTreeMap<String, usize>,
    pub codeowners: Option<String>,
    pub sources: HashMap<String, Arc<str>>,
    pub diagnostics: Vec<Diagnostic>,
    /// Raw bytes digests of policy files, to flag policy changes.
    pub policy_digests: BTreeMap<String, String>,
    /// The encoding prompt sizes are counted with (mission.yaml's harness model).
    pub token_family: crate::tokens::Family,
    /// Pack files that exist but did not load (syntax or schema errors).
    /// Resolution refuses chains through them rather than silently skip a layer.
    pub failed_packs: std::collections::BTreeSet<String>,
}

impl Sources for Repo {
    fn text(&self, file: &str) -> Option<&str> {
        self.sources.get(file).map(|s| &**s)
    }
}

impl Repo {
    pub fn pack(&self, id: &str) -> Option<&PackDoc> {
        self.by_id.get(id).map(|i| &self.packs[*i])
    }

    pub(crate) fn boundaries(&self) -> DataBoundaries {
        self.hard
            .as_ref()
            .and_then(|h| h.value.data_boundaries.clone())
            .unwrap_or(DataBoundaries {
                tenant_isolation: true,
                user_isolation: true,
            })
    }

    pub(crate) fn default_tier(&self) -> Tier {
        self.mission.as_ref().map_or(Tier::Team, |m| m.value.tier)
    }

    /// `openclaw:` in mission.yaml, with OpenClaw's defaults.
    pub fn openclaw(&self) -> crate::openclaw::Settings {
        self.mission
            .as_ref()
            .map(|m| crate::openclaw::Settings::from_mission(&m.value.openclaw))
            .unwrap_or_default()
    }
}

/// Load the repository from a tree. Never fails: problems are diagnostics.
pub fn load(tree: &Tree) -> Repo {
    let mut r = load_config(tree);
    let bounds = r.boundaries();
    let pack_files: Vec<&str> = tree
        .paths_under("packs")
        .into_iter()
        .filter(|p| p.ends_with("/pack.yaml") || p.ends_with("/pack.yml"))
        .collect();
    add_packs(&mut r, tree, &pack_files, &bounds);
    // A symlink out of the repository is never followed; where packs and
    // policies live, say so rather than let a directory vanish silently.
    for (link, why) in tree.escapes() {
        if link.starts_with("packs/") || link.starts_with("policies/") {
            r.diagnostics.push(
                Diagnostic::error(
                    Code::RefEscape,
                    link,
                    Pos::UNKNOWN,
                    format!("{why}: missionctl follows symlinks only within the repository"),
                )
                .help("replace the symlink with the files, or point it inside the repository"),
            );
        }
    }
    if r.global.is_none()
        && let Some(what) = tree.not_a_file("packs/global/pack.yaml")
    {
        r.diagnostics.push(
            Diagnostic::error(
                Code::RefNotFile,
                "packs/global/pack.yaml",
                Pos::UNKNOWN,
                format!("packs/global/pack.yaml is {what}, not a file"),
            )
            .help(
                "replace it with the global pack's YAML file (`missionctl init` writes an example)",
            ),
        );
    } else if r.global.is_none() && !pack_files.contains(&"packs/global/pack.yaml") {
        r.diagnostics.push(
            Diagnostic::error(
                Code::FileMissing,
                "packs/global/pack.yaml",
                Pos::UNKNOWN,
                "the global pack is missing",
            )
            .help("every chain starts at the global scope; `missionctl init` writes an example"),
        );
    }
    r
}

/// `mission.yaml` alone, for callers that need one setting (the main
/// branch, the store URL) without loading policies and packs. A file that is
/// missing or does not validate gives `None`; `validate` reports why.
pub fn mission(tree: &Tree) -> Option<Mission> {
    let repo = tree.repo();
    let doc: Doc<Mission> = load_doc(
        tree,
        repo.as_ref(),
        MISSION_FILE,
        Kind::Mission,
        &mut HashMap::new(),
        &mut Vec::new(),
    )?;
    Some(doc.value)
}

/// Configuration and policies only.
fn load_config(tree: &Tree) -> Repo {
    let repo_handle = tree.repo();
    let repo_ref = repo_handle.as_ref();
    let mut r = Repo {
        label: tree.label.clone(),
        commit: tree.commit,
        ..Repo::default()
    };
    let mut diags = Vec::new();
    let mut sources = HashMap::new();
    r.mission = load_doc(
        tree,
        repo_ref,
        MISSION_FILE,
        Kind::Mission,
        &mut sources,
        &mut diags,
    );
    r.token_family = r
        .mission
        .as_ref()
        .and_then(|m| m.value.eval.pointer("/harness/model"))
        .and_then(serde_json::Value::as_str)
        .map(crate::tokens::Family::for_model)
        .unwrap_or_default();
    r.hard = load_doc(
        tree,
        repo_ref,
        HARD_CONSTRAINTS_FILE,
        Kind::HardConstraints,
        &mut sources,
        &mut diags,
    );
    r.guardrails = load_doc(
        tree,
        repo_ref,
        GUARDRAILS_FILE,
        Kind::Guardrails,
        &mut sources,
        &mut diags,
    );
    r.tiers = load_doc(
        tree,
        repo_ref,
        TIERS_FILE,
        Kind::Tiers,
        &mut sources,
        &mut diags,
    );
    for f in [HARD_CONSTRAINTS_FILE, GUARDRAILS_FILE, TIERS_FILE] {
        if let Some(t) = sources.get(f) {
            r.policy_digests
                .insert(f.to_string(), hex::encode(Sha256::digest(t.as_bytes())));
        }
    }
    for p in tree.paths_under("policies") {
        if ![HARD_CONSTRAINTS_FILE, GUARDRAILS_FILE, TIERS_FILE].contains(&p)
            && (p.ends_with(".yaml") || p.ends_with(".yml"))
        {
            diags.push(
                Diagnostic::warning(
                    Code::FileUnexpected,
                    p,
                    // The whole file: its first line, so every renderer shows file:line:col.
                    Pos { line: 1, col: 1 },
                    "missionctl does not read this policy file",
                )
                .help("policies live in hard-constraints.yaml, guardrails.yaml and tiers.yaml"),
            );
        }
    }
    for f in CODEOWNERS_FILES {
        if tree.contains(f)
            && let Ok(b) = tree.read(f, MAX_YAML_BYTES, repo_ref)
        {
            r.codeowners = text_of(b).ok();
            break;
        }
    }
    r.sources = sources;
    r.diagnostics = diags;
    r
}

/// Load only what one chain needs: configuration, policies and the pack
/// files on the chain. Used to serve a single resolution fast on a large
/// repository; the result resolves exactly as a full load would.
pub fn load_chain(tree: &Tree, key: &ChainKey) -> Repo {
    let mut r = load_config(tree);
    let bounds = r.boundaries();
    let domain_file = |d: &str| format!("packs/domains/{d}/pack.yaml");
    let mut domain = key.domain.clone();
    if !tree.contains(&domain_file(&domain))
        && let Some(stripped) = domain.strip_suffix("-pack")
        && tree.contains(&domain_file(stripped))
    {
        domain = stripped.to_string();
    }
    let mut files = vec!["packs/global/pack.yaml".to_string(), domain_file(&domain)];
    match (&key.tenant, &key.user) {
        (Some(t), u) => {
            files.push(format!("packs/tenants/{t}/pack.yaml"));
            if let Some(u) = u {
                files.push(format!("packs/tenants/{t}/users/{u}/pack.yaml"));
            }
        }
        (None, Some(u)) => files.push(format!("packs/users/{u}/pack.yaml")),
        (None, None) => {}
    }
    let present: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|f| tree.contains(f))
        .collect();
    add_packs(&mut r, tree, &present, &bounds);
    r
}

/// Configuration, policies and only the pack files `files` (paths of
/// `pack.yaml` files): a partial repository for checks that concern a few
/// packs (the marketplace's compatibility report, a catalog's index).
pub fn load_files(tree: &Tree, files: &[&str]) -> Repo {
    let mut r = load_config(tree);
    let bounds = r.boundaries();
    let present: Vec<&str> = files.iter().copied().filter(|f| tree.contains(f)).collect();
    add_packs(&mut r, tree, &present, &bounds);
    r
}

fn add_packs(r: &mut Repo, tree: &Tree, pack_files: &[&str], bounds: &DataBoundaries) {
    let family = r.token_family;
    let loads: Vec<PackLoad> = pack_files
        .par_iter()
        .map_init(
            || tree.repo(),
            |repo, file| load_pack(tree, repo.as_ref(), file, bounds, family),
        )
        .collect();
    for (l, file) in loads.into_iter().zip(pack_files) {
        if l.doc.is_none() {
            r.failed_packs.insert((*file).to_string());
        }
        r.diagnostics.extend(l.diags);
        for (k, v) in l.sources {
            r.sources.insert(k, v);
        }
        let Some(doc) = l.doc else { continue };
        let idx = r.packs.len();
        if let Some(&prev) = r.by_id.get(&doc.pack.id) {
            let p = &r.packs[prev];
            let d = Diagnostic::error(
                Code::DuplicateId,
                &doc.file,
                doc.node.pos_at("/id"),
                format!("pack id `{}` is already used by `{}`", doc.pack.id, p.file),
            )
            .related(&p.file, p.node.pos_at("/id"), "first used here")
            .help("pack ids are unique across the repository");
            r.diagnostics.push(d);
            continue;
        }
        r.by_id.insert(doc.pack.id.clone(), idx);
        match &doc.location {
            Location::Global => r.global = Some(idx),
            Location::Domain(d) => {
                r.domains.insert(d.clone(), idx);
            }
            Location::Tenant(t) => {
                r.tenants.insert(t.clone(), idx);
            }
            Location::TenantUser { tenant, user } => {
                r.tenant_users.insert((tenant.clone(), user.clone()), idx);
            }
            Location::PersonalUser(u) => {
                r.personal_users.insert(u.clone(), idx);
            }
        }
        r.packs.push(doc);
    }
}
