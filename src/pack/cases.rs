//! Eval cases as promptfoo reads a test file: a test list, or a promptfoo
//! config (`tests` inline or `file://`, `defaultTest` merged into each test,
//! its `prompts` templates for the user message); `vars` of any names,
//! `file://` values relative to the cases file, `{{var}}` in assertion values,
//! `threshold`, `weight`, `metric`, `assert-set` and supported transforms.
//! Several prompts give one case per (test, prompt), ids suffixed `.p1`, `.p2`…
//! List vars expand as promptfoo expands them (one case per combination);
//! CSV test files, chat-format (JSON) prompts and `g-eval` criteria lists
//! are read as promptfoo reads them (see the submodules).
//! What promptfoo would do differently (code in transforms or values,
//! assertion types not implemented) is refused with a diagnostic naming it,
//! never run with another meaning.

use sha2::{Digest, Sha256};

use super::file::Referenced;
use super::read::{parse_checked, parse_prepared};

mod chat;
mod csv;
mod expand;
mod prompts;
mod vars;
use super::*;
use crate::diagnostic::{Code, Diagnostic};
use crate::js::{nunjucks, transform::Transform};
use crate::schema::Kind;
use crate::yaml::{self, Node, Pos};
use prompts::{assertion_templates, csv_tests, json_prompt, looks_like_path, txt_prompts};
use serde_json::Value as Json;
use vars::{rendered_vars, resolve_vars, var_file};

/// What a cases file sets for all its tests.
#[derive(Default)]
struct Suite {
    /// The prompt templates: none (the default user message), one, or
    /// several (promptfoo runs every test once per prompt: one case each).
    templates: Vec<String>,
    defaults: Option<Json>,
    /// Where `defaultTest` is written (the config, or its `file://`), so
    /// that a problem in one of its assertions is reported there, once.
    default_at: Option<(String, Node)>,
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 60 {
            break;
        }
    }
    out.trim_end_matches('-').to_string()
}

fn unsupported(file: &str, pos: Pos, msg: impl Into<String>) -> Diagnostic {
    Diagnostic::error(Code::EvalUnsupported, file, pos, msg)
}

/// How promptfoo reads a `file://` string, which depends on where it is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FileMode {
    /// A prompt: the text as it is (.txt or .md).
    Prompt,
    /// An assertion value in a config's inline test: its
    /// `processFileReference` at run time (.txt trimmed, JSON/YAML parsed,
    /// any other type an error).
    Inline,
    /// An assertion value in a test list file: loaded when the list is read
    /// (its `maybeLoadConfigFromExternalFile`): JSON/YAML parsed, any other
    /// text as it is, untrimmed.
    Listed,
}

/// A `file://` value read as promptfoo reads it in `mode`; code refused.
fn file_value(
    r: &mut Referenced<'_>,
    file: &str,
    pos: Pos,
    reference: &str,
    mode: FileMode,
) -> Option<Json> {
    let rel = &reference["file://".len()..];
    let ext = rel.rsplit('.').next().unwrap_or_default();
    if !matches!(ext, "json" | "yaml" | "yml" | "txt" | "md") {
        r.diags.push(
            unsupported(file, pos, format!("`{reference}`: missionctl reads .txt, .md, .json and .yaml files here and runs no code"))
                .help("put the expected value in a text, JSON or YAML file"),
        );
        return None;
    }
    if mode == FileMode::Inline && ext == "md" {
        // promptfoo's `processFileReference` reads .json, .yaml, .yml and
        // .txt assertion values; others throw "Unsupported file type".
        r.diags.push(
            unsupported(file, pos, format!("`{reference}`: promptfoo reads assertion values of a config's tests from .txt, .json and .yaml files only (it errors with \"Unsupported file type\" on .md)"))
                .help("rename the file to .txt"),
        );
        return None;
    }
    let (_, text) = r.fetch_from(file, rel, pos, MAX_YAML_BYTES)?;
    if matches!(ext, "txt" | "md") {
        let t = if mode == FileMode::Inline {
            crate::js::trim(&text)
        } else {
            &text
        };
        return Some(Json::String(t.to_string()));
    }
    match yaml::parse(&text) {
        Ok(n) => Some(n.to_json()),
        Err(e) => {
            r.diags.push(Diagnostic::error(
                Code::EvalCase,
                file,
                pos,
                format!("`{reference}` is not valid YAML/JSON: {}", e.message),
            ));
            None
        }
    }
}

