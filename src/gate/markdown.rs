//! `evidence.md`: the verdict on the first line, then what a reviewer needs,
//! section by section. Snapshot-tested.

use std::fmt::Write;

use crate::model::Verdict;

use super::evidence::{Evidence, ScoreDelta};

/// A Markdown table row: each cell with `|` escaped and line breaks folded,
/// so text from a pack or a reviewer cannot break the table.
fn row(cells: &[String]) -> String {
    let cells: Vec<String> = cells
        .iter()
        .map(|c| {
            c.replace('|', "\\|")
                .replace("\r\n", " ")
                .replace(['\n', '\r'], " ")
        })
        .collect();
    format!("| {} |", cells.join(" | "))
}

pub(super) fn pct(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{:.0}%", x * 100.0))
}

fn score(d: &ScoreDelta) -> String {
    match (d.challenger, d.delta, d.ci95) {
        (Some(s), Some(dl), Some((lo, hi))) => format!("{s:.2} ({dl:+.2}, CI {lo:+.2}..{hi:+.2})"),
        (Some(s), _, _) => format!("{s:.2}"),
        _ => "n/a".into(),
    }
}

/// `evidence.md`: the verdict on the first line, then what a reviewer needs.
pub fn render(e: &Evidence) -> String {
    let mut s = String::new();
    headline(&mut s, e);
    regressions(&mut s, e);
    approvals(&mut s, e);
    validation(&mut s, e);
    packs(&mut s, e);
    guardrails(&mut s, e);
    prompt_diff(&mut s, e);
    run_line(&mut s, e);
    s
}

/// The verdict in one line: the first line of `evidence.md`, the check
/// run's title, what the terminal and the quickstart print first.
pub fn verdict_line(e: &Evidence) -> String {
    if e.verdict == Verdict::WaitingForApproval {
        let who = e
            .approvals
            .as_ref()
            .map(|a| a.who_can_approve().join(", "))
            .filter(|w| !w.is_empty())
            // Without the code host's reviews: who, by role.
            .unwrap_or_else(|| "a policy owner (the tier's `policy_owner`)".into());
        let unreadable = e
            .approvals
            .as_ref()
            .filter(|a| !a.unreadable_teams.is_empty())
            .map(|a| {
                format!(
                    " (team membership could not be read for {} team(s): see Approvals)",
                    a.unreadable_teams.len()
                )
            })
            .unwrap_or_default();
        format!("WAITING FOR APPROVAL: evals pass; approval still needed from {who}{unreadable}")
    } else if e.verdict == Verdict::NotEvaluated {
        "NOT EVALUATED: paid model calls were skipped; no pass or fail either way".into()
    } else if let Some(first) = e.reasons.first() {
        let more = if e.reasons.len() > 1 {
            format!(" (+{} more)", e.reasons.len() - 1)
        } else {
            String::new()
        };
        format!("BLOCKED: {first}{more}")
    } else {
        let ran = e
            .packs
            .iter()
            .any(|p| p.pairs > 0 || p.challenger_pass_rate.is_some());
        if ran {
            let pairs: usize = e.packs.iter().map(|p| p.pairs).sum();
            format!(
                "PASS: {} pack(s) changed, {pairs} case pair(s) compared, no blocking regression, all guardrails hold",
                e.packs.len()
            )
        } else {
            // A version-only bump: every chain resolves to what it did, so
            // there is nothing to run.
            format!(
                "PASS: {} pack(s) changed, no eval case ran (no chain's resolved content changed), all guardrails hold",
                e.packs.len()
            )
        }
    }
}

fn headline(s: &mut String, e: &Evidence) {
    let _ = writeln!(s, "{}", verdict_line(e));
    let _ = writeln!(
        s,
        "\n### missionctl gate: `{}` ({:.8}) → `{}` ({:.8})",
        e.base, e.base_commit, e.head, e.head_commit
    );
    if e.paid_calls_skipped {
        let _ = writeln!(
            s,
            "\n> Paid model calls were **skipped** (pull request from a fork, no maintainer opt-in). Validation, the policy checks and any free harness (the demo model, a local command) ran; a maintainer with write access adds the `missionctl-paid-evals` label to run the paid evaluation on the trusted side."
        );
    }
    if !e.reasons.is_empty() && e.verdict != Verdict::NotEvaluated {
        let _ = writeln!(s, "\n#### Blocking\n");
        for r in &e.reasons {
            let _ = writeln!(s, "- {r}");
        }
    }
}

