//! What promptfoo does to a config's prompts, assertions and test files
//! before reading tests: prompt strings that are paths, `.txt` prompt files
//! with several prompts, `.json` chat prompt files, `$ref` assertion
//! templates, CSV test files.

use super::{MAX_YAML_BYTES, unsupported};
use crate::pack::file::Referenced;
use crate::yaml::{self, Node, Pos};

/// promptfoo's `maybeFilePath` for a prompt string: no newline, and a
/// path separator, a glob or an extension of two or three characters.
pub(super) fn looks_like_path(s: &str) -> bool {
    let units: Vec<u16> = s.encode_utf16().collect();
    let dot_at = |back: usize| units.len() >= back && units[units.len() - back] == u16::from(b'.');
    !s.contains('\n') && (s.contains(['/', '\\', '*']) || dot_at(3) || dot_at(4))
}

/// The prompts of a `.txt` prompt file as promptfoo's `processTxtFile`
/// splits them: at lines that are `---` (once trimmed), each part trimmed,
/// empty parts dropped.
pub(super) fn txt_prompts(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf: Vec<&str> = Vec::new();
    let mut flush = |buf: &mut Vec<&str>| {
        let raw = crate::js::trim(&buf.join("\n")).to_string();
        if !raw.is_empty() {
            out.push(raw);
        }
        buf.clear();
    };
    for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if crate::js::trim(line) == "---" {
            flush(&mut buf);
        } else {
            buf.push(line);
        }
    }
    flush(&mut buf);
    out
}

/// promptfoo's `assertionTemplates`: each `{$ref: '#/assertionTemplates/NAME'}`
/// in `tests` or `defaultTest` replaced by the template (at the `$ref`'s
/// position); the templates themselves are then dropped from the config.
pub(super) fn assertion_templates(root: &mut Node) {
    let yaml::Value::Map(entries) = &mut root.value else {
        return;
    };
    let Some(i) = entries.iter().position(|e| e.key == "assertionTemplates") else {
        return;
    };
    let templates = entries.remove(i).value;
    fn walk(n: &mut Node, templates: &Node) {
        let target = n
            .get("$ref")
            .and_then(Node::as_str)
            .and_then(|r| r.strip_prefix("#/assertionTemplates/"))
            .and_then(|name| templates.get(name))
            .cloned();
        if let Some(mut t) = target {
            t.pos = n.pos;
            *n = t;
            return;
        }
        match &mut n.value {
            yaml::Value::Seq(items) => items.iter_mut().for_each(|x| walk(x, templates)),
            yaml::Value::Map(es) => es.iter_mut().for_each(|e| walk(&mut e.value, templates)),
            _ => {}
        }
    }
    for e in entries.iter_mut() {
        if e.key == "tests" || e.key == "defaultTest" {
            walk(&mut e.value, &templates);
        }
    }
}

/// A `.json` prompt file as promptfoo's `processJsonFile` reads it: its
/// text, which renders as a chat-format prompt when it is JSON. A
/// `file://` string inside (which promptfoo would load in its place) is
/// refused.
pub(super) fn json_prompt(
    r: &mut Referenced<'_>,
    path: &str,
    pos: Pos,
    s: &str,
    rel: &str,
) -> Option<String> {
    let (_, text) = r.fetch_from(path, rel, pos, MAX_YAML_BYTES)?;
    fn has_file_ref(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(x) => x.starts_with("file://"),
            serde_json::Value::Array(a) => a.iter().any(has_file_ref),
            serde_json::Value::Object(m) => m.values().any(has_file_ref),
            _ => false,
        }
    }
    if crate::js::json_parse(&text).is_some_and(|v| has_file_ref(&v)) {
        r.diags.push(unsupported(path, pos, format!("`{s}`: a `file://` reference inside a JSON prompt file is not supported (write the text into the prompt)")));
        return None;
    }
    Some(text.to_string())
}

/// The tests of a CSV test file (see [`super::csv`]), each a node at its
/// row's line, checked as a test list is; a file promptfoo cannot read is
/// an error at the reference.
pub(super) fn csv_tests(
    r: &mut Referenced<'_>,
    path: &str,
    pos: Pos,
    rel: &str,
) -> Vec<(String, Node, bool)> {
    let Some((file, text)) = r.fetch_from(path, rel, pos, MAX_YAML_BYTES) else {
        return Vec::new();
    };
    let rows = match super::csv::tests(&text) {
        Ok(rows) => rows,
        Err(e) => {
            r.diags.push(crate::diagnostic::Diagnostic::error(
                crate::diagnostic::Code::EvalCase,
                path,
                pos,
                format!("`file://{rel}` cannot be read as promptfoo reads CSV tests: {e}"),
            ));
            return Vec::new();
        }
    };
    let list = Node {
        pos: Pos::WHOLE_FILE,
        value: yaml::Value::Seq(
            rows.iter()
                .map(|(line, t)| super::csv::node_of(t, Pos::new(*line, 1)))
                .collect(),
        ),
    };
    let json = list.to_json();
    let problems = crate::schema::check_node(crate::schema::Kind::EvalCases, &file, &list, &json);
    if !problems.is_empty() {
        r.diags.extend(problems);
        return Vec::new();
    }
    let yaml::Value::Seq(items) = list.value else {
        return Vec::new();
    };
    // Assertion values are read at run time, as in a config's own tests.
    items
        .into_iter()
        .map(|n| (file.clone(), n, false))
        .collect()
}
