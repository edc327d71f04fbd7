//! GEPA's discipline: the pack's eval cases split, deterministically, into
//! a **feedback set** (its failures and passing examples are what the
//! optimiser is shown) and a held-out **selection set** (never shown: the
//! Pareto front, the parent of the next candidate, whether a candidate
//! improved, and the candidate proposed are decided on it).
//!
//! The rule, in each of two strata (the cases the champion fails or scores
//! low on, and the cases it passes): order the cases (failing cases by
//! their most severe failed check, so that failures of one kind sit side by
//! side, then by SHA-256 of pack id and case id; passing cases by that
//! hash), and hold out every second one. A kind of failure seen on two
//! cases or more is therefore both shown and held out. Too small to split:
//! fewer than [`MIN_CASES`] cases in all (every case is in both sets), and
//! a single failing case (it is shown, and kept in the selection set too,
//! since no other case could show an improvement); the report says so.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::CaseFeedback;

use super::select::Scores;

/// Fewer cases than this are not split.
pub const MIN_CASES: usize = 4;

/// Which cases the optimiser sees and which decide.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Case ids shown to the optimiser (failures and passing examples).
    pub feedback: BTreeSet<String>,
    /// Case ids selection decides on.
    pub selection: BTreeSet<String>,
    /// Why the split is not a clean one (too few cases, a single failing
    /// case), in a sentence for the report; `None` when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn hash(pack_id: &str, case_id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(pack_id.as_bytes());
    h.update([0]);
    h.update(case_id.as_bytes());
    h.finalize().into()
}

/// The kind of a failure: its most severe failed check (tag, type, expected).
fn kind(f: &CaseFeedback) -> (bool, String) {
    let worst = f.failed.iter().min_by_key(|c| c.tag);
    match worst {
        Some(c) => (false, format!("{}\0{}\0{}", c.tag, c.kind, c.expected)),
        None => (true, String::new()),
    }
}

impl Split {
    /// Split `cases` (every case id of the pack) given the champion's
    /// `failures`. Deterministic: the same cases and failures, the same split.
    pub fn new(pack_id: &str, cases: &BTreeSet<String>, failures: &[CaseFeedback]) -> Split {
        if cases.len() < MIN_CASES {
            return Split {
                feedback: cases.clone(),
                selection: cases.clone(),
                note: Some(format!(
                    "{} case(s) are too few to hold any out (fewer than {MIN_CASES}): the optimiser sees every case and selection uses the same cases",
                    cases.len()
                )),
            };
        }
        let failing: BTreeSet<&str> = failures.iter().map(|f| f.case_id.as_str()).collect();
        let mut fail: Vec<&CaseFeedback> = failures
            .iter()
            .filter(|f| cases.contains(&f.case_id))
            .collect();
        fail.sort_by_key(|f| (kind(f), hash(pack_id, &f.case_id)));
        let mut pass: Vec<&String> = cases
            .iter()
            .filter(|c| !failing.contains(c.as_str()))
            .collect();
        pass.sort_by_key(|c| hash(pack_id, c));
        let mut s = Split::default();
        for (i, f) in fail.iter().enumerate() {
            if i % 2 == 1 {
                s.selection.insert(f.case_id.clone());
            } else {
                s.feedback.insert(f.case_id.clone());
            }
        }
        for (i, c) in pass.iter().enumerate() {
            if i % 2 == 1 {
                s.selection.insert((*c).clone());
            } else {
                s.feedback.insert((*c).clone());
            }
        }
        if fail.len() == 1 {
            s.selection.insert(fail[0].case_id.clone());
            s.note = Some(format!(
                "one failing case (`{}`) cannot be both shown and held out: it is in both sets; the other {} case(s) are split",
                fail[0].case_id,
                cases.len() - 1
            ));
        }
        s
    }

    /// Whether the optimiser may see case `id`.
    pub fn shown(&self, id: &str) -> bool {
        self.feedback.contains(id)
    }

    /// Cases held out: in the selection set and never shown.
    pub fn held_out(&self) -> BTreeSet<&str> {
        self.selection
            .iter()
            .filter(|c| !self.feedback.contains(*c))
            .map(String::as_str)
            .collect()
    }
}

