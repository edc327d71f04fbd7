//! The part of promptfoo's Nunjucks templating that test files use in
//! values and prompts: `{{ name }}` and `{{ name.field }}`, rendered as
//! Nunjucks renders them (no autoescape, a missing variable is empty).
//! Written by hand because only this subset is accepted: tags (`{% %}`),
//! filters, expressions and whitespace control are refused with an error
//! rather than rendered differently.

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
        let path_ok = !expr.is_empty()
            && expr.split('.').all(|p| {
                !p.is_empty()
                    && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !p.starts_with(|c: char| c.is_ascii_digit())
            });
        if !path_ok {
            return Err(format!(
                "`{{{{{}}}}}` is a Nunjucks expression missionctl does not evaluate; supported: `{{{{ var }}}}` and `{{{{ var.field }}}}`",
                &after[..end]
            ));
        }
        if expr.split('.').next() == Some("env") && vars.get("env").is_none() {
            return Err(format!(
                "`{{{{{}}}}}` reads the environment: promptfoo renders `env` from the shell that runs it, so the verdict would depend on the machine; missionctl refuses it rather than render it empty",
                &after[..end]
            ));
        }
        let mut v = Some(vars);
        for part in expr.split('.') {
            v = v.and_then(|x| x.get(part));
        }
        out.push_str(&match v {
            None | Some(Json::Null) => String::new(),
            Some(x) => crate::js::string_of(x),
        });
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
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
        assert!(render("{{ city", &vars).is_err());
        assert!(render("a #} b", &vars).is_err());
    }
}
