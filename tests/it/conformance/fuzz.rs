//! Issue 29: differential fuzzing against promptfoo. A proptest generator
//! makes outputs (random Unicode with astral characters, combining marks,
//! case-folding traps and JavaScript's odd whitespace; JSON and YAML blobs
//! with js-yaml's and `JSON.parse`'s edge values, lone surrogate escapes
//! included) and assertions over every supported deterministic type (values
//! derived from the output or not, regexes from a small grammar, JSON
//! schemas, random weights, thresholds and `assert-set`s). All cases go into
//! one cases file, run once through promptfoo (echo provider) and once
//! through `missionctl eval` (echo command harness); every verdict must
//! agree. A difference is shrunk (one assertion alone, no weights, a shorter
//! output) by re-running both tools on the candidates, and printed as a
//! one-line probe to paste into `tests/conformance/fuzz_corpus.yaml`, the
//! seed corpus of past differences, which runs first in every run.
//!
//! `MISSIONCTL_FUZZ_CASES` (default 1000) and `MISSIONCTL_FUZZ_SEED`
//! (default 29) change the volume and the seed.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

use super::{probe_lines, probes_branch_text, promptfoo_run_text};
use crate::llm_server::{LlmServer, Reply, Script};
use crate::util::eval_rows;

/// Answers with the user message, as promptfoo's echo provider answers with
/// the rendered prompt.
fn echo() -> Script {
    std::sync::Arc::new(|body, _| {
        let mut r = missionctl::eval::demo_model::respond(body);
        r["choices"][0]["message"]["content"] = body["messages"][1]["content"].clone();
        Reply::Json(r)
    })
}

/// Characters chosen to find differences: ASCII, astral (two UTF-16 units),
/// combining marks, characters whose case mapping changes length or is
/// locale-sensitive, and every kind of JavaScript whitespace.
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::char::range('a', 'z'),
        2 => proptest::char::range('A', 'Z'),
        2 => proptest::char::range('0', '9'),
        3 => Just(' '),
        3 => proptest::sample::select(vec![
            ',', '.', '"', '\'', '\\', '[', ']', '(', ')', ':', '-', '_', '*', '+', '?', '|', '^',
            '$', '/', '!', '#', '&', '}', '{',
        ]),
        2 => proptest::sample::select(vec!['😀', '𝒜', '🎉', '𐍈', '👍', '\u{1F3FD}']),
        1 => proptest::sample::select(vec!['\u{301}', '\u{308}', '\u{20DD}', '\u{200D}']),
        1 => proptest::sample::select(vec![
            'İ', 'ß', 'Σ', 'ς', 'ﬁ', '\u{212A}', 'é', 'Ω', 'ǅ', 'ı', 'ŉ',
        ]),
        1 => proptest::sample::select(vec![
            '\n', '\t', '\u{a0}', '\u{2028}', '\u{feff}', '\u{85}', '\u{3000}', '\r', '\u{b}',
        ]),
    ]
}

/// Text free of what a Nunjucks template would read (`{{`, `{%`, `{#`, `#}`,
/// which `validate` refuses in a var as promptfoo errors on it) and of
/// `file://`, so both tools echo it as it is.
fn clean(s: String) -> String {
    let mut out = s.replace("file://", "file:/");
    for bad in ["{{", "{%", "{#", "#}"] {
        while out.contains(bad) {
            out = out.replace(bad, &format!("{} {}", &bad[..1], &bad[1..]));
        }
    }
    out
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any_char(), 0..max).prop_map(|v| clean(v.into_iter().collect()))
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex("[a-zA-Z]{1,6}").expect("regex"),
        text(6),
    ]
}

