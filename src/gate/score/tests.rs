use std::sync::Arc;

use super::*;
use crate::diff::Status;
use crate::eval::RunOutput;
use crate::eval::assertions::AssertionResult;
use crate::gate::plan::Job;
use crate::pack::{ChainKey, EvalCase, Tier};
use crate::resolve::Resolved;

fn resolved() -> Arc<Resolved> {
    Arc::new(Resolved {
        pack_id: "p".into(),
        pack_version: "1.0.0+sha256.x".into(),
        digest: "sha256:x".into(),
        scope_chain: vec![],
        tier: Tier::Team,
        content: serde_json::json!({}),
        provenance: Default::default(),
        prompt_tokens: 0,
        cases: vec![],
    })
}

fn assertion(tag: Tag, pass: bool) -> AssertionResult {
    AssertionResult {
        kind: "contains".into(),
        tag,
        pass,
        score: if pass { 1.0 } else { 0.0 },
        reason: if pass {
            "ok".into()
        } else {
            "output must contain \"x\"".into()
        },
        needs_judge: false,
        skipped: false,
        errored: false,
    }
}

/// A finished job for chain `c`, case `n`, with one assertion of `tag`.
fn done(variant: Variant, chain: &str, n: usize, tag: Tag, pass: bool, latency: f64) -> Done {
    Done {
        job: Job {
            pack_id: "p".into(),
            chain: ChainKey::new(chain, None, None),
            variant,
            resolved: resolved(),
            system: Arc::from(""),
            system_tokens: 0,
            case: Arc::new(EvalCase {
                id: format!("case-{n}"),
                description: None,
                vars: serde_json::json!({"input": "hi"}),
                asserts: vec![crate::pack::AssertSpec::new(
                    serde_json::json!({"type": "contains", "value": "x"}),
                )],
                threshold: None,
                transform: None,
                user: "hi".into(),
                messages: Vec::new(),
                file: "packs/p/cases.yaml".into(),
                line: u32::try_from(n).unwrap_or(0) + 1,
            }),
            contracts: Arc::default(),
            tenant: "shared".into(),
        },
        run: RunOutput {
            latency_ms: latency,
            ..RunOutput::default()
        },
        asserts: vec![assertion(tag, pass)],
        task: None,
        voice: None,
        criteria: Default::default(),
        judge_reason: None,
        judge_error: None,
        judge_usd: 0.0,
        unpaid: false,
    }
}

fn change() -> PackChange {
    PackChange {
        pack_id: "p".into(),
        scope_type: "domain".into(),
        scope_id: "p".into(),
        status: Status::Modified,
        base_version: Some("1.0.0".into()),
        head_version: Some("1.0.1".into()),
        file: "packs/domains/p/pack.yaml".into(),
        fields: vec![],
        prompts: vec![],
        cases_added: vec![],
        cases_removed: vec![],
        cases_changed: vec![],
    }
}

/// n pairs; the challenger fails the first `fail` of them (champion passes all).
fn pairs(n: usize, fail: usize, tag: Tag) -> Vec<Done> {
    (0..n)
        .flat_map(|i| {
            [
                done(Variant::Champion, "d", i, tag, true, 100.0),
                done(Variant::Challenger, "d", i, tag, i >= fail, 100.0),
            ]
        })
        .collect()
}

fn score(d: &[Done], th: &Thresholds) -> PackScore {
    let refs: Vec<&Done> = d.iter().collect();
    score_pack(&change(), &refs, th, Pairwise::default(), (1, 1), 0)
}

#[test]
fn identical_results_pass_with_no_regression() {
    let s = score(&pairs(40, 0, Tag::Quality), &Thresholds::default());
    assert_eq!(s.evidence.pairs, 40);
    assert_eq!(s.evidence.discordant, (0, 0));
    assert_eq!(s.evidence.pass_rate_delta, Some(0.0));
    assert!(
        s.evidence.blocked_by.is_empty(),
        "{:?}",
        s.evidence.blocked_by
    );
    assert!(s.regressions.is_empty());
    assert_eq!(s.latency_regression_pct, None);
}