/// promptfoo's merge of `defaultTest` into a test: vars and options key by
/// key (the test wins), assertions default-first, other fields overridden.
fn merged(defaults: Option<&Json>, test: Json) -> Json {
    let Some(Json::Object(d)) = defaults else {
        return test;
    };
    let Json::Object(mut t) = test else {
        return test;
    };
    for key in ["vars", "options", "metadata"] {
        if let Some(Json::Object(dv)) = d.get(key) {
            let mut m = dv.clone();
            if let Some(Json::Object(tv)) = t.get(key) {
                m.extend(tv.clone());
            }
            t.insert(key.into(), Json::Object(m));
        }
    }
    if let Some(Json::Array(da)) = d.get("assert") {
        let mut a = da.clone();
        if let Some(Json::Array(ta)) = t.get("assert") {
            a.extend(ta.iter().cloned());
        }
        t.insert("assert".into(), Json::Array(a));
    }
    if let (Some(th), false) = (d.get("threshold"), t.contains_key("threshold")) {
        t.insert("threshold".into(), th.clone());
    }
    Json::Object(t)
}

/// An assertion value as promptfoo renders it: `file://` read, `{{var}}`
/// expanded in strings and in the strings of a list.
fn render_value(
    v: &Json,
    vars: &Json,
    r: &mut Referenced<'_>,
    file: &str,
    pos: Pos,
    mode: FileMode,
) -> Option<Json> {
    let one = |s: &str, r: &mut Referenced<'_>| -> Option<Json> {
        let loaded;
        let s = if s.starts_with("file://") {
            match file_value(r, file, pos, s, mode)? {
                // Loaded with the list, the text is then a template.
                Json::String(t) if mode == FileMode::Listed => {
                    loaded = t;
                    loaded.as_str()
                }
                other => return Some(other),
            }
        } else {
            s
        };
        match nunjucks::render(s, vars) {
            Ok(t) => Some(Json::String(t)),
            Err(e) => {
                r.diags.push(unsupported(file, pos, e));
                None
            }
        }
    };
    match v {
        Json::String(s) => one(s, r),
        Json::Array(a) => a
            .iter()
            .map(|x| match x {
                Json::String(s) => one(s, r),
                other => Some(other.clone()),
            })
            .collect::<Option<Vec<_>>>()
            .map(Json::Array),
        other => Some(other.clone()),
    }
}

fn render_assertions(
    a: &mut AssertSpec,
    vars: &Json,
    r: &mut Referenced<'_>,
    file: &str,
    pos: Pos,
    mode: FileMode,
) {
    if let Some(v) = &a.value {
        a.value = render_value(v, vars, r, file, pos, mode);
    }
    for c in &mut a.children {
        render_assertions(c, vars, r, file, pos, mode);
    }
    // Decided once, here: `check` reports it on every run without re-deriving it.
    a.problem = super::assertion::problem(a);
    if let Some(p) = a.problem.clone() {
        r.diags.push(
            unsupported(file, pos, p)
                .help("use one of the supported types listed, or remove the assertion"),
        );
    }
}

/// The user message of a case.
fn user_message(vars: &Json, template: Option<&str>) -> Result<String, String> {
    if let Some(t) = template {
        return nunjucks::render(t, &rendered_vars(vars)?);
    }
    let Json::Object(m) = vars else {
        return Ok(String::new());
    };
    let text = |v: &Json| crate::js::string_of(v);
    if let Some(input) = m.get("input") {
        let mut s = text(input);
        for (k, v) in m.iter().filter(|(k, _)| *k != "input") {
            s.push_str(&format!("\n{k}: {}", text(v)));
        }
        return Ok(s);
    }
    match m.len() {
        0 => Ok(String::new()),
        1 => Ok(m.values().next().map(text).unwrap_or_default()),
        _ => Err(format!(
            "this case has vars {} and no `input`: set `eval.user_template` in the pack (e.g. \"{{{{{}}}}}\") or a `prompts` template in the cases file",
            m.keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
            m.keys().next().map(String::as_str).unwrap_or("question")
        )),
    }
}