/// A JSON value of limited depth.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1000i64..1000).prop_map(Value::from),
        proptest::sample::select(vec![0.5, -0.0, 1e21, 1e-7, 123.456, 9007199254740993.0])
            .prop_map(|f| json!(f)),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("[a-d]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Scalars whose meaning differs between YAML readers and JavaScript.
const YAML_SCALARS: &[&str] = &[
    "1_000",
    "2024-01-01",
    "2024-02-30",
    "2024-01-01T10:00:00Z",
    "0x1F",
    "-0x1F",
    "017",
    "0o17",
    "0b101",
    ".inf",
    "-.Inf",
    ".nan",
    "yes",
    "No",
    "~",
    "Null",
    "TRUE",
    "1e3",
    "12e400",
    "1.",
    "+1",
    "!!binary aGVsbG8=",
    "!!str 1",
    "!!int \"7\"",
    "!custom x",
    "'q'",
    "\"\\ud800\"",
    "\"\\ud83d\\ude00\"",
    "&a 1",
    "[1, 2]",
    "{x: 1}",
    "1:20",
    "",
    "\"a,b\"",
];

/// JSON texts at `JSON.parse`'s edges.
const JSON_EDGES: &[&str] = &[
    "1e400",
    "-1e400",
    "-0",
    "1.7976931348623157e308",
    "\"\\ud800\"",
    "\"\\udc00x\"",
    "\"\\ud83d\\ude00\"",
    "{\"a\":1,\"a\":2}",
    "[1,]",
    "01",
    "1.",
    "\"\\u00e9\"",
    " [ ] ",
    "{\"a\":1e400}",
    "{\"a\":\"\\ud800\"}",
    "9007199254740993",
    "1E2",
    "true",
    "null",
    "\"\t\"",
];

fn blob() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => json_value().prop_map(|v| v.to_string()),
        1 => json_value().prop_map(|v| serde_json::to_string_pretty(&v).unwrap_or_default()),
        2 => proptest::collection::vec(
            ("[a-c]", proptest::sample::select(YAML_SCALARS.to_vec())),
            1..4,
        )
        .prop_map(|kv| {
            let inner: Vec<String> = kv.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!("{{{}}}", inner.join(", "))
        }),
        2 => proptest::sample::select(JSON_EDGES.to_vec()).prop_map(String::from),
    ]
}

/// The output a case echoes.
fn output() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => text(24),
        3 => blob(),
        2 => (text(8), blob(), text(8)).prop_map(|(a, b, c)| clean(format!("{a}{b}{c}"))),
        1 => proptest::collection::vec(word(), 0..8).prop_map(|w| clean(w.join(" "))),
    ]
}

/// A regex from a small grammar of JavaScript syntax (no `u` flag).
fn regex() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        4 => any_char().prop_map(|c| {
            if "\\^$.|?*+()[]{}/".contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        }),
        1 => proptest::sample::select(vec![
            ".", "\\d", "\\w", "\\s", "\\S", "\\W", "\\b", "[a-z]", "[^a]", "[😀]", "[\\s\\S]",
            "\\u0041", "\\uD83D", "\\x41", "\\u{41}", "[İi]", "\\p{L}", "(?:ab|c)", "(a)\\1",
        ])
        .prop_map(String::from),
    ];
    let piece = (
        atom,
        proptest::sample::select(vec!["", "", "", "*", "+", "?", "{1,3}", "{2}", "*?"]),
    )
        .prop_map(|(a, q)| format!("{a}{q}"));
    (
        proptest::sample::select(vec!["", "", "^"]),
        proptest::collection::vec(piece, 1..4),
        proptest::sample::select(vec!["", "", "$"]),
    )
        .prop_map(|(a, p, z)| format!("{a}{}{z}", p.concat()))
}

fn schema() -> impl Strategy<Value = Value> {
    let ty = proptest::sample::select(vec![
        "string", "number", "integer", "object", "array", "boolean", "null",
    ]);
    prop_oneof![
        ty.clone().prop_map(|t| json!({"type": t})),
        (ty.clone(), "[a-c]").prop_map(|(t, k)| json!({
            "type": "object", "required": [k], "properties": {k: {"type": t}}
        })),
        (0u32..4).prop_map(|n| json!({"type": "string", "maxLength": n})),
        (0u32..4).prop_map(|n| json!({"type": "string", "minLength": n})),
        (-2i64..3).prop_map(|n| json!({"type": "number", "minimum": n})),
        Just(json!({"type": "object", "additionalProperties": false})),
        Just(json!({"type": "array", "items": {"type": "number"}})),
        Just(json!({"not": {"type": "number"}})),
        Just(json!({"type": "string", "format": "date"})),
        Just(json!({"type": "object", "properties": {"a": {"enum": [1, "x", null]}}})),
    ]
}

/// A slice of `s` by characters (or the whole), maybe with its case flipped.
fn derived(s: &str, a: usize, b: usize, flip: bool) -> String {
    let chars: Vec<char> = s.chars().collect();
    let (a, b) = (a % (chars.len() + 1), b % (chars.len() + 1));
    let part: String = chars[a.min(b)..a.max(b)].iter().collect();
    if flip {
        part.chars()
            .map(|c| {
                if c.is_lowercase() {
                    c.to_uppercase().next().unwrap_or(c)
                } else {
                    c.to_lowercase().next().unwrap_or(c)
                }
            })
            .collect()
    } else {
        part
    }
}

