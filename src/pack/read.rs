//! Reading one file of a pack repository: bytes to text (UTF-8, with the
//! position of the first bad byte), text to a schema-checked YAML tree, the
//! tree to a typed document; every failure a diagnostic at the file, or at
//! the place that referenced it.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Doc, MAX_YAML_BYTES};
use crate::diagnostic::{Code, Diagnostic};
use crate::git::{ReadError, Tree};
use crate::schema::{self, Kind};
use crate::yaml::{self, Node, Pos};

/// The file as text, or the position (1-based line and column) of its first
/// byte that is not UTF-8.
pub(super) fn text_of(bytes: Vec<u8>) -> Result<String, Pos> {
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // `good` is valid UTF-8 by construction.
        let before = std::str::from_utf8(good).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Pos::new(
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(col).unwrap_or(u32::MAX),
        )
    })
}

/// Read a file for loading, turning every failure into a diagnostic at `at`
/// (the place that referenced it) or at the file itself.
pub(super) fn read_text(
    tree: &Tree,
    repo: Option<&crate::git::Repo>,
    path: &str,
    cap: u64,
    diags: &mut Vec<Diagnostic>,
    at: (&str, Pos),
) -> Option<String> {
    match tree.read(path, cap, repo) {
        Ok(bytes) => match text_of(bytes) {
            Ok(t) => Some(t),
            Err(at_byte) => {
                diags.push(
                    Diagnostic::error(
                        Code::FileNotText,
                        path,
                        at_byte,
                        "file is not UTF-8 text: the first byte that is not UTF-8 is here",
                    )
                    .help("save the file as UTF-8"),
                );
                None
            }
        },
        Err(e) => {
            let (code, message) = match e {
                ReadError::Missing => (Code::RefMissing, format!("`{path}` does not exist")),
                ReadError::NotFile => (Code::RefNotFile, format!("`{path}` is not a regular file")),
                ReadError::Io(e) => (Code::Io, format!("cannot read `{path}`: {e}")),
                ReadError::TooLarge(size) => (
                    Code::FileTooLarge,
                    format!(
                        "`{path}` is {size} bytes; the limit for this kind of file is {cap} bytes"
                    ),
                ),
            };
            // Reported at the file itself (no place referenced it): a
            // whole-file problem on a file that exists is at its first line.
            let pos = if at.1 == Pos::UNKNOWN && code != Code::RefMissing {
                Pos::WHOLE_FILE
            } else {
                at.1
            };
            let mut d = Diagnostic::error(code, at.0, pos, message);
            if code == Code::FileTooLarge {
                d.help = Some(
                    "split the content or move large reference material out of the pack".into(),
                );
            }
            diags.push(d);
            None
        }
    }
}

/// Parse YAML text, validate it against `kind`, and return the tree and JSON
/// when both succeed.
pub(crate) fn parse_checked(
    kind: Kind,
    file: &str,
    text: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Node, serde_json::Value)> {
    parse_prepared(kind, file, text, diags, |_| {})
}

/// [`parse_checked`] with `prepare` applied to the tree before the schema
/// check (promptfoo's own rewrites, such as `$ref` templates).
pub(crate) fn parse_prepared(
    kind: Kind,
    file: &str,
    text: &str,
    diags: &mut Vec<Diagnostic>,
    prepare: impl FnOnce(&mut Node),
) -> Option<(Node, serde_json::Value)> {
    let mut node = match yaml::parse(text) {
        Ok(n) => n,
        Err(e) => {
            let code = if e.budget {
                Code::YamlBudget
            } else {
                Code::YamlSyntax
            };
            let mut d = Diagnostic::error(code, file, e.pos, e.message);
            d.help = Some(if e.budget {
                "the document expands beyond missionctl's parser limits (aliases, nesting or size); write it out plainly".into()
            } else {
                "fix the YAML syntax at this position".into()
            });
            diags.push(d);
            return None;
        }
    };
    prepare(&mut node);
    let json = node.to_json();
    let problems = schema::check_node(kind, file, &node, &json);
    if problems.is_empty() {
        Some((node, json))
    } else {
        diags.extend(problems);
        None
    }
}

pub(super) fn load_doc<T: serde::de::DeserializeOwned>(
    tree: &Tree,
    repo: Option<&crate::git::Repo>,
    file: &str,
    kind: Kind,
    sources: &mut HashMap<String, Arc<str>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Doc<T>> {
    if !tree.contains(file) {
        diags.push(
            Diagnostic::error(
                Code::FileMissing,
                file,
                Pos::UNKNOWN,
                format!("`{file}` is missing"),
            )
            .help("every pack repository needs it; `missionctl init` writes a complete example"),
        );
        return None;
    }
    let text = read_text(
        tree,
        repo,
        file,
        MAX_YAML_BYTES,
        diags,
        (file, Pos::UNKNOWN),
    )?;
    let arc: Arc<str> = Arc::from(text);
    sources.insert(file.to_string(), arc.clone());
    let (node, json) = parse_checked(kind, file, &arc, diags)?;
    let value = typed(file, &node, json, diags)?;
    Some(Doc {
        file: file.to_string(),
        node,
        value,
    })
}

/// The schema-checked JSON of `node` as `T`; a mismatch the schema let
/// through is reported at the node.
pub(super) fn typed<T: serde::de::DeserializeOwned>(
    file: &str,
    node: &Node,
    json: serde_json::Value,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    match serde_json::from_value::<T>(json) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.push(Diagnostic::error(
                Code::SchemaValue,
                file,
                node.pos,
                e.to_string(),
            ));
            None
        }
    }
}
