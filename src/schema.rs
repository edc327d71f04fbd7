//! The JSON Schemas of every file kind and record, embedded in the binary and
//! compiled once. Validation errors are translated into [`Diagnostic`]s at the
//! YAML position the instance path names, with a message an author can act on
//! (which field, what was expected, a "did you mean" for typos).

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value as Json;

use crate::diagnostic::{Code, Diagnostic};
use crate::yaml::Node;

/// Every schema missionctl ships, by kind. The files under `schema/` are the
/// source; these are the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Mission,
    Pack,
    EvalCases,
    HardConstraints,
    Guardrails,
    Tiers,
    PromptPack,
    RunTelemetry,
    EvalResult,
    PromotionDecision,
    Tokens,
    MarketIndex,
    MarketLock,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Mission,
        Kind::Pack,
        Kind::EvalCases,
        Kind::HardConstraints,
        Kind::Guardrails,
        Kind::Tiers,
        Kind::PromptPack,
        Kind::RunTelemetry,
        Kind::EvalResult,
        Kind::PromotionDecision,
        Kind::Tokens,
        Kind::MarketIndex,
        Kind::MarketLock,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Kind::Mission => "mission.schema.json",
            Kind::Pack => "pack.schema.json",
            Kind::EvalCases => "eval-cases.schema.json",
            Kind::HardConstraints => "hard-constraints.schema.json",
            Kind::Guardrails => "guardrails.schema.json",
            Kind::Tiers => "tiers.schema.json",
            Kind::PromptPack => "records/prompt_pack.schema.json",
            Kind::RunTelemetry => "records/run_telemetry.schema.json",
            Kind::EvalResult => "records/eval_result.schema.json",
            Kind::PromotionDecision => "records/promotion_decision.schema.json",
            Kind::Tokens => "tokens.schema.json",
            Kind::MarketIndex => "market-index.schema.json",
            Kind::MarketLock => "market-lock.schema.json",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Kind::Mission => include_str!("../schema/mission.schema.json"),
            Kind::Pack => include_str!("../schema/pack.schema.json"),
            Kind::EvalCases => include_str!("../schema/eval-cases.schema.json"),
            Kind::HardConstraints => include_str!("../schema/hard-constraints.schema.json"),
            Kind::Guardrails => include_str!("../schema/guardrails.schema.json"),
            Kind::Tiers => include_str!("../schema/tiers.schema.json"),
            Kind::PromptPack => include_str!("../schema/records/prompt_pack.schema.json"),
            Kind::RunTelemetry => include_str!("../schema/records/run_telemetry.schema.json"),
            Kind::EvalResult => include_str!("../schema/records/eval_result.schema.json"),
            Kind::PromotionDecision => {
                include_str!("../schema/records/promotion_decision.schema.json")
            }
            Kind::Tokens => include_str!("../schema/tokens.schema.json"),
            Kind::MarketIndex => include_str!("../schema/market-index.schema.json"),
            Kind::MarketLock => include_str!("../schema/market-lock.schema.json"),
        }
    }

    fn index(self) -> usize {
        Kind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

struct Compiled {
    schema: Json,
    validator: jsonschema::Validator,
}

static COMPILED: OnceLock<Vec<Compiled>> = OnceLock::new();

fn compiled(kind: Kind) -> &'static Compiled {
    let all = COMPILED.get_or_init(|| {
        Kind::ALL
            .iter()
            .map(|k| {
                let schema: Json = serde_json::from_str(k.source())
                    .expect("embedded schema is valid JSON (checked by unit tests)");
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft202012)
                    .should_validate_formats(true)
                    .build(&schema)
                    .expect("embedded schema compiles (checked by unit tests)");
                Compiled { schema, validator }
            })
            .collect()
    });
    &all[kind.index()]
}

/// A problem found by schema validation, before it is placed in a file.
#[derive(Debug, Clone)]
pub struct SchemaProblem {
    pub code: Code,
    /// JSON Pointer of the offending value.
    pub pointer: String,
    /// Set when the problem is about a key (unknown or missing): the key name.
    pub key: Option<String>,
    pub message: String,
    pub help: Option<String>,
}

/// Validate a plain JSON value (records, API payloads).
pub fn check_json(kind: Kind, value: &Json) -> Vec<SchemaProblem> {
    let c = compiled(kind);
    let mut out: Vec<SchemaProblem> = c
        .validator
        .iter_errors(value)
        .map(|e| describe(&c.schema, &e))
        .collect();
    out.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    out.dedup_by(|a, b| a.pointer == b.pointer && a.message == b.message);
    out
}

