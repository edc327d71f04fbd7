//! Issue 31, report 6: GEPA's discipline. The optimiser sees a feedback set
//! only; a held-out selection set decides; the optimiser's input carries
//! the whole prompt the agent receives, the contracts, the failing chains,
//! passing examples and the candidate history; sampling is configurable.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{db, drop_escalation_rule, improve};
use crate::llm_server::{LlmServer, Reply, system_of};

const OPTIMISER: &str = missionctl::model::OPTIMISER_SYSTEM;

/// The user message of a chat request.
fn user_of(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The inputs of the two cases the escalation defect breaks.
const HARASSMENT: &str = "comments about my appearance";
const MEDICAL: &str = "back condition";

/// The marker that fixes one case in [`scripted`]'s harness.
fn marker_of(case: &str) -> &'static str {
    match case {
        "harassment-escalates" => "ZQX-1",
        _ => "ZQX-2",
    }
}

/// A scripted optimiser and harness. The harness answers as the demo
/// model, except that a prompt holding a case's marker (or `ZQX-ALL`)
/// restores the escalation rule for that case only: an edit fitted to
/// one case. The optimiser's first answer is fitted to the failing case it
/// is shown (its marker), the second is general (`ZQX-ALL`).
fn scripted() -> (LlmServer, Arc<Mutex<Vec<Value>>>) {
    let asked: Arc<Mutex<Vec<Value>>> = Arc::default();
    let log = asked.clone();
    let server = LlmServer::start(Arc::new(move |body: &Value, _| {
        let system = system_of(body);
        if system.starts_with(OPTIMISER) {
            let req: Value = serde_json::from_str(&user_of(body)).expect("a JSON request");
            let n = {
                let mut l = log.lock().expect("lock");
                l.push(req.clone());
                l.len()
            };
            let (path, text) = req["sections"]
                .as_object()
                .and_then(|s| s.iter().next_back())
                .map(|(p, t)| (p.clone(), t.as_str().unwrap_or_default().to_string()))
                .expect("sections");
            // Markers no demo rule reads as an instruction.
            let marker = if n == 1 {
                let shown = req["failures"][0]["case_id"].as_str().expect("a failure");
                marker_of(shown).to_string()
            } else {
                "ZQX-ALL".to_string()
            };
            let answer = json!({
                "rationale": format!("scripted: {marker}"),
                "sections": {path: format!("{text}\n{marker}\n")},
            });
            return Reply::Json(missionctl::eval::demo_model::completion_body(
                "demo-optimiser",
                "",
                "",
                &answer.to_string(),
            ));
        }
        let user = user_of(body);
        let fixed = |case: &str| system.contains(marker_of(case)) || system.contains("ZQX-ALL");
        let applies = (user.contains(HARASSMENT) && fixed("harassment-escalates"))
            || (user.contains(MEDICAL) && fixed("medical-accommodation"));
        if applies {
            let mut b = body.clone();
            b["messages"][0]["content"] = json!(format!(
                "{system}\n\nEscalate harassment and medical matters."
            ));
            return Reply::Json(missionctl::eval::demo_model::respond(&b));
        }
        Reply::Json(missionctl::eval::demo_model::respond(body))
    }));
    (server, asked)
}

/// (id, description, input) of each case in a cases file of the template's
/// layout (`- id:`, `  description:`, `    input: "…"`).
fn cases_of(yaml: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for line in yaml.lines() {
        if let Some(id) = line.strip_prefix("- id: ") {
            out.push((id.trim().to_string(), String::new(), String::new()));
        } else if let (Some(d), Some(last)) = (line.strip_prefix("  description: "), out.last_mut())
        {
            last.1 = d.trim().to_string();
        } else if let (Some(i), Some(last)) = (line.strip_prefix("    input: "), out.last_mut()) {
            last.2 = i.trim().trim_matches('"').to_string();
        }
    }
    out
}

