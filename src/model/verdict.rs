//! The gate's verdict and the two sides it compares.

use super::{Word, word_serde};

/// The gate's answer for a pull request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Pass,
    WaitingForApproval,
    Blocked,
}

impl Word for Verdict {
    const FIELD: &'static str = "verdict";
    const ALL: &'static [Self] = &[Self::Pass, Self::WaitingForApproval, Self::Blocked];
    fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::WaitingForApproval => "WAITING FOR APPROVAL",
            Self::Blocked => "BLOCKED",
        }
    }
}
word_serde!(Verdict);

impl Verdict {
    /// Whether the pull request may not merge yet (blocked or waiting).
    pub(crate) fn holds_merge(self) -> bool {
        self != Verdict::Pass
    }
}

/// Which side of a comparison an evaluation ran: the base's pack or the head's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    Champion,
    Challenger,
}

impl Word for Variant {
    const FIELD: &'static str = "variant";
    const ALL: &'static [Self] = &[Self::Champion, Self::Challenger];
    fn as_str(self) -> &'static str {
        match self {
            Self::Champion => "champion",
            Self::Challenger => "challenger",
        }
    }
}
word_serde!(Variant);
