//! Per-pack statistics from finished jobs, without I/O: pass rates, McNemar
//! on the discordant pairs, bootstrap intervals on judge scores and latency,
//! and the safety/format regressions. Pure, so every rule is unit-tested.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::diff::PackChange;
use crate::eval::judge::Pairwise;
use crate::eval::stats;
use crate::model::{Tag, Variant};
use crate::resolve::Thresholds;

use super::evidence::{PackEvidence, Regression, ScoreDelta};
use super::execute::Done;

/// Median latency increases smaller than this are measurement noise, whatever
/// their percentage, and never trip the latency guardrail.
pub const LATENCY_NOISE_FLOOR_MS: f64 = 20.0;

/// Fewer measured pairs than this are no latency evidence: a bootstrap of
/// one or two differences is those differences, however they came about
/// (a single request slowed by a busy machine would block a change).
pub const MIN_LATENCY_PAIRS: usize = 5;

/// A pack's score: its evidence row, its regressions, and its median latency
/// change when that change is real (above the noise floor, with a paired
/// bootstrap interval above zero).
#[derive(Debug, Clone)]
pub struct PackScore {
    pub evidence: PackEvidence,
    pub regressions: Vec<Regression>,
    pub latency_regression_pct: Option<f64>,
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    })
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// A 95% bootstrap interval seeded by `seed`, so the same data gives the same interval.
fn ci(d: &[f64], seed: &str) -> Option<(f64, f64, f64)> {
    let mut s = [0u8; 8];
    s.copy_from_slice(&Sha256::digest(seed.as_bytes())[..8]);
    stats::bootstrap_ci(d, 0.95, 2000, u64::from_le_bytes(s))
}

/// Whether a job counts as a pass: it ran, was judged without error, and
/// its assertions pass as promptfoo aggregates them (weights,
/// `threshold`, `assert-set`). A job with a skipped assertion is not evaluated
/// (see [`not_evaluated`]) and counts neither way.
pub fn passes(d: &Done) -> bool {
    d.run.error.is_none()
        && d.judge_error.is_none()
        && !not_evaluated(d)
        && crate::eval::assertions::case_verdict(&d.job.case, &d.asserts).0
}

/// A job whose verdict depends on an assertion that could not be checked
/// (judge-backed, and no judge configured): neither a pass nor a failure, and
/// left out of every pass rate.
pub fn not_evaluated(d: &Done) -> bool {
    d.run.error.is_none() && d.asserts.iter().any(|a| a.skipped)
}

/// Paired sums over one pack's (chain, case) pairs.
#[derive(Debug, Default)]
struct Tally {
    b: u64,
    c: u64,
    pairs: usize,
    champ_pass: usize,
    chall_pass: usize,
    chall_only: usize,
    chall_only_pass: usize,
    task: (Vec<f64>, Vec<f64>, Vec<f64>),
    voice: (Vec<f64>, Vec<f64>, Vec<f64>),
    latency: (Vec<f64>, Vec<f64>),
    errors: Vec<String>,
    not_evaluated: usize,
    unpaid: usize,
}

fn regressions_of(pack: &str, chain: &str, ch: &Done, cl: &Done) -> Vec<Regression> {
    if ch.run.error.is_some() {
        return vec![];
    }
    ch.asserts
        .iter()
        .zip(cl.asserts.iter())
        .filter(|(x, y)| {
            x.pass && !y.pass && matches!(y.tag, Tag::Safety | Tag::Format) && !y.needs_judge
        })
        .map(|(_, y)| Regression {
            pack_id: pack.to_string(),
            chain: chain.to_string(),
            case_id: cl.job.case.id.clone(),
            case_file: cl.job.case.file.clone(),
            case_line: u64::from(cl.job.case.line),
            tag: y.tag,
            assertion: y.kind.clone(),
            challenger_reason: y.reason.clone(),
            champion_output: ch.run.output.chars().take(4000).collect(),
            challenger_output: cl.run.output.chars().take(4000).collect(),
        })
        .collect()
}

