//! The gate's verdict and the two sides it compares.

use super::words;

words! {
    /// The gate's answer for a pull request.
    pub enum Verdict ("verdict") {
        Pass = "PASS",
        WaitingForApproval = "WAITING FOR APPROVAL",
        Blocked = "BLOCKED",
        /// Paid model calls were skipped (a fork's pull request without a
        /// maintainer's opt-in) and nothing else blocks: no evidence either
        /// way, so it holds the merge without calling it a regression.
        NotEvaluated = "NOT EVALUATED",
    }
}

impl Verdict {
    /// Whether the pull request may not merge yet (blocked or waiting).
    pub(crate) fn holds_merge(self) -> bool {
        self != Verdict::Pass
    }
}

words! {
    /// Which side of a comparison an evaluation ran: the base's pack or the head's.
    pub enum Variant ("variant") {
        Champion = "champion",
        Challenger = "challenger",
    }
}
