//! The signal: what the version being improved gets wrong, as text per
//! case (the output, each failed assertion with what it expected and why
//! it failed, the judge's reason and per-criterion scores), not only a score.

use std::collections::BTreeMap;

use crate::gate::execute::Done;
use crate::model::{CaseFeedback, FailedCheck, PassingExample, ResolvedPrompt, Variant};

/// A rubric score (1-5) below this counts as low even when the case passes.
pub const LOW_RUBRIC: f64 = 3.0;

fn expected(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Feedback per case for `variant`'s outputs in `done`: every case failing
/// on some chain, or judged low, ordered most severe first (safety, then
/// format, quality, voice; then the most chains failed; then by id).
pub fn feedback(done: &[Done], variant: Variant) -> Vec<CaseFeedback> {
    let mut by_case: BTreeMap<String, CaseFeedback> = BTreeMap::new();
    let mut chains: BTreeMap<String, usize> = BTreeMap::new();
    for d in done.iter().filter(|d| d.job.variant == variant) {
        let case = &d.job.case;
        *chains.entry(case.id.clone()).or_default() += 1;
        let passed = crate::gate::score::passes(d);
        let low = d.task.is_some_and(|t| t < LOW_RUBRIC);
        if passed && !low {
            continue;
        }
        let failed: Vec<FailedCheck> = case
            .leaves()
            .into_iter()
            .zip(&d.asserts)
            .filter(|(_, r)| !r.pass && !r.skipped)
            .map(|((spec, _), r)| FailedCheck {
                kind: r.kind.clone(),
                tag: r.tag,
                expected: expected(spec.value.as_ref()),
                reason: r.reason.clone(),
            })
            .collect();
        let entry = by_case
            .entry(case.id.clone())
            .or_insert_with(|| CaseFeedback {
                case_id: case.id.clone(),
                description: case.description.clone().unwrap_or_default(),
                input: crate::eval::user_message(case),
                output: match &d.run.error {
                    Some(e) => format!("(the run failed: {e})"),
                    None => d.run.output.clone(),
                },
                chains_failed: 0,
                chains: 0,
                failed_chains: Vec::new(),
                failed: Vec::new(),
                judge: d.judge_reason.clone(),
                criteria: d.criteria.clone(),
            });
        if !passed {
            entry.chains_failed += 1;
            entry.failed_chains.push(d.job.chain.to_string());
        }
        for f in failed {
            if !entry
                .failed
                .iter()
                .any(|e| e.kind == f.kind && e.expected == f.expected)
            {
                entry.failed.push(f);
            }
        }
    }
    let mut out: Vec<CaseFeedback> = by_case
        .into_values()
        .map(|mut f| {
            f.chains = chains.get(&f.case_id).copied().unwrap_or(0);
            f
        })
        .collect();
    // `Tag` orders by severity (safety first); a case judged low with no
    // failed assertion comes after every tagged one.
    let worst = |f: &CaseFeedback| {
        let t = f.failed.iter().map(|c| c.tag).min();
        (t.is_none(), t)
    };
    out.sort_by(|a, b| {
        worst(a)
            .cmp(&worst(b))
            .then(b.chains_failed.cmp(&a.chains_failed))
            .then(a.case_id.cmp(&b.case_id))
    });
    out
}

/// Cases `variant` passes on every chain, among those `shown` allows, up to
/// `n`, by id: examples of what works, shown beside the failures.
pub fn passing(
    done: &[Done],
    variant: Variant,
    shown: impl Fn(&str) -> bool,
    n: usize,
) -> Vec<PassingExample> {
    let mut by_case: BTreeMap<&str, (bool, &Done)> = BTreeMap::new();
    for d in done.iter().filter(|d| d.job.variant == variant) {
        let ok = crate::gate::score::passes(d) && d.run.error.is_none();
        let e = by_case.entry(d.job.case.id.as_str()).or_insert((true, d));
        e.0 &= ok;
    }
    by_case
        .into_iter()
        .filter(|(id, (ok, _))| *ok && shown(id))
        .take(n)
        .map(|(id, (_, d))| PassingExample {
            case_id: id.to_string(),
            description: d.job.case.description.clone().unwrap_or_default(),
            input: crate::eval::user_message(&d.job.case),
            output: d.run.output.clone(),
        })
        .collect()
}

/// The full prompt the agent receives (every scope layer merged, as the
/// harness sends it) on the first chain `failures` name, else on the first
/// chain evaluated.
pub fn prompt_of(done: &[Done], variant: Variant, failures: &[CaseFeedback]) -> ResolvedPrompt {
    let mine = || done.iter().filter(|d| d.job.variant == variant);
    let chain = failures.iter().find_map(|f| f.failed_chains.first());
    let d = chain
        .and_then(|c| mine().find(|d| d.job.chain.to_string() == *c))
        .or_else(|| mine().next());
    d.map(|d| ResolvedPrompt {
        chain: d.job.chain.to_string(),
        system: d.job.system.to_string(),
    })
    .unwrap_or_default()
}

/// The output contracts' JSON schemas the cases are checked against, by name.
pub fn contracts(done: &[Done]) -> BTreeMap<String, serde_json::Value> {
    done.iter()
        .flat_map(|d| d.job.contracts.iter())
        .filter_map(|(name, c)| c.schema.clone().map(|s| (name.clone(), s)))
        .collect()
}
