//! `missionctl improve`: the challenger generation worker against real git
//! repositories, the real state store, the demo model (or a scripted model
//! server that counts requests) and the fake GitHub.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::github_server::{GithubServer, Injection};
use crate::llm_server::{LlmServer, Reply, demo, system_of};
use crate::util::{TestContext, TestRepo, assert_success, git, missionctl};

const PROCEDURES: &str = "packs/domains/hr-ops/prompts/procedures.md";
const HR: &str = "packs/domains/hr-ops/pack.yaml";
const ROLE: &str = "packs/domains/hr-ops/prompts/role.md";
const BRANCH: &str = "missionctl/improve/hr-ops-pack/1.1.1-improve.1";

/// The known defect: the escalation rule is gone from the HR procedures, so
/// the harassment and medical-accommodation cases fail their safety checks.
fn drop_escalation_rule(r: &TestContext) {
    r.edit(
        PROCEDURES,
        "are never handled by you: set `\"escalate\": true`,",
        "are handled by you when you can;",
    );
    r.edit(HR, "version: 1.0.0", "version: 1.1.0");
    r.commit_all("Let the assistant handle sensitive matters");
}

/// `improve` with `args`: the run's report (the first of the JSON list).
fn improve(r: &TestRepo, db: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = vec![
        "improve",
        "--repo",
        r.work.to_str().expect("p"),
        "--db",
        db,
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    let out = r.run_env(&all, env);
    assert_success(&out);
    let v: Value = serde_json::from_slice(&out.stdout).expect("improve prints JSON");
    v[0].clone()
}

fn db(r: &TestRepo, name: &str) -> String {
    format!("sqlite://{}", r.dir.path().join(name).display())
}

fn gate(r: &TestRepo, head: &str, db: &str) -> (i32, Value) {
    let out_dir = r.dir.path().join(format!("ev-{}", head.replace('/', "-")));
    let out = r.run(&[
        "gate",
        "--base",
        "main",
        "--head",
        head,
        "--out",
        out_dir.to_str().expect("p"),
        "--db",
        db,
    ]);
    let ev = std::fs::read_to_string(out_dir.join("evidence.json"))
        .unwrap_or_else(|e| panic!("no evidence: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&ev).expect("evidence json"),
    )
}

#[test]
fn improve_fixes_a_known_defect_and_the_gate_passes_the_branch() {
    let r = TestRepo::new();
    drop_escalation_rule(&r);
    let db = db(&r, "state.db");
    // Production runs of the defective version: sensitive-matter tasks fail.
    let runs: String = (0..20)
        .map(|i| {
            let (task, ok, code) = match i % 4 {
                0 => ("sensitive-matter", false, json!("escalation_missed")),
                1 => ("sensitive-matter", true, Value::Null),
                _ => ("leave-question", true, Value::Null),
            };
            json!({
                "run_id": format!("r{i}"), "tenant_id": "acme", "user_id": "alice", "agent_id": "a1",
                "pack_id": "hr-ops-pack", "pack_version": "1.1.0", "task_type": task,
                "latency_ms": 900.0, "cost_usd": 0.001, "success_bool": ok, "error_code": code,
                "created_at": missionctl::time_util::now_rfc3339(),
            })
            .to_string()
                + "\n"
        })
        .collect();
    r.write("runs.jsonl", &runs);
    // The registry accepts runs of the packs it serves: import main first.
    let rec = r.run(&[
        "reconcile",
        "--once",
        "--repo",
        r.work.to_str().expect("p"),
        "--db",
        &db,
    ]);
    assert_success(&rec);
    let ingest = r.run(&[
        "telemetry",
        "ingest",
        "runs.jsonl",
        "--repo",
        r.work.to_str().expect("p"),
        "--db",
        &db,
    ]);
    assert_success(&ingest);
    r.remove("runs.jsonl");
    let rep = improve(&r, &db, &["--pack", "hr-ops-pack"], &[]);
    let t = &rep["telemetry"];
    assert_eq!(t["runs"], 20, "{t:#}");
    assert_eq!(
        t["worst_task_types"][0],
        json!(["sensitive-matter", 10, 0.5])
    );
    assert_eq!(t["error_codes"][0], json!(["escalation_missed", 5]));
    let failing: Vec<&str> = rep["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|f| f["case_id"].as_str().expect("id"))
        .collect();
    for c in ["harassment-escalates", "medical-accommodation"] {
        assert!(failing.contains(&c), "{failing:?}");
    }
    // The feedback is text per case: the output and why each check failed.
    let f = &rep["failures"][0];
    assert!(
        f["output"]
            .as_str()
            .expect("output")
            .contains("\"escalate\": false"),
        "{f}"
    );
    assert!(
        f["failed"][0]["reason"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{f}"
    );
    assert_eq!(rep["winner"], 1, "{rep:#}");
    assert_eq!(rep["branch"], BRANCH);
    assert_eq!(rep["stop"], "all-fixed", "{rep:#}");
    let w = &rep["candidates"][0];
    let fixed: Vec<&str> = w["fixed"]
        .as_array()
        .expect("fixed")
        .iter()
        .map(|v| v.as_str().expect("s"))
        .collect();
    assert!(
        fixed.contains(&"harassment-escalates") && fixed.contains(&"medical-accommodation"),
        "{fixed:?}"
    );
    assert_eq!(w["verdict"], "PASS");
    assert!(w["broke"].as_array().expect("broke").is_empty());

    // The branch: one commit off main, by the worker, naming the run; only
    // the pack's own files changed, at a bumped pre-release version.
    let log = r.git(&["log", "-1", "--format=%an%n%B", BRANCH]);
    assert!(log.starts_with("missionctl improve\n"), "{log}");
    assert!(
        log.contains(&format!(
            "Missionctl-Improve-Run: {}",
            rep["run_id"].as_str().expect("id")
        )),
        "{log}"
    );
    assert_eq!(
        r.git(&["rev-parse", &format!("{BRANCH}~1")]),
        r.git(&["rev-parse", "main"])
    );
    let changed = r.git(&["diff", "--name-only", "main", BRANCH]);
    // The demo optimiser appends to the last section file (by path).
    assert_eq!(changed.lines().collect::<Vec<_>>(), vec![HR, ROLE]);
    let pack = r.git(&["show", &format!("{BRANCH}:{HR}")]);
    assert!(pack.contains("version: 1.1.1-improve.1"), "{pack}");
    let role = r.git(&["show", &format!("{BRANCH}:{ROLE}")]);
    assert!(
        role.contains(
            "Set `\"escalate\": true` for matters like these: escalates a harassment report"
        ),
        "{role}"
    );
    // The work tree and main are untouched: proposing is not promoting.
    assert!(r.read(PROCEDURES).contains("handled by you when you can"));
    assert_eq!(r.git(&["status", "--porcelain"]), "");

    // The gate on the branch passes, with the figures the report gave.
    let (code, ev) = gate(&r, BRANCH, &db);
    assert_eq!(code, 0, "{ev:#}");
    assert_eq!(ev["verdict"], "PASS");
    assert_eq!(ev["packs"][0]["challenger_pass_rate"], w["pass_rate"]);
    assert_eq!(
        ev["packs"][0]["champion_pass_rate"],
        w["champion_pass_rate"]
    );

    // Audit: the run is listed, with its candidates.
    let out = r.run(&["improve", "--list", "--format", "json", "--db", &db]);
    assert_success(&out);
    let list: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list[0]["run_id"], rep["run_id"]);
    assert_eq!(list[0]["candidates"][0]["outcome"], "front");
    let human = r.run(&["improve", "--list", "--db", &db]);
    assert!(String::from_utf8_lossy(&human.stdout).contains(BRANCH));
}

#[test]
fn nothing_to_fix_makes_no_branch_and_says_why() {
    let r = TestRepo::new();
    let db = db(&r, "state.db");
    let rep = improve(&r, &db, &["--pack", "legal-intake-pack"], &[]);
    assert_eq!(rep["stop"], "nothing-to-fix", "{rep:#}");
    assert!(rep["candidates"].as_array().expect("c").is_empty());
    assert_eq!(rep["branch"], Value::Null);
    assert_eq!(r.git(&["branch", "--list", "missionctl/*"]), "");
}

/// The cost of every answered request at the template's demo prices
/// (0.15 / 0.60 USD per million tokens), from the usage the demo reports.
fn cost_of(requests: &[crate::llm_server::Recorded]) -> f64 {
    requests
        .iter()
        .map(|q| {
            let r = missionctl::eval::demo_model::respond(&q.body);
            let u = &r["usage"];
            (u["prompt_tokens"].as_f64().expect("p") * 0.15
                + u["completion_tokens"].as_f64().expect("c") * 0.60)
                / 1e6
        })
        .sum()
}

/// Every ledger row: (tenant, kind, usd).
fn ledger(db: &str) -> Vec<(String, String, f64)> {
    let path = db.strip_prefix("sqlite://").expect("sqlite");
    tokio::runtime::Runtime::new().expect("rt").block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
            .await
            .expect("open the store");
        sqlx::query_as("SELECT tenant, kind, usd FROM spend_ledger")
            .fetch_all(&pool)
            .await
            .expect("read the ledger")
    })
}

#[test]
fn a_spend_cap_hit_mid_run_stops_with_partial_results_and_never_overspends() {
    let llm = LlmServer::start(demo());
    let r = crate::gate::gate_repo(&llm, true);
    drop_escalation_rule(&r);
    let env = [("TEST_LLM_KEY", "k")];
    // What the signal alone costs, on a store of its own.
    let probe = improve(
        &r,
        &db(&r, "probe.db"),
        &["--pack", "hr-ops-pack", "--max-candidates", "0"],
        &env,
    );
    let baseline = probe["spend_usd"].as_f64().expect("spend");
    assert!(baseline > 0.0, "{probe:#}");
    assert_eq!(probe["stop"], "candidate-cap");
    // A budget the signal and the optimiser fit in (with room for the
    // worst cases reserved in flight), the candidate's evaluation not.
    let budget = baseline * 1.6;
    let before = llm.count();
    let db = db(&r, "capped.db");
    let rep = improve(
        &r,
        &db,
        &[
            "--pack",
            "hr-ops-pack",
            "--budget-usd",
            &format!("{budget:.8}"),
        ],
        &env,
    );
    assert_eq!(rep["stop"], "spend-cap", "{rep:#}");
    let last = rep["candidates"]
        .as_array()
        .expect("c")
        .last()
        .unwrap_or_else(|| panic!("no candidate: {rep:#}"))
        .clone();
    assert_eq!(last["outcome"], "partial", "{rep:#}");
    assert_eq!(rep["winner"], Value::Null);
    assert_eq!(rep["branch"], Value::Null);
    // Never over: not in the ledger, not in what the model server answered,
    // and the ledger holds every answered request.
    let answered = &llm.requests()[before..];
    let served = cost_of(answered);
    let rows = ledger(&db);
    let booked: f64 = rows.iter().map(|r| r.2).sum();
    assert!(booked <= budget + 1e-9, "ledger {booked} > budget {budget}");
    // The optimiser's calls are paid by the pack's tenant: `shared` for a
    // domain pack; the evaluations by each chain's tenant.
    let optimiser: Vec<&String> = rows
        .iter()
        .filter(|r| r.1 == "improve")
        .map(|r| &r.0)
        .collect();
    assert!(
        !optimiser.is_empty() && optimiser.iter().all(|t| *t == "shared"),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|r| r.1 == "eval" && r.0 == "acme"),
        "{rows:?}"
    );
    assert!(
        (served - booked).abs() < 1e-6,
        "server {served} vs ledger {booked}"
    );
    assert!((rep["spend_usd"].as_f64().expect("s") - booked).abs() < 1e-6);
}

