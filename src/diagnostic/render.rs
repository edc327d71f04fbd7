//! Renderers for diagnostics: `human` (caret snippets via annotate-snippets),
//! `json` (one object per diagnostic, one per line) and `github` (workflow
//! commands that GitHub turns into annotations on the changed lines).

use std::fmt::Write as _;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

use super::{Diagnostic, Severity};

/// Where renderers find the text of a file to quote it.
pub trait Sources {
    fn text(&self, file: &str) -> Option<&str>;
}

impl Sources for std::collections::HashMap<String, String> {
    fn text(&self, file: &str) -> Option<&str> {
        self.get(file).map(String::as_str)
    }
}

impl Sources for std::collections::BTreeMap<String, String> {
    fn text(&self, file: &str) -> Option<&str> {
        self.get(file).map(String::as_str)
    }
}

/// No sources: renderers print locations without snippets.
pub struct NoSources;

impl Sources for NoSources {
    fn text(&self, _file: &str) -> Option<&str> {
        None
    }
}

/// The line `line` (1-based) of `text`, and the byte range of the character at
/// 1-based column `col` within it (clamped to the line).
fn line_and_span(text: &str, line: u32, col: u32) -> Option<(&str, std::ops::Range<usize>)> {
    let src = text
        .lines()
        .nth(usize::try_from(line.checked_sub(1)?).ok()?)?;
    let col = usize::try_from(col.max(1) - 1).ok()?;
    let start = src
        .char_indices()
        .nth(col)
        .map(|(i, _)| i)
        .unwrap_or(src.len());
    // Underline the token that starts here (up to whitespace or punctuation
    // that ends a YAML scalar), at least one character.
    let rest = &src[start..];
    let len = rest
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || matches!(c, ',' | ']' | '}'))
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    // At most 80 characters, ending on a character boundary (a byte cap could
    // end inside an emoji or a CJK character, and the renderer slices there).
    let end = if len == 0 {
        (start + rest.chars().next().map_or(0, char::len_utf8)).min(src.len())
    } else {
        start + rest[..len].char_indices().nth(80).map_or(len, |(i, _)| i)
    };
    Some((src, start..end))
}

