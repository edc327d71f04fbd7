//! The regression class of an eval assertion.

use super::words;

words! {
    /// Safety and format regressions block promotion whatever the statistics say.
    /// Declared most severe first: the derived order is severity order.
    pub enum Tag ("tag") {
        Safety = "safety",
        Format = "format",
        Quality = "quality",
        Voice = "voice",
    }
}
