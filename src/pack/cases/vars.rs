//! A test's vars as promptfoo's `renderPrompt` prepares them: `file://`
//! vars loaded, one trailing newline dropped, `{{name}}` references between
//! vars replaced, and the vars a prompt template sees rendered.

use serde_json::Value as Json;

use super::{MAX_YAML_BYTES, unsupported};
use crate::diagnostic::{Code, Diagnostic};
use crate::js::nunjucks;
use crate::pack::file::Referenced;
use crate::yaml::{self, Pos};

/// A `file://` var as promptfoo's `renderPrompt` loads it: YAML as its JSON
/// text, any other text file trimmed (a string either way); code refused.
pub(super) fn var_file(
    r: &mut Referenced<'_>,
    file: &str,
    pos: Pos,
    reference: &str,
) -> Option<Json> {
    let rel = &reference["file://".len()..];
    let ext = rel.rsplit('.').next().unwrap_or_default();
    if !matches!(ext, "json" | "yaml" | "yml" | "txt" | "md") {
        r.diags.push(
            unsupported(file, pos, format!("`{reference}`: missionctl reads vars from .txt, .md, .json and .yaml files and runs no code"))
                .help("put the value in a text, JSON or YAML file"),
        );
        return None;
    }
    let (_, text) = r.fetch_from(file, rel, pos, MAX_YAML_BYTES)?;
    if matches!(ext, "yaml" | "yml") {
        return match yaml::parse(&text) {
            Ok(n) => Some(Json::String(crate::js::stringify(&n.to_json()))),
            Err(e) => {
                r.diags.push(Diagnostic::error(
                    Code::EvalCase,
                    file,
                    pos,
                    format!("`{reference}` is not valid YAML: {}", e.message),
                ));
                None
            }
        };
    }
    Some(Json::String(crate::js::trim(&text).to_string()))
}

/// What promptfoo's `renderPrompt` does to a test's vars before anything
/// reads them: one trailing newline dropped from every string var, then
/// `{{name}}` references between vars replaced (its `resolveVariables`:
/// the first reference of each var per pass, at most five passes).
pub(super) fn resolve_vars(vars: &mut Json) {
    let Json::Object(m) = vars else { return };
    for v in m.values_mut() {
        if let Json::String(s) = v
            && s.ends_with('\n')
        {
            s.pop();
        }
    }
    let keys: Vec<String> = m.keys().cloned().collect();
    for _ in 0..5 {
        let mut resolved = true;
        for k in &keys {
            let Some(Json::String(value)) = m.get(k) else {
                continue;
            };
            let Some((start, end, name)) = first_reference(value) else {
                continue;
            };
            let Some(with) = m.get(name).map(crate::js::string_of) else {
                continue;
            };
            let next = format!(
                "{}{}{}",
                &value[..start],
                crate::js::replacement(&with, value, start, end),
                &value[end..]
            );
            m.insert(k.clone(), Json::String(next));
            resolved = false;
        }
        if resolved {
            break;
        }
    }
}

/// The first match of `/\{\{\s*(\w+)\s*\}\}/` in `s`: its span and name.
fn first_reference(s: &str) -> Option<(usize, usize, &str)> {
    let mut from = 0;
    while let Some(i) = s[from..].find("{{").map(|i| i + from) {
        let rest = &s[i + 2..];
        let t = rest.trim_start_matches(crate::js::is_space);
        let name_len = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(t.len());
        if name_len > 0 {
            let after = t[name_len..].trim_start_matches(crate::js::is_space);
            if after.starts_with("}}") {
                let end = s.len() - after.len() + 2;
                let name_start = s.len() - t.len();
                return Some((i, end, &s[name_start..name_start + name_len]));
            }
        }
        from = i + 1;
    }
    None
}

/// The vars the prompt template sees: each string var that references only
/// defined vars rendered with them (promptfoo's `renderedVars`); one with a
/// partial tag stays literal (its `autoWrapRawIfPartialNunjucks`).
pub(super) fn rendered_vars(vars: &Json) -> Result<Json, String> {
    let Json::Object(m) = vars else {
        return Ok(vars.clone());
    };
    let mut out = m.clone();
    for (k, v) in m {
        let Json::String(s) = v else { continue };
        // promptfoo renders every string var: the one thing plain text can
        // fail on is a stray comment end.
        if s.contains("#}") {
            return Err(format!(
                "var `{k}`: {}",
                nunjucks::render(s, vars).err().unwrap_or_default()
            ));
        }
        if !(s.contains("{{") || s.contains("{%") || s.contains("{#"))
            || nunjucks::has_partial_tag(s)
            || nunjucks::references_undefined(s, vars)
        {
            continue;
        }
        out.insert(k.clone(), Json::String(nunjucks::render(s, vars)?));
    }
    Ok(Json::Object(out))
}