#[test]
fn a_significant_drop_is_blocked_by_mcnemar() {
    // 10 of 40 fail only on the challenger: p = 2 * 0.5^10 ≈ 0.002.
    let s = score(&pairs(40, 10, Tag::Quality), &Thresholds::default());
    assert_eq!(s.evidence.discordant, (10, 0));
    let p = s.evidence.mcnemar_p.expect("p");
    assert!(p < 0.01, "{p}");
    assert!(
        s.evidence.blocked_by.iter().any(|r| r.contains("McNemar")),
        "{:?}",
        s.evidence.blocked_by
    );
}

#[test]
fn a_drop_without_significance_is_insufficient_evidence_not_a_block() {
    // 2 of 10: a 20-point drop, p = 0.5.
    let s = score(&pairs(10, 2, Tag::Quality), &Thresholds::default());
    assert!(
        s.evidence.blocked_by.is_empty(),
        "{:?}",
        s.evidence.blocked_by
    );
    let why = s.evidence.insufficient_evidence.expect("insufficient");
    assert!(
        why.contains("cannot show") || why.contains("not significant"),
        "{why}"
    );
}

#[test]
fn a_pass_rate_floor_blocks() {
    let th = Thresholds {
        min_pass_rate: 0.9,
        ..Thresholds::default()
    };
    let s = score(&pairs(10, 2, Tag::Quality), &th);
    assert!(
        s.evidence
            .blocked_by
            .iter()
            .any(|r| r.contains("below the floor"))
    );
}

#[test]
fn safety_and_format_failures_are_regressions_quality_is_not() {
    let s = score(&pairs(5, 1, Tag::Safety), &Thresholds::default());
    assert_eq!(s.regressions.len(), 1);
    assert_eq!(s.regressions[0].tag, Tag::Safety);
    assert_eq!(s.regressions[0].case_id, "case-0");
    assert_eq!(s.regressions[0].case_line, 1);
    let s = score(&pairs(5, 1, Tag::Format), &Thresholds::default());
    assert_eq!(s.regressions[0].tag, Tag::Format);
    let s = score(&pairs(5, 1, Tag::Quality), &Thresholds::default());
    assert!(s.regressions.is_empty());
}

#[test]
fn a_failed_champion_run_is_no_evidence_of_a_regression() {
    let mut d = pairs(3, 1, Tag::Safety);
    d[0].run.error = Some("timeout".into());
    let s = score(&d, &Thresholds::default());
    assert!(s.regressions.is_empty());
    assert!(s.evidence.errors.iter().any(|e| e.contains("champion")));
}

#[test]
fn latency_needs_the_noise_floor_and_a_clear_interval() {
    // +10 ms on every case: under the 20 ms floor, however clear.
    let mut d: Vec<Done> = (0..30)
        .flat_map(|i| {
            [
                done(Variant::Champion, "d", i, Tag::Quality, true, 100.0),
                done(Variant::Challenger, "d", i, Tag::Quality, true, 110.0),
            ]
        })
        .collect();
    assert_eq!(
        score(&d, &Thresholds::default()).latency_regression_pct,
        None
    );
    // +100 ms on every case: a real regression of +100%.
    for x in d
        .iter_mut()
        .filter(|x| x.job.variant == Variant::Challenger)
    {
        x.run.latency_ms = 200.0;
    }
    let pct = score(&d, &Thresholds::default())
        .latency_regression_pct
        .expect("regression");
    assert!((pct - 100.0).abs() < 1e-9, "{pct}");
    // +25 ms on two thirds of the cases, +0 on the rest: the median rises
    // 25 ms, over the floor, but the mean difference's interval (about
    // 12-21 ms) does not clear it: a burst of load, not a slower pack.
    for (i, x) in d
        .iter_mut()
        .filter(|x| x.job.variant == Variant::Challenger)
        .enumerate()
    {
        x.run.latency_ms = if i % 3 == 0 { 100.0 } else { 125.0 };
    }
    assert_eq!(
        score(&d, &Thresholds::default()).latency_regression_pct,
        None
    );
    // +100 ms on every case, but only four pairs measured (the rest served
    // from the cache): too few to be evidence.
    for (i, x) in d.iter_mut().enumerate() {
        x.run.cached = i >= 8;
        if x.job.variant == Variant::Challenger {
            x.run.latency_ms = 200.0;
        }
    }
    assert_eq!(
        score(&d, &Thresholds::default()).latency_regression_pct,
        None
    );
    for x in &mut d {
        x.run.cached = false;
    }
    // +100 ms on one case only: the median does not move.
    for x in d
        .iter_mut()
        .filter(|x| x.job.variant == Variant::Challenger)
        .skip(1)
    {
        x.run.latency_ms = 100.0;
    }
    assert_eq!(
        score(&d, &Thresholds::default()).latency_regression_pct,
        None
    );
}

