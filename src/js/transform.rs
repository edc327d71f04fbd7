//! promptfoo's `transform` and `options.transform`: JavaScript run on the
//! output before assertions. missionctl runs no code from a pull request, so
//! it accepts the expressions that are plain string methods on `output`
//! (`output.trim()`, `output.toLowerCase().trim()`, …), with JavaScript's
//! meaning, and refuses every other transform at `validate` time.

/// One string method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Trim,
    TrimStart,
    TrimEnd,
    Lower,
    Upper,
}

/// A supported transform: `output` followed by string methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform(Vec<Step>);

/// The methods accepted, for error messages.
pub const SUPPORTED: &str = "`output` followed by `.trim()`, `.trimStart()`, `.trimEnd()`, `.toLowerCase()` or `.toUpperCase()` (for example `output.trim().toLowerCase()`)";

impl Transform {
    /// Parse an expression; `Err` says what is not supported.
    pub fn parse(src: &str) -> Result<Transform, String> {
        // promptfoo's `getInlineTransformFunction`: code with a newline is
        // a function body (it must `return`), one line is an expression
        // (`return ${code}`, so a leading `return` is a syntax error).
        let body = crate::js::trim(src);
        let mut s = if src.contains('\n') {
            let after = body
                .strip_prefix("return")
                .filter(|r| r.starts_with(crate::js::is_space) || r.starts_with('('))
                .ok_or_else(|| format!("transform `{src}` is a function body (it has a newline) without `return`: promptfoo's transform returns undefined and errors; write `return output.trim();` or put it on one line"))?;
            let gap = after.len() - after.trim_start_matches(crate::js::is_space).len();
            if after[..gap].contains(['\n', '\r', '\u{2028}', '\u{2029}']) {
                return Err(format!(
                    "transform `{src}`: a line break after `return` returns undefined in JavaScript (promptfoo errors); put the expression on the same line"
                ));
            }
            crate::js::trim(after)
        } else {
            if body.starts_with("return ") {
                return Err(format!(
                    "transform `{src}`: a one-line transform is an expression (promptfoo runs `return {body}`, a syntax error); drop `return`"
                ));
            }
            body
        };
        s = s.strip_suffix(';').map_or(s, crate::js::trim);
        let Some(mut rest) = s.strip_prefix("output") else {
            return Err(format!(
                "transform `{src}` is JavaScript missionctl does not run; supported: {SUPPORTED}"
            ));
        };
        let mut steps = Vec::new();
        while !rest.is_empty() {
            let (step, tail) = [
                (".trim()", Step::Trim),
                (".trimStart()", Step::TrimStart),
                (".trimEnd()", Step::TrimEnd),
                (".toLowerCase()", Step::Lower),
                (".toUpperCase()", Step::Upper),
            ]
            .iter()
            .find_map(|(m, st)| rest.strip_prefix(m).map(|t| (*st, t)))
            .ok_or_else(|| {
                format!(
                    "transform `{src}` is JavaScript missionctl does not run; supported: {SUPPORTED}"
                )
            })?;
            steps.push(step);
            rest = tail;
        }
        Ok(Transform(steps))
    }

    /// Apply to an output, with JavaScript's whitespace and case rules.
    pub fn apply(&self, output: &str) -> String {
        let mut s = output.to_string();
        for step in &self.0 {
            s = match step {
                Step::Trim => crate::js::trim(&s).to_string(),
                Step::TrimStart => s.trim_start_matches(crate::js::is_space).to_string(),
                Step::TrimEnd => s.trim_end_matches(crate::js::is_space).to_string(),
                Step::Lower => s.to_lowercase(),
                Step::Upper => s.to_uppercase(),
            };
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_methods_only() {
        let t = Transform::parse("output.trim().toLowerCase()").expect("supported");
        assert_eq!(t.apply("  Hello World \n"), "hello world");
        // promptfoo: a body (with a newline) must return; one line is an
        // expression, so a leading `return` is its SyntaxError.
        assert_eq!(
            Transform::parse("return output.toUpperCase();\n")
                .expect("ok")
                .apply("ab"),
            "AB"
        );
        assert!(Transform::parse("return output.toUpperCase();").is_err());
        assert!(Transform::parse("output.trim()\n").is_err());
        assert!(Transform::parse("return\noutput.trim()\n").is_err());
        assert!(Transform::parse("JSON.parse(output)").is_err());
        assert!(Transform::parse("output.split(',')").is_err());
        assert!(Transform::parse("file://transform.js").is_err());
    }
}
