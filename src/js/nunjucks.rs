//! The part of promptfoo's Nunjucks templating that test files use in
//! values and prompts: `{{ name }}` and `{{ name.field }}`, rendered as
//! Nunjucks renders them (no autoescape, a missing variable is empty).
//! Written by hand because only this subset is accepted: tags (`{% %}`),
//! filters other than promptfoo's `load` (its `JSON.parse`), other
//! expressions and whitespace control are refused with an error rather than
//! rendered differently.

use serde_json::Value as Json;

/// Render `template` with `vars`.
pub fn render(template: &str, vars: &Json) -> Result<String, String> {
    if let Some(at) = template.find("{%").or_else(|| template.find("{#")) {
        return Err(format!(
            "`{}` uses a Nunjucks tag or comment; missionctl supports only `{{{{ var }}}}` substitution",
            &template[at..(at + 12).min(template.len())]
        ));
    }
    if template.contains("#}") {
        return Err(
            "`#}` outside a comment: Nunjucks fails on it (\"unexpected end of comment\"), and so does promptfoo's rendering of this test; write `# }` or remove it".into(),
        );
    }
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("an unclosed `{{` in a template".into());
        };
        let expr = after[..end].trim();
        let value = match Expr::parse(expr) {
            Some(e) => e.eval(vars, &after[..end])?,
            None => {
                return Err(format!(
                    "`{{{{{}}}}}` is a Nunjucks expression missionctl does not evaluate; supported: `{{{{ var }}}}`, `{{{{ var.field }}}}` and promptfoo's `load` filter (`{{{{ (var | load).field }}}}`)",
                    &after[..end]
                ));
            }
        };
        out.push_str(&match value {
            None | Some(Json::Null) => String::new(),
            Some(x) => crate::js::string_of(&x),
        });
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The expressions accepted between `{{` and `}}`: a name, member access
/// (`a.b`), parentheses, and the `load` filter.
enum Expr {
    Name(String),
    Member(Box<Expr>, String),
    Load(Box<Expr>),
}

impl Expr {
    /// `expr := term ('|' 'load')*`, `term := atom ('.' name)*`,
    /// `atom := name | '(' expr ')'`; `None` for anything else.
    fn parse(src: &str) -> Option<Expr> {
        let (e, rest) = Self::filtered(src)?;
        rest.trim().is_empty().then_some(e)
    }

    fn filtered(src: &str) -> Option<(Expr, &str)> {
        let (mut e, mut rest) = Self::term(src)?;
        while let Some(r) = rest.trim_start().strip_prefix('|') {
            let r = r.trim_start().strip_prefix("load")?;
            if r.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            e = Expr::Load(Box::new(e));
            rest = r;
        }
        Some((e, rest))
    }

    fn term(src: &str) -> Option<(Expr, &str)> {
        let s = src.trim_start();
        let (mut e, mut rest) = if let Some(inner) = s.strip_prefix('(') {
            let (e, r) = Self::filtered(inner)?;
            (e, r.trim_start().strip_prefix(')')?)
        } else {
            let (n, r) = name(s)?;
            (Expr::Name(n.to_string()), r)
        };
        while let Some(r) = rest.strip_prefix('.') {
            let (n, r) = name(r)?;
            e = Expr::Member(Box::new(e), n.to_string());
            rest = r;
        }
        Some((e, rest))
    }

    /// The value as Nunjucks computes it: a missing name or member is
    /// undefined (`None`); `load` is `JSON.parse` of the value's text, which
    /// throws on undefined and on anything that is not JSON text.
    fn eval(&self, vars: &Json, src: &str) -> Result<Option<Json>, String> {
        Ok(match self {
            Expr::Name(n) => {
                if n == "env" && vars.get("env").is_none() {
                    return Err(format!(
                        "`{{{{{src}}}}}` reads the environment: promptfoo renders `env` from the shell that runs it, so the verdict would depend on the machine; missionctl refuses it rather than render it empty"
                    ));
                }
                vars.get(n).cloned()
            }
            Expr::Member(e, n) => e.eval(vars, src)?.and_then(|v| v.get(n).cloned()),
            Expr::Load(e) => {
                let v = e.eval(vars, src)?;
                let text = v.as_ref().map_or("undefined".into(), crate::js::string_of);
                match crate::js::json_parse(&text) {
                    Some(x) => Some(x),
                    None => {
                        return Err(format!(
                            "`{{{{{src}}}}}`: the `load` filter is `JSON.parse`, and `{text}` is not JSON (promptfoo errors on this test)"
                        ));
                    }
                }
            }
        })
    }
}

