//! YAML as promptfoo 0.121 reads an embedded blob: its `loadYaml(text,
//! {json: true})` over js-yaml 5 with js-yaml 4's default schema (the core
//! schema plus `<<` merge keys, `!!binary`, `!!timestamp`, `!!omap`,
//! `!!pairs`, `!!set`). Scalars resolve as js-yaml resolves them, not as
//! YAML 1.1 or serde does: `1_000`, `0b101`, `-0x1F`, `yes` and `1e400` stay
//! text; `017` is 17; `2024-01-01` is a `Date`; duplicate keys keep the last
//! value (json mode); an unknown tag, an unresolvable explicit tag or an
//! unknown alias makes the whole blob unreadable.
//!
//! The result is what promptfoo's Ajv sees, as JSON: a `Date` is an object
//! with no properties (`{}`), a `Uint8Array` an object of its indices,
//! `±Infinity` and `NaN` are [`super::non_finite`] (null to JSON, and
//! neither null nor a number to a schema), a lone surrogate the private-use
//! character [`super::lone_surrogate`] maps it to.

use std::collections::HashMap;

use granit_parser::{Event, Parser, ScalarStyle};
use serde_json::{Map, Value as Json};

/// A JavaScript value as the loader builds it.
#[derive(Clone)]
enum Js {
    Json(Json),
    /// A mapping, with its keys as JavaScript property names.
    Object(Map<String, Json>),
    Array(Vec<Json>),
    Date,
    Bytes(Vec<u8>),
    /// The merge key `<<`.
    Merge,
}

impl Js {
    fn into_json(self) -> Json {
        match self {
            Js::Json(j) => j,
            Js::Object(m) => Json::Object(m),
            Js::Array(a) => Json::Array(a),
            Js::Date => Json::Object(Map::new()),
            Js::Merge => Json::String("<<".into()),
            Js::Bytes(b) => Json::Object(
                b.iter()
                    .enumerate()
                    .map(|(i, x)| (i.to_string(), Json::from(*x)))
                    .collect(),
            ),
        }
    }
}

/// A collection being built.
enum Frame {
    Seq {
        tag: Option<String>,
        anchor: usize,
        items: Vec<Js>,
    },
    Map {
        tag: Option<String>,
        anchor: usize,
        map: Map<String, Json>,
        /// The key whose value comes next.
        key: Option<Js>,
    },
}

fn number(f: f64) -> Json {
    if f.is_finite()
        && f.fract() == 0.0
        && f.abs() <= 9_007_199_254_740_992.0
        && !(f == 0.0 && f.is_sign_negative())
    {
        Json::from(f as i64)
    } else if f.is_finite() {
        serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)
    } else {
        super::non_finite()
    }
}

fn all(s: &str, f: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.bytes().all(f)
}

/// js-yaml's core `int`: implicitly `0o…`, `0x…` or signed decimal
/// digits; with `!!int` also signed `0b…`, `0o…`, `0x…`.
fn int(s: &str, explicit: bool) -> Option<Json> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let signed = body.len() != s.len();
    let radix = |digits: &str, r: u32| -> Option<f64> {
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(r)) {
            return None;
        }
        Some(digits.chars().fold(0.0, |n, c| {
            n * f64::from(r) + f64::from(c.to_digit(r).unwrap_or(0))
        }))
    };
    let prefixed = |p: &str, r: u32| {
        let d = body.strip_prefix(p)?;
        if signed && !explicit {
            return None;
        }
        radix(d, r)
    };
    let n = if body.starts_with("0x") {
        prefixed("0x", 16)?
    } else if body.starts_with("0o") {
        prefixed("0o", 8)?
    } else if explicit && body.starts_with("0b") {
        prefixed("0b", 2)?
    } else if all(body, |b| b.is_ascii_digit()) {
        body.parse::<f64>().ok()?
    } else {
        return None;
    };
    let n = if neg { -n } else { n };
    n.is_finite().then(|| number(n))
}

