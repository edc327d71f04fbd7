//! Scope resolution: `global -> domain -> tenant -> user` into one effective pack.
//!
//! Merge rules (documented in the README):
//! - mappings merge key by key; scalars and other lists are overridden by the child;
//! - prompt sections compose in scope order (global first); a child adds
//!   sections, it cannot replace an ancestor's;
//! - `voice.tone`, `voice.style_rules`, `voice.banned_phrases` and `tools.deny`
//!   accumulate (union, in scope order);
//! - `tools.allow` intersects with what the parents allow, and `tools.autonomy`
//!   can only go down; the hard constraints (forbidden tools, autonomy
//!   ceiling) are applied last so no layer can override them;
//! - `eval.rubric.criteria` merge by criterion id; `eval.cases` accumulate.
//!
//! Resolution only ever reads the packs on the requested chain, located by
//! path: a user of tenant A is looked up under tenant A's directory, so no
//! other tenant's or user's file can enter the result. The digest is a
//! sha256 of the canonical JSON of the content, so the same tree always gives
//! the same `pack_version`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use std::sync::Arc;

use crate::pack::{Autonomy, EvalCase, Location, PackDoc, Repo, Tier};

mod skills;
mod view;
use crate::yaml::{self, Node};
pub use view::{CanaryThresholds, Contract, Criterion, Promotion, Thresholds, VoiceProfile};

pub use crate::pack::ChainKey;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error(
        "the repository has no loadable global pack (packs/global/pack.yaml); run `missionctl validate`"
    )]
    NoGlobal,
    #[error("unknown domain `{domain}`; known domains: {known}")]
    UnknownDomain { domain: String, known: String },
    #[error("unknown tenant `{tenant}`; known tenants: {known}")]
    UnknownTenant { tenant: String, known: String },
    #[error("tenant `{tenant}` does not run domain `{domain}`; add it to `domains:` in {file}")]
    DomainNotEnabled {
        tenant: String,
        domain: String,
        file: String,
    },
    #[error(
        "unknown personal user `{user}`; pass --tenant for a tenant's user, or add packs/users/{user}/pack.yaml"
    )]
    UnknownUser { user: String },
    #[error(
        "`{file}` has errors, so this chain cannot be resolved; run `missionctl validate` and fix them"
    )]
    BrokenLayer { file: String },
}

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub scope: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Link {
    pub scope_type: String,
    pub scope_id: String,
    pub pack_id: String,
    pub version: String,
    pub file: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    pub pack_id: String,
    pub pack_version: String,
    pub digest: String,
    pub scope_chain: Vec<Link>,
    pub tier: Tier,
    pub content: Json,
    #[serde(skip)]
    pub provenance: BTreeMap<String, Origin>,
    /// Estimated tokens of the composed prompt.
    #[serde(skip)]
    pub prompt_tokens: u64,
    /// The chain's eval cases, typed (the same cases as `content.eval.cases`).
    #[serde(skip)]
    pub cases: Vec<Arc<EvalCase>>,
}

