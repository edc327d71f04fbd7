//! The small pieces of JavaScript semantics promptfoo's assertions rest on,
//! written by hand because they are JavaScript's rules, not a library's:
//! `String(v)`, `trim()`, deep equality of parsed JSON, the comma-separated
//! lists `contains-any` splits, `//` comments in embedded JSON, word counts
//! and Levenshtein distance over UTF-16 code units. Each follows the
//! promptfoo 0.121 source it is named after, so verdicts agree exactly.
//!
//! This module sits below both the pack format ([`crate::pack`], which
//! parses and checks assertion specifications) and evaluation
//! ([`crate::eval`]); it depends on neither.

use serde_json::Value as Json;

/// JavaScript's WhiteSpace and LineTerminator (what `trim()` and `\s`
/// remove): Rust's `char::is_whitespace` without U+0085, plus U+FEFF.
pub fn is_space(c: char) -> bool {
    (c.is_whitespace() && c != '\u{85}') || c == '\u{feff}'
}

pub fn trim(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// `String(n)`: JavaScript's Number::toString of the double a YAML/JSON
/// number is (integers beyond 2^53 rounded, `1e+21`, `1e-7`, `-0` as `0`),
/// by `ryu-js`, which implements that algorithm.
pub fn number_string(n: &serde_json::Number) -> String {
    let f = n.as_f64().unwrap_or(f64::NAN);
    ryu_js::Buffer::new().format(f).to_string()
}

/// `JSON.stringify(v)` (no indentation), numbers as JavaScript prints them.
pub fn stringify(v: &Json) -> String {
    match v {
        Json::Number(n) => number_string(n),
        Json::Array(a) => format!(
            "[{}]",
            a.iter().map(stringify).collect::<Vec<_>>().join(",")
        ),
        Json::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, x)| format!("{}:{}", stringify(&Json::String(k.clone())), stringify(x)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// The text `String.prototype.replace` puts for a match at `start..end` of
/// `subject` when the replacement string is `with`: `$$`, `$&`, `` $` ``
/// and `$'` expanded (there are no groups to number).
pub fn replacement(with: &str, subject: &str, start: usize, end: usize) -> String {
    let mut out = String::with_capacity(with.len());
    let mut chars = with.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('$') => out.push('$'),
            Some('&') => out.push_str(&subject[start..end]),
            Some('`') => out.push_str(&subject[..start]),
            Some('\'') => out.push_str(&subject[end..]),
            _ => {
                out.push('$');
                continue;
            }
        }
        chars.next();
    }
    out
}

/// `Number(v)` for a value from YAML/JSON: JavaScript's StringToNumber for
/// text (trimmed; empty is 0; `Infinity`, `0x`/`0o`/`0b` literals; no `nan`
/// or `inf` as Rust's parser has), arrays through their `String`, objects
/// NaN.
pub fn to_number(v: &Json) -> f64 {
    match v {
        Json::Null => 0.0,
        Json::Bool(b) => f64::from(u8::from(*b)),
        Json::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Json::String(s) => string_to_number(s),
        Json::Array(_) => string_to_number(&string_of(v)),
        Json::Object(_) => f64::NAN,
    }
}

fn string_to_number(s: &str) -> f64 {
    let t = trim(s);
    if t.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(digits) = t.strip_prefix(prefix) {
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return f64::NAN;
            }
            return digits.chars().fold(0.0, |acc, c| {
                acc * f64::from(radix) + f64::from(c.to_digit(radix).unwrap_or(0))
            });
        }
    }
    let (sign, body) = match t.as_bytes()[0] {
        b'-' => (-1.0, &t[1..]),
        b'+' => (1.0, &t[1..]),
        _ => (1.0, t),
    };
    if body == "Infinity" {
        return sign * f64::INFINITY;
    }
    // StrUnsignedDecimalLiteral: digits, an optional fraction, an optional
    // exponent; at least one digit before the exponent.
    let b = body.as_bytes();
    let int_digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return f64::NAN;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_digits = b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp_digits == 0 {
            return f64::NAN;
        }
        i = j + exp_digits;
    }
    if i != b.len() {
        return f64::NAN;
    }
    body.parse::<f64>().map_or(f64::NAN, |x| sign * x)
}

/// JavaScript's `a <= b` on two YAML values: text against text compares
/// UTF-16 code units, anything else compares as numbers (NaN is false).
pub fn less_or_equal(a: &Json, b: &Json) -> bool {
    let prim = |v: &Json| match v {
        Json::Array(_) => Json::String(string_of(v)),
        Json::Object(_) => Json::String("[object Object]".into()),
        other => other.clone(),
    };
    match (prim(a), prim(b)) {
        (Json::String(x), Json::String(y)) => x.encode_utf16().cmp(y.encode_utf16()).is_le(),
        (x, y) => to_number(&x) <= to_number(&y),
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
        // `isDeepStrictEqual` compares numbers with `Object.is`: 0 is not -0.
        (Json::Number(x), Json::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(p), Some(q)) => p == q && p.is_sign_negative() == q.is_sign_negative(),
            _ => false,
        },
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

/// `new RegExp(pattern)` as promptfoo builds it (no flags): the pattern
/// read as UTF-16 code units, so an astral character is two characters
/// (`[😀]` is a class of two surrogates) and Annex B syntax applies.
pub fn regex(pattern: &str) -> Result<regress::Regex, regress::Error> {
    // Annex B: without `u`, `\u` not followed by four hex digits is an
    // identity escape (`\u{41}` is `u` 41 times); regress reads a code
    // point escape there, so the pattern says `u` itself.
    let chars: Vec<char> = pattern.chars().collect();
    let mut p = String::with_capacity(pattern.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            let hex4 =
                chars.len() >= i + 6 && chars[i + 2..i + 6].iter().all(char::is_ascii_hexdigit);
            if chars[i + 1] == 'u' && !hex4 {
                p.push('u');
            } else {
                p.push(chars[i]);
                p.push(chars[i + 1]);
            }
            i += 2;
        } else {
            p.push(chars[i]);
            i += 1;
        }
    }
    regress::Regex::from_unicode(p.encode_utf16().map(u32::from), regress::Flags::default())
}

/// `re.test(text)` without the `u` flag: matched over the UTF-16 code
/// units of `text` (`.` matches half of an emoji).
pub fn regex_test(re: &regress::Regex, text: &str) -> bool {
    let units: Vec<u16> = text.encode_utf16().collect();
    re.find_from_ucs2(&units, 0).next().is_some()
}

mod json;
pub use json::{
    from_utf16, json_parse, json_parse_js, lone_surrogate, non_finite, non_finite_to_null,
};
pub mod nunjucks;
pub mod transform;
pub mod yaml;

#[cfg(test)]
mod tests;
