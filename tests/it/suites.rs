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
    // Tests from CSV are read as promptfoo reads them: a row whose
    // `__expected` names code is refused at its row; a script is refused.
    r.write(
        &format!("{DIR}/tests.csv"),
        "input,__expected\nhi,icontains:hi\nho,\"javascript: output.length < 9\"\n",
    );
    r.write(
        &format!("{DIR}/cases.yaml"),
        "prompts: ['{{input}}']\ntests: file://tests.csv\n",
    );
    let (_, diags) = r.validate(&[]);
    expect_diag(
        &diags,
        "eval/unsupported",
        &format!("{DIR}/tests.csv"),
        3,
        "assertion type `javascript` is not supported",
    );
    r.write(
        &format!("{DIR}/cases.yaml"),
        "prompts: ['{{input}}']\ntests: file://tests.py\n",
    );
    let (_, diags) = r.validate(&[]);
    expect_diag(&diags, "eval/unsupported", &f, 2, "not scripts");
    // A chat-format prompt missionctl cannot send as written (content
    // parts) is refused once, at the prompt.
    r.write(
        &format!("{DIR}/chat.json"),
        r#"[{"role": "user", "content": [{"type": "text", "text": "{{input}}"}]}]"#,
    );
    r.write(
        &format!("{DIR}/cases.yaml"),
        "prompts:\n  - file://chat.json\ntests:\n  - vars: { input: a }\n  - vars: { input: b }\n",
    );
    let (_, diags) = r.validate(&[]);
    let d = expect_diag(&diags, "eval/unsupported", &f, 2, "content parts");
    assert_eq!(diags.iter().filter(|x| **x == d).count(), 1, "{diags:?}");
    // List vars expand into one case per value, as promptfoo expands them.
    r.write(
        &format!("{DIR}/cases.yaml"),
        "- vars: { input: [a, b] }\n  assert: [{ type: contains, value: a }]\n",
    );
    let (exit, diags) = r.validate(&[]);
    assert_eq!(exit, 0, "{diags:?}");
}

/// Issue 29, report 9: a bad test is named by its index, its description
/// and the key, one diagnostic per problem at its own line; never the whole
/// list as JSON, never "not valid under any of the schemas".
#[test]
fn a_bad_test_is_named_by_index_description_and_key() {
    let r = TestRepo::new();
    let mut tests = String::from("prompts: ['{{input}}']\ntests:\n");
    for i in 0..20 {
        tests.push_str(&format!(
            "  - description: test number {i}\n    vars: {{ input: hi }}\n    assert: [{{ type: contains, value: hi }}]\n"
        ));
    }
    // Test 12's keys: line 3 + 12*3 = 39 is its description line.
    tests.push_str("  - description: the odd one\n    vars: { input: hi }\n    options:\n      disableDefaultAsserts: true\n    threshold: null\n    assert:\n      - { type: contains, value: hi, weight: -1 }\n");
    r.write(&format!("{DIR}/cases.yaml"), &tests);
    let (exit, diags) = r.validate(&[]);
    assert_eq!(exit, 1, "{diags:?}");
    let f = format!("{DIR}/cases.yaml");
    for d in &diags {
        let m = d["message"].as_str().unwrap_or_default();
        assert!(m.len() < 300, "a long message: {m}");
        assert!(!m.contains("anyOf") && !m.contains("test number 3"), "{m}");
    }
    let d = expect_diag(
        &diags,
        "eval/unsupported",
        &f,
        66,
        "tests[20].options.disableDefaultAsserts: not supported (the test described \"the odd one\")",
    );
    assert!(
        d["help"]
            .as_str()
            .is_some_and(|h| h.contains("defaultTest")),
        "{d}"
    );
    expect_diag(
        &diags,
        "schema/type",
        &f,
        67,
        "tests[20].threshold must be a number, found null (the test described \"the odd one\")",
    );
    expect_diag(&diags, "schema/value", &f, 69, "tests[20].assert[0].weight");
    // A list file names the test by its index in the list.
    r.write(
        &format!("{DIR}/cases.yaml"),
        "- vars: { input: hi }\n  assert: [{ type: contains, value: hi }]\n- description: second\n  assertScoringFunction: file://score.js\n",
    );
    let (_, diags) = r.validate(&[]);
    expect_diag(
        &diags,
        "eval/unsupported",
        &f,
        4,
        "[1].assertScoringFunction: not supported (the test described \"second\")",
    );
}