/// `path:line:col: code: message`, then a caret snippet, help and related places.
pub fn human(diags: &[Diagnostic], sources: &dyn Sources, color: bool) -> String {
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    let mut out = String::new();
    for d in diags {
        // Errors read `path:line:col: code: message`; warnings say so after the code.
        let sev = if d.severity == Severity::Warning {
            "warning: "
        } else {
            ""
        };
        if d.line > 0 {
            let _ = writeln!(
                out,
                "{}:{}:{}: {}: {}{}",
                d.file, d.line, d.col, d.code, sev, d.message
            );
        } else {
            let _ = writeln!(out, "{}: {}: {}{}", d.file, d.code, sev, d.message);
        }
        let level = match d.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let mut group = Group::with_level(level.clone());
        let mut any = false;
        if let Some((src, span)) = sources
            .text(&d.file)
            .and_then(|t| line_and_span(t, d.line, d.col))
        {
            group = group.element(
                Snippet::source(src)
                    .line_start(d.line as usize)
                    .path(d.file.as_str())
                    .annotation(AnnotationKind::Primary.span(span)),
            );
            any = true;
        }
        for r in &d.related {
            if let Some((src, span)) = sources
                .text(&r.file)
                .and_then(|t| line_and_span(t, r.line, r.col))
            {
                group = group.element(
                    Snippet::source(src)
                        .line_start(r.line as usize)
                        .path(r.file.as_str())
                        .annotation(AnnotationKind::Context.span(span).label(r.message.as_str())),
                );
                any = true;
            } else {
                group = group.element(
                    Level::NOTE.message(format!("{}:{}:{}: {}", r.file, r.line, r.col, r.message)),
                );
                any = true;
            }
        }
        if let Some(help) = &d.help {
            group = group.element(Level::HELP.message(help.as_str()));
            any = true;
        }
        if any {
            out.push_str(&renderer.render(&[group]));
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// One JSON object per line (JSON Lines), stable field order.
pub fn json_lines(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        if let Ok(s) = serde_json::to_string(d) {
            out.push_str(&s);
            out.push('\n');
        }
    }
    out
}

/// Escape data for a workflow command message (actions/toolkit `escapeData`).
pub(crate) fn gh_escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escape a workflow command property (actions/toolkit `escapeProperty`).
pub(crate) fn gh_escape_property(s: &str) -> String {
    gh_escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// `::error file=…,line=…,col=…,title=…::message` lines. GitHub shows at
/// most 10 per level per step; the rest still appear in the log.
pub fn github(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        let cmd = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut msg = d.message.clone();
        if let Some(h) = &d.help {
            msg.push_str("\nhelp: ");
            msg.push_str(h);
        }
        for r in &d.related {
            let _ = write!(msg, "\nsee {}:{}:{}: {}", r.file, r.line, r.col, r.message);
        }
        let _ = writeln!(
            out,
            "::{cmd} file={},line={},col={},title={}::{}",
            gh_escape_property(&d.file),
            d.line.max(1),
            d.col.max(1),
            gh_escape_property(d.code.as_str()),
            gh_escape_data(&msg)
        );
    }
    out
}

/// "3 errors, 1 warning" summary.
pub fn summary(diags: &[Diagnostic]) -> String {
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Code;
    use crate::yaml::Pos;
    use std::collections::HashMap;

    /// Issue 10, point 4: a value of long non-ASCII text after the error's
    /// column used to end the underline inside a character, and the renderer
    /// panicked slicing there.
    #[test]
    fn long_non_ascii_values_render_without_panicking() {
        for line in [
            format!("version: 1.0.0{}", "🚀".repeat(100)),
            format!("id: pack-{}", "🚀".repeat(50)),
            format!("id: {}", "漢".repeat(60)),
            format!("id: e{}", "\u{301}".repeat(40)),
        ] {
            let mut src = HashMap::new();
            src.insert("p.yaml".to_string(), format!("{line}\n"));
            let col = u32::try_from(line.find(": ").map_or(0, |i| i + 2) + 1).unwrap_or(1);
            let d = Diagnostic::error(Code::SchemaPattern, "p.yaml", Pos::new(1, col), "bad value");
            let out = human(&[d], &src, false);
            assert!(out.contains("p.yaml:1:"), "{out}");
        }
    }

    fn sample() -> (Vec<Diagnostic>, HashMap<String, String>) {
        let mut src = HashMap::new();
        src.insert(
            "packs/domains/hr-ops/pack.yaml".to_string(),
            "id: hr-ops-pack\nversion: 1.0.0\ntools:\n  allow: [hris.read, shell.exec]\n"
                .to_string(),
        );
        src.insert(
            "policies/hard-constraints.yaml".to_string(),
            "forbidden_tools:\n  - shell.exec\n".to_string(),
        );
        let d = Diagnostic::error(
            Code::ForbiddenTool,
            "packs/domains/hr-ops/pack.yaml",
            Pos::new(4, 22),
            "tool `shell.exec` is forbidden by the global hard constraints",
        )
        .help("remove `shell.exec` from tools.allow")
        .related(
            "policies/hard-constraints.yaml",
            Pos::new(2, 5),
            "forbidden here",
        );
        (vec![d], src)
    }

    #[test]
    fn human_has_location_line_and_caret() {
        let (d, src) = sample();
        insta::assert_snapshot!(human(&d, &src, false));
    }

    #[test]
    fn github_escapes() {
        let (d, _) = sample();
        insta::assert_snapshot!(github(&d));
    }

    #[test]
    fn json_is_one_object_per_line() {
        let (d, _) = sample();
        let out = json_lines(&d);
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        assert_eq!(v["code"], "constraint/forbidden-tool");
        assert_eq!(v["line"], 4);
        assert_eq!(v["related"][0]["file"], "policies/hard-constraints.yaml");
    }
}
