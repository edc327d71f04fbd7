//! YAML with a position on every value.
//!
//! Every pack file is parsed once into a [`Node`] tree in which each value and
//! each mapping key keeps its line and column (serde-saphyr's `Spanned`). The
//! tree converts to `serde_json::Value` for JSON Schema validation and typed
//! deserialization, and a JSON Pointer from either of those maps back to the
//! exact YAML position, so every diagnostic can point at the line an author
//! must edit. Budgets bound alias expansion and nesting so hostile input
//! (alias bombs, deep nesting) fails with an error instead of eating memory.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Budget, Spanned};

/// A 1-based line and column in a source file. `line == 0` means unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord, serde::Serialize)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    #[cfg(test)]
    fn is_known(&self) -> bool {
        self.line > 0
    }

    pub const UNKNOWN: Pos = Pos { line: 0, col: 0 };
    /// A problem with a whole file that exists (too large, not a regular
    /// file): its first line, so editors and GitHub annotations attach it to
    /// the file. Line 0 stays for what has no line at all (a missing file).
    pub const WHOLE_FILE: Pos = Pos { line: 1, col: 1 };

    pub fn new(line: u32, col: u32) -> Self {
        Pos { line, col }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

fn pos_of<T>(s: &Spanned<T>) -> Pos {
    let loc = s.referenced;
    Pos {
        line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
        col: u32::try_from(loc.column()).unwrap_or(u32::MAX),
    }
}

/// One YAML value with its children. Mapping entries keep their order and the
/// position of the key as well as of the value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

impl Node {
    /// The mapping entry `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// Position of the key `key` in this mapping (where an author looks for a field).
    pub(crate) fn key_pos(&self, key: &str) -> Option<Pos> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| e.key_pos),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Follow a JSON Pointer (RFC 6901) and return the deepest node reached and
    /// whether the whole pointer was consumed. Schema errors about a missing
    /// property land on the parent, which is where the author must add it.
    pub(crate) fn locate(&self, pointer: &str) -> (&Node, bool) {
        let mut node = self;
        if pointer.is_empty() {
            return (node, true);
        }
        for raw in pointer.trim_start_matches('/').split('/') {
            let seg = raw.replace("~1", "/").replace("~0", "~");
            let next = match &node.value {
                Value::Map(entries) => entries.iter().find(|e| e.key == seg).map(|e| &e.value),
                Value::Seq(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => return (node, false),
            }
        }
        (node, true)
    }

    /// Position for a pointer: the value's own position when it exists.
    pub(crate) fn pos_at(&self, pointer: &str) -> Pos {
        self.locate(pointer).0.pos
    }

    /// Position of the last key named by `pointer` (e.g. `/tools/allow` gives
    /// the position of `allow:`), falling back to the value position.
    pub(crate) fn key_pos_at(&self, pointer: &str) -> Pos {
        let Some((parent, last)) = pointer.rsplit_once('/') else {
            return self.pos;
        };
        let (p, found) = self.locate(parent);
        if found {
            let key = last.replace("~1", "/").replace("~0", "~");
            if let Some(kp) = p.key_pos(&key) {
                return kp;
            }
        }
        self.pos_at(pointer)
    }

    /// Convert to JSON for schema validation and typed deserialization.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => serde_json::Value::Number(n.clone()),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }
}

/// The raw value before positions are attached; serde-saphyr fills in the
/// position through `Spanned` around it.
struct RawValue(Value);

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor).map(RawValue)
    }
}

/// A mapping key of any scalar type, as text (`1: x` has the key "1").
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match RawVisitor.visit_any(d)? {
            Value::String(s) => Ok(KeyText(s)),
            Value::Number(n) => Ok(KeyText(n.to_string())),
            Value::Bool(b) => Ok(KeyText(b.to_string())),
            Value::Null => Ok(KeyText("null".into())),
            _ => Err(de::Error::custom(
                "mapping keys must be plain text; quote the key or restructure the mapping",
            )),
        }
    }
}

struct RawVisitor;

impl RawVisitor {
    fn visit_any<'de, D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        match serde_json::Number::from_f64(v) {
            Some(n) => Ok(Value::Number(n)),
            None => Err(E::custom(
                "non-finite numbers (.nan, .inf) are not allowed; write a finite number",
            )),
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_bytes<E: de::Error>(self, _v: &[u8]) -> Result<Value, E> {
        Err(E::custom("binary values are not allowed in pack files"))
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawValue>>()? {
            let pos = pos_of(&item);
            items.push(Node {
                pos,
                value: item.value.0,
            });
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let key_pos = pos_of(&key);
            let value = map.next_value::<Spanned<RawValue>>()?;
            let pos = pos_of(&value);
            entries.push(Entry {
                key: key.value.0,
                key_pos,
                value: Node {
                    pos,
                    value: value.value.0,
                },
            });
        }
        Ok(Value::Map(entries))
    }
}