/// One test of a cases file, with its id from its content: `id`, else the
/// slug of its description, else `case-` and 10 hex digits of the digest of
/// its canonical `vars` (of the whole test when it has none), never its
/// position, which an inserted case shifts.
fn case_of(
    item: &Node,
    file: &str,
    listed: bool,
    suite: &Suite,
    r: &mut Referenced<'_>,
) -> Vec<EvalCase> {
    let test = merged(suite.defaults.as_ref(), item.to_json());
    let keep = test.pointer("/options/disableVarExpansion") == Some(&Json::Bool(true));
    let combos = match test.get("vars") {
        Some(Json::Object(m)) if !keep => expand::combinations(m),
        _ => return one_case(item, file, listed, suite, r, test, false),
    };
    let expanded = combos.len() > 1;
    let mut out = Vec::new();
    for vars in combos {
        let mut t = test.clone();
        t["vars"] = Json::Object(vars);
        out.extend(one_case(item, file, listed, suite, r, t, expanded));
    }
    out
}

/// One combination of a test's vars as a case (or one per prompt). A test
/// whose list vars expanded (`expanded`) and that is known by its `id` or
/// description gets the digest of its vars after that id.
fn one_case(
    item: &Node,
    file: &str,
    listed: bool,
    suite: &Suite,
    r: &mut Referenced<'_>,
    test: Json,
    expanded: bool,
) -> Vec<EvalCase> {
    let mode = if listed {
        FileMode::Listed
    } else {
        FileMode::Inline
    };
    let pos = item.pos;
    let mut vars = test
        .get("vars")
        .cloned()
        .unwrap_or(Json::Object(Default::default()));
    if let Json::Object(m) = &mut vars {
        for (k, v) in m.iter_mut() {
            if let Json::String(s) = v
                && s.starts_with("file://")
            {
                let at = item.pos_at(&format!("/vars/{k}"));
                match var_file(r, file, at, &s.clone()) {
                    Some(x) => *v = x,
                    None => return Vec::new(),
                }
            }
        }
    }
    resolve_vars(&mut vars);
    let description = test
        .get("description")
        .and_then(Json::as_str)
        .map(String::from);
    // A test without vars is known by its whole content (its
    // assertions, options…): var-less tests differ there.
    let basis = match &vars {
        Json::Object(m) if m.is_empty() => &test,
        _ => &vars,
    };
    let digest = hex::encode(Sha256::digest(crate::resolve::canonical_json(basis)));
    let id = match test
        .get("id")
        .and_then(Json::as_str)
        .map(String::from)
        .or_else(|| description.as_deref().map(slug).filter(|s| !s.is_empty()))
    {
        Some(named) if expanded => format!("{named}.{}", &digest[..8]),
        Some(named) => named,
        None => format!("case-{}", &digest[..10]),
    };
    let mut asserts: Vec<AssertSpec> = test
        .get("assert")
        .and_then(Json::as_array)
        .map(|a| a.iter().cloned().map(AssertSpec::new).collect())
        .unwrap_or_default();
    // The first assertions are `defaultTest`'s (merged default-first).
    let defaults = suite
        .defaults
        .as_ref()
        .and_then(|d| d.get("assert"))
        .and_then(Json::as_array)
        .map_or(0, Vec::len);
    for (i, a) in asserts.iter_mut().enumerate() {
        let (at_file, at) = match &suite.default_at {
            Some((f, n)) if i < defaults => (f.as_str(), n.pos_at(&format!("/assert/{i}"))),
            _ => (
                file,
                item.pos_at(&format!("/assert/{}", i - defaults.min(i))),
            ),
        };
        render_assertions(a, &vars, r, at_file, at, mode);
    }
    let transform = match test.pointer("/options/transform").and_then(Json::as_str) {
        None => None,
        Some(t) => match Transform::parse(t) {
            Ok(t) => Some(t),
            Err(e) => {
                r.diags
                    .push(unsupported(file, item.pos_at("/options/transform"), e));
                None
            }
        },
    };
    let templates: Vec<Option<&str>> = if suite.templates.is_empty() {
        vec![None]
    } else {
        suite.templates.iter().map(|t| Some(t.as_str())).collect()
    };
    let several = templates.len() > 1;
    let mut out = Vec::new();
    for (i, template) in templates.into_iter().enumerate() {
        let chat = template.map(|t| chat::chat_messages(t, &vars));
        let (user, messages) = match chat {
            Some(Err(e)) => {
                r.diags.push(unsupported(file, pos, e));
                (String::new(), Vec::new())
            }
            Some(Ok(Some(turns))) => (chat::last_user(&turns), turns),
            _ => match user_message(&vars, template) {
                Ok(u) => (u, Vec::new()),
                Err(e) => {
                    r.diags
                        .push(Diagnostic::error(Code::EvalCase, file, pos, e));
                    (String::new(), Vec::new())
                }
            },
        };
        out.push(EvalCase {
            id: if several {
                format!("{id}.p{}", i + 1)
            } else {
                id.clone()
            },
            description: description.clone(),
            vars: vars.clone(),
            asserts: asserts.clone(),
            threshold: test.get("threshold").and_then(Json::as_f64),
            transform: transform.clone(),
            user,
            messages,
            file: file.to_string(),
            line: pos.line,
        });
    }
    out
}

