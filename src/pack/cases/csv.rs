//! CSV test files (`tests: file://tests.csv`) as promptfoo 0.121 reads them:
//! csv-parse with a header row (`columns: true`, a BOM dropped, `,`
//! between fields, quotes kept literally inside an unquoted field as its
//! `relax_quotes` retry does), then its `testCaseFromCsvRow` for each row
//! (`__expected…` columns through `assertionFromString`, `__description`,
//! `__metric`, `__threshold`, `__metadata:…`, `__config:…:threshold`, every
//! other column a var) and `csvRowsToTestCases` (`description ||= "Row #N"`).

use serde_json::{Map, Value as Json, json};

use crate::yaml::{self, Node, Pos};

/// One record: the line it starts on and its fields.
type Record = (u32, Vec<String>);

/// csv-parse's records of `text` as promptfoo gets them (strict, then
/// `relax_quotes` when strict fails, which gives the same records where
/// strict succeeds): the record delimiter is the first line break outside
/// quotes (`\r\n`, `\n` or `\r`), any other is data; `""` inside quotes is
/// a quote; a closing quote followed by anything but `,` or the record
/// delimiter makes the field literal text from its opening quote on; a quote
/// inside an unquoted field is text.
fn records(text: &str) -> Result<Vec<Record>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let c: Vec<char> = text.chars().collect();
    let mut delim: Option<&'static str> = None;
    // The record delimiter at `i`, if one is there (detecting it at the
    // first line break): its length in chars.
    let at_delim = |i: usize, delim: &mut Option<&'static str>| -> Option<usize> {
        let d = match *delim {
            Some(d) => d,
            None => {
                let d = match (c.get(i), c.get(i + 1)) {
                    (Some('\r'), Some('\n')) => "\r\n",
                    (Some('\r'), _) => "\r",
                    (Some('\n'), _) => "\n",
                    _ => return None,
                };
                *delim = Some(d);
                d
            }
        };
        let n = d.chars().count();
        (c.len() >= i + n && c[i..i + n].iter().copied().eq(d.chars())).then_some(n)
    };
    let lines_in = |s: &[char]| {
        let mut n = 0u32;
        for (k, ch) in s.iter().enumerate() {
            if *ch == '\n' || (*ch == '\r' && s.get(k + 1) != Some(&'\n')) {
                n += 1;
            }
        }
        n
    };
    let mut out: Vec<Record> = Vec::new();
    let (mut i, mut line) = (0usize, 1u32);
    let mut fields: Vec<String> = Vec::new();
    let mut record_line = 1u32;
    let mut field_start = true;
    while i < c.len() {
        let start = i;
        let mut field = String::new();
        if c[i] == '"' {
            // A quoted field.
            i += 1;
            loop {
                match c.get(i) {
                    None => {
                        return Err(format!(
                            "line {record_line}: a quote that is never closed (csv-parse's \"Quote Not Closed\")"
                        ));
                    }
                    Some('"') if c.get(i + 1) == Some(&'"') => {
                        field.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        field.push(*ch);
                        i += 1;
                    }
                }
            }
            let ends = i == c.len() || c[i] == ',' || at_delim(i, &mut delim).is_some();
            if !ends {
                // relax_quotes: the field is text from its opening quote.
                field = format!("\"{field}\"");
            }
        }
        // Unquoted text (or what follows a quoted field read as text).
        while i < c.len() && c[i] != ',' && at_delim(i, &mut delim).is_none() {
            field.push(c[i]);
            i += 1;
        }
        line += lines_in(&c[start..i]);
        fields.push(field);
        field_start = false;
        if i == c.len() {
            break;
        }
        if c[i] == ',' {
            i += 1;
            field_start = true;
            if i == c.len() {
                fields.push(String::new());
            }
            continue;
        }
        let n = at_delim(i, &mut delim).unwrap_or(1);
        line += lines_in(&c[i..i + n]);
        i += n;
        out.push((record_line, std::mem::take(&mut fields)));
        record_line = line;
        field_start = true;
    }
    if !fields.is_empty() || !field_start {
        out.push((record_line, fields));
    }
    Ok(out)
}

