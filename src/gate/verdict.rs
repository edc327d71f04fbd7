//! The verdict, without I/O: every blocking reason in the order a reviewer
//! needs them (safety and format regressions first), the latency and spend
//! guardrails, and PASS / WAITING FOR APPROVAL / BLOCKED.

use crate::diagnostic::Diagnostic;
use crate::model::{ApprovalReport, Verdict};

use super::evidence::{GuardrailRow, Regression};
use super::score::PackScore;

/// One tenant's spend in this run.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendRow {
    pub tenant: String,
    pub before: f64,
    pub now: f64,
    pub cap: f64,
    pub exhausted: bool,
}

/// What the verdict is decided from.
#[derive(Debug, Default)]
pub struct Inputs<'a> {
    pub validation_errors: &'a [Diagnostic],
    /// Reasons found while planning (candidate cap, prompt growth).
    pub plan_reasons: Vec<String>,
    pub scores: &'a [PackScore],
    pub latency_cap_pct: f64,
    pub spend: Vec<SpendRow>,
    /// The spend ledger could not be written: the run stopped spending.
    pub ledger_failed: Option<String>,
    /// The run's own spend limit, when a call was refused for it.
    pub run_limit_hit: Option<f64>,
    pub approvals: Option<&'a ApprovalReport>,
    /// The pull request's reviews could not be read.
    pub approvals_error: Option<String>,
    /// Paid model calls were skipped: score floors and latency say nothing.
    pub paid_skipped: bool,
    /// What the change loosens (policies, guardrails, tiers, thresholds):
    /// never a PASS without a policy owner's approval.
    pub loosened: &'a [crate::diff::loosen::Loosening],
    /// Changed control files (anything outside `packs/`): never a PASS
    /// without a policy owner's approval either.
    pub control_changed: &'a [String],
}

/// Why a verdict is NOT EVALUATED, and what a maintainer does about it.
pub const NOT_EVALUATED: &str = "paid model calls were skipped for this pull request (from a fork, no maintainer opt-in), so nothing was measured; a maintainer with write access adds the `missionctl-paid-evals` label to run the paid evaluation on the trusted side";

#[derive(Debug, Clone)]
pub struct Decided {
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub regressions: Vec<Regression>,
    pub groups: Vec<super::group::RegressionGroup>,
    pub guardrails: Vec<GuardrailRow>,
    pub partial: bool,
}

fn validation_reason(errors: &[Diagnostic]) -> Option<String> {
    let first = errors.first()?;
    Some(format!(
        "the challenger breaks {} validation rule(s) or hard constraint(s), first: {}:{}: {}: {}",
        errors.len(),
        first.file,
        first.line,
        first.code,
        first.message
    ))
}

fn latency_guardrail(scores: &[PackScore], cap: f64) -> (GuardrailRow, Option<String>) {
    let worst = scores
        .iter()
        .filter_map(|s| {
            s.latency_regression_pct
                .map(|c| (s.evidence.pack_id.as_str(), c))
        })
        .fold(None::<(&str, f64)>, |acc, (p, c)| match acc {
            Some((_, w)) if w >= c => acc,
            _ => Some((p, c)),
        });
    let exceeded = worst.is_some_and(|(_, c)| c > cap);
    let row = GuardrailRow {
        name: "Latency change (median, worst pack)".into(),
        value: worst.map_or("n/a".into(), |(p, c)| format!("{c:+.1}% ({p})")),
        cap: format!("+{cap}%"),
        exceeded,
    };
    let reason = worst.filter(|_| exceeded).map(|(p, c)| {
        format!("{p}: median latency rises {c:.1}%; max_allowed_latency_regression_pct is {cap}")
    });
    (row, reason)
}

