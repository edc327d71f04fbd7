//! Per-tenant daily spend: what the ledger says was spent today, plus what
//! this run has reserved. A call that would cross the cap is not made.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Clone, Default)]
pub struct Budget {
    pub caps: HashMap<String, f64>,
    pub spent: HashMap<String, f64>,
    pub default_cap: f64,
    pub exhausted: BTreeSet<String>,
    /// A ledger write failed: nothing more may be spent in this run.
    pub ledger_failed: Option<String>,
    /// What this run may spend in all (`--budget-usd`, an improvement
    /// run's remaining budget), on top of every tenant's daily cap.
    pub run_limit: Option<f64>,
    pub run_spent: f64,
    /// A call was refused because of `run_limit`.
    pub run_limit_hit: bool,
    /// Calls refused for any reason (a cap, the run's limit, a failed
    /// ledger): how many answers this run could not pay for.
    pub refused: u64,
}

impl Budget {
    pub fn cap(&self, tenant: &str) -> f64 {
        self.caps.get(tenant).copied().unwrap_or(self.default_cap)
    }

    /// Reserve `usd` for `tenant`, or refuse (and mark the tenant exhausted).
    pub(crate) fn reserve(&mut self, tenant: &str, usd: f64) -> bool {
        let ok = self.try_reserve(tenant, usd);
        if !ok {
            self.refused += 1;
        }
        ok
    }

    fn try_reserve(&mut self, tenant: &str, usd: f64) -> bool {
        if self.ledger_failed.is_some() {
            return false;
        }
        if let Some(limit) = self.run_limit
            && self.run_spent + usd > limit + 1e-12
        {
            self.run_limit_hit = true;
            return false;
        }
        let cap = self.cap(tenant);
        let s = self.spent.entry(tenant.to_string()).or_default();
        if *s + usd > cap + 1e-12 {
            self.exhausted.insert(tenant.to_string());
            return false;
        }
        *s += usd;
        self.run_spent += usd;
        true
    }

    /// Replace a reservation with what the call really cost.
    pub(crate) fn settle(&mut self, tenant: &str, reserved: f64, actual: f64) {
        let s = self.spent.entry(tenant.to_string()).or_default();
        *s += actual - reserved;
        self.run_spent += actual - reserved;
    }
}

/// The run's budget, shared by every job (never held across an await).
pub type Shared = std::sync::Arc<std::sync::Mutex<Budget>>;

/// Lock the shared budget; a panic elsewhere cannot poison the accounts.
pub(crate) fn lock(b: &Shared) -> std::sync::MutexGuard<'_, Budget> {
    b.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One tenant's share of the run's budget, for the judge's calls.
pub(crate) struct TenantPurse {
    pub budget: Shared,
    pub tenant: String,
}

impl crate::eval::judge::Purse for TenantPurse {
    fn reserve(&self, usd: f64) -> bool {
        lock(&self.budget).reserve(&self.tenant, usd)
    }
    fn settle(&self, reserved: f64, actual: f64) {
        lock(&self.budget).settle(&self.tenant, reserved, actual);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_up_to_the_cap_and_no_further() {
        let mut b = Budget {
            default_cap: 1.0,
            ..Budget::default()
        };
        assert!(b.reserve("acme", 0.6));
        assert!(!b.reserve("acme", 0.6));
        assert!(b.exhausted.contains("acme"));
        b.settle("acme", 0.6, 0.1);
        assert!(b.reserve("acme", 0.6));
        assert!(b.reserve("globex", 1.0));
    }

    #[test]
    fn a_run_limit_caps_the_run_across_tenants() {
        let mut b = Budget {
            default_cap: 10.0,
            run_limit: Some(1.0),
            ..Budget::default()
        };
        assert!(b.reserve("acme", 0.6));
        assert!(!b.reserve("globex", 0.6));
        assert!(b.run_limit_hit && b.exhausted.is_empty());
        assert_eq!(b.refused, 1);
        b.settle("acme", 0.6, 0.2);
        assert!(b.reserve("globex", 0.6));
        assert!((b.run_spent - 0.8).abs() < 1e-9);
    }

    #[test]
    fn a_failed_ledger_write_stops_spending() {
        let mut b = Budget {
            default_cap: 10.0,
            ..Budget::default()
        };
        b.ledger_failed = Some("disk full".into());
        assert!(!b.reserve("acme", 0.01));
        assert_eq!(b.refused, 1, "every refusal is counted");
    }
}