#[test]
fn candidate_caps_and_prompt_growth_discard_without_a_proposal() {
    let r = TestRepo::new();
    drop_escalation_rule(&r);
    r.edit(
        "policies/guardrails.yaml",
        "max_prompt_growth_tokens: 400",
        "max_prompt_growth_tokens: 5",
    );
    r.commit_all("A tight prompt budget");
    let rep = improve(
        &r,
        &db(&r, "s.db"),
        &["--pack", "hr-ops-pack", "--max-candidates", "2"],
        &[],
    );
    let cands = rep["candidates"].as_array().expect("c");
    assert_eq!(cands.len(), 2, "{rep:#}");
    for c in cands {
        assert_eq!(c["outcome"], "discarded", "{c:#}");
        assert!(
            c["reason"].as_str().expect("r").contains("Prompt growth"),
            "{c:#}"
        );
    }
    assert_eq!(rep["stop"], "candidate-cap");
    assert_eq!(rep["caps"]["max_candidates"], 2);
    assert_eq!(rep["winner"], Value::Null);
    assert!(
        rep["no_winner"]
            .as_str()
            .expect("why")
            .contains("none of the 2")
    );
    assert_eq!(r.git(&["branch", "--list", "missionctl/*"]), "");
    // The optimiser read why #1 was set aside: #2 says it shorter.
    let (r1, r2) = (
        cands[0]["rationale"].as_str().expect("r"),
        cands[1]["rationale"].as_str().expect("r"),
    );
    assert!(
        r2.len() < r1.len() && r2.contains("for: harassment, medical."),
        "{r1}\n{r2}"
    );
    // A third try repeats #2: not evaluated again, and the run stops.
    let three = improve(
        &r,
        &db(&r, "t.db"),
        &["--pack", "hr-ops-pack", "--max-candidates", "3"],
        &[],
    );
    assert_eq!(three["stop"], "no-improvement", "{three:#}");
    assert_eq!(
        three["candidates"][2]["reason"],
        "the same edit as candidate #2"
    );
    assert_eq!(three["candidates"][2]["commit"], Value::Null);
    // The flag only lowers the caps: team tier, min(guardrails 4, tier 4, flag 9).
    let wide = improve(
        &r,
        &db(&r, "p.db"),
        &["--pack", "hr-ops-pack", "--max-candidates", "9"],
        &[],
    );
    assert_eq!(wide["caps"]["max_candidates"], 4);
    assert_eq!(wide["caps"]["tier"], "team");
}

