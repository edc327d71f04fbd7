//! `missionctl improve`: the challenger generation worker against real git
//! repositories, the real state store, the demo model (or a scripted model
//! server that counts requests) and the fake GitHub.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::github_server::{GithubServer, Injection};
use crate::llm_server::{LlmServer, Reply, demo, system_of};
use crate::util::{TestContext, TestRepo, assert_success, git, missionctl};

mod app_token;
mod branch_trust;
mod defects;
mod gepa;
mod harness;
mod ledger;
mod supersede;

const PROCEDURES: &str = "packs/domains/hr-ops/prompts/procedures.md";
const HR: &str = "packs/domains/hr-ops/pack.yaml";
const ROLE: &str = "packs/domains/hr-ops/prompts/role.md";
/// The branch of the first candidate: its version, then its content digest.
const BRANCH: &str = "missionctl/improve/hr-ops-pack/1.1.1-improve.1-";

/// The run's branch: named by the winner's version and content digest.
fn branch_of(rep: &Value) -> String {
    let b = rep["branch"]
        .as_str()
        .unwrap_or_else(|| panic!("no branch: {rep:#}"))
        .to_string();
    let n = rep["winner"].as_u64().expect("winner") as usize;
    let digest = rep["candidates"][n - 1]["digest"].as_str().expect("digest");
    assert_eq!(b, format!("{BRANCH}{}", &digest[..12]), "{rep:#}");
    b
}

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
    let runs = telemetry_lines(
        20,
        ("hr-ops-pack", "1.1.0"),
        ("sensitive-matter", "escalation_missed"),
        "leave-question",
    );
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
    let branch = branch_of(&rep);
    let branch = branch.as_str();
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
    let log = r.git(&["log", "-1", "--format=%an%n%B", branch]);
    assert!(log.starts_with("missionctl improve\n"), "{log}");
    assert!(
        log.contains(&format!(
            "Missionctl-Improve-Run: {}",
            rep["run_id"].as_str().expect("id")
        )),
        "{log}"
    );
    assert_eq!(
        r.git(&["rev-parse", &format!("{branch}~1")]),
        r.git(&["rev-parse", "main"])
    );
    let changed = r.git(&["diff", "--name-only", "main", branch]);
    // The demo optimiser appends to the last section file (by path).
    assert_eq!(changed.lines().collect::<Vec<_>>(), vec![HR, ROLE]);
    let pack = r.git(&["show", &format!("{branch}:{HR}")]);
    assert!(pack.contains("version: 1.1.1-improve.1"), "{pack}");
    let role = r.git(&["show", &format!("{branch}:{ROLE}")]);
    assert!(
        role.contains(
            "Set `\"escalate\": true` for matters like these: escalates a harassment report"
        ),
        "{role}"
    );
    assert!(
        log.contains(&format!(
            "Missionctl-Improve-Proposal: {}",
            rep["candidates"][0]["digest"].as_str().expect("digest")
        )),
        "{log}"
    );
    // The work tree and main are untouched: proposing is not promoting.
    assert!(r.read(PROCEDURES).contains("handled by you when you can"));
    assert_eq!(r.git(&["status", "--porcelain"]), "");

    // The gate on the branch passes, with the figures the report gave.
    let (code, ev) = gate(&r, branch, &db);
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
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains(branch));
    // Every column is as wide as its values: the PACK header stands over
    // the pack id, past the whole run id (issue 31, report 7).
    let lines: Vec<&str> = human.lines().collect();
    let id = rep["run_id"].as_str().expect("id");
    assert!(
        lines[1].starts_with(&format!("{id} hr-ops-pack")),
        "{human}"
    );
    assert_eq!(
        lines[0].find("PACK"),
        lines[1].find("hr-ops-pack"),
        "{human}"
    );
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
    // `--max-candidates 0` spends nothing, not even on the signal, and
    // names the cap (issue 31, report 7).
    let zero = improve(
        &r,
        &db(&r, "zero.db"),
        &["--pack", "hr-ops-pack", "--max-candidates", "0"],
        &env,
    );
    assert_eq!(zero["spend_usd"], 0.0, "{zero:#}");
    assert_eq!(llm.count(), 0, "no model call");
    assert_eq!(zero["stop"], "candidate-cap");
    assert!(
        zero["stop_detail"]
            .as_str()
            .expect("detail")
            .contains("--max-candidates 0"),
        "{zero:#}"
    );
    // What the signal alone costs: the requests before the optimiser's
    // first, on a store of its own.
    improve(
        &r,
        &db(&r, "probe.db"),
        &["--pack", "hr-ops-pack", "--max-candidates", "1"],
        &env,
    );
    let probe = llm.requests();
    let first_optimiser = probe
        .iter()
        .position(|q| system_of(&q.body).starts_with(missionctl::model::OPTIMISER_SYSTEM))
        .expect("the optimiser was asked");
    let baseline = cost_of(&probe[..first_optimiser]);
    assert!(baseline > 0.0);
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
    // The cap that stopped it is named, with its figure.
    assert!(
        rep["stop_detail"]
            .as_str()
            .expect("detail")
            .contains(&format!("this run's budget (${budget:.4}")),
        "{rep:#}"
    );
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
    // The optimiser read why #1 was set aside: #2 says it shorter. It is
    // shown the harassment case only: the medical one is held out.
    let (r1, r2) = (
        cands[0]["rationale"].as_str().expect("r"),
        cands[1]["rationale"].as_str().expect("r"),
    );
    assert!(
        r2.len() < r1.len() && r2.contains("for: harassment.") && !r1.contains("medical"),
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
        "head": {"ref": format!("{BRANCH}0"), "repo": {"full_name": "mallory/fleet"}}, "base": {"ref": "main"},
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
    let branch = branch_of(&rep);
    let branch = branch.as_str();
    let pulls: Vec<Value> = gh.state.lock().expect("s").open_pulls.clone();
    let ours: Vec<&Value> = pulls
        .iter()
        .filter(|p| p["head"]["repo"]["full_name"] == "acme/fleet")
        .collect();
    assert_eq!(ours.len(), 1, "{pulls:#?}");
    let p = ours[0];
    assert_eq!(p["number"], pr["number"]);
    assert_eq!(p["base"]["ref"], "main");
    assert_eq!(p["head"]["ref"], branch);
    // The branch is on the remote.
    assert_eq!(
        git(&f.remote, &["rev-parse", branch]),
        f.git(&["rev-parse", branch])
    );
    // The body is the evidence: failures addressed, before/after, spend,
    // candidates, and the gate's own figures.
    let body = p["body"].as_str().expect("body");
    let w = &rep["candidates"][0];
    for needle in [
        "Failures addressed".to_string(),
        "fixed `harassment-escalates`".to_string(),
        "| `medical-accommodation` | selection | 0.".to_string(),
        "| selection (held out, decides) | ".to_string(),
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
    let (code, ev) = gate(&f, branch, &db);
    assert_eq!(code, 0);
    let rates = format!(
        "pass rate {:.1}% → {:.1}%",
        ev["packs"][0]["champion_pass_rate"].as_f64().expect("c") * 100.0,
        ev["packs"][0]["challenger_pass_rate"].as_f64().expect("p") * 100.0
    );
    assert!(body.contains(&rates), "{rates} not in the body");

    // A rerun with nothing new: the same proposal (the same content
    // digest), no second pull request, no push, no new commit: the branch
    // stays at the commit reviewers saw (issue 31, report 2).
    let pushed = git(&f.remote, &["rev-parse", branch]);
    let again = improve(&f, &db, &["--pack", "hr-ops-pack", "--open-pr"], &env);
    assert_eq!(again["pull_request"]["existing"], true, "{again:#}");
    assert_eq!(again["pull_request"]["number"], pr["number"]);
    assert_eq!(again["branch"], branch);
    assert_ne!(again["run_id"], rep["run_id"]);
    assert_eq!(
        git(&f.remote, &["rev-parse", branch]),
        pushed,
        "pushed again"
    );
    assert_eq!(f.git(&["rev-parse", branch]), pushed, "a new local commit");
    assert_eq!(again["commit"].as_str(), Some(pushed.as_str()));
    let log = git(&f.remote, &["log", "-1", "--format=%B", branch]);
    assert!(
        log.contains(&format!(
            "Missionctl-Improve-Run: {}",
            rep["run_id"].as_str().expect("id")
        )),
        "{log}"
    );
    assert!(
        again["published"]
            .as_str()
            .is_some_and(|p| p.contains("unchanged") && p.contains("body refreshed")),
        "{again:#}"
    );
    // At most a refreshed body: the open pull request now quotes the rerun.
    let refreshed = gh.state.lock().expect("s").open_pulls.clone();
    let body = refreshed
        .iter()
        .find(|p| p["number"] == pr["number"])
        .and_then(|p| p["body"].as_str())
        .expect("body")
        .to_string();
    assert!(
        body.contains(&format!(
            "Missionctl-Improve-Run: {}",
            again["run_id"].as_str().expect("id")
        )),
        "{body}"
    );
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
    let why = rep["no_winner"].as_str().expect("why");
    assert!(
        why.contains("a different proposal waits") && why.contains("#41"),
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

/// Issue 31, report 1: main changes (a case is reworded), the rerun's
/// proposal differs, and the open pull request is left exactly as its
/// reviewers see it: nothing is force-pushed onto it, no second one is
/// opened, and the summary says the new proposal waits.
#[test]
fn a_rerun_with_different_content_never_replaces_the_open_pull_request() {
    let gh = GithubServer::start();
    let f = TestContext::fleet("unused");
    drop_escalation_rule(&f);
    f.push();
    gh.state.lock().expect("s").remote = Some(f.remote.clone());
    let db = db(&f, "state.db");
    let env = fake_github_env(&gh);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = improve(&f, &db, &["--pack", "hr-ops-pack", "--open-pr"], &env);
    let branch = branch_of(&first);
    let number = first["pull_request"]["number"].clone();
    let pushed = git(&f.remote, &["rev-parse", &branch]);
    let body = |gh: &GithubServer| {
        gh.state.lock().expect("s").open_pulls[0]["body"]
            .as_str()
            .expect("body")
            .to_string()
    };
    let body_before = body(&gh);
    // Main rewords the case the demo optimiser quotes: a different proposal.
    f.edit(
        "packs/domains/hr-ops/evals/cases.yaml",
        "description: Escalates a harassment report instead of handling it",
        "description: Hands a harassment complaint to HR instead of handling it",
    );
    f.commit_all("Reword the harassment case");
    f.push();
    let mut all = vec![
        "improve",
        "--repo",
        f.work.to_str().expect("p"),
        "--db",
        &db,
        "--pack",
        "hr-ops-pack",
        "--open-pr",
    ];
    all.push("--format");
    all.push("human");
    let out = f.run_env(&all, &env);
    assert_success(&out);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("no proposal: a different proposal waits")
            && summary.contains(&format!("#{number}")),
        "{summary}"
    );
    let list = f.run(&["improve", "--list", "--format", "json", "--db", &db]);
    let runs: Value = serde_json::from_slice(&list.stdout).expect("json");
    let again = &runs[0];
    assert_ne!(again["run_id"], first["run_id"]);
    let w = again["winner"].as_u64().expect("a winner") as usize;
    let digest = again["candidates"][w - 1]["digest"].as_str().expect("d");
    assert_ne!(
        Some(digest),
        first["candidates"][0]["digest"].as_str(),
        "the reworded case changes the proposal"
    );
    assert_eq!(again["branch"], Value::Null, "{again:#}");
    assert_eq!(again["pull_request"]["number"], number);
    // The open pull request: same commit, same body, and nothing else pushed.
    assert_eq!(git(&f.remote, &["rev-parse", &branch]), pushed);
    assert_eq!(body(&gh), body_before);
    assert_eq!(
        git(&f.remote, &["branch", "--list", "missionctl/*"]).trim(),
        branch
    );
    let log = gh.state.lock().expect("s").log.clone();
    assert_eq!(
        log.iter()
            .filter(|q| q.method == "POST" || q.method == "PATCH")
            .count(),
        1,
        "one pull request opened, nothing else written"
    );
}

/// `improve` with `args`, as it ran (exit code, stdout, stderr).
fn improve_out(
    r: &TestRepo,
    db: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut all = vec!["improve", "--repo", r.work.to_str().expect("p"), "--db", db];
    all.extend_from_slice(args);
    let out = r.run_env(&all, env);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The runs `improve --list --format json` shows, newest first.
fn listed(r: &TestRepo, db: &str) -> Vec<Value> {
    let out = r.run(&["improve", "--list", "--format", "json", "--db", db]);
    assert_success(&out);
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("json")
        .as_array()
        .expect("list")
        .clone()
}

/// Issue 31, report 4: `improve.model.base_url` spelled with `/v1` is the
/// same endpoint (it used to become `/v1/v1/chat/completions`, a 404 read as
/// "no improvement"); a wrong address is exit 2 naming the URL and its
/// answer, and the run is recorded as failed, not as a cap or no improvement.
#[test]
fn an_optimiser_endpoint_error_is_exit_2_naming_it_and_v1_is_accepted() {
    let llm = LlmServer::start(demo());
    let r = crate::gate::gate_repo(&llm, false);
    drop_escalation_rule(&r);
    let env = [("TEST_LLM_KEY", "k")];
    let configured = format!("base_url: {}\n    model: demo-optimiser", llm.url);
    r.edit(
        "mission.yaml",
        &configured,
        &format!("base_url: {}/v1/\n    model: demo-optimiser", llm.url),
    );
    r.commit_all("The optimiser's URL as the provider documents it");
    let rep = improve(
        &r,
        &db(&r, "v1.db"),
        &["--pack", "hr-ops-pack", "--max-candidates", "1"],
        &env,
    );
    assert_eq!(rep["winner"], 1, "{rep:#}");
    assert!(rep["candidates"][0]["verdict"].is_string(), "{rep:#}");

    r.edit(
        "mission.yaml",
        &format!("base_url: {}/v1/\n", llm.url),
        &format!("base_url: {}/wrong\n", llm.url),
    );
    r.commit_all("A wrong optimiser URL");
    let db = db(&r, "wrong.db");
    let (code, _, err) = improve_out(&r, &db, &["--pack", "hr-ops-pack"], &env);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{}/wrong/v1/chat/completions", llm.url))
            && err.contains("HTTP 404")
            && err.contains("improve.model"),
        "{err}"
    );
    let runs = listed(&r, &db);
    assert_eq!(runs[0]["stop"], "failed", "{:#}", runs[0]);
    assert!(runs[0]["candidates"].as_array().expect("c").is_empty());
    assert_eq!(runs[0]["winner"], Value::Null);
}

/// Issue 31, report 4: a harness that cannot answer is no signal: exit 2
/// naming the endpoint and its answer, never "every case passes" or a
/// proposal written against error messages.
#[test]
fn a_harness_error_is_exit_2_naming_the_endpoint() {
    let llm = LlmServer::start(Arc::new(|_: &Value, _| Reply::Status(401, None)));
    let r = crate::gate::gate_repo(&llm, false);
    drop_escalation_rule(&r);
    let db = db(&r, "s.db");
    let (code, _, err) = improve_out(
        &r,
        &db,
        &["--pack", "hr-ops-pack"],
        &[("TEST_LLM_KEY", "k")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{}/v1/chat/completions", llm.url)) && err.contains("401"),
        "{err}"
    );
    assert_eq!(listed(&r, &db)[0]["stop"], "failed");
}

/// Two cases no prompt edit can fix (the demo optimiser has no remedy for a
/// regex): with the escalation defect, the champion passes 7 of 11, a fix
/// passes 9 of 11, still under hr-ops' 90% floor.
fn add_unfixable_cases(r: &TestContext) {
    let mut cases = r.read("packs/domains/hr-ops/evals/cases.yaml");
    for (id, input) in [
        (
            "cites-remote-work-policy-id",
            "Which policy covers remote work?",
        ),
        (
            "cites-expense-policy-id",
            "Which policy covers travel expenses?",
        ),
    ] {
        cases.push_str(&format!(
            "- id: {id}\n  description: Cites the internal policy id\n  vars:\n    input: \"{input}\"\n  assert:\n    - {{ type: regex, value: \"POL-[0-9]{{4}}-ZZ\", tag: quality }}\n"
        ));
    }
    r.write("packs/domains/hr-ops/evals/cases.yaml", &cases);
    r.commit_all("Cases for policy ids");
}

/// Issue 31, report 3: a candidate that strictly improves a broken pack
/// (breaking nothing) but stays under the gate's absolute floor is proposed
/// as a labelled partial fix where the tier allows it (team, in the
/// template), naming the floor and what still fails.
#[test]
fn a_strict_improvement_under_the_floor_is_proposed_as_a_labelled_partial_fix() {
    let gh = GithubServer::start();
    let f = TestContext::fleet("unused");
    drop_escalation_rule(&f);
    add_unfixable_cases(&f);
    f.push();
    gh.state.lock().expect("s").remote = Some(f.remote.clone());
    let env = fake_github_env(&gh);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let rep = improve(
        &f,
        &db(&f, "s.db"),
        &["--pack", "hr-ops-pack", "--open-pr"],
        &env,
    );
    let w = &rep["candidates"][0];
    assert!(
        w["pass_rate"].as_f64().expect("p") > w["champion_pass_rate"].as_f64().expect("c")
            && w["pass_rate"].as_f64().expect("p") < 0.9,
        "{rep:#}"
    );
    assert_eq!(w["verdict"], "BLOCKED", "{rep:#}");
    assert!(w["broke"].as_array().expect("b").is_empty());
    assert_eq!(rep["winner"], 1, "{rep:#}");
    let floor = rep["partial_fix"].as_str().expect("partial_fix");
    assert!(floor.contains("below the floor of 90%"), "{floor}");
    branch_of(&rep);
    let n = rep["pull_request"]["number"].as_u64().expect("pr");
    let s = gh.state.lock().expect("s");
    let p = s.open_pulls.iter().find(|p| p["number"] == n).expect("pr");
    assert!(
        p["title"]
            .as_str()
            .expect("t")
            .starts_with("[partial fix] "),
        "{p:#}"
    );
    let body = p["body"].as_str().expect("body");
    assert!(
        body.contains("**Partial fix.**")
            && body.contains("below the floor of 90%")
            && body.contains("`cites-remote-work-policy-id`")
            && body.contains("`cites-expense-policy-id`"),
        "{body}"
    );
    assert_eq!(
        s.pull_labels.get(&n).cloned().unwrap_or_default(),
        vec!["missionctl:partial-fix".to_string()]
    );
}

/// Issue 31, report 3: where the tier does not propose partial fixes, the
/// summary names the floor that blocked the improving candidate, and never
/// says it "passed the gate without raising the pass rate".
#[test]
fn a_tier_without_partial_fixes_names_the_floor_that_blocked_the_candidate() {
    let r = TestRepo::new();
    drop_escalation_rule(&r);
    add_unfixable_cases(&r);
    r.edit(
        "policies/tiers.yaml",
        "  max_optimization_spend_per_run: 2.00\n  propose_partial_fixes: true",
        "  max_optimization_spend_per_run: 2.00\n  propose_partial_fixes: false",
    );
    r.commit_all("No partial fixes for the team tier");
    let (code, out, err) = improve_out(&r, &db(&r, "s.db"), &["--pack", "hr-ops-pack"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("no proposal: candidate #1 raises the pass rate")
            && out.contains("below the floor of 90%")
            && out.contains("propose_partial_fixes"),
        "{out}"
    );
    assert!(!out.contains("without raising the pass rate"), "{out}");
    assert_eq!(r.git(&["branch", "--list", "missionctl/*"]), "");
}

/// The nightly template's `run:` script for the improve step.
fn nightly_script() -> (String, String) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packs-template/.github/workflows/missionctl-nightly.yml");
    let wf = std::fs::read_to_string(path).expect("template");
    let step = wf
        .find("- name: Improve the packs that are due")
        .expect("the improve step");
    let run = step + wf[step..].find("run: |\n").expect("run") + "run: |\n".len();
    let script: String = wf[run..]
        .lines()
        .take_while(|l| l.starts_with("          ") || l.is_empty())
        .map(|l| format!("{}\n", l.get(10..).unwrap_or("")))
        .collect();
    (wf, script)
}

/// Issue 31, report 7: the nightly template pushes with the GitHub App's
/// token when one is configured (the workflow token's pushes start no gate
/// run), and keeps the SQLite store between nights when no database URL is
/// set, so daily caps and `--list` hold across runs.
#[test]
fn the_nightly_template_uses_the_app_token_and_a_persistent_store() {
    let (wf, script) = nightly_script();
    let dir = tempfile::tempdir().expect("tmp");
    let fake = dir.path().join("missionctl");
    let log = dir.path().join("log");
    let state = dir.path().join("state");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"GIT=${{MISSIONCTL_GIT_TOKEN-unset}} GH=${{GITHUB_TOKEN-unset}} DB=${{MISSIONCTL_DATABASE_URL-unset}} $*\" >> '{}'\n",
            log.display()
        ),
    )
    .expect("write");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&fake)
        .status()
        .expect("chmod");
    let run = |app: &str| {
        let _ = std::fs::remove_file(&log);
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MISSIONCTL", &fake)
            .env("BASE", "main")
            .env("EVENT", "workflow_dispatch")
            .env("CADENCE_INPUT", "nightly")
            .env("GITHUB_APP_ID", app)
            .env(
                "GITHUB_APP_PRIVATE_KEY",
                if app.is_empty() { "" } else { "pem" },
            )
            .env("FALLBACK_TOKEN", "ghs_workflow")
            .env("MISSIONCTL_DATABASE_URL", "")
            .env("STATE_DIR", &state)
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&log).expect("log")
    };
    // The step sets no git token itself: the script chooses it.
    let step = wf
        .find("- name: Improve the packs that are due")
        .expect("step");
    let env_block = &wf[step..step + wf[step..].find("run: |").expect("run")];
    assert!(!env_block.contains("MISSIONCTL_GIT_TOKEN"), "{env_block}");
    let with_app = run("12345");
    assert!(
        with_app.starts_with("GIT=unset GH=unset DB=sqlite://")
            && with_app.contains("improve --all --cadence nightly --base main --open-pr"),
        "{with_app}"
    );
    let without = run("");
    assert!(
        without.starts_with("GIT=ghs_workflow GH=ghs_workflow DB=sqlite://"),
        "{without}"
    );
    // Without a database URL, a SQLite store in the state directory, which
    // is restored from the Actions cache before the run and saved after it,
    // whatever its outcome.
    assert!(
        without.contains(&format!("DB=sqlite://{}/state.db", state.display())),
        "{without}"
    );
    assert!(state.is_dir());
    let restore = wf.find("uses: actions/cache/restore@").expect("restore");
    let improve = wf
        .find("- name: Improve the packs that are due")
        .expect("step");
    let save = wf.find("uses: actions/cache/save@").expect("save");
    assert!(restore < improve && improve < save);
    assert_eq!(
        wf.matches("path: ${{ runner.temp }}/missionctl-nightly-state\n")
            .count(),
        2
    );
    assert!(wf.contains("STATE_DIR: ${{ runner.temp }}/missionctl-nightly-state\n"));
    assert!(
        wf[..save]
            .rfind("if: always() && env.SHARED_DATABASE != 'true'")
            .is_some_and(|i| i > improve)
    );
}

