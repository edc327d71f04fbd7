//! Assertions on one harness output with promptfoo's semantics, verdict for
//! verdict (the conformance test runs the same outputs through promptfoo and
//! requires identical answers), plus missionctl's `tag` saying which
//! regression class a failure belongs to, and a few assertion types of its
//! own (`tools-within-profile`, `max-length`, …, `contract:` schemas).
//! Judge-backed types are scored in [`super::judge`].
//!
//! The specification (types, default tags, [`problem`]) belongs to the pack
//! format: [`crate::pack::assertion`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::js;
use crate::pack::assertion::base;
pub use crate::pack::assertion::{DETERMINISTIC, JUDGED, OWN, default_tag, is_judged, problem};
use crate::pack::{AssertSpec, EvalCase};
use crate::resolve::Contract;
use serde_json::Value as Json;

pub use crate::model::Tag;

/// What one assertion says about an output.
enum Outcome {
    /// The verdict after negation, and why it failed.
    Verdict(bool, String),
    /// A judge-backed type, scored later.
    Judge,
    /// What promptfoo throws on (an invariant, a missing cost): the whole
    /// case errors, whatever the weights and threshold.
    Error(String),
}

mod json;
use json::{contains_json, is_json, verdict};

/// What an assertion sees of a run.
pub struct Observed<'a> {
    pub output: &'a str,
    pub tool_calls: &'a [String],
    pub completion_tokens: u64,
    pub latency_ms: f64,
    /// None when the harness reported no cost.
    pub cost_usd: Option<f64>,
    /// The resolved pack's effective tool allow list.
    pub allowed_tools: &'a [String],
    /// The output contracts that decide `contract:` values.
    pub contracts: &'a BTreeMap<String, Contract>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AssertionResult {
    #[serde(rename = "type")]
    pub kind: String,
    pub tag: Tag,
    pub pass: bool,
    pub score: f64,
    pub reason: String,
    /// Judge-backed assertions are filled in later.
    #[serde(skip)]
    pub needs_judge: bool,
    /// Not evaluated (a judge-backed assertion with no judge configured); it
    /// neither passes nor fails the case, and the evidence says so.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// promptfoo throws here (see `Outcome::Error`): the case fails whatever
    /// its weights and threshold.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub errored: bool,
}

/// The list a `contains-any`-style value stands for.
fn list_of(value: &Json) -> Vec<String> {
    match value {
        Json::String(s) => js::comma_separated(s).unwrap_or_default(),
        Json::Array(a) => a.iter().map(js::string_of).collect(),
        other => vec![js::string_of(other)],
    }
}

fn text_outcome(b: &str, value: &Json, inverse: bool, out: &str) -> Option<Outcome> {
    let lower = |s: &str| s.to_lowercase();
    Some(match b {
        "equals" => match value {
            Json::Object(_) | Json::Array(_) | Json::Null => {
                let equal = js::json_parse(out).is_some_and(|p| js::deep_equal(value, &p));
                verdict(equal, inverse, &format!("equal {value}"))
            }
            v => {
                let want = js::string_of(v);
                verdict(out == want, inverse, &format!("equal {want:?}"))
            }
        },
        "contains" => {
            let want = js::string_of(value);
            verdict(out.contains(&want), inverse, &format!("contain {want:?}"))
        }
        "icontains" => {
            let want = js::string_of(value);
            verdict(
                lower(out).contains(&lower(&want)),
                inverse,
                &format!("contain {want:?} (any case)"),
            )
        }
        "contains-any" | "icontains-any" | "contains-all" | "icontains-all" => {
            let wants = list_of(value);
            let fold = b.starts_with('i');
            let hay = if fold { lower(out) } else { out.to_string() };
            let has = |w: &String| {
                if fold {
                    hay.contains(&lower(w))
                } else {
                    hay.contains(w.as_str())
                }
            };
            let (raw, what) = if b.ends_with("-any") {
                (wants.iter().any(has), "contain one of")
            } else {
                (wants.iter().all(has), "contain all of")
            };
            verdict(
                raw,
                inverse,
                &format!("{what} {wants:?}{}", if fold { " (any case)" } else { "" }),
            )
        }
        "starts-with" => {
            let want = js::string_of(value);
            verdict(
                out.starts_with(&want),
                inverse,
                &format!("start with {want:?}"),
            )
        }
        "regex" => {
            let pat = js::string_of(value);
            match js::regex(&pat) {
                Ok(re) => verdict(js::regex_test(&re, out), inverse, &format!("match /{pat}/")),
                // promptfoo fails an invalid pattern whatever the negation.
                Err(e) => Outcome::Error(format!("invalid regex /{pat}/: {e}")),
            }
        }
        _ => return None,
    })
}