/// `defaultTest: file://…` as promptfoo reads it: a YAML or JSON mapping
/// relative to the config, checked as an inline `defaultTest` would be.
fn default_test_file(
    r: &mut Referenced<'_>,
    path: &str,
    pos: Pos,
    s: &str,
) -> Option<(String, Node)> {
    let rel = s.strip_prefix("file://")?;
    if !(rel.ends_with(".yaml") || rel.ends_with(".yml") || rel.ends_with(".json")) {
        r.diags.push(unsupported(path, pos, format!("`defaultTest: {s}`: missionctl reads defaults from a YAML or JSON file (not a script)")));
        return None;
    }
    let (file, text) = r.fetch_from(path, rel, pos, MAX_YAML_BYTES)?;
    let node = match yaml::parse(&text) {
        Ok(n) => n,
        Err(e) => {
            r.diags.push(Diagnostic::error(
                Code::EvalCase,
                &file,
                Pos::WHOLE_FILE,
                format!("`defaultTest: {s}` is not valid YAML/JSON: {}", e.message),
            ));
            return None;
        }
    };
    let json = node.to_json();
    let wrapped = serde_json::json!({ "defaultTest": json });
    let problems = crate::schema::check_json(Kind::EvalCases, &wrapped);
    for p in &problems {
        let inner = p.pointer.strip_prefix("/defaultTest").unwrap_or_default();
        let mut d = Diagnostic::error(p.code, &file, node.pos_at(inner), p.message.clone());
        d.help = p.help.clone();
        r.diags.push(d);
    }
    problems.is_empty().then(|| (file.clone(), node))
}

/// A promptfoo config used as a cases file: its template, its defaults, and
/// its tests (inline, or `file://` test lists read relative to it).
fn config_tests(
    cnode: &Node,
    path: &str,
    r: &mut Referenced<'_>,
    suite: &mut Suite,
) -> Vec<(String, Node, bool)> {
    if let Some(p) = cnode.get("prompts") {
        // promptfoo's forms: a string, a list of strings or of `{raw|id,
        // label}` objects, or a map from template (or path) to label.
        let list: Vec<(&str, Pos)> = match &p.value {
            yaml::Value::Seq(items) => items
                .iter()
                .filter_map(|one| {
                    one.as_str()
                        .or_else(|| one.get("raw").and_then(Node::as_str))
                        .or_else(|| one.get("id").and_then(Node::as_str))
                        .map(|s| (s, one.pos))
                })
                .collect(),
            yaml::Value::Map(entries) => entries
                .iter()
                .map(|e| (e.key.as_str(), e.key_pos))
                .collect(),
            _ => p.as_str().map(|s| (s, p.pos)).into_iter().collect(),
        };
        suite.templates.clear();
        for (s, pos) in list {
            // promptfoo's `maybeFilePath`: a prompt that looks like a path
            // is a file, `file://` or not.
            let reference = if s.starts_with("file://") {
                Some(s.to_string())
            } else {
                looks_like_path(s).then(|| format!("file://{s}"))
            };
            if let Some(reference) = reference {
                let rel = &reference["file://".len()..];
                if rel.ends_with(".json") {
                    // promptfoo's `processJsonFile`: the text, a chat prompt.
                    if let Some(t) = json_prompt(r, path, pos, s, rel) {
                        match chat::check(&t) {
                            Ok(()) => suite.templates.push(t),
                            Err(e) => r.diags.push(unsupported(path, pos, format!("`{s}`: {e}"))),
                        }
                    }
                    continue;
                }
                if !(rel.ends_with(".txt") || rel.ends_with(".md")) {
                    r.diags.push(unsupported(path, pos, format!("`{s}`: prompts are read from .txt, .md and .json files (not scripts, nor chat YAML, whose messages carry provider-specific parts)")));
                    continue;
                }
                if let Some(Json::String(t)) =
                    file_value(r, path, pos, &reference, FileMode::Prompt)
                {
                    if rel.ends_with(".txt") {
                        // promptfoo's `processTxtFile`: one prompt per part
                        // between lines that are `---`, each trimmed.
                        suite.templates.extend(txt_prompts(&t));
                    } else {
                        suite.templates.push(t);
                    }
                }
            } else {
                match chat::check(s) {
                    Ok(()) => suite.templates.push(s.to_string()),
                    Err(e) => r.diags.push(unsupported(path, pos, e)),
                }
            }
        }
    }
    suite.default_at = match cnode.get("defaultTest") {
        Some(d) => match d.as_str() {
            Some(s) => default_test_file(r, path, d.pos, s),
            None => Some((path.to_string(), d.clone())),
        },
        None => None,
    };
    suite.defaults = suite.default_at.as_ref().map(|(_, n)| n.to_json());
    let mut out = Vec::new();
    let Some(tests) = cnode.get("tests") else {
        r.diags.push(Diagnostic::error(
            Code::EvalCase,
            path,
            Pos::WHOLE_FILE,
            "a promptfoo config without `tests`",
        ));
        return out;
    };
    let entries: Vec<&Node> = match &tests.value {
        yaml::Value::Seq(items) => items.iter().collect(),
        _ => vec![tests],
    };
    for e in entries {
        match e.as_str() {
            Some(s) if s.starts_with("file://") => {
                let rel = &s["file://".len()..];
                if rel.ends_with(".csv") {
                    out.extend(csv_tests(r, path, e.pos, rel));
                    continue;
                }
                if !(rel.ends_with(".yaml") || rel.ends_with(".yml") || rel.ends_with(".json")) {
                    r.diags.push(unsupported(path, e.pos, format!("`{s}`: missionctl reads test lists from YAML, JSON and CSV files (not scripts or globs)")));
                    continue;
                }
                let Some((file, text)) = r.fetch_from(path, rel, e.pos, MAX_YAML_BYTES) else {
                    continue;
                };
                let Some((n, _)) = parse_checked(Kind::EvalCases, &file, &text, r.diags) else {
                    continue;
                };
                if let yaml::Value::Seq(items) = n.value {
                    out.extend(items.into_iter().map(|i| (file.clone(), i, true)));
                }
            }
            _ => out.push((path.to_string(), e.clone(), false)),
        }
    }
    out
}

