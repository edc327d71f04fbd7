//! The JSON assertions (`is-json`, `contains-json`) and what they share
//! with validation: promptfoo's JSON extraction, Ajv's formats, schema
//! errors, and the verdict of one check.

use super::*;

/// promptfoo's `extractJsonObjects`: from each `{`, the span up to its
/// matching `}` (braces counted naively, a short span closed), read as YAML
/// flow with `//` comments turned into `#`; objects only.
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
                match crate::yaml::parse(&js::slash_comments_to_hash(&text)).map(|n| n.to_json()) {
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

/// A JSON schema from an assertion value: an object, or YAML text (as
/// promptfoo's `loadYaml(value)`), compiled as Ajv does (draft-07, formats).
pub(super) fn schema_of(v: &Json) -> Result<jsonschema::Validator, String> {
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
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| format!("the schema is invalid: {e}"))
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

/// The schema a `value` names: promptfoo's (object or YAML text) or
/// missionctl's `contract:NAME`.
fn value_schema(
    value: &Json,
    o: &Observed<'_>,
) -> Result<Option<(jsonschema::Validator, String)>, String> {
    match value {
        Json::String(s) if s.starts_with("contract:") => {
            let name = &s["contract:".len()..];
            match o.contracts.get(name).and_then(|c| c.schema.as_ref()) {
                Some(sc @ Json::Bool(_)) => jsonschema::options()
                    .build(sc)
                    .map(|v| Some((v, format!("JSON matching contract `{name}`"))))
                    .map_err(|e| format!("contract `{name}`: {e}")),
                Some(sc) => schema_of(sc)
                    .map(|v| Some((v, format!("JSON matching contract `{name}`"))))
                    .map_err(|e| format!("contract `{name}`: {e}")),
                None => Err(format!("contract `{name}` is not defined on this chain")),
            }
        }
        v if !js::truthy(Some(v)) => Ok(None),
        v => schema_of(v).map(|s| Some((s, "JSON matching the schema".to_string()))),
    }
}

pub(super) fn is_json(value: &Json, inverse: bool, o: &Observed<'_>, out: &str) -> Outcome {
    let Some(parsed) = js::json_parse(out) else {
        return verdict(false, inverse, "be valid JSON");
    };
    match value_schema(value, o) {
        Err(e) => Outcome::Verdict(false, e),
        Ok(None) => verdict(true, inverse, "be valid JSON"),
        Ok(Some((v, what))) => {
            let errs = schema_errors(&v, &parsed);
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
        Err(e) => Outcome::Verdict(false, e),
        Ok(None) => verdict(!objects.is_empty(), inverse, "contain a JSON object"),
        Ok(Some((v, what))) => {
            let valid = objects.iter().any(|x| v.is_valid(x));
            verdict(valid, inverse, &format!("contain {what}"))
        }
    }
}