/// One assertion on `out`.
fn assertion(out: String) -> impl Strategy<Value = Value> {
    let kinds = proptest::sample::select(vec![
        "equals",
        "contains",
        "icontains",
        "starts-with",
        "contains-any",
        "contains-all",
        "icontains-any",
        "icontains-all",
        "regex",
        "is-json",
        "contains-json",
        "levenshtein",
        "word-count",
    ]);
    (
        kinds,
        proptest::bool::weighted(0.3),
        (
            any::<usize>(),
            any::<usize>(),
            proptest::bool::weighted(0.3),
        ),
        prop_oneof![3 => Just(None), 1 => word().prop_map(Some)],
        regex(),
        prop_oneof![2 => Just(None), 3 => schema().prop_map(Some)],
        (0u32..7, 0u32..12, 0u32..12),
        proptest::collection::vec((any::<usize>(), any::<usize>()), 1..4),
    )
        .prop_map(
            move |(kind, not, (a, b, flip), other, re, sch, (t, lo, hi), picks)| {
                let d = other.clone().unwrap_or_else(|| derived(&out, a, b, flip));
                let kind_s = if not {
                    format!("not-{kind}")
                } else {
                    kind.to_string()
                };
                let mut x = json!({"type": kind_s});
                match kind {
                    "equals" => {
                        x["value"] = match (flip, serde_json::from_str::<Value>(&out).ok()) {
                            (true, Some(v @ (Value::Object(_) | Value::Array(_)))) => v,
                            _ if other.is_none() && a % 2 == 0 => json!(out),
                            _ => json!(d),
                        }
                    }
                    "contains" | "icontains" | "starts-with" => x["value"] = json!(d),
                    "contains-any" | "contains-all" | "icontains-any" | "icontains-all" => {
                        let items: Vec<String> = picks
                            .iter()
                            .map(|(p, q)| derived(&out, *p, *q, flip))
                            .collect();
                        x["value"] = if a % 2 == 0 {
                            json!(items)
                        } else {
                            json!(items.join(","))
                        }
                    }
                    "regex" => {
                        x["value"] = if a % 3 == 0 {
                            json!(regex_syntax_escape(&d))
                        } else {
                            json!(re)
                        }
                    }
                    "is-json" | "contains-json" => {
                        if let Some(s) = sch {
                            x["value"] = s;
                        }
                    }
                    "levenshtein" => {
                        x["value"] = json!(d);
                        x["threshold"] = json!(t);
                    }
                    "word-count" => {
                        x["value"] = match a % 3 {
                            0 => json!(t),
                            1 => json!({"min": lo.min(hi), "max": lo.max(hi)}),
                            _ => json!({"max": hi}),
                        }
                    }
                    _ => {}
                }
                x
            },
        )
}

fn regex_syntax_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if "\\^$.|?*+()[]{}/".contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A test: an output and one to three assertions, with random weights, a
/// random threshold, sometimes grouped in an `assert-set`.
fn test_case() -> impl Strategy<Value = Value> {
    output().prop_flat_map(|out| {
        let weight = prop_oneof![
            4 => Just(None),
            1 => proptest::sample::select(vec![0.0, 0.5, 1.0, 2.0, 3.0]).prop_map(Some),
        ];
        (
            Just(out.clone()),
            proptest::collection::vec((assertion(out), weight), 1..4),
            prop_oneof![
                3 => Just(None),
                1 => proptest::sample::select(vec![0.0, 0.25, 0.5, 0.75, 1.0]).prop_map(Some),
            ],
            proptest::bool::weighted(0.1),
        )
            .prop_map(|(out, asserts, threshold, set)| {
                let mut list: Vec<Value> = asserts
                    .into_iter()
                    .map(|(mut a, w)| {
                        if let Some(w) = w {
                            a["weight"] = json!(w);
                        }
                        a
                    })
                    .collect();
                if set && list.len() > 1 {
                    let inner = list.split_off(1);
                    list.push(json!({"type": "assert-set", "assert": inner, "threshold": 0.5}));
                }
                let mut t = json!({"vars": {"out": out}, "assert": list});
                if let Some(th) = threshold {
                    t["threshold"] = json!(th);
                }
                t
            })
    })
}