/// `scores` restricted to the cases in `ids`.
pub fn restrict(scores: &Scores, ids: &BTreeSet<String>) -> Scores {
    scores
        .iter()
        .filter(|(k, _)| ids.contains(*k))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// The mean case score over `ids` (a case without a score counts 0), or
/// `None` for no case.
pub fn mean_over(scores: &Scores, ids: &BTreeSet<String>) -> Option<f64> {
    (!ids.is_empty()).then(|| {
        ids.iter()
            .map(|k| scores.get(k).copied().unwrap_or(0.0))
            .sum::<f64>()
            / ids.len() as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FailedCheck, Tag};

    fn failing(id: &str, tag: Tag, expected: &str) -> CaseFeedback {
        CaseFeedback {
            case_id: id.into(),
            description: String::new(),
            input: String::new(),
            output: String::new(),
            chains_failed: 1,
            chains: 1,
            failed_chains: vec![],
            failed: vec![FailedCheck {
                kind: "contains".into(),
                tag,
                expected: expected.into(),
                reason: String::new(),
            }],
            judge: None,
            criteria: Default::default(),
        }
    }

    fn ids(n: usize) -> BTreeSet<String> {
        (0..n).map(|i| format!("case-{i}")).collect()
    }

    #[test]
    fn each_kind_of_failure_is_both_shown_and_held_out_and_the_split_is_stable() {
        let cases = ids(9);
        let f = vec![
            failing("case-1", Tag::Safety, "\"escalate\": true"),
            failing("case-2", Tag::Format, "contract:x"),
            failing("case-5", Tag::Safety, "\"escalate\": true"),
            failing("case-7", Tag::Format, "contract:x"),
        ];
        let s = Split::new("p", &cases, &f);
        assert_eq!(s, Split::new("p", &cases, &f), "deterministic");
        assert!(s.note.is_none());
        // Disjoint and covering.
        assert!(s.feedback.is_disjoint(&s.selection));
        assert_eq!(
            s.feedback
                .union(&s.selection)
                .cloned()
                .collect::<BTreeSet<_>>(),
            cases
        );
        // One of each kind on each side.
        for pair in [["case-1", "case-5"], ["case-2", "case-7"]] {
            assert!(
                pair.iter().filter(|c| s.shown(c)).count() == 1,
                "{pair:?} {s:?}"
            );
        }
        // Passing cases: every second one held out (5 passing: 2 or 3 held).
        let held_passing = s
            .held_out()
            .iter()
            .filter(|c| !f.iter().any(|x| x.case_id == **c))
            .count();
        assert_eq!(held_passing, 2, "{s:?}");
        // Another pack orders its cases differently.
        let other = Split::new("q", &cases, &[]);
        assert_eq!(other.selection.len(), 4);
    }

    #[test]
    fn too_small_to_split_is_said_and_uses_every_case_twice() {
        let s = Split::new("p", &ids(3), &[failing("case-0", Tag::Safety, "x")]);
        assert_eq!(s.feedback, ids(3));
        assert_eq!(s.selection, ids(3));
        assert!(s.note.as_deref().is_some_and(|n| n.contains("too few")));
        assert!(s.held_out().is_empty());
        // A single failing case: shown, and in the selection set too.
        let one = Split::new("p", &ids(8), &[failing("case-3", Tag::Safety, "x")]);
        assert!(one.shown("case-3") && one.selection.contains("case-3"));
        assert!(one.note.as_deref().is_some_and(|n| n.contains("case-3")));
        assert_eq!(one.held_out().len(), 3, "{one:?}");
    }

    #[test]
    fn scores_restricted_to_a_set() {
        let s: Scores = [("a".to_string(), 1.0), ("b".to_string(), 0.0)]
            .into_iter()
            .collect();
        let only_a: BTreeSet<String> = ["a".to_string()].into();
        assert_eq!(restrict(&s, &only_a).len(), 1);
        assert_eq!(mean_over(&s, &only_a), Some(1.0));
        let ab: BTreeSet<String> = ["a".to_string(), "c".to_string()].into();
        assert_eq!(mean_over(&s, &ab), Some(0.5));
        assert_eq!(mean_over(&s, &BTreeSet::new()), None);
    }
}