#[test]
fn a_proposal_outside_the_pack_is_refused_before_any_evaluation() {
    let marker = Arc::new(std::sync::Mutex::new(None::<usize>));
    let m = marker.clone();
    let llm = LlmServer::start(Arc::new(move |body: &Value, n| {
        if system_of(body).starts_with(missionctl::model::OPTIMISER_SYSTEM) {
            *m.lock().expect("lock") = Some(n);
            let answer = json!({
                "rationale": "loosen the policy instead",
                "sections": {
                    "policies/hard-constraints.yaml": "max_prompt_tokens: 99999\n",
                    "packs/global/prompts/safety.md": "be nice\n",
                },
            });
            return Reply::Json(missionctl::eval::demo_model::completion_body(
                "demo-optimiser",
                "",
                "",
                &answer.to_string(),
            ));
        }
        Reply::Json(missionctl::eval::demo_model::respond(body))
    }));
    let r = crate::gate::gate_repo(&llm, true);
    drop_escalation_rule(&r);
    let rep = improve(
        &r,
        &db(&r, "s.db"),
        &["--pack", "hr-ops-pack", "--max-candidates", "1"],
        &[("TEST_LLM_KEY", "k")],
    );
    let c = &rep["candidates"][0];
    assert_eq!(c["outcome"], "out-of-scope", "{rep:#}");
    let why = c["reason"].as_str().expect("reason");
    assert!(
        why.contains("policies/hard-constraints.yaml")
            && why.contains("packs/global/prompts/safety.md"),
        "{why}"
    );
    assert_eq!(c["commit"], Value::Null);
    // Nothing was evaluated after the optimiser's answer.
    let at = marker
        .lock()
        .expect("lock")
        .expect("the optimiser was asked");
    assert_eq!(llm.count(), at + 1, "requests after the refused proposal");
    assert_eq!(rep["branch"], Value::Null);
}