/// Decide the verdict.
pub fn decide(i: Inputs<'_>) -> Decided {
    let mut regressions: Vec<Regression> = i
        .scores
        .iter()
        .flat_map(|s| s.regressions.iter().cloned())
        .collect();
    // Safety first: it is what a reviewer must see on the first line.
    regressions.sort_by(|a, b| {
        (a.tag, &a.pack_id, &a.chain, &a.case_id).cmp(&(b.tag, &b.pack_id, &b.chain, &b.case_id))
    });
    let chains: std::collections::BTreeMap<String, usize> = i
        .scores
        .iter()
        .map(|s| (s.evidence.pack_id.clone(), s.evidence.chains_evaluated))
        .collect();
    // One line per pack, case and assertion, not per chain: safety, then
    // format, then validation, guardrails and statistics.
    let groups = super::group::group(&regressions, &chains);
    let mut reasons: Vec<String> = groups
        .iter()
        .map(super::group::RegressionGroup::line)
        .collect();
    reasons.extend(validation_reason(i.validation_errors));
    reasons.extend(i.plan_reasons);
    let mut guardrails = Vec::new();
    let (row, latency) = latency_guardrail(i.scores, i.latency_cap_pct);
    guardrails.push(row);
    // Floors and latency need the runs that were skipped: without them a
    // pass rate of 0% is no evidence of anything.
    if !i.paid_skipped {
        reasons.extend(latency);
        for s in i.scores {
            for r in &s.evidence.blocked_by {
                reasons.push(format!("{}: {r}", s.evidence.pack_id));
            }
        }
    }
    for t in &i.spend {
        guardrails.push(GuardrailRow {
            name: format!("Spend today, tenant {}", t.tenant),
            value: format!("${:.4} (this run ${:.4})", t.now, t.now - t.before),
            cap: format!("${:.2}", t.cap),
            exceeded: t.exhausted,
        });
    }
    let exhausted: Vec<&str> = i
        .spend
        .iter()
        .filter(|t| t.exhausted)
        .map(|t| t.tenant.as_str())
        .collect();
    let partial = !exhausted.is_empty() || i.ledger_failed.is_some() || i.run_limit_hit.is_some();
    if let Some(limit) = i.run_limit_hit {
        reasons.push(format!(
            "this run's spend limit (${limit:.4}) was reached; the gate stopped with partial results rather than overspend"
        ));
    }
    if !exhausted.is_empty() {
        reasons.push(format!(
            "daily spend cap reached for {}; the gate stopped with partial results rather than overspend",
            exhausted.join(", ")
        ));
    }
    if let Some(e) = i.ledger_failed {
        reasons.push(format!(
            "{e}; the gate stopped spending and its results are partial"
        ));
    }
    if let Some(e) = i.approvals_error {
        reasons.push(format!("could not read the pull request's reviews: {e}"));
    }
    if let Some(a) = i.approvals {
        for p in &a.not_promotable {
            reasons.push(format!(
                "{p} is at autonomy A0 (observe) and cannot be promoted"
            ));
        }
    }
    let owner_approved = i.approvals.is_some_and(|a| {
        a.requirements
            .iter()
            .any(|r| r.subject == "policies" && r.satisfied)
    });
    let verdict = if !reasons.is_empty() {
        Verdict::Blocked
    } else if i.paid_skipped {
        reasons.push(NOT_EVALUATED.to_string());
        Verdict::NotEvaluated
    } else if !i.loosened.is_empty() && !owner_approved {
        reasons.push(format!(
            "policy owner: this change loosens {}; a policy owner must approve it",
            i.loosened
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ));
        Verdict::WaitingForApproval
    } else if !i.control_changed.is_empty() && !owner_approved {
        reasons.push(format!(
            "policy owner: this change edits control files ({}); a policy owner must approve it",
            i.control_changed.join(", ")
        ));
        Verdict::WaitingForApproval
    } else if i.approvals.is_some_and(|a| !a.satisfied) {
        Verdict::WaitingForApproval
    } else {
        Verdict::Pass
    };
    Decided {
        verdict,
        reasons,
        regressions,
        groups,
        guardrails,
        partial,
    }
}

#[cfg(test)]
mod tests;
