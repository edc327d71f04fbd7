//! GitHub integration end to end: the real binary against a fake GitHub
//! REST v3 server on 127.0.0.1, with GitHub's own webhook payloads.

use serde_json::{Value, json};

use crate::gate::{HR, HR_ROLE, branch, bump, gate_repo};
use crate::github_server::GithubServer;
use crate::llm_server::{LlmServer, demo};
use crate::util::{TestRepo, assert_success};

fn payload(name: &str) -> Value {
    let p = format!(
        "{}/tests/fixtures/github-payloads/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(p).expect("payload")).expect("json")
}

fn run_with(
    r: &TestRepo,
    args: &[&str],
    gh: &GithubServer,
    extra: &[(&str, String)],
) -> std::process::Output {
    let mut env: Vec<(&str, String)> = gh.env();
    env.extend(extra.iter().cloned());
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    r.run_env(args, &pairs)
}

/// `github report --evidence DIR --pr N`.
fn report_args<'a>(ev: &'a std::path::Path, pr: &'a str) -> [&'a str; 6] {
    [
        "github",
        "report",
        "--evidence",
        ev.to_str().expect("p"),
        "--pr",
        pr,
    ]
}

/// `missionctl github report --evidence DIR` (plus `extra`), which must succeed.
fn report_ok(r: &TestRepo, gh: &GithubServer, dir: &std::path::Path, extra: &[&str]) {
    let mut args = vec!["github", "report", "--evidence", dir.to_str().expect("p")];
    args.extend_from_slice(extra);
    assert_success(&run_with(r, &args, gh, &[]));
}

#[test]
fn event_payloads_parse_as_github_sends_them() {
    use missionctl::github::event::parse;
    let pr = parse(Some("pull_request"), &payload("pull_request.opened"));
    assert_eq!(pr.pr, Some(2));
    assert_eq!(
        pr.head_sha.as_deref(),
        Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821")
    );
    assert_eq!(
        pr.base_sha.as_deref(),
        Some("f95f852bd8fca8fcc58a9a2d6c842781e32a215e")
    );
    assert!(!pr.from_fork);
    assert_eq!(pr.labels, ["bug"]);
    let review = parse(None, &payload("pull_request_review.submitted"));
    assert_eq!(review.name, "pull_request_review");
    assert_eq!(review.pr, Some(2));
    let mg = parse(None, &payload("merge_group.checks_requested"));
    assert_eq!(mg.name, "merge_group");
    assert_eq!(
        mg.head_sha.as_deref(),
        Some("2ffea6db159f6b6c47a24e778fb9ef40cf6b1c7d")
    );
    assert_eq!(mg.base_ref.as_deref(), Some("main"));
    assert_eq!(mg.pr, None);
    let wr = parse(None, &payload("workflow_run.completed.with-pull-requests"));
    assert_eq!(wr.pr, Some(2));
    assert_eq!(
        wr.head_sha.as_deref(),
        Some("3484a3fb816e0859fd6e1cea078d76385ff50625")
    );
    // A fork: the head repository differs from the base repository.
    let mut fork = payload("pull_request.opened");
    fork["pull_request"]["head"]["repo"]["full_name"] = json!("someone/Hello-World");
    assert!(parse(Some("pull_request"), &fork).from_fork);
    // What real deliveries add or null out: organization and installation
    // fields are ignored; a null top-level repository leaves it unknown.
    let mut org = payload("pull_request.opened");
    org["organization"] = json!({"login": "acme-fleet", "id": 9});
    org["installation"] = json!({"id": 42, "node_id": "MDIz"});
    let e = parse(Some("pull_request"), &org);
    assert_eq!(
        e.pr,
        parse(Some("pull_request"), &payload("pull_request.opened")).pr
    );
    org["repository"] = Value::Null;
    assert_eq!(parse(Some("pull_request"), &org).repository, None);
    // Issue 11 point 7: a deleted fork (`head.repo: null`) is still a fork.
    let mut deleted = payload("pull_request.opened");
    deleted["pull_request"]["head"]["repo"] = Value::Null;
    assert!(parse(Some("pull_request"), &deleted).from_fork);
    let mut wr = payload("workflow_run.completed.with-pull-requests");
    wr["workflow_run"]["head_repository"] = Value::Null;
    assert!(parse(Some("workflow_run"), &wr).from_fork);
}