fn known(keys: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = keys.collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

/// Accept a domain by scope id (`hr-ops`) or by its pack id (`hr-ops-pack`).
pub(crate) fn domain_index(repo: &Repo, domain: &str) -> Option<usize> {
    repo.domains.get(domain).copied().or_else(|| {
        repo.by_id
            .get(domain)
            .copied()
            .filter(|i| matches!(repo.packs[*i].location, Location::Domain(_)))
    })
}

/// The pack indices on a chain, global first. A user without a pack of
/// their own resolves to their tenant's chain.
pub fn chain(repo: &Repo, key: &ChainKey) -> Result<Vec<usize>, ResolveError> {
    let broken = |file: String| -> Result<(), ResolveError> {
        if repo.failed_packs.contains(&file) {
            Err(ResolveError::BrokenLayer { file })
        } else {
            Ok(())
        }
    };
    broken("packs/global/pack.yaml".into())?;
    let g = repo.global.ok_or(ResolveError::NoGlobal)?;
    broken(format!("packs/domains/{}/pack.yaml", key.domain))?;
    let d = domain_index(repo, &key.domain).ok_or_else(|| ResolveError::UnknownDomain {
        domain: key.domain.clone(),
        known: known(repo.domains.keys().cloned()),
    })?;
    let domain_id = repo.packs[d].location.scope_id().to_string();
    let mut out = vec![g, d];
    let enabled = |p: &PackDoc| {
        p.pack
            .domains
            .as_ref()
            .is_none_or(|ds| ds.contains(&domain_id))
    };
    match (&key.tenant, &key.user) {
        (Some(t), user) => {
            broken(format!("packs/tenants/{t}/pack.yaml"))?;
            let ti = *repo
                .tenants
                .get(t)
                .ok_or_else(|| ResolveError::UnknownTenant {
                    tenant: t.clone(),
                    known: known(repo.tenants.keys().cloned()),
                })?;
            if !enabled(&repo.packs[ti]) {
                return Err(ResolveError::DomainNotEnabled {
                    tenant: t.clone(),
                    domain: domain_id,
                    file: repo.packs[ti].file.clone(),
                });
            }
            out.push(ti);
            if let Some(u) = user {
                broken(format!("packs/tenants/{t}/users/{u}/pack.yaml"))?;
                if let Some(ui) = repo.tenant_users.get(&(t.clone(), u.clone())) {
                    out.push(*ui);
                }
            }
        }
        (None, Some(u)) => {
            broken(format!("packs/users/{u}/pack.yaml"))?;
            let ui = *repo
                .personal_users
                .get(u)
                .ok_or_else(|| ResolveError::UnknownUser { user: u.clone() })?;
            if !enabled(&repo.packs[ui]) {
                return Err(ResolveError::DomainNotEnabled {
                    tenant: u.clone(),
                    domain: domain_id,
                    file: repo.packs[ui].file.clone(),
                });
            }
            out.push(ui);
        }
        (None, None) => {}
    }
    Ok(out)
}

/// Every chain the repository defines: each domain alone, each tenant on each
/// of its domains, each tenant user, and each personal user on their domains.
pub(crate) fn all_chains(repo: &Repo) -> Vec<ChainKey> {
    let mut out = Vec::new();
    let domains_of = |p: &PackDoc| -> Vec<String> {
        match &p.pack.domains {
            Some(ds) => ds
                .iter()
                .filter(|d| repo.domains.contains_key(*d))
                .cloned()
                .collect(),
            None => repo.domains.keys().cloned().collect(),
        }
    };
    for d in repo.domains.keys() {
        out.push(ChainKey::new(d, None, None));
    }
    let mut users_by_tenant: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (t, u) in repo.tenant_users.keys() {
        users_by_tenant.entry(t).or_default().push(u);
    }
    for (t, ti) in &repo.tenants {
        for d in domains_of(&repo.packs[*ti]) {
            out.push(ChainKey::new(&d, Some(t), None));
            for u in users_by_tenant.get(t.as_str()).into_iter().flatten() {
                out.push(ChainKey::new(&d, Some(t), Some(u)));
            }
        }
    }
    for (u, ui) in &repo.personal_users {
        for d in domains_of(&repo.packs[*ui]) {
            out.push(ChainKey::new(&d, None, Some(u)));
        }
    }
    out
}

/// The tier a chain runs on: the user's, else the tenant's, else the repository default.
pub(crate) fn tier_of(repo: &Repo, chain: &[usize]) -> Tier {
    let docs: Vec<&PackDoc> = chain.iter().map(|i| &repo.packs[*i]).collect();
    tier_of_docs(repo, &docs)
}

const UNION_LISTS: &[&str] = &[
    "/voice/tone",
    "/voice/style_rules",
    "/voice/banned_phrases",
    "/tools/deny",
];
/// Handled outside the generic merge.
const SPECIAL: &[&str] = &[
    "/id",
    "/version",
    "/scope",
    "/description",
    "/tier",
    "/domains",
    "/prompt",
    "/skills",
    "/eval/cases",
];

struct Merger {
    prov: BTreeMap<String, Origin>,
    /// Record provenance (`resolve --explain`, diagnostics). Off where only
    /// the content matters: tracking costs a map update per value.
    track: bool,
}

fn esc(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A list node's items and `dst` as an array (made one if it is not); None
/// when the node is not a list (the schema refused that already).
fn lists<'n, 'd>(node: &'n Node, dst: &'d mut Json) -> Option<(&'n [Node], &'d mut Vec<Json>)> {
    let yaml::Value::Seq(items) = &node.value else {
        return None;
    };
    if !dst.is_array() {
        *dst = Json::Array(vec![]);
    }
    match dst {
        Json::Array(arr) => Some((items, arr)),
        _ => None,
    }
}

impl Merger {
    fn origin(&self, file: &str, node: &Node, scope: &str) -> Origin {
        Origin {
            file: file.to_string(),
            line: node.pos.line,
            col: node.pos.col,
            scope: scope.to_string(),
        }
    }

    /// Record provenance for `node` and everything under it at `ptr`.
    fn mark(&mut self, ptr: &str, node: &Node, file: &str, scope: &str) {
        if !self.track {
            return;
        }
        let prefix = format!("{ptr}/");
        self.prov.retain(|k, _| !k.starts_with(&prefix));
        self.prov
            .insert(ptr.to_string(), self.origin(file, node, scope));
        match &node.value {
            yaml::Value::Map(entries) => {
                for e in entries {
                    self.mark(&format!("{ptr}/{}", esc(&e.key)), &e.value, file, scope);
                }
            }
            yaml::Value::Seq(items) => {
                for (i, it) in items.iter().enumerate() {
                    self.mark(&format!("{ptr}/{i}"), it, file, scope);
                }
            }
            _ => {}
        }
    }

    fn merge(&mut self, dst: &mut Json, ptr: &str, node: &Node, file: &str, scope: &str) {
        if SPECIAL.contains(&ptr) {
            return;
        }
        if UNION_LISTS.contains(&ptr) {
            let Some((items, arr)) = lists(node, dst) else {
                return;
            };
            for it in items {
                let v = it.to_json();
                if !arr.contains(&v) {
                    arr.push(v);
                    if self.track {
                        let at = format!("{ptr}/{}", arr.len() - 1);
                        self.prov.insert(at, self.origin(file, it, scope));
                    }
                }
            }
            return;
        }
        // Lists a child may only narrow: what both allow.
        if ptr == "/tools/allow" || ptr == "/mcp_servers" {
            let child: Vec<Json> = match &node.value {
                yaml::Value::Seq(items) => items.iter().map(Node::to_json).collect(),
                _ => return,
            };
            match dst {
                Json::Array(parent) => {
                    // Narrow: keep only what both allow, in the parent's order.
                    let kept: Vec<(usize, Json)> = parent
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| child.contains(v))
                        .map(|(i, v)| (i, v.clone()))
                        .collect();
                    if !self.track {
                        *parent = kept.into_iter().map(|(_, v)| v).collect();
                        return;
                    }
                    let old: Vec<Option<Origin>> = kept
                        .iter()
                        .map(|(i, _)| self.prov.get(&format!("{ptr}/{i}")).cloned())
                        .collect();
                    let prefix = format!("{ptr}/");
                    self.prov.retain(|k, _| !k.starts_with(&prefix));
                    for (n, o) in old.into_iter().enumerate() {
                        if let Some(o) = o {
                            self.prov.insert(format!("{ptr}/{n}"), o);
                        }
                    }
                    *parent = kept.into_iter().map(|(_, v)| v).collect();
                    self.prov
                        .insert(ptr.to_string(), self.origin(file, node, scope));
                }
                _ => {
                    *dst = node.to_json();
                    self.mark(ptr, node, file, scope);
                }
            }
            return;
        }
        if ptr == "/tools/autonomy" {
            let new = node.to_json();
            let lower = match (dst.as_str(), new.as_str()) {
                (Some(old), Some(n)) => n < old,
                _ => true,
            };
            if lower {
                *dst = new;
                self.mark(ptr, node, file, scope);
            }
            return;
        }
        if ptr == "/eval/rubric/criteria" {
            let Some((items, arr)) = lists(node, dst) else {
                return;
            };
            for it in items {
                let v = it.to_json();
                let id = v.get("id").cloned();
                let idx = match arr.iter().position(|c| c.get("id") == id.as_ref()) {
                    Some(i) => {
                        arr[i] = v;
                        i
                    }
                    None => {
                        arr.push(v);
                        arr.len() - 1
                    }
                };
                self.mark(&format!("{ptr}/{idx}"), it, file, scope);
            }
            return;
        }
        match (&node.value, dst.is_object()) {
            (yaml::Value::Map(entries), _) => {
                if !dst.is_object() {
                    *dst = Json::Object(Map::new());
                    if self.track {
                        self.prov
                            .insert(ptr.to_string(), self.origin(file, node, scope));
                    }
                }
                for e in entries {
                    let child_ptr = format!("{ptr}/{}", esc(&e.key));
                    if SPECIAL.contains(&child_ptr.as_str()) {
                        continue;
                    }
                    if let Json::Object(m) = dst {
                        let slot = m.entry(e.key.clone()).or_insert(Json::Null);
                        self.merge(slot, &child_ptr, &e.value, file, scope);
                    }
                }
            }
            _ => {
                *dst = node.to_json();
                self.mark(ptr, node, file, scope);
            }
        }
    }
}

/// Serialize with sorted keys, so the digest does not depend on key order.
/// Keys sort by UTF-8 bytes and numbers print as serde_json prints them:
/// this is missionctl's own canonical form, not RFC 8785 (JCS).
pub(crate) fn canonical_json(v: &Json) -> String {
    fn write(v: &Json, out: &mut String) {
        match v {
            Json::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Json::String((*k).clone()).to_string());
                    out.push(':');
                    write(&m[*k], out);
                }
                out.push('}');
            }
            Json::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    write(v, &mut s);
    s
}