/// The eval cases of every referenced cases file, with duplicate ids
/// reported with both places.
pub(super) fn read_cases(pack: &Pack, node: &Node, r: &mut Referenced<'_>) -> Vec<EvalCase> {
    let mut cases: Vec<EvalCase> = Vec::new();
    for (i, c) in pack.eval.cases.iter().enumerate() {
        let pos = node.pos_at(&format!("/eval/cases/{i}"));
        let Some((path, t)) = r.fetch(c, pos, MAX_YAML_BYTES) else {
            continue;
        };
        let Some((cnode, _)) =
            parse_prepared(Kind::EvalCases, &path, &t, r.diags, assertion_templates)
        else {
            continue;
        };
        let mut suite = Suite {
            templates: pack.eval.user_template.iter().cloned().collect(),
            defaults: None,
            default_at: None,
        };
        let before = r.diags.len();
        // A test list is read as promptfoo reads `tests: file://list.yaml`.
        let tests: Vec<(String, Node, bool)> = match &cnode.value {
            yaml::Value::Seq(items) => items
                .iter()
                .map(|n| (path.clone(), n.clone(), true))
                .collect(),
            yaml::Value::Map(_) => config_tests(&cnode, &path, r, &mut suite),
            _ => continue,
        };
        for (file, item, listed) in &tests {
            for case in case_of(item, file, *listed, &suite, r) {
                if let Some(prev) = cases.iter().find(|c| c.id == case.id) {
                    r.diags.push(
                    Diagnostic::error(
                        Code::DuplicateId,
                        file,
                        item.pos,
                        format!("eval case id `{}` is used twice in this pack", case.id),
                    )
                    .related(&prev.file, Pos::new(prev.line, 1), "first used here")
                    .help("give each case a distinct `id:` (or a distinct description or vars) so champion and challenger results pair up"),
                );
                    continue;
                }
                cases.push(case);
            }
        }
        // A problem every test shares (a `defaultTest` assertion, a
        // prompt) is reported once.
        let mut seen: Vec<Diagnostic> = Vec::new();
        for d in r.diags.split_off(before) {
            if !seen.contains(&d) {
                seen.push(d);
            }
        }
        r.diags.extend(seen);
    }
    cases
}
