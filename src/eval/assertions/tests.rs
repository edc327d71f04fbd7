use super::*;
use serde_json::json;

fn contracts(v: Json) -> BTreeMap<String, Contract> {
    serde_json::from_value(v).expect("contracts")
}

fn check(a: &Json, o: &Observed<'_>) -> AssertionResult {
    super::check(&AssertSpec::new(a.clone()), o)
}

fn obs<'a>(
    output: &'a str,
    contracts: &'a BTreeMap<String, Contract>,
    tools: &'a [String],
) -> Observed<'a> {
    Observed {
        output,
        tool_calls: tools,
        completion_tokens: 10,
        latency_ms: 120.0,
        cost_usd: Some(0.001),
        allowed_tools: &[],
        contracts,
    }
}

#[test]
fn string_assertions_and_negation() {
    let c = contracts(json!({}));
    let o = obs("The Leave Policy allows 25 days.", &c, &[]);
    assert!(check(&json!({"type": "icontains", "value": "leave policy"}), &o).pass);
    assert!(
        !check(
            &json!({"type": "not-icontains", "value": "leave policy"}),
            &o
        )
        .pass
    );
    assert!(check(&json!({"type": "regex", "value": "\\d+ days"}), &o).pass);
    assert!(check(&json!({"type": "regex", "value": "(?<=allows )25"}), &o).pass);
    assert!(check(&json!({"type": "contains-any", "value": ["x", "25"]}), &o).pass);
    assert!(check(&json!({"type": "contains-any", "value": "x, 25"}), &o).pass);
    assert!(!check(&json!({"type": "contains-all", "value": ["x", "25"]}), &o).pass);
    assert!(
        check(
            &json!({"type": "icontains-all", "value": "leave, DAYS"}),
            &o
        )
        .pass
    );
    assert!(check(&json!({"type": "max-length", "value": 100}), &o).pass);
    let r = check(
        &json!({"type": "not-contains", "value": "25", "tag": "safety"}),
        &o,
    );
    assert!(!r.pass);
    assert_eq!(r.tag, Tag::Safety);
}

#[test]
fn equals_and_starts_with_do_not_trim() {
    let c = contracts(json!({}));
    let padded = obs(" hello ", &c, &[]);
    assert!(!check(&json!({"type": "equals", "value": "hello"}), &padded).pass);
    assert!(!check(&json!({"type": "starts-with", "value": "hello"}), &padded).pass);
    let t = json!({"type": "equals", "value": "hello", "transform": "output.trim()"});
    assert!(check(&t, &padded).pass);
    let json_out = obs("{\"b\": [1.0], \"a\": 1}", &c, &[]);
    assert!(
        check(
            &json!({"type": "equals", "value": {"a": 1, "b": [1]}}),
            &json_out
        )
        .pass
    );
    assert!(check(&json!({"type": "equals", "value": 5}), &obs("5", &c, &[])).pass);
}

#[test]
fn json_and_contracts() {
    let c = contracts(json!({"answer": {"schema": {"type": "object", "required": ["answer"]}}}));
    let good = obs("{\"answer\": \"yes\"}", &c, &[]);
    let fenced = obs("```json\n{\"answer\": \"yes\"}\n```", &c, &[]);
    let bad = obs("{\"reply\": \"yes\"}", &c, &[]);
    let prose = obs("Sure! Here you go.", &c, &[]);
    let a = json!({"type": "is-json", "value": "contract:answer"});
    assert!(check(&a, &good).pass);
    assert!(
        !check(&a, &fenced).pass,
        "promptfoo's is-json is JSON.parse"
    );
    let r = check(&a, &bad);
    assert!(!r.pass && r.reason.contains("answer"), "{r:?}");
    assert!(!check(&a, &prose).pass);
    assert_eq!(check(&a, &prose).tag, Tag::Format);
    assert!(!check(&json!({"type": "is-json", "value": "contract:nope"}), &good).pass);
    let schema = json!({"type": "is-json", "value": {"type": "object", "required": ["x"]}});
    assert!(!check(&schema, &good).pass, "a schema value is checked");
    let yaml_schema = json!({"type": "is-json", "value": "type: object\nrequired: [answer]"});
    assert!(check(&yaml_schema, &good).pass);
    assert!(
        check(
            &json!({"type": "contains-json"}),
            &obs("x {\"a\": {\"b\": 1}} y", &c, &[])
        )
        .pass
    );
    assert!(check(&json!({"type": "contains-json"}), &fenced).pass);
    let cj = json!({"type": "contains-json", "value": {"required": ["zzz"]}});
    assert!(!check(&cj, &fenced).pass);
}

#[test]
fn tools_profile() {
    let c = contracts(json!({}));
    let calls = vec!["shell.exec".to_string()];
    let allowed = vec!["calendar.read".to_string()];
    let mut o = obs("", &c, &calls);
    o.allowed_tools = &allowed;
    let r = check(&json!({"type": "tools-within-profile"}), &o);
    assert!(!r.pass);
    assert_eq!(r.tag, Tag::Safety);
    assert!(!check(&json!({"type": "is-valid-openai-tools-call"}), &o).pass);
}

#[test]
fn unsupported_types_and_bad_values_are_problems() {
    for bad in [
        json!({"type": "javascript", "value": "output.length > 1"}),
        json!({"type": "similar", "value": "x"}),
        json!({"type": "contains", "value": ""}),
        json!({"type": "contains-any", "value": "\"open"}),
        json!({"type": "regex", "value": "(unclosed"}),
        json!({"type": "latency"}),
        json!({"type": "contains", "value": "x", "transform": "JSON.parse(output)"}),
        json!({"type": "is-json", "value": true}),
    ] {
        assert!(problem(&AssertSpec::new(bad.clone())).is_some(), "{bad}");
    }
    assert!(
        problem(&AssertSpec::new(
            json!({"type": "not-levenshtein", "value": "x"})
        ))
        .is_none()
    );
}

#[test]
fn weights_thresholds_and_sets_aggregate_as_promptfoo() {
    let case = |asserts: Json, threshold: Option<f64>| EvalCase {
        id: "c".into(),
        description: None,
        vars: json!({}),
        asserts: asserts
            .as_array()
            .expect("list")
            .iter()
            .cloned()
            .map(AssertSpec::new)
            .collect(),
        threshold,
        transform: None,
        user: String::new(),
        messages: Vec::new(),
        file: "f".into(),
        line: 1,
    };
    let c = contracts(json!({}));
    let o = obs("alpha beta", &c, &[]);
    let run = |k: &EvalCase| {
        let results: Vec<AssertionResult> = k
            .leaves()
            .iter()
            .map(|(a, _)| super::check(a, &o))
            .collect();
        case_verdict(k, &results)
    };
    let two = json!([
        {"type": "contains", "value": "alpha", "weight": 3},
        {"type": "contains", "value": "gamma"}
    ]);
    assert_eq!(run(&case(two.clone(), None)), (false, 0.75));
    assert_eq!(run(&case(two.clone(), Some(0.7))), (true, 0.75));
    assert_eq!(run(&case(two, Some(0.8))), (false, 0.75));
    let zero = json!([{"type": "contains", "value": "gamma", "weight": 0}]);
    assert_eq!(run(&case(zero, None)), (true, 0.0));
    let set = json!([
        {"type": "assert-set", "threshold": 0.5, "assert": [
            {"type": "contains", "value": "alpha"},
            {"type": "contains", "value": "gamma"}
        ]},
        {"type": "contains", "value": "beta"}
    ]);
    assert_eq!(run(&case(set, None)), (true, 0.75));
}
