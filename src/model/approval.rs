//! What a pull request's approvals amount to, as the gate reports them.

use serde::{Deserialize, Serialize};

use super::{Autonomy, Tier};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Requirement {
    /// The pack id, or `policies`.
    pub subject: String,
    pub path: String,
    pub autonomy: Option<Autonomy>,
    pub tier: Tier,
    pub needed: u32,
    /// Any of these may approve (CODEOWNERS owners of the path, or the policy owner).
    pub owners: Vec<String>,
    /// For A3: at least one approval must come from this role.
    pub role: Option<String>,
    pub approved_by: Vec<String>,
    pub satisfied: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ApprovalReport {
    pub requirements: Vec<Requirement>,
    /// Changed packs that can never be promoted (A0).
    pub not_promotable: Vec<String>,
    pub satisfied: bool,
    /// Approvals ignored because they predate the latest push.
    pub stale: Vec<String>,
    /// CODEOWNERS lines GitHub skips (unsupported syntax), as `line N: why`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codeowners_invalid: Vec<String>,
    /// Teams whose membership the token could not read, each with what is
    /// missing and how to fix it: their members' approvals could not count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable_teams: Vec<String>,
    /// Approvals that do not count, each with why: the pull request's
    /// author, or a reviewer without write access to the repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_counted: Vec<String>,
}

/// Who may approve where neither CODEOWNERS nor the policy names anyone.
pub const ANYONE_WITH_WRITE: &str =
    "anyone with write access to the repository (not the pull request's author)";

impl ApprovalReport {
    /// Who could still approve, for the comment.
    pub(crate) fn who_can_approve(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .requirements
            .iter()
            .filter(|r| !r.satisfied)
            .flat_map(|r| {
                let owners = if r.owners.is_empty() {
                    vec![ANYONE_WITH_WRITE.to_string()]
                } else {
                    r.owners.clone()
                };
                owners.into_iter().chain(r.role.clone())
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }
}
