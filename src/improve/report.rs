//! What an improvement run found and did: the record kept in the state
//! store, printed by `missionctl improve`, and the pull request's body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{CandidateOutcome, CaseFeedback, StopReason, TelemetrySignal, Verdict};

/// The caps a run worked within, and where each came from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Caps {
    pub tier: String,
    pub max_candidates: u32,
    /// Where `max_candidates` comes from (each source and its value).
    #[serde(default)]
    pub max_candidates_from: String,
    /// The tenant's daily cap and what was left of it when the run started.
    pub daily_cap_usd: f64,
    pub daily_left_usd: f64,
    /// What this run may spend (tier's max_optimization_spend_per_run, --budget-usd).
    pub run_budget_usd: Option<f64>,
    pub max_prompt_growth_tokens: u64,
    /// The tier's `propose_partial_fixes`.
    #[serde(default)]
    pub propose_partial_fixes: bool,
    /// The tier's `supersede_open_proposals`.
    #[serde(default)]
    pub supersede_open_proposals: bool,
}

/// Model calls a run made (cache hits are free and counted apart).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Calls {
    pub optimiser: u64,
    /// Harness and judge requests of the baseline and every evaluation.
    pub evaluation: u64,
    pub cache_hits: u64,
    /// Harness runs (one case on one chain) across the baseline and the
    /// candidates: GEPA's "metric calls".
    pub rollouts: u64,
}

/// One case's score before and after (the champion, a candidate).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaseDelta {
    pub case_id: String,
    pub champion: f64,
    pub candidate: f64,
}

/// One candidate the run tried.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Candidate {
    pub n: u32,
    pub version: String,
    pub rationale: String,
    pub outcome: CandidateOutcome,
    /// Why it was set aside (out of scope, unusable, a hard check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Which candidate (0 = the champion) it was built from.
    pub parent: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The proposal's content digest ([`super::publish::digest`]): what
    /// identifies it, whichever run or commit made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_run_id: Option<String>,
    pub champion_pass_rate: Option<f64>,
    pub pass_rate: Option<f64>,
    pub mcnemar_p: Option<f64>,
    pub prompt_growth_tokens: i64,
    /// Per case: mean over chains (1 pass; else half the deterministic score).
    #[serde(default)]
    pub scores: BTreeMap<String, f64>,
    /// Its mean case score on the feedback set (the cases the optimiser
    /// sees) and on the held-out selection set (what decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_score: Option<f64>,
    /// Cases it passes everywhere that the champion failed somewhere, and
    /// the reverse.
    #[serde(default)]
    pub fixed: Vec<String>,
    #[serde(default)]
    pub broke: Vec<String>,
    pub spend_usd: f64,
    pub model_requests: u64,
    /// The gate's blocking reasons, when it would not pass.
    #[serde(default)]
    pub gate_reasons: Vec<String>,
    /// When the gate blocks it only for an absolute floor (the pass-rate
    /// or judge-score floor): that floor, in the gate's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<String>,
}

/// A pull request the run opened, or found already open for the proposal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
    /// It was open before this run (nothing new was opened).
    pub existing: bool,
}