fn fake_github_env(gh: &GithubServer) -> Vec<(&'static str, String)> {
    vec![
        ("GITHUB_API_URL", gh.url.clone()),
        ("GITHUB_REPOSITORY", "acme/fleet".into()),
        ("GITHUB_TOKEN", "ghs_test".into()),
    ]
}

#[test]
fn open_pr_opens_one_pull_request_with_the_evidence_and_a_rerun_opens_none() {
    let gh = GithubServer::start();
    // Someone else's fork has a branch of the same name: not ours.
    gh.state.lock().expect("s").open_pulls.push(json!({
        "number": 7, "state": "open", "html_url": "https://github.com/acme/fleet/pull/7",
        "head": {"ref": BRANCH, "repo": {"full_name": "mallory/fleet"}}, "base": {"ref": "main"},
    }));
    // GitHub fails after creating the pull request.
    gh.state.lock().expect("s").inject.push(Injection {
        method: "POST",
        path_suffix: "/pulls".into(),
        status: 502,
        after_write: true,
        ..Injection::default()
    });
    let f = TestContext::fleet("unused");
    drop_escalation_rule(&f);
    f.push();
    // A pull request needs its head branch on the remote first.
    gh.state.lock().expect("s").remote = Some(f.remote.clone());
    let db = db(&f, "state.db");
    let env = fake_github_env(&gh);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let rep = improve(&f, &db, &["--pack", "hr-ops-pack", "--open-pr"], &env);
    let pr = &rep["pull_request"];
    assert_eq!(pr["existing"], false, "{rep:#}");
    let pulls: Vec<Value> = gh.state.lock().expect("s").open_pulls.clone();
    let ours: Vec<&Value> = pulls
        .iter()
        .filter(|p| p["head"]["repo"]["full_name"] == "acme/fleet")
        .collect();
    assert_eq!(ours.len(), 1, "{pulls:#?}");
    let p = ours[0];
    assert_eq!(p["number"], pr["number"]);
    assert_eq!(p["base"]["ref"], "main");
    assert_eq!(p["head"]["ref"], BRANCH);
    // The branch is on the remote.
    assert_eq!(
        git(&f.remote, &["rev-parse", BRANCH]),
        f.git(&["rev-parse", BRANCH])
    );
    // The body is the evidence: failures addressed, before/after, spend,
    // candidates, and the gate's own figures.
    let body = p["body"].as_str().expect("body");
    let w = &rep["candidates"][0];
    for needle in [
        "Failures addressed".to_string(),
        "fixed `harassment-escalates`".to_string(),
        "| `medical-accommodation` | 0.".to_string(),
        "### Spend".to_string(),
        "### Candidates tried".to_string(),
        format!(
            "pass rate {:.1}% → {:.1}%",
            w["champion_pass_rate"].as_f64().expect("c") * 100.0,
            w["pass_rate"].as_f64().expect("p") * 100.0
        ),
        format!(
            "Missionctl-Improve-Run: {}",
            rep["run_id"].as_str().expect("id")
        ),
    ] {
        assert!(body.contains(&needle), "missing {needle:?} in:\n{body}");
    }
    // The gate on the pushed branch agrees with the body.
    let (code, ev) = gate(&f, BRANCH, &db);
    assert_eq!(code, 0);
    let rates = format!(
        "pass rate {:.1}% → {:.1}%",
        ev["packs"][0]["champion_pass_rate"].as_f64().expect("c") * 100.0,
        ev["packs"][0]["challenger_pass_rate"].as_f64().expect("p") * 100.0
    );
    assert!(body.contains(&rates), "{rates} not in the body");

    // A rerun with nothing new: the same proposal, no second pull request.
    let again = improve(&f, &db, &["--pack", "hr-ops-pack", "--open-pr"], &env);
    assert_eq!(again["pull_request"]["existing"], true, "{again:#}");
    assert_eq!(again["pull_request"]["number"], pr["number"]);
    let posts = gh
        .state
        .lock()
        .expect("s")
        .log
        .iter()
        .filter(|q| q.method == "POST" && q.path.ends_with("/pulls"))
        .count();
    assert_eq!(posts, 1);
}

