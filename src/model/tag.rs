//! The regression class of an eval assertion.

use super::{Word, word_serde};

/// Safety and format regressions block promotion whatever the statistics say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tag {
    Safety,
    Format,
    Quality,
    Voice,
}

impl Word for Tag {
    const FIELD: &'static str = "tag";
    const ALL: &'static [Self] = &[Self::Safety, Self::Format, Self::Quality, Self::Voice];
    fn as_str(self) -> &'static str {
        match self {
            Self::Safety => "safety",
            Self::Format => "format",
            Self::Quality => "quality",
            Self::Voice => "voice",
        }
    }
}
word_serde!(Tag);