/// js-yaml's core `float`.
fn float(s: &str) -> Option<Json> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let signed = body.len() != s.len();
    if matches!(body, ".inf" | ".Inf" | ".INF") {
        return Some(super::non_finite());
    }
    if !signed && matches!(body, ".nan" | ".NaN" | ".NAN") {
        return Some(super::non_finite());
    }
    // [0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)? | \.[0-9]+([eE][-+]?[0-9]+)?
    let b = body.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let st = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - st
    };
    let lead = digits(&mut i);
    if lead == 0 {
        if b.get(i) != Some(&b'.') {
            return None;
        }
        i += 1;
        if digits(&mut i) == 0 {
            return None;
        }
    } else if b.get(i) == Some(&b'.') {
        i += 1;
        digits(&mut i);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    // parseFloat of the unsigned text: a trailing `.` is fine.
    let text = body
        .trim_end_matches('.')
        .replace(".e", "e")
        .replace(".E", "E");
    let f: f64 = text.parse().ok()?;
    let f = if neg { -f } else { f };
    f.is_finite().then(|| number(f))
}

/// `Date.UTC`'s calendar check as js-yaml's timestamp makes it: the fields
/// must survive the round trip (years 0–99 are read as 1900–1999 and fail).
fn valid_date(y: u32, m: u32, d: u32) -> bool {
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    y >= 100 && (1..=12).contains(&m) && d >= 1 && d <= days[(m - 1) as usize]
}

/// js-yaml's `timestamp`: `YYYY-MM-DD`, or a date and a time.
fn timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<u32>().ok());
    if b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && all(&s[..4], |c| c.is_ascii_digit())
        && all(&s[5..7], |c| c.is_ascii_digit())
        && all(&s[8..], |c| c.is_ascii_digit())
    {
        return valid_date(
            num(0..4).unwrap_or(0),
            num(5..7).unwrap_or(0),
            num(8..10).unwrap_or(0),
        );
    }
    // ^(\d{4})-(\d\d?)-(\d\d?)(?:[Tt]|[ \t]+)(\d\d?):(\d\d):(\d\d)(?:\.(\d*))?(?:[ \t]*(Z|([-+])(\d\d?)(?::(\d\d))?))?$
    let mut i = 0;
    let digits = |i: &mut usize, min: usize, max: usize| -> Option<u32> {
        let st = *i;
        while *i < b.len() && *i - st < max && b[*i].is_ascii_digit() {
            *i += 1;
        }
        (*i - st >= min).then(|| s[st..*i].parse().ok()).flatten()
    };
    let lit = |i: &mut usize, c: u8| -> Option<()> { (b.get(*i) == Some(&c)).then(|| *i += 1) };
    let parsed = (|| {
        let y = digits(&mut i, 4, 4)?;
        lit(&mut i, b'-')?;
        let m = digits(&mut i, 1, 2)?;
        lit(&mut i, b'-')?;
        let d = digits(&mut i, 1, 2)?;
        if matches!(b.get(i), Some(b'T' | b't')) {
            i += 1;
        } else {
            let st = i;
            while matches!(b.get(i), Some(b' ' | b'\t')) {
                i += 1;
            }
            if i == st {
                return None;
            }
        }
        let h = digits(&mut i, 1, 2)?;
        lit(&mut i, b':')?;
        let mi = digits(&mut i, 2, 2)?;
        lit(&mut i, b':')?;
        let sec = digits(&mut i, 2, 2)?;
        if b.get(i) == Some(&b'.') {
            i += 1;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        let before_zone = i;
        while matches!(b.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        let mut zone_ok = true;
        match b.get(i) {
            Some(b'Z') => i += 1,
            Some(b'+' | b'-') => {
                i += 1;
                let oh = digits(&mut i, 1, 2)?;
                let mut om = 0;
                if b.get(i) == Some(&b':') {
                    i += 1;
                    om = digits(&mut i, 2, 2)?;
                }
                zone_ok = oh <= 23 && om <= 59;
            }
            _ => i = before_zone,
        }
        (i == b.len()).then_some(())?;
        Some(valid_date(y, m, d) && h <= 23 && mi <= 59 && sec <= 59 && zone_ok)
    })();
    parsed == Some(true)
}

/// `atob` of js-yaml's `!!binary` text (whitespace removed, length a
/// multiple of 4, base64 alphabet, at most two `=`).
fn binary(s: &str) -> Option<Vec<u8>> {
    let t: String = s.chars().filter(|c| !super::is_space(*c)).collect();
    let body = t.trim_end_matches('=');
    if !t.len().is_multiple_of(4)
        || t.len() - body.len() > 2
        || !body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    {
        return None;
    }
    let six = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            _ => 63,
        }
    };
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.as_bytes().chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | six(*c) << (18 - 6 * i));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    Some(out)
}

