//! The JSON assertions (`is-json`, `contains-json`) and what they share
//! with validation: promptfoo's JSON extraction, Ajv's formats, schema
//! errors, and the verdict of one check.

use super::*;
use crate::pack::assertion::{schema_json, schema_of};

/// promptfoo's `extractJsonObjects`: from each `{`, the span up to its
/// matching `}` (braces counted naively, a short span closed), read by
/// js-yaml as promptfoo's `loadYaml(…, {json: true})` reads it (see
/// [`js::yaml`]) with `//` comments turned into `#`; objects only.
fn json_objects(output: &str) -> Vec<Json> {
    const MAX: usize = 100_000;
    let b = output.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'{' {
            i += 1;
            continue;
        }
        let (mut open, mut close, mut j) = (1usize, 0usize, i + 1);
        let end = (i + MAX).min(b.len());
        let mut next = i + 1;
        while j < end && open > close {
            match b[j] {
                b'{' => open += 1,
                b'}' => close += 1,
                _ => {}
            }
            j += 1;
            if open == close || j == b.len() || j == i + MAX {
                // Spans end on ASCII braces or the end, so they are char boundaries.
                let Some(span) = output.get(i..j) else { break };
                let mut text = span.to_string();
                if open > close {
                    text.push_str(&"}".repeat(open - close));
                }
                match js::yaml::load_json_mode(&js::slash_comments_to_hash(&text)) {
                    Ok(v @ (Json::Object(_) | Json::Array(_))) => {
                        out.push(v);
                        next = j;
                        break;
                    }
                    Err(_) if open == close => break,
                    _ => {}
                }
            }
        }
        i = next.max(i + 1);
    }
    out
}

fn schema_errors(v: &jsonschema::Validator, value: &Json) -> Vec<String> {
    v.iter_errors(value)
        .take(3)
        .map(|e| {
            format!(
                "{}: {e}",
                crate::schema::field_name(e.instance_path().as_str())
            )
        })
        .collect()
}

pub(super) fn verdict(raw: bool, inverse: bool, what: &str) -> Outcome {
    let pass = raw != inverse;
    Outcome::Verdict(
        pass,
        if inverse {
            format!("output must not {what}")
        } else {
            format!("output must {what}")
        },
    )
}

/// A compiled schema, the schema itself, and what it is called.
type NamedSchema = (jsonschema::Validator, Json, String);

/// The schema a `value` names: promptfoo's (object or YAML text) or
/// missionctl's `contract:NAME`.
fn value_schema(value: &Json, o: &Observed<'_>) -> Result<Option<NamedSchema>, String> {
    match value {
        Json::String(s) if s.starts_with("contract:") => {
            let name = &s["contract:".len()..];
            let what = format!("JSON matching contract `{name}`");
            match o.contracts.get(name).and_then(|c| c.schema.as_ref()) {
                Some(sc @ Json::Bool(_)) => jsonschema::options()
                    .build(sc)
                    .map(|v| Some((v, sc.clone(), what)))
                    .map_err(|e| format!("contract `{name}`: {e}")),
                Some(sc) => schema_of(sc)
                    .map(|v| Some((v, sc.clone(), what)))
                    .map_err(|e| format!("contract `{name}`: {e}")),
                None => Err(format!("contract `{name}` is not defined on this chain")),
            }
        }
        v if !js::truthy(Some(v)) => Ok(None),
        v => {
            let json = schema_json(v)?;
            schema_of(v).map(|s| Some((s, json, "JSON matching the schema".to_string())))
        }
    }
}

