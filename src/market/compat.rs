//! The compatibility report: a catalog pack placed, in memory, at
//! `packs/domains/<id>/` of this fleet's main branch, and the real validator
//! run with and without it. What the placement adds (errors and warnings
//! that were not there before) is what the pack would bring; the rest
//! (tools the policies forbid, the scope chains it adds, its prompt size
//! against the ceiling) is read off the same load.
//!
//! The load is partial, for speed on large fleets: configuration, policies,
//! the global pack, the pack itself and every tenant pack (the chains a
//! domain pack joins end at tenants and their users; user packs only
//! narrow). The gate on the pull request validates the whole fleet.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use super::MarketError;
use crate::diagnostic::{Code, Diagnostic};
use crate::git::Tree;
use crate::pack::{self, Location};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub id: String,
    pub version: String,
    /// The fleet revision checked ("main at 1a2b3c4d5e6f").
    pub fleet: String,
    /// No new error: the pack validates under this fleet's rules.
    pub validates: bool,
    /// What placing the pack adds, errors first.
    pub problems: Vec<Finding>,
    /// Tools the pack allows that this fleet's hard constraints forbid.
    pub forbidden_tools: Vec<String>,
    pub autonomy: Option<String>,
    /// The hard constraints' autonomy ceiling.
    pub max_autonomy: Option<String>,
    pub prompt_tokens: u64,
    /// The hard constraints' prompt ceiling (a whole chain's prompt).
    pub max_prompt_tokens: Option<u64>,
    /// The largest chain it joins: global + this pack + the largest tenant.
    pub largest_chain_tokens: u64,
    pub chains: Chains,
    /// The version installed now, when the pack is installed.
    pub installed: Option<String>,
    /// What the files say about themselves (the catalog's claims are checked
    /// against these: [`super::check_claims`]); None when the pack did not load.
    pub facts: Option<super::Facts>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: String,
    pub code: String,
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
    pub help: Option<String>,
}

impl From<&Diagnostic> for Finding {
    fn from(d: &Diagnostic) -> Finding {
        Finding {
            severity: if d.is_error() { "error" } else { "warning" }.into(),
            code: d.code.to_string(),
            file: d.file.clone(),
            line: d.line,
            col: d.col,
            message: d.message.clone(),
            help: d.help.clone(),
        }
    }
}

/// The scope chains the pack would add.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Chains {
    pub domain: String,
    /// Tenants that serve the domain (their `domains:` list it, or is unset).
    pub tenants: Vec<String>,
    /// Users of those tenants (a chain each).
    pub tenant_users: usize,
    /// Personal users (their packs' `domains:` decide which they join).
    pub personal_users: usize,
    /// Chains in all: the domain's own, one per tenant and one per tenant user.
    pub total: usize,
}

/// The fleet at `root` as the gate's base sees it: the main branch (from
/// `mission.yaml`), else HEAD, else the work tree when `root` is no git
/// repository. Fully indexed, so an overlay can be placed on it.
pub fn fleet_tree(root: &Path) -> Result<Tree, MarketError> {
    if crate::git::open(root).is_err() {
        return Ok(Tree::work_tree(root)?);
    }
    let main = Tree::at_rev_lazy(root, "HEAD")
        .ok()
        .and_then(|t| pack::mission(&t))
        .map_or_else(|| "main".to_string(), |m| m.main_branch().to_string());
    Tree::at_rev(root, &format!("refs/heads/{main}"))
        .map(|mut t| {
            t.label = main.clone();
            t
        })
        .or_else(|_| Ok(Tree::at_rev(root, "HEAD")?))
}

