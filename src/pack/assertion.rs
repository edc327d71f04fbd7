//! The assertion specification as the pack format holds it: which types
//! missionctl runs (promptfoo's deterministic and judge-backed ones, and its
//! own), the tag a type gets by default, and [`problem`], the
//! `validate`-time check: a type promptfoo has and missionctl does not
//! implement, or a value promptfoo would refuse, is an error before anything
//! runs, never a silently different verdict. Evaluation ([`crate::eval`])
//! depends on this module, never the other way round.

use serde_json::Value as Json;

use super::AssertSpec;
use crate::js;
use crate::model::Tag;

/// promptfoo's deterministic types implemented here (each also as `not-…`).
pub const DETERMINISTIC: &[&str] = &[
    "equals",
    "contains",
    "icontains",
    "contains-any",
    "contains-all",
    "icontains-any",
    "icontains-all",
    "starts-with",
    "regex",
    "is-json",
    "contains-json",
    "is-valid-openai-tools-call",
    "levenshtein",
    "word-count",
    "latency",
    "cost",
];

/// Types judged by the configured judge model.
pub const JUDGED: &[&str] = &[
    "llm-rubric",
    "g-eval",
    "factuality",
    "answer-relevance",
    "voice-rubric",
];

/// missionctl's own types (promptfoo has no type of these names).
pub const OWN: &[&str] = &[
    "tools-within-profile",
    "max-length",
    "min-length",
    "max-tokens",
    "min-tokens",
];

/// The tag an assertion gets when the author gives none.
pub fn default_tag(kind: &str) -> Tag {
    match kind.trim_start_matches("not-") {
        "is-json"
        | "contains-json"
        | "max-length"
        | "min-length"
        | "max-tokens"
        | "min-tokens"
        | "is-valid-openai-tools-call"
        | "word-count" => Tag::Format,
        "tools-within-profile" => Tag::Safety,
        "voice-rubric" => Tag::Voice,
        _ => Tag::Quality,
    }
}

pub fn base(kind: &str) -> (bool, &str) {
    match kind.strip_prefix("not-") {
        Some(b) => (true, b),
        None => (false, kind),
    }
}

pub fn is_judged(kind: &str) -> bool {
    JUDGED.contains(&base(kind).1)
}

/// What is wrong with an assertion as written, in promptfoo's terms: an
/// unsupported type, or a value promptfoo refuses (its `invariant`s). `None`
/// when it can run.
pub fn problem(a: &AssertSpec) -> Option<String> {
    let (negated, b) = base(&a.kind);
    if a.is_set() {
        if negated {
            return Some("`not-assert-set` is not a promptfoo type".into());
        }
        if a.children.is_empty() {
            return Some("an `assert-set` needs a non-empty `assert:` list".into());
        }
        if a.children.iter().any(AssertSpec::is_set) {
            // promptfoo flattens one level; a nested set reaches its
            // `runAssertion` and errors ("Unknown assertion type").
            return Some("an `assert-set` inside an `assert-set` is not supported by promptfoo (it errors with \"Unknown assertion type: assert-set\"); list the inner assertions in the outer set".into());
        }
        // Its members are assertions of their own, each checked as one.
        return None;
    }
    if !DETERMINISTIC.contains(&b) && !JUDGED.contains(&b) && !OWN.contains(&b) {
        return Some(format!(
            "assertion type `{}` is not supported by missionctl (it runs no code from the repository and implements these promptfoo types exactly: {}, {}, assert-set, each deterministic one also as not-…; and its own: {})",
            a.kind,
            DETERMINISTIC.join(", "),
            JUDGED[..4].join(", "),
            OWN.join(", ")
        ));
    }
    if let Some(t) = a.raw().get("transform").and_then(Json::as_str)
        && let Err(e) = js::transform::Transform::parse(t)
    {
        return Some(e);
    }
    let v = a.value.as_ref();
    let need = |ok: bool, what: &str| (!ok).then(|| format!("`{}` needs {what}", a.kind));
    match b {
        "contains" | "icontains" => need(
            matches!(v, Some(Json::String(s)) if !s.is_empty())
                || matches!(v, Some(Json::Number(_))),
            "a non-empty string or a number as `value`",
        ),
        "contains-any" | "contains-all" | "icontains-any" | "icontains-all" => match v {
            Some(Json::String(s)) if js::comma_separated(s).is_none() => Some(format!(
                "`{}`: an unterminated quoted field in `value`",
                a.kind
            )),
            Some(Json::String(s)) if !s.is_empty() => None,
            Some(Json::Array(_)) => None,
            _ => need(false, "a list or a comma-separated string as `value`"),
        },
        "starts-with" => need(
            matches!(v, Some(Json::String(s)) if !s.is_empty()),
            "a non-empty string as `value`",
        ),
        "regex" => match v {
            Some(Json::String(p)) if !p.is_empty() => js::regex(p).err().map(|e| {
                format!(
                    "`{}`: /{p}/ is not a valid JavaScript regular expression: {e}",
                    a.kind
                )
            }),
            _ => need(false, "a pattern as `value`"),
        },
        "levenshtein" => need(matches!(v, Some(Json::String(_))), "a string as `value`"),
        "latency" | "cost" => need(a.threshold.is_some(), "a `threshold`"),
        "word-count" => match v {
            Some(Json::Object(m)) => match (m.get("min"), m.get("max")) {
                (None, None) => need(false, "`min` and/or `max` in its `value`"),
                // promptfoo's `invariant(min <= max)`, with JavaScript's `<=`.
                (Some(lo), Some(hi)) if !js::less_or_equal(lo, hi) => need(
                    false,
                    &format!(
                        "`min` ≤ `max` (JavaScript's `{} <= {}` is false)",
                        js::stringify(lo),
                        js::stringify(hi)
                    ),
                ),
                _ => None,
            },
            Some(Json::Number(_)) => None,
            Some(Json::String(s)) if !js::to_number(&Json::String(s.clone())).is_nan() => None,
            _ => need(
                false,
                "a number (or numeric text) or `{min, max}` as `value`",
            ),
        },
        "is-json" | "contains-json" => match v {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) if s.starts_with("contract:") || s.is_empty() => None,
            Some(Json::Object(_) | Json::String(_)) => {
                schema_of(v?).err().map(|e| format!("`{}`: {e}", a.kind))
            }
            Some(_) if !js::truthy(v) => None,
            Some(_) => need(false, "a JSON schema (object or YAML text) as `value`"),
        },
        // promptfoo's `handleGEval`: a string, or a list of criteria each
        // scored on its own (an empty list would score NaN: refused).
        "g-eval" => need(
            matches!(v, Some(Json::String(s)) if !s.is_empty())
                || matches!(v, Some(Json::Array(a)) if !a.is_empty()
                    && a.iter().all(|c| matches!(c, Json::String(s) if !s.is_empty()))),
            "the criteria as `value`: a non-empty string or a list of them",
        ),
        "llm-rubric" | "voice-rubric" | "factuality" => need(
            matches!(v, Some(Json::String(s)) if !s.is_empty()),
            "the rubric text as `value`",
        ),
        _ => None,
    }
}