/// A scalar as the default schema resolves it (`tag`: the explicit tag's
/// suffix in the `tag:yaml.org,2002:` namespace, `Some("")` for `!`).
fn scalar(text: &str, style: ScalarStyle, tag: Option<&str>) -> Result<Js, String> {
    let plain = style == ScalarStyle::Plain;
    let unresolved =
        |t: &str| format!("cannot resolve a node with !<tag:yaml.org,2002:{t}> explicit tag");
    match tag {
        Some("str" | "") => Ok(Js::Json(Json::String(text.into()))),
        Some("null") => matches!(text, "" | "~" | "null" | "Null" | "NULL")
            .then_some(Js::Json(Json::Null))
            .ok_or_else(|| unresolved("null")),
        Some("bool") => match text {
            "true" | "True" | "TRUE" => Ok(Js::Json(Json::Bool(true))),
            "false" | "False" | "FALSE" => Ok(Js::Json(Json::Bool(false))),
            _ => Err(unresolved("bool")),
        },
        Some("int") => int(text, true)
            .map(Js::Json)
            .ok_or_else(|| unresolved("int")),
        Some("float") => float(text).map(Js::Json).ok_or_else(|| unresolved("float")),
        Some("timestamp") => timestamp(text)
            .then_some(Js::Date)
            .ok_or_else(|| unresolved("timestamp")),
        Some("binary") => binary(text)
            .map(Js::Bytes)
            .ok_or_else(|| unresolved("binary")),
        Some("merge") if text == "<<" || text.is_empty() => Ok(Js::Merge),
        Some(t) => Err(format!("unknown scalar tag !<{t}>")),
        None if !plain => Ok(Js::Json(Json::String(text.into()))),
        None => Ok(match text {
            "" | "~" | "null" | "Null" | "NULL" => Js::Json(Json::Null),
            "true" | "True" | "TRUE" => Js::Json(Json::Bool(true)),
            "false" | "False" | "FALSE" => Js::Json(Json::Bool(false)),
            "<<" => Js::Merge,
            t => match int(t, false).or_else(|| float(t)) {
                Some(n) => Js::Json(n),
                None if timestamp(t) => Js::Date,
                None => Js::Json(Json::String(t.into())),
            },
        }),
    }
}

/// A property name from a mapping key (`String(key)`).
fn key_name(k: &Js) -> Result<String, String> {
    Ok(match k {
        Js::Json(Json::String(s)) => s.clone(),
        Js::Json(Json::Null) => "null".into(),
        Js::Json(Json::Bool(b)) => b.to_string(),
        Js::Json(Json::Number(n)) => super::number_string(n),
        Js::Object(_) => "[object Object]".into(),
        Js::Array(a) => {
            let mut parts = Vec::new();
            for x in a {
                parts.push(match x {
                    Json::Array(_) => {
                        return Err("nested arrays are not supported inside keys".into());
                    }
                    Json::Object(_) => "[object Object]".into(),
                    Json::Null => String::new(),
                    other => super::string_of(other),
                });
            }
            parts.join(",")
        }
        // A Date key is its `toString()`, a Uint8Array's its bytes: not
        // worth reproducing; the blob is refused instead.
        _ => return Err("a timestamp or binary mapping key".into()),
    })
}

/// The explicit tag of a node, as a core-schema suffix (`Some("")` for a
/// non-specific `!`, the full tag for any other).
fn tag_of(t: Option<&granit_parser::Tag>) -> Option<String> {
    let t = t?;
    if t.handle() == "tag:yaml.org,2002:" {
        return Some(t.suffix().to_string());
    }
    if t.handle() == "!" && t.suffix().is_empty() {
        return Some(String::new());
    }
    Some(format!("{}{}", t.handle(), t.suffix()))
}

