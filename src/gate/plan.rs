//! Load both revisions and plan the run: which packs changed, which chains
//! they affect, which (chain, case, variant) jobs to run, and the prompt
//! growth guardrail. No model is called here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::diagnostic::Diagnostic;
use crate::diff::{self, DiffReport, PackChange, Status};
use crate::git::Tree;
use crate::model::Variant;
use crate::pack::{self, EvalCase, Guardrails, Repo};
use crate::resolve::{self, ChainKey, Resolved};
use crate::validate;

use super::GateError;
use super::evidence::GuardrailRow;

/// Both revisions, loaded, with the challenger validated under the base's policies.
pub struct Loaded {
    pub base: Repo,
    pub head: Repo,
    pub guard: Guardrails,
    pub validation_errors: Vec<Diagnostic>,
    pub report: DiffReport,
    /// Changed files that are not pack content (see [`is_pack_content`]).
    pub control_changed: Vec<String>,
    /// The base branch's tip, when it has moved on from the merge base: its
    /// packs' eval cases run on both sides, so a branch cut before a test
    /// was added to the base cannot escape it.
    pub tip: Option<Repo>,
}

/// Whether a repository path is pack content (a pack's own files, owned
/// through CODEOWNERS by the pack's owners). Everything else is a control
/// file: only the policy owners may change it.
pub fn is_pack_content(path: &str) -> bool {
    path.starts_with("packs/")
}

/// Read both revisions (blocking: call on the blocking pool).
///
/// The champion is the merge base of `base_rev` and `head_rev`, as the
/// README documents: GitHub's `base.sha` is the base branch's tip, which may
/// have moved on since the branch was cut, and comparing against it would
/// charge the pull request with every change merged since.
pub fn load(repo: &Path, base_rev: &str, head_rev: &str) -> Result<Loaded, GateError> {
    let git = crate::git::open(repo)?;
    let (b, h) = (git.resolve(base_rev)?, git.resolve(head_rev)?);
    let champion = git.merge_base(b, h).map_err(|e| {
        GateError::Config(format!(
            "`{base_rev}` and `{head_rev}` share no history ({e}); fetch the full history (actions/checkout with fetch-depth: 0)"
        ))
    })?;
    // Every changed file outside `packs/` configures the gate, the loop or
    // the repository (mission.yaml, policies, tiers, CODEOWNERS, workflows,
    // schemas, anything not known): its owner is the policy owner.
    let control_changed: Vec<String> = git
        .changed_paths(champion, h)?
        .into_iter()
        .filter(|p| !is_pack_content(p))
        .collect();
    drop(git);
    let mut base = pack::load(&Tree::at_rev(repo, &champion.to_string())?);
    // The rules come from the base branch's tip, never from the merge base
    // (a pull request picks its merge base by where it branches from: an
    // old one would bring back rules main has since tightened) and never
    // from the head. The champion's packs stay the merge base's.
    let tip = if b == champion {
        None
    } else {
        let mut tip = pack::load(&Tree::at_rev(repo, &b.to_string())?);
        take_rules(&mut base, &mut tip);
        Some(tip)
    };
    let mut head = pack::load(&Tree::at_rev(repo, head_rev)?);
    let guard = base
        .guardrails
        .as_ref()
        .ok_or_else(|| {
            GateError::Config(format!(
                "the base revision `{base_rev}` has no valid policies/guardrails.yaml"
            ))
        })?
        .value
        .clone();
    // Validate the challenger under the base's policies.
    let head_policies = (head.hard.take(), head.guardrails.take(), head.tiers.take());
    head.hard.clone_from(&base.hard);
    head.guardrails.clone_from(&base.guardrails);
    head.tiers.clone_from(&base.tiers);
    let validation_errors: Vec<Diagnostic> = validate::validate(&head, Some(&base))
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect();
    let report = diff::diff(&base, &head);
    (head.hard, head.guardrails, head.tiers) = head_policies;
    Ok(Loaded {
        base,
        head,
        guard,
        validation_errors,
        report,
        control_changed,
        tip,
    })
}

