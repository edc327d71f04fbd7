//! Prompt size in tokens, estimated.
//!
//! Written by hand on purpose: validation runs on every pack of every chain
//! (10,000 packs in under a second), and an exact BPE tokenizer is both
//! model-specific and far too slow for that. The estimate is the usual
//! rule of thumb for English prose with BPE tokenizers (about four characters
//! per token), counted per whitespace-separated word so that long runs of
//! punctuation or code are not undercounted. Harness adapters record the
//! real usage reported by the model; this figure is for ceilings and growth
//! guardrails, and is deterministic across machines.

/// Estimated tokens in `text`.
pub(crate) fn estimate(text: &str) -> u64 {
    text.split_whitespace()
        .map(|w| {
            let chars = w.chars().count() as u64;
            chars.div_ceil(4).max(1)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rough_ratio() {
        assert_eq!(super::estimate(""), 0);
        assert_eq!(super::estimate("a b c"), 3);
        assert_eq!(super::estimate("internationalisation"), 5);
    }
}
