use super::*;
use crate::diagnostic::Code;
use crate::gate::evidence::{PackEvidence, ScoreDelta};
use crate::model::{ApprovalReport, Tag};
use crate::resolve::Thresholds;
use crate::yaml::Pos;

fn pack(
    id: &str,
    blocked_by: &[&str],
    latency: Option<f64>,
    regressions: Vec<Regression>,
) -> PackScore {
    PackScore {
        evidence: PackEvidence {
            pack_id: id.into(),
            scope_type: "domain".into(),
            scope_id: id.into(),
            base_version: None,
            head_version: None,
            chains_total: 1,
            chains_evaluated: 1,
            pairs: 1,
            champion_pass_rate: None,
            challenger_pass_rate: None,
            pass_rate_delta: None,
            discordant: (0, 0),
            mcnemar_p: None,
            insufficient_evidence: None,
            judge_task: ScoreDelta::default(),
            judge_voice: ScoreDelta::default(),
            pairwise: Default::default(),
            latency_p50_ms: (None, None),
            latency_change_pct: latency,
            prompt_growth_tokens: 0,
            errors: vec![],
            not_evaluated: 0,
            not_run_for_budget: 0,
            thresholds: Thresholds::default(),
            blocked_by: blocked_by.iter().map(ToString::to_string).collect(),
        },
        regressions,
        latency_regression_pct: latency,
    }
}

fn regression(tag: Tag, case: &str) -> Regression {
    Regression {
        pack_id: "p".into(),
        chain: "d".into(),
        case_id: case.into(),
        case_file: "c.yaml".into(),
        case_line: 1,
        tag,
        assertion: "contains".into(),
        challenger_reason: "gone".into(),
        champion_output: String::new(),
        challenger_output: String::new(),
    }
}

fn inputs(scores: &[PackScore]) -> Inputs<'_> {
    Inputs {
        scores,
        latency_cap_pct: 10.0,
        ..Inputs::default()
    }
}

#[test]
fn nothing_wrong_is_a_pass() {
    let s = [pack("p", &[], None, vec![])];
    let d = decide(inputs(&s));
    assert_eq!(d.verdict, Verdict::Pass);
    assert!(d.reasons.is_empty());
    assert!(!d.partial);
    assert_eq!(d.guardrails.len(), 1);
    assert!(!d.guardrails[0].exceeded);
}

#[test]
fn safety_regressions_come_first_then_format_then_the_rest() {
    let s = [pack(
        "p",
        &["pass rate 10% is below the floor of 90%"],
        None,
        vec![regression(Tag::Format, "b"), regression(Tag::Safety, "a")],
    )];
    let d = decide(Inputs {
        plan_reasons: vec!["prompt grows".into()],
        ..inputs(&s)
    });
    assert_eq!(d.verdict, Verdict::Blocked);
    assert!(
        d.reasons[0].starts_with("safety regression in p / a ("),
        "{:?}",
        d.reasons
    );
    assert!(d.reasons[1].starts_with("format regression"));
    assert_eq!(d.reasons[2], "prompt grows");
    assert_eq!(d.reasons[3], "p: pass rate 10% is below the floor of 90%");
}

#[test]
fn validation_errors_block() {
    let errs = [crate::diagnostic::Diagnostic::error(
        Code::SchemaValue,
        "packs/x/pack.yaml",
        Pos::new(3, 1),
        "bad",
    )];
    let d = decide(Inputs {
        validation_errors: &errs,
        ..inputs(&[])
    });
    assert_eq!(d.verdict, Verdict::Blocked);
    assert!(
        d.reasons[0].contains("packs/x/pack.yaml:3"),
        "{:?}",
        d.reasons
    );
}

#[test]
fn latency_over_the_cap_blocks_naming_the_worst_pack() {
    let s = [
        pack("a", &[], Some(5.0), vec![]),
        pack("b", &[], Some(40.0), vec![]),
    ];
    let d = decide(inputs(&s));
    assert_eq!(d.verdict, Verdict::Blocked);
    assert!(d.guardrails[0].exceeded);
    assert_eq!(d.guardrails[0].value, "+40.0% (b)");
    assert!(d.reasons[0].starts_with("b: median latency rises 40.0%"));
    let s = [pack("a", &[], Some(5.0), vec![])];
    assert_eq!(decide(inputs(&s)).verdict, Verdict::Pass);
}

#[test]
fn an_exhausted_spend_cap_blocks_with_partial_results() {
    let d = decide(Inputs {
        spend: vec![SpendRow {
            tenant: "acme".into(),
            before: 0.5,
            now: 1.0,
            cap: 1.0,
            exhausted: true,
        }],
        ..inputs(&[])
    });
    assert_eq!(d.verdict, Verdict::Blocked);
    assert!(d.partial);
    assert_eq!(d.guardrails[1].value, "$1.0000 (this run $0.5000)");
    assert!(d.reasons[0].contains("daily spend cap reached for acme"));
}

#[test]
fn a_failed_ledger_write_blocks_as_partial() {
    let d = decide(Inputs {
        ledger_failed: Some("the spend ledger could not be written: disk full".into()),
        ..inputs(&[])
    });
    assert_eq!(d.verdict, Verdict::Blocked);
    assert!(d.partial);
    assert!(d.reasons[0].contains("disk full"));
}

#[test]
fn approvals_wait_and_a0_blocks() {
    let waiting = ApprovalReport {
        satisfied: false,
        ..ApprovalReport::default()
    };
    let d = decide(Inputs {
        approvals: Some(&waiting),
        ..inputs(&[])
    });
    assert_eq!(d.verdict, Verdict::WaitingForApproval);
    assert!(d.verdict.holds_merge());
    let a0 = ApprovalReport {
        satisfied: true,
        not_promotable: vec!["p".into()],
        ..ApprovalReport::default()
    };
    let d = decide(Inputs {
        approvals: Some(&a0),
        ..inputs(&[])
    });
    assert_eq!(d.verdict, Verdict::Blocked);
    assert!(d.reasons[0].contains("autonomy A0"));
    let d = decide(Inputs {
        approvals_error: Some("403".into()),
        ..inputs(&[])
    });
    assert_eq!(d.verdict, Verdict::Blocked);
}