#[test]
fn open_pr_without_github_access_says_what_to_set() {
    let r = TestRepo::new();
    let out = missionctl()
        .args(["improve", "--pack", "hr-ops-pack", "--open-pr", "--repo"])
        .arg(&r.work)
        .env_remove("GITHUB_REPOSITORY")
        .env_remove("GITHUB_TOKEN")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GITHUB_REPOSITORY"), "{err}");
    let unknown = missionctl()
        .args(["improve", "--pack", "no-such-pack", "--repo"])
        .arg(&r.work)
        .args(["--db", &db(&r, "x.db")])
        .output()
        .expect("run");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("has no pack `no-such-pack`"));
}

/// While an improvement pull request for the pack is open, a different
/// proposal is not pushed or opened: reviewers see one at a time.
#[test]
fn a_different_proposal_waits_while_one_is_open() {
    let gh = GithubServer::start();
    gh.state.lock().expect("s").open_pulls.push(json!({
        "number": 41, "state": "open", "html_url": "https://github.com/acme/fleet/pull/41",
        "head": {"ref": "missionctl/improve/hr-ops-pack/1.0.1-improve.3", "repo": {"full_name": "acme/fleet"}},
        "base": {"ref": "main"},
    }));
    let f = TestContext::fleet("unused");
    drop_escalation_rule(&f);
    f.push();
    let env = fake_github_env(&gh);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let rep = improve(
        &f,
        &db(&f, "s.db"),
        &["--pack", "hr-ops-pack", "--open-pr"],
        &env,
    );
    assert_eq!(rep["pull_request"]["number"], 41, "{rep:#}");
    assert_eq!(rep["pull_request"]["existing"], true);
    assert!(
        rep["no_winner"]
            .as_str()
            .expect("why")
            .contains("already open (#41"),
        "{rep:#}"
    );
    assert_eq!(rep["branch"], Value::Null);
    let log = gh.state.lock().expect("s").log.clone();
    assert!(!log.iter().any(|q| q.method == "POST"), "nothing opened");
    assert_eq!(
        git(&f.remote, &["branch", "--list", "missionctl/*"]),
        "",
        "nothing pushed"
    );
}
