//! Issue 12: promptfoo test files as promptfoo reads them: a promptfoo
//! config as a cases file (several prompts, `providers` replaced by the
//! harness, `defaultTest` merged, tests inline and from `file://`), vars of
//! any names, `{{var}}` in values; and what missionctl does not implement
//! refused at `validate`, naming it.

use crate::gate::{branch, bump, gate_repo};
use crate::llm_server::{LlmServer, demo, is_judge};
use crate::util::{TestRepo, eval_rows, expect_diag};

const HR: &str = "packs/domains/hr-ops/pack.yaml";
const DIR: &str = "packs/domains/hr-ops/evals";

/// A suite in the shape of promptfoo's own examples.
const CONFIG: &str = r#"# yaml-language-server: $schema=https://promptfoo.dev/config-schema.json
description: 'Translations'
prompts:
  - 'Convert this English to {{language}}: {{input}}'
  - file://translate.txt
providers:
  - openai:gpt-4.1-mini
defaultTest:
  assert:
    - type: not-icontains
      value: 'as an AI language model'
tests:
  - description: French greeting
    vars:
      language: French
      input: Hello world
    assert:
      - type: icontains-any
        value: 'demo model, {{language}}'
  - file://more_tests.yaml
"#;

const MORE: &str = "- vars:\n    language: Spanish\n    input: Where is the library?\n  threshold: 0.5\n  assert:\n    - type: icontains\n      value: 'library'\n      weight: 2\n    - type: contains\n      value: 'biblioteca'\n";

#[test]
fn a_promptfoo_config_runs_as_written() {
    let server = LlmServer::start(demo());
    let r = gate_repo(&server, false);
    branch(&r, "translations", |r| {
        r.write(&format!("{DIR}/translate.yaml"), CONFIG);
        r.write(
            &format!("{DIR}/translate.txt"),
            "Translate to {{language}}: {{input}}",
        );
        r.write(&format!("{DIR}/more_tests.yaml"), MORE);
        r.edit(
            HR,
            "    - evals/cases.yaml",
            "    - evals/cases.yaml\n    - evals/translate.yaml",
        );
        bump(r, HR);
    });
    r.git(&["switch", "-q", "translations"]);
    let (exit, diags) = r.validate(&[]);
    assert_eq!(exit, 0, "{diags:?}");
    r.git(&["switch", "-q", "main"]);
    let (o, out) = r.evaluate("eval", "translations", &[("TEST_LLM_KEY", "k")]);
    let rows = eval_rows(&out, &o);
    let outcome = |id: &str| {
        rows.iter()
            .find(|x| x["case_id"] == id && x["variant"] == "challenger")
            .unwrap_or_else(|| panic!("case {id} did not run: {rows:?}"))["outcome"]
            .as_str()
            .expect("outcome")
            .to_string()
    };
    // One case per (test, prompt); the default test's assertion merged in.
    for p in ["p1", "p2"] {
        assert_eq!(outcome(&format!("french-greeting.{p}")), "pass");
    }
    // The Spanish test: weighted score 2/3 reaches its threshold 0.5, so it
    // passes though `biblioteca` is missing (the demo model answers in English).
    let spanish = rows
        .iter()
        .find(|x| {
            x["variant"] == "challenger"
                && x["case_id"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("case-") && c.ends_with(".p1"))
        })
        .expect("the id-less Spanish case");
    assert_eq!(spanish["outcome"], "pass", "{spanish}");
    // The prompts became the user messages.
    let users: Vec<String> = server
        .requests()
        .iter()
        .filter(|q| !is_judge(&q.body))
        .filter_map(|q| q.body["messages"][1]["content"].as_str().map(String::from))
        .collect();
    for want in [
        "Convert this English to French: Hello world",
        "Translate to French: Hello world",
        "Translate to Spanish: Where is the library?",
    ] {
        assert!(
            users.iter().any(|u| u == want),
            "{want} not sent: {users:?}"
        );
    }
}

#[test]
fn what_missionctl_does_not_run_is_refused_by_name() {
    let r = TestRepo::new();
    r.write(
        &format!("{DIR}/cases.yaml"),
        "- vars: { input: hi }\n  assert:\n    - { type: similar, value: hello, threshold: 0.8 }\n    - { type: contains, value: x, transform: 'JSON.parse(output).answer' }\n    - { type: equals, value: 'file://expected.py' }\n    - { type: regex, value: '(?i)hello' }\n",
    );
    let (exit, diags) = r.validate(&[]);
    assert_eq!(exit, 1);
    let f = format!("{DIR}/cases.yaml");
    expect_diag(
        &diags,
        "eval/unsupported",
        &f,
        3,
        "assertion type `similar` is not supported",
    );
    expect_diag(
        &diags,
        "eval/unsupported",
        &f,
        4,
        "JavaScript missionctl does not run",
    );
    expect_diag(&diags, "eval/unsupported", &f, 5, "runs no code");
    expect_diag(
        &diags,
        "eval/unsupported",
        &f,
        6,
        "not a valid JavaScript regular expression",
    );
    // Tests from CSV, and list vars (promptfoo would expand them).
    r.write(
        &format!("{DIR}/cases.yaml"),
        "prompts: ['{{input}}']\ntests: file://tests.csv\n",
    );
    let (_, diags) = r.validate(&[]);
    expect_diag(&diags, "eval/unsupported", &f, 2, "not CSV");
    r.write(
        &format!("{DIR}/cases.yaml"),
        "- vars: { input: [a, b] }\n  assert: [{ type: contains, value: a }]\n",
    );
    let (exit, diags) = r.validate(&[]);
    assert_eq!(exit, 1, "{diags:?}");
}