/// Why a document could not be read as YAML.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
    /// True when a budget (aliases, events, depth) stopped the parse.
    pub budget: bool,
}

/// Budgets sized for hand-written configuration: generous for real packs,
/// fatal for alias bombs ("billion laughs") and pathological nesting.
fn budget() -> Budget {
    let mut b = Budget::default();
    b.max_events = 200_000;
    b.max_aliases = 2_000;
    b.max_anchors = 2_000;
    b.max_depth = 64;
    b.max_nodes = 100_000;
    b
}

/// Parse one YAML document into a positioned tree.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut options = serde_saphyr::options! {
        budget: Some(budget()),
        strict_booleans: true,
        with_snippet: false,
    };
    options.alias_limits.max_total_replayed_events = 20_000;
    match serde_saphyr::from_str_with_options::<Spanned<RawValue>>(text, options) {
        Ok(s) => Ok(Node {
            pos: pos_of(&s),
            value: s.value.0,
        }),
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: u32::try_from(l.line()).unwrap_or(0),
                    col: u32::try_from(l.column()).unwrap_or(0),
                })
                .unwrap_or(Pos::UNKNOWN);
            Err(YamlError {
                pos,
                message: clean_message(&e.without_snippet().to_string()),
                budget: is_budget(&e),
            })
        }
    }
}

/// Whether a limit we set (budget, alias replay, input size) stopped the
/// parse, rather than a mistake in the document: decided from the error's
/// variant, so a reworded message cannot change it.
fn is_budget(mut e: &serde_saphyr::Error) -> bool {
    use serde_saphyr::Error as E;
    while let E::AliasError { error, .. } | E::WithSnippet { error, .. } = e {
        e = error;
    }
    match e {
        E::Budget { .. }
        | E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => true,
        E::IOError { cause } => cause.kind() == std::io::ErrorKind::FileTooLarge,
        _ => false,
    }
}

/// serde-saphyr prefixes messages with "line X column Y:"; we print positions
/// ourselves, so strip it to avoid saying the location twice.
fn clean_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw).trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    if let Some(rest) = first.strip_prefix("line ")
        && let Some(idx) = rest.find(": ")
        && rest[..idx].contains("column")
    {
        return rest[idx + 2..].to_string();
    }
    first.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_on_keys_and_values() {
        let doc = parse("a: 1\nb:\n  - x\n  - {c: true}\n").expect("valid yaml");
        assert_eq!(doc.key_pos("b"), Some(Pos::new(2, 1)));
        assert_eq!(doc.pos_at("/b/1/c"), Pos::new(4, 9));
        assert_eq!(doc.key_pos_at("/b/1/c"), Pos::new(4, 6));
        assert_eq!(doc.pos_at("/a"), Pos::new(1, 4));
        let (n, found) = doc.locate("/b/7");
        assert!(!found);
        assert_eq!(n.pos, Pos::new(3, 3));
    }

    #[test]
    fn json_keeps_order_and_types() {
        let doc = parse("z: 1\na: [1.5, 'x', null, yes]\n").expect("valid yaml");
        assert_eq!(
            doc.to_json().to_string(),
            r#"{"z":1,"a":[1.5,"x",null,"yes"]}"#
        );
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut s = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='j' {
            s.push_str(&format!(
                "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = c;
        }
        let err = parse(&s).expect_err("bomb must fail");
        assert!(err.budget, "{err:?}");
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("a: [1, 2\nb: 3\n").expect_err("unclosed flow");
        assert!(err.pos.is_known(), "{err:?}");
        assert!(!err.budget, "{err:?}");
    }

    #[test]
    fn nesting_past_the_depth_budget_is_a_budget_error() {
        let doc = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
        let err = parse(&doc).expect_err("too deep");
        assert!(err.budget, "{err:?}");
    }

    #[test]
    fn duplicate_keys_rejected() {
        let err = parse("a: 1\na: 2\n").expect_err("duplicate");
        assert_eq!(err.pos.line, 2, "{err:?}");
    }
}