/// Chains as a short list: the first few, then how many more.
pub(crate) fn chain_list(chains: &[String], shown: usize) -> String {
    let head: Vec<&str> = chains.iter().take(shown).map(String::as_str).collect();
    if chains.len() > shown {
        format!("{} and {} more", head.join(", "), chains.len() - shown)
    } else {
        head.join(", ")
    }
}

/// One row per regression group, its chains and an example diff collapsed.
fn regressions(s: &mut String, e: &Evidence) {
    if e.regression_groups.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n#### Regressions\n\n| Tag | Pack | Case | Assertion | Chains | Why (first chain) |\n|---|---|---|---|---|---|"
    );
    for g in &e.regression_groups {
        let cells = [
            format!("**{}**", g.tag),
            format!("`{}`", g.pack_id),
            format!("`{}` ({}:{})", g.case_id, g.case_file, g.case_line),
            format!("`{}`", g.assertion),
            format!(
                "{} of {}",
                g.chains.len(),
                g.chains_evaluated.max(g.chains.len())
            ),
            g.reason.chars().take(200).collect(),
        ];
        let _ = writeln!(s, "{}", row(&cells));
    }
    for g in &e.regression_groups {
        let diff = crate::diff::unified(
            &g.champion_output,
            &g.challenger_output,
            "champion",
            "challenger",
        );
        let _ = writeln!(
            s,
            "\n<details><summary>{} · <code>{}</code> · <code>{}</code>: {} chain(s); the outputs on {}</summary>\n\nChains: {}\n\n```diff\n{}```\n</details>",
            g.tag,
            g.case_id,
            g.assertion,
            g.chains.len(),
            g.example_chain,
            chain_list(&g.chains, 50),
            diff.replace("```", "ʼʼʼ")
        );
    }
}

fn approvals(s: &mut String, e: &Evidence) {
    if let Some(a) = &e.approvals {
        let _ = writeln!(s, "\n#### Approvals\n");
        let _ = writeln!(
            s,
            "| Change | Autonomy | Tier | Needs | Approved by | Who can approve | |\n|---|---|---|---|---|---|---|"
        );
        for r in &a.requirements {
            let cells = [
                format!("`{}`", r.subject),
                r.autonomy
                    .map_or("-".to_string(), |x| format!("{x} ({})", x.meaning())),
                r.tier.to_string(),
                if let Some(role) = &r.role {
                    format!("{} incl. {role}", r.needed)
                } else {
                    r.needed.to_string()
                },
                if r.approved_by.is_empty() {
                    "nobody yet".to_string()
                } else {
                    r.approved_by.join(", ")
                },
                r.owners
                    .iter()
                    .chain(r.role.iter())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if r.satisfied { "ok" } else { "**waiting**" }.to_string(),
            ];
            let _ = writeln!(s, "{}", row(&cells));
        }
        for t in &a.unreadable_teams {
            let _ = writeln!(
                s,
                "\n**Team membership not read:** {t}. Approvals by its members cannot count until then."
            );
        }
        if !a.codeowners_invalid.is_empty() {
            let _ = writeln!(
                s,
                "\nCODEOWNERS lines GitHub skips (fix them on the base branch): {}.",
                a.codeowners_invalid.join("; ")
            );
        }
        if !a.stale.is_empty() {
            let _ = writeln!(
                s,
                "\nApprovals from {} predate the latest push and do not count under this tier.",
                a.stale.join(", ")
            );
        }
        if !a.not_counted.is_empty() {
            let _ = writeln!(
                s,
                "\nApprovals that do not count: {}.",
                a.not_counted.join(", ")
            );
        }
    }
}

fn validation(s: &mut String, e: &Evidence) {
    if !e.validation_errors.is_empty() {
        let _ = writeln!(s, "\n#### Validation errors (under the base's policies)\n");
        for d in e.validation_errors.iter().take(20) {
            let _ = writeln!(
                s,
                "- `{}:{}:{}` **{}**: {}",
                d.file, d.line, d.col, d.code, d.message
            );
        }
    }
}

