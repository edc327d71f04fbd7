//! The spend ledger holds every optimiser call, even one the process never
//! saw answered: the call's worst case is booked before it is made and
//! settled to its real cost after (the issue 31 hostile pass: a SIGKILL or
//! a timeout mid-call left the call off the ledger, out of the daily cap's
//! sight).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{db, drop_escalation_rule, ledger};
use crate::llm_server::{LlmServer, Reply, system_of};

#[test]
fn an_optimiser_call_is_on_the_ledger_before_it_is_answered() {
    let llm = LlmServer::start(Arc::new(|body: &Value, _| {
        let answer = Reply::Json(missionctl::eval::demo_model::respond(body));
        if system_of(body).starts_with(missionctl::model::OPTIMISER_SYSTEM) {
            // Never answered in time: the worker is killed while it waits.
            return Reply::Delayed(Duration::from_secs(120), Box::new(answer));
        }
        answer
    }));
    let r = crate::gate::gate_repo(&llm, true);
    drop_escalation_rule(&r);
    let db = db(&r, "s.db");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_missionctl"))
        .env("NO_COLOR", "1")
        .env_remove("MISSIONCTL_DATABASE_URL")
        .current_dir(r.path())
        .args([
            "improve",
            "--repo",
            r.work.to_str().expect("p"),
            "--db",
            &db,
            "--pack",
            "hr-ops-pack",
            "--max-candidates",
            "1",
        ])
        .env("TEST_LLM_KEY", "k")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start improve");
    let asked = |llm: &LlmServer| {
        llm.requests()
            .iter()
            .any(|q| system_of(&q.body).starts_with(missionctl::model::OPTIMISER_SYSTEM))
    };
    let start = Instant::now();
    while !asked(&llm) {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "improve ended before asking the optimiser"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the optimiser was never asked"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before_kill: f64 = ledger(&db)
        .iter()
        .filter(|(_, kind, _)| kind == "improve")
        .map(|(_, _, usd)| usd)
        .sum();
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let booked: f64 = ledger(&db)
        .iter()
        .filter(|(_, kind, _)| kind == "improve")
        .map(|(_, _, usd)| usd)
        .sum();
    assert!(
        before_kill > 0.0 && booked == before_kill,
        "the unanswered optimiser call's worst case stays booked: {booked} (before the kill {before_kill})"
    );
}