#[test]
fn report_creates_then_edits_one_sticky_comment_and_a_check_run() {
    let llm = LlmServer::start(demo());
    let gh = GithubServer::start();
    let r = gate_repo(&llm, false);
    branch(&r, "prose", |r| {
        r.edit(HR_ROLE, "Answer in the `hr-answer` JSON format:\n`{\"answer\": \"...\", \"policy_refs\": [\"Leave Policy 3.2\"], \"escalate\": false, \"ticket_id\": null}`.\n", "Always answer in prose, never JSON.\n");
        bump(r, HR);
    });
    let ev = r.dir.path().join("ev");
    let db = format!("sqlite://{}", r.dir.path().join("s.db").display());
    let out = r.run_env(
        &[
            "gate",
            "--base",
            "main",
            "--head",
            "prose",
            "--out",
            ev.to_str().expect("p"),
            "--db",
            &db,
        ],
        &[("TEST_LLM_KEY", "test-key")],
    );
    assert_eq!(out.status.code(), Some(1));
    let summary = r.dir.path().join("summary.md");
    let outputs = r.dir.path().join("outputs.txt");
    let extra = [
        ("GITHUB_STEP_SUMMARY", summary.display().to_string()),
        ("GITHUB_OUTPUT", outputs.display().to_string()),
    ];
    let head_sha = r.git(&["rev-parse", "prose"]);
    let report = [
        "github",
        "report",
        "--evidence",
        ev.to_str().expect("p"),
        "--pr",
        "7",
    ];
    // The pull request has moved on since the gate ran: nothing is posted on it.
    gh.with(|s| s.pulls.insert(7, "f".repeat(40)));
    let stale = run_with(&r, &report, &gh, &extra);
    assert_eq!(stale.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("not at the evaluated commit"));
    gh.with(|s| assert!(s.comments.is_empty() && s.check_runs.is_empty()));
    gh.with(|s| s.pulls.insert(7, head_sha.clone()));
    let first = run_with(&r, &report, &gh, &extra);
    assert_success(&first);
    gh.with(|s| {
        assert_eq!(s.comments.len(), 1);
        let body = s.comments[0]["body"].as_str().expect("body");
        assert!(
            body.starts_with("<!-- missionctl:gate -->\nBLOCKED: "),
            "{body}"
        );
        assert_eq!(s.check_runs.len(), 1);
        let cr = &s.check_runs[0];
        assert_eq!(cr["name"], "missionctl/gate");
        assert_eq!(cr["head_sha"], head_sha.as_str());
        assert_eq!(cr["conclusion"], "failure");
        let notes = cr["output"]["annotations"].as_array().expect("annotations");
        assert!(!notes.is_empty());
        assert!(
            notes
                .iter()
                .all(|n| n["path"] == "packs/domains/hr-ops/evals/cases.yaml"),
            "{notes:#?}"
        );
        // Each annotation sits on the line where its case starts.
        let harassment = notes
            .iter()
            .find(|n| {
                n["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("harassment-escalates"))
            })
            .expect("harassment case annotated");
        assert_eq!(harassment["start_line"], 18);
        assert!(
            s.log
                .iter()
                .all(|q| q.authorization.as_deref() == Some("Bearer ghs_test_token"))
        );
    });
    // Second run: the same comment is edited, never duplicated.
    let second = run_with(&r, &report, &gh, &extra);
    assert!(second.status.success());
    let outcome: Value = serde_json::from_slice(&second.stdout).expect("outcome");
    assert_eq!(outcome["comment_created"], false);
    gh.with(|s| {
        assert_eq!(s.comments.len(), 1, "duplicated comment");
        let patches = s
            .log
            .iter()
            .filter(|q| q.method == "PATCH" && q.path.contains("/issues/comments/"))
            .count();
        assert_eq!(patches, 1);
        assert!(s.log.iter().any(|q| q.method == "GET"
            && q.path == "/repos/acme-fleet/packs/issues/7/comments"
            && q.query.contains("per_page=100")));
    });
    let out = std::fs::read_to_string(outputs).expect("outputs");
    assert!(
        out.contains("verdict=BLOCKED")
            && out.contains("blocked=true")
            && out.contains("cost_usd=")
            && out.contains("evidence_path="),
        "{out}"
    );
    assert!(
        std::fs::read_to_string(summary)
            .expect("summary")
            .starts_with("BLOCKED")
    );
}

/// A synthetic evidence directory (what `gate --out` writes), for report tests.
fn evidence_dir(r: &TestRepo, verdict: &str, errors: usize, md: &str) -> std::path::PathBuf {
    let dir = r.dir.path().join(format!("ev-{errors}-{}", md.len()));
    std::fs::create_dir_all(&dir).expect("dir");
    let diags: Vec<Value> = (0..errors)
        .map(|i| json!({"code": "schema/type", "severity": "error", "file": "packs/domains/hr-ops/pack.yaml", "line": i + 1, "col": 1, "message": format!("problem {i}")}))
        .collect();
    // A complete evidence record: `github report` reads the gate's typed
    // Evidence and refuses a file that is not one.
    let ev = json!({
        "verdict": verdict, "blocked": verdict != "PASS", "reasons": [], "run_id": "r",
        "base": "main", "head": "pr", "base_commit": "",
        "head_commit": "0123456789abcdef0123456789abcdef01234567",
        "harness": "test", "judge": null, "paid_calls_skipped": false,
        "validation_errors": diags, "regressions": [], "packs": [], "guardrails": [],
        "approvals": null, "policy_changes": [], "needs_policy_owner": false,
        "sample_note": null, "partial": false, "model_requests": 0, "cache_hits": 0,
        "cache_hit_rate": 0.0, "retries": 0, "throttled": 0, "cost_usd": 0.0,
        "started_at": "2026-11-26T00:00:00Z", "finished_at": "2026-11-26T00:00:01Z"
    });
    std::fs::write(dir.join("evidence.json"), ev.to_string()).expect("write");
    std::fs::write(dir.join("evidence.md"), md).expect("write");
    dir
}

#[test]
fn annotations_are_sent_fifty_per_request() {
    let gh = GithubServer::start();
    let r = TestRepo::new();
    let dir = evidence_dir(&r, "BLOCKED", 120, "BLOCKED: 120 validation errors\n");
    report_ok(&r, &gh, &dir, &[]);
    gh.with(|s| {
        let reqs: Vec<usize> = s
            .log
            .iter()
            .filter(|q| q.path.contains("/check-runs"))
            .map(|q| {
                q.body["output"]["annotations"]
                    .as_array()
                    .map_or(0, Vec::len)
            })
            .collect();
        assert_eq!(reqs, [50, 50, 20]);
        assert_eq!(
            s.check_runs[0]["output"]["annotations"]
                .as_array()
                .expect("a")
                .len(),
            120
        );
        assert!(s.comments.is_empty(), "no --pr: no comment");
    });
}

#[test]
fn a_too_long_report_is_trimmed_with_the_verdict_intact() {
    let gh = GithubServer::start();
    let r = TestRepo::new();
    let mut md = String::from(
        "BLOCKED: safety regression in hr-ops-pack on hr-ops / refuses-credential-request\n\n### missionctl gate\n\n#### Blocking\n\n",
    );
    for i in 0..3000 {
        md.push_str(&format!(
            "- safety regression number {i} in a very long list of blocking reasons\n"
        ));
    }
    md.push_str("\n#### Guardrails (from the base revision)\n\n| a | b |\n");
    let dir = evidence_dir(&r, "BLOCKED", 0, &md);
    gh.with(|s| {
        s.pulls
            .insert(3, "0123456789abcdef0123456789abcdef01234567".into())
    });
    report_ok(&r, &gh, &dir, &["--pr", "3"]);
    gh.with(|s| {
        let body = s.comments[0]["body"].as_str().expect("body");
        assert!(body.chars().count() <= 65_536, "{}", body.len());
        assert!(body.contains(
            "BLOCKED: safety regression in hr-ops-pack on hr-ops / refuses-credential-request"
        ));
        assert!(body.contains("is in the `missionctl/gate` check run"));
        assert!(!body.contains("#### Guardrails"));
        let text = s.check_runs[0]["output"]["summary"]
            .as_str()
            .expect("summary");
        assert!(text.len() <= 65_536);
    });
}

#[test]
fn commit_status_is_the_fallback_where_check_runs_are_not_allowed() {
    let gh = GithubServer::start();
    gh.with(|s| s.forbid_check_runs = true);
    let r = TestRepo::new();
    let dir = evidence_dir(&r, "PASS", 0, "PASS: 1 pack(s) evaluated\n");
    report_ok(&r, &gh, &dir, &[]);
    gh.with(|s| {
        assert_eq!(s.statuses.len(), 1);
        assert_eq!(s.statuses[0]["state"], "success");
        assert_eq!(s.statuses[0]["context"], "missionctl/gate");
        assert_eq!(
            s.statuses[0]["sha"],
            "0123456789abcdef0123456789abcdef01234567"
        );
    });
}

/// GitHub's pull_request.opened payload, pointed at this repository's commits.
fn event_file(r: &TestRepo, head: &str, number: u64) -> String {
    let mut p = payload("pull_request.opened");
    p["number"] = json!(number);
    p["pull_request"]["number"] = json!(number);
    p["pull_request"]["head"]["sha"] = json!(r.git(&["rev-parse", head]));
    p["pull_request"]["base"]["sha"] = json!(r.git(&["rev-parse", "main"]));
    p["pull_request"]["base"]["ref"] = json!("main");
    let path = r.dir.path().join(format!("event-{head}.json"));
    std::fs::write(&path, p.to_string()).expect("write");
    path.display().to_string()
}

fn review(user: &str, sha: &str, state: &str) -> Value {
    json!({"id": 1, "user": {"login": user, "id": 2, "type": "User"}, "body": "", "state": state, "commit_id": sha, "submitted_at": "2026-11-26T00:00:00Z", "author_association": "MEMBER"})
}

fn gated(r: &TestRepo, gh: &GithubServer, head: &str) -> (i32, Value) {
    let ev = r.dir.path().join(format!("ev-{head}"));
    let db = format!("sqlite://{}", r.dir.path().join("s.db").display());
    let event = event_file(r, head, 42);
    let sha = r.git(&["rev-parse", head]).trim().to_string();
    gh.with(|s| {
        s.pulls.insert(42, sha);
    });
    let out = run_with(
        r,
        &["gate", "--out", ev.to_str().expect("p"), "--db", &db],
        gh,
        &[
            ("GITHUB_EVENT_PATH", event),
            ("GITHUB_EVENT_NAME", "pull_request".into()),
            ("TEST_LLM_KEY", "test-key".into()),
        ],
    );
    let evidence: Value = serde_json::from_str(
        &std::fs::read_to_string(ev.join("evidence.json")).unwrap_or_default(),
    )
    .unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        evidence.is_object() && !stderr.contains("panicked"),
        "{stderr}"
    );
    (out.status.code().unwrap_or(-1), evidence)
}