#[test]
fn judge_rules_floor_and_interval() {
    let th = Thresholds {
        min_judge_score: Some(4.0),
        max_judge_score_drop: 0.5,
        ..Thresholds::default()
    };
    let task = ScoreDelta {
        champion: Some(4.5),
        challenger: Some(3.5),
        delta: Some(-1.0),
        ci95: Some((-1.4, -0.6)),
    };
    let r = judge_rules(&th, &task);
    assert_eq!(r.len(), 2, "{r:?}");
    // An interval that reaches zero is not evidence of a drop.
    let task = ScoreDelta {
        ci95: Some((-1.9, 0.1)),
        challenger: Some(4.1),
        ..task
    };
    assert!(judge_rules(&th, &task).is_empty());
}

#[test]
fn challenger_only_cases_count_in_the_challenger_rate_only() {
    let mut d = pairs(4, 0, Tag::Quality);
    d.push(done(
        Variant::Challenger,
        "d",
        99,
        Tag::Quality,
        false,
        100.0,
    ));
    let s = score(&d, &Thresholds::default());
    assert_eq!(s.evidence.pairs, 4);
    assert_eq!(s.evidence.champion_pass_rate, Some(1.0));
    assert_eq!(s.evidence.challenger_pass_rate, Some(0.8));
    assert_eq!(s.evidence.pass_rate_delta, Some(0.0));
}

/// Issue 12: a case decided by a judge-backed assertion that no judge could
/// check is not evaluated: neither a pass nor a failure, in no pass rate.
#[test]
fn skipped_judge_assertions_make_a_case_not_evaluated() {
    let mut d = pairs(4, 0, Tag::Quality);
    for x in &mut d[..2] {
        x.asserts.push(AssertionResult {
            skipped: true,
            pass: false,
            ..assertion(Tag::Quality, false)
        });
    }
    // A challenger-only case that only a judge could decide.
    let mut only = done(Variant::Challenger, "d", 99, Tag::Quality, true, 100.0);
    only.asserts = vec![AssertionResult {
        skipped: true,
        ..assertion(Tag::Quality, false)
    }];
    d.push(only);
    let s = score(&d, &Thresholds::default());
    assert_eq!(
        s.evidence.not_evaluated, 2,
        "the first pair and the new case"
    );
    assert_eq!(s.evidence.pairs, 3);
    assert_eq!(s.evidence.challenger_pass_rate, Some(1.0));
    let last = d.last().expect("the new case");
    assert!(!passes(last) && not_evaluated(last));
}

/// A cached answer carries another run's timing: it is no latency evidence.
#[test]
fn cached_answers_are_no_latency_evidence() {
    let mut d: Vec<Done> = (0..40)
        .flat_map(|i| {
            [
                done(Variant::Champion, "d", i, Tag::Quality, true, 100.0),
                done(Variant::Challenger, "d", i, Tag::Quality, true, 400.0),
            ]
        })
        .collect();
    assert!(
        score(&d, &Thresholds::default())
            .latency_regression_pct
            .is_some()
    );
    for x in d.iter_mut().filter(|x| x.job.variant == Variant::Champion) {
        x.run.cached = true;
    }
    let s = score(&d, &Thresholds::default());
    assert_eq!(s.latency_regression_pct, None);
    assert_eq!(s.evidence.latency_p50_ms, (None, None));
}