/// The embedded schema of `kind`, parsed.
pub(crate) fn schema_json(kind: Kind) -> &'static Json {
    &compiled(kind).schema
}

/// Validate a YAML document and place each problem at its line and column.
pub(crate) fn check_node(kind: Kind, file: &str, node: &Node, json: &Json) -> Vec<Diagnostic> {
    check_json(kind, json)
        .into_iter()
        .map(|p| {
            let pos = match (&p.key, p.code) {
                (Some(key), Code::SchemaUnknownKey) => {
                    let (parent, _) = node.locate(&p.pointer);
                    parent.key_pos(key).unwrap_or(parent.pos)
                }
                (_, Code::SchemaRequired) => {
                    if p.pointer.is_empty() {
                        node.pos
                    } else {
                        node.key_pos_at(&p.pointer)
                    }
                }
                _ => node.pos_at(&p.pointer),
            };
            let mut message = p.message;
            if kind == Kind::EvalCases
                && let Some(desc) = test_description(json, &p.pointer)
            {
                message.push_str(&format!(" (the test described {desc:?})"));
            }
            let mut d = Diagnostic::error(p.code, file, pos, message);
            d.help = p.help;
            d
        })
        .collect()
}

/// The description of the test a problem in a cases file is in (`/3/…` in
/// a test list, `/tests/3/…` in a config), so the message names the test.
fn test_description<'a>(json: &'a Json, pointer: &str) -> Option<&'a str> {
    let mut segs = pointer.trim_start_matches('/').split('/');
    let first = segs.next()?;
    let (list, index) = if first == "tests" {
        (json.get("tests")?, segs.next()?)
    } else {
        (json, first)
    };
    list.get(index.parse::<usize>().ok()?)?
        .get("description")?
        .as_str()
}

/// `tools.allow[2]` from `/tools/allow/2`.
pub(crate) fn field_name(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
    {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    if out.is_empty() {
        "the document".into()
    } else {
        out
    }
}

fn type_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

fn short(v: &Json) -> String {
    let s = match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// Follow a JSON pointer into a schema document.
fn schema_at<'a>(schema: &'a Json, pointer: &str) -> Option<&'a Json> {
    if pointer.is_empty() {
        return Some(schema);
    }
    schema.pointer(pointer)
}

fn pattern_hint(pattern: &str) -> &'static str {
    if pattern.starts_with("^(0|[1-9]") {
        "a semantic version such as 1.4.0 (no leading `v`, no build metadata)"
    } else if pattern.starts_with("^[a-z0-9][a-z0-9._-]") {
        "an id: lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most 64 characters"
    } else if pattern.starts_with("^[a-z][a-z0-9_-]*(\\.") {
        "a tool name such as `calendar.read`: lowercase dotted segments"
    } else if pattern.starts_with("^[A-Z_]") {
        "an environment variable name such as OPENAI_API_KEY"
    } else {
        "the expected format"
    }
}

