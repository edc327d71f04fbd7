//! Prompt size in tokens, counted with the real byte-pair encoding of the
//! model family (`bpe-openai`: the vocabularies are serialised when the crate
//! is built and only deserialised at run time, a few milliseconds, where
//! `tiktoken-rs` rebuilt its 200,000-entry table in every process; issue 30).
//! Its counts are tiktoken's (the crate's own tests compare them, and the
//! test `counts_match_tiktoken` below compares every text the tests count).
//!
//! The family follows mission.yaml's harness model: `cl100k_base` for the
//! GPT-4 / GPT-3.5 family, `o200k_base` (GPT-4o, o-series, GPT-4.1 and
//! anything else) otherwise. Other vendors' tokenizers differ; for them the
//! o200k count is an approximation, stated in the README.
//!
//! Counting is lazy and done once: [`upper_bound`] (the UTF-8 byte length:
//! every token of a byte-level BPE covers at least one byte) answers a
//! ceiling check without tokenizing when the text is clearly under it;
//! [`count`] remembers what it counted (by a 128-bit hash of the text), and
//! a prompt section counts its own text at most once (see
//! [`crate::pack::SectionText::tokens`]).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{LazyLock, Mutex};

/// Which encoding counts a model's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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

/// A cheap bound that is never below the exact count: one token per byte.
pub fn upper_bound(text: &str) -> u64 {
    text.len() as u64
}

/// Texts counted so far in this process: (family, 128-bit hash, length) to
/// the count, so the same text is never tokenized twice.
type Memo = HashMap<(Family, u128, usize), u64>;
static MEMO: LazyLock<Mutex<Memo>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Below this many bytes, tokenizing is cheaper than remembering.
const MEMO_MIN_BYTES: usize = 64;

fn fingerprint(text: &str) -> u128 {
    // Two SipHash passes with different leading keys: 128 bits, so two
    // different texts of one length share a count with odds of 2^-128.
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        text.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

fn tokenize(text: &str, family: Family) -> u64 {
    let bpe = match family {
        Family::O200k => bpe_openai::o200k_base(),
        Family::Cl100k => bpe_openai::cl100k_base(),
    };
    bpe.count(text) as u64
}

/// Tokens in `text` for `family` (exact; counted once per distinct text).
pub fn count(text: &str, family: Family) -> u64 {
    if text.len() < MEMO_MIN_BYTES {
        return tokenize(text, family);
    }
    let key = (family, fingerprint(text), text.len());
    let memo = |m: &Mutex<Memo>| m.lock().map(|g| g.get(&key).copied()).ok().flatten();
    if let Some(n) = memo(&MEMO) {
        return n;
    }
    let n = tokenize(text, family);
    if let Ok(mut m) = MEMO.lock() {
        m.insert(key, n);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16, point 8: non-Latin text is counted at its real size, and
    /// the fallback never undercounts it.
    #[test]
    fn non_latin_text_is_not_undercounted() {
        let zh = "请在回答任何问题之前先查阅公司的政策文件，并且始终礼貌地回答员工的问题。";
        let real = count(zh, Family::O200k);
        assert!(real >= 15, "{real}");
        assert!(count(zh, Family::Cl100k) >= real);
        // Never more than the byte bound that ceiling checks use first.
        assert!(upper_bound(zh) >= count(zh, Family::Cl100k));
        let en = "Look up the policy before answering and cite the section.";
        let n = count(en, Family::O200k);
        assert!((9..=14).contains(&n), "{n}");
    }

    /// Texts with the pre-tokenizer's corner cases: contractions, number
    /// runs, whitespace runs before words and at the end, CRLF, slashes
    /// after punctuation, CJK, accents, emoji.
    const CORNERS: &[&str] = &[
        "",
        " ",
        "Hello, world!",
        "I'm sure they'll say it's what we'd've done.  \n\n  Next",
        "1234567 + 89 = 1234656; 3.14159 and 2026-12-07",
        "trailing spaces   ",
        "line one\r\nline two\r\n\r\n",
        "a/b/c//d https://example.com/path?x=1&y=2",
        "Ünïcödé naïve café, Ελληνικά, русский текст, עברית",
        "请在回答任何问题之前先查阅公司的政策文件，并且始终礼貌地回答员工的问题。",
        "emoji 👩‍💻🚀 and tabs\t\tand\u{a0}non-breaking",
        "HTTPServerError McDonald'S CamelCaseWord ALLCAPS'LL",
        "    indented code:\n        fn main() { println!(\"hi\"); }\n",
    ];

    /// Exact o200k_base and cl100k_base counts, as tiktoken gives them (the
    /// figures were produced by `tiktoken-rs` 0.12, and the test below
    /// recomputes them with it).
    #[test]
    fn known_counts() {
        let en = "Look up the policy before answering and cite the section.";
        assert_eq!(count(en, Family::O200k), 11);
        assert_eq!(count("Hello, world!", Family::O200k), 4);
        assert_eq!(count("Hello, world!", Family::Cl100k), 4);
        assert_eq!(count("", Family::O200k), 0);
    }

    /// The template repository's prompt files, the book's pages and the
    /// corner cases above: the same count as tiktoken, in both families.
    #[test]
    fn counts_match_tiktoken() {
        let o200k = tiktoken_rs::o200k_base().expect("o200k");
        let cl100k = tiktoken_rs::cl100k_base().expect("cl100k");
        let mut texts: Vec<String> = CORNERS.iter().map(|s| (*s).to_string()).collect();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut dirs = vec![root.join("packs-template"), root.join("docs/src")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).expect("readable").flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "md") {
                    texts.push(std::fs::read_to_string(&p).expect("utf-8"));
                }
            }
        }
        assert!(texts.len() > 30, "{}", texts.len());
        for t in &texts {
            let want = o200k.encode_ordinary(t).len() as u64;
            assert_eq!(count(t, Family::O200k), want, "o200k: {t:?}");
            // Counted again: the remembered figure.
            assert_eq!(count(t, Family::O200k), want, "o200k again: {t:?}");
            let want = cl100k.encode_ordinary(t).len() as u64;
            assert_eq!(count(t, Family::Cl100k), want, "cl100k: {t:?}");
            assert!(upper_bound(t) >= want);
        }
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