/// The tests of a CSV test file, each with the line of its row, as
/// promptfoo builds them; `Err` is what promptfoo errors with.
pub(super) fn tests(text: &str) -> Result<Vec<(u32, Json)>, String> {
    let mut recs = records(text)?.into_iter();
    let Some((_, header)) = recs.next() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (idx, (line, fields)) in recs.enumerate() {
        if fields.len() != header.len() {
            return Err(format!(
                "line {line}: Invalid Record Length: columns length is {}, got {} (csv-parse refuses the file)",
                header.len(),
                fields.len()
            ));
        }
        // An object's entries: a repeated column keeps its first place
        // and its last value.
        let mut row: Vec<(String, String)> = Vec::new();
        for (k, v) in header.iter().zip(fields) {
            match row.iter_mut().find(|(rk, _)| rk == k) {
                Some(e) => e.1 = v,
                None => row.push((k.clone(), v)),
            }
        }
        let mut test = from_row(&row).map_err(|e| format!("line {line}: {e}"))?;
        if test.get("description").is_none() {
            test["description"] = json!(format!("Row #{}", idx + 1));
        }
        out.push((line, test));
    }
    Ok(out)
}

/// promptfoo's `testCaseFromCsvRow`.
fn from_row(row: &[(String, String)]) -> Result<Json, String> {
    let trim = crate::js::trim;
    let mut vars = Map::new();
    let mut asserts: Vec<Json> = Vec::new();
    let mut options = Map::new();
    let mut metadata = Map::new();
    let mut configs: Vec<(usize, f64)> = Vec::new();
    let (mut description, mut metric, mut threshold) = (None, None, None);
    let mut provider_output = None;
    for (key, value) in row {
        let key = trim(key);
        if key.starts_with("__expected") {
            if !trim(value).is_empty() {
                asserts.push(assertion_from_string(trim(value)));
            }
        } else if key == "__prefix" || key == "__suffix" {
            // An empty prefix or suffix changes no prompt.
            if !value.is_empty() {
                options.insert(key[2..].into(), json!(value));
            }
        } else if key == "__description" {
            description = Some(value.clone());
        } else if key == "__providerOutput" {
            provider_output = Some(value.clone()).filter(|v| !v.is_empty());
        } else if key == "__metric" {
            metric = Some(value.clone());
        } else if key == "__threshold" {
            threshold = finite_number(value);
        } else if let Some(m) = key.strip_prefix("__metadata:") {
            if let Some(list) = m.strip_suffix("[]") {
                if !trim(value).is_empty() {
                    metadata.insert(list.into(), json!(split_unescaped(value)));
                }
            } else if !trim(value).is_empty() {
                metadata.insert(m.into(), json!(value));
            }
        } else if key == "__metadata" {
            // promptfoo warns and ignores the column.
        } else if let Some(c) = key.strip_prefix("__config:") {
            let parts: Vec<&str> = c.split(':').collect();
            let [expected, config] = parts[..] else {
                continue; // promptfoo warns and ignores the column
            };
            let index = if expected == "__expected" {
                Some(0)
            } else {
                expected
                    .strip_prefix("__expected")
                    .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|d| d.parse::<usize>().ok())
                    .filter(|n| *n >= 1)
                    .map(|n| n - 1)
            };
            let Some(index) = index else {
                return Err(format!(
                    "Invalid expected key \"{expected}\" in __config column"
                ));
            };
            if config != "threshold" {
                return Err(format!(
                    "Invalid config key \"{config}\" in __config column"
                ));
            }
            let Some(t) = finite_number(value) else {
                return Err(format!("Invalid numeric value for {config}"));
            };
            configs.retain(|(i, _)| *i != index);
            configs.push((index, t));
        } else {
            vars.insert(key.into(), json!(value));
        }
    }
    for (i, a) in asserts.iter_mut().enumerate() {
        if let Some(m) = &metric {
            a["metric"] = json!(m);
        }
        if let Some((_, t)) = configs.iter().find(|(c, _)| *c == i) {
            a["threshold"] = json!(t);
            metadata.insert("threshold".into(), json!(t));
        }
    }
    let mut test = json!({ "vars": vars, "assert": asserts });
    if !options.is_empty() {
        test["options"] = Json::Object(options);
    }
    if let Some(d) = description.filter(|d| !d.is_empty()) {
        test["description"] = json!(d);
    }
    if let Some(p) = provider_output {
        test["providerOutput"] = json!(p);
    }
    if let Some(t) = threshold {
        test["threshold"] = json!(t);
    }
    if !metadata.is_empty() {
        test["metadata"] = Json::Object(metadata);
    }
    Ok(test)
}

