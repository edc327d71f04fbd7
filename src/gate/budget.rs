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
}

impl Budget {
    pub fn cap(&self, tenant: &str) -> f64 {
        self.caps.get(tenant).copied().unwrap_or(self.default_cap)
    }

    /// Reserve `usd` for `tenant`, or refuse (and mark the tenant exhausted).
    pub(crate) fn reserve(&mut self, tenant: &str, usd: f64) -> bool {
        if self.ledger_failed.is_some() {
            return false;
        }
        let cap = self.cap(tenant);
        let s = self.spent.entry(tenant.to_string()).or_default();
        if *s + usd > cap + 1e-12 {
            self.exhausted.insert(tenant.to_string());
            return false;
        }
        *s += usd;
        true
    }

    /// Replace a reservation with what the call really cost.
    pub(crate) fn settle(&mut self, tenant: &str, reserved: f64, actual: f64) {
        let s = self.spent.entry(tenant.to_string()).or_default();
        *s += actual - reserved;
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
    fn a_failed_ledger_write_stops_spending() {
        let mut b = Budget {
            default_cap: 10.0,
            ..Budget::default()
        };
        b.ledger_failed = Some("disk full".into());
        assert!(!b.reserve("acme", 0.01));
    }
}