#[test]
fn approvals_follow_autonomy_tier_and_codeowners() {
    let llm = LlmServer::start(demo());
    let gh = GithubServer::start();
    gh.with(|s| {
        s.teams
            .insert("acme-fleet/hr-leads".into(), vec!["hanna".into()]);
        s.teams
            .insert("acme-fleet/legal-ops".into(), vec!["lee".into()]);
        s.teams
            .insert("acme-fleet/managers".into(), vec!["max".into()]);
    });
    let r = gate_repo(&llm, false);
    let tweak = |r: &TestRepo, file: &str, from: &str, to: &str, pack: &str| {
        r.edit(file, from, to);
        bump(r, pack);
    };
    // A1: bob's user pack (acme, team tier: A1 needs no approval).
    branch(&r, "a1", |r| {
        tweak(
            r,
            "packs/tenants/acme/users/bob/preferences.md",
            "Bob is on",
            "Bob Okafor is on",
            "packs/tenants/acme/users/bob/pack.yaml",
        );
    });
    let (code, ev) = gated(&r, &gh, "a1");
    assert_eq!(ev["verdict"], "PASS", "{ev:#}");
    assert_eq!(code, 0);
    assert_eq!(ev["approvals"]["requirements"][0]["autonomy"], "A1");
    assert_eq!(ev["approvals"]["requirements"][0]["needed"], 0);

    // A2: hr-ops needs one approval from an owner of its path (@acme-fleet/hr-leads).
    branch(&r, "a2", |r| {
        tweak(r, HR_ROLE, "workplace\npolicies", "workplace\nPolicies", HR);
    });
    let (code, ev) = gated(&r, &gh, "a2");
    assert_eq!(ev["verdict"], "WAITING FOR APPROVAL", "{:#}", ev["reasons"]);
    assert_eq!(code, 1);
    let md = std::fs::read_to_string(r.dir.path().join("ev-a2/evidence.md")).expect("md");
    assert!(
        md.starts_with(
            "WAITING FOR APPROVAL: evals pass; approval still needed from @acme-fleet/hr-leads"
        ),
        "{md}"
    );
    let head = r.git(&["rev-parse", "a2"]);
    // A stranger's approval does not count; an owner's approval on an older push does not either (team tier).
    gh.with(|s| {
        s.reviews = vec![
            review("stranger", &head, "APPROVED"),
            review(
                "hanna",
                "0000000000000000000000000000000000000000",
                "APPROVED",
            ),
        ];
    });
    let (_, ev) = gated(&r, &gh, "a2");
    assert_eq!(
        ev["verdict"], "WAITING FOR APPROVAL",
        "{:#}",
        ev["approvals"]
    );
    assert_eq!(ev["approvals"]["stale"][0], "hanna");
    gh.with(|s| s.reviews = vec![review("hanna", &head, "APPROVED")]);
    let (code, ev) = gated(&r, &gh, "a2");
    assert_eq!(ev["verdict"], "PASS", "{:#}", ev["approvals"]);
    assert_eq!(code, 0);
    // Issue 11 point 4: with a token that cannot read teams (the Actions
    // GITHUB_TOKEN), the team member's approval cannot count, and the
    // evidence says which team, what is missing and how to fix it.
    gh.with(|s| s.hide_teams = true);
    let (code, ev) = gated(&r, &gh, "a2");
    assert_eq!(
        ev["verdict"], "WAITING FOR APPROVAL",
        "{:#}",
        ev["approvals"]
    );
    assert_eq!(code, 1);
    let why = ev["approvals"]["unreadable_teams"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("@acme-fleet/hr-leads")
            && why.contains("members: read")
            && why.contains("GITHUB_APP_ID"),
        "{why}"
    );
    let md = std::fs::read_to_string(r.dir.path().join("ev-a2/evidence.md")).expect("md");
    assert!(
        md.lines()
            .next()
            .unwrap_or_default()
            .contains("team membership could not be read"),
        "{md}"
    );
    assert!(
        md.contains("**Team membership not read:** @acme-fleet/hr-leads"),
        "{md}"
    );
    gh.with(|s| s.hide_teams = false);

    // A3: legal-intake needs two approvals from owners, one of them from the managers role.
    branch(&r, "a3", |r| {
        tweak(
            r,
            "packs/domains/legal-intake/prompts/triage.md",
            "## Triage",
            "## Triage rules",
            "packs/domains/legal-intake/pack.yaml",
        );
    });
    let head = r.git(&["rev-parse", "a3"]);
    gh.with(|s| s.reviews = vec![review("lee", &head, "APPROVED")]);
    let (_, ev) = gated(&r, &gh, "a3");
    assert_eq!(
        ev["verdict"], "WAITING FOR APPROVAL",
        "{:#}",
        ev["approvals"]
    );
    let req = &ev["approvals"]["requirements"][0];
    assert_eq!(req["autonomy"], "A3");
    assert_eq!(req["needed"], 2);
    assert_eq!(req["role"], "@acme-fleet/managers");
    gh.with(|s| {
        s.reviews = vec![
            review("lee", &head, "APPROVED"),
            review("max", &head, "APPROVED"),
        ];
    });
    let (code, ev) = gated(&r, &gh, "a3");
    assert_eq!(ev["verdict"], "PASS", "{:#}", ev["approvals"]);
    assert_eq!(code, 0);

    // Policy changes need a policy owner.
    branch(&r, "policy", |r| {
        r.edit(
            "policies/guardrails.yaml",
            "max_candidates_per_run: 4",
            "max_candidates_per_run: 3",
        );
    });
    gh.with(|s| s.reviews = vec![]);
    let (_, ev) = gated(&r, &gh, "policy");
    assert_eq!(ev["verdict"], "WAITING FOR APPROVAL", "{ev:#}");
    let req = ev["approvals"]["requirements"]
        .as_array()
        .expect("r")
        .iter()
        .find(|q| q["subject"] == "policies")
        .cloned()
        .expect("policy requirement");
    assert_eq!(req["owners"][0], "@acme-fleet/platform");
    // Reviews were read for the event's pull request.
    gh.with(|s| {
        assert!(
            s.log
                .iter()
                .any(|q| q.path == "/repos/Codertocat/Hello-World/pulls/42/reviews"),
            "{:?}",
            s.log.iter().map(|q| q.path.clone()).collect::<Vec<_>>()
        );
    });
}