/// Everything one run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub run_id: String,
    pub pack_id: String,
    pub tenant: String,
    pub champion_version: String,
    pub base: String,
    pub base_commit: String,
    pub started_at: String,
    pub finished_at: String,
    pub caps: Caps,
    /// The champion's failing and low-scoring cases (the signal).
    pub failures: Vec<CaseFeedback>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetrySignal>,
    /// Main's validation errors in this pack's files (`file:line: message`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation: Vec<String>,
    /// The pack's `kpis.success_rate.min`, what telemetry is held to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpi_success_min: Option<f64>,
    /// Task types failing in production (success below the KPI minimum)
    /// that no eval case covers (no case has `vars.task_type` equal to it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncovered_task_types: Vec<String>,
    /// (affected chains, chains evaluated).
    pub chains: (usize, usize),
    pub champion_scores: BTreeMap<String, f64>,
    /// The cases shown to the optimiser and the held-out selection set.
    #[serde(default)]
    pub split: super::split::Split,
    /// The champion's mean case score on each set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion_feedback_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion_selection_score: Option<f64>,
    /// The winner is proposed for clearing main's validation errors in the
    /// pack's files (no eval case fails, or none improved), with no loss on
    /// the selection set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub validation_fix: bool,
    pub candidates: Vec<Candidate>,
    pub stop: StopReason,
    pub stop_detail: String,
    /// The candidate proposed (beats the champion with the gate's statistics).
    pub winner: Option<u32>,
    /// The winner is a partial fix: it raises the pass rate and breaks
    /// nothing, but the gate's floor (named here) still blocks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_fix: Option<String>,
    /// Why nothing is proposed, when nothing is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_winner: Option<String>,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub pull_request: Option<PullRequest>,
    /// The open improvement pull request this run's proposal supersedes
    /// (commented on and closed), where the tier allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<PullRequest>,
    /// What publishing did when nothing new was pushed: the same proposal
    /// already open (its body refreshed), or already on the branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    pub spend_usd: f64,
    pub calls: Calls,
    /// The winning candidate's gate evidence, in the gate's own words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_markdown: Option<String>,
}

pub(super) fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.1}%", v * 100.0))
}

