//! Where a pack sits and what it may do: scope types, autonomy levels, tiers.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeType {
    Global,
    Domain,
    Tenant,
    User,
}

impl ScopeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeType::Global => "global",
            ScopeType::Domain => "domain",
            ScopeType::Tenant => "tenant",
            ScopeType::User => "user",
        }
    }
}

impl fmt::Display for ScopeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Autonomy levels, ordered from least to most the agent may do on its own.
/// A higher level needs more review to promote and may never be raised by a
/// child scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Autonomy {
    A0,
    A1,
    A2,
    A3,
}

impl Autonomy {
    pub fn as_str(self) -> &'static str {
        match self {
            Autonomy::A0 => "A0",
            Autonomy::A1 => "A1",
            Autonomy::A2 => "A2",
            Autonomy::A3 => "A3",
        }
    }

    pub(crate) fn meaning(self) -> &'static str {
        match self {
            Autonomy::A0 => "observe",
            Autonomy::A1 => "low-risk auto",
            Autonomy::A2 => "approval-needed",
            Autonomy::A3 => "explicit approval path",
        }
    }
}

impl fmt::Display for Autonomy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Personal,
    Team,
    Enterprise,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Personal => "personal",
            Tier::Team => "team",
            Tier::Enterprise => "enterprise",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