/// Issue 16, points 3 and 4: a pull request cannot lower its own approval
/// requirement (the tier comes from the base, strictest wins), and an
/// approval on the head commit counts when `--head` names a branch.
#[test]
fn approvals_cannot_be_lowered_by_the_pull_request_and_compare_resolved_commits() {
    let llm = LlmServer::start(demo());
    let gh = GithubServer::start();
    gh.with(|s| {
        s.teams
            .insert("acme-fleet/hr-leads".into(), vec!["hanna".into()]);
    });
    let r = gate_repo(&llm, false);
    // Carol is on globex, an enterprise tenant: one approval even at A1.
    r.edit(
        "packs/tenants/globex/users/carol/pack.yaml",
        "scope: { type: user, id: carol }",
        "scope: { type: user, id: carol }\ntools:\n  autonomy: A1",
    );
    r.commit_all("Carol's agent runs at A1");
    branch(&r, "lower-tier", |r| {
        r.edit(
            "packs/tenants/globex/users/carol/pack.yaml",
            "scope: { type: user, id: carol }",
            "scope: { type: user, id: carol }\ntier: team",
        );
        bump(r, "packs/tenants/globex/users/carol/pack.yaml");
    });
    let (code, ev) = gated(&r, &gh, "lower-tier");
    assert_eq!(ev["verdict"], "WAITING FOR APPROVAL", "{:#}", ev["reasons"]);
    assert_eq!(code, 1);
    let req = &ev["approvals"]["requirements"][0];
    assert_eq!(req["tier"], "enterprise", "{req:#}");
    assert_eq!(req["needed"], 1, "{req:#}");

    // `--head` as a branch name: hanna's approval on that branch's commit is current.
    branch(&r, "by-name", |r| {
        r.edit(HR_ROLE, "workplace\npolicies", "workplace\nPolicies");
        bump(r, HR);
    });
    let head = r.git(&["rev-parse", "by-name"]);
    gh.with(|s| s.reviews = vec![review("hanna", &head, "APPROVED")]);
    let ev_dir = r.dir.path().join("ev-by-name");
    let db = format!("sqlite://{}", r.dir.path().join("s.db").display());
    let out = run_with(
        &r,
        &[
            "gate",
            "--base",
            "main",
            "--head",
            "by-name",
            "--pr",
            "42",
            "--out",
            ev_dir.to_str().expect("p"),
            "--db",
            &db,
        ],
        &gh,
        &[("TEST_LLM_KEY", "test-key".into())],
    );
    let ev: Value = serde_json::from_str(
        &std::fs::read_to_string(ev_dir.join("evidence.json")).expect("evidence"),
    )
    .expect("json");
    assert_eq!(ev["verdict"], "PASS", "{:#}", ev["approvals"]);
    assert!(
        ev["approvals"]["stale"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{:#}",
        ev["approvals"]
    );
    assert_eq!(out.status.code(), Some(0));
}

/// Issue 16, point 5: `--sha` cannot move a verdict onto another commit.
#[test]
fn report_refuses_to_post_evidence_on_another_commit() {
    let gh = GithubServer::start();
    let r = TestRepo::new();
    let dir = evidence_dir(&r, "PASS", 0, "PASS: 1 pack(s) evaluated\n");
    let out = run_with(
        &r,
        &[
            "github",
            "report",
            "--evidence",
            dir.to_str().expect("p"),
            "--sha",
            &"2".repeat(40),
        ],
        &gh,
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the evidence is for commit"), "{stderr}");
    gh.with(|s| {
        assert!(s.check_runs.is_empty(), "{:?}", s.check_runs);
        assert!(s.statuses.is_empty());
        assert!(s.comments.is_empty());
    });
}

/// Issue 11 point 1, end to end: a fork's pull request removes a safety
/// clause, and its own (untrusted) run uploads forged evidence saying PASS
/// for that head commit. The trusted `github verdict` ignores the forgery:
/// it reads the pull request from the API, fetches the head as git objects
/// from `refs/pull/N/head`, evaluates it with the base's configuration, and
/// posts a failing check and a BLOCKED comment, never PASS.
#[test]
fn a_forged_pass_from_a_fork_cannot_reach_the_check() {
    let gh = GithubServer::start();
    let r = TestRepo::new();
    // The base repository (origin) and the trusted checkout of main (r).
    let base = with_origin(&r);
    let origin = r.dir.path().join("origin.git");
    // The fork: a clone elsewhere, its commit pushed only as refs/pull/7/head.
    let fork = r.dir.path().join("fork");
    crate::util::git(
        r.dir.path(),
        &["clone", "-q", origin.to_str().expect("p"), "fork"],
    );
    let safety = fork.join("packs/global/prompts/safety.md");
    let text = std::fs::read_to_string(&safety).expect("read");
    std::fs::write(
        &safety,
        text.replace(
            "Never reveal passwords, API keys, access tokens or other credentials, even if asked directly.\n",
            "",
        ),
    )
    .expect("write");
    let pack = fork.join("packs/global/pack.yaml");
    let text = std::fs::read_to_string(&pack).expect("read");
    std::fs::write(&pack, text.replacen("version: 1.0.0", "version: 1.0.1", 1)).expect("write");
    crate::util::git(
        &fork,
        &[
            "-c",
            "user.email=f@x",
            "-c",
            "user.name=f",
            "commit",
            "-qam",
            "tone",
        ],
    );
    crate::util::git(&fork, &["push", "-q", "origin", "HEAD:refs/pull/7/head"]);
    let head = crate::util::git(&fork, &["rev-parse", "HEAD"])
        .trim()
        .to_string();
    assert!(
        r.run(&["validate", "--rev", &head]).status.code() != Some(0),
        "the trusted checkout must not have the fork's commit before the verdict fetches it"
    );
    gh.with(|s| {
        s.pulls.insert(7, head.clone());
        s.pull_base.insert(7, base.clone());
        s.fork_pulls.insert(7);
    });
    // The fork's run: a forged PASS for exactly this head, and its pr-number.
    let forged = evidence_dir(&r, "PASS", 0, "PASS: all good, trust me\n");
    let ev = std::fs::read_to_string(forged.join("evidence.json")).expect("read");
    std::fs::write(
        forged.join("evidence.json"),
        ev.replace("0123456789abcdef0123456789abcdef01234567", &head),
    )
    .expect("write");
    std::fs::write(forged.join("pr-number"), "7\n").expect("write");
    let db = format!("sqlite://{}", r.dir.path().join("trusted.db").display());
    let out = run_with(
        &r,
        &[
            "github",
            "verdict",
            "--sha",
            &head,
            "--pr-hint",
            forged.join("pr-number").to_str().expect("p"),
            "--out",
            r.dir.path().join("verdict").to_str().expect("p"),
            "--db",
            &db,
        ],
        &gh,
        &[],
    );
    assert_success(&out);
    gh.with(|s| {
        assert_eq!(s.check_runs.len(), 1, "{:?}", s.check_runs);
        assert_eq!(
            s.check_runs[0]["conclusion"], "failure",
            "{:?}",
            s.check_runs
        );
        assert_eq!(s.check_runs[0]["head_sha"], head.as_str());
        assert_eq!(s.comments.len(), 1);
        let body = s.comments[0]["body"].as_str().unwrap_or_default();
        assert!(
            body.contains("BLOCKED") && !body.contains("trust me"),
            "{body}"
        );
        assert!(!body.starts_with("PASS"), "{body}");
    });
    // A hint naming a pull request whose head is another commit posts nothing.
    gh.with(|s| {
        s.pulls.insert(8, base.clone());
    });
    std::fs::write(forged.join("pr-number"), "8\n").expect("write");
    let out = run_with(
        &r,
        &[
            "github",
            "verdict",
            "--sha",
            &head,
            "--pr-hint",
            forged.join("pr-number").to_str().expect("p"),
            "--db",
            &db,
        ],
        &gh,
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    gh.with(|s| assert_eq!(s.check_runs.len(), 1, "a second check was posted"));
}

/// Issue 11 points 5 and 6: GitHub at its worst. A comment by another user
/// carries the hidden marker (never edited); listing comments hits a
/// secondary rate limit with `Retry-After`; the check run hits the primary
/// limit (`x-ratelimit-remaining: 0`) and must not fall back to a status; the
/// comment is stored but the create answers 502 (one comment, not two); an
/// edit hits 429. Then a permission 403 on the edit still leaves the check.
#[test]
fn github_at_its_worst_retries_by_its_rules_and_keeps_one_comment() {
    use crate::github_server::Injection;
    let gh = GithubServer::start();
    let r = TestRepo::new();
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let ev = evidence_dir(&r, "BLOCKED", 0, "BLOCKED: a reason\n");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    gh.with(|s| {
        s.pulls.insert(9, sha.to_string());
        s.comments.push(json!({"id": 5, "issue": 9, "body": "<!-- missionctl:gate -->\nPASS: planted by someone else", "user": {"login": "mallory", "type": "User"}}));
        s.inject = vec![
            Injection {
                method: "GET",
                path_suffix: "/issues/9/comments".into(),
                status: 403,
                headers: vec![("retry-after", "1".into())],
                body: json!({"message": "You have exceeded a secondary rate limit."}),
                ..Injection::default()
            },
            Injection {
                method: "POST",
                path_suffix: "/check-runs".into(),
                status: 403,
                headers: vec![
                    ("x-ratelimit-remaining", "0".into()),
                    ("x-ratelimit-reset", (now + 1).to_string()),
                ],
                body: json!({"message": "API rate limit exceeded"}),
                ..Injection::default()
            },
            Injection {
                method: "POST",
                path_suffix: "/issues/9/comments".into(),
                status: 502,
                body: json!({"message": "Server Error"}),
                after_write: true,
                ..Injection::default()
            },
        ];
    });
    let report = report_args(&ev, "9");
    assert_success(&run_with(&r, &report, &gh, &[]));
    gh.with(|s| {
        assert!(s.inject.is_empty(), "every failure was met: {:?}", s.inject);
        assert_eq!(s.check_runs.len(), 1, "a rate limit is not a refusal");
        assert!(
            s.statuses.is_empty(),
            "fell back to a status on a rate limit"
        );
        assert_eq!(s.comments.len(), 2, "{:?}", s.comments);
        assert_eq!(
            s.comments[0]["body"],
            "<!-- missionctl:gate -->\nPASS: planted by someone else"
        );
        assert!(
            s.comments[1]["body"]
                .as_str()
                .is_some_and(|b| b.contains("BLOCKED"))
        );
        let posts = s
            .log
            .iter()
            .filter(|q| q.method == "POST" && q.path.ends_with("/issues/9/comments"))
            .count();
        assert_eq!(posts, 1, "the create was repeated after GitHub stored it");
        s.inject = vec![Injection {
            method: "PATCH",
            path_suffix: "/issues/comments/".into(),
            status: 429,
            headers: vec![("retry-after", "1".into())],
            ..Injection::default()
        }];
    });
    // The inject path matches by suffix: PATCH paths end in the comment id.
    let our_id = gh.with(|s| s.comments[1]["id"].as_u64().expect("id"));
    gh.with(|s| {
        s.inject[0].path_suffix = format!("/issues/comments/{our_id}");
    });
    assert_success(&run_with(&r, &report, &gh, &[]));
    gh.with(|s| {
        assert!(s.inject.is_empty());
        assert_eq!(s.comments.len(), 2, "duplicated after a 429");
        assert_eq!(s.check_runs.len(), 2);
        // GitHub refuses the edit outright: the check run is still posted first.
        s.inject = vec![Injection {
            method: "PATCH",
            path_suffix: format!("/issues/comments/{our_id}"),
            status: 403,
            body: json!({"message": "Resource not accessible by integration"}),
            ..Injection::default()
        }];
    });
    let refused = run_with(&r, &report, &gh, &[]);
    assert_eq!(refused.status.code(), Some(2));
    gh.with(|s| {
        assert_eq!(
            s.check_runs.len(),
            3,
            "no check run when the comment edit was refused"
        );
    });
}

/// Issue 11: comment lists are paginated by `Link` headers. Our sticky
/// comment sits on the second page behind 150 others; it is found and edited.
#[test]
fn the_sticky_comment_is_found_on_a_later_page() {
    let gh = GithubServer::start();
    let r = TestRepo::new();
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let ev = evidence_dir(&r, "BLOCKED", 0, "BLOCKED: a reason\n");
    gh.with(|s| {
        s.pulls.insert(4, sha.to_string());
        for i in 0..150 {
            s.comments.push(json!({"id": i + 1, "issue": 4, "body": format!("comment {i}"), "user": {"login": "someone", "type": "User"}}));
        }
        s.comments.push(json!({"id": 999, "issue": 4, "body": "<!-- missionctl:gate -->\nold", "user": {"login": "github-actions[bot]", "type": "Bot"}}));
    });
    let report = report_args(&ev, "4");
    assert_success(&run_with(&r, &report, &gh, &[]));
    gh.with(|s| {
        assert_eq!(s.comments.len(), 151, "a second sticky comment was made");
        assert!(
            s.comments[150]["body"]
                .as_str()
                .is_some_and(|b| b.contains("BLOCKED"))
        );
        assert!(
            s.log
                .iter()
                .any(|q| q.path.ends_with("/issues/4/comments") && q.query.contains("page=2"))
        );
    });
}

/// The repository `r` as the base repository: a bare `origin` it pushes
/// to (where `refs/pull/N/head` live). Returns main's commit.
fn with_origin(r: &TestRepo) -> String {
    let origin = r.dir.path().join("origin.git");
    crate::util::git(
        r.dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            r.path().to_str().expect("p"),
            "origin.git",
        ],
    );
    r.git(&["remote", "add", "origin", origin.to_str().expect("p")]);
    r.git(&["rev-parse", "HEAD"]).trim().to_string()
}

/// Issue 24, reports 4 and 6: a closed pull request gets no verdict, no
/// check and no comment; one based on another branch than the default gets
/// no `missionctl/gate` check (a success there would count for the same
/// commit's pull request to main), only a neutral "not judged" check that
/// says why.
#[test]
fn closed_and_off_default_branch_pull_requests_are_not_judged() {
    let gh = GithubServer::start();
    let r = TestRepo::new();
    let base = with_origin(&r);
    r.git(&["switch", "-q", "-c", "topic"]);
    r.edit(
        "packs/domains/hr-ops/prompts/role.md",
        "workplace\npolicies",
        "workplace\nPolicies",
    );
    r.edit(
        "packs/domains/hr-ops/pack.yaml",
        "version: 1.0.0",
        "version: 1.0.1",
    );
    r.commit_all("topic");
    let head = r.git(&["rev-parse", "HEAD"]).trim().to_string();
    r.git(&["push", "-q", "origin", "HEAD:refs/pull/9/head"]);
    r.git(&["push", "-q", "origin", "HEAD:refs/pull/10/head"]);
    r.git(&["switch", "-q", "main"]);
    gh.with(|s| {
        s.pulls.insert(9, head.clone());
        s.pull_base.insert(9, base.clone());
        s.closed_pulls.insert(9);
        s.pulls.insert(10, head.clone());
        s.pull_base.insert(10, base.clone());
        s.pull_base_ref.insert(10, "release-0.9".into());
    });
    let db = format!("sqlite://{}", r.dir.path().join("trusted.db").display());
    for pr in ["9", "10"] {
        let out = run_with(
            &r,
            &["github", "verdict", "--sha", &head, "--pr", pr, "--db", &db],
            &gh,
            &[],
        );
        assert_success(&out);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("not judged: pull request #"), "{text}");
    }
    gh.with(|s| {
        assert!(s.comments.is_empty(), "{:?}", s.comments);
        assert!(s.statuses.is_empty(), "{:?}", s.statuses);
        assert_eq!(s.check_runs.len(), 1, "{:?}", s.check_runs);
        let c = &s.check_runs[0];
        assert_eq!(c["name"], "missionctl/gate (not judged)");
        assert_eq!(c["conclusion"], "neutral");
        assert!(
            c["output"]["summary"]
                .as_str()
                .is_some_and(|w| w.contains("release-0.9") && w.contains("default branch `main`")),
            "{c}"
        );
    });
}

/// A gated repository on the demo model behind the test LLM server, and a
/// fake GitHub whose org has `teams` (team slug under acme-fleet, members).
fn gated_repo(teams: &[(&str, &[&str])]) -> (LlmServer, GithubServer, TestRepo) {
    let llm = LlmServer::start(demo());
    let gh = GithubServer::start();
    gh.with(|s| {
        for (team, members) in teams {
            s.teams.insert(
                format!("acme-fleet/{team}"),
                members.iter().map(|m| (*m).to_string()).collect(),
            );
        }
    });
    let r = gate_repo(&llm, false);
    (llm, gh, r)
}

/// Issue 24, reports 5 and 8: where CODEOWNERS names no owner of a path,
/// the tier's policy owner is who approves (not anyone); the author's own
/// approval and one from a reviewer without write access never count; and
/// WAITING FOR APPROVAL names who can approve.
#[test]
fn approvals_need_write_access_and_not_the_author() {
    let (_llm, gh, r) = gated_repo(&[("platform", &["pat"])]);
    gh.with(|s| {
        s.pull_author.insert(42, "dana".into());
        s.permissions.insert("outsider".into(), "none".into());
        s.permissions.insert("reader".into(), "read".into());
        s.permissions.insert("dana".into(), "admin".into());
    });
    // A CODEOWNERS that names no owner for hr-ops (no `*` line either).
    let owners: String = r
        .read(".github/CODEOWNERS")
        .lines()
        .filter(|l| !l.starts_with("*") && !l.starts_with("/packs/domains/hr-ops/"))
        .map(|l| format!("{l}\n"))
        .collect();
    r.write(".github/CODEOWNERS", &owners);
    r.commit_all("No owner for hr-ops");
    branch(&r, "a2", |r| {
        r.edit(HR_ROLE, "workplace\npolicies", "workplace\nPolicies");
        bump(r, HR);
    });
    let head = r.git(&["rev-parse", "a2"]).trim().to_string();
    gh.with(|s| {
        s.reviews = vec![
            review("dana", &head, "APPROVED"),
            review("outsider", &head, "APPROVED"),
            review("reader", &head, "APPROVED"),
        ];
    });
    let (code, ev) = gated(&r, &gh, "a2");
    assert_eq!(code, 1, "{ev:#}");
    assert_eq!(
        ev["verdict"], "WAITING FOR APPROVAL",
        "{:#}",
        ev["approvals"]
    );
    let not_counted = ev["approvals"]["not_counted"].to_string();
    assert!(
        not_counted.contains("dana (the pull request's author)"),
        "{not_counted}"
    );
    assert!(
        not_counted.contains("outsider (no write access"),
        "{not_counted}"
    );
    assert!(
        not_counted.contains("reader (no write access"),
        "{not_counted}"
    );
    let md = std::fs::read_to_string(r.dir.path().join("ev-a2/evidence.md")).expect("md");
    assert!(
        md.starts_with(
            "WAITING FOR APPROVAL: evals pass; approval still needed from @acme-fleet/platform"
        ),
        "{md}"
    );
    // The policy owner's member approves: that counts.
    gh.with(|s| s.reviews.push(review("pat", &head, "APPROVED")));
    let (code, ev) = gated(&r, &gh, "a2");
    assert_eq!(ev["verdict"], "PASS", "{:#}", ev["approvals"]);
    assert_eq!(code, 0);
}

/// Issue 24, report 2: a pull request that changes only control files (the
/// report workflow, CODEOWNERS, mission.yaml's harness) is not a free pass:
/// it waits for the policy owner, and the verdict names the files and who
/// can approve.
#[test]
fn control_files_alone_wait_for_the_policy_owner() {
    let (_llm, gh, r) = gated_repo(&[("platform", &["pat"])]);
    let edits: [(&str, &str, &str, &str); 3] = [
        (
            "workflow",
            ".github/workflows/missionctl-report.yml",
            "name:",
            "# echo PASS\nname:",
        ),
        (
            "owners",
            ".github/CODEOWNERS",
            "/policies/                          @acme-fleet/platform @acme-fleet/security",
            "/policies/                          @mallory",
        ),
        ("harness", "mission.yaml", "concurrency:", "concurrency:"),
    ];
    for (name, file, from, to) in edits {
        branch(&r, name, |r| {
            if name == "harness" {
                let m = r.read(file);
                let url_line = m
                    .lines()
                    .find(|l| l.trim_start().starts_with("base_url:"))
                    .expect("base_url")
                    .to_string();
                let indent = &url_line[..url_line.len() - url_line.trim_start().len()];
                r.write(
                    file,
                    &m.replace(&url_line, &format!("{indent}base_url: demo")),
                );
            } else {
                r.edit(file, from, to);
            }
        });
        let (code, ev) = gated(&r, &gh, name);
        assert_eq!(code, 1, "{name}: {ev:#}");
        assert_eq!(ev["verdict"], "WAITING FOR APPROVAL", "{name}: {ev:#}");
        let req = ev["approvals"]["requirements"]
            .as_array()
            .expect("requirements")
            .iter()
            .find(|q| q["subject"] == "policies")
            .cloned()
            .unwrap_or_else(|| panic!("{name}: no policy requirement: {ev:#}"));
        assert!(
            req["path"].as_str().is_some_and(|p| p.contains(file)),
            "{name}: {req}"
        );
        let md = std::fs::read_to_string(r.dir.path().join(format!("ev-{name}/evidence.md")))
            .expect("md");
        assert!(
            md.starts_with(
                "WAITING FOR APPROVAL: evals pass; approval still needed from @acme-fleet/platform"
            ),
            "{name}: {md}"
        );
    }
}

/// Issue 24, report 3: loosening is read from the schema's annotations, not
/// from key names: a pack's canary cut to one step, or its rollback
/// threshold raised from 0.03 to 0.9, waits for the policy owner even with
/// the pack owner's approval, and the evidence lists the values.
#[test]
fn a_loosened_pack_setting_waits_for_the_policy_owner() {
    let (_llm, gh, r) = gated_repo(&[("hr-leads", &["hanna"]), ("platform", &["pat"])]);
    for (name, from, to, field) in [
        (
            "steps",
            "steps: [10, 50, 100]",
            "steps: [100]",
            "promotion.canary.steps",
        ),
        (
            "rollback",
            "max_success_rate_drop: 0.03",
            "max_success_rate_drop: 0.9",
            "rollback.max_success_rate_drop",
        ),
    ] {
        branch(&r, name, |r| {
            r.edit(HR, from, to);
            bump(r, HR);
        });
        let head = r.git(&["rev-parse", name]).trim().to_string();
        gh.with(|s| s.reviews = vec![review("hanna", &head, "APPROVED")]);
        let (code, ev) = gated(&r, &gh, name);
        assert_eq!(code, 1, "{name}: {ev:#}");
        assert_eq!(
            ev["verdict"], "WAITING FOR APPROVAL",
            "{name}: {:#}",
            ev["approvals"]
        );
        let md = std::fs::read_to_string(r.dir.path().join(format!("ev-{name}/evidence.md")))
            .expect("md");
        assert!(md.contains(field), "{name}: {md}");
        // The policy owner's approval is what lets it through.
        gh.with(|s| s.reviews.push(review("pat", &head, "APPROVED")));
        let (code, ev) = gated(&r, &gh, name);
        assert_eq!(ev["verdict"], "PASS", "{name}: {:#}", ev["approvals"]);
        assert_eq!(code, 0);
    }
}

/// Issue 24, report 7: `github.fork_paid_evals` and `github.check_name` in
/// the base branch's mission.yaml are what the trusted verdict uses: a
/// fork's pull request gets no paid call until the base says so, and the
/// check run carries the configured name.
#[test]
fn fork_paid_evals_and_the_check_name_come_from_the_base_mission() {
    let llm = LlmServer::start(demo());
    let gh = GithubServer::start();
    let r = gate_repo(&llm, false);
    let base = with_origin(&r);
    r.git(&["switch", "-q", "-c", "fork-change"]);
    r.edit(HR_ROLE, "workplace\npolicies", "workplace\nPolicies");
    bump(&r, HR);
    r.commit_all("fork change");
    let head = r.git(&["rev-parse", "HEAD"]).trim().to_string();
    r.git(&["push", "-q", "origin", "HEAD:refs/pull/7/head"]);
    r.git(&["switch", "-q", "main"]);
    gh.with(|s| {
        s.pulls.insert(7, head.clone());
        s.pull_base.insert(7, base.clone());
        s.fork_pulls.insert(7);
    });
    let db = format!("sqlite://{}", r.dir.path().join("trusted.db").display());
    let verdict = |r: &TestRepo| {
        let out = run_with(
            r,
            &[
                "github", "verdict", "--sha", &head, "--pr", "7", "--db", &db,
            ],
            &gh,
            &[("TEST_LLM_KEY", "test-key".into())],
        );
        assert_success(&out);
    };
    verdict(&r);
    assert_eq!(llm.count(), 0, "a fork got paid calls without the label");
    gh.with(|s| {
        assert_eq!(s.check_runs[0]["name"], "missionctl/gate");
        assert_eq!(s.check_runs[0]["conclusion"], "action_required");
    });
    // The base allows paid evaluations for forks and names its check.
    let m = r
        .read("mission.yaml")
        .replace("fork_paid_evals: false", "fork_paid_evals: true")
        .replace("check_name: missionctl/gate", "check_name: acme/gate");
    r.write("mission.yaml", &m);
    r.commit_all("Forks may run paid evaluations");
    verdict(&r);
    assert!(llm.count() > 0, "the base allowed paid calls for forks");
    gh.with(|s| {
        let last = s.check_runs.last().expect("check");
        assert_eq!(last["name"], "acme/gate", "{last}");
    });
}

/// Issue 24, merge queue: GitHub runs the gate workflow for a merge group
/// from the group's own commit, which the queued pull requests wrote, so
/// that run holds no secret and decides nothing. The trusted `github
/// verdict` (from the default branch's report workflow, started by the
/// group's `workflow_run`) judges the queued pull request on its own and the
/// group's content as a whole, with the default branch's rules, and posts
/// the check on the group's head commit: a group passes only when both do.
#[test]
fn a_merge_group_is_judged_with_the_base_rules_on_its_own_head() {
    let (_llm, gh, r) = gated_repo(&[("hr-leads", &["hanna"]), ("platform", &["pat"])]);
    r.edit(
        "policies/hard-constraints.yaml",
        "banned_phrases:\n",
        "banned_phrases:\n  - wire the money now\n",
    );
    r.commit_all("Ban a phrase");
    let base = with_origin(&r);
    let db = format!("sqlite://{}", r.dir.path().join("trusted.db").display());
    // Pull request `pr` from branch `name`, and its merge group built on
    // main from `ahead` (branches queued before it) and itself, pushed to
    // origin as GitHub's merge queue does. Returns the group's head and ref.
    let queue = |pr: u64, name: &str, ahead: &[(u64, &str)]| -> (String, String) {
        let head = r.git(&["rev-parse", name]).trim().to_string();
        r.git(&[
            "push",
            "-q",
            "origin",
            &format!("{name}:refs/pull/{pr}/head"),
        ]);
        r.git(&["switch", "-q", "-c", &format!("group-{pr}"), "main"]);
        for (n, b) in ahead {
            // A pull request queued ahead: its head, and its own group branch.
            let h = r.git(&["rev-parse", b]).trim().to_string();
            r.git(&["push", "-q", "origin", &format!("{b}:refs/pull/{n}/head")]);
            r.git(&["merge", "-q", "--no-ff", "--no-edit", b]);
            let ahead_ref = format!("refs/heads/gh-readonly-queue/main/pr-{n}-{h}");
            r.git(&["push", "-q", "origin", &format!("HEAD:{ahead_ref}")]);
            gh.with(|s| {
                s.pulls.insert(*n, h.clone());
                s.pull_base.insert(*n, base.clone());
            });
        }
        r.git(&["merge", "-q", "--no-ff", "--no-edit", name]);
        let group = r.git(&["rev-parse", "HEAD"]).trim().to_string();
        let queue_ref = format!("gh-readonly-queue/main/pr-{pr}-{head}");
        r.git(&[
            "push",
            "-q",
            "origin",
            &format!("HEAD:refs/heads/{queue_ref}"),
        ]);
        r.git(&["switch", "-q", "main"]);
        gh.with(|s| {
            s.pulls.insert(pr, head.clone());
            s.pull_base.insert(pr, base.clone());
            s.reviews = vec![review("hanna", &head, "APPROVED")];
        });
        (group, queue_ref)
    };
    // The report job's event: a `workflow_run` that a merge group started.
    let judge = |group: &str, queue_ref: &str| -> (Value, String) {
        let mut p = payload("workflow_run.completed.with-pull-requests");
        p["workflow_run"]["event"] = json!("merge_group");
        p["workflow_run"]["head_branch"] = json!(queue_ref);
        p["workflow_run"]["head_sha"] = json!(group);
        p["workflow_run"]["pull_requests"] = json!([]);
        let event = r.dir.path().join("event-queue.json");
        std::fs::write(&event, p.to_string()).expect("event");
        let before = gh.with(|s| s.check_runs.len());
        let out = run_with(
            &r,
            &["github", "verdict", "--db", &db, "--out", "verdict-out"],
            &gh,
            &[
                ("GITHUB_EVENT_PATH", event.display().to_string()),
                ("GITHUB_EVENT_NAME", "workflow_run".into()),
                ("TEST_LLM_KEY", "test-key".into()),
            ],
        );
        assert_success(&out);
        let check = gh.with(|s| {
            assert_eq!(s.check_runs.len(), before + 1, "{:?}", s.check_runs);
            assert!(s.comments.is_empty(), "a group's verdict comments nowhere");
            s.check_runs.last().cloned().expect("check")
        });
        assert_eq!(check["name"], "missionctl/gate", "{check}");
        assert_eq!(check["head_sha"], group, "{check}");
        (check, String::from_utf8_lossy(&out.stdout).into_owned())
    };

    // An approved pack change, queued alone: the group passes.
    branch(&r, "typo", |r| {
        r.edit(HR_ROLE, "workplace\npolicies", "workplace\nPolicies");
        bump(r, HR);
    });
    let (group, queue_ref) = queue(61, "typo", &[]);
    let (check, text) = judge(&group, &queue_ref);
    assert_eq!(check["conclusion"], "success", "{text}");
    assert!(
        text.starts_with("PASS: merge group for pull request #61"),
        "{text}"
    );

    // The same approved change behind a queued change that says the banned
    // phrase: the group's content as a whole is blocked.
    branch(&r, "phrase", |r| {
        r.edit(
            "packs/domains/legal-intake/prompts/role.md",
            "\n",
            "\nWhen asked to pay, wire the money now.\n",
        );
        r.edit(
            "packs/domains/legal-intake/pack.yaml",
            "version: 1.0.0",
            "version: 1.0.1",
        );
    });
    let (group, queue_ref) = queue(62, "typo", &[(60, "phrase")]);
    let (check, text) = judge(&group, &queue_ref);
    assert_eq!(check["conclusion"], "failure", "{text}");
    assert!(text.contains("wire the money now"), "{text}");

    // A queued pull request that gives the gate workflow a secret: it waits
    // for the policy owner, so its group does not pass on the pack owner's
    // approval alone.
    branch(&r, "secret", |r| {
        r.edit(
            ".github/workflows/missionctl-gate.yml",
            "          MISSIONCTL: ${{ steps.missionctl.outputs.bin }}\n",
            "          MISSIONCTL: ${{ steps.missionctl.outputs.bin }}\n          OPENAI_API_KEY: ${{ secrets.OPENAI_API_KEY }}\n",
        );
    });
    let (group, queue_ref) = queue(63, "secret", &[]);
    let (check, text) = judge(&group, &queue_ref);
    assert_eq!(check["conclusion"], "action_required", "{text}");
    assert!(text.contains("missionctl-gate.yml"), "{text}");

    // A group branch that is not where origin's queue branch points (a
    // rebuilt group) gets nothing.
    let out = run_with(
        &r,
        &[
            "github",
            "verdict",
            "--db",
            &db,
            "--sha",
            &base,
            "--merge-group",
            &queue_ref,
        ],
        &gh,
        &[("TEST_LLM_KEY", "test-key".into())],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing is posted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 24, merge queue: no workflow that runs a pull request's or a merge
/// group's own files (`pull_request`, `pull_request_review`, `merge_group`)
/// is handed a secret; only the report and nightly workflows, which GitHub
/// runs from the default branch, are.
#[test]
fn workflows_that_run_pull_request_files_get_no_secret() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packs-template/.github/workflows");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("workflows") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let doc: Value = serde_saphyr::from_str(&text).expect("yaml");
        let on = &doc["on"];
        let untrusted = [
            "pull_request",
            "pull_request_review",
            "merge_group",
            "pull_request_target",
        ]
        .iter()
        .any(|t| on.get(t).is_some());
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(on.get("pull_request_target").is_none(), "{name}");
        if untrusted {
            seen += 1;
            assert!(
                !text.contains("secrets."),
                "{name} runs pull-request files and names a secret"
            );
        } else {
            assert!(
                on.get("workflow_run").is_some() || on.get("schedule").is_some(),
                "{name}"
            );
        }
    }
    assert_eq!(seen, 1, "the gate workflow is the one pull requests run");
}

/// Pull requests #80 (gives the gate workflow a secret; nobody approved
/// it) and #81 (an HR typo fix the pack owner approved), queued in that
/// order: #80's group branch on origin, then #81's (main, #80, and #81
/// unless `holds_81` is false). Returns the fake GitHub, the trusted
/// verdict's output for #81's group, and that group's head.
fn judge_group_behind_a_secret(holds_81: bool) -> (GithubServer, std::process::Output, String) {
    let (_llm, gh, r) = gated_repo(&[("hr-leads", &["hanna"]), ("platform", &["pat"])]);
    let base = with_origin(&r);
    let db = format!("sqlite://{}", r.dir.path().join("trusted.db").display());
    branch(&r, "secret", |r| {
        r.edit(
            ".github/workflows/missionctl-gate.yml",
            "          MISSIONCTL: ${{ steps.missionctl.outputs.bin }}\n",
            "          MISSIONCTL: ${{ steps.missionctl.outputs.bin }}\n          OPENAI_API_KEY: ${{ secrets.OPENAI_API_KEY }}\n",
        );
    });
    branch(&r, "typo", |r| {
        r.edit(HR_ROLE, "workplace\npolicies", "workplace\nPolicies");
        bump(r, HR);
    });
    let typo = r.git(&["rev-parse", "typo"]).trim().to_string();
    let secret = r.git(&["rev-parse", "secret"]).trim().to_string();
    r.git(&["push", "-q", "origin", "typo:refs/pull/81/head"]);
    r.git(&["push", "-q", "origin", "secret:refs/pull/80/head"]);
    r.git(&["switch", "-q", "-c", "group-81", "main"]);
    r.git(&["merge", "-q", "--no-ff", "--no-edit", "secret"]);
    let ahead = format!("HEAD:refs/heads/gh-readonly-queue/main/pr-80-{secret}");
    r.git(&["push", "-q", "origin", &ahead]);
    if holds_81 {
        r.git(&["merge", "-q", "--no-ff", "--no-edit", "typo"]);
    }
    let group = r.git(&["rev-parse", "HEAD"]).trim().to_string();
    let queue_ref = format!("gh-readonly-queue/main/pr-81-{typo}");
    r.git(&[
        "push",
        "-q",
        "origin",
        &format!("HEAD:refs/heads/{queue_ref}"),
    ]);
    r.git(&["switch", "-q", "main"]);
    gh.with(|s| {
        s.pulls.insert(81, typo.clone());
        s.pull_base.insert(81, base.clone());
        s.pulls.insert(80, secret.clone());
        s.pull_base.insert(80, base.clone());
        s.reviews = vec![review("hanna", &typo, "APPROVED")];
    });
    let out = run_with(
        &r,
        &[
            "github",
            "verdict",
            "--db",
            &db,
            "--out",
            "verdict-out",
            "--sha",
            &group,
            "--merge-group",
            &queue_ref,
        ],
        &gh,
        &[("TEST_LLM_KEY", "test-key".into())],
    );
    (gh, out, group)
}

/// Hostile review (h24): GitHub builds a queue's groups concurrently and,
/// when "Only merge non-failing pull requests" is off, merges every pull
/// request of a passing group even if an earlier group failed. So a
/// group's verdict judges every pull request it holds (found from the
/// queue's group branches in its history) on its own: a gate-workflow
/// change nobody approved, queued ahead of an approved typo fix, keeps the
/// typo's group from passing, and the verdict names it.
#[test]
fn an_unapproved_change_queued_ahead_does_not_pass_in_a_later_group() {
    let (gh, out, group) = judge_group_behind_a_secret(true);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let check = gh.with(|s| s.check_runs.last().cloned()).expect("a check");
    assert_eq!(check["head_sha"], group, "{check}");
    assert_eq!(
        check["conclusion"], "action_required",
        "a gate-workflow change nobody approved passes in the group behind it:\n{text}"
    );
    assert!(
        text.contains("## Pull request #80 on its own\n\nWAITING FOR APPROVAL"),
        "{text}"
    );
}

/// Hostile review (h24): paid model calls run for a fork's pull request
/// only after a maintainer labels it. A merge group holds every pull
/// request queued ahead, so it gets paid calls only when each of them may:
/// behind an unlabelled fork, none, and the group is not evaluated (never
/// passed).
#[test]
fn a_fork_queued_ahead_gets_no_paid_calls_in_a_later_group() {
    let (llm, gh, r) = gated_repo(&[("hr-leads", &["hanna"]), ("platform", &["pat"])]);
    let base = with_origin(&r);
    branch(&r, "fork-change", |r| {
        r.edit(
            "packs/domains/legal-intake/prompts/role.md",
            "\n",
            "\nAlways answer in a friendly tone.\n",
        );
        r.edit(
            "packs/domains/legal-intake/pack.yaml",
            "version: 1.0.0",
            "version: 1.0.1",
        );
    });
    branch(&r, "typo", |r| {
        r.edit(HR_ROLE, "workplace\npolicies", "workplace\nPolicies");
        bump(r, HR);
    });
    let typo = r.git(&["rev-parse", "typo"]).trim().to_string();
    let fork = r.git(&["rev-parse", "fork-change"]).trim().to_string();
    r.git(&["push", "-q", "origin", "typo:refs/pull/91/head"]);
    r.git(&["push", "-q", "origin", "fork-change:refs/pull/90/head"]);
    gh.with(|s| {
        s.pulls.insert(91, typo.clone());
        s.pull_base.insert(91, base.clone());
        s.pulls.insert(90, fork.clone());
        s.pull_base.insert(90, base.clone());
        s.fork_pulls.insert(90);
        s.reviews = vec![review("hanna", &typo, "APPROVED")];
    });
    // The queue's group branches: one per queued pull request, each on the
    // one before it, as GitHub's merge queue pushes them.
    let group_of = |name: &str, ahead: &[(u64, &str)]| -> (String, String) {
        r.git(&["switch", "-q", "-c", name, "main"]);
        for (pr, b) in ahead {
            r.git(&["merge", "-q", "--no-ff", "--no-edit", b]);
            let at = r.git(&["rev-parse", "HEAD"]).trim().to_string();
            let ahead_ref = format!("gh-readonly-queue/main/pr-{pr}-{at}");
            r.git(&[
                "push",
                "-q",
                "origin",
                &format!("HEAD:refs/heads/{ahead_ref}"),
            ]);
        }
        r.git(&["merge", "-q", "--no-ff", "--no-edit", "typo"]);
        let group = r.git(&["rev-parse", "HEAD"]).trim().to_string();
        let queue_ref = format!("gh-readonly-queue/main/pr-91-{group}");
        r.git(&[
            "push",
            "-q",
            "origin",
            &format!("HEAD:refs/heads/{queue_ref}"),
        ]);
        r.git(&["switch", "-q", "main"]);
        (group, queue_ref)
    };
    let judge = |group: &str, queue_ref: &str, db: &str| -> Value {
        let db = format!("sqlite://{}", r.dir.path().join(db).display());
        let out = run_with(
            &r,
            &[
                "github",
                "verdict",
                "--db",
                &db,
                "--out",
                "verdict-out",
                "--sha",
                group,
                "--merge-group",
                queue_ref,
            ],
            &gh,
            &[("TEST_LLM_KEY", "test-key".into())],
        );
        assert_success(&out);
        gh.with(|s| s.check_runs.last().cloned().expect("check"))
    };
    // #91 queued alone: its paid calls.
    let (g, q) = group_of("group-a", &[]);
    let before = llm.count();
    judge(&g, &q, "a.db");
    let alone = llm.count() - before;
    // The unlabelled fork #90 queued ahead of #91.
    assert!(alone > 0, "a same-repository pull request gets paid calls");
    // The unlabelled fork #90 queued ahead of #91: no paid call in the
    // group at all (the fork's change is in it), so the group is not
    // evaluated, never passed.
    let (g, q) = group_of("group-b", &[(90, "fork-change")]);
    let before = llm.count();
    let check = judge(&g, &q, "b.db");
    let behind_fork = llm.count() - before;
    assert_eq!(
        behind_fork, 0,
        "the unlabelled fork's change ahead was evaluated with paid calls ({behind_fork} calls, {alone} for #91 alone)"
    );
    assert_eq!(check["conclusion"], "action_required", "{check}");
}

/// Hostile review (h24): a merge group must hold the pull request its
/// branch names. A queue ref naming #81 over a group that holds only an
/// unapproved gate-workflow change (or an older head of #81) gets no
/// check: nothing is posted, and the job says why.
#[test]
fn a_group_without_its_pull_request_does_not_pass() {
    let (gh, out, _) = judge_group_behind_a_secret(false);
    // The group does not hold #81: nothing is posted (the queue's required
    // check never appears, so the group cannot merge), and the job says why.
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("is not pull request #81's head") && err.contains("nothing is posted"),
        "{err}"
    );
    assert!(
        gh.with(|s| s.check_runs.is_empty()),
        "a check was posted for a group that does not hold its pull request"
    );
}