/// Put the rules of `tip` (the base branch's tip) in place of `base`'s:
/// the mission (harness, judge, eval settings), hard constraints,
/// guardrails, tiers and CODEOWNERS. `base` keeps its packs (the champion)
/// and its policy digests (what the pull request itself changed is read
/// against the merge base).
fn take_rules(base: &mut Repo, tip: &mut Repo) {
    use std::mem::take;
    base.mission = take(&mut tip.mission);
    base.hard = take(&mut tip.hard);
    base.guardrails = take(&mut tip.guardrails);
    base.tiers = take(&mut tip.tiers);
    base.codeowners = take(&mut tip.codeowners);
    base.token_family = take(&mut tip.token_family);
}

/// One (chain, case, variant) to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub pack_id: String,
    pub chain: ChainKey,
    pub variant: Variant,
    pub resolved: Arc<Resolved>,
    /// The system message for `resolved` and its size in tokens, built once
    /// per chain and variant (not once per case).
    pub system: Arc<str>,
    pub system_tokens: u64,
    pub case: Arc<EvalCase>,
    /// The output contracts `contract:` assertions check against: the base's
    /// definitions win (a pull request that renames or loosens a contract
    /// is checked against the contract its cases were written for), plus
    /// contracts the head adds.
    pub contracts: Arc<BTreeMap<String, resolve::Contract>>,
    /// Whose ledger pays: the chain's tenant, `user:<id>`, or `shared`.
    pub tenant: String,
}

/// What to run, and the guardrails decided while planning.
#[derive(Debug, Default)]
pub struct Plan {
    /// The changed packs evaluated (capped), by id.
    pub candidates: Vec<PackChange>,
    pub jobs: Vec<Job>,
    /// Per pack: (affected chains, chains evaluated).
    pub chains: BTreeMap<String, (usize, usize)>,
    /// Per pack: the largest prompt growth over its evaluated chains.
    pub growth: BTreeMap<String, i64>,
    pub sample_notes: Vec<String>,
    pub guardrails: Vec<GuardrailRow>,
    pub reasons: Vec<String>,
}

pub(crate) fn tenant_of(k: &ChainKey) -> String {
    k.tenant
        .clone()
        .or_else(|| k.user.as_ref().map(|u| format!("user:{u}")))
        .unwrap_or_else(|| "shared".into())
}

/// The chains a changed pack affects in `repo`, sampled deterministically
/// (by a hash of the chain key) when there are more than `max`.
fn affected_chains(repo: &Repo, pack_id: &str, max: usize) -> (Vec<ChainKey>, usize) {
    let mut keys: Vec<ChainKey> = resolve::all_chains(repo)
        .into_iter()
        .filter(|k| {
            resolve::chain(repo, k)
                .is_ok_and(|idx| idx.iter().any(|i| repo.packs[*i].pack.id == pack_id))
        })
        .collect();
    let total = keys.len();
    if total > max {
        keys.sort_by_key(|k| Sha256::digest(format!("missionctl-sample:{k}").as_bytes()).to_vec());
        keys.truncate(max);
        keys.sort();
    }
    (keys, total)
}

/// Cases for a chain: every case of the base branch's tip (its definition
/// wins), then the merge base's, then the ones the head adds, by id in a
/// stable order. A pull request cannot weaken a test that exists, nor
/// escape one added to the base after it branched.
pub(crate) fn merged_cases(
    tip: Option<&Resolved>,
    champion: Option<&Resolved>,
    challenger: &Resolved,
) -> Vec<Arc<EvalCase>> {
    let mut out: Vec<Arc<EvalCase>> = Vec::new();
    let mut known: BTreeSet<String> = BTreeSet::new();
    for side in [tip, champion, Some(challenger)].into_iter().flatten() {
        for c in &side.cases {
            if known.insert(c.id.clone()) {
                out.push(c.clone());
            }
        }
    }
    out
}

/// The changed packs to evaluate, capped at `max_candidates_per_run`.
fn candidates(l: &Loaded, plan: &mut Plan) {
    let changed: Vec<PackChange> = l
        .report
        .packs
        .iter()
        .filter(|p| p.status != Status::Removed)
        .cloned()
        .collect();
    cap_candidates(changed, l.guard.max_candidates_per_run as usize, plan);
}

