//! Paired statistics for champion versus challenger on the same cases.
//!
//! Written by hand: each is a few lines of textbook arithmetic (an exact
//! binomial tail and a seeded resampling loop), and a statistics crate would
//! bring far more than it saves.

use rand::{RngCore, SeedableRng};

/// McNemar's exact test on discordant pairs: `b` cases the champion passes
/// and the challenger fails, `c` the reverse. Two-sided p-value.
pub(crate) fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X <= k) for X ~ Binomial(n, 1/2), in log space to stay finite.
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_coef = 0.0f64; // ln C(n, 0)
    let mut tail = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            ln_coef += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_coef + ln_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

/// Smallest number of discordant pairs, all in one direction, for which the
/// exact test can reach `alpha`: below it no regression can be significant.
pub(crate) fn min_discordant_for(alpha: f64) -> u64 {
    (1..64).find(|k| mcnemar_exact(*k, 0) < alpha).unwrap_or(64)
}

/// Percentile bootstrap confidence interval of the mean of paired
/// differences. Seeded, so the same data always give the same interval.
pub(crate) fn bootstrap_ci(
    diffs: &[f64],
    level: f64,
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64, f64)> {
    if diffs.is_empty() {
        return None;
    }
    let n = diffs.len();
    let mean = diffs.iter().sum::<f64>() / n as f64;
    // ChaCha8 with a fixed seed gives the same stream on every platform and
    // rand version, so the evidence's interval is reproducible.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    // Indices straight from the stream (`next_u64 % n`) rather than rand's
    // range sampling, whose algorithm may change between rand versions; the
    // modulo bias is below n / 2^64.
    let n64 = n as u64;
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            (0..n)
                .map(|_| diffs[usize::try_from(rng.next_u64() % n64).unwrap_or(0)])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let lo_idx = (((1.0 - level) / 2.0) * resamples as f64).floor() as usize;
    let hi_idx = ((1.0 - (1.0 - level) / 2.0) * resamples as f64).ceil() as usize;
    Some((
        mean,
        means[lo_idx.min(resamples - 1)],
        means[hi_idx.min(resamples - 1)],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED: (f64, f64, f64) = (4.0, 1.8, 7.2);

    #[test]
    fn mcnemar_known_values() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // b=6, c=0: 2 * 0.5^6 = 0.03125.
        assert!((mcnemar_exact(6, 0) - 0.03125).abs() < 1e-12);
        assert!((mcnemar_exact(5, 0) - 0.0625).abs() < 1e-12);
        // Symmetric and capped at 1.
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert!((mcnemar_exact(1, 9) - mcnemar_exact(9, 1)).abs() < 1e-12);
        // b=1, c=9: 2 * (1 + 10) / 1024.
        assert!((mcnemar_exact(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
        assert_eq!(min_discordant_for(0.05), 6);
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_mean() {
        let d = [0.0, -1.0, 0.5, -0.5, -1.0, 0.0, -0.5, -1.0];
        let a = bootstrap_ci(&d, 0.95, 2000, 7).expect("ci");
        let b = bootstrap_ci(&d, 0.95, 2000, 7).expect("ci");
        assert_eq!(a, b);
        assert!(a.1 <= a.0 && a.0 <= a.2);
        assert!(a.2 < 0.1);
        assert_eq!(bootstrap_ci(&[], 0.95, 100, 1), None);
        // Pinned: the evidence promises the same interval for the same data,
        // whatever machine or rand version computes it.
        let (m, lo, hi) = bootstrap_ci(&[1.0, 2.0, 3.0, 4.0, 10.0], 0.95, 2000, 42).expect("ci");
        assert_eq!((m, lo, hi), PINNED);
    }
}