/// Issue 29, reports 9 and 10: `defaultTest: file://`, `prompts` as a map
/// and as `{label, raw}` objects, and var-less tests with distinct ids run
/// as written.
#[test]
fn default_test_from_a_file_prompt_maps_and_var_less_tests_run() {
    let server = LlmServer::start(demo());
    let r = gate_repo(&server, false);
    branch(&r, "suites", |r| {
        r.write(
            &format!("{DIR}/mapped.yaml"),
            "prompts:\n  'Mapped: {{input}}': mapped label\ndefaultTest: file://defaults.yaml\ntests:\n  - description: mapped greeting\n    vars: { input: Hello world }\n",
        );
        r.write(
            &format!("{DIR}/defaults.yaml"),
            "assert:\n  - type: not-icontains\n    value: 'as an AI language model'\n  - type: contains\n    value: 'Never in a demo answer'\n",
        );
        r.write(
            &format!("{DIR}/labelled.yaml"),
            "prompts:\n  - label: one\n    raw: 'Labelled: {{input}}'\ntests:\n  - assert: [{ type: icontains, value: demo }]\n  - assert: [{ type: icontains, value: nope }]\n",
        );
        r.edit(
            HR,
            "    - evals/cases.yaml",
            "    - evals/cases.yaml\n    - evals/mapped.yaml\n    - evals/labelled.yaml",
        );
        bump(r, HR);
    });
    r.git(&["switch", "-q", "suites"]);
    let (exit, diags) = r.validate(&[]);
    assert_eq!(exit, 0, "{diags:?}");
    r.git(&["switch", "-q", "main"]);
    let (o, out) = r.evaluate("eval", "suites", &[("TEST_LLM_KEY", "k")]);
    let rows: Vec<_> = eval_rows(&out, &o)
        .into_iter()
        .filter(|x| x["variant"] == "challenger")
        .collect();
    let users: Vec<String> = server
        .requests()
        .iter()
        .filter(|q| !is_judge(&q.body))
        .filter_map(|q| q.body["messages"][1]["content"].as_str().map(String::from))
        .collect();
    assert!(
        users.iter().any(|u| u == "Mapped: Hello world"),
        "{users:?}"
    );
    // The default test's second assertion, from the file, fails the case.
    let mapped = rows
        .iter()
        .find(|x| x["case_id"] == "mapped-greeting")
        .expect("the mapped case ran");
    assert_eq!(mapped["outcome"], "fail", "{mapped}");
    // Two var-less tests: two distinct ids, one passing and one failing.
    let var_less: Vec<_> = rows
        .iter()
        .filter(|x| {
            x["case_id"]
                .as_str()
                .is_some_and(|c| c.starts_with("case-"))
        })
        .map(|x| {
            (
                x["case_id"].as_str().unwrap_or_default().to_string(),
                x["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let outcomes: std::collections::BTreeSet<&str> =
        var_less.iter().map(|(_, o)| o.as_str()).collect();
    let ids: std::collections::BTreeSet<&str> = var_less.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(ids.len(), 2, "{var_less:?}");
    assert!(
        outcomes.contains("pass") && outcomes.contains("fail"),
        "{var_less:?}"
    );
}

/// Issue 29, reports 3 and 8: `{{ env.NAME }}` is refused (promptfoo would
/// render the shell's environment, missionctl never renders it empty), and
/// a `.md` assertion value in a config's inline test is refused as
/// promptfoo errors on it ("Unsupported file type").
#[test]
fn env_in_templates_and_md_values_are_refused() {
    let r = TestRepo::new();
    let f = format!("{DIR}/cases.yaml");
    r.write(&f, "prompts: ['{{input}}']\ntests:\n  - vars: { input: hi }\n    assert:\n      - { type: equals, value: '{{ env.HOME }}' }\n      - { type: equals, value: 'file://expected.md' }\n");
    r.write(&format!("{DIR}/expected.md"), "hi\n");
    let (exit, diags) = r.validate(&[]);
    assert_eq!(exit, 1, "{diags:?}");
    expect_diag(&diags, "eval/unsupported", &f, 5, "reads the environment");
    expect_diag(&diags, "eval/unsupported", &f, 6, "Unsupported file type");
}

/// The seventeen promptfoo example suites vendored verbatim under
/// `tests/fixtures/promptfoo-examples/` (see each SOURCE).
const EXAMPLES: &[&str] = &[
    "assertion-scoring-override",
    "claude-vs-gpt",
    "g-eval",
    "gemma-vs-llama",
    "getting-started",
    "gpt-4o-vs-4o-mini",
    "json-output",
    "llama-gpt-comparison",
    "mistral-llama-comparison",
    "multiple-translations",
    "openai-structured-output",
    "openai-tools-call",
    "self-grading",
    "simple-cli",
    "simple-csv",
    "simple-test",
    "tool-use",
];

/// Every file of an example suite, relative to its directory.
fn example_files(name: &str) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &std::path::Path, rel: &str, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).expect("example dir") {
            let e = e.expect("entry");
            let n = format!("{rel}{}", e.file_name().to_string_lossy());
            if e.path().is_dir() {
                walk(&e.path(), &format!("{n}/"), out);
            } else if n != "SOURCE" {
                out.push((n, std::fs::read(e.path()).expect("read")));
            }
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/promptfoo-examples")
        .join(name);
    let mut out = Vec::new();
    walk(&dir, "", &mut out);
    out
}

/// Put example `name` into a pack of its own, `ex-<name>`, whose only
/// cases file is the suite's config (work tree only); its directory.
fn add_example(r: &crate::util::TestRepo, name: &str) -> String {
    let dir = format!("packs/domains/ex-{name}/");
    for (rel, bytes) in example_files(name) {
        r.write_bytes(&format!("{dir}{rel}"), &bytes);
    }
    r.write(
        &format!("{dir}pack.yaml"),
        &format!("id: ex-{name}\nversion: 1.0.0\nscope: {{ type: domain, id: ex-{name} }}\nprompt:\n  sections:\n    - id: ex-role\n      file: role.md\ntools:\n  autonomy: A1\n  allow: [docs.search]\neval:\n  cases:\n    - promptfooconfig.yaml\n"),
    );
    r.write(&format!("{dir}role.md"), "## Role\nAnswer.\n");
    dir
}

/// Issue 29: promptfoo's own example suites used verbatim as cases files.
/// Each either validates and runs (every case evaluated against the test
/// model) or is refused construct by construct: every error it gets is an
/// `eval/unsupported` at its own line naming what missionctl does not run,
/// never another kind of error. The count that run is the floor this test
/// holds (the issue's goal is 12 of 17; see the closing report).
#[test]
fn promptfoo_example_suites_run_or_are_refused_by_construct() {
    let server = LlmServer::start(demo());
    let r = gate_repo(&server, false);
    let mut runs = Vec::new();
    let mut refused = Vec::new();
    let mut other = Vec::new();
    for name in EXAMPLES {
        let dir = add_example(&r, name);
        let (exit, diags) = r.validate(&[]);
        let mine: Vec<&serde_json::Value> =
            diags.iter().filter(|d| d["severity"] == "error").collect();
        if exit == 0 {
            runs.push(*name);
        } else {
            assert!(
                !mine.is_empty(),
                "{name}: exit {exit} without errors: {diags:?}"
            );
            for d in &mine {
                let file = d["file"].as_str().unwrap_or_default();
                // multiple-translations names a `prompts.txt` that promptfoo's
                // repository does not have (see its SOURCE note): promptfoo
                // cannot run it as written either.
                let upstream_missing = *name == "multiple-translations"
                    && d["code"] == "ref/missing"
                    && d["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("`prompts.txt` does not exist"));
                if !(file.starts_with(&dir)
                    && (d["code"] == "eval/unsupported" || upstream_missing)
                    && d["line"].as_u64() > Some(0))
                {
                    other.push(format!("{name}: {d}"));
                }
            }
            let why: Vec<String> = mine
                .iter()
                .map(|d| {
                    let m = d["message"].as_str().unwrap_or_default();
                    let end = m.char_indices().nth(100).map_or(m.len(), |(i, _)| i);
                    format!("line {}: {}", d["line"], &m[..end])
                })
                .collect();
            refused.push(format!("{name}: {}", why.join(" | ")));
        }
        r.git(&["clean", "-qfd"]);
    }
    eprintln!(
        "{} of {} run: {runs:?}\nrefused:\n{}",
        runs.len(),
        EXAMPLES.len(),
        refused.join("\n")
    );
    assert!(
        other.is_empty(),
        "errors that are not a construct refused at its line:\n{}",
        other.join("\n")
    );
    // The runnable ones evaluated against the test model, as many packs
    // at a time as `max_candidates_per_run` lets one run change.
    let mut rows: Vec<serde_json::Value> = Vec::new();
    for (i, group) in runs.chunks(4).enumerate() {
        let head = format!("examples-{i}");
        branch(&r, &head, |r| {
            for name in group {
                add_example(r, name);
            }
        });
        let (o, out) = r.evaluate("eval", &head, &[("TEST_LLM_KEY", "k")]);
        rows.extend(
            eval_rows(&out, &o)
                .into_iter()
                .filter(|x| x["variant"] == "challenger"),
        );
    }
    for name in &runs {
        let text = String::from_utf8(
            example_files(name)
                .into_iter()
                .find(|(n, _)| n == "promptfooconfig.yaml")
                .expect("config")
                .1,
        )
        .expect("text");
        let mut tests = ["\n  - vars:", "\n  - assert:", "\n  - description:"]
            .iter()
            .map(|k| text.matches(k).count())
            .sum::<usize>();
        if text.contains("tests: file://tests.csv") {
            // One test per CSV row after the header.
            let csv = example_files(name)
                .into_iter()
                .find(|(n, _)| n == "tests.csv")
                .expect("tests.csv")
                .1;
            tests = String::from_utf8(csv).expect("text").lines().count() - 1;
        }
        let pack = format!("ex-{name}");
        let ran: Vec<&serde_json::Value> = rows
            .iter()
            .filter(|x| x["pack_id"] == pack.as_str())
            .collect();
        assert!(
            tests > 0 && ran.len() >= tests,
            "{name}: {} cases ran for {tests} tests",
            ran.len()
        );
        for x in ran {
            assert!(
                ["pass", "fail", "not_evaluated"]
                    .contains(&x["outcome"].as_str().unwrap_or_default()),
                "{name}: {x}"
            );
        }
    }
    // A `defaultTest` assertion is refused once, at its own line, not at
    // every test's.
    let sg = refused
        .iter()
        .find(|x| x.starts_with("self-grading:"))
        .expect("self-grading refused");
    assert!(
        sg.starts_with("self-grading: line 10: assertion type `javascript`") && !sg.contains(" | "),
        "{sg}"
    );
    // The chat-format prompt (llama-gpt-comparison) reached the model as its
    // messages after the pack's system prompt; the CSV suite's prompt read
    // its JSON var through the `load` filter (simple-csv).
    let bodies: Vec<serde_json::Value> = server
        .requests()
        .into_iter()
        .filter(|q| !is_judge(&q.body))
        .map(|q| q.body)
        .collect();
    assert!(
        bodies.iter().any(|b| {
            let m = &b["messages"];
            m[1] == serde_json::json!({"role": "system", "content": "You are a pirate"})
                && m[2]
                    == serde_json::json!({"role": "user", "content": "are hippos good swimmers?"})
        }),
        "no chat-format request"
    );
    assert!(
        bodies
            .iter()
            .any(|b| b["messages"][1]["content"]
                .as_str()
                .is_some_and(|u| u.contains("- Tone: formal\n- Length: brief")
                    && u.contains("\"Hello world\""))),
        "no CSV row rendered with `load`"
    );
    // What the reference chapter lists as running as written.
    assert_eq!(
        runs,
        [
            "g-eval",
            "getting-started",
            "gpt-4o-vs-4o-mini",
            "llama-gpt-comparison",
            "mistral-llama-comparison",
            "simple-cli",
            "simple-csv",
            "tool-use"
        ],
        "{} of 17 examples run",
        runs.len()
    );
    assert_eq!(refused.len(), 9);
}

/// Issue 29, real suites: a prompt written as a path is read as a file
/// (promptfoo's `maybeFilePath`), a `.txt` prompt file holds one prompt per
/// part between `---` lines, and `$ref: '#/assertionTemplates/NAME'` stands
/// for the template.
#[test]
fn prompt_paths_prompt_files_with_separators_and_assertion_templates() {
    let server = LlmServer::start(demo());
    let r = gate_repo(&server, false);
    branch(&r, "templates", |r| {
        r.write(
            &format!("{DIR}/templated.yaml"),
            "prompts:\n  - prompts/two.txt\ntests:\n  - description: templated\n    vars: { input: Hello world }\n    assert:\n      - $ref: '#/assertionTemplates/never'\nassertionTemplates:\n  never:\n    type: contains\n    value: 'Never in a demo answer'\n",
        );
        r.write(
            &format!("{DIR}/prompts/two.txt"),
            "First: {{input}}\n---\n\n  Second: {{input}}  \n",
        );
        r.edit(
            HR,
            "    - evals/cases.yaml",
            "    - evals/cases.yaml\n    - evals/templated.yaml",
        );
        bump(r, HR);
    });
    r.git(&["switch", "-q", "templates"]);
    let (exit, diags) = r.validate(&[]);
    assert_eq!(exit, 0, "{diags:?}");
    r.git(&["switch", "-q", "main"]);
    let (o, out) = r.evaluate("eval", "templates", &[("TEST_LLM_KEY", "k")]);
    let rows = eval_rows(&out, &o);
    let users: Vec<String> = server
        .requests()
        .iter()
        .filter(|q| !is_judge(&q.body))
        .filter_map(|q| q.body["messages"][1]["content"].as_str().map(String::from))
        .collect();
    for want in ["First: Hello world", "Second: Hello world"] {
        assert!(users.iter().any(|u| u == want), "{want}: {users:?}");
    }
    for p in ["p1", "p2"] {
        let x = rows
            .iter()
            .find(|x| x["case_id"] == format!("templated.{p}") && x["variant"] == "challenger")
            .unwrap_or_else(|| panic!("templated.{p} did not run: {rows:?}"));
        // The template's assertion fails the demo answer.
        assert_eq!(x["outcome"], "fail", "{x}");
    }
}

/// A model output holding JSON nested 2,000 levels deep (JSON.parse takes
/// it, so promptfoo's `is-json` and `contains-json` pass) is evaluated, not
/// a crash: before, a stack overflow aborted `eval` and the gate (exit 134,
/// no evidence), and a model's answer could kill the gate run.
#[test]
fn a_deeply_nested_json_output_is_evaluated_not_a_crash() {
    let deep = format!("{}1{}", "{\"a\":".repeat(2_000), "}".repeat(2_000));
    let answer = deep.clone();
    let server = LlmServer::start(std::sync::Arc::new(move |body: &serde_json::Value, _| {
        let mut r = missionctl::eval::demo_model::respond(body);
        if body["messages"].to_string().contains("DEEP-JSON-PROBE") {
            r["choices"][0]["message"]["content"] = serde_json::json!(format!("here: {answer}"));
        }
        crate::llm_server::Reply::Json(r)
    }));
    let r = gate_repo(&server, false);
    branch(&r, "deep", |r| {
        r.write(
            &format!("{DIR}/deep.yaml"),
            "- id: deep-json\n  description: a deeply nested answer\n  vars: { input: DEEP-JSON-PROBE }\n  assert:\n    - type: contains-json\n    - type: not-contains\n      value: nothing-like-this\n",
        );
        r.edit(
            HR,
            "    - evals/cases.yaml",
            "    - evals/cases.yaml\n    - evals/deep.yaml",
        );
        bump(r, HR);
    });
    let (o, out) = r.evaluate("eval", "deep", &[("TEST_LLM_KEY", "k")]);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "eval answered: {o:?}"
    );
    let rows = eval_rows(&out, &o);
    let deep_rows: Vec<_> = rows
        .iter()
        .filter(|x| x["variant"] == "challenger" && x["case_id"] == "deep-json")
        .collect();
    assert!(!deep_rows.is_empty(), "the deep case ran");
    for row in deep_rows {
        assert_eq!(row["outcome"], "pass", "{row}");
    }
}

/// Issue 29, list vars and `g-eval` criteria lists end to end: a test whose
/// vars are lists runs once per combination (promptfoo's cartesian product;
/// a described test's ids are its slug and the digest of each combination's
/// vars), and a `g-eval` with two criteria asks the judge once per
/// criterion for every case.
#[test]
fn list_vars_expand_and_g_eval_lists_judge_each_criterion() {
    let server = LlmServer::start(demo());
    let r = gate_repo(&server, true);
    branch(&r, "lists", |r| {
        r.write(
            &format!("{DIR}/lists.yaml"),
            "prompts: ['Say {{greeting}} in {{language}}']\ntests:\n  - description: greetings\n    vars:\n      language: [French, German]\n      greeting: [hello, goodbye, thanks]\n    assert:\n      - type: g-eval\n        value: [Is polite, Is short]\n",
        );
        r.edit(
            HR,
            "    - evals/cases.yaml",
            "    - evals/cases.yaml\n    - evals/lists.yaml",
        );
        bump(r, HR);
    });
    r.git(&["switch", "-q", "lists"]);
    let (exit, diags) = r.validate(&[]);
    assert_eq!(exit, 0, "{diags:?}");
    r.git(&["switch", "-q", "main"]);
    let (o, out) = r.evaluate("eval", "lists", &[("TEST_LLM_KEY", "k")]);
    let rows = eval_rows(&out, &o);
    let ids: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter(|x| x["variant"] == "challenger")
        .filter_map(|x| x["case_id"].as_str())
        .filter(|c| c.starts_with("greetings."))
        .collect();
    assert_eq!(ids.len(), 6, "{ids:?}");
    let reqs = server.requests();
    let users: Vec<String> = reqs
        .iter()
        .filter(|q| !is_judge(&q.body))
        .filter_map(|q| q.body["messages"][1]["content"].as_str().map(String::from))
        .collect();
    for l in ["French", "German"] {
        for g in ["hello", "goodbye", "thanks"] {
            let want = format!("Say {g} in {l}");
            assert!(users.contains(&want), "{want} not sent: {users:?}");
        }
    }
    // Each case's output judged on each criterion.
    let judged: std::collections::BTreeSet<(String, String)> = reqs
        .iter()
        .filter(|q| is_judge(&q.body))
        .filter_map(|q| {
            serde_json::from_str::<serde_json::Value>(q.body["messages"][1]["content"].as_str()?)
                .ok()
        })
        .filter(|p| p["task"] == "assertion")
        .filter_map(|p| {
            let rubric = p["rubric"].as_str()?;
            let c = ["Is polite", "Is short"]
                .into_iter()
                .find(|c| rubric.ends_with(c))?;
            Some((p["input"].as_str()?.to_string(), c.to_string()))
        })
        .collect();
    assert_eq!(judged.len(), 12, "{judged:?}");
}
