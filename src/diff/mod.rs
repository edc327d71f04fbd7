//! `missionctl diff BASE HEAD`: which packs changed, how, and which resolved
//! scope chains change as a result. The gate's evidence is built on this.

pub mod loosen;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value as Json;
use similar::TextDiff;

use crate::pack::{PackDoc, Repo};
use crate::resolve::{self, ChainKey};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Added,
    Removed,
    Modified,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Json,
    pub after: Json,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptDiff {
    pub section: String,
    pub file: String,
    pub unified: String,
    pub tokens_before: u64,
    pub tokens_after: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackChange {
    pub pack_id: String,
    pub scope_type: String,
    pub scope_id: String,
    pub file: String,
    pub status: Status,
    pub base_version: Option<String>,
    pub head_version: Option<String>,
    pub fields: Vec<FieldChange>,
    pub prompts: Vec<PromptDiff>,
    pub cases_added: Vec<String>,
    pub cases_removed: Vec<String>,
    pub cases_changed: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainChange {
    pub chain: ChainKey,
    pub pack_id: String,
    pub base_version: Option<String>,
    pub head_version: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub base: String,
    pub head: String,
    pub packs: Vec<PackChange>,
    pub policies_changed: Vec<String>,
    /// Policies, guardrails, tiers and promotion thresholds made looser.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loosened: Vec<loosen::Loosening>,
    pub mission_changed: bool,
    pub chains: Vec<ChainChange>,
}

impl DiffReport {
    pub fn is_empty(&self) -> bool {
        self.packs.is_empty() && self.policies_changed.is_empty() && !self.mission_changed
    }
}

/// Leaves of a JSON value by JSON Pointer.
fn flatten(v: &Json, ptr: String, out: &mut BTreeMap<String, Json>) {
    match v {
        Json::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                flatten(x, format!("{ptr}/{k}"), out);
            }
        }
        Json::Array(a) if !a.is_empty() && a.iter().any(serde_json::Value::is_object) => {
            for (i, x) in a.iter().enumerate() {
                flatten(x, format!("{ptr}/{i}"), out);
            }
        }
        other => {
            out.insert(ptr, other.clone());
        }
    }
}

fn fields_of(p: &PackDoc) -> BTreeMap<String, Json> {
    let mut out = BTreeMap::new();
    flatten(&p.node.to_json(), String::new(), &mut out);
    out
}

pub fn unified(before: &str, after: &str, a: &str, b: &str) -> String {
    TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(a, b)
        .to_string()
}