/// A Nunjucks name at the start of `s` and the rest.
fn name(s: &str) -> Option<(&str, &str)> {
    let len = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (len > 0 && !s.starts_with(|c: char| c.is_ascii_digit())).then(|| s.split_at(len))
}

/// promptfoo's `autoWrapRawIfPartialNunjucks` test,
/// `/({%[^%]*$|{{[^}]*$|{#[^#]*$)/m`: an opening tag with no closing
/// character before the end of its line. Such text is used literally.
pub fn has_partial_tag(s: &str) -> bool {
    let line_end = |c: char| matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}');
    for (open, close) in [("{%", '%'), ("{{", '}'), ("{#", '#')] {
        let mut from = 0;
        while let Some(i) = s[from..].find(open).map(|i| i + from) {
            let rest = &s[i + 2..];
            let line = rest.find(line_end).map_or(rest, |e| &rest[..e]);
            if !line.contains(close) {
                return true;
            }
            from = i + 1;
        }
    }
    false
}

/// promptfoo's `referencesUndefinedVariables`: a `{{ name… }}` whose root
/// name (other than `env`) is not a var. Such a var is used literally.
pub fn references_undefined(s: &str, vars: &Json) -> bool {
    let mut from = 0;
    while let Some(i) = s[from..].find("{{").map(|i| i + from) {
        from = i + 2;
        let Some(end) = s[from..].find("}}") else {
            break;
        };
        let inner = &s[from..from + end];
        if inner.contains('{') {
            continue;
        }
        let var = inner
            .trim_start_matches(crate::js::is_space)
            .split(|c: char| crate::js::is_space(c) || c == '|')
            .next()
            .unwrap_or_default();
        let root_len = var
            .char_indices()
            .find(|(n, c)| {
                !(c.is_ascii_alphabetic() || *c == '_' || (*n > 0 && c.is_ascii_digit()))
            })
            .map_or(var.len(), |(n, _)| n);
        let root = &var[..root_len];
        if !root.is_empty() && root != "env" && vars.get(root).is_none() {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn substitution_only() {
        let vars = json!({"city": "Paris", "n": 3, "o": {"k": "v"}});
        assert_eq!(
            render("{{city}} has {{ n }} {{o.k}}{{missing}}", &vars).expect("ok"),
            "Paris has 3 v"
        );
        assert!(render("{% if x %}y{% endif %}", &vars).is_err());
        assert!(render("{{ city | upper }}", &vars).is_err());
        assert!(render("{{ city | loader }}", &vars).is_err());
        assert!(render("{{ city + 1 }}", &vars).is_err());
        assert!(render("{{ city", &vars).is_err());
        assert!(render("a #} b", &vars).is_err());
    }

    /// promptfoo's `load` filter (`JSON.parse`), as simple-csv uses it:
    /// a member of the parsed value, a missing member empty, an object as
    /// JavaScript's `String` writes it; text that is not JSON (or an
    /// undefined var) errors as `JSON.parse` throws.
    #[test]
    fn the_load_filter_parses_json() {
        let vars = json!({"style": "{\"tone\":\"formal\",\"n\":[1,2],\"o\":{\"k\":1}}", "five": "5", "bad": "{tone"});
        let r = |t: &str| render(t, &vars);
        assert_eq!(r("{{ (style | load).tone }}").expect("ok"), "formal");
        assert_eq!(r("{{(style|load).n}}").expect("ok"), "1,2");
        assert_eq!(r("{{ (style | load).o }}").expect("ok"), "[object Object]");
        assert_eq!(r("{{ (style | load).missing }}").expect("ok"), "");
        assert_eq!(r("{{ five | load }}").expect("ok"), "5");
        assert_eq!(r("{{ (style | load).o.k }}").expect("ok"), "1");
        assert!(r("{{ bad | load }}").is_err());
        assert!(r("{{ nothing | load }}").is_err());
        assert!(r("{{ (style | load).tone").is_err());
    }
}