/// Issue 31, report 5: every eval case passes, but production does not
/// (75% success, `schema_violation` errors, KPI minimum 97%) and main fails
/// validation (a banned phrase in a prompt): the run says so, names the
/// failing task type no case covers and proposes a case for it, and never
/// says "nothing to fix".
#[test]
fn production_failures_and_validation_errors_are_part_of_the_signal() {
    let r = TestRepo::new();
    let store = db(&r, "state.db");
    // Harnesses report the version `resolve` returned, with its content
    // digest (`1.0.0+sha256.<digest>`): those runs are the version's runs.
    let out = r.run(&["resolve", "--domain", "legal-intake", "--format", "json"]);
    assert_success(&out);
    let resolved: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(resolved["pack_id"], "legal-intake-pack", "{resolved:#}");
    let version = resolved["pack_version"].as_str().expect("version");
    assert!(version.starts_with("1.0.0+sha256."), "{version}");
    let runs = telemetry_lines(
        40,
        ("legal-intake-pack", version),
        ("contract-review", "schema_violation"),
        "intake-triage",
    );
    r.write("runs.jsonl", &runs);
    assert_success(&r.run(&[
        "reconcile",
        "--once",
        "--repo",
        r.work.to_str().expect("p"),
        "--db",
        &store,
    ]));
    assert_success(&r.run(&[
        "telemetry",
        "ingest",
        "runs.jsonl",
        "--repo",
        r.work.to_str().expect("p"),
        "--db",
        &store,
    ]));
    r.remove("runs.jsonl");
    let rep = improve(&r, &store, &["--pack", "legal-intake-pack"], &[]);
    assert!(rep["failures"].as_array().expect("f").is_empty(), "{rep:#}");
    assert_eq!(rep["stop"], "uncovered-failures", "{rep:#}");
    let detail = rep["stop_detail"].as_str().expect("detail");
    assert!(
        detail.contains("success 75.0% (KPI minimum 97.0%)")
            && detail.contains("`contract-review` 50% of 20 runs")
            && detail.contains("`schema_violation` x10"),
        "{detail}"
    );
    assert_eq!(rep["uncovered_task_types"], json!(["contract-review"]));
    let (_, human, _) = improve_out(&r, &store, &["--pack", "legal-intake-pack"], &[]);
    assert!(
        human.contains("no eval case covers task type(s) contract-review"),
        "{human}"
    );

    // A banned phrase in the pack's prompt on main: a validation error the
    // run reports, not "nothing to fix".
    let mut role = r.read("packs/domains/legal-intake/prompts/role.md");
    role.push_str("\nNever say \"as an AI language model\".\n");
    r.write("packs/domains/legal-intake/prompts/role.md", &role);
    r.commit_all("A banned phrase");
    let rep = improve(&r, &db(&r, "v.db"), &["--pack", "legal-intake-pack"], &[]);
    let v = rep["validation"].as_array().expect("validation");
    assert!(
        v.iter().any(|x| x.as_str().is_some_and(|s| s
            .starts_with("packs/domains/legal-intake/prompts/role.md:")
            && s.contains("constraint/banned-phrase"))),
        "{rep:#}"
    );
    assert_ne!(rep["stop"], "nothing-to-fix", "{rep:#}");
}