/// promptfoo's `parseFiniteNumber`: a whole numeric literal, finite.
fn finite_number(value: &str) -> Option<f64> {
    let t = crate::js::trim(value);
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let m = mantissa.strip_prefix(['+', '-']).unwrap_or(mantissa);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let m_ok = match m.split_once('.') {
        Some((a, b)) => (digits(a) && (b.is_empty() || digits(b))) || (a.is_empty() && digits(b)),
        None => digits(m),
    };
    let e_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    if !(m_ok && e_ok) {
        return None;
    }
    t.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// `value.split(/(?<!\\),/)`, each part trimmed and `\,` made `,`.
fn split_unescaped(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut prev = None;
    for c in value.chars() {
        if c == ',' && prev != Some('\\') {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
        prev = Some(c);
    }
    parts.push(cur);
    parts
        .iter()
        .map(|p| crate::js::trim(p).replace("\\,", ","))
        .collect()
}

/// promptfoo 0.121's `BaseAssertionTypesSchema`, in its order (the order
/// its `assertionFromString` regex tries them).
const BASE_TYPES: &[&str] = &[
    "agent-rubric",
    "answer-relevance",
    "bleu",
    "classifier",
    "contains",
    "contains-all",
    "contains-any",
    "contains-html",
    "contains-json",
    "contains-sql",
    "contains-xml",
    "context-faithfulness",
    "context-recall",
    "context-relevance",
    "conversation-relevance",
    "cost",
    "equals",
    "factuality",
    "finish-reason",
    "g-eval",
    "gleu",
    "guardrails",
    "icontains",
    "icontains-all",
    "icontains-any",
    "is-html",
    "is-json",
    "is-refusal",
    "is-sql",
    "is-valid-function-call",
    "is-valid-openai-function-call",
    "is-valid-openai-tools-call",
    "is-xml",
    "javascript",
    "latency",
    "levenshtein",
    "llm-rubric",
    "pi",
    "meteor",
    "model-graded-closedqa",
    "model-graded-factuality",
    "moderation",
    "perplexity",
    "perplexity-score",
    "python",
    "regex",
    "rouge-n",
    "ruby",
    "similar",
    "similar:cosine",
    "similar:dot",
    "similar:euclidean",
    "starts-with",
    "tool-call-f1",
    "skill-used",
    "trajectory:goal-success",
    "trajectory:tool-args-match",
    "trajectory:step-count",
    "trajectory:tool-sequence",
    "trajectory:tool-used",
    "trace-error-spans",
    "trace-span-count",
    "trace-span-duration",
    "search-rubric",
    "webhook",
    "word-count",
];

/// The match of promptfoo's
/// `^(not-)?(TYPES)(?:\((\d+(?:\.\d+)?)\))?(?::([\s\S]*))?$`: the negation,
/// the type (the first alternative that lets the rest match), the
/// threshold text and the value.
fn assertion_regex(s: &str) -> Option<(bool, &'static str, Option<&str>, Option<&str>)> {
    // No type starts with `not-`, so a leading `not-` is always the prefix.
    let (not, rest) = match s.strip_prefix("not-") {
        Some(r) => (true, r),
        None => (false, s),
    };
    /// What may follow the type (and threshold): nothing, or `:value`.
    fn tail(after: &str) -> Option<Option<&str>> {
        match after {
            "" => Some(None),
            _ => after.strip_prefix(':').map(Some),
        }
    }
    for &t in BASE_TYPES {
        let Some(after) = rest.strip_prefix(t) else {
            continue;
        };
        if let Some(inner) = after.strip_prefix('(')
            && let Some(close) = inner.find(')')
        {
            let num = &inner[..close];
            let (int, frac) = match num.split_once('.') {
                Some((a, b)) => (a, Some(b)),
                None => (num, None),
            };
            let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
            if digits(int)
                && frac.is_none_or(digits)
                && let Some(v) = tail(&inner[close + 1..])
            {
                return Some((not, t, Some(num), v));
            }
        }
        if let Some(v) = tail(after) {
            return Some((not, t, None, v));
        }
    }
    None
}

/// promptfoo's `assertionFromString` for a trimmed `__expected` cell.
fn assertion_from_string(expected: &str) -> Json {
    let js_file = |p: &str| {
        [".js", ".cjs", ".mjs", ".ts", ".cts", ".mts"]
            .iter()
            .any(|x| p.ends_with(x))
    };
    for prefix in ["javascript:", "fn:", "eval:"] {
        if let Some(v) = expected.strip_prefix(prefix) {
            return json!({"type": "javascript", "value": crate::js::trim(v)});
        }
    }
    if let Some(p) = expected.strip_prefix("file://")
        && js_file(p)
    {
        return json!({"type": "javascript", "value": expected});
    }
    if let Some(v) = expected.strip_prefix("grade:") {
        return json!({"type": "llm-rubric", "value": v});
    }
    if let Some(v) = expected.strip_prefix("llm-rubric:") {
        return json!({"type": "llm-rubric", "value": v});
    }
    if expected.starts_with("python:")
        || (expected.starts_with("file://")
            && (expected.ends_with(".py") || expected.contains(".py:")))
    {
        return json!({"type": "python", "value": crate::js::trim(&expected[7..])});
    }
    let Some((not, t, threshold, value)) = assertion_regex(expected) else {
        return json!({"type": "equals", "value": expected});
    };
    let kind = if not {
        format!("not-{t}")
    } else {
        t.to_string()
    };
    let mut a = json!({ "type": kind });
    match t {
        "contains-all" | "contains-any" | "icontains-all" | "icontains-any" => {
            if let Some(v) = value {
                // promptfoo splits it here; the same split as a string value.
                a["value"] = match crate::js::comma_separated(v) {
                    Some(parts) if !v.is_empty() => json!(parts),
                    _ => json!(v),
                };
            }
        }
        "contains-json" | "is-json" => {
            if let Some(v) = value {
                a["value"] = json!(v);
            }
        }
        _ => {
            if let Some(v) = value {
                a["value"] = json!(crate::js::trim(v));
            }
            let thresholded = [
                "answer-relevance",
                "classifier",
                "context-faithfulness",
                "context-recall",
                "context-relevance",
                "cost",
                "latency",
                "levenshtein",
                "perplexity-score",
                "perplexity",
                "rouge-n",
                "similar",
                "starts-with",
            ];
            if thresholded.contains(&t) {
                let default = if t == "similar" { 0.8 } else { 0.75 };
                let n = threshold.and_then(finite_number).unwrap_or(default);
                a["threshold"] = json!(n);
            }
        }
    }
    a
}

/// A YAML node for a test built from a CSV row: every position the row's.
pub(super) fn node_of(v: &Json, pos: Pos) -> Node {
    let value = match v {
        Json::Null => yaml::Value::Null,
        Json::Bool(b) => yaml::Value::Bool(*b),
        Json::Number(n) => yaml::Value::Number(n.clone()),
        Json::String(s) => yaml::Value::String(s.clone()),
        Json::Array(a) => yaml::Value::Seq(a.iter().map(|x| node_of(x, pos)).collect()),
        Json::Object(m) => yaml::Value::Map(
            m.iter()
                .map(|(k, x)| yaml::Entry {
                    key: k.clone(),
                    key_pos: pos,
                    value: node_of(x, pos),
                })
                .collect(),
        ),
    };
    Node { pos, value }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What csv-parse 5 (promptfoo 0.121's) gives for these files, checked
    /// with node: quotes doubled inside quotes, a quote kept inside an
    /// unquoted field, fields across lines, CRLF and CR, a BOM, a repeated
    /// column, and its errors.
    #[test]
    fn records_as_csv_parse_reads_them() {
        let fields = |t: &str| {
            records(t)
                .expect("ok")
                .into_iter()
                .map(|(_, f)| f)
                .collect::<Vec<_>>()
        };
        assert_eq!(fields("a,b\n1,2\n"), [["a", "b"], ["1", "2"]]);
        assert_eq!(fields("a,b\r\n1,2"), [["a", "b"], ["1", "2"]]);
        assert_eq!(fields("a,b\r1,2\r"), [["a", "b"], ["1", "2"]]);
        assert_eq!(fields("\u{feff}a,b\n\"x\"\"y\",2\n")[1], ["x\"y", "2"]);
        assert_eq!(fields("a,b\nx\"y,2\n")[1], ["x\"y", "2"]);
        assert_eq!(fields("a,b\n\"multi\nline\",2\n")[1], ["multi\nline", "2"]);
        assert_eq!(fields("a,b\n ,\n")[1], [" ", ""]);
        assert_eq!(
            fields("a\n\n\n1\n"),
            [vec!["a"], vec![""], vec![""], vec!["1"]]
        );
        assert!(fields("").is_empty());
        assert!(records("a,b\n\"x\n").is_err());
        // relax_quotes: a closing quote followed by text makes the field text.
        assert_eq!(fields("a,b\n\"x\"y,2\n")[1], ["\"x\"y", "2"]);
        assert_eq!(fields("a,b\n\"x,y\"z,2\n")[1], ["\"x,y\"z", "2"]);
        assert_eq!(fields("a,b\n\"x\"\"y\"z,2\n")[1], ["\"x\"y\"z", "2"]);
        assert_eq!(fields("a\n\"x\" \n")[1], ["\"x\" "]);
        // The record delimiter is the first line break; others are data.
        assert_eq!(
            fields("a\r\nx\ny\r\nz\r\n"),
            [vec!["a"], vec!["x\ny"], vec!["z"]]
        );
        assert_eq!(fields("a,b\n1,2\r\n3,4\n")[1], ["1", "2\r"]);
        assert_eq!(fields("a\n\"x\"\r\n")[1], ["\"x\"\r"]);
        // Record lengths: a blank line in a two-column file is an error.
        assert!(tests("a,b\n\n1,2\n").is_err());
        assert!(tests("a,b\n1,2,3\n").is_err());
        let t = tests("a,a\n1,2\n").expect("ok");
        assert_eq!(t[0].1["vars"], json!({"a": "2"}));
        // Each record's line.
        let t = tests("a,b\n\"x\ny\",1\n3,4\n").expect("ok");
        assert_eq!((t[0].0, t[1].0), (2, 4));
    }

    /// promptfoo 0.121's `testCaseFromCsvRow` and `assertionFromString`,
    /// as simple-csv uses them and at their edges (each expectation checked
    /// with promptfoo's own functions under node).
    #[test]
    fn rows_become_tests_as_promptfoo_builds_them() {
        let t = tests(
            "language,__expected,__expected2, __metric ,__threshold,__description\nFrench,icontains:bonjour,\"contains-any:a, \"\"b,c\"\"\",m,0.5,\n",
        )
        .expect("ok");
        assert_eq!(
            t[0].1,
            json!({
                "vars": {"language": "French"},
                "assert": [
                    {"type": "icontains", "value": "bonjour", "metric": "m"},
                    {"type": "contains-any", "value": ["a", "b,c"], "metric": "m"}
                ],
                "threshold": 0.5,
                "description": "Row #1"
            })
        );
        let a = assertion_from_string;
        assert_eq!(a("Yarr"), json!({"type": "equals", "value": "Yarr"}));
        assert_eq!(
            a("hello: world"),
            json!({"type": "equals", "value": "hello: world"})
        );
        assert_eq!(
            a("not-contains: x "),
            json!({"type": "not-contains", "value": "x"})
        );
        assert_eq!(a("is-json"), json!({"type": "is-json"}));
        // The cell is trimmed first; an is-json value is not trimmed again.
        assert_eq!(
            a("is-json: {a}"),
            json!({"type": "is-json", "value": " {a}"})
        );
        assert_eq!(
            a("levenshtein(2):abc"),
            json!({"type": "levenshtein", "value": "abc", "threshold": 2.0})
        );
        assert_eq!(
            a("starts-with:Ahoy"),
            json!({"type": "starts-with", "value": "Ahoy", "threshold": 0.75})
        );
        assert_eq!(
            a("similar:cosine"),
            json!({"type": "similar", "value": "cosine", "threshold": 0.8})
        );
        assert_eq!(
            a("contains(x):y"),
            json!({"type": "equals", "value": "contains(x):y"})
        );
        assert_eq!(
            a("grade: polite"),
            json!({"type": "llm-rubric", "value": " polite"})
        );
        assert_eq!(
            a("fn: output.length"),
            json!({"type": "javascript", "value": "output.length"})
        );
        assert_eq!(
            a("file://check.py:f"),
            json!({"type": "python", "value": "check.py:f"})
        );
        assert_eq!(
            a("file://check.mjs"),
            json!({"type": "javascript", "value": "file://check.mjs"})
        );
        assert_eq!(finite_number(" 1e3 "), Some(1000.0));
        assert_eq!(finite_number(".5"), Some(0.5));
        assert_eq!(finite_number("5."), Some(5.0));
        assert_eq!(finite_number("0x10"), None);
        assert_eq!(finite_number(""), None);
        assert_eq!(finite_number("1e400"), None);
        assert_eq!(split_unescaped("a, b\\,c ,d"), ["a", "b,c", "d"]);
        // `__config` thresholds, `__metadata`, and the errors promptfoo throws.
        let t = tests("__expected,__expected2,__config:__expected2:threshold,__metadata:tags[],q\nx,y,0.3,\"a,b\",1\n")
            .expect("ok");
        assert_eq!(t[0].1["assert"][1]["threshold"], json!(0.3));
        assert_eq!(
            t[0].1["metadata"],
            json!({"tags": ["a", "b"], "threshold": 0.3})
        );
        assert!(tests("__config:__expected0:threshold\n1\n").is_err());
        assert!(tests("__config:__expected:weight\n1\n").is_err());
        assert!(tests("__config:__expected:threshold\nx\n").is_err());
    }
}