fn measure_outcome(
    b: &str,
    value: &Json,
    threshold: Option<f64>,
    inverse: bool,
    o: &Observed<'_>,
    out: &str,
) -> Option<Outcome> {
    let num = |v: &Json| v.as_f64().or(threshold);
    let len = out.chars().count() as f64;
    Some(match b {
        "levenshtein" => {
            let d = js::levenshtein(out, &js::string_of(value));
            let t = threshold.unwrap_or(5.0);
            verdict(
                d as f64 <= t,
                inverse,
                &format!("be within edit distance {t} (was {d})"),
            )
        }
        "word-count" => {
            let n = js::word_count(out) as f64;
            match value {
                Json::Object(m) => {
                    // JavaScript's `>=`/`<=` between a number and a bound:
                    // the bound converted with `Number()` ("2" is 2).
                    let (lo, hi) = (
                        m.get("min").map(js::to_number),
                        m.get("max").map(js::to_number),
                    );
                    let ok = lo.is_none_or(|l| n >= l) && hi.is_none_or(|h| n <= h);
                    verdict(
                        ok,
                        inverse,
                        &format!("have between {lo:?} and {hi:?} words (had {n})"),
                    )
                }
                v => {
                    let want = js::to_number(v);
                    verdict(n == want, inverse, &format!("have {want} words (had {n})"))
                }
            }
        }
        "max-length" => {
            let n = num(value).unwrap_or(f64::MAX);
            verdict(
                len <= n,
                inverse,
                &format!("be at most {n} characters (was {len})"),
            )
        }
        "min-length" => {
            let n = num(value).unwrap_or(0.0);
            verdict(
                len >= n,
                inverse,
                &format!("be at least {n} characters (was {len})"),
            )
        }
        "max-tokens" => {
            let n = num(value).unwrap_or(f64::MAX);
            verdict(
                o.completion_tokens as f64 <= n,
                inverse,
                &format!("use at most {n} tokens (used {})", o.completion_tokens),
            )
        }
        "min-tokens" => {
            let n = num(value).unwrap_or(0.0);
            verdict(
                o.completion_tokens as f64 >= n,
                inverse,
                &format!("use at least {n} tokens (used {})", o.completion_tokens),
            )
        }
        "latency" => {
            let n = threshold.unwrap_or(f64::MAX);
            verdict(
                o.latency_ms <= n,
                inverse,
                &format!("answer within {n} ms (took {:.0})", o.latency_ms),
            )
        }
        "cost" => {
            let n = threshold.unwrap_or(f64::MAX);
            match o.cost_usd {
                // promptfoo: "Cost assertion does not support providers that
                // do not return cost" (an error, whatever the negation).
                None => Outcome::Error(
                    "the harness reported no cost (a command harness prints `usage.cost_usd`; an OpenAI-compatible one needs the model's price in `eval.prices`)".into(),
                ),
                Some(c) => verdict(
                    c <= n,
                    inverse,
                    &format!("cost at most ${n} (cost ${c:.6})"),
                ),
            }
        }
        _ => return None,
    })
}

fn tools_outcome(b: &str, inverse: bool, o: &Observed<'_>) -> Outcome {
    let outside: Vec<&String> = o
        .tool_calls
        .iter()
        .filter(|t| !o.allowed_tools.contains(t))
        .collect();
    if b == "is-valid-openai-tools-call" {
        // The calls must exist and each name a tool the pack offered (the
        // provider's `tools`, in promptfoo's terms).
        let ok = !o.tool_calls.is_empty() && outside.is_empty();
        return verdict(
            ok,
            inverse,
            &format!(
                "be tool calls to tools in the pack's profile (called {:?})",
                o.tool_calls
            ),
        );
    }
    verdict(
        outside.is_empty(),
        inverse,
        &if outside.is_empty() {
            "call only tools in the pack's profile".to_string()
        } else {
            format!("call only tools in the pack's profile (called {outside:?})")
        },
    )
}