#[test]
fn the_optimiser_never_sees_the_held_out_cases_and_the_selection_set_decides() {
    let (llm, asked) = scripted();
    let r = crate::gate::gate_repo(&llm, false);
    // Sampling settings from the improve config.
    r.edit(
        "mission.yaml",
        "    model: demo-optimiser\n",
        "    model: demo-optimiser\n    top_p: 0.9\n",
    );
    r.commit_all("Optimiser sampling");
    drop_escalation_rule(&r);
    let db = db(&r, "s.db");
    let rep = improve(
        &r,
        &db,
        &["--pack", "hr-ops-pack"],
        &[("TEST_LLM_KEY", "k")],
    );

    // The split: disjoint, covering every case, one of the two failing
    // (same kind) cases on each side.
    let set = |k: &str| -> BTreeSet<String> {
        rep["split"][k]
            .as_array()
            .expect("set")
            .iter()
            .map(|v| v.as_str().expect("id").to_string())
            .collect()
    };
    let (feedback, selection) = (set("feedback"), set("selection"));
    assert!(feedback.is_disjoint(&selection), "{rep:#}");
    assert_eq!(
        feedback.len() + selection.len(),
        rep["champion_scores"].as_object().expect("scores").len()
    );
    assert_eq!(rep["split"]["note"], Value::Null);
    let pair = ["harassment-escalates", "medical-accommodation"];
    let shown: Vec<&str> = pair
        .iter()
        .copied()
        .filter(|c| feedback.contains(*c))
        .collect();
    assert_eq!(shown.len(), 1, "{rep:#}");
    let held = pair
        .iter()
        .copied()
        .find(|c| selection.contains(*c))
        .expect("held");

    // No held-out case reaches the optimiser: not its id, description or input.
    let requests = asked.lock().expect("lock").clone();
    // Four candidates: #1 fitted, #2 general, #3 and #4 improve nothing
    // held out (the rubric cases cannot pass without a judge), so the run
    // stops there: two in a row (`improve.patience`).
    assert_eq!(requests.len(), 4, "{rep:#}");
    let mut cases = cases_of(&r.read("packs/domains/hr-ops/evals/cases.yaml"));
    cases.extend(cases_of(&r.read("packs/global/evals/cases.yaml")));
    assert_eq!(cases.len(), 12);
    for q in &requests {
        let text = q.to_string();
        for (id, description, input) in &cases {
            if selection.contains(id) {
                for needle in [id, description, input] {
                    assert!(
                        !text.contains(needle.as_str()),
                        "held-out {needle:?} shown: {text}"
                    );
                }
            }
        }
        // The whole prompt the agent receives: the global layer's safety
        // rules and the domain's role, merged; the contract's schema.
        let prompt = q["resolved_prompt"]["system"].as_str().expect("prompt");
        assert!(
            prompt.contains("Never reveal passwords, API keys, access tokens")
                && prompt.contains("## Role: HR operations assistant"),
            "{prompt}"
        );
        assert!(
            q["resolved_prompt"]["chain"]
                .as_str()
                .is_some_and(|c| c.starts_with("hr-ops"))
        );
        assert_eq!(
            q["contracts"]["hr-answer"]["required"],
            json!(["answer", "policy_refs", "escalate"]),
            "{q:#}"
        );
        // Passing examples beside the failures, from the feedback set only.
        let passing = q["passing"].as_array().expect("passing");
        assert_eq!(passing.len(), 2, "{q:#}");
        for p in passing {
            let id = p["case_id"].as_str().expect("id");
            assert!(feedback.contains(id) && !p["output"].as_str().expect("o").is_empty());
        }
    }
    // The first request: the shown failure, with the chains it failed on.
    let f = &requests[0]["failures"];
    assert_eq!(f[0]["case_id"], shown[0], "safety first: {f:#}");
    assert!(
        f[0]["failed_chains"]
            .as_array()
            .is_some_and(|c| !c.is_empty()
                && c.iter()
                    .all(|c| c.as_str().is_some_and(|c| c.starts_with("hr-ops")))),
        "{f:#}"
    );
    // The second: the candidate history with its feedback-set score.
    let h = &requests[1]["history"][0];
    assert_eq!(h["candidate"], 1);
    assert!(
        h["feedback_score"].as_f64().expect("score")
            > rep["champion_feedback_score"].as_f64().expect("c")
    );

    // #1, fitted to the shown case, improves the feedback set only: it is
    // not the end of the run (patience 2) and not what is proposed, though
    // its overall pass rate rises too.
    let c1 = &rep["candidates"][0];
    assert!(
        c1["feedback_score"].as_f64() > rep["champion_feedback_score"].as_f64(),
        "{rep:#}"
    );
    assert_eq!(
        c1["selection_score"], rep["champion_selection_score"],
        "{rep:#}"
    );
    assert!(c1["scores"][held].as_f64().expect("s") < 1.0);
    // #2 fixes the held-out case: the selection set decides for it.
    let c2 = &rep["candidates"][1];
    assert!(
        c2["selection_score"].as_f64() > rep["champion_selection_score"].as_f64(),
        "{rep:#}"
    );
    assert_eq!(rep["winner"], 2, "{rep:#}");
    assert_eq!(rep["stop"], "no-improvement", "{rep:#}");
    assert!(
        rep["stop_detail"]
            .as_str()
            .is_some_and(|d| d.contains("#3, #4") && d.contains("improve.patience")),
        "{rep:#}"
    );
    let branch = rep["branch"].as_str().expect("branch").to_string();
    let out_dir = r.dir.path().join("ev");
    let out = r.run_env(
        &[
            "gate",
            "--base",
            "main",
            "--head",
            &branch,
            "--out",
            out_dir.to_str().expect("p"),
            "--db",
            &db,
        ],
        &[("TEST_LLM_KEY", "k")],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Sampling: the optimiser at its default temperature (1.0) and the
    // configured top_p; the harness at 0 and without top_p.
    let bodies = llm.requests();
    let opt = bodies
        .iter()
        .find(|q| system_of(&q.body).starts_with(OPTIMISER))
        .expect("optimiser");
    assert_eq!(opt.body["temperature"], 1.0);
    assert_eq!(opt.body["top_p"], 0.9);
    let harness = bodies
        .iter()
        .find(|q| !system_of(&q.body).starts_with(OPTIMISER))
        .expect("harness");
    assert_eq!(harness.body["temperature"], 0.0);
    assert!(harness.body.get("top_p").is_none());
}

/// Too few cases to hold any out: said in the report and the summary, and
/// the run still proposes (selection uses the same cases); a single failing
/// case is shown and kept in the selection set, and that is said too.
#[test]
fn too_few_cases_or_one_failing_case_are_said_and_still_proposed() {
    let r = crate::util::TestRepo::new();
    let cases = "packs/domains/hr-ops/evals/cases.yaml";
    let all = r.read(cases);
    let start = all.find("- id: harassment-escalates").expect("case");
    let end = start
        + all[start..]
            .find("- id: refuses-colleague-salary")
            .expect("next");
    r.write(cases, &all[start..end]);
    let global = "packs/global/evals/cases.yaml";
    let g = r.read(global);
    r.write(
        global,
        &g[..g.find("- id: no-banned-phrases").expect("case")],
    );
    r.commit_all("Three cases for hr-ops chains");
    drop_escalation_rule(&r);
    let store = db(&r, "s.db");
    let rep = improve(&r, &store, &["--pack", "hr-ops-pack"], &[]);
    let note = rep["split"]["note"]
        .as_str()
        .unwrap_or_else(|| panic!("{rep:#}"));
    assert!(
        note.contains("3 case(s) are too few to hold any out (fewer than 4)"),
        "{note}"
    );
    assert_eq!(rep["split"]["feedback"], rep["split"]["selection"]);
    assert_eq!(rep["winner"], 1, "{rep:#}");
    let (code, out, _) = super::improve_out(
        &r,
        &db(&r, "human.db"),
        &["--pack", "hr-ops-pack", "--format", "human"],
        &[],
    );
    assert_eq!(code, 0);
    assert!(out.contains("too few to hold any out"), "{out}");
    // The pull request body says it too.
    let body_note = format!("Split: {note}.");
    let list = super::listed(&r, &store);
    let report: missionctl::improve::Report =
        serde_json::from_value(list[0].clone()).expect("a report");
    assert!(report.body().contains(&body_note), "{}", report.body());

    // Four cases, one failing: it is shown and kept in the selection set.
    r.write(global, &g);
    r.commit_all("The third global case back");
    let one = improve(&r, &db(&r, "one.db"), &["--pack", "hr-ops-pack"], &[]);
    let note = one["split"]["note"]
        .as_str()
        .unwrap_or_else(|| panic!("{one:#}"));
    assert!(
        note.contains(
            "one failing case (`harassment-escalates`) cannot be both shown and held out"
        ),
        "{note}"
    );
    assert_eq!(one["winner"], 1, "{one:#}");
}
