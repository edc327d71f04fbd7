//! Step 5's decision, as pure functions of the report: which evaluated
//! candidates stay on the Pareto front, and which one is proposed. Both are
//! decided on the held-out selection set ([`super::split`]), never on the
//! cases the optimiser was shown.

use crate::model::{CandidateOutcome, Verdict};

use super::report::{Candidate, Report, pct};
use super::select::{self, Scores};
use super::split::restrict;

/// Scores within a rounding error are equal.
const EPS: f64 = 1e-9;

/// Candidates on the Pareto front over the selection set stay `front`; the
/// rest are `dominated`.
pub(super) fn mark_front(r: &mut Report) {
    let evaluated: Vec<usize> = r
        .candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.outcome == CandidateOutcome::Front)
        .map(|(i, _)| i)
        .collect();
    let sel = &r.split.selection;
    let mut held: Vec<Scores> = vec![restrict(&r.champion_scores, sel)];
    held.extend(
        evaluated
            .iter()
            .map(|i| restrict(&r.candidates[*i].scores, sel)),
    );
    let all: Vec<&Scores> = held.iter().collect();
    let front = select::front(&all);
    let dominated: Vec<usize> = evaluated
        .iter()
        .enumerate()
        .filter(|(k, _)| !front.contains(&(k + 1)))
        .map(|(_, i)| *i)
        .collect();
    for i in dominated {
        r.candidates[i].outcome = CandidateOutcome::Dominated;
    }
}

/// The winner, decided on the held-out selection set: a candidate the gate
/// passes whose selection-set score beats the champion's (and whose pass
/// rate is no lower), the best selection-set score first, then the pass
/// rate, then the best mean case score, then the earliest (the smallest
/// change that does as well). Without one: when main fails validation in
/// the pack's files, a candidate the gate passes (so it clears them) that
/// loses nothing on the selection set, as a validation fix; else a partial
/// fix (blocked only by an absolute floor, raising the pass rate and the
/// selection-set score, breaking no case) where the tier allows it;
/// otherwise the reason names what held back each evaluated candidate.
pub(super) fn choose(r: &mut Report) {
    let champion_sel = r.champion_selection_score.unwrap_or(0.0);
    let gain = |c: &Candidate| c.selection_score.unwrap_or(0.0) - champion_sel;
    let mean = |s: &Scores| s.values().sum::<f64>() / s.len().max(1) as f64;
    let raises = |c: &&Candidate| matches!((c.pass_rate, c.champion_pass_rate), (Some(p), Some(ch)) if p > ch);
    let keeps = |c: &&Candidate| matches!((c.pass_rate, c.champion_pass_rate), (Some(p), Some(ch)) if p + EPS >= ch);
    let better = |a: &&Candidate, b: &&Candidate| {
        a.selection_score
            .unwrap_or(0.0)
            .total_cmp(&b.selection_score.unwrap_or(0.0))
            .then(
                a.pass_rate
                    .unwrap_or(0.0)
                    .total_cmp(&b.pass_rate.unwrap_or(0.0)),
            )
            .then(mean(&a.scores).total_cmp(&mean(&b.scores)))
            .then(b.n.cmp(&a.n))
    };
    let evaluated: Vec<&Candidate> = r
        .candidates
        .iter()
        .filter(|c| {
            matches!(
                c.outcome,
                CandidateOutcome::Front | CandidateOutcome::Dominated
            )
        })
        .collect();
    let passed = || {
        evaluated
            .iter()
            .copied()
            .filter(|c| c.verdict == Some(Verdict::Pass))
    };
    if let Some(c) = passed()
        .filter(|c| gain(c) > EPS)
        .filter(keeps)
        .max_by(better)
    {
        r.winner = Some(c.n);
        return;
    }
    if !r.validation.is_empty()
        && let Some(c) = passed()
            .filter(|c| gain(c) > -EPS)
            .filter(keeps)
            .max_by(better)
    {
        r.winner = Some(c.n);
        r.validation_fix = true;
        return;
    }
    let partial = evaluated
        .iter()
        .copied()
        .filter(|c| c.floor.is_some() && c.broke.is_empty() && gain(c) > EPS)
        .filter(raises)
        .max_by(better)
        .map(|c| {
            (
                c.n,
                c.floor.clone().unwrap_or_default(),
                c.pass_rate,
                c.champion_pass_rate,
            )
        });
    if let Some((n, floor, p, ch)) = partial {
        if r.caps.propose_partial_fixes {
            r.winner = Some(n);
            r.partial_fix = Some(floor);
        } else {
            r.no_winner = Some(format!(
                "candidate #{n} raises the pass rate {} -> {} and breaks no case, but the gate blocks it: {floor}; tier {} does not propose partial fixes (`propose_partial_fixes` in policies/tiers.yaml)",
                pct(ch),
                pct(p),
                r.caps.tier
            ));
        }
        return;
    }
    r.no_winner = Some(no_winner(r, champion_sel));
}

