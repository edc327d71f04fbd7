//! `JSON.parse` as V8 reads text, and how JavaScript's values that JSON
//! cannot hold (lone surrogates, ±Infinity) are kept for the schema checks.

use serde_json::Value as Json;

/// The private-use character (U+10D800–U+10DFFF, plane 16) that stands
/// for a lone UTF-16 surrogate, which a Rust string cannot hold: one
/// character, as JavaScript's schema validators count it, equal to nothing
/// but itself.
pub fn lone_surrogate(unit: u16) -> char {
    char::from_u32(0x10_0000 + u32::from(unit)).unwrap_or('\u{FFFD}')
}

/// UTF-16 code units as text, lone surrogates as [`lone_surrogate`].
pub fn from_utf16(units: &[u16]) -> String {
    char::decode_utf16(units.iter().copied())
        .map(|c| c.unwrap_or_else(|e| lone_surrogate(e.unpaired_surrogate())))
        .collect()
}

/// What [`json_parse_js`] and [`yaml::load_json_mode`] hold for `Infinity`,
/// `-Infinity` and `NaN`: text no output holds, which [`non_finite_to_null`]
/// turns into the null JSON writes for them, remembering where.
const NON_FINITE: &str = "\u{FDD0}non-finite number\u{FDD0}";

pub fn non_finite() -> Json {
    Json::String(NON_FINITE.into())
}

/// Replace each non-finite number (see [`non_finite`]) by null, returning
/// their JSON pointers: a schema validator must see them as neither null nor
/// a number (Ajv's type checks want finite numbers; its number keywords skip
/// them).
pub fn non_finite_to_null(v: &mut Json) -> Vec<String> {
    fn walk(v: &mut Json, path: &mut String, out: &mut Vec<String>) {
        match v {
            Json::String(s) if s == NON_FINITE => {
                *v = Json::Null;
                out.push(path.clone());
            }
            Json::Array(a) => {
                for (i, x) in a.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    walk(x, path, out);
                    path.truncate(len);
                }
            }
            Json::Object(m) => {
                for (k, x) in m.iter_mut() {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    walk(x, path, out);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut String::new(), &mut out);
    out
}

/// `JSON.parse` as V8 accepts it: the JSON grammar with JSON's four
/// whitespace characters, any nesting depth (no recursion here, unlike
/// serde_json's limit of 128), numbers of any size (beyond the double range
/// they are ±Infinity, held here as ±f64::MAX, the nearest JSON number) and
/// lone surrogate escapes (held as [`lone_surrogate`]s).
/// Duplicate keys keep the last value, as JavaScript does.
pub fn json_parse(text: &str) -> Option<Json> {
    json_parse_with(text, false)
}

/// [`json_parse`] keeping JavaScript's values for a schema validator:
/// ±Infinity as [`non_finite`].
pub fn json_parse_js(text: &str) -> Option<Json> {
    json_parse_with(text, true)
}

fn json_parse_with(text: &str, js: bool) -> Option<Json> {
    enum Frame {
        Array(Vec<Json>),
        Object(serde_json::Map<String, Json>, String),
    }
    let b = text.as_bytes();
    let mut i = 0;
    let ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n' | b'\r') {
            *i += 1;
        }
    };
    let mut stack: Vec<Frame> = Vec::new();
    loop {
        ws(&mut i);
        // A value starts here.
        let mut value = match *b.get(i)? {
            b'{' => {
                i += 1;
                ws(&mut i);
                if b.get(i) == Some(&b'}') {
                    i += 1;
                    Json::Object(serde_json::Map::new())
                } else {
                    let key = json_string(b, &mut i)?;
                    ws(&mut i);
                    if b.get(i) != Some(&b':') {
                        return None;
                    }
                    i += 1;
                    stack.push(Frame::Object(serde_json::Map::new(), key));
                    continue;
                }
            }
            b'[' => {
                i += 1;
                ws(&mut i);
                if b.get(i) == Some(&b']') {
                    i += 1;
                    Json::Array(Vec::new())
                } else {
                    stack.push(Frame::Array(Vec::new()));
                    continue;
                }
            }
            b'"' => Json::String(json_string(b, &mut i)?),
            b't' if b[i..].starts_with(b"true") => {
                i += 4;
                Json::Bool(true)
            }
            b'f' if b[i..].starts_with(b"false") => {
                i += 5;
                Json::Bool(false)
            }
            b'n' if b[i..].starts_with(b"null") => {
                i += 4;
                Json::Null
            }
            _ => json_number(b, &mut i, js)?,
        };
        // Close every container the value completes.
        loop {
            ws(&mut i);
            match stack.last_mut() {
                None => {
                    return (i == b.len()).then_some(value);
                }
                Some(Frame::Array(items)) => {
                    items.push(value);
                    match b.get(i)? {
                        b',' => {
                            i += 1;
                            break;
                        }
                        b']' => {
                            i += 1;
                            let Some(Frame::Array(items)) = stack.pop() else {
                                return None;
                            };
                            value = Json::Array(items);
                        }
                        _ => return None,
                    }
                }
                Some(Frame::Object(map, key)) => {
                    map.insert(std::mem::take(key), value);
                    match b.get(i)? {
                        b',' => {
                            i += 1;
                            ws(&mut i);
                            let k = json_string(b, &mut i)?;
                            ws(&mut i);
                            if b.get(i) != Some(&b':') {
                                return None;
                            }
                            i += 1;
                            *key = k;
                            break;
                        }
                        b'}' => {
                            i += 1;
                            let Some(Frame::Object(map, _)) = stack.pop() else {
                                return None;
                            };
                            value = Json::Object(map);
                        }
                        _ => return None,
                    }
                }
            }
        }
    }
}

