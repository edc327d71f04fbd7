//! Canary rollouts: a promotion serves a share of users first and everyone
//! only when the canary's telemetry holds against the champion's.
//!
//! - Users are assigned to an arm by a stable hash of (pack id, user id), so
//!   a user stays in one arm for the whole rollout.
//! - Each step compares the arms in the same window. A clear regression stops
//!   the canary early through Wald's sequential probability ratio test on the
//!   failure rate (H0: the canary fails as often as the champion; H1: it fails
//!   `max_success_rate_drop` more often), which keeps the false-rollback rate
//!   at `max_false_rollback_rate` however often it is checked.
//! - A step advances only when both arms have `min_runs_per_arm` runs and the
//!   test accepts H0 (and the hard KPI ceilings hold). Missing data never
//!   advances and never rolls back: past the step deadline it is a stated
//!   outcome, `stalled`, for a human to look at.
//! - A rollback is never itself rolled back: rollbacks start no rollout.

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use crate::model::Sprt;
use crate::model::{Arm, RolloutPlan, RunSample, StepFigures};
use crate::telemetry;

/// Power of the sequential test (1 - β): a real regression of the stated
/// size is caught with this probability.
pub const POWER: f64 = 0.8;

/// The arm a user is in for `pack`, given the canary share in percent.
pub fn arm(pack: &str, user: &str, percent: u32) -> Arm {
    let h = Sha256::digest(format!("{pack}\u{0}{user}").as_bytes());
    let bucket = u64::from_le_bytes(h[..8].try_into().unwrap_or([0; 8])) % 10_000;
    if bucket < u64::from(percent.min(100)) * 100 {
        Arm::Canary
    } else {
        Arm::Champion
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Params {
    pub min_runs_per_arm: usize,
    pub step_deadline_minutes: f64,
    pub alpha: f64,
    pub max_success_rate_drop: f64,
    pub max_error_rate: Option<f64>,
    pub max_p95_latency_regression_pct: Option<f64>,
}

impl Params {
    /// From a promote decision's rollout plan, with the documented defaults.
    pub(crate) fn from_plan(plan: &RolloutPlan) -> Params {
        let rb = plan.rollback.clone().unwrap_or_default();
        Params {
            min_runs_per_arm: plan.min_runs_per_arm.unwrap_or(200),
            step_deadline_minutes: plan.step_deadline_minutes.unwrap_or(240.0),
            alpha: plan
                .max_false_rollback_rate
                .unwrap_or(0.05)
                .clamp(1e-4, 0.5),
            max_success_rate_drop: rb.max_success_rate_drop.unwrap_or(0.03).clamp(0.005, 0.5),
            max_error_rate: rb.max_error_rate,
            max_p95_latency_regression_pct: rb.max_p95_latency_regression_pct,
        }
    }
}

/// Wald's SPRT on the canary's failures (the state is [`Sprt`] in `model`).
impl Sprt {
    pub fn new(baseline_failure: f64, drop: f64, alpha: f64) -> Sprt {
        let p0 = baseline_failure.clamp(0.005, 0.9);
        let p1 = (p0 + drop).min(0.99);
        let beta = 1.0 - POWER;
        Sprt {
            p0,
            p1,
            llr: 0.0,
            upper: ((1.0 - beta) / alpha).ln(),
            lower: (beta / (1.0 - alpha)).ln(),
        }
    }

    pub(crate) fn observe(&mut self, success: bool) {
        self.llr += if success {
            ((1.0 - self.p1) / (1.0 - self.p0)).ln()
        } else {
            (self.p1 / self.p0).ln()
        };
    }

    pub fn regression(&self) -> bool {
        self.llr >= self.upper
    }

    pub fn holds(&self) -> bool {
        self.llr <= self.lower
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Keep collecting.
    Wait { why: String },
    /// Move to the next step (or complete at 100%), on these figures.
    Advance { figures: Box<StepFigures> },
    Rollback {
        why: String,
        figures: Box<StepFigures>,
    },
    /// Not enough data past the deadline: a stated outcome, no action.
    Stalled { why: String },
}

/// Decide one step from the two arms' samples in the same window.
pub fn evaluate(
    champion: &RunSample,
    canary: &RunSample,
    params: &Params,
    minutes_in_step: f64,
) -> Verdict {
    let (kc, kn) = (telemetry::kpis(champion), telemetry::kpis(canary));
    let figures = |sprt: &Sprt| {
        Box::new(StepFigures {
            champion: kc.clone(),
            canary: kn.clone(),
            sprt: Some(*sprt),
            min_runs_per_arm: Some(params.min_runs_per_arm),
        })
    };
    // Baseline failure rate from the champion, with a Laplace prior so an
    // empty or perfect champion window does not give a zero rate.
    let fails = champion.success.iter().filter(|s| !**s).count() as f64;
    let baseline = (fails + 1.0) / (champion.success.len() as f64 + 2.0);
    let mut sprt = Sprt::new(baseline, params.max_success_rate_drop, params.alpha);
    for s in &canary.success {
        sprt.observe(*s);
    }
    if sprt.regression() {
        return Verdict::Rollback {
            why: format!(
                "canary failure rate {:.1}% against champion {:.1}%: the sequential test rejects \"no regression\" (LLR {:.2} ≥ {:.2}, α={})",
                kn.error_rate.unwrap_or(0.0) * 100.0,
                kc.error_rate.unwrap_or(0.0) * 100.0,
                sprt.llr,
                sprt.upper,
                params.alpha
            ),
            figures: figures(&sprt),
        };
    }
    let enough = kn.runs >= params.min_runs_per_arm && kc.runs >= params.min_runs_per_arm;
    if enough {
        if let (Some(max), Some(er)) = (params.max_error_rate, kn.error_rate)
            && er > max
        {
            return Verdict::Rollback {
                why: format!(
                    "canary error rate {:.1}% exceeds the rollback ceiling {:.1}%",
                    er * 100.0,
                    max * 100.0
                ),
                figures: figures(&sprt),
            };
        }
        if let (Some(max), Some(a), Some(b)) = (
            params.max_p95_latency_regression_pct,
            kc.latency_p95_ms,
            kn.latency_p95_ms,
        ) && a > 0.0
            && (b - a) / a * 100.0 > max
        {
            return Verdict::Rollback {
                why: format!(
                    "canary p95 latency {b:.0} ms is {:.0}% above the champion's {a:.0} ms (limit {max}%)",
                    (b - a) / a * 100.0
                ),
                figures: figures(&sprt),
            };
        }
        if sprt.holds() {
            return Verdict::Advance {
                figures: figures(&sprt),
            };
        }
    }
    if minutes_in_step >= params.step_deadline_minutes {
        return Verdict::Stalled {
            why: if enough {
                format!(
                    "inconclusive after the {} min deadline: the sequential test has not decided (LLR {:.2}); a human should look",
                    params.step_deadline_minutes, sprt.llr
                )
            } else {
                format!(
                    "no decision possible: {} champion and {} canary runs after the {} min deadline (need {} each); not advancing on missing data",
                    kc.runs, kn.runs, params.step_deadline_minutes, params.min_runs_per_arm
                )
            },
        };
    }
    Verdict::Wait {
        why: if enough {
            format!(
                "collecting: the sequential test is undecided (LLR {:.2} between {:.2} and {:.2})",
                sprt.llr, sprt.lower, sprt.upper
            )
        } else {
            format!(
                "collecting: {} champion / {} canary runs of {} needed per arm",
                kc.runs, kn.runs, params.min_runs_per_arm
            )
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, fail_every: usize) -> RunSample {
        RunSample {
            success: (0..n)
                .map(|i| fail_every == 0 || i % fail_every != 0)
                .collect(),
            latency_ms: vec![100.0; n],
            ..RunSample::default()
        }
    }

    fn params() -> Params {
        Params {
            min_runs_per_arm: 100,
            step_deadline_minutes: 60.0,
            alpha: 0.05,
            max_success_rate_drop: 0.05,
            max_error_rate: Some(0.3),
            max_p95_latency_regression_pct: Some(50.0),
        }
    }

    #[test]
    fn arms_are_stable_and_proportional() {
        let canary = (0..10_000)
            .filter(|u| arm("hr-ops-pack", &format!("user-{u}"), 10) == Arm::Canary)
            .count();
        assert!((900..1100).contains(&canary), "{canary}");
        assert_eq!(arm("p", "alice", 25), arm("p", "alice", 25));
        // Growing the share keeps canary users in the canary.
        for u in 0..1000 {
            let id = format!("u{u}");
            if arm("p", &id, 5) == Arm::Canary {
                assert_eq!(arm("p", &id, 25), Arm::Canary);
            }
        }
    }

    #[test]
    fn clear_regression_rolls_back_early_and_healthy_canary_advances() {
        // Champion fails 5%, canary fails 25%: caught well before min_runs.
        let v = evaluate(&sample(200, 20), &sample(60, 4), &params(), 1.0);
        assert!(matches!(v, Verdict::Rollback { .. }), "{v:?}");
        // Same health: advances once both arms have enough runs.
        assert!(matches!(
            evaluate(&sample(300, 20), &sample(300, 20), &params(), 1.0),
            Verdict::Advance { .. }
        ));
        // Not enough data: waits, then stalls past the deadline; never advances.
        assert!(matches!(
            evaluate(&sample(5, 0), &sample(3, 0), &params(), 1.0),
            Verdict::Wait { .. }
        ));
        assert!(matches!(
            evaluate(&sample(5, 0), &sample(3, 0), &params(), 61.0),
            Verdict::Stalled { .. }
        ));
        assert!(matches!(
            evaluate(
                &RunSample::default(),
                &RunSample::default(),
                &params(),
                61.0
            ),
            Verdict::Stalled { .. }
        ));
        // Every canary run errored: that is a failure, not a success.
        let all_failed = RunSample {
            success: vec![false; 20],
            latency_ms: vec![1.0; 20],
            ..RunSample::default()
        };
        assert!(matches!(
            evaluate(&sample(200, 20), &all_failed, &params(), 1.0),
            Verdict::Rollback { .. }
        ));
    }
}
