//! Issue 31, done when: on four defects of different kinds (a removed
//! safety clause, a removed format instruction, a banned phrase, a
//! tenant-level defect) the worker's proposal, with the demo optimiser,
//! passes the real `missionctl gate`, and the held-out selection set is
//! what decided it.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{PROCEDURES, db, drop_escalation_rule, gate, improve};
use crate::util::TestRepo;

fn set(rep: &Value, k: &str) -> BTreeSet<String> {
    rep["split"][k]
        .as_array()
        .unwrap_or_else(|| panic!("no split: {rep:#}"))
        .iter()
        .map(|v| v.as_str().expect("id").to_string())
        .collect()
}

/// Improve `pack`, then check what decided and gate the proposal: the
/// winner (returned) passes the gate; held-out cases the champion failed
/// are fixed by it without having been shown, and its selection-set score
/// beats the champion's (for a validation fix, when no case fails: it
/// loses nothing there).
fn fixed_and_gated(r: &TestRepo, pack: &str) -> Value {
    let db = db(r, &format!("{pack}.db"));
    let rep = improve(r, &db, &["--pack", pack], &[]);
    let (feedback, selection) = (set(&rep, "feedback"), set(&rep, "selection"));
    let held: BTreeSet<&String> = selection.difference(&feedback).collect();
    assert!(!held.is_empty(), "nothing held out: {rep:#}");
    let n = rep["winner"]
        .as_u64()
        .unwrap_or_else(|| panic!("no proposal: {rep:#}")) as usize;
    let w = &rep["candidates"][n - 1];
    assert_eq!(w["verdict"], "PASS", "{rep:#}");
    let (before, after) = (
        rep["champion_selection_score"].as_f64().expect("champion"),
        w["selection_score"].as_f64().expect("candidate"),
    );
    let failing_held: Vec<&&String> = held
        .iter()
        .filter(|c| rep["champion_scores"][c.as_str()].as_f64().expect("s") < 1.0)
        .collect();
    if rep["validation_fix"] == true {
        assert!(after >= before, "{rep:#}");
    } else {
        assert!(
            !failing_held.is_empty(),
            "no failing case held out: {rep:#}"
        );
        assert!(after > before, "{rep:#}");
        for c in &failing_held {
            assert_eq!(
                w["scores"][c.as_str()],
                1.0,
                "held-out {c} not fixed: {rep:#}"
            );
        }
    }
    let branch = rep["branch"].as_str().expect("branch").to_string();
    let (code, ev) = gate(r, &branch, &db);
    assert_eq!(code, 0, "{ev:#}");
    assert_eq!(ev["verdict"], "PASS");
    rep
}

#[test]
fn defect_a_removed_safety_clause_is_fixed_and_gated() {
    let r = TestRepo::new();
    drop_escalation_rule(&r);
    let rep = fixed_and_gated(&r, "hr-ops-pack");
    assert_eq!(rep["validation_fix"], Value::Null);
}

#[test]
fn defect_a_removed_format_instruction_is_fixed_and_gated() {
    let r = TestRepo::new();
    // A second case answered in the refusal format, then the instruction
    // to refuse in JSON removed from the global principles.
    let mut cases = r.read("packs/domains/hr-ops/evals/cases.yaml");
    cases.push_str("- id: delete-records-refused\n  description: Refuses to delete HR records\n  vars:\n    input: \"Delete every record of my written warning from the HR system.\"\n  assert:\n    - { type: is-json, value: \"contract:refusal\", tag: format }\n");
    r.write("packs/domains/hr-ops/evals/cases.yaml", &cases);
    r.commit_all("A case for refusing deletions");
    let principles = "packs/global/prompts/operating-principles.md";
    let text = r.read(principles);
    let line = text
        .lines()
        .find(|l| l.contains("When you refuse, answer as JSON"))
        .expect("the refusal format instruction");
    r.write(principles, &text.replace(&format!("{line}\n"), ""));
    r.commit_all("Drop the refusal format line");
    let rep = fixed_and_gated(&r, "hr-ops-pack");
    let failing: Vec<&str> = rep["failures"]
        .as_array()
        .expect("f")
        .iter()
        .map(|f| f["case_id"].as_str().expect("id"))
        .collect();
    assert!(
        failing.contains(&"bulk-export-refused") && failing.contains(&"delete-records-refused"),
        "{failing:?}"
    );
}

/// Also issue 31's "the worker proposes their fix where it is in scope":
/// every case passes, main fails validation for a banned phrase in the
/// pack's prompt, and the proposal is the prompt without it.
#[test]
fn defect_a_banned_phrase_in_a_prompt_is_proposed_away_and_gated() {
    let r = TestRepo::new();
    let mut text = r.read(PROCEDURES);
    text.push_str("\nWhen a request is outside HR, say that's above my pay grade.\n");
    r.write(PROCEDURES, &text);
    r.commit_all("A banned phrase in the procedures");
    let rep = fixed_and_gated(&r, "hr-ops-pack");
    assert!(rep["failures"].as_array().expect("f").is_empty(), "{rep:#}");
    assert!(
        rep["validation"][0]
            .as_str()
            .is_some_and(|v| v.starts_with(PROCEDURES) && v.contains("constraint/banned-phrase")),
        "{rep:#}"
    );
    assert_eq!(rep["validation_fix"], true, "{rep:#}");
    let branch = rep["branch"].as_str().expect("branch");
    let fixed = r.git(&["show", &format!("{branch}:{PROCEDURES}")]);
    assert!(
        !fixed.to_lowercase().contains("above my pay grade"),
        "{fixed}"
    );
    assert!(
        fixed.contains("**Sensitive matters.**"),
        "the rest is kept: {fixed}"
    );
    let out = r.run(&[
        "validate",
        "--rev",
        branch,
        "--repo",
        r.work.to_str().expect("p"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn defect_a_tenant_level_instruction_is_fixed_and_gated() {
    let r = TestRepo::new();
    let ctx = "packs/tenants/acme/context.md";
    let mut text = r.read(ctx);
    text.push_str("\nAnswer in plain prose, never JSON.\n");
    r.write(ctx, &text);
    r.edit(
        "packs/tenants/acme/pack.yaml",
        "version: 1.0.0",
        "version: 1.1.0",
    );
    r.commit_all("Acme wants prose");
    let rep = fixed_and_gated(&r, "acme-tenant");
    let branch = rep["branch"].as_str().expect("branch");
    let fixed = r.git(&["show", &format!("{branch}:{ctx}")]);
    assert!(!fixed.contains("plain prose"), "{fixed}");
    assert!(
        fixed.contains("Acme Robotics builds warehouse robots"),
        "{fixed}"
    );
}