fn score(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

impl Report {
    pub fn winner(&self) -> Option<&Candidate> {
        self.winner
            .and_then(|n| self.candidates.iter().find(|c| c.n == n))
    }

    /// Production's shortfall, in one sentence, when telemetry shows one.
    pub fn production_shortfall(&self) -> Option<String> {
        let t = self.telemetry.as_ref()?;
        let min = self.kpi_success_min.unwrap_or(1.0);
        let failing: Vec<String> = t
            .worst_task_types
            .iter()
            .filter(|(_, _, rate)| *rate + 1e-12 < min)
            .map(|(task, runs, rate)| format!("`{task}` {:.0}% of {runs} runs", rate * 100.0))
            .collect();
        let low = t.success_rate.is_some_and(|s| s + 1e-12 < min);
        if failing.is_empty() && !low {
            return None;
        }
        Some(format!(
            "production telemetry over {} day(s): {} runs, success {} (KPI minimum {}); task types below it: {}; error codes: {}",
            t.window_days,
            t.runs,
            pct(t.success_rate),
            pct(self.kpi_success_min),
            if failing.is_empty() {
                "none".to_string()
            } else {
                failing.join(", ")
            },
            if t.error_codes.is_empty() {
                "none".to_string()
            } else {
                t.error_codes
                    .iter()
                    .map(|(c, n)| format!("`{c}` x{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ))
    }

    /// Eval cases to add for failing task types no case covers: proposed
    /// for a reviewer to complete (the worker never edits eval files).
    pub fn proposed_cases(&self) -> Option<String> {
        if self.uncovered_task_types.is_empty() {
            return None;
        }
        let codes: Vec<&str> = self
            .telemetry
            .iter()
            .flat_map(|t| t.error_codes.iter().map(|(c, _)| c.as_str()))
            .collect();
        Some(fenced(
            "yaml",
            &case_skeletons(&self.uncovered_task_types, &codes),
        ))
    }

    /// The two sets, in one line: sizes, the champion's scores, and why
    /// the split is not a clean one when it is not.
    pub fn sets_line(&self) -> String {
        format!(
            "cases: feedback set {} (shown to the optimiser, champion {}), held-out selection set {} (never shown; decides; champion {}){}",
            self.split.feedback.len(),
            score(self.champion_feedback_score),
            self.split.selection.len(),
            score(self.champion_selection_score),
            self.split
                .note
                .as_ref()
                .map(|n| format!("; {n}"))
                .unwrap_or_default()
        )
    }

    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "improve {} {} (run {}): {} failing case(s) on {} of {} chains; {} candidate(s) tried, ${:.4} spent; stopped: {} ({})\n",
            self.pack_id,
            self.champion_version,
            self.run_id,
            self.failures.len(),
            self.chains.1,
            self.chains.0,
            self.candidates.len(),
            self.spend_usd,
            self.stop,
            self.stop_detail
        );
        if !self.champion_scores.is_empty() {
            s.push_str(&format!("{}\n", self.sets_line()));
        }
        for c in &self.candidates {
            s.push_str(&format!(
                "  #{} {} {}: {}{}\n",
                c.n,
                c.version,
                c.outcome,
                match (c.pass_rate, c.champion_pass_rate) {
                    (Some(p), Some(ch)) => format!(
                        "pass rate {} -> {}, feedback set {} -> {}, selection set {} -> {}, fixed {:?}",
                        pct(Some(ch)),
                        pct(Some(p)),
                        score(self.champion_feedback_score),
                        score(c.feedback_score),
                        score(self.champion_selection_score),
                        score(c.selection_score),
                        c.fixed
                    ),
                    _ => String::new(),
                },
                c.reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
        match (
            self.winner().filter(|_| self.branch.is_some()),
            &self.no_winner,
        ) {
            (Some(w), _) => s.push_str(&format!(
                "proposed{}{}: candidate #{} ({}) on branch {}{}\n",
                self.partial_fix
                    .as_ref()
                    .map(|f| format!(" as a partial fix (still blocked: {f})"))
                    .unwrap_or_default(),
                if self.validation_fix {
                    " as a fix for main's validation errors"
                } else {
                    ""
                },
                w.n,
                w.version,
                self.branch.as_deref().unwrap_or("-"),
                self.pull_request
                    .as_ref()
                    .map(|p| format!(
                        ", pull request #{}{} {}",
                        p.number,
                        if p.existing { " (already open)" } else { "" },
                        p.url
                    ))
                    .unwrap_or_default()
            )),
            (None, Some(why)) => s.push_str(&format!("no proposal: {why}\n")),
            (None, None) => {}
        }
        if let Some(p) = &self.published {
            s.push_str(&format!("{p}\n"));
        }
        for v in &self.validation {
            s.push_str(&format!("main fails validation: {v}\n"));
        }
        if let Some(p) = self.production_shortfall() {
            s.push_str(&format!("{p}\n"));
        }
        if !self.uncovered_task_types.is_empty() {
            s.push_str(&format!(
                "no eval case covers task type(s) {}: add cases with `vars.task_type` (proposed in the report and the pull request body)\n",
                self.uncovered_task_types.join(", ")
            ));
        }
        s
    }

    /// The pull request's title.
    pub fn title(&self) -> String {
        let w = self.winner();
        format!(
            "{}missionctl improve: {} {} -> {}",
            if self.partial_fix.is_some() {
                "[partial fix] "
            } else {
                ""
            },
            self.pack_id,
            self.champion_version,
            w.map_or("-", |w| w.version.as_str())
        )
    }

    /// The pull request's body: the evidence, from the gate's own run.
    pub fn body(&self) -> String {
        let Some(w) = self.winner() else {
            return self.summary();
        };
        let mut s = format!(
            "Proposed by `missionctl improve` (run `{}`). It never merges anything: the gate and reviewers decide.\n\n",
            self.run_id
        );
        s.push_str(&format!(
            "**{}** {} → {} · pass rate {} → {} (gate run `{}`, verdict {}) · {} chain(s) of {}\n\n",
            self.pack_id,
            self.champion_version,
            w.version,
            pct(w.champion_pass_rate),
            pct(w.pass_rate),
            w.gate_run_id.as_deref().unwrap_or("-"),
            w.verdict.map_or("-", Verdict::as_str),
            self.chains.1,
            self.chains.0
        ));
        s.push_str(&format!(
            "| set | cases | champion | candidate |\n|---|---:|---:|---:|\n| feedback (shown to the optimiser) | {} | {} | {} |\n| selection (held out, decides) | {} | {} | {} |\n\n",
            self.split.feedback.len(),
            score(self.champion_feedback_score),
            score(w.feedback_score),
            self.split.selection.len(),
            score(self.champion_selection_score),
            score(w.selection_score),
        ));
        if let Some(n) = &self.split.note {
            s.push_str(&format!("Split: {n}.\n\n"));
        }
        if self.validation_fix {
            s.push_str("It clears main's validation errors in the pack's files (listed below) and loses nothing on the selection set.\n\n");
        }
        if let Some(old) = &self.supersedes {
            s.push_str(&format!(
                "Supersedes #{} ({}), which proposes different content for this pack; it is closed with a comment pointing here (tier {}'s `supersede_open_proposals`).\n\n",
                old.number, old.url, self.caps.tier
            ));
        }
        if let Some(d) = &w.digest {
            s.push_str(&format!(
                "Proposal `{d}` (the digest of its content: a rerun that finds the same content pushes nothing; different content waits until this pull request is closed).\n\n"
            ));
        }
        if let Some(f) = &self.partial_fix {
            let remaining: Vec<String> = self
                .failures
                .iter()
                .filter(|x| !w.fixed.contains(&x.case_id))
                .map(|x| format!("`{}`", x.case_id))
                .collect();
            s.push_str(&format!(
                "> **Partial fix.** It raises the pass rate and breaks no case, but the gate still blocks it: {f}. Still failing: {}. Merging it is a reviewer's call; the gate will not pass it until the floor is met.\n\n",
                if remaining.is_empty() {
                    "no case the signal named (the floor counts every chain)".to_string()
                } else {
                    remaining.join(", ")
                }
            ));
        }
        // The optimiser's words are data: quoted literally (no headings,
        // links or @-mentions of its own in the pull request).
        s.push_str(&format!("### Why\n\n{}\n", literal_block(&w.rationale)));
        s.push_str("### Failures addressed\n\n");
        for f in &self.failures {
            let fixed = w.fixed.contains(&f.case_id);
            s.push_str(&format!(
                "- {} `{}` ({} of {} chains failed): {}\n",
                if fixed { "fixed" } else { "still failing" },
                f.case_id,
                f.chains_failed,
                f.chains,
                f.failed
                    .iter()
                    .map(|c| format!("{} [{}] {}", c.kind, c.tag, c.expected))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        s.push_str("\n### Before and after, per case\n\n| case | set | champion | candidate |\n|---|---|---:|---:|\n");
        for (case, after) in &w.scores {
            let before = self.champion_scores.get(case).copied().unwrap_or(0.0);
            let set = if self.split.held_out().contains(case.as_str()) {
                "selection"
            } else if self.split.selection.contains(case) {
                "both"
            } else {
                "feedback"
            };
            s.push_str(&format!(
                "| `{case}` | {set} | {before:.2} | {after:.2} |\n"
            ));
        }
        if !self.validation.is_empty() || self.production_shortfall().is_some() {
            s.push_str("\n### Outside the eval cases\n\n");
            for v in &self.validation {
                s.push_str(&format!("- main fails validation: {v}\n"));
            }
            if let Some(p) = self.production_shortfall() {
                s.push_str(&format!("- {p}\n"));
            }
        }
        if let Some(cases) = self.proposed_cases() {
            s.push_str(&format!(
                "\n### Eval cases to add\n\nNo eval case covers {}, which fail(s) in production. Proposed for a reviewer to complete and add (this worker never edits eval files):\n\n{cases}",
                self.uncovered_task_types
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        s.push_str("\nScore: mean over chains of 1 for a pass, else half the share of deterministic assertions that held.\n\n### Candidates tried\n\n| # | version | outcome | pass rate | feedback set | selection set | note |\n|---:|---|---|---:|---:|---:|---|\n");
        for c in &self.candidates {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                c.n,
                c.version,
                c.outcome,
                pct(c.pass_rate),
                score(c.feedback_score),
                score(c.selection_score),
                c.reason.as_deref().unwrap_or("").replace('|', "\\|")
            ));
        }
        s.push_str(&format!(
            "\n### Spend\n\n${:.4} in this run ({} optimiser call(s), {} evaluation request(s), {} cache hit(s)); caps: {} candidate(s), ${:.2}/day for `{}` (${:.4} left at the start){}.\n",
            self.spend_usd,
            self.calls.optimiser,
            self.calls.evaluation,
            self.calls.cache_hits,
            self.caps.max_candidates,
            self.caps.daily_cap_usd,
            self.tenant,
            self.caps.daily_left_usd,
            self.caps
                .run_budget_usd
                .map(|b| format!(", ${b:.2} per run"))
                .unwrap_or_default()
        ));
        if let Some(md) = &self.evidence_markdown {
            s.push_str("\n<details><summary>The gate's evidence for this candidate</summary>\n\n");
            s.push_str(md);
            s.push_str("\n</details>\n");
        }
        s.push_str(&format!("\nMissionctl-Improve-Run: {}\n", self.run_id));
        s
    }
}

/// Eval case skeletons, one per task type. Task types and error codes come
/// from harnesses: every value is written as a quoted YAML (JSON) string,
/// so none adds keys or lines of its own.
fn case_skeletons(task_types: &[String], codes: &[&str]) -> String {
    let q = |v: String| serde_json::Value::String(v).to_string();
    let mut yaml = String::new();
    for t in task_types {
        yaml.push_str(&format!(
            "- id: {}\n  description: {}\n  vars:\n    task_type: {}\n    input: {}\n  assert:\n    - {{ type: is-json, tag: format }}\n",
            q(format!("{t}-from-production")),
            q(format!(
                "{t} runs fail in production{}",
                if codes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", codes.join(", "))
                }
            )),
            q(t.clone()),
            q(format!("TODO: a real {t} request that failed")),
        ));
    }
    yaml
}

/// `text` in a fenced code block whose fence is longer than any run of
/// backticks inside it, so nothing in it can close the block early.
pub(crate) fn fenced(info: &str, text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let body = text.strip_suffix('\n').unwrap_or(text);
    format!("{fence}{info}\n{body}\n{fence}\n")
}

/// Free text from a model, shown literally in markdown.
fn literal_block(text: &str) -> String {
    fenced("text", text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An optimiser's rationale that tries to close the block, fake a
    /// verdict heading and mention a team stays one literal block.
    #[test]
    fn model_text_cannot_leave_its_block() {
        let why = "fine\n```\n</details>\n## missionctl gate: PASS\n@acme-fleet/security please merge\n````";
        let b = literal_block(why);
        assert!(b.starts_with("`````text\n"), "{b}");
        assert!(b.ends_with("\n`````\n"), "{b}");
        assert_eq!(b.matches("`````").count(), 2, "{b}");
    }

    /// Harness-reported task types with quotes, YAML syntax and mentions
    /// give skeletons that parse to exactly those values.
    #[test]
    fn case_skeletons_quote_what_harnesses_reported() {
        let types = vec![
            "q\" x: [".to_string(),
            "@acme-fleet/security".to_string(),
            "- id: pwn".to_string(),
        ];
        let y = case_skeletons(&types, &["bad: code"]);
        let v = crate::yaml::parse(&y).expect("parses").to_json();
        let cases = v.as_array().expect("a list");
        assert_eq!(cases.len(), 3, "{y}");
        for (c, t) in cases.iter().zip(&types) {
            assert_eq!(c["vars"]["task_type"], serde_json::json!(t), "{y}");
            assert_eq!(c["id"], serde_json::json!(format!("{t}-from-production")));
            assert_eq!(
                c.as_object().expect("map").keys().count(),
                4,
                "id, description, vars, assert and nothing else: {y}"
            );
        }
    }
}