fn scope_label(p: &PackDoc) -> String {
    match &p.location {
        Location::Global => "global".into(),
        Location::Domain(d) => format!("domain {d}"),
        Location::Tenant(t) => format!("tenant {t}"),
        Location::TenantUser { tenant, user } => format!("user {tenant}/{user}"),
        Location::PersonalUser(u) => format!("user {u}"),
    }
}

/// Resolve one chain into its effective pack.
pub fn resolve(repo: &Repo, key: &ChainKey) -> Result<Resolved, ResolveError> {
    let idx = chain(repo, key)?;
    Ok(resolve_indices(repo, &idx))
}

pub(crate) fn resolve_indices(repo: &Repo, idx: &[usize]) -> Resolved {
    let docs: Vec<&PackDoc> = idx.iter().map(|i| &repo.packs[*i]).collect();
    resolve_docs(repo, &docs)
}

/// The tier a chain of packs runs on (see [`tier_of`]).
pub(crate) fn tier_of_docs(repo: &Repo, docs: &[&PackDoc]) -> Tier {
    docs.iter()
        .rev()
        .find_map(|p| p.pack.tier)
        .unwrap_or_else(|| match docs.last().map(|p| &p.location) {
            Some(Location::PersonalUser(_)) => Tier::Personal,
            _ => repo.default_tier(),
        })
}