fn packs(s: &mut String, e: &Evidence) {
    if !e.packs.is_empty() {
        let _ = writeln!(s, "\n#### Packs\n");
        let _ = writeln!(
            s,
            "| Pack | Version | Chains | Pairs | Champion pass | Challenger pass | Δ (McNemar p) | Judge task | Voice | Pairwise W/L/T | Decision |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        for p in &e.packs {
            let cells = [
                format!("`{}` ({} {})", p.pack_id, p.scope_type, p.scope_id),
                format!(
                    "{} → {}",
                    p.base_version.as_deref().unwrap_or("new"),
                    p.head_version.as_deref().unwrap_or("-")
                ),
                format!("{}/{}", p.chains_evaluated, p.chains_total),
                p.pairs.to_string(),
                pct(p.champion_pass_rate),
                pct(p.challenger_pass_rate),
                match (p.pass_rate_delta, p.mcnemar_p) {
                    (Some(d), Some(pv)) => format!("{:+.0} pts (p={pv:.3})", d * 100.0),
                    _ => "n/a".into(),
                },
                score(&p.judge_task),
                score(&p.judge_voice),
                format!(
                    "{}/{}/{}",
                    p.pairwise.challenger_wins, p.pairwise.champion_wins, p.pairwise.ties
                ),
                if p.blocked_by.is_empty() {
                    "ok"
                } else {
                    "**blocked**"
                }
                .to_string(),
            ];
            let _ = writeln!(s, "{}", row(&cells));
        }
        for p in &e.packs {
            if let Some(i) = &p.insufficient_evidence {
                let _ = writeln!(s, "\n> `{}`: insufficient evidence: {i}", p.pack_id);
            }
            if p.not_evaluated > 0 {
                let _ = writeln!(
                    s,
                    "\n> `{}`: {} case(s) **not evaluated** (skipped): a judge-backed assertion (`llm-rubric`, `g-eval`, `factuality`, `answer-relevance`, `voice-rubric`) decides them and `eval.judge` is not configured in mission.yaml; they count in no pass rate",
                    p.pack_id, p.not_evaluated
                );
            }
            if p.not_run_for_budget > 0 {
                let _ = writeln!(
                    s,
                    "\n> `{}`: {} case(s) **not run**: the budget could not pay for them; the pass rates above are over the {} that ran",
                    p.pack_id, p.not_run_for_budget, p.pairs
                );
            }
            for err in p.errors.iter().take(5) {
                let _ = writeln!(s, "\n> `{}`: error: {err}", p.pack_id);
            }
        }
    }
}

fn guardrails(s: &mut String, e: &Evidence) {
    let _ = writeln!(s, "\n#### Guardrails (from the base revision)\n");
    let _ = writeln!(s, "| Guardrail | Value | Cap | |\n|---|---|---|---|");
    for g in &e.guardrails {
        let cells = [
            g.name.clone(),
            g.value.clone(),
            g.cap.clone(),
            if g.exceeded { "**exceeded**" } else { "ok" }.to_string(),
        ];
        let _ = writeln!(s, "{}", row(&cells));
    }
    if e.needs_policy_owner {
        let _ = writeln!(
            s,
            "\n#### Policy changes\n\nThis pull request changes {}; it needs a policy owner's approval. The gate evaluated it under the base's policies.",
            e.policy_changes
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(n) = &e.sample_note {
        let _ = writeln!(s, "\n> Sample: {n}");
    }
}

fn prompt_diff(s: &mut String, e: &Evidence) {
    if let Some(d) = &e.diff {
        let layers: Vec<_> = d.packs.iter().filter(|p| !p.prompts.is_empty()).collect();
        if !layers.is_empty() {
            let _ = writeln!(s, "\n#### Prompt diff by scope layer\n");
            for p in layers {
                for pd in &p.prompts {
                    let _ = writeln!(
                        s,
                        "<details><summary>{} {} · <code>{}</code> ({} → {} tokens)</summary>\n\n```diff\n{}```\n</details>\n",
                        p.scope_type,
                        p.scope_id,
                        pd.file,
                        pd.tokens_before,
                        pd.tokens_after,
                        pd.unified.replace("```", "ʼʼʼ")
                    );
                }
            }
        }
    }
}

fn run_line(s: &mut String, e: &Evidence) {
    let _ = writeln!(
        s,
        "\n#### Run\n\nHarness: {}. Judge: {}. Model requests: {} sent, {} served from cache ({:.0}% hit rate); {} retried, {} throttled. Total cost: ${:.4}.{}",
        e.harness,
        e.judge.as_deref().unwrap_or("none"),
        e.model_requests,
        e.cache_hits,
        e.cache_hit_rate * 100.0,
        e.retries,
        e.throttled,
        e.cost_usd,
        if e.partial {
            " Results are partial (spend cap)."
        } else {
            ""
        }
    );
}

#[cfg(test)]
mod tests {
    use super::row;

    #[test]
    fn cells_cannot_break_the_table() {
        assert_eq!(
            row(&["a|b".into(), "line\nbreak".into(), "ok".into()]),
            "| a\\|b | line break | ok |"
        );
    }
}