fn tally(pack: &str, done: &[&Done], regressions: &mut Vec<Regression>) -> Tally {
    type Pair<'a> = (Option<&'a Done>, Option<&'a Done>);
    let mut by_pair: BTreeMap<(String, String), Pair<'_>> = BTreeMap::new();
    for d in done {
        let e = by_pair
            .entry((d.job.chain.to_string(), d.job.case.id.clone()))
            .or_default();
        match d.job.variant {
            Variant::Champion => e.0 = Some(d),
            Variant::Challenger => e.1 = Some(d),
        }
    }
    let mut t = Tally::default();
    for ((chain, case_id), (ch, cl)) in &by_pair {
        let Some(cl) = cl else { continue };
        // A pair the budget did not pay for is no evidence either way: the
        // pass rates are over the pairs that ran (issue 32).
        if cl.unpaid || ch.is_some_and(|c| c.unpaid) {
            t.unpaid += 1;
            continue;
        }
        if not_evaluated(cl) || ch.is_some_and(not_evaluated) {
            t.not_evaluated += 1;
            continue;
        }
        if let Some(e) = cl.run.error.as_ref().or(cl.judge_error.as_ref()) {
            t.errors
                .push(format!("{chain} / {case_id} (challenger): {e}"));
        }
        let Some(ch) = ch else {
            t.chall_only += 1;
            t.chall_only_pass += usize::from(passes(cl));
            if let Some(s) = cl.task {
                t.task.2.push(s);
            }
            continue;
        };
        if let Some(e) = ch.run.error.as_ref().or(ch.judge_error.as_ref()) {
            t.errors
                .push(format!("{chain} / {case_id} (champion): {e}"));
        }
        t.pairs += 1;
        let (pa, pb) = (passes(ch), passes(cl));
        t.champ_pass += usize::from(pa);
        t.chall_pass += usize::from(pb);
        t.b += u64::from(pa && !pb);
        t.c += u64::from(!pa && pb);
        regressions.extend(regressions_of(pack, chain, ch, cl));
        if let (Some(x), Some(y)) = (ch.task, cl.task) {
            t.task.0.push(y - x);
            t.task.1.push(x);
            t.task.2.push(y);
        }
        if let (Some(x), Some(y)) = (ch.voice, cl.voice) {
            t.voice.0.push(y - x);
            t.voice.1.push(x);
            t.voice.2.push(y);
        }
        // Latency compares what this run measured: a cached answer carries
        // the timing of another run, under other load.
        if ch.run.error.is_none() && cl.run.error.is_none() && !ch.run.cached && !cl.run.cached {
            t.latency.0.push(ch.run.latency_ms);
            t.latency.1.push(cl.run.latency_ms);
        }
    }
    t
}

/// The pass-rate rules: floor, significant drop, or not enough evidence.
fn pass_rate_rules(
    th: &Thresholds,
    pairs: usize,
    challenger_rate: Option<f64>,
    delta: Option<f64>,
    p: Option<f64>,
) -> (Vec<String>, Option<String>) {
    let (mut blocked_by, mut insufficient) = (Vec::new(), None);
    let need = stats::min_discordant_for(th.alpha);
    if pairs > 0 && (pairs as f64 * th.max_pass_rate_drop) < need as f64 {
        insufficient = Some(format!(
            "{pairs} paired cases cannot show a pass-rate drop of {:.0}% at α={}: that needs at least {} cases ({need} discordant pairs); add eval cases",
            th.max_pass_rate_drop * 100.0,
            th.alpha,
            (need as f64 / th.max_pass_rate_drop.max(1e-9)).ceil()
        ));
    }
    if let Some(r) = challenger_rate
        && r + 1e-12 < th.min_pass_rate
    {
        blocked_by.push(format!(
            "pass rate {:.0}% is below the floor of {:.0}%",
            r * 100.0,
            th.min_pass_rate * 100.0
        ));
    }
    if let (Some(d), Some(pv)) = (delta, p)
        && -d > th.max_pass_rate_drop + 1e-12
    {
        if pv < th.alpha {
            blocked_by.push(format!(
                "pass rate drops {:.0} points (McNemar p={pv:.3} < α={}); the limit is {:.0}",
                -d * 100.0,
                th.alpha,
                th.max_pass_rate_drop * 100.0
            ));
        } else if insufficient.is_none() {
            insufficient = Some(format!(
                "pass rate drops {:.0} points but it is not significant (McNemar p={pv:.3}); add eval cases for a decision",
                -d * 100.0
            ));
        }
    }
    (blocked_by, insufficient)
}