/// The candidate-count guardrail: at most `cap` packs, by id.
fn cap_candidates(mut c: Vec<PackChange>, cap: usize, plan: &mut Plan) {
    c.sort_by(|a, b| a.pack_id.cmp(&b.pack_id));
    let over = c.len() > cap;
    plan.guardrails.push(GuardrailRow {
        name: "Changed packs in this run".into(),
        value: c.len().to_string(),
        cap: cap.to_string(),
        exceeded: over,
    });
    if over {
        plan.reasons.push(format!(
            "{} packs changed; max_candidates_per_run is {cap} (split the pull request)",
            c.len()
        ));
        c.truncate(cap);
    }
    plan.candidates = c;
}

/// Plan every job: per changed pack, per affected chain whose resolved
/// content changed, every merged case on both sides.
pub(crate) fn plan(l: &Loaded, max_chains: usize, family: crate::tokens::Family) -> Plan {
    let mut plan = Plan::default();
    candidates(l, &mut plan);
    let mut max_growth: (i64, String) = (0, String::new());
    for pc in &plan.candidates {
        let (keys, total) = affected_chains(&l.head, &pc.pack_id, max_chains);
        if keys.len() < total {
            plan.sample_notes.push(format!(
                "{}: {} of {} affected chains evaluated (deterministic sample by chain hash; raise eval.max_chains to widen)",
                pc.pack_id,
                keys.len(),
                total
            ));
        }
        plan.chains.insert(pc.pack_id.clone(), (total, keys.len()));
        for key in keys {
            let Ok(challenger) = resolve::resolve(&l.head, &key) else {
                continue;
            };
            let champion = resolve::resolve(&l.base, &key).ok();
            if champion
                .as_ref()
                .is_some_and(|c| c.digest == challenger.digest)
            {
                continue;
            }
            let before = champion
                .as_ref()
                .map_or(challenger.prompt_tokens, |c| c.prompt_tokens);
            let g = i64::try_from(challenger.prompt_tokens).unwrap_or(i64::MAX)
                - i64::try_from(before).unwrap_or(i64::MAX);
            let e = plan.growth.entry(pc.pack_id.clone()).or_insert(i64::MIN);
            *e = (*e).max(g);
            if g > max_growth.0 {
                max_growth = (g, key.to_string());
            }
            let tip = l.tip.as_ref().and_then(|t| resolve::resolve(t, &key).ok());
            let cases = merged_cases(tip.as_ref(), champion.as_ref(), &challenger);
            let mut contracts = challenger.contracts();
            for c in champion.iter().chain(tip.iter()) {
                contracts.extend(c.contracts());
            }
            let contracts = Arc::new(contracts);
            let tenant = tenant_of(&key);
            let prompted = |r: Resolved| {
                let system: Arc<str> = Arc::from(crate::eval::system_prompt(&r));
                let tokens = crate::tokens::count(&system, family);
                (Arc::new(r), system, tokens)
            };
            let sides: Vec<_> = champion
                .map(|c| (Variant::Champion, prompted(c)))
                .into_iter()
                .chain([(Variant::Challenger, prompted(challenger))])
                .collect();
            for case in cases {
                for (variant, (resolved, system, system_tokens)) in &sides {
                    plan.jobs.push(Job {
                        pack_id: pc.pack_id.clone(),
                        chain: key.clone(),
                        variant: *variant,
                        resolved: resolved.clone(),
                        system: system.clone(),
                        system_tokens: *system_tokens,
                        case: case.clone(),
                        contracts: contracts.clone(),
                        tenant: tenant.clone(),
                    });
                }
            }
        }
    }
    let cap = i64::try_from(l.guard.max_prompt_growth_tokens).unwrap_or(i64::MAX);
    growth_guardrail(&mut plan, max_growth, cap);
    plan
}

