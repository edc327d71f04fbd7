//! A harness error while a candidate is evaluated is the candidate's
//! problem, not the run's: it is discarded with the error named, and the
//! run completes (exit 0) and is recorded. (A harness error in the signal,
//! or on every run, is exit 2: `a_harness_error_is_exit_2_naming_the_endpoint`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use super::{db, drop_escalation_rule, improve, listed};
use crate::llm_server::{LlmServer, Reply, system_of};

#[test]
fn a_harness_error_on_some_candidate_runs_discards_the_candidate_not_the_run() {
    let failed = Arc::new(AtomicUsize::new(0));
    let f = failed.clone();
    let llm = LlmServer::start(Arc::new(move |body: &Value, _| {
        let system = system_of(body);
        let user = body["messages"][1]["content"].as_str().unwrap_or_default();
        // Two runs of the candidate (its prompt has the demo optimiser's
        // heading) fail at the endpoint; fewer than the gate's breaker needs.
        if system.contains("## From evaluation feedback")
            && user.contains("annual leave")
            && f.fetch_add(1, Ordering::SeqCst) < 2
        {
            return Reply::Status(400, None);
        }
        Reply::Json(missionctl::eval::demo_model::respond(body))
    }));
    let r = crate::gate::gate_repo(&llm, false);
    drop_escalation_rule(&r);
    let db = db(&r, "s.db");
    let rep = improve(
        &r,
        &db,
        &["--pack", "hr-ops-pack", "--max-candidates", "2"],
        &[("TEST_LLM_KEY", "k")],
    );
    assert!(failed.load(Ordering::SeqCst) >= 2, "the endpoint failed");
    let c = &rep["candidates"][0];
    assert_eq!(c["outcome"], "discarded", "{rep:#}");
    let why = c["reason"].as_str().expect("reason");
    assert!(
        why.contains("leave-balance-question") && why.contains("400"),
        "{why}"
    );
    assert_ne!(rep["stop"], "failed", "{rep:#}");
    assert_eq!(rep["winner"], Value::Null);
    assert!(
        rep["no_winner"]
            .as_str()
            .is_some_and(|w| w.contains("#1") && w.contains("400")),
        "{rep:#}"
    );
    // Recorded as a completed run.
    let runs = listed(&r, &db);
    assert_eq!(runs[0]["run_id"], rep["run_id"]);
    assert_ne!(runs[0]["stop"], "failed");
}
