//! Selection, as pure functions: per-case scores, the Pareto front over
//! cases (GEPA's rule: a candidate stays if it is best on at least one case
//! and no other is at least as good everywhere and better somewhere), the
//! parent to improve next, and whether a candidate improved anything.

use std::collections::{BTreeMap, BTreeSet};

use crate::gate::{EvalResult, evidence::CaseOutcome};
use crate::model::Variant;

/// Per case id: the mean over evaluated chains of 1 for a pass, else half
/// the share of deterministic assertions that held (partial credit below
/// any pass).
pub type Scores = BTreeMap<String, f64>;

pub fn case_scores(results: &[EvalResult], variant: Variant) -> Scores {
    let mut acc: BTreeMap<String, (f64, u32)> = BTreeMap::new();
    for r in results.iter().filter(|r| r.variant == variant) {
        let s = match r.outcome {
            CaseOutcome::Pass => 1.0,
            CaseOutcome::Fail => 0.5 * r.deterministic_score,
            CaseOutcome::NotEvaluated | CaseOutcome::Error => 0.0,
        };
        let e = acc.entry(r.case_id.clone()).or_default();
        e.0 += s;
        e.1 += 1;
    }
    acc.into_iter()
        .map(|(k, (sum, n))| (k, sum / f64::from(n.max(1))))
        .collect()
}

fn at(s: &Scores, case: &str) -> f64 {
    s.get(case).copied().unwrap_or(0.0)
}

fn cases<'a>(all: &[&'a Scores]) -> BTreeSet<&'a str> {
    all.iter()
        .flat_map(|s| s.keys().map(String::as_str))
        .collect()
}

/// Whether `a` is at least as good as `b` on every case and better on one.
pub fn dominates(a: &Scores, b: &Scores) -> bool {
    let keys = cases(&[a, b]);
    keys.iter().all(|k| at(a, k) >= at(b, k)) && keys.iter().any(|k| at(a, k) > at(b, k))
}

/// Indices of the Pareto front among `all` (index 0 is the champion).
pub fn front(all: &[&Scores]) -> Vec<usize> {
    let keys = cases(all);
    let best: BTreeMap<&str, f64> = keys
        .iter()
        .map(|k| (*k, all.iter().map(|s| at(s, k)).fold(f64::MIN, f64::max)))
        .collect();
    (0..all.len())
        .filter(|i| keys.iter().any(|k| at(all[*i], k) >= best[k]))
        .filter(|i| !(0..all.len()).any(|j| j != *i && dominates(all[j], all[*i])))
        .collect()
}

/// The front member to improve next: the one best on the most cases, then
/// the highest mean, then the latest (it builds on the most feedback).
pub fn parent(all: &[&Scores]) -> usize {
    let keys = cases(all);
    let f = front(all);
    let wins = |i: usize| {
        keys.iter()
            .filter(|k| all.iter().all(|s| at(all[i], k) >= at(s, k)))
            .count()
    };
    let mean = |i: usize| {
        let n = keys.len().max(1) as f64;
        keys.iter().map(|k| at(all[i], k)).sum::<f64>() / n
    };
    f.into_iter()
        .max_by(|a, b| {
            wins(*a)
                .cmp(&wins(*b))
                .then(mean(*a).total_cmp(&mean(*b)))
                .then(a.cmp(b))
        })
        .unwrap_or(0)
}

/// The cases on which `new` beats every score seen before it.
pub fn improved(new: &Scores, before: &[&Scores]) -> Vec<String> {
    new.iter()
        .filter(|(k, v)| before.iter().all(|s| **v > at(s, k)))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Cases every chain passes.
pub fn all_pass(s: &Scores) -> bool {
    !s.is_empty() && s.values().all(|v| *v >= 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, f64)]) -> Scores {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn the_front_keeps_every_candidate_best_somewhere_and_drops_the_dominated() {
        let champion = s(&[("a", 1.0), ("b", 0.0), ("c", 0.2)]);
        let fixes_b = s(&[("a", 1.0), ("b", 1.0), ("c", 0.2)]);
        let fixes_c_breaks_a = s(&[("a", 0.5), ("b", 0.0), ("c", 1.0)]);
        let worse = s(&[("a", 0.5), ("b", 0.0), ("c", 0.2)]);
        let all = [&champion, &fixes_b, &fixes_c_breaks_a, &worse];
        assert_eq!(front(&all), vec![1, 2]);
        assert!(dominates(&fixes_b, &champion));
        assert!(!dominates(&fixes_b, &fixes_c_breaks_a));
        // fixes_b is best on a and b; the other only on c.
        assert_eq!(parent(&all), 1);
        assert_eq!(parent(&[&champion]), 0);
    }

    #[test]
    fn improvement_is_beating_every_earlier_score_on_some_case() {
        let champion = s(&[("a", 1.0), ("b", 0.0)]);
        let c1 = s(&[("a", 1.0), ("b", 1.0)]);
        assert_eq!(improved(&c1, &[&champion]), vec!["b".to_string()]);
        assert!(improved(&c1, &[&champion, &c1]).is_empty());
        assert!(all_pass(&c1) && !all_pass(&champion) && !all_pass(&Scores::new()));
    }
}