fn describe(schema: &Json, e: &jsonschema::ValidationError<'_>) -> SchemaProblem {
    let pointer = e.instance_path().as_str().to_string();
    let field = field_name(&pointer);
    let instance = e.instance();
    let schema_path = e.schema_path().as_str().to_string();
    let mk = |code, message: String, help: Option<String>| SchemaProblem {
        code,
        pointer: pointer.clone(),
        key: None,
        message,
        help,
    };
    match e.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let parent_schema = schema_path
                .strip_suffix("/additionalProperties")
                .and_then(|p| schema_at(schema, p));
            let known: Vec<String> = parent_schema
                .and_then(|s| s.get("properties"))
                .and_then(Json::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let key = unexpected.first().cloned().unwrap_or_default();
            let suggestion = known
                .iter()
                .map(|k| (strsim::jaro_winkler(k, &key), k))
                .filter(|(s, _)| *s > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| k.clone());
            let help = match suggestion {
                Some(s) => format!(
                    "did you mean `{s}`? known fields here: {}",
                    known.join(", ")
                ),
                None if known.is_empty() => "remove this field".to_string(),
                None => format!("remove it; known fields here: {}", known.join(", ")),
            };
            SchemaProblem {
                code: Code::SchemaUnknownKey,
                pointer: pointer.clone(),
                key: Some(key.clone()),
                message: format!("unknown field `{key}` in {field}"),
                help: Some(help),
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default().to_string();
            SchemaProblem {
                code: Code::SchemaRequired,
                pointer: pointer.clone(),
                key: Some(name.clone()),
                message: format!("missing required field `{name}` in {field}"),
                help: Some(format!("add `{name}:` here")),
            }
        }
        ValidationErrorKind::Type { .. } => {
            let expected = schema_at(schema, &schema_path)
                .map(|t| match t {
                    Json::String(s) => s.clone(),
                    Json::Array(a) => a
                        .iter()
                        .filter_map(Json::as_str)
                        .collect::<Vec<_>>()
                        .join(" or "),
                    _ => "another type".into(),
                })
                .unwrap_or_else(|| "another type".into());
            let expected = match expected.as_str() {
                "object" => "a mapping".to_string(),
                "array" => "a list".to_string(),
                "string" => "a string".to_string(),
                "integer" => "a whole number".to_string(),
                "number" => "a number".to_string(),
                "boolean" => "true or false".to_string(),
                other => other.to_string(),
            };
            let hint = if expected == "a string" && matches!(instance.as_ref(), Json::Number(_)) {
                Some("quote the value, e.g. \"1.0.0\"".to_string())
            } else {
                None
            };
            mk(
                Code::SchemaType,
                format!(
                    "{field} must be {expected}, found {}",
                    type_name(instance.as_ref())
                ),
                hint,
            )
        }
        ValidationErrorKind::Enum { options } => {
            let opts = options
                .as_array()
                .map(|a| a.iter().map(short).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            mk(
                Code::SchemaEnum,
                format!(
                    "{field} must be one of {opts}; found `{}`",
                    short(instance.as_ref())
                ),
                None,
            )
        }
        ValidationErrorKind::Constant { expected_value } => mk(
            Code::SchemaEnum,
            format!(
                "{field} must be {}; found `{}`",
                short(expected_value),
                short(instance.as_ref())
            ),
            None,
        ),
        ValidationErrorKind::Pattern { pattern } => mk(
            Code::SchemaPattern,
            format!(
                "{field} `{}` is not {}",
                short(instance.as_ref()),
                pattern_hint(pattern)
            ),
            None,
        ),
        // `{"not": {}, "description": …}`: a construct of the format this
        // tool knows and refuses, with the reason in its description.
        ValidationErrorKind::Not { .. } => {
            let why = schema_path
                .strip_suffix("/not")
                .and_then(|p| schema_at(schema, p))
                .and_then(|s| s.get("description"))
                .and_then(Json::as_str)
                .unwrap_or("remove it");
            SchemaProblem {
                code: Code::EvalUnsupported,
                pointer: pointer.clone(),
                key: None,
                message: format!("{field}: not supported"),
                help: Some(why.to_string()),
            }
        }
        ValidationErrorKind::UniqueItems => mk(
            Code::DuplicateId,
            format!("{field} lists the same item twice"),
            Some("remove the duplicate".into()),
        ),
        _ => mk(Code::SchemaValue, format!("{field}: {e}"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    #[test]
    fn every_schema_compiles() {
        for k in Kind::ALL {
            let _ = compiled(*k);
            let meta = jsonschema::meta::validate(schema_json(*k));
            assert!(meta.is_ok(), "{k:?}: {meta:?}");
        }
    }

    #[test]
    fn unknown_key_points_at_key_with_suggestion() {
        let src = "id: a\nversion: 1.0.0\nscope: {type: domain, id: a}\ntools:\n  alow: [x.y]\n";
        let node = yaml::parse(src).expect("yaml");
        let d = check_node(Kind::Pack, "p.yaml", &node, &node.to_json());
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, Code::SchemaUnknownKey);
        assert_eq!((d[0].line, d[0].col), (5, 3));
        assert!(
            d[0].help
                .as_deref()
                .unwrap_or("")
                .contains("did you mean `allow`")
        );
    }

    #[test]
    fn type_error_at_value() {
        let src = "id: a\nversion: 1\nscope: {type: domain, id: a}\n";
        let node = yaml::parse(src).expect("yaml");
        let d = check_node(Kind::Pack, "p.yaml", &node, &node.to_json());
        assert_eq!(d[0].code, Code::SchemaType);
        assert_eq!((d[0].line, d[0].col), (2, 10));
        assert_eq!(d[0].message, "version must be a string, found a number");
    }
}
