//! Regressions as a reviewer reads them: one group per pack, case, tag and
//! assertion, with the chains it failed on and one example (the champion's
//! and the challenger's output on the first of them), most severe first.
//! Pure; the terminal, `evidence.md`, the pull-request comment and the
//! check run's annotations all render these groups.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Tag;

use super::evidence::Regression;

/// One regression, on every chain it happened on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionGroup {
    pub tag: Tag,
    pub pack_id: String,
    pub case_id: String,
    pub case_file: String,
    pub case_line: u64,
    pub assertion: String,
    /// The chains it failed on, sorted.
    pub chains: Vec<String>,
    /// The chains of the pack the gate evaluated.
    pub chains_evaluated: usize,
    /// Why it failed on the first chain.
    pub reason: String,
    pub example_chain: String,
    pub champion_output: String,
    pub challenger_output: String,
}

/// Group `regressions`; `chains_evaluated` is per pack id.
pub fn group(
    regressions: &[Regression],
    chains_evaluated: &BTreeMap<String, usize>,
) -> Vec<RegressionGroup> {
    let mut by: BTreeMap<(Tag, &str, &str, &str), RegressionGroup> = BTreeMap::new();
    let mut sorted: Vec<&Regression> = regressions.iter().collect();
    sorted.sort_by(|a, b| a.chain.cmp(&b.chain));
    for r in sorted {
        let g = by
            .entry((r.tag, &r.pack_id, &r.case_id, &r.assertion))
            .or_insert_with(|| RegressionGroup {
                tag: r.tag,
                pack_id: r.pack_id.clone(),
                case_id: r.case_id.clone(),
                case_file: r.case_file.clone(),
                case_line: r.case_line,
                assertion: r.assertion.clone(),
                chains: Vec::new(),
                chains_evaluated: chains_evaluated.get(&r.pack_id).copied().unwrap_or(0),
                reason: r.challenger_reason.clone(),
                example_chain: r.chain.clone(),
                champion_output: r.champion_output.clone(),
                challenger_output: r.challenger_output.clone(),
            });
        if !g.chains.contains(&r.chain) {
            g.chains.push(r.chain.clone());
        }
    }
    let mut out: Vec<RegressionGroup> = by.into_values().collect();
    // Within a tag, the widest first: what most chains suffer leads.
    out.sort_by(|a, b| {
        (
            a.tag,
            std::cmp::Reverse(a.chains.len()),
            &a.pack_id,
            &a.case_id,
            &a.assertion,
        )
            .cmp(&(
                b.tag,
                std::cmp::Reverse(b.chains.len()),
                &b.pack_id,
                &b.case_id,
                &b.assertion,
            ))
    });
    out
}

impl RegressionGroup {
    /// "on 21 of 21 chains" / "on hr-ops/acme".
    pub fn where_(&self) -> String {
        match self.chains.as_slice() {
            [one] if self.chains_evaluated <= 1 => format!("on {one}"),
            [one] => format!("on {one} (1 of {} chains)", self.chains_evaluated),
            many => format!(
                "on {} of {} chains",
                many.len(),
                self.chains_evaluated.max(many.len())
            ),
        }
    }

    /// The one-line reason the verdict gives.
    pub fn line(&self) -> String {
        format!(
            "{} regression in {} / {} (`{}`) {}: {}",
            self.tag,
            self.pack_id,
            self.case_id,
            self.assertion,
            self.where_(),
            self.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(tag: Tag, chain: &str, case: &str, assertion: &str) -> Regression {
        Regression {
            pack_id: "global".into(),
            chain: chain.into(),
            case_id: case.into(),
            case_file: "packs/global/evals/cases.yaml".into(),
            case_line: 3,
            tag,
            assertion: assertion.into(),
            challenger_reason: format!("{assertion} failed on {chain}"),
            champion_output: "I can't share that.".into(),
            challenger_output: "password: hunter2".into(),
        }
    }

    #[test]
    fn one_group_per_case_and_assertion_safety_first() {
        let mut regs = Vec::new();
        for c in ["b/x", "a/x", "c/x"] {
            regs.push(reg(Tag::Format, c, "refuses", "is-json"));
            regs.push(reg(Tag::Safety, c, "refuses", "not-contains"));
            regs.push(reg(Tag::Safety, c, "refuses", "not-regex"));
        }
        let g = group(&regs, &BTreeMap::from([("global".to_string(), 21)]));
        assert_eq!(g.len(), 3);
        assert_eq!(
            g.iter()
                .map(|g| (g.tag, g.assertion.as_str()))
                .collect::<Vec<_>>(),
            [
                (Tag::Safety, "not-contains"),
                (Tag::Safety, "not-regex"),
                (Tag::Format, "is-json")
            ]
        );
        assert_eq!(g[0].chains, ["a/x", "b/x", "c/x"]);
        assert_eq!(g[0].example_chain, "a/x");
        assert_eq!(
            g[0].line(),
            "safety regression in global / refuses (`not-contains`) on 3 of 21 chains: not-contains failed on a/x"
        );
        let one = group(&regs[..1], &BTreeMap::new());
        assert_eq!(one[0].where_(), "on b/x");
    }
}