/// Place `files` (a version of catalog pack `id`) into the fleet tree
/// `before` (fully indexed: [`fleet_tree`], or a commit's tree) and report.
pub fn report(
    before: Tree,
    id: &str,
    version: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Report, MarketError> {
    let fleet = match before.commit {
        Some(c) => format!("{} at {:.12}", before.label, c.to_string()),
        None => before.label.clone(),
    };
    let dir = format!("packs/domains/{id}");
    let pack_file = format!("{dir}/pack.yaml");
    let all: Vec<String> = before
        .paths_under("packs")
        .into_iter()
        .filter(|p| p.ends_with("/pack.yaml"))
        .map(str::to_string)
        .collect();
    // Loaded: the global pack, the pack, and the tenants that serve its
    // domain (the chains it joins). Every other pack's `id:` alone is read,
    // so an id the pack shares with any of them is still caught.
    let mut selected: Vec<&str> = vec!["packs/global/pack.yaml", &pack_file];
    let (mut tenant_users, mut personal_users) = (BTreeMap::<String, usize>::new(), 0);
    let mut others: Vec<&str> = Vec::new();
    let handle = before.repo();
    for p in &all {
        match Location::from_path(p) {
            Some(Location::Tenant(_)) if serves(&before, handle.as_ref(), p, id) => {
                selected.push(p);
            }
            Some(Location::Tenant(_) | Location::Domain(_)) if p != &pack_file => others.push(p),
            Some(Location::TenantUser { tenant, .. }) => {
                *tenant_users.entry(tenant).or_default() += 1;
                others.push(p);
            }
            Some(Location::PersonalUser(_)) => {
                personal_users += 1;
                others.push(p);
            }
            _ => {}
        }
    }
    let old = pack::load_files(&before, &selected);
    let installed = old
        .packs
        .iter()
        .find(|p| p.file == pack_file)
        .map(|p| p.pack.version.clone());
    let seen: BTreeSet<String> = crate::validate::validate(&old, None)
        .iter()
        .map(key)
        .collect();
    let after = before.with_overlay(&dir, files).ok_or_else(|| {
        MarketError::Refused("the fleet's tree could not take the pack in memory".into())
    })?;
    let new = pack::load_files(&after, &selected);
    let mut problems: Vec<Finding> = crate::validate::validate(&new, None)
        .iter()
        .filter(|d| !seen.contains(&key(d)))
        .map(Finding::from)
        .collect();
    // User packs are not loaded (there may be tens of thousands); their ids
    // are read alone, so an id the pack shares with one is still caught.
    if let Some(p) = new.domains.get(id).map(|i| &new.packs[*i])
        && let Some(other) = pack_with_id(&after, &others, &p.pack.id)
    {
        problems.push(Finding {
            severity: "error".into(),
            code: Code::DuplicateId.as_str().into(),
            file: p.file.clone(),
            line: 1,
            col: 1,
            message: format!(
                "pack id `{}` is already used by `{other}`; pack ids are unique across the fleet",
                p.pack.id
            ),
            help: Some("the catalog's pack cannot be installed beside it; ask the catalog for another id, or retire the other pack".into()),
        });
    }
    problems.sort_by_key(|f| f.severity != "error");
    let forbidden_tools: Vec<String> = new
        .pack(
            &new.domains
                .get(id)
                .map(|i| new.packs[*i].pack.id.clone())
                .unwrap_or_default(),
        )
        .and_then(|p| p.pack.tools.allow.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| {
            problems.iter().any(|f| {
                f.code == Code::ForbiddenTool.as_str() && f.message.contains(&format!("`{t}`"))
            })
        })
        .collect();
    let this = new.domains.get(id).map(|i| &new.packs[*i]);
    let facts = this.map(super::facts_of);
    let tokens = |l: &Location| {
        new.packs
            .iter()
            .filter(|p| &p.location == l)
            .map(pack::PackDoc::prompt_tokens_upper_bound)
            .max()
            .unwrap_or(0)
    };
    let mut chains = Chains {
        domain: id.to_string(),
        personal_users,
        ..Chains::default()
    };
    let mut largest_tenant = 0;
    for p in &new.packs {
        if let Location::Tenant(t) = &p.location
            && p.pack
                .domains
                .as_ref()
                .is_none_or(|d| d.iter().any(|x| x == id))
        {
            chains.tenants.push(t.clone());
            chains.tenant_users += tenant_users.get(t).copied().unwrap_or(0);
            largest_tenant = largest_tenant.max(p.prompt_tokens_upper_bound());
        }
    }
    chains.total = 1 + chains.tenants.len() + chains.tenant_users;
    let prompt_tokens = this.map_or(0, pack::PackDoc::prompt_tokens);
    Ok(Report {
        id: id.to_string(),
        version: version.to_string(),
        fleet,
        validates: !problems.iter().any(|f| f.severity == "error"),
        forbidden_tools,
        autonomy: this.and_then(|p| p.pack.tools.autonomy.map(|a| a.to_string())),
        max_autonomy: new.hard.as_ref().map(|h| h.value.max_autonomy.to_string()),
        prompt_tokens,
        max_prompt_tokens: new.hard.as_ref().map(|h| h.value.max_prompt_tokens),
        largest_chain_tokens: tokens(&Location::Global) + prompt_tokens + largest_tenant,
        chains,
        installed,
        problems,
        facts,
    })
}

/// The first of `files` (packs not loaded) whose `id:` is `id`. Only a
/// file holding the id's text at all is parsed.
fn pack_with_id(tree: &Tree, files: &[&str], id: &str) -> Option<String> {
    let repo = tree.repo();
    files.iter().find_map(|f| {
        let bytes = tree.read(f, pack::MAX_YAML_BYTES, repo.as_ref()).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        if !text.contains(id) {
            return None;
        }
        let node = crate::yaml::parse(text).ok()?;
        (node.get("id")?.as_str()? == id).then(|| (*f).to_string())
    })
}

/// Whether tenant pack `file` serves domain `id`: its `domains:` lists it,
/// or it has none (a tenant without the list serves every domain). A file
/// that does not parse is loaded (the validator says why).
fn serves(tree: &Tree, repo: Option<&crate::git::Repo>, file: &str, id: &str) -> bool {
    let Ok(bytes) = tree.read(file, pack::MAX_YAML_BYTES, repo) else {
        return true;
    };
    let Some(node) = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|t| crate::yaml::parse(t).ok())
    else {
        return true;
    };
    match node.get("domains").map(crate::yaml::Node::to_json) {
        Some(serde_json::Value::Array(list)) => list.iter().any(|d| d.as_str() == Some(id)),
        _ => true,
    }
}