/// The judge rules: a floor on the challenger's task score, and a drop whose
/// whole 95% interval is below zero.
fn judge_rules(th: &Thresholds, task: &ScoreDelta) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(min), Some(s)) = (th.min_judge_score, task.challenger)
        && s < min
    {
        out.push(format!(
            "judge task score {s:.2} is below the floor of {min:.2}"
        ));
    }
    if let (Some(d), Some((_, hi))) = (task.delta, task.ci95)
        && -d > th.max_judge_score_drop
        && hi < 0.0
    {
        out.push(format!(
            "judge task score drops {:.2} (95% CI upper bound {hi:.2} < 0); the limit is {:.2}",
            -d, th.max_judge_score_drop
        ));
    }
    out
}

fn score_delta(d: (&[f64], &[f64], &[f64]), seed: &str) -> ScoreDelta {
    ScoreDelta {
        champion: mean(d.1),
        challenger: mean(d.2),
        delta: mean(d.0),
        ci95: ci(d.0, seed).map(|(_, lo, hi)| (lo, hi)),
    }
}

/// Score one pack from its finished jobs.
pub(crate) fn score_pack(
    pc: &PackChange,
    done: &[&Done],
    th: &Thresholds,
    pairwise: Pairwise,
    (chains_total, chains_evaluated): (usize, usize),
    prompt_growth_tokens: i64,
) -> PackScore {
    let mut regressions = Vec::new();
    let t = tally(&pc.pack_id, done, &mut regressions);
    let champion_rate = (t.pairs > 0).then(|| t.champ_pass as f64 / t.pairs as f64);
    let n_all = t.pairs + t.chall_only;
    let challenger_rate =
        (n_all > 0).then(|| (t.chall_pass + t.chall_only_pass) as f64 / n_all as f64);
    let paired_challenger = (t.pairs > 0).then(|| t.chall_pass as f64 / t.pairs as f64);
    let delta = champion_rate.zip(paired_challenger).map(|(a, b)| b - a);
    let p = (t.pairs > 0).then(|| stats::mcnemar_exact(t.b, t.c));
    let (mut blocked_by, insufficient) = pass_rate_rules(th, t.pairs, challenger_rate, delta, p);
    let judge_task = score_delta((&t.task.0, &t.task.1, &t.task.2), &pc.pack_id);
    let judge_voice = score_delta(
        (&t.voice.0, &t.voice.1, &t.voice.2),
        &format!("voice:{}", pc.pack_id),
    );
    blocked_by.extend(judge_rules(th, &judge_task));
    let p50 = (median(&t.latency.0), median(&t.latency.1));
    let change = match p50 {
        (Some(a), Some(b)) if a > 0.0 => Some((b - a) / a * 100.0),
        _ => None,
    };
    // A latency regression needs evidence: a median increase above the noise
    // floor (0.4 ms -> 0.5 ms is +25% and means nothing), and a paired
    // bootstrap interval of the per-case differences entirely above that
    // floor: the slowdown is at least the floor with 95% confidence, so a
    // busy machine slowing some requests (a burst on a shared CI runner)
    // does not block a change.
    let paired: Vec<f64> = t
        .latency
        .0
        .iter()
        .zip(&t.latency.1)
        .map(|(a, b)| b - a)
        .collect();
    let clear = paired.len() >= MIN_LATENCY_PAIRS
        && ci(&paired, &format!("latency:{}", pc.pack_id))
            .is_some_and(|(_, lo, _)| lo >= LATENCY_NOISE_FLOOR_MS);
    let latency_regression_pct = match (change, p50) {
        (Some(c), (Some(a), Some(b))) if b - a >= LATENCY_NOISE_FLOOR_MS && clear => Some(c),
        _ => None,
    };
    PackScore {
        evidence: PackEvidence {
            pack_id: pc.pack_id.clone(),
            scope_type: pc.scope_type.clone(),
            scope_id: pc.scope_id.clone(),
            base_version: pc.base_version.clone(),
            head_version: pc.head_version.clone(),
            chains_total,
            chains_evaluated,
            pairs: t.pairs,
            champion_pass_rate: champion_rate,
            challenger_pass_rate: challenger_rate,
            pass_rate_delta: delta,
            discordant: (t.b, t.c),
            mcnemar_p: p,
            insufficient_evidence: insufficient,
            judge_task,
            judge_voice,
            pairwise,
            latency_p50_ms: p50,
            latency_change_pct: change,
            prompt_growth_tokens,
            errors: t.errors,
            not_evaluated: t.not_evaluated,
            not_run_for_budget: t.unpaid,
            thresholds: *th,
            blocked_by,
        },
        regressions,
        latency_regression_pct,
    }
}

#[cfg(test)]
mod tests;