/// Evaluate one assertion (not an `assert-set`: see [`EvalCase::leaves`]).
/// Judge-backed types come back with `needs_judge` set.
pub fn check(a: &AssertSpec, o: &Observed<'_>) -> AssertionResult {
    let tag = a.tag.unwrap_or_else(|| default_tag(&a.kind));
    // An absent value is JavaScript's `undefined`: `equals` compares the
    // output with the text "undefined" (`String(undefined)`).
    let value = match (&a.value, base(&a.kind).1) {
        (None, "equals") => Json::String("undefined".into()),
        (v, _) => v.clone().unwrap_or(Json::Null),
    };
    let (inverse, b) = base(&a.kind);
    let transformed;
    let out = match &a.transform {
        Some(t) => {
            transformed = t.apply(o.output);
            transformed.as_str()
        }
        None => o.output,
    };
    let outcome = if let Some(err) = &a.problem {
        Outcome::Error(err.clone())
    } else if let Some(x) = text_outcome(b, &value, inverse, out) {
        x
    } else if let Some(x) = measure_outcome(b, &value, a.threshold, inverse, o, out) {
        x
    } else {
        match b {
            "is-json" => is_json(&value, inverse, o, out),
            "contains-json" => contains_json(&value, inverse, o, out),
            "tools-within-profile" | "is-valid-openai-tools-call" => tools_outcome(b, inverse, o),
            _ if JUDGED.contains(&b) => Outcome::Judge,
            other => Outcome::Error(format!("unsupported assertion type `{other}`")),
        }
    };
    let errored = matches!(outcome, Outcome::Error(_));
    let (pass, reason, needs_judge) = match outcome {
        Outcome::Judge => (false, "awaiting judge".to_string(), true),
        Outcome::Error(why) => (false, format!("error: {why}"), false),
        Outcome::Verdict(pass, why) => {
            let reason = if pass { format!("passed: {why}") } else { why };
            (pass, reason, false)
        }
    };
    let score = if pass { 1.0 } else { 0.0 };
    AssertionResult {
        kind: a.kind.clone(),
        tag,
        // promptfoo: weight 0 never fails a test.
        pass: (pass || (a.weight == 0.0 && !needs_judge)) && !errored,
        score,
        reason,
        needs_judge,
        skipped: false,
        errored,
    }
}

/// The case's verdict and score from its leaf results (aligned with
/// [`EvalCase::leaves`]), aggregated as promptfoo does: the score is the
/// weighted mean; without a `threshold` the case passes when no assertion
/// failed, with one when the score reaches it. An `assert-set` is scored the
/// same way and counts as one assertion with its own weight.
pub fn case_verdict(case: &EvalCase, results: &[AssertionResult]) -> (bool, f64) {
    struct Agg {
        total: f64,
        weight: f64,
        failed: bool,
    }
    let finish = |g: &Agg, threshold: Option<f64>| {
        let score = if g.weight > 0.0 {
            g.total / g.weight
        } else {
            0.0
        };
        let pass = match threshold {
            Some(t) if !t.is_nan() => score >= t,
            _ => !g.failed,
        };
        (pass, score)
    };
    let leaves = case.leaves();
    if leaves.is_empty() && case.asserts.is_empty() {
        return (true, 1.0);
    }
    // An assertion promptfoo throws on errors the whole test.
    if results.iter().any(|r| r.errored) {
        return (false, 0.0);
    }
    let mut main = Agg {
        total: 0.0,
        weight: 0.0,
        failed: false,
    };
    let mut sets: BTreeMap<usize, Agg> = BTreeMap::new();
    for ((spec, set), r) in leaves.iter().zip(results) {
        let g = match set {
            Some(i) => sets.entry(*i).or_insert(Agg {
                total: 0.0,
                weight: 0.0,
                failed: false,
            }),
            None => &mut main,
        };
        g.total += r.score * spec.weight;
        g.weight += spec.weight;
        g.failed |= !r.pass;
    }
    for (i, g) in &sets {
        let spec = &case.asserts[*i];
        // A failing set fails the case whatever its weight (promptfoo's
        // `addResult` records the failure; only a leaf's weight 0 passes it).
        let (pass, score) = finish(g, spec.threshold);
        main.total += score * spec.weight;
        main.weight += spec.weight;
        main.failed |= !pass;
    }
    finish(&main, case.threshold)
}

#[cfg(test)]
mod tests;