/// A JSON string at `b[*i]` (the opening quote), escapes decoded.
fn json_string(b: &[u8], i: &mut usize) -> Option<String> {
    if b.get(*i) != Some(&b'"') {
        return None;
    }
    *i += 1;
    let mut units: Vec<u16> = Vec::new();
    let start = *i;
    let mut plain = true;
    loop {
        let c = *b.get(*i)?;
        match c {
            b'"' => {
                *i += 1;
                break;
            }
            0..=0x1f => return None,
            b'\\' => {
                if plain {
                    plain = false;
                    units.extend(std::str::from_utf8(&b[start..*i]).ok()?.encode_utf16());
                }
                *i += 1;
                let e = *b.get(*i)?;
                *i += 1;
                units.push(match e {
                    b'"' => 0x22,
                    b'\\' => 0x5c,
                    b'/' => 0x2f,
                    b'b' => 8,
                    b'f' => 0xc,
                    b'n' => 0xa,
                    b'r' => 0xd,
                    b't' => 9,
                    b'u' => {
                        let hex = std::str::from_utf8(b.get(*i..*i + 4)?).ok()?;
                        if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                            return None;
                        }
                        *i += 4;
                        u16::from_str_radix(hex, 16).ok()?
                    }
                    _ => return None,
                });
            }
            _ => {
                let len = match c {
                    0x00..=0x7f => 1,
                    0xc0..=0xdf => 2,
                    0xe0..=0xef => 3,
                    _ => 4,
                };
                if !plain {
                    units.extend(
                        std::str::from_utf8(b.get(*i..*i + len)?)
                            .ok()?
                            .encode_utf16(),
                    );
                }
                *i += len;
            }
        }
    }
    if plain {
        return Some(std::str::from_utf8(&b[start..*i - 1]).ok()?.to_string());
    }
    Some(from_utf16(&units))
}

/// A JSON number at `b[*i]`, as the double JavaScript reads.
fn json_number(b: &[u8], i: &mut usize, js: bool) -> Option<Json> {
    let start = *i;
    if b.get(*i) == Some(&b'-') {
        *i += 1;
    }
    match b.get(*i)? {
        b'0' => *i += 1,
        b'1'..=b'9' => {
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
        }
        _ => return None,
    }
    let mut integer = true;
    if b.get(*i) == Some(&b'.') {
        integer = false;
        *i += 1;
        if !b.get(*i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
    }
    if matches!(b.get(*i), Some(b'e' | b'E')) {
        integer = false;
        *i += 1;
        if matches!(b.get(*i), Some(b'+' | b'-')) {
            *i += 1;
        }
        if !b.get(*i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
    }
    let lit = std::str::from_utf8(&b[start..*i]).ok()?;
    if integer
        && let Ok(n) = lit.parse::<i64>()
        && n.unsigned_abs() <= 1 << 53
        && lit != "-0"
    {
        return Some(Json::from(n));
    }
    let f: f64 = lit.parse().ok()?;
    if f.is_infinite() && js {
        return Some(non_finite());
    }
    let f = if f.is_infinite() {
        f64::MAX.copysign(f)
    } else {
        f
    };
    serde_json::Number::from_f64(f).map(Json::Number)
}
