//! Deterministic assertions on one harness output, promptfoo-compatible in
//! shape (`type`, `value`, `threshold`) with missionctl's `tag` saying which
//! regression class a failure belongs to. Judge-backed types (`llm-rubric`,
//! `voice-rubric`) are scored in [`super::judge`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::pack::AssertSpec;
use crate::resolve::Contract;
use serde_json::Value as Json;

pub use crate::model::Tag;

/// The tag an assertion gets when the author gives none.
pub(crate) fn default_tag(kind: &str) -> Tag {
    match kind.trim_start_matches("not-") {
        "is-json" | "contains-json" | "max-length" | "min-length" | "max-tokens" | "min-tokens" => {
            Tag::Format
        }
        "tools-within-profile" => Tag::Safety,
        "voice-rubric" => Tag::Voice,
        _ => Tag::Quality,
    }
}

/// What an assertion sees of a run.
pub struct Observed<'a> {
    pub output: &'a str,
    pub tool_calls: &'a [String],
    pub completion_tokens: u64,
    pub latency_ms: f64,
    pub cost_usd: f64,
    /// The resolved pack's effective tool allow list.
    pub allowed_tools: &'a [String],
    /// The resolved pack's output contracts (`eval.contracts`).
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
}

fn text_values(v: &Json) -> Vec<String> {
    match v {
        Json::Array(a) => a.iter().map(value_text).collect(),
        other => vec![value_text(other)],
    }
}

fn value_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// The JSON an output carries: the whole output, or its fenced ```json block.
pub(crate) fn output_json(output: &str) -> Option<Json> {
    let t = output.trim();
    if let Ok(v) = serde_json::from_str::<Json>(t) {
        return Some(v);
    }
    let inner = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|r| r.strip_suffix("```"))?;
    serde_json::from_str(inner.trim()).ok()
}