/// The first errors of `value` (a JavaScript value as [`js::json_parse_js`]
/// or [`js::yaml`] read it) against a schema, as promptfoo's Ajv finds
/// them: ±Infinity and NaN are of no JSON type (every `type`, `const` and
/// `enum` refuses them) and the number keywords skip them.
fn js_schema_errors(v: &jsonschema::Validator, schema: &Json, value: &Json) -> Vec<String> {
    let mut value = value.clone();
    let marks = js::non_finite_to_null(&mut value);
    if marks.is_empty() {
        return schema_errors(v, &value);
    }
    let addresses: Vec<usize> = marks
        .iter()
        .filter_map(|p| value.pointer(p))
        .map(|x| std::ptr::from_ref(x) as usize)
        .collect();
    let Ok(finite) = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .with_keyword(FINITE, |_, _, _| Ok(Box::new(Finite)))
        .build(&with_finite(schema))
    else {
        return schema_errors(v, &value);
    };
    NON_FINITE.with(|n| *n.borrow_mut() = addresses);
    let errs = schema_errors(&finite, &value);
    NON_FINITE.with(|n| n.borrow_mut().clear());
    errs
}

const FINITE: &str = "x-missionctl-js-finite";

thread_local! {
    /// The addresses of the nulls that stand for non-finite numbers in the
    /// instance being validated.
    static NON_FINITE: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The keyword [`with_finite`] puts beside each `type`, `const` and `enum`:
/// it refuses a non-finite number.
struct Finite;

impl<'i> jsonschema::Keyword<'i> for Finite {
    fn validate(&self, instance: &'i Json) -> Result<(), jsonschema::ValidationError<'i>> {
        if self.is_valid(instance) {
            Ok(())
        } else {
            Err(jsonschema::ValidationError::custom(
                "must be a finite number, a string, a boolean, null, an object or an array (JavaScript's Infinity and NaN are none of them)",
            ))
        }
    }

    fn is_valid(&self, instance: &'i Json) -> bool {
        let at = std::ptr::from_ref(instance) as usize;
        !NON_FINITE.with(|n| n.borrow().contains(&at))
    }
}

/// `schema` with [`FINITE`] beside every `type`, `const` and `enum`, walking
/// only where subschemas are.
fn with_finite(schema: &Json) -> Json {
    let Json::Object(m) = schema else {
        return schema.clone();
    };
    let mut out = serde_json::Map::new();
    for (k, v) in m {
        let v = match k.as_str() {
            "properties" | "patternProperties" | "definitions" | "$defs" | "dependencies"
            | "dependentSchemas" => match v {
                Json::Object(sub) => Json::Object(
                    sub.iter()
                        .map(|(name, s)| (name.clone(), with_finite(s)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "allOf" | "anyOf" | "oneOf" | "prefixItems" => match v {
                Json::Array(a) => Json::Array(a.iter().map(with_finite).collect()),
                other => with_finite(other),
            },
            "additionalItems"
            | "additionalProperties"
            | "contains"
            | "propertyNames"
            | "not"
            | "if"
            | "then"
            | "else"
            | "unevaluatedItems"
            | "unevaluatedProperties" => with_finite(v),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    if ["type", "const", "enum"].iter().any(|k| m.contains_key(*k)) {
        out.insert(FINITE.into(), Json::Bool(true));
    }
    Json::Object(out)
}

pub(super) fn is_json(value: &Json, inverse: bool, o: &Observed<'_>, out: &str) -> Outcome {
    let Some(parsed) = js::json_parse_js(out) else {
        return verdict(false, inverse, "be valid JSON");
    };
    match value_schema(value, o) {
        Err(e) => Outcome::Error(e),
        Ok(None) => verdict(true, inverse, "be valid JSON"),
        Ok(Some((v, schema, what))) => {
            let errs = js_schema_errors(&v, &schema, &parsed);
            if errs.is_empty() || inverse {
                verdict(errs.is_empty(), inverse, &format!("be {what}"))
            } else {
                Outcome::Verdict(false, format!("output must be {what}: {}", errs.join("; ")))
            }
        }
    }
}

pub(super) fn contains_json(value: &Json, inverse: bool, o: &Observed<'_>, out: &str) -> Outcome {
    let objects = json_objects(out);
    match value_schema(value, o) {
        Err(e) => Outcome::Error(e),
        Ok(None) => verdict(!objects.is_empty(), inverse, "contain a JSON object"),
        Ok(Some((v, schema, what))) => {
            let valid = objects
                .iter()
                .any(|x| js_schema_errors(&v, &schema, x).is_empty());
            verdict(valid, inverse, &format!("contain {what}"))
        }
    }
}