/// A JSON schema from an assertion value: an object, or YAML text (as
/// promptfoo's `loadYaml(value)`), compiled as Ajv does (draft-07, formats).
pub fn schema_of(v: &Json) -> Result<jsonschema::Validator, String> {
    let schema = schema_json(v)?;
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| format!("the schema is invalid: {e}"))
}

/// The schema an assertion value stands for, checked as Ajv checks it
/// before compiling (an object, known formats only).
pub fn schema_json(v: &Json) -> Result<Json, String> {
    let schema = match v {
        Json::String(s) => crate::yaml::parse(s)
            .map_err(|e| format!("the schema is not valid YAML: {}", e.message))?
            .to_json(),
        other => other.clone(),
    };
    if !schema.is_object() {
        return Err("the schema must be an object".into());
    }
    if let Some(f) = unknown_format(&schema) {
        return Err(format!(
            "the schema is invalid: unknown format \"{f}\" (promptfoo's Ajv, in strict mode with ajv-formats, refuses it; known: {})",
            AJV_FORMATS.join(", ")
        ));
    }
    Ok(schema)
}

/// The formats `ajv-formats` adds to promptfoo's Ajv: any other `format`
/// fails its schema compilation (strict mode).
const AJV_FORMATS: &[&str] = &[
    "date",
    "time",
    "date-time",
    "iso-time",
    "iso-date-time",
    "duration",
    "uri",
    "uri-reference",
    "uri-template",
    "url",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "regex",
    "uuid",
    "json-pointer",
    "json-pointer-uri-fragment",
    "relative-json-pointer",
    "byte",
    "int32",
    "int64",
    "float",
    "double",
    "password",
    "binary",
];

/// The first `format` keyword anywhere in a schema that Ajv does not know.
fn unknown_format(schema: &Json) -> Option<String> {
    match schema {
        Json::Object(m) => {
            if let Some(Json::String(f)) = m.get("format")
                && !AJV_FORMATS.contains(&f.as_str())
            {
                return Some(f.clone());
            }
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "enum" | "const" | "default" | "examples"))
                .find_map(|(_, v)| unknown_format(v))
        }
        Json::Array(a) => a.iter().find_map(unknown_format),
        _ => None,
    }
}

#[cfg(test)]
mod layering {
    use std::path::Path;

    /// Every `.rs` file under `dir`, recursively.
    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).expect("source dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// Issue 29: the dependency runs one way. The pack format (assertion
    /// specifications and their `problem`) never names evaluation, and the
    /// JavaScript semantics both share name neither.
    #[test]
    fn the_pack_format_does_not_depend_on_evaluation() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        // Spelt in pieces so that this file does not name them itself.
        let (eval, pack) = (concat!("eval", "::"), concat!("pack", "::"));
        for (dir, banned) in [("pack", vec![eval]), ("js", vec![eval, pack])] {
            let mut files = Vec::new();
            sources(&src.join(dir), &mut files);
            assert!(files.len() >= 3, "{dir}: {files:?}");
            for f in files {
                let text = std::fs::read_to_string(&f).expect("read");
                for (n, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or_default();
                    for b in &banned {
                        assert!(
                            !code.contains(b),
                            "{}:{}: `{b}` — src/{dir} must not depend on it: {line}",
                            f.display(),
                            n + 1
                        );
                    }
                }
            }
        }
    }
}