/// A diagnostic as compared before and after: code, file and message (a
/// placement moves no other file's lines).
fn key(d: &Diagnostic) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}",
        d.code, d.file, d.line, d.message
    )
}

impl Report {
    /// The report as Markdown, for a terminal and a pull request body.
    /// Every text from the catalog or the pack is escaped.
    pub fn markdown(&self) -> String {
        use std::fmt::Write;
        let e = super::md_escape;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "**Compatibility with this fleet** ({}): {}",
            e(&self.fleet),
            if self.validates {
                "validates under this fleet's hard constraints, policies and tiers"
            } else {
                "**does not validate** under this fleet's rules"
            }
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "- Autonomy: {} (ceiling {})",
            e(self.autonomy.as_deref().unwrap_or("unset")),
            e(self.max_autonomy.as_deref().unwrap_or("none"))
        );
        let _ = writeln!(
            s,
            "- Prompt: {} tokens; largest chain it joins about {} (ceiling {})",
            self.prompt_tokens,
            self.largest_chain_tokens,
            self.max_prompt_tokens
                .map_or("none".into(), |m| m.to_string())
        );
        if !self.forbidden_tools.is_empty() {
            let t: Vec<String> = self
                .forbidden_tools
                .iter()
                .map(|t| format!("`{}`", e(t)))
                .collect();
            let _ = writeln!(s, "- Tools this fleet forbids: {}", t.join(", "));
        }
        let _ = writeln!(
            s,
            "- Scope chains it serves: {} (domain {}; tenants: {}; {} tenant users; {} personal users decide by their domains list)",
            self.chains.total,
            e(&self.chains.domain),
            if self.chains.tenants.is_empty() {
                "none".to_string()
            } else {
                let mut t = self
                    .chains
                    .tenants
                    .iter()
                    .take(20)
                    .map(|t| e(t))
                    .collect::<Vec<_>>()
                    .join(", ");
                if self.chains.tenants.len() > 20 {
                    t.push_str(&format!(" and {} more", self.chains.tenants.len() - 20));
                }
                t
            },
            self.chains.tenant_users,
            self.chains.personal_users
        );
        if let Some(v) = &self.installed {
            let _ = writeln!(s, "- Installed now: {}", e(v));
        }
        if !self.problems.is_empty() {
            let _ = writeln!(s, "\nWhat placing it adds:\n");
            for f in self.problems.iter().take(50) {
                let _ = writeln!(
                    s,
                    "- {} {} {}:{}:{}: {}",
                    f.severity,
                    e(&f.code),
                    e(&f.file),
                    f.line,
                    f.col,
                    e(&f.message)
                );
            }
            if self.problems.len() > 50 {
                let _ = writeln!(s, "- … and {} more", self.problems.len() - 50);
            }
        }
        s
    }
}