/// The verdicts of both tools on `tests` (each with a unique description):
/// (description, promptfoo passed, missionctl's outcome).
fn run_both(tests: &[Value]) -> Vec<(String, bool, String)> {
    let text: String = tests.iter().map(|t| format!("- {t}\n")).collect();
    let pf_dir = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let theirs: BTreeMap<String, bool> = promptfoo_run_text(pf_dir.path(), "fuzz.yaml", &text)
        .expect("promptfoo read the fuzz cases")
        .into_iter()
        .map(|(d, ok, _)| (d, ok))
        .collect();
    let pf_time = started.elapsed();
    // An OpenAI-compatible echo in this process: a command harness would
    // start a Python process per case.
    let server = LlmServer::start(echo());
    let r = crate::gate::gate_repo(&server, false);
    probes_branch_text(&r, None, &text);
    let started = std::time::Instant::now();
    let (out, ev) = r.evaluate("eval", "probes", &[("TEST_LLM_KEY", "k")]);
    eprintln!(
        "{} cases: promptfoo {pf_time:?}, missionctl eval {:?}",
        tests.len(),
        started.elapsed()
    );
    let ours: BTreeMap<String, String> = eval_rows(&ev, &out)
        .iter()
        .filter(|x| x["pack_id"] == "probes-pack")
        .map(|x| {
            (
                x["case_id"].as_str().unwrap_or_default().to_string(),
                x["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    tests
        .iter()
        .map(|t| {
            let d = t["description"].as_str().expect("description").to_string();
            let pf = *theirs
                .get(&d)
                .unwrap_or_else(|| panic!("promptfoo did not run {d}"));
            let mine = ours
                .get(&d.replace(' ', "-"))
                .cloned()
                .unwrap_or_else(|| "missing".into());
            (d, pf, mine)
        })
        .collect()
}

/// Smaller versions of a test: each assertion alone, without weights or
/// threshold, with a shorter output.
fn candidates(t: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let asserts = t["assert"].as_array().cloned().unwrap_or_default();
    if asserts.len() > 1 {
        for a in &asserts {
            let mut c = t.clone();
            c["assert"] = json!([a]);
            out.push(c);
        }
    }
    if t.get("threshold").is_some() {
        let mut c = t.clone();
        c.as_object_mut().map(|m| m.remove("threshold"));
        out.push(c);
    }
    if asserts.iter().any(|a| a.get("weight").is_some()) {
        let mut c = t.clone();
        for a in c["assert"].as_array_mut().into_iter().flatten() {
            a.as_object_mut().map(|m| m.remove("weight"));
        }
        out.push(c);
    }
    if let [a] = &asserts[..]
        && a["type"] == "assert-set"
    {
        for inner in a["assert"].as_array().into_iter().flatten() {
            let mut c = t.clone();
            c["assert"] = json!([inner]);
            out.push(c);
        }
    }
    let o: Vec<char> = t["vars"]["out"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .collect();
    if o.len() > 1 {
        for (a, b) in [
            (0, o.len() / 2),
            (o.len() / 2, o.len()),
            (1, o.len()),
            (0, o.len() - 1),
        ] {
            let mut c = t.clone();
            c["vars"]["out"] = json!(clean(o[a..b].iter().collect()));
            out.push(c);
        }
    }
    out
}

fn size(t: &Value) -> usize {
    t.to_string().len()
}

/// Shrink each differing test as far as both tools keep disagreeing.
fn shrink(mut differing: Vec<Value>) -> Vec<Value> {
    differing.truncate(25);
    for _round in 0..4 {
        let mut batch = Vec::new();
        let mut owner = Vec::new();
        for (i, t) in differing.iter().enumerate() {
            for mut c in candidates(t) {
                c["description"] = json!(format!("sh {:05}", batch.len()));
                batch.push(c);
                owner.push(i);
            }
        }
        if batch.is_empty() {
            break;
        }
        let verdicts = run_both(&batch);
        let mut progress = false;
        for ((c, i), (_, pf, mine)) in batch.iter().zip(&owner).zip(&verdicts) {
            if *pf != (mine == "pass") && size(c) < size(&differing[*i]) {
                let mut c = c.clone();
                c["description"] = differing[*i]["description"].clone();
                differing[*i] = c;
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    differing
}

#[test]
fn missionctl_and_promptfoo_agree_on_generated_cases() {
    let count: usize = std::env::var("MISSIONCTL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seed: u64 = std::env::var("MISSIONCTL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(29);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    // The seed corpus first: past differences, kept as regression probes.
    let mut tests: Vec<Value> = probe_lines("fuzz_corpus.yaml")
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let corpus = tests.len();
    let strategy = test_case();
    for i in 0..count {
        let mut t = strategy
            .new_tree(&mut runner)
            .expect("a generated case")
            .current();
        t["description"] = json!(format!("fz {i:05}"));
        tests.push(t);
    }
    let verdicts = run_both(&tests);
    assert_eq!(verdicts.len(), count + corpus);
    let differing: Vec<Value> = tests
        .iter()
        .zip(&verdicts)
        .filter(|(_, (_, pf, mine))| *pf != (mine == "pass"))
        .map(|(t, _)| t.clone())
        .collect();
    if differing.is_empty() {
        return;
    }
    let n = differing.len();
    let small = shrink(differing);
    let again = run_both(&small);
    let lines: Vec<String> = small
        .iter()
        .zip(&again)
        .map(|(t, (_, pf, mine))| {
            format!("- {t}\n    # promptfoo passes: {pf}, missionctl: {mine}")
        })
        .collect();
    panic!(
        "{n} of {} generated cases (seed {seed}, corpus {corpus}) differ between promptfoo and missionctl; shrunk reproductions (one-line probes for tests/conformance/fuzz_corpus.yaml):\n{}",
        count + corpus,
        lines.join("\n")
    );
}