/// Lone `\uD800`–`\uDFFF` escapes (which the YAML parser refuses) written
/// as the private-use characters that stand for them.
fn escape_lone_surrogates(text: &str) -> String {
    let b = text.as_bytes();
    let hex = |i: usize| -> Option<u32> { u32::from_str_radix(text.get(i..i + 4)?, 16).ok() };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut last = 0;
    while i + 6 <= b.len() {
        if b[i] == b'\\'
            && b[i + 1] == b'u'
            && let Some(u) = hex(i + 2)
        {
            let high = (0xD800..=0xDBFF).contains(&u);
            let paired = high
                && b.get(i + 6) == Some(&b'\\')
                && b.get(i + 7) == Some(&b'u')
                && hex(i + 8).is_some_and(|l| (0xDC00..=0xDFFF).contains(&l));
            if paired {
                i += 12;
                continue;
            }
            if (0xD800..=0xDFFF).contains(&u) {
                out.push_str(&text[last..i]);
                out.push_str(&format!(
                    "\\U{:08X}",
                    u32::from(super::lone_surrogate(u as u16))
                ));
                i += 6;
                last = i;
                continue;
            }
            i += 6;
            continue;
        }
        i += 1;
    }
    out.push_str(&text[last..]);
    out
}

/// `loadYaml(text, { json: true })` as promptfoo calls it on a blob: the
/// single document's value, or why js-yaml throws.
pub fn load_json_mode(text: &str) -> Result<Json, String> {
    let text = escape_lone_surrogates(text);
    let mut anchors: HashMap<usize, Js> = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut docs: Vec<Js> = Vec::new();
    let mut alias_budget = 10_000usize;
    for ev in Parser::new_from_str(&text) {
        let (ev, _) = ev.map_err(|e| e.to_string())?;
        let node = match ev {
            Event::SequenceStart(_, anchor, tag) => {
                stack.push(Frame::Seq {
                    tag: tag_of(tag.as_deref()),
                    anchor,
                    items: Vec::new(),
                });
                continue;
            }
            Event::MappingStart(_, anchor, tag) => {
                stack.push(Frame::Map {
                    tag: tag_of(tag.as_deref()),
                    anchor,
                    map: Map::new(),
                    key: None,
                });
                continue;
            }
            Event::SequenceEnd => {
                let Some(Frame::Seq { tag, anchor, items }) = stack.pop() else {
                    return Err("unbalanced sequence".into());
                };
                let v = seq_value(tag.as_deref(), items)?;
                if anchor != 0 {
                    anchors.insert(anchor, v.clone());
                }
                v
            }
            Event::MappingEnd => {
                let Some(Frame::Map {
                    tag, anchor, map, ..
                }) = stack.pop()
                else {
                    return Err("unbalanced mapping".into());
                };
                let v = match tag.as_deref() {
                    None | Some("map" | "") => Js::Object(map),
                    Some("set") => {
                        if map.values().any(|v| !v.is_null()) {
                            return Err("cannot resolve a set item".into());
                        }
                        Js::Object(map)
                    }
                    Some(t) => return Err(format!("unknown mapping tag !<{t}>")),
                };
                if anchor != 0 {
                    anchors.insert(anchor, v.clone());
                }
                v
            }
            Event::Scalar(text, style, anchor, tag) => {
                let v = scalar(&text, style, tag_of(tag.as_deref()).as_deref())?;
                if anchor != 0 {
                    anchors.insert(anchor, v.clone());
                }
                v
            }
            Event::Alias(id) => {
                alias_budget = alias_budget.checked_sub(1).ok_or("too many aliases")?;
                anchors.get(&id).cloned().ok_or("unidentified alias")?
            }
            Event::UnresolvedAlias(name) => return Err(format!("unidentified alias \"{name}\"")),
            // Stream and document boundaries.
            _ => continue,
        };
        match stack.last_mut() {
            None => docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { map, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(Js::Merge) => merge(map, node)?,
                Some(k) => {
                    map.insert(key_name(&k)?, node.into_json());
                }
            },
        }
    }
    match docs.len() {
        0 => Ok(Json::Null),
        1 => Ok(docs.pop().map(Js::into_json).unwrap_or(Json::Null)),
        _ => Err("expected a single document in the stream, but found more".into()),
    }
}