/// Resolve a chain given as pack documents, global first. `repo` supplies the
/// policies and defaults; the documents may come from other revisions (the
/// registry serves a rollout's champion version of one pack this way).
pub(crate) fn resolve_docs(repo: &Repo, docs: &[&PackDoc]) -> Resolved {
    resolve_docs_with(repo, docs, Detail::Full)
}

/// How much of a resolution a caller needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    /// Everything: provenance, eval cases (JSON and typed), digest.
    Full,
    /// The content without eval cases, provenance or digest, for callers
    /// that only render it (validate's OpenClaw size check, on every chain
    /// of the repository).
    Rendering,
}

pub(crate) fn resolve_docs_with(repo: &Repo, docs: &[&PackDoc], detail: Detail) -> Resolved {
    let full = detail == Detail::Full;
    let mut m = Merger {
        prov: BTreeMap::new(),
        track: full,
    };
    let mut body = Json::Object(Map::new());
    let mut sections = Vec::new();
    let mut text = String::new();
    let mut cases = Vec::new();
    let mut typed_cases = Vec::new();
    let mut tokens = 0u64;
    let mut skills = skills::Skills::default();
    for p in docs.iter().copied() {
        let scope = scope_label(p);
        m.merge(&mut body, "", &p.node, &p.file, &scope);
        skills.add(p, &scope);
        for s in &p.sections {
            if full {
                let at = format!("/prompt/sections/{}", sections.len());
                m.prov.insert(
                    at,
                    Origin {
                        file: p.file.clone(),
                        line: s.pos.line,
                        col: s.pos.col,
                        scope: scope.clone(),
                    },
                );
            }
            // Rendering (validate's OpenClaw size check on every chain)
            // never reads token counts: they are counted for full
            // resolutions only.
            let n = if full { s.tokens() } else { 0 };
            sections.push(serde_json::json!({
                "id": s.id,
                "scope": scope,
                "file": s.file,
                "tokens": n,
            }));
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(crate::policy::effective_text(&s.text).trim());
            tokens += n;
        }
        for c in p.cases.iter().filter(|_| full) {
            m.prov.insert(
                format!("/eval/cases/{}", cases.len()),
                Origin {
                    file: c.file.clone(),
                    line: c.line,
                    col: 1,
                    scope: scope.clone(),
                },
            );
            cases.push(serde_json::to_value(c).unwrap_or(Json::Null));
            typed_cases.push(Arc::new(c.clone()));
        }
    }
    // Hard constraints last: nothing in any layer can undo them.
    if let Some(h) = &repo.hard {
        let forbidden = &h.value.forbidden_tools;
        let tools = body
            .as_object_mut()
            .map(|o| o.entry("tools").or_insert_with(|| Json::Object(Map::new())));
        if let Some(Json::Object(t)) = tools {
            let deny: Vec<Json> = t
                .get("deny")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(Json::Array(allow)) = t.get_mut("allow") {
                allow.retain(|v| {
                    !deny.contains(v)
                        && !v.as_str().is_some_and(|s| forbidden.iter().any(|f| f == s))
                });
            }
            let ceiling = h.value.max_autonomy;
            let current = t
                .get("autonomy")
                .and_then(Json::as_str)
                .and_then(|s| serde_json::from_value::<Autonomy>(Json::String(s.into())).ok());
            if current.is_none_or(|c| c > ceiling) {
                t.insert("autonomy".into(), Json::String(ceiling.as_str().into()));
            }
        }
    }
    skills.finish(&mut body, full.then_some(&mut m.prov));
    let tier = tier_of_docs(repo, docs);
    if let Json::Object(o) = &mut body {
        o.insert(
            "prompt".into(),
            serde_json::json!({ "text": text, "sections": sections, "tokens": tokens }),
        );
        let eval = o.entry("eval").or_insert_with(|| Json::Object(Map::new()));
        if let Json::Object(e) = eval {
            e.insert("cases".into(), Json::Array(cases));
        }
        o.insert("tier".into(), Json::String(tier.as_str().into()));
    }
    // Stable field order in output.
    let order = [
        "tier",
        "prompt",
        "voice",
        "tools",
        "skills",
        "eval",
        "kpis",
        "promotion",
        "rollback",
    ];
    let mut content = Map::new();
    if let Json::Object(mut o) = body {
        for k in order {
            if let Some(v) = o.remove(k) {
                content.insert(k.to_string(), v);
            }
        }
        for (k, v) in o {
            content.insert(k, v);
        }
    }
    let content = Json::Object(content);
    let leaf = docs.last().copied();
    let (pack_id, version) = leaf
        .map(|p| (p.pack.id.clone(), p.pack.version.clone()))
        .unwrap_or_default();
    // The digest identifies what is served; a rendering-only resolution
    // serves nothing and carries none (its version is the leaf's semver).
    let (pack_version, digest) = if full {
        let d = hex::encode(Sha256::digest(canonical_json(&content).as_bytes()));
        (
            format!("{version}+sha256.{}", &d[..8]),
            format!("sha256:{d}"),
        )
    } else {
        (version, String::new())
    };
    Resolved {
        pack_version,
        pack_id,
        digest,
        scope_chain: docs
            .iter()
            .map(|p| Link {
                scope_type: p.location.scope_type().as_str().into(),
                scope_id: p.location.scope_id().into(),
                pack_id: p.pack.id.clone(),
                version: p.pack.version.clone(),
                file: p.file.clone(),
            })
            .collect(),
        tier,
        content,
        provenance: m.prov,
        prompt_tokens: tokens,
        cases: typed_cases,
    }
}
