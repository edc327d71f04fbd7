//! Where a pack sits and what it may do: scope types, autonomy levels, tiers.

use super::words;

words! {
    pub enum ScopeType ("scope.type") {
        Global = "global",
        Domain = "domain",
        Tenant = "tenant",
        User = "user",
    }
}

words! {
    /// Autonomy levels, ordered from least to most the agent may do on its own.
    /// A higher level needs more review to promote and may never be raised by a
    /// child scope.
    pub enum Autonomy ("autonomy") {
        A0 = "A0",
        A1 = "A1",
        A2 = "A2",
        A3 = "A3",
    }
}

impl Autonomy {
    pub(crate) fn meaning(self) -> &'static str {
        match self {
            Autonomy::A0 => "observe",
            Autonomy::A1 => "low-risk auto",
            Autonomy::A2 => "approval-needed",
            Autonomy::A3 => "explicit approval path",
        }
    }
}

words! {
    /// Tiers, ordered from the least to the most review they ask for.
    pub enum Tier ("tier") {
        Personal = "personal",
        Team = "team",
        Enterprise = "enterprise",
    }
}
