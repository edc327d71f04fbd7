//! The sequential canary test against a fixed-horizon test, by simulation:
//! `cargo run --release --example canary_sim`.
//!
//! Champion 95% success. (1) A canary at 90%: how many canary runs until the
//! regression is detected. (2) A canary also at 95%: how often a rollout is
//! wrongly rolled back, over 10,000 simulated rollouts. The sequential test is
//! missionctl's (`rollout::evaluate`, checked after every batch of runs); the
//! fixed-horizon test is a one-sided two-proportion z-test at the sample size
//! that gives the same α and power for the same drop.

use missionctl::model::RunSample;
use missionctl::rollout::{Params, Verdict, evaluate};
use rand::{Rng, SeedableRng};

const CHAMPION: f64 = 0.95;
const DROP: f64 = 0.05;
const ALPHA: f64 = 0.05;

fn params() -> Params {
    Params {
        min_runs_per_arm: 200,
        step_deadline_minutes: 1e9,
        alpha: ALPHA,
        max_success_rate_drop: DROP,
        max_error_rate: None,
        max_p95_latency_regression_pct: None,
    }
}

/// Runs one rollout step with a 10% canary; returns the canary runs consumed
/// and whether it rolled back. Evaluated after every 10 runs (as a controller would).
fn sequential(rng: &mut impl Rng, canary_p: f64, cap: usize) -> (usize, bool) {
    let mut champion = RunSample::default();
    let mut canary = RunSample::default();
    let p = params();
    loop {
        for _ in 0..10 {
            // A 10% canary: one canary run for every nine champion runs.
            for _ in 0..9 {
                champion.success.push(rng.random::<f64>() < CHAMPION);
                champion.latency_ms.push(1.0);
            }
            canary.success.push(rng.random::<f64>() < canary_p);
            canary.latency_ms.push(1.0);
        }
        match evaluate(&champion, &canary, &p, 0.0) {
            Verdict::Rollback { .. } => return (canary.success.len(), true),
            Verdict::Advance { .. } => return (canary.success.len(), false),
            _ if canary.success.len() >= cap => return (canary.success.len(), false),
            _ => {}
        }
    }
}

/// Canary runs per arm a fixed-horizon one-sided z-test needs for α and 80% power.
fn fixed_horizon_n() -> usize {
    let (z_a, z_b) = (1.6449, 0.8416); // one-sided α = 0.05, power 0.8
    let (p1, p2) = (CHAMPION, CHAMPION - DROP);
    let pbar = (p1 + p2) / 2.0;
    let n = (z_a * (2.0 * pbar * (1.0 - pbar)).sqrt()
        + z_b * (p1 * (1.0 - p1) + p2 * (1.0 - p2)).sqrt())
    .powi(2)
        / (p1 - p2).powi(2);
    n.ceil() as usize
}

/// One fixed-horizon rollout: n runs per arm, then one z-test.
fn fixed(rng: &mut impl Rng, canary_p: f64, n: usize) -> bool {
    let a = (0..n).filter(|_| rng.random::<f64>() < CHAMPION).count() as f64 / n as f64;
    let b = (0..n).filter(|_| rng.random::<f64>() < canary_p).count() as f64 / n as f64;
    let pooled = (a + b) / 2.0;
    let se = (2.0 * pooled * (1.0 - pooled) / n as f64).sqrt().max(1e-9);
    (a - b) / se > 1.6449
}

fn main() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261126);
    let n_fixed = fixed_horizon_n();
    let trials = 2_000;
    let mut runs: Vec<usize> = Vec::new();
    let mut caught = 0;
    for _ in 0..trials {
        let (n, rolled) = sequential(&mut rng, CHAMPION - DROP, 20 * n_fixed);
        if rolled {
            caught += 1;
            runs.push(n);
        }
    }
    runs.sort_unstable();
    let fixed_caught = (0..trials)
        .filter(|_| fixed(&mut rng, CHAMPION - DROP, n_fixed))
        .count();
    println!(
        "drop {:.0}% -> {:.0}% success:",
        CHAMPION * 100.0,
        (CHAMPION - DROP) * 100.0
    );
    println!(
        "  sequential (SPRT): detected in {:.1}% of {trials} rollouts; canary runs to detection: median {}, p90 {}",
        caught as f64 / trials as f64 * 100.0,
        runs[runs.len() / 2],
        runs[runs.len() * 9 / 10]
    );
    println!(
        "  fixed horizon (z-test): {n_fixed} canary runs every time; detected in {:.1}%",
        fixed_caught as f64 / trials as f64 * 100.0
    );
    let healthy = 10_000;
    let mut false_rollbacks = 0;
    let mut advance_runs = Vec::new();
    for _ in 0..healthy {
        let (n, rolled) = sequential(&mut rng, CHAMPION, 20 * n_fixed);
        if rolled {
            false_rollbacks += 1;
        } else {
            advance_runs.push(n);
        }
    }
    advance_runs.sort_unstable();
    let fixed_false = (0..healthy)
        .filter(|_| fixed(&mut rng, CHAMPION, n_fixed))
        .count();
    println!(
        "no drop (both {:.0}%), {healthy} simulated rollouts:",
        CHAMPION * 100.0
    );
    println!(
        "  sequential (SPRT): false-rollback rate {:.2}% (target α = {:.0}%); canary runs to advance: median {}",
        false_rollbacks as f64 / healthy as f64 * 100.0,
        ALPHA * 100.0,
        advance_runs
            .get(advance_runs.len() / 2)
            .copied()
            .unwrap_or(0)
    );
    println!(
        "  fixed horizon (z-test): false-rollback rate {:.2}%",
        fixed_false as f64 / healthy as f64 * 100.0
    );
}