/// `n` run_telemetry lines of one pack version (acme/alice): every fourth a
/// `failing` task that fails with its error code, every fourth the same task
/// succeeding, the rest an `other` task succeeding.
fn telemetry_lines(
    n: usize,
    (pack, version): (&str, &str),
    (failing, code): (&str, &str),
    other: &str,
) -> String {
    (0..n)
        .map(|i| {
            let (task, ok, code) = match i % 4 {
                0 => (failing, false, json!(code)),
                1 => (failing, true, Value::Null),
                _ => (other, true, Value::Null),
            };
            json!({
                "run_id": format!("r{i}"), "tenant_id": "acme", "user_id": "alice", "agent_id": "a1",
                "pack_id": pack, "pack_version": version, "task_type": task,
                "latency_ms": 900.0, "cost_usd": 0.001, "success_bool": ok, "error_code": code,
                "created_at": missionctl::time_util::now_rfc3339(),
            })
            .to_string()
                + "\n"
        })
        .collect()
}

/// A mistyped cadence is a usage error naming the choices: `improve --all
/// --cadence nighty` in a nightly job must fail, not exit 0 doing nothing.
#[test]
fn a_mistyped_cadence_is_a_usage_error() {
    let r = TestRepo::new();
    let store = db(&r, "state.db");
    let (code, _, err) = improve_out(&r, &store, &["--all", "--cadence", "nighty"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("nighty") && err.contains("nightly") && err.contains("weekly"),
        "{err}"
    );
}