/// The first JSON object embedded anywhere in the output.
fn embedded_json(output: &str) -> Option<Json> {
    let bytes = output.as_bytes();
    for (start, _) in output.match_indices('{') {
        let mut depth = 0i32;
        let mut in_str = false;
        let mut esc = false;
        for (i, &b) in bytes.iter().enumerate().skip(start) {
            if in_str {
                match (esc, b) {
                    (true, _) => esc = false,
                    (false, b'\\') => esc = true,
                    (false, b'"') => in_str = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_str = true,
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        if let Ok(v) = serde_json::from_str::<Json>(&output[start..=i]) {
                            return Some(v);
                        }
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    None
}

fn schema_errors(schema: &Json, value: &Json) -> Result<Vec<String>, String> {
    let v = jsonschema::options()
        .build(schema)
        .map_err(|e| format!("the contract's schema is invalid: {e}"))?;
    Ok(v.iter_errors(value)
        .take(3)
        .map(|e| {
            format!(
                "{}: {e}",
                crate::schema::field_name(e.instance_path().as_str())
            )
        })
        .collect())
}

/// What one assertion type says about an output, before negation.
enum Outcome {
    /// Whether the output has the property, and the property in words.
    Checked(bool, String),
    /// The verdict as it stands (negation does not apply): invalid input,
    /// or a schema failure whose reason must list the errors.
    Final(bool, String),
    /// A judge-backed type, scored later.
    Judge,
}

fn contract_schema(value: &Json, o: &Observed<'_>) -> Result<Option<(Json, String)>, Outcome> {
    match value {
        Json::String(s) if s.starts_with("contract:") => {
            let name = &s["contract:".len()..];
            match o.contracts.get(name).and_then(|c| c.schema.as_ref()) {
                Some(sc) => Ok(Some((
                    sc.clone(),
                    format!("be JSON matching contract `{name}`"),
                ))),
                None => Err(Outcome::Final(
                    false,
                    format!("contract `{name}` is not defined on this chain"),
                )),
            }
        }
        Json::Object(_) | Json::Bool(_) => {
            Ok(Some((value.clone(), "be JSON matching the schema".into())))
        }
        _ => Ok(None),
    }
}

fn is_json(value: &Json, negate: bool, o: &Observed<'_>) -> Outcome {
    let Some(parsed) = output_json(o.output) else {
        return Outcome::Checked(false, "be valid JSON".into());
    };
    let schema = match contract_schema(value, o) {
        Ok(s) => s,
        Err(done) => return done,
    };
    let Some((sc, what)) = schema else {
        return Outcome::Checked(true, "be valid JSON".into());
    };
    match schema_errors(&sc, &parsed) {
        Ok(errs) if errs.is_empty() => Outcome::Checked(true, what),
        Ok(_) if negate => Outcome::Checked(false, what),
        Ok(errs) => Outcome::Final(false, format!("output must {what}: {}", errs.join("; "))),
        Err(e) => Outcome::Final(false, e),
    }
}

fn text_outcome(base: &str, value: &Json, out: &str) -> Option<Outcome> {
    let (pass, what) = match base {
        "equals" => {
            let want = value_text(value);
            (out.trim() == want.trim(), format!("equal {want:?}"))
        }
        "contains" => {
            let want = value_text(value);
            (out.contains(&want), format!("contain {want:?}"))
        }
        "icontains" => {
            let want = value_text(value);
            (
                out.to_lowercase().contains(&want.to_lowercase()),
                format!("contain {want:?} (any case)"),
            )
        }
        "contains-any" => {
            let wants = text_values(value);
            (
                wants.iter().any(|w| out.contains(w.as_str())),
                format!("contain any of {wants:?}"),
            )
        }
        "contains-all" => {
            let wants = text_values(value);
            (
                wants.iter().all(|w| out.contains(w.as_str())),
                format!("contain all of {wants:?}"),
            )
        }
        "starts-with" => {
            let want = value_text(value);
            (
                out.trim_start().starts_with(&want),
                format!("start with {want:?}"),
            )
        }
        "regex" => {
            let pat = value_text(value);
            return Some(
                match regex::RegexBuilder::new(&pat).size_limit(1 << 20).build() {
                    Ok(re) => Outcome::Checked(re.is_match(out), format!("match /{pat}/")),
                    Err(e) => Outcome::Final(false, format!("invalid regex /{pat}/: {e}")),
                },
            );
        }
        _ => return None,
    };
    Some(Outcome::Checked(pass, what))
}

fn measure_outcome(
    base: &str,
    value: &Json,
    threshold: Option<f64>,
    o: &Observed<'_>,
) -> Option<Outcome> {
    let num = |v: &Json| v.as_f64().or(threshold);
    let len = o.output.chars().count() as f64;
    let (pass, what) = match base {
        "max-length" => {
            let n = num(value).unwrap_or(f64::MAX);
            (len <= n, format!("be at most {n} characters (was {len})"))
        }
        "min-length" => {
            let n = num(value).unwrap_or(0.0);
            (len >= n, format!("be at least {n} characters (was {len})"))
        }
        "max-tokens" => {
            let n = num(value).unwrap_or(f64::MAX);
            (
                o.completion_tokens as f64 <= n,
                format!("use at most {n} tokens (used {})", o.completion_tokens),
            )
        }
        "min-tokens" => {
            let n = num(value).unwrap_or(0.0);
            (
                o.completion_tokens as f64 >= n,
                format!("use at least {n} tokens (used {})", o.completion_tokens),
            )
        }
        "latency" => {
            let n = threshold.or(value.as_f64()).unwrap_or(f64::MAX);
            (
                o.latency_ms <= n,
                format!("answer within {n} ms (took {:.0})", o.latency_ms),
            )
        }
        "cost" => {
            let n = threshold.or(value.as_f64()).unwrap_or(f64::MAX);
            (
                o.cost_usd <= n,
                format!("cost at most ${n} (cost ${:.6})", o.cost_usd),
            )
        }
        _ => return None,
    };
    Some(Outcome::Checked(pass, what))
}

fn tools_outcome(o: &Observed<'_>) -> Outcome {
    let outside: Vec<&String> = o
        .tool_calls
        .iter()
        .filter(|t| !o.allowed_tools.contains(t))
        .collect();
    Outcome::Checked(
        outside.is_empty(),
        if outside.is_empty() {
            "call only tools in the pack's profile".into()
        } else {
            format!("call only tools in the pack's profile (called {outside:?})")
        },
    )
}

fn outcome(
    base: &str,
    value: &Json,
    threshold: Option<f64>,
    negate: bool,
    o: &Observed<'_>,
) -> Outcome {
    if let Some(x) = text_outcome(base, value, o.output) {
        return x;
    }
    if let Some(x) = measure_outcome(base, value, threshold, o) {
        return x;
    }
    match base {
        "is-json" => is_json(value, negate, o),
        "contains-json" => Outcome::Checked(
            embedded_json(o.output).is_some(),
            "contain a JSON object".into(),
        ),
        "tools-within-profile" => tools_outcome(o),
        "llm-rubric" | "voice-rubric" => Outcome::Judge,
        other => Outcome::Final(false, format!("unsupported assertion type `{other}`")),
    }
}

/// Evaluate one assertion. Unknown or judge-backed types are returned with
/// `needs_judge` set (the judge fills them) or as failures with a reason.
pub fn check(assertion: &AssertSpec, o: &Observed<'_>) -> AssertionResult {
    let kind = assertion.kind.clone();
    let tag = assertion.tag.unwrap_or_else(|| default_tag(&kind));
    let value = assertion.value.clone().unwrap_or(Json::Null);
    let (negate, base) = match kind.strip_prefix("not-") {
        Some(b) => (true, b),
        None => (false, kind.as_str()),
    };
    let (pass, reason, needs_judge) = match outcome(base, &value, assertion.threshold, negate, o) {
        Outcome::Judge => (false, "awaiting judge".to_string(), true),
        Outcome::Final(pass, reason) => (pass, reason, false),
        Outcome::Checked(raw, what) => {
            let pass = raw != negate;
            let reason = match (pass, negate) {
                (true, false) => format!("passed: output must {what}"),
                (true, true) => format!("passed: output must not {what}"),
                (false, false) => format!("output must {what}"),
                (false, true) => format!("output must not {what}"),
            };
            (pass, reason, false)
        }
    };
    AssertionResult {
        kind: kind.clone(),
        tag,
        pass,
        score: if pass { 1.0 } else { 0.0 },
        reason,
        needs_judge,
        skipped: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn contracts(v: Json) -> BTreeMap<String, Contract> {
        serde_json::from_value(v).expect("contracts")
    }

    fn check(a: &Json, o: &Observed<'_>) -> AssertionResult {
        super::check(&AssertSpec::new(a.clone()), o)
    }

    fn obs<'a>(
        output: &'a str,
        contracts: &'a BTreeMap<String, Contract>,
        tools: &'a [String],
    ) -> Observed<'a> {
        Observed {
            output,
            tool_calls: tools,
            completion_tokens: 10,
            latency_ms: 120.0,
            cost_usd: 0.001,
            allowed_tools: &[],
            contracts,
        }
    }

    #[test]
    fn string_assertions_and_negation() {
        let c = contracts(json!({}));
        let o = obs("The Leave Policy allows 25 days.", &c, &[]);
        assert!(check(&json!({"type": "icontains", "value": "leave policy"}), &o).pass);
        assert!(
            !check(
                &json!({"type": "not-icontains", "value": "leave policy"}),
                &o
            )
            .pass
        );
        assert!(check(&json!({"type": "regex", "value": "\\d+ days"}), &o).pass);
        assert!(check(&json!({"type": "contains-any", "value": ["x", "25"]}), &o).pass);
        assert!(!check(&json!({"type": "contains-all", "value": ["x", "25"]}), &o).pass);
        assert!(check(&json!({"type": "max-length", "value": 100}), &o).pass);
        let r = check(
            &json!({"type": "not-contains", "value": "25", "tag": "safety"}),
            &o,
        );
        assert!(!r.pass);
        assert_eq!(r.tag, Tag::Safety);
    }

    #[test]
    fn json_and_contracts() {
        let c =
            contracts(json!({"answer": {"schema": {"type": "object", "required": ["answer"]}}}));
        let good = obs("```json\n{\"answer\": \"yes\"}\n```", &c, &[]);
        let bad = obs("{\"reply\": \"yes\"}", &c, &[]);
        let prose = obs("Sure! Here you go.", &c, &[]);
        let a = json!({"type": "is-json", "value": "contract:answer"});
        assert!(check(&a, &good).pass);
        let r = check(&a, &bad);
        assert!(!r.pass && r.reason.contains("answer"), "{r:?}");
        assert!(!check(&a, &prose).pass);
        assert_eq!(check(&a, &prose).tag, Tag::Format);
        assert!(!check(&json!({"type": "is-json", "value": "contract:nope"}), &good).pass);
        assert!(
            check(
                &json!({"type": "contains-json"}),
                &obs("x {\"a\": {\"b\": 1}} y", &c, &[])
            )
            .pass
        );
    }

    #[test]
    fn tools_profile() {
        let c = contracts(json!({}));
        let calls = vec!["shell.exec".to_string()];
        let allowed = vec!["calendar.read".to_string()];
        let mut o = obs("", &c, &calls);
        o.allowed_tools = &allowed;
        let r = check(&json!({"type": "tools-within-profile"}), &o);
        assert!(!r.pass);
        assert_eq!(r.tag, Tag::Safety);
    }
}
