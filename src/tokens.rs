//! Prompt size in tokens, counted with the real byte-pair encoding of the
//! model family (`tiktoken-rs`, whose vocabularies are embedded: no network).
//!
//! The family follows mission.yaml's harness model: `cl100k_base` for the
//! GPT-4 / GPT-3.5 family, `o200k_base` (GPT-4o, o-series, GPT-4.1 and
//! anything else) otherwise. Other vendors' tokenizers differ; for them the
//! o200k count is an approximation, stated in the README.
//!
//! [`estimate`] is the fallback should an encoding fail to load. It never
//! undercounts a byte-level BPE on non-Latin text: a character outside ASCII
//! counts one token per UTF-8 byte (byte-level BPE never needs more), and
//! ASCII words about four characters per token.

use std::sync::LazyLock;

use tiktoken_rs::CoreBPE;

/// Which encoding counts a model's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// GPT-4o, o1/o3/o4, GPT-4.1 and the default for unknown models.
    #[default]
    O200k,
    /// GPT-4 and GPT-3.5 (`cl100k_base`).
    Cl100k,
}

impl Family {
    pub fn for_model(model: &str) -> Family {
        let m = model.to_ascii_lowercase();
        let cl100k = m.starts_with("gpt-3.5")
            || m == "gpt-4"
            || (m.starts_with("gpt-4-") && !m.starts_with("gpt-4-1"))
            || m.starts_with("gpt-4-32k")
            || m.starts_with("text-embedding-3")
            || m.starts_with("text-embedding-ada");
        if cl100k {
            Family::Cl100k
        } else {
            Family::O200k
        }
    }
}

static O200K: LazyLock<Option<CoreBPE>> = LazyLock::new(|| tiktoken_rs::o200k_base().ok());
static CL100K: LazyLock<Option<CoreBPE>> = LazyLock::new(|| tiktoken_rs::cl100k_base().ok());

/// Tokens in `text` for `family`.
pub fn count(text: &str, family: Family) -> u64 {
    let bpe = match family {
        Family::O200k => &*O200K,
        Family::Cl100k => &*CL100K,
    };
    match bpe {
        Some(b) => b.encode_ordinary(text).len() as u64,
        None => estimate(text),
    }
}

/// The fallback estimate (see the module comment).
pub(crate) fn estimate(text: &str) -> u64 {
    text.split_whitespace()
        .map(|w| {
            let (ascii, other): (Vec<char>, Vec<char>) = w.chars().partition(char::is_ascii);
            let other_bytes: u64 = other.iter().map(|c| c.len_utf8() as u64).sum();
            (ascii.len() as u64).div_ceil(4) + other_bytes
        })
        .map(|n| n.max(1))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_estimate() {
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate("a b c"), 3);
        assert_eq!(estimate("internationalisation"), 5);
    }

    /// Issue 16, point 8: non-Latin text is counted at its real size, and
    /// the fallback never undercounts it.
    #[test]
    fn non_latin_text_is_not_undercounted() {
        let zh = "请在回答任何问题之前先查阅公司的政策文件，并且始终礼貌地回答员工的问题。";
        let real = count(zh, Family::O200k);
        assert!(real >= 15, "{real}");
        assert!(count(zh, Family::Cl100k) >= real);
        assert!(
            estimate(zh) >= count(zh, Family::Cl100k),
            "{}",
            estimate(zh)
        );
        let en = "Look up the policy before answering and cite the section.";
        let n = count(en, Family::O200k);
        assert!((9..=14).contains(&n), "{n}");
    }

    #[test]
    fn families_by_model_name() {
        assert_eq!(Family::for_model("gpt-4o-mini"), Family::O200k);
        assert_eq!(Family::for_model("gpt-4.1"), Family::O200k);
        assert_eq!(Family::for_model("o3-mini"), Family::O200k);
        assert_eq!(Family::for_model("gpt-4-turbo"), Family::Cl100k);
        assert_eq!(Family::for_model("gpt-3.5-turbo"), Family::Cl100k);
        assert_eq!(Family::for_model("demo-1"), Family::O200k);
    }
}