/// How pack `head` differs from `base` (None: they are the same content).
pub fn pack_change(base: Option<&PackDoc>, head: Option<&PackDoc>) -> Option<PackChange> {
    let any = head.or(base)?;
    if let (Some(b), Some(h)) = (base, head)
        && b.own_digest == h.own_digest
    {
        return None;
    }
    let status = match (base, head) {
        (None, Some(_)) => Status::Added,
        (Some(_), None) => Status::Removed,
        _ => Status::Modified,
    };
    let bf = base.map(fields_of).unwrap_or_default();
    let hf = head.map(fields_of).unwrap_or_default();
    let mut fields = Vec::new();
    let keys: BTreeSet<&String> = bf.keys().chain(hf.keys()).collect();
    for k in keys {
        let (b, h) = (bf.get(k), hf.get(k));
        if b != h {
            fields.push(FieldChange {
                field: crate::schema::field_name(k),
                before: b.cloned().unwrap_or(Json::Null),
                after: h.cloned().unwrap_or(Json::Null),
            });
        }
    }
    let mut prompts = Vec::new();
    let sec = |p: Option<&PackDoc>| -> BTreeMap<String, (String, String, u64)> {
        p.map(|p| {
            p.sections
                .iter()
                .map(|s| {
                    (
                        s.id.clone(),
                        (s.file.clone(), s.text.to_string(), s.tokens()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let (bs, hs) = (sec(base), sec(head));
    let ids: BTreeSet<&String> = bs.keys().chain(hs.keys()).collect();
    for id in ids {
        let b = bs.get(id);
        let h = hs.get(id);
        let (bt, ht) = (
            b.map(|x| x.1.as_str()).unwrap_or(""),
            h.map(|x| x.1.as_str()).unwrap_or(""),
        );
        if bt != ht {
            let file = h.or(b).map(|x| x.0.clone()).unwrap_or_default();
            prompts.push(PromptDiff {
                section: id.clone(),
                unified: unified(bt, ht, &format!("a/{file}"), &format!("b/{file}")),
                file,
                tokens_before: b.map_or(0, |x| x.2),
                tokens_after: h.map_or(0, |x| x.2),
            });
        }
    }
    let cases = |p: Option<&PackDoc>| -> BTreeMap<String, String> {
        p.map(|p| {
            p.cases
                .iter()
                .map(|c| {
                    (
                        c.id.clone(),
                        format!(
                            "{}{}",
                            c.vars,
                            serde_json::to_string(&c.asserts).unwrap_or_default()
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let (bc, hc) = (cases(base), cases(head));
    Some(PackChange {
        pack_id: any.pack.id.clone(),
        scope_type: any.location.scope_type().as_str().into(),
        scope_id: any.location.scope_id().into(),
        file: any.file.clone(),
        status,
        base_version: base.map(|p| p.pack.version.clone()),
        head_version: head.map(|p| p.pack.version.clone()),
        fields,
        prompts,
        cases_added: hc
            .keys()
            .filter(|k| !bc.contains_key(*k))
            .cloned()
            .collect(),
        cases_removed: bc
            .keys()
            .filter(|k| !hc.contains_key(*k))
            .cloned()
            .collect(),
        cases_changed: hc
            .iter()
            .filter(|(k, v)| bc.get(*k).is_some_and(|b| b != *v))
            .map(|(k, _)| k.clone())
            .collect(),
    })
}

/// Compare two loaded repositories.
pub fn diff(base: &Repo, head: &Repo) -> DiffReport {
    let ids: BTreeSet<&String> = base.by_id.keys().chain(head.by_id.keys()).collect();
    let packs: Vec<PackChange> = ids
        .into_iter()
        .filter_map(|id| pack_change(base.pack(id), head.pack(id)))
        .collect();
    let mut policies_changed: Vec<String> = base
        .policy_digests
        .keys()
        .chain(head.policy_digests.keys())
        .filter(|k| base.policy_digests.get(*k) != head.policy_digests.get(*k))
        .cloned()
        .collect();
    policies_changed.dedup();
    let mission_changed =
        base.sources.get(crate::pack::MISSION_FILE) != head.sources.get(crate::pack::MISSION_FILE);
    let (chains, in_chains) = changed_chains(base, head, &packs, !policies_changed.is_empty());
    let mut loosened = loosen::loosened(base, head);
    for l in in_chains {
        if !loosened
            .iter()
            .any(|x| x.field == l.field && x.before == l.before && x.after == l.after)
        {
            loosened.push(l);
        }
    }
    DiffReport {
        base: base.label.clone(),
        head: head.label.clone(),
        packs,
        policies_changed,
        loosened,
        mission_changed,
        chains,
    }
}

/// Chains whose resolved version differs between base and head, considering
/// only chains that contain a changed pack (or all, when policies changed),
/// and what each such chain's resolved settings loosen (a child scope that
/// overrides its parent, a renamed or removed pack: what an agent on the
/// chain would be held to, base against head).
pub(crate) fn changed_chains(
    base: &Repo,
    head: &Repo,
    packs: &[PackChange],
    policies: bool,
) -> (Vec<ChainChange>, Vec<loosen::Loosening>) {
    let changed: BTreeSet<&str> = packs.iter().map(|p| p.pack_id.as_str()).collect();
    if changed.is_empty() && !policies {
        return (Vec::new(), Vec::new());
    }
    let mut loosened = Vec::new();
    let mut keys: BTreeSet<ChainKey> = resolve::all_chains(head).into_iter().collect();
    keys.extend(resolve::all_chains(base));
    let touches = |repo: &Repo, key: &ChainKey| -> bool {
        policies
            || resolve::chain(repo, key)
                .map(|idx| {
                    idx.iter()
                        .any(|i| changed.contains(repo.packs[*i].pack.id.as_str()))
                })
                .unwrap_or(false)
    };
    let mut out = Vec::new();
    for key in keys {
        if !touches(head, &key) && !touches(base, &key) {
            continue;
        }
        let b = resolve::resolve(base, &key).ok();
        let h = resolve::resolve(head, &key).ok();
        if let Some(br) = &b {
            loosen::chain_loosened(
                &key,
                &br.content,
                h.as_ref().map(|r| &r.content),
                &mut loosened,
            );
        }
        let bv = b.as_ref().map(|r| r.pack_version.clone());
        let hv = h.as_ref().map(|r| r.pack_version.clone());
        if bv != hv {
            out.push(ChainChange {
                pack_id: h.or(b).map(|r| r.pack_id).unwrap_or_default(),
                chain: key,
                base_version: bv,
                head_version: hv,
            });
        }
    }
    (out, loosened)
}