/// Why nothing is proposed: for each evaluated candidate, what held it back.
fn no_winner(r: &Report, champion_sel: f64) -> String {
    let tried = r.candidates.iter().filter(|c| c.verdict.is_some()).count();
    if r.candidates.is_empty() {
        return format!("no candidate was tried ({})", r.stop_detail);
    }
    if tried == 0 {
        return format!(
            "none of the {} candidate(s) was evaluated: {}",
            r.candidates.len(),
            r.candidates
                .iter()
                .map(|c| format!(
                    "#{} {}",
                    c.n,
                    c.reason.as_deref().unwrap_or(c.outcome.as_str())
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let why: Vec<String> = r
        .candidates
        .iter()
        .filter(|c| c.verdict.is_some())
        .map(|c| {
            let w = match (&c.reason, c.verdict) {
                (Some(reason), _) => reason.clone(),
                (None, Some(Verdict::Pass)) => format!(
                    "passed the gate without improving the held-out selection set ({:.2}, the champion {champion_sel:.2})",
                    c.selection_score.unwrap_or(0.0)
                ),
                (None, _) => {
                    if c.gate_reasons.is_empty() {
                        format!("verdict {}", c.verdict.map_or("-", Verdict::as_str))
                    } else {
                        format!("the gate blocks it: {}", c.gate_reasons.join("; "))
                    }
                }
            };
            format!("#{} {w}", c.n)
        })
        .collect();
    format!(
        "none of the {} candidate(s) beats the champion on the held-out selection set with the gate passing ({tried} evaluated): {}",
        r.candidates.len(),
        why.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A candidate the gate evaluated: its verdict, pass rate and case scores.
    fn cand(n: u32, verdict: &str, pass_rate: f64, scores: &[(&str, f64)]) -> serde_json::Value {
        json!({
            "n": n, "version": format!("1.0.1-improve.{n}"), "rationale": "", "outcome": "front",
            "parent": 0, "champion_pass_rate": 0.5, "pass_rate": pass_rate, "mcnemar_p": null,
            "prompt_growth_tokens": 0, "spend_usd": 0.0, "model_requests": 0, "verdict": verdict,
            "scores": scores.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    }

    /// Cases a, b shown; c, d held out. The champion fails b and d.
    fn report(candidates: Vec<serde_json::Value>) -> Report {
        let mut r: Report = serde_json::from_value(json!({
            "run_id": "r", "pack_id": "p", "tenant": "shared", "champion_version": "1.0.0",
            "base": "main", "base_commit": "c", "started_at": "", "finished_at": "",
            "caps": {"tier": "team", "max_candidates": 4, "daily_cap_usd": 1.0, "daily_left_usd": 1.0,
                     "run_budget_usd": null, "max_prompt_growth_tokens": 400},
            "failures": [], "chains": [1, 1],
            "champion_scores": {"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.0},
            "split": {"feedback": ["a", "b"], "selection": ["c", "d"]},
            "candidates": candidates, "stop": "candidate-cap", "stop_detail": "",
            "winner": null, "branch": null, "commit": null, "pull_request": null,
            "spend_usd": 0.0, "calls": {"optimiser": 0, "evaluation": 0, "cache_hits": 0, "rollouts": 0},
        }))
        .expect("a report");
        r.champion_selection_score = mean_over_sel(&r.champion_scores, &r);
        for i in 0..r.candidates.len() {
            r.candidates[i].selection_score = mean_over_sel(&r.candidates[i].scores, &r);
        }
        r
    }

    fn mean_over_sel(s: &Scores, r: &Report) -> Option<f64> {
        super::super::split::mean_over(s, &r.split.selection)
    }

    #[test]
    fn the_held_out_selection_set_decides_not_the_pass_rate() {
        // #1 fits the shown failure (b) and two chains more: a higher pass
        // rate; #2 fixes the held-out one (d).
        let fitted_one = || {
            cand(
                1,
                "PASS",
                0.9,
                &[("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 0.0)],
            )
        };
        let fixes_held_out = || {
            cand(
                2,
                "PASS",
                0.75,
                &[("a", 1.0), ("b", 0.0), ("c", 1.0), ("d", 1.0)],
            )
        };
        let mut r = report(vec![fitted_one(), fixes_held_out()]);
        choose(&mut r);
        assert_eq!(r.winner, Some(2), "{:?}", r.no_winner);
        // Alone, #1 is not proposed: it improves nothing held out.
        let mut fitted = report(vec![fitted_one()]);
        choose(&mut fitted);
        assert_eq!(fitted.winner, None);
        let why = fitted.no_winner.expect("why");
        assert!(
            why.contains("without improving the held-out selection set (0.50, the champion 0.50)"),
            "{why}"
        );
        // The front is over the selection set: #1 is dominated there.
        let mut both = report(vec![fitted_one(), fixes_held_out()]);
        mark_front(&mut both);
        assert_eq!(both.candidates[0].outcome, CandidateOutcome::Dominated);
        assert_eq!(both.candidates[1].outcome, CandidateOutcome::Front);
    }

    #[test]
    fn a_validation_fix_is_proposed_when_it_loses_nothing_held_out() {
        let mut r = report(vec![cand(
            1,
            "PASS",
            0.5,
            &[("a", 1.0), ("b", 0.0), ("c", 1.0), ("d", 0.0)],
        )]);
        r.candidates[0].champion_pass_rate = Some(0.5);
        r.validation = vec!["p.md:1: banned [constraint/banned-phrase]".into()];
        choose(&mut r);
        assert_eq!(r.winner, Some(1));
        assert!(r.validation_fix);
        // A loss on the selection set is never a fix.
        let mut worse = report(vec![cand(
            1,
            "PASS",
            0.5,
            &[("a", 1.0), ("b", 1.0), ("c", 0.0), ("d", 0.0)],
        )]);
        worse.validation = r.validation.clone();
        choose(&mut worse);
        assert_eq!(worse.winner, None);
    }
}