/// The champion alone: every merged case of `pack_id` on each chain it
/// affects (sampled as the gate samples), for the improvement worker's
/// signal. `None` when the revision has no such pack.
pub(crate) fn baseline(
    repo: &Repo,
    pack_id: &str,
    max_chains: usize,
    family: crate::tokens::Family,
) -> Option<Plan> {
    let doc = repo.pack(pack_id)?;
    let mut plan = Plan::default();
    let (keys, total) = affected_chains(repo, pack_id, max_chains);
    plan.chains.insert(pack_id.to_string(), (total, keys.len()));
    plan.candidates = vec![PackChange {
        pack_id: pack_id.to_string(),
        scope_type: doc.pack.scope.kind.to_string(),
        scope_id: doc.pack.scope.id.clone(),
        file: doc.file.clone(),
        status: Status::Modified,
        base_version: Some(doc.pack.version.clone()),
        head_version: Some(doc.pack.version.clone()),
        fields: vec![],
        prompts: vec![],
        cases_added: vec![],
        cases_removed: vec![],
        cases_changed: vec![],
    }];
    for key in keys {
        let Ok(r) = resolve::resolve(repo, &key) else {
            continue;
        };
        let contracts = Arc::new(r.contracts());
        let system: Arc<str> = Arc::from(crate::eval::system_prompt(&r));
        let system_tokens = crate::tokens::count(&system, family);
        let resolved = Arc::new(r);
        for case in resolved.cases.clone() {
            plan.jobs.push(Job {
                pack_id: pack_id.to_string(),
                chain: key.clone(),
                variant: Variant::Champion,
                resolved: resolved.clone(),
                system: system.clone(),
                system_tokens,
                case,
                contracts: contracts.clone(),
                tenant: tenant_of(&key),
            });
        }
    }
    Some(plan)
}

fn growth_guardrail(plan: &mut Plan, (growth, chain): (i64, String), cap: i64) {
    plan.guardrails.push(GuardrailRow {
        name: "Prompt growth (largest chain)".into(),
        value: if chain.is_empty() {
            "0 tokens".into()
        } else {
            format!("{growth:+} tokens ({chain})")
        },
        cap: format!("{cap} tokens"),
        exceeded: growth > cap,
    });
    if growth > cap {
        plan.reasons.push(format!(
            "prompt grows by {growth} tokens on {chain}; max_prompt_growth_tokens is {cap}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: &str) -> PackChange {
        PackChange {
            pack_id: id.into(),
            scope_type: "domain".into(),
            scope_id: id.into(),
            file: format!("packs/domains/{id}/pack.yaml"),
            status: Status::Modified,
            base_version: None,
            head_version: None,
            fields: vec![],
            prompts: vec![],
            cases_added: vec![],
            cases_removed: vec![],
            cases_changed: vec![],
        }
    }

    #[test]
    fn more_candidates_than_the_cap_block_and_are_cut_in_id_order() {
        let mut plan = Plan::default();
        cap_candidates(vec![change("c"), change("a"), change("b")], 2, &mut plan);
        let ids: Vec<&str> = plan.candidates.iter().map(|c| c.pack_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(plan.guardrails[0].exceeded);
        assert_eq!(plan.guardrails[0].value, "3");
        assert!(plan.reasons[0].contains("max_candidates_per_run is 2"));
        let mut plan = Plan::default();
        cap_candidates(vec![change("a")], 2, &mut plan);
        assert!(!plan.guardrails[0].exceeded);
        assert!(plan.reasons.is_empty());
    }

    #[test]
    fn prompt_growth_over_the_cap_blocks_naming_the_chain() {
        let mut plan = Plan::default();
        growth_guardrail(&mut plan, (120, "hr-ops/acme".into()), 100);
        assert!(plan.guardrails[0].exceeded);
        assert_eq!(plan.guardrails[0].value, "+120 tokens (hr-ops/acme)");
        assert_eq!(
            plan.reasons,
            ["prompt grows by 120 tokens on hr-ops/acme; max_prompt_growth_tokens is 100"]
        );
        let mut plan = Plan::default();
        growth_guardrail(&mut plan, (0, String::new()), 100);
        assert_eq!(plan.guardrails[0].value, "0 tokens");
        assert!(plan.reasons.is_empty());
    }
}
