//! The small pieces of JavaScript semantics promptfoo's assertions rest on,
//! written by hand because they are JavaScript's rules, not a library's:
//! `String(v)`, `trim()`, deep equality of parsed JSON, the comma-separated
//! lists `contains-any` splits, `//` comments in embedded JSON, word counts
//! and Levenshtein distance over UTF-16 code units. Each follows the
//! promptfoo 0.121 source it is named after, so verdicts agree exactly.

use serde_json::Value as Json;

/// JavaScript's WhiteSpace and LineTerminator (what `trim()` and `\s`
/// remove): Rust's `char::is_whitespace` without U+0085, plus U+FEFF.
pub fn is_space(c: char) -> bool {
    (c.is_whitespace() && c != '\u{85}') || c == '\u{feff}'
}

pub fn trim(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// `String(n)` for a finite number in the range prompts use: integers
/// without a fraction, others in Rust's shortest round-trip form (which is
/// JavaScript's for every value between 1e-7 and 1e21).
pub fn number_string(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        format!("{f}")
    }
}

/// `String(v)` of a value that came from YAML: strings as they are, numbers
/// as JavaScript prints them, arrays joined with commas, objects as
/// `[object Object]`, null as `null`.
pub fn string_of(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Number(n) => number_string(n),
        Json::Bool(b) => b.to_string(),
        Json::Null => "null".into(),
        Json::Array(a) => a
            .iter()
            .map(|x| match x {
                Json::Null => String::new(),
                other => string_of(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        Json::Object(_) => "[object Object]".into(),
    }
}

/// JavaScript truthiness of a YAML value (`invariant(value, …)`).
pub fn truthy(v: Option<&Json>) -> bool {
    match v {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(Json::String(s)) => !s.is_empty(),
        Some(Json::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(_) => true,
    }
}

/// Node's `util.isDeepStrictEqual` on values parsed from JSON: numbers by
/// value (1 and 1.0 are one number), objects by key set, arrays in order.
pub fn deep_equal(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| deep_equal(p, q))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| deep_equal(v, w)))
        }
        _ => a == b,
    }
}

/// promptfoo's `parseCommaSeparatedValues`: fields split on commas, each
/// trimmed; a field in double quotes keeps its commas (`\"`, `\\` and `""`
/// escape). `None` for an unterminated quote, which promptfoo refuses.
pub fn comma_separated(value: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = value.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |mut i: usize| {
        while i < chars.len() && is_space(chars[i]) {
            i += 1;
        }
        i
    };
    while i < chars.len() {
        while i < chars.len() && (is_space(chars[i]) || chars[i] == ',') {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        if chars[i] == '"' {
            let mut field = String::new();
            let mut j = i + 1;
            let mut terminated = false;
            while j < chars.len() {
                let next = chars.get(j + 1).copied();
                if chars[j] == '\\' && matches!(next, Some('"' | '\\')) {
                    field.extend(next);
                    j += 2;
                } else if chars[j] == '"' && next == Some('"') {
                    field.push('"');
                    j += 2;
                } else if chars[j] == '"' {
                    j += 1;
                    terminated = true;
                    break;
                } else {
                    field.push(chars[j]);
                    j += 1;
                }
            }
            if !terminated {
                return None;
            }
            out.push(field);
            i = skip_ws(j);
            if i < chars.len() && chars[i] != ',' {
                return None;
            }
        } else {
            let start = i;
            while i < chars.len() && chars[i] != ',' {
                i += 1;
            }
            out.push(trim(&chars[start..i].iter().collect::<String>()).to_string());
        }
    }
    Some(out)
}

fn escaped(line: &[char], at: usize) -> bool {
    line[..at].iter().rev().take_while(|c| **c == '\\').count() % 2 == 1
}

/// promptfoo's `convertSlashCommentsToHash`: `//` comments outside quotes
/// become YAML `#` comments (URLs such as `http://` are left alone).
pub fn slash_comments_to_hash(s: &str) -> String {
    let letter = |c: Option<&char>| c.is_some_and(char::is_ascii_alphabetic);
    s.split('\n')
        .map(|line| {
            let l: Vec<char> = line.chars().collect();
            let mut state = 0u8; // 0 normal, 1 single quote, 2 double quote
            let mut out = String::new();
            let mut i = 0;
            while i < l.len() {
                let c = l[i];
                match state {
                    0 if c == '\'' && !letter(i.checked_sub(1).and_then(|p| l.get(p))) => {
                        state = 1;
                        out.push(c);
                    }
                    0 if c == '"' => {
                        state = 2;
                        out.push(c);
                    }
                    0 if c == '/' && l.get(i + 1) == Some(&'/') => {
                        let start = l[..i]
                            .iter()
                            .rposition(|c| is_space(*c))
                            .map_or(0, |p| p + 1);
                        let token: String = l[start..i + 2].iter().collect();
                        if token.contains("://") {
                            out.push(c);
                            break;
                        }
                        let slashes = l[i..].iter().take_while(|c| **c == '/').count();
                        out.push_str(&"#".repeat(slashes / 2));
                        out.extend(&l[i + slashes..]);
                        return out;
                    }
                    1 => {
                        out.push(c);
                        if c == '\'' && !escaped(&l, i) && !letter(l.get(i + 1)) {
                            state = 0;
                        }
                    }
                    2 => {
                        out.push(c);
                        if c == '"' && !escaped(&l, i) {
                            state = 0;
                        }
                    }
                    _ => out.push(c),
                }
                i += 1;
            }
            out
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// promptfoo's `countWords`: whitespace-separated, non-empty pieces.
pub fn word_count(s: &str) -> usize {
    trim(s).split(is_space).filter(|w| !w.is_empty()).count()
}

/// Levenshtein distance over UTF-16 code units, as JavaScript strings count
/// (an emoji is two units there).
pub fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<u16> = a.encode_utf16().collect();
    let b: Vec<u16> = b.encode_utf16().collect();
    strsim::generic_levenshtein(&a, &b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn comma_lists_follow_promptfoo() {
        assert_eq!(comma_separated("a, b ,c").expect("ok"), ["a", "b", "c"]);
        assert_eq!(comma_separated(r#""x, y", z"#).expect("ok"), ["x, y", "z"]);
        assert_eq!(
            comma_separated(r#""say ""hi""""#).expect("ok"),
            [r#"say "hi""#]
        );
        assert_eq!(comma_separated(",,a,,").expect("ok"), ["a"]);
        assert!(comma_separated(r#""open"#).is_none());
    }

    #[test]
    fn javascript_values() {
        assert_eq!(string_of(&json!(5.0)), "5");
        assert_eq!(string_of(&json!(0.5)), "0.5");
        assert_eq!(string_of(&json!([1, "a", null])), "1,a,");
        assert!(deep_equal(
            &json!({"a": 1, "b": [1.0]}),
            &json!({"b": [1], "a": 1.0})
        ));
        assert!(!deep_equal(&json!({"a": 1}), &json!({"a": "1"})));
        assert_eq!(trim("\u{feff} x \u{85}"), "x \u{85}");
        assert_eq!(word_count("  one two\nthree "), 3);
        assert_eq!(levenshtein("😀", "a"), 2);
        assert_eq!(
            slash_comments_to_hash(r#"{"u": "http://x"} // c"#),
            r#"{"u": "http://x"} # c"#
        );
    }
}