fn seq_value(tag: Option<&str>, items: Vec<Js>) -> Result<Js, String> {
    let one_key = |x: &Js| match x {
        Js::Object(m) if m.len() == 1 => m.iter().next().map(|(k, v)| (k.clone(), v.clone())),
        _ => None,
    };
    Ok(match tag {
        None | Some("seq" | "") => Js::Array(items.into_iter().map(Js::into_json).collect()),
        Some("omap") => {
            let mut seen = std::collections::HashSet::new();
            for x in &items {
                let (k, _) = one_key(x).ok_or("cannot resolve an ordered map item")?;
                if !seen.insert(k) {
                    return Err("duplicate key in ordered map".into());
                }
            }
            Js::Array(items.into_iter().map(Js::into_json).collect())
        }
        Some("pairs") => {
            let mut out = Vec::new();
            for x in &items {
                let (k, v) = one_key(x).ok_or("cannot resolve a pairs item")?;
                out.push(Json::Array(vec![Json::String(k), v]));
            }
            Js::Array(out)
        }
        Some(t) => return Err(format!("unknown sequence tag !<{t}>")),
    })
}

/// `<<`: the source mapping's keys that are not there yet (a list of
/// mappings, each in turn).
fn merge(map: &mut Map<String, Json>, source: Js) -> Result<(), String> {
    let mut add = |m: &Map<String, Json>| {
        for (k, v) in m {
            if !map.contains_key(k) {
                map.insert(k.clone(), v.clone());
            }
        }
    };
    match source {
        Js::Object(m) => add(&m),
        Js::Array(items) => {
            for x in items {
                match x {
                    Json::Object(m) => add(&m),
                    _ => {
                        return Err(
                            "cannot merge mappings; the provided source object is unacceptable"
                                .into(),
                        );
                    }
                }
            }
        }
        _ => {
            return Err("cannot merge mappings; the provided source object is unacceptable".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_resolve_as_js_yaml_resolves_them() {
        let a = |t: &str| load_json_mode(&format!("{{a: {t}}}")).map(|v| v["a"].clone());
        assert_eq!(a("1_000"), Ok(json!("1_000")));
        assert_eq!(a("0x1F"), Ok(json!(31)));
        assert_eq!(a("-0x1F"), Ok(json!("-0x1F")));
        assert_eq!(a("017"), Ok(json!(17)));
        assert_eq!(a("0b101"), Ok(json!("0b101")));
        assert_eq!(a("1e3"), Ok(json!(1000)));
        assert_eq!(a("12e400"), Ok(json!("12e400")));
        assert_eq!(a("1."), Ok(json!(1)));
        assert_eq!(a("yes"), Ok(json!("yes")));
        assert_eq!(a("TRUE"), Ok(json!(true)));
        assert_eq!(a("2024-01-01"), Ok(json!({})));
        assert_eq!(a("2024-02-30"), Ok(json!("2024-02-30")));
        assert_eq!(a("0099-01-01"), Ok(json!("0099-01-01")));
        assert_eq!(a("2024-1-1 1:00:00 +02:00"), Ok(json!({})));
        assert_eq!(a("!!binary aGk="), Ok(json!({"0": 104, "1": 105})));
        assert!(a("!!binary '!!!'").is_err());
        assert!(a("!custom 1").is_err());
        assert_eq!(a("!!int '0b11'"), Ok(json!(3)));
        assert_eq!(load_json_mode(r#"{"a":1,"a":2}"#), Ok(json!({"a": 2})));
        assert_eq!(
            load_json_mode("{<<: [{b: 1}, {b: 3, c: 2}], a: 2}"),
            Ok(json!({"b": 1, "c": 2, "a": 2}))
        );
        assert_eq!(
            load_json_mode(r#"{a: "\ud800"}"#),
            Ok(json!({"a": super::super::lone_surrogate(0xD800).to_string()}))
        );
        assert_eq!(
            load_json_mode("{1: x, null: y}"),
            Ok(json!({"1": "x", "null": "y"}))
        );
    }
}
