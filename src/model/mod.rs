//! Plain records every stage of the loop shares, and nothing else: no I/O,
//! no policy. A state that crosses a module boundary (a decision's kind, a
//! rollout's state, an arm, a gate verdict) is an enum here, so no two files
//! have to spell the same string alike; the store keeps their text values in
//! its columns and converts at its boundary.

mod approval;
mod decision;
mod improve;
mod rollout;
mod run;
mod scope;
mod tag;
mod verdict;

pub use approval::{ApprovalReport, Requirement};
pub use decision::{Decision, DecisionKind, Serving};
pub use improve::{
    CandidateOutcome, CaseFeedback, FailedCheck, OPTIMISER_SYSTEM, OptimiserAnswer,
    OptimiserRequest, PassingExample, ResolvedPrompt, StopReason, TelemetrySignal, TriedCandidate,
    VoiceProfile,
};
pub use rollout::{
    Arm, ArmLabel, Bound, Effect, EffectState, FiguresFrom, GitOutcome, Kpis, RevertEffect,
    RollbackFigures, RollbackGit, RollbackRules, Rollout, RolloutDetail, RolloutPlan, RolloutState,
    Sprt, StepFigures, StepOutcome, StepRecord, pending_commit,
};
pub use run::{RunRow, RunSample};
pub use scope::{Autonomy, ScopeType, Tier};
pub use tag::Tag;
pub use verdict::{Variant, Verdict};

/// An enum whose values are stored and shown as fixed words.
///
/// `parse` is the inverse of `as_str`; an unknown word is an error that names
/// the field and the accepted words, never a silent default.
pub trait Word: Sized + Copy + 'static {
    const FIELD: &'static str;
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
    fn parse(s: &str) -> Result<Self, UnknownWord> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownWord {
                field: Self::FIELD,
                value: s.to_string(),
                expected: Self::ALL
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` is `{value}`; expected one of: {expected}")]
pub struct UnknownWord {
    pub field: &'static str,
    pub value: String,
    pub expected: String,
}

/// Define an enum whose values are fixed words: the enum, its [`Word`]
/// impl (field name for errors, every value, the word of each), and serde
/// and `Display` as that word. One definition, so no two places spell a
/// state differently.
macro_rules! words {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($field:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $( $(#[$vmeta])* $variant ),+ }

        impl $name {
            /// The word this value is stored and shown as.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $word),+ }
            }
        }

        impl $crate::model::Word for $name {
            const FIELD: &'static str = $field;
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            fn as_str(self) -> &'static str {
                <$name>::as_str(self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                <$name as $crate::model::Word>::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, so widths and alignment in format strings apply.
                f.pad(self.as_str())
            }
        }
    };
}
pub(crate) use words;

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Word + std::fmt::Debug + PartialEq>() {
        for v in T::ALL {
            assert_eq!(T::parse(v.as_str()), Ok(*v));
        }
        let e = T::parse("nope").expect_err("unknown word");
        assert!(e.to_string().contains(T::FIELD), "{e}");
    }

    #[test]
    fn every_word_round_trips() {
        round_trip::<DecisionKind>();
        round_trip::<RolloutState>();
        round_trip::<Arm>();
        round_trip::<Variant>();
        round_trip::<Verdict>();
        round_trip::<RollbackGit>();
        round_trip::<Tag>();
        round_trip::<ScopeType>();
        round_trip::<Autonomy>();
        round_trip::<Tier>();
        round_trip::<StepOutcome>();
        round_trip::<FiguresFrom>();
    }

    #[test]
    fn arm_label_round_trips_and_refuses_garbage() {
        let l: ArmLabel = "abc-1:canary".parse().expect("label");
        assert_eq!(l.arm, Arm::Canary);
        assert_eq!(l.to_string(), "abc-1:canary");
        assert!("abc".parse::<ArmLabel>().is_err());
        assert!("abc:blue".parse::<ArmLabel>().is_err());
    }
}

/// What is wrong with a person's free-text reason (a hold, resume or
/// rollback), or None. It goes into decisions, the audit log, terminal
/// tables and revert commit messages: control characters (escape
/// sequences, carriage returns, newlines that would start a line of their
/// own in a commit body) and Unicode direction overrides are refused, and
/// so is one longer than [`MAX_REASON`] characters.
pub fn reason_problem(reason: &str) -> Option<String> {
    if let Some(c) = reason
        .chars()
        .find(|c| c.is_control() || is_bidi_control(*c))
    {
        return Some(format!(
            "the reason contains U+{:04X}, a control or text-direction character; write it on one line of plain text",
            u32::from(c)
        ));
    }
    let n = reason.chars().count();
    (n > MAX_REASON).then(|| {
        format!(
            "the reason is {n} characters long; keep it to {MAX_REASON} (link to details instead)"
        )
    })
}

/// The longest reason accepted, in characters.
pub const MAX_REASON: usize = 1000;

/// Unicode's explicit direction marks, embeddings, overrides and isolates:
/// text that reads differently from what it says in a terminal or a page.
pub fn is_bidi_control(c: char) -> bool {
    // With the line and paragraph separators, which end a line in many
    // readers though they are not control characters.
    matches!(
        c,
        '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod reason_tests {
    #[test]
    fn reasons_are_one_line_of_plain_text() {
        assert_eq!(super::reason_problem("answers too short, see #41"), None);
        for bad in [
            "a\nMissionctl-Rollback: x",
            "\u{1b}[2Jfake",
            "a\rb",
            "tab\there",
            "rtl \u{202E}gnp.exe",
            "line\u{2028}sep",
            "para\u{2029}sep",
            "mark\u{061C}",
        ] {
            assert!(super::reason_problem(bad).is_some(), "{bad:?}");
        }
        assert!(super::reason_problem(&"x".repeat(1001)).is_some());
        assert_eq!(super::reason_problem(&"é".repeat(1000)), None);
    }
}
