//! What promptfoo does to a config's prompts and assertions before reading
//! tests: prompt strings that are paths, `.txt` prompt files with several
//! prompts, `$ref` assertion templates.

use crate::yaml::{self, Node};

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
