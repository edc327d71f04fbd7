//! The registry, telemetry and canary rollouts end to end: a real `serve`
//! process on 127.0.0.1, tokens, a bare remote and a clone.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::reconcile::{Fleet, Served, bump, free_port, wait_http};
use crate::util::{assert_success, git, http, missionctl};

const HR: &str = "packs/domains/hr-ops/pack.yaml";

pub(crate) struct Tok {
    pub admin: String,
    pub acme_harness: String,
    pub acme_viewer: String,
    pub acme_admin: String,
}

pub(crate) fn tokens(dir: &std::path::Path) -> (std::path::PathBuf, Tok) {
    let path = dir.join("tokens.yaml");
    let make = |name: &str, role: &str, tenant: Option<&str>| -> String {
        let mut c = missionctl();
        c.args([
            "token",
            "new",
            "--name",
            name,
            "--role",
            role,
            "--tokens-file",
        ])
        .arg(&path);
        if let Some(t) = tenant {
            c.args(["--tenant", t]);
        }
        let out = c.output().expect("token");
        assert_success(&out);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let t = Tok {
        admin: make("admin", "admin", None),
        acme_harness: make("acme-harness", "harness", Some("acme")),
        acme_viewer: make("acme-viewer", "viewer", Some("acme")),
        acme_admin: make("acme-admin", "admin", Some("acme")),
    };
    (path, t)
}

/// `missionctl serve` on the fleet's remote and store, listening on `port`,
/// with `tokens`, polling hourly and ticking canaries every 100 ms; its
/// output not yet directed.
pub(crate) fn serve_command(f: &Fleet, port: u16, tokens: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_missionctl"));
    c.args([
        "serve",
        "--repo",
        f.remote.to_str().expect("p"),
        "--db",
        &f.db,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--poll-interval",
        "1h",
        "--rollout-interval",
        "100ms",
        "--tokens",
        tokens.to_str().expect("p"),
    ]);
    c
}

/// `serve` on the fleet with `extra` arguments; ready to answer when returned.
pub(crate) fn serve_with(f: &Fleet, port: u16, tokens: &std::path::Path, extra: &[&str]) -> Served {
    let s = Served(
        serve_command(f, port, tokens)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("MC_TEST_DEBUG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("serve"),
    );
    wait_http(port);
    s
}

/// A fleet whose `serve` is up and ready on a free port, with its tokens.
/// Bind the tuple in order: the server stops before the directory goes.
fn serving_fleet() -> (tempfile::TempDir, Fleet, Tok, u16, Served) {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    serving_fleet_on(dir, &db)
}

/// [`serving_fleet`] on the database at `db`.
pub(crate) fn serving_fleet_on(
    dir: tempfile::TempDir,
    db: &str,
) -> (tempfile::TempDir, Fleet, Tok, u16, Served) {
    let f = Fleet::fleet(db);
    let (tok_file, t) = tokens(dir.path());
    let (port, s) = serve_ready(&f, &tok_file, &[], &t.admin);
    (dir, f, t, port, s)
}

/// `serve` with `extra` arguments on a free port, ready: its `/readyz`
/// answers 200 from this very process (the replica name carries the pid).
/// A free port can be taken by a parallel test between probing and
/// binding; then this serve exits and another port is tried.
pub(crate) fn serve_ready(
    f: &Fleet,
    tokens: &std::path::Path,
    extra: &[&str],
    admin: &str,
) -> (u16, Served) {
    ready_on_a_free_port(admin, |port| serve_with(f, port, tokens, extra))
}

/// What `launch(port)` started, once its `/readyz` answers 200 from that
/// very process, on a free port (retried on another when it could not bind).
pub(crate) fn ready_on_a_free_port(admin: &str, launch: impl Fn(u16) -> Served) -> (u16, Served) {
    for _ in 0..5 {
        let port = free_port();
        let mut s = launch(port);
        let pid = format!("-{}-", s.0.id());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if s.0.try_wait().ok().flatten().is_some() {
                break; // it could not bind: the port was taken
            }
            let (code, v) = get(port, "/readyz", admin);
            if code == 200 && v["replica"].as_str().is_some_and(|r| r.contains(&pid)) {
                return (port, s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("serve did not come up on a free port in 5 tries");
}

pub(crate) fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

pub(crate) fn get(port: u16, path: &str, token: &str) -> (u16, Value) {
    let (code, _, body) = http(port, "GET", path, &[("Authorization", &bearer(token))], b"");
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// `POST /v1/runs` with `token`: (status, body).
pub(crate) fn post_runs(port: u16, token: &str, body: &[u8]) -> (u16, String) {
    let (code, _, resp) = http(
        port,
        "POST",
        "/v1/runs",
        &[("Authorization", &bearer(token))],
        body,
    );
    (code, resp)
}

pub(crate) fn until<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn rollout_state(port: u16, admin: &str, version_prefix: &str) -> Option<Value> {
    let (_, v) = get(port, "/v1/rollouts", admin);
    v["rollouts"]
        .as_array()?
        .iter()
        .find(|r| {
            r["canary_version"]
                .as_str()
                .is_some_and(|c| c.starts_with(version_prefix))
        })
        .cloned()
}

/// Simulated harness traffic: resolve for each user, run, report.
pub(crate) fn traffic(
    port: u16,
    token: &str,
    seed: &str,
    n: usize,
    canary_ok: f64,
) -> (usize, usize) {
    let mut rows = Vec::new();
    let (mut canary, mut champion) = (0, 0);
    for i in 0..n {
        let user = format!("u{}", i % 600);
        let (code, r) = get(
            port,
            &format!("/v1/resolve?domain=hr-ops&tenant=acme&user={user}"),
            token,
        );
        assert_eq!(code, 200, "{r}");
        let arm = r["arm"].as_str().unwrap_or("").to_string();
        // Deterministic outcomes: the canary fails (1 - canary_ok) of its runs, the champion 3%.
        let fail_every = |p: f64| {
            if p >= 1.0 {
                usize::MAX
            } else {
                (1.0 / (1.0 - p)).round() as usize
            }
        };
        let ok = if arm == "canary" {
            canary += 1;
            canary % fail_every(canary_ok) != 0
        } else {
            champion += 1;
            champion % 33 != 0
        };
        rows.push(json!({"run_id": format!("{seed}-{i}"), "tenant_id": "acme", "user_id": user, "agent_id": "hr-bot", "pack_id": r["pack_id"], "pack_version": r["pack_version"], "task_type": "qa", "latency_ms": 120.0, "cost_usd": 0.002, "success_bool": ok, "error_code": if ok { Value::Null } else { json!("tool_error") }, "created_at": missionctl::time_util::now_rfc3339()}));
    }
    let body: String = rows.iter().map(|r| format!("{r}\n")).collect();
    // As a harness should (the OpenClaw plugin does): a 429 (ingest at
    // capacity) or a 503 (the store busy, e.g. a frozen replica holding
    // SQLite's write lock) is sent again a little later.
    for _ in 0..20 {
        let (code, _, resp) = http(
            port,
            "POST",
            "/v1/runs",
            &[("Authorization", &bearer(token))],
            body.as_bytes(),
        );
        if code == 429 || code == 503 {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        assert_eq!(code, 200, "{resp}");
        return (champion, canary);
    }
    panic!("ingest answered 429 or 503 twenty times in a row");
}

#[test]
fn a_rollout_runs_on_telemetry_to_full_promotion_and_a_regression_rolls_back() {
    let (_dir, f, t, port, _s) = serving_fleet();

    // A merged change starts a canary at its first step.
    f.merge("good", 11, |f| {
        f.edit(
            "packs/domains/hr-ops/prompts/role.md",
            "workplace\npolicies",
            "workplace\nPolicies",
        );
        bump(f, HR, "1.1.0");
    });
    f.push();
    let r = until("the rollout", Duration::from_secs(20), || {
        rollout_state(port, &t.admin, "1.1.0")
    });
    assert_eq!(r["state"], "running");
    assert_eq!(r["percent"], 10);
    // Users keep their arm: the same user resolves to the same arm every time.
    let first = get(
        port,
        "/v1/resolve?domain=hr-ops&tenant=acme&user=stable-user",
        &t.acme_harness,
    )
    .1;
    for _ in 0..5 {
        assert_eq!(
            get(
                port,
                "/v1/resolve?domain=hr-ops&tenant=acme&user=stable-user",
                &t.acme_harness
            )
            .1["arm"],
            first["arm"]
        );
    }
    // Healthy telemetry moves it through every step to full promotion.
    let mut seed = 0;
    let done = until("full promotion", Duration::from_secs(60), || {
        seed += 1;
        traffic(port, &t.acme_harness, &format!("good{seed}"), 700, 0.97);
        std::thread::sleep(Duration::from_millis(300));
        rollout_state(port, &t.admin, "1.1.0").filter(|r| r["state"] == "completed")
    });
    assert_eq!(done["percent"], 100);
    assert!(
        done["detail"]["why"]
            .as_str()
            .expect("why")
            .contains("fully promoted")
    );
    // The evidence behind the promotion stays readable: each step's figures
    // and test statistic, and the arms as the last step left them.
    assert_eq!(done["figures_from"], "last step", "{done}");
    assert!(done["canary"]["runs"].as_u64().expect("runs") > 0, "{done}");
    let history = done["detail"]["history"].as_array().expect("history");
    assert_eq!(history.len(), 2, "{done}");
    for (h, (pct, outcome)) in history.iter().zip([(10, "advanced"), (50, "completed")]) {
        assert_eq!(h["percent"], pct, "{h}");
        assert_eq!(h["outcome"], outcome, "{h}");
        assert!(
            h["figures"]["champion"]["runs"].as_u64().expect("n") > 0,
            "{h}"
        );
        assert!(
            h["figures"]["canary"]["success_rate"].as_f64().is_some(),
            "{h}"
        );
        assert!(h["figures"]["sprt"]["llr"].as_f64().is_some(), "{h}");
    }

    // A bad version: the canary's failures roll it back automatically.
    f.git(&["pull", "-q", "--ff-only", "origin", "main"]);
    f.merge("bad", 12, |f| {
        f.edit(
            "packs/domains/hr-ops/prompts/role.md",
            "workplace\nPolicies",
            "workplace policies",
        );
        bump(f, HR, "1.2.0");
    });
    f.push();
    until("the second rollout", Duration::from_secs(20), || {
        rollout_state(port, &t.admin, "1.2.0")
    });
    let rolled = until("the automatic rollback", Duration::from_secs(60), || {
        seed += 1;
        traffic(port, &t.acme_harness, &format!("bad{seed}"), 700, 0.6);
        std::thread::sleep(Duration::from_millis(300));
        rollout_state(port, &t.admin, "1.2.0").filter(|r| r["state"] == "rolled_back")
    });
    assert!(
        rolled["detail"]["why"]
            .as_str()
            .expect("why")
            .contains("sequential test"),
        "{rolled}"
    );
    // Pinned: every user now gets the champion.
    for u in 0..50 {
        assert_eq!(
            get(
                port,
                &format!("/v1/resolve?domain=hr-ops&tenant=acme&user=x{u}"),
                &t.acme_harness
            )
            .1["arm"],
            "champion"
        );
    }
    // Git agrees: the revert is on main in the remote, and the decision has the figures.
    let msg = git(&f.remote, &["log", "-1", "--format=%B", "main"]);
    assert!(
        msg.contains("Missionctl-Rollback: hr-ops-pack") && msg.contains("automatic rollback"),
        "{msg}"
    );
    let d = until("the rollback decision", Duration::from_secs(10), || {
        f.decisions()
            .into_iter()
            .rev()
            .find(|d| d["decision"] == "rollback" && d["pack_id"] == "hr-ops-pack")
    });
    assert!(
        d["figures"]["trigger"]["canary"]["runs"]
            .as_u64()
            .expect("runs")
            > 0,
        "{d}"
    );
    assert_eq!(d["decided_by"], "missionctl canary controller (automatic)");
    // Held: reverting the revert does not bring 1.2.0 back.
    f.git(&["pull", "-q", "--ff-only", "origin", "main"]);
    f.git(&["revert", "--no-edit", "HEAD"]);
    f.push();
    let held = until("the held refusal", Duration::from_secs(10), || {
        f.decisions().into_iter().rev().find(|d| {
            d["decision"] == "reject" && d["reason"].as_str().unwrap_or("").contains("held")
        })
    });
    assert_eq!(held["pack_id"], "hr-ops-pack");
}

#[test]
fn tenant_isolation_on_every_endpoint_and_the_audit_log() {
    let (_dir, f, t, port, _s) = serving_fleet();
    let db = f.db.clone();
    // No token, or a wrong one: 401.
    assert_eq!(
        http(
            port,
            "GET",
            "/v1/resolve?domain=hr-ops&tenant=acme",
            &[],
            b""
        )
        .0,
        401
    );
    assert_eq!(
        get(port, "/v1/resolve?domain=hr-ops&tenant=acme", "nope").0,
        401
    );
    // Own tenant: yes; another tenant: 403.
    assert_eq!(
        get(
            port,
            "/v1/resolve?domain=hr-ops&tenant=acme&user=alice",
            &t.acme_harness
        )
        .0,
        200
    );
    let (code, v) = get(
        port,
        "/v1/resolve?domain=hr-ops&tenant=globex&user=carol",
        &t.acme_harness,
    );
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        get(
            port,
            "/v1/resolve?domain=personal-exec-assistant&user=sam",
            &t.acme_harness
        )
        .0,
        403
    );
    // A harness token cannot list; a tenant viewer sees shared packs and its own only.
    assert_eq!(get(port, "/v1/packs", &t.acme_harness).0, 403);
    let (code, v) = get(port, "/v1/packs", &t.acme_viewer);
    assert_eq!(code, 200);
    let ids: Vec<&str> = v["packs"]
        .as_array()
        .expect("packs")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"hr-ops-pack") && ids.contains(&"acme-alice"),
        "{ids:?}"
    );
    assert!(
        !ids.iter()
            .any(|i| i.starts_with("globex") || *i == "sam-personal"),
        "{ids:?}"
    );
    let (_, v) = get(port, "/v1/decisions", &t.acme_viewer);
    assert!(
        v["decisions"]
            .as_array()
            .expect("d")
            .iter()
            .all(|d| !d["pack_id"].as_str().unwrap_or("").starts_with("globex"))
    );
    let (_, v) = get(port, "/v1/decisions", &t.admin);
    assert!(
        v["decisions"]
            .as_array()
            .expect("d")
            .iter()
            .any(|d| d["pack_id"] == "globex-tenant")
    );
    assert_eq!(get(port, "/v1/rollouts", &t.acme_viewer).0, 200);
    // Runs for another tenant are refused row by row; the good row is stored.
    let now = missionctl::time_util::now_rfc3339();
    let row = |id: &str, tenant: &str| json!({"run_id": id, "tenant_id": tenant, "user_id": "u", "agent_id": "a", "pack_id": "acme-tenant", "pack_version": "1.0.0", "task_type": "qa", "latency_ms": 1, "cost_usd": 0, "success_bool": true, "error_code": null, "created_at": now});
    let body = format!("{}\n{}\n", row("ok-1", "acme"), row("bad-1", "globex"));
    let (code, resp) = post_runs(port, &t.acme_harness, body.as_bytes());
    assert_eq!(code, 400, "{resp}");
    let v: Value = serde_json::from_str(&resp).expect("json");
    assert_eq!(v["accepted"], 1);
    assert_eq!(v["errors"][0]["line"], 2);
    // The refusal is visible where operators look, not only in the
    // harness's log: `status` names the token, the count and the reason.
    let status = crate::util::missionctl()
        .args(["status", "--db", &db])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("telemetry REFUSED in the last 24 h: token `acme-harness`")
            && text.contains("1 batch(es)")
            && text.contains("tenant_id `globex` is outside"),
        "{text}"
    );
    assert!(
        !text.contains(&t.acme_harness),
        "a token leaked into status"
    );
    // Rollback: admin role needed; a tenant admin may not roll back a shared pack.
    let rb = json!({"pack_id": "hr-ops-pack", "reason": "test"}).to_string();
    assert_eq!(
        http(
            port,
            "POST",
            "/v1/rollback",
            &[("Authorization", &bearer(&t.acme_viewer))],
            rb.as_bytes()
        )
        .0,
        403
    );
    assert_eq!(
        http(
            port,
            "POST",
            "/v1/rollback",
            &[("Authorization", &bearer(&t.acme_admin))],
            rb.as_bytes()
        )
        .0,
        403
    );
    // Health and metrics need no token.
    assert_eq!(http(port, "GET", "/healthz", &[], b"").0, 200);
    let (code, _, metrics) = http(port, "GET", "/metrics", &[], b"");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("missionctl_requests_denied_total"),
        "{metrics}"
    );
    // Every refusal is in the audit log, by token name, never by token.
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let log = rt.block_on(async {
        let s = missionctl::store::Store::connect(&db).await.expect("db");
        s.audit_log(100).await.expect("audit")
    });
    let denied: Vec<_> = log.iter().filter(|e| e.outcome == "denied").collect();
    assert!(
        denied
            .iter()
            .any(|e| e.token == "acme-harness" && e.detail.contains("not globex")),
        "{log:?}"
    );
    assert!(
        denied
            .iter()
            .any(|e| e.action == "/v1/rollback" && e.token == "acme-admin"),
        "{log:?}"
    );
    assert!(denied.iter().any(|e| e.action == "/v1/runs"), "{log:?}");
    assert!(
        !log.iter().any(|e| e.detail.contains(&t.acme_harness)),
        "a token leaked into the audit log"
    );
}

#[test]
fn etag_304_and_the_watch_sees_a_new_version_without_polling() {
    let (_dir, f, t, port, _s) = serving_fleet();
    // A promotion goes through a canary: watch as a user who is in its arm.
    let user = (0..1000)
        .map(|i| format!("w{i}"))
        .find(|u| missionctl::rollout::arm("acme-tenant", u, 10) == missionctl::model::Arm::Canary)
        .expect("a canary user");
    let path = format!("/v1/resolve?domain=hr-ops&tenant=acme&user={user}");
    let path = path.as_str();
    let (code, head, _) = http(
        port,
        "GET",
        path,
        &[("Authorization", &bearer(&t.acme_harness))],
        b"",
    );
    assert_eq!(code, 200);
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("etag")
        .trim()
        .to_string();
    let (code, _, _) = http(
        port,
        "GET",
        path,
        &[
            ("Authorization", &bearer(&t.acme_harness)),
            ("If-None-Match", &etag),
        ],
        b"",
    );
    assert_eq!(code, 304);
    // A watch: the request waits until the tenant's pack changes on main.
    let watcher = {
        let (tok, etag, path) = (t.acme_harness.clone(), etag.clone(), path.to_string());
        std::thread::spawn(move || {
            let start = Instant::now();
            let r = http(
                port,
                "GET",
                &format!("{path}&wait=30"),
                &[("Authorization", &bearer(&tok)), ("If-None-Match", &etag)],
                b"",
            );
            (r, start.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    f.edit(
        "packs/tenants/acme/context.md",
        "warehouse robots",
        "warehouse robots and drones",
    );
    bump(&f, "packs/tenants/acme/pack.yaml", "1.1.0");
    f.git(&["commit", "-qam", "acme context"]);
    f.push();
    let ((code, head, body), waited) = watcher.join().expect("watch");
    assert_eq!(code, 200, "{head}");
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    assert!(body.contains("drones"));
    assert!(!head.contains(&etag));
    // With nothing changing, the watch ends in 304 at its deadline.
    let new_etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("etag")
        .trim()
        .to_string();
    let (code, _, _) = http(
        port,
        "GET",
        &format!("{path}&wait=1"),
        &[
            ("Authorization", &bearer(&t.acme_harness)),
            ("If-None-Match", &new_etag),
        ],
        b"",
    );
    assert_eq!(code, 304);
}

#[test]
fn a_malformed_batch_keeps_its_good_rows_and_duplicates_are_ignored() {
    let (dir, f, t, port, _s) = serving_fleet();
    let db = f.db.clone();
    let now = missionctl::time_util::now_rfc3339();
    let good = |id: &str| {
        json!({"run_id": id, "tenant_id": "acme", "user_id": "u", "agent_id": "a", "pack_id": "acme-tenant", "pack_version": "1.0.0", "task_type": "qa", "latency_ms": 5, "cost_usd": 0.001, "success_bool": false, "error_code": "timeout", "created_at": now}).to_string()
    };
    let body = format!(
        "{}\n{{\"run_id\": \"x\"}}\n{}\nnot json at all\n{}\n",
        good("g1"),
        good("g2"),
        good("g3")
    );
    let (code, resp) = post_runs(port, &t.acme_harness, body.as_bytes());
    assert_eq!(code, 400);
    let v: Value = serde_json::from_str(&resp).expect("json");
    assert_eq!(v["accepted"], 3);
    let lines: Vec<u64> = v["errors"]
        .as_array()
        .expect("e")
        .iter()
        .map(|e| e["line"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(lines, [2, 4]);
    assert!(
        v["errors"][0]["error"]
            .as_str()
            .expect("e")
            .contains("missing required field")
    );
    // Sent again: nothing new.
    let (code, _, resp) = http(
        port,
        "POST",
        "/v1/runs",
        &[("Authorization", &bearer(&t.acme_harness))],
        format!("{}\n{}\n", good("g1"), good("g2")).as_bytes(),
    );
    assert_eq!(code, 200, "{resp}");
    let v: Value = serde_json::from_str(&resp).expect("json");
    assert_eq!(
        (v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(2))
    );
    // The same from a file with `telemetry ingest`.
    let file = dir.path().join("runs.ndjson");
    std::fs::write(&file, format!("{}\n{}\n", good("f1"), "{}")).expect("write");
    let out = missionctl()
        .args([
            "telemetry",
            "ingest",
            file.to_str().expect("p"),
            "--db",
            &db,
            "--repo",
            f.remote.to_str().expect("p"),
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let rep: Value = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(rep["accepted"], 1);
    assert_eq!(rep["errors"][0]["line"], 2);
}

#[test]
fn missing_data_stalls_instead_of_advancing() {
    use missionctl::reconcile::{Options, Source, reconcile};
    use missionctl::registry::{Registry, auth::Tokens, controller};
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let f = Fleet::fleet(&db);
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let store = missionctl::store::Store::connect(&db).await.expect("db");
        let source = Source::new(f.remote.to_str().expect("p"), "main", dir.path());
        let reg = Registry::new(store.clone(), source.clone(), Tokens::default(), None);
        let out = reconcile(&source, &store, &Options::default())
            .await
            .expect("import");
        controller::on_pass(&reg, &out).await.expect("pass");
        f.merge("quiet", 3, |f| bump(f, HR, "1.1.0"));
        f.push();
        let out = reconcile(&source, &store, &Options::default())
            .await
            .expect("reconcile");
        controller::on_pass(&reg, &out).await.expect("pass");
        let now = time::OffsetDateTime::now_utc();
        // No runs at all, well past the step deadline: stalled, not advanced, not rolled back.
        let events = controller::tick(&reg, now + time::Duration::hours(5))
            .await
            .expect("tick");
        assert!(events.iter().any(|e| e.contains("stalled")), "{events:?}");
        let st = serde_json::to_value(controller::status(&store, false).await.expect("status"))
            .expect("status as JSON");
        assert_eq!(st[0]["state"], "stalled");
        assert_eq!(st[0]["percent"], 10);
        assert!(
            st[0]["detail"]["why"]
                .as_str()
                .expect("why")
                .contains("not advancing on missing data")
        );
        // The canary still serves its share: nothing was silently promoted.
        let snap = reg.snapshot.load();
        assert_eq!(
            snap.rollouts.get("hr-ops-pack").map(|r| r.percent),
            Some(10)
        );
    });
}

#[test]
fn quickstart_runs_the_whole_loop() {
    let dir = tempfile::tempdir().expect("tmp");
    let qs = dir.path().join("qs");
    let out = missionctl()
        .args(["quickstart", "--dir", qs.to_str().expect("p")])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "PASS: 1 pack(s) changed, ",
        "decision: promote hr-ops-pack",
        "fully promoted",
        "automatic rollback",
        "git agrees: main is now at",
        "Roll back hr-ops-pack to 1.1.0",
        "signal: 2 failing case(s): harassment-escalates, medical-accommodation",
        "the worker proposes 1.2.1-improve.1 on branch missionctl/improve/hr-ops-pack/1.2.1-improve.1-",
        "the gate on the proposal against main: PASS: 1 pack(s) changed, ",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // Each canary round is labelled with the share it ran at: a canary
    // never runs a round at 100% (reaching it ends the rollout).
    let shares: Vec<u32> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("round "))
        .filter_map(|l| {
            l.rsplit_once(" at ")?
                .1
                .strip_suffix("% canary")?
                .parse()
                .ok()
        })
        .collect();
    assert!(!shares.is_empty(), "no canary rounds in:\n{text}");
    assert!(
        shares.iter().all(|p| *p > 0 && *p < 100),
        "{shares:?}\n{text}"
    );
    assert!(qs.join("evidence/evidence.md").exists());
    // What a person reads afterwards: a completed rollout, a rolled-back one,
    // and the decision history.
    let db = format!("sqlite://{}", qs.join("state.db").display());
    let run = |args: &[&str]| {
        let out = missionctl()
            .args(args)
            .args(["--db", &db])
            .output()
            .expect("run");
        assert_success(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = run(&["status", "--all"]);
    let decisions = run(&["decisions", "--pack", "hr-ops-pack"]);
    crate::snapshots::settings(dir.path()).bind(|| {
        insta::assert_snapshot!("status_all_after_quickstart", status);
        insta::assert_snapshot!("decisions_after_quickstart", decisions);
    });
    let log = git(&qs.join("fleet.git"), &["log", "--format=%s", "main"]);
    assert!(
        log.lines()
            .next()
            .expect("head")
            .starts_with("Roll back hr-ops-pack"),
        "{log}"
    );
    quickstart_console(&text);
}

/// The console on what the quickstart left: the `serve` command it printed
/// (on a free port instead of 8080), signed in with the one-time link it
/// prints, shows the pack, both rollouts, the runs, the decisions and the
/// improve run.
fn quickstart_console(text: &str) {
    use crate::console::pages::page;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("missionctl serve "))
        .unwrap_or_else(|| panic!("the quickstart printed no serve command:\n{text}"));
    let port = crate::reconcile::free_port();
    let args: Vec<String> = line
        .split_whitespace()
        .skip(1)
        .map(|w| match w {
            "127.0.0.1:8080" => format!("127.0.0.1:{port}"),
            w => w.to_string(),
        })
        .collect();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_missionctl"));
    cmd.args(&args);
    let (_serve, _, _, link) = crate::sso::serve_printing_link(&mut cmd);
    crate::reconcile::wait_http(port);
    let (code, head, _) = crate::util::http(port, "GET", &link, &[], b"");
    assert_eq!(code, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no cookie: {head}"))
        .to_string();
    let want = |path: &str, needles: &[&str]| -> String {
        let (code, _, body) = page(port, path, &cookie);
        assert_eq!(code, 200, "{path}: {body}");
        for n in needles {
            assert!(body.contains(n), "{path} lacks {n:?}:\n{body}");
        }
        body
    };
    want(
        "/ui/",
        &["hr-ops-pack", "local:one-time-link (admin, every tenant)"],
    );
    want("/ui/packs/hr-ops-pack", &["1.1.0", "1.2.0"]);
    let list = want("/ui/rollouts", &["hr-ops-pack", "rolled_back", "completed"]);
    let rollout = regex::Regex::new(r#"href="(/ui/rollouts/[^"/]+)""#)
        .expect("re")
        .captures(&list)
        .unwrap_or_else(|| panic!("no rollout link:\n{list}"))[1]
        .to_string();
    want(&rollout, &["hr-ops-pack", "<svg"]);
    want("/ui/runs?tenant=acme", &["acme-tenant", "canary", "Export"]);
    let (code, _, csv) = page(port, "/ui/runs/export.csv?tenant=acme", &cookie);
    assert_eq!(code, 200);
    assert!(csv.lines().count() > 100, "{csv}");
    want("/ui/decisions", &["rollback", "promote", "hr-ops-pack"]);
    want("/ui/improve", &["hr-ops-pack", "1.2.1-improve.1"]);
}

/// What every one of `n` acme users is served for hr-ops: (arm, content text).
fn served_to_all(port: u16, token: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|u| {
            let (code, r) = get(
                port,
                &format!("/v1/resolve?domain=hr-ops&tenant=acme&user=x{u}"),
                token,
            );
            assert_eq!(code, 200, "{r}");
            (
                r["arm"].as_str().unwrap_or("").to_string(),
                r["content"].to_string(),
            )
        })
        .collect()
}

/// Issue 16, point 1: an automatic rollback serves the last good version's
/// content to every user at once and keeps serving it, whether the revert
/// is pushed or waits on a review branch; the content is checked, not the
/// arm label.
fn rollback_serves_the_champion(git_mode: &str) {
    const BAD: &str = "BAD-VERSION-MARKER";
    let (_dir, f, t, port, _s) = serving_fleet();
    f.merge("bad", 21, |f| {
        f.edit(
            "packs/domains/hr-ops/prompts/role.md",
            "workplace\npolicies",
            &format!("workplace {BAD}\npolicies"),
        );
        f.edit(
            HR,
            "rollback:\n",
            &format!("rollback:\n  git: {git_mode}\n"),
        );
        bump(f, HR, "1.1.0");
    });
    f.push();
    until("the rollout", Duration::from_secs(20), || {
        rollout_state(port, &t.admin, "1.1.0")
    });
    // The rollout row is in the store as soon as it is written; the served
    // snapshot follows within the follow interval.
    let canary_users = until("the canary to be served", Duration::from_secs(10), || {
        let n = served_to_all(port, &t.acme_harness, 40)
            .iter()
            .filter(|(_, c)| c.contains(BAD))
            .count();
        (n > 0).then_some(n)
    });
    assert!(canary_users < 40, "{canary_users} of 40 in the canary");
    let mut seed = 0;
    until("the automatic rollback", Duration::from_secs(60), || {
        seed += 1;
        traffic(
            port,
            &t.acme_harness,
            &format!("{git_mode}{seed}"),
            700,
            0.6,
        );
        rollout_state(port, &t.admin, "1.1.0").filter(|r| r["state"] == "rolled_back")
    });
    // During the swap (the revert being written and reconciled) and after it,
    // nobody is served the bad content.
    let until_t = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until_t {
        for (arm, content) in served_to_all(port, &t.acme_harness, 40) {
            assert!(
                !content.contains(BAD),
                "bad content served ({arm}) after the rollback"
            );
        }
    }
    let d = until("the rollback decision", Duration::from_secs(20), || {
        f.decisions()
            .into_iter()
            .rev()
            .find(|d| d["decision"] == "rollback" && d["pack_id"] == "hr-ops-pack")
    });
    assert!(d["figures"]["git"]["branch"].as_str().is_some(), "{d}");
    if git_mode == "branch" {
        // The revert waits for review; main still holds the bad version.
        let branches = git(&f.remote, &["branch", "--list", "missionctl/rollback-*"]);
        assert!(!branches.trim().is_empty(), "no rollback branch");
        let main = git(
            &f.remote,
            &["show", "main:packs/domains/hr-ops/prompts/role.md"],
        );
        assert!(main.contains(BAD));
    }
    std::thread::sleep(Duration::from_millis(500));
    for (arm, content) in served_to_all(port, &t.acme_harness, 40) {
        assert!(
            !content.contains(BAD),
            "bad content served ({arm}) after the rollback"
        );
    }
    // The registry lists the champion as what serves, never the rolled-back version.
    let (_, packs) = get(port, "/v1/packs", &t.admin);
    let hr = packs["packs"]
        .as_array()
        .expect("packs")
        .iter()
        .find(|p| p["id"] == "hr-ops-pack")
        .cloned()
        .expect("hr-ops-pack");
    assert!(
        !hr["version"]
            .as_str()
            .expect("version")
            .starts_with("1.1.0"),
        "{hr}"
    );
}

#[test]
fn a_pushed_rollback_serves_the_champion_content_to_everyone() {
    rollback_serves_the_champion("push");
}

#[test]
fn a_rollback_on_a_review_branch_serves_the_champion_content_to_everyone() {
    rollback_serves_the_champion("branch");
}

/// Issue 16, point 11: one record, pretty-printed over several lines, is a
/// batch of one (not several broken NDJSON lines).
#[test]
fn a_pretty_printed_single_record_is_accepted() {
    let (_dir, _f, t, port, _s) = serving_fleet();
    let row = json!({"run_id": "pretty-1", "tenant_id": "acme", "user_id": "u", "agent_id": "a", "pack_id": "acme-tenant", "pack_version": "1.0.0", "task_type": "qa", "latency_ms": 5, "cost_usd": 0.001, "success_bool": true, "error_code": null, "created_at": missionctl::time_util::now_rfc3339()});
    let body = serde_json::to_string_pretty(&row).expect("json");
    assert!(body.lines().count() > 5);
    let (code, resp) = post_runs(port, &t.acme_harness, body.as_bytes());
    assert_eq!(code, 200, "{resp}");
    let v: Value = serde_json::from_str(&resp).expect("json");
    assert_eq!(v["accepted"], 1, "{resp}");
}

/// Issue 10, point 9 (step): `/v1/rollback` checks the token before it reads
/// the body: no token is 401 and a viewer is 403 (audited), even when the
/// body is not JSON.
#[test]
fn rollback_authorises_before_reading_the_body() {
    let (_dir, f, t, port, _s) = serving_fleet();
    let (code, _, _) = http(port, "POST", "/v1/rollback", &[], b"not json");
    assert_eq!(code, 401);
    let (code, _, _) = http(
        port,
        "POST",
        "/v1/rollback",
        &[("Authorization", &bearer(&t.acme_viewer))],
        b"not json",
    );
    assert_eq!(code, 403);
    let (code, _, _) = http(
        port,
        "POST",
        "/v1/rollback",
        &[("Authorization", &bearer(&t.admin))],
        b"not json",
    );
    assert_eq!(code, 400, "an authorised caller learns the body is wrong");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let log = rt.block_on(async {
        let s = missionctl::store::Store::connect(&f.db)
            .await
            .expect("store");
        s.audit_log(50).await.expect("audit")
    });
    assert!(
        log.iter().any(|e| e.action == "/v1/rollback"
            && e.token == "acme-viewer"
            && e.outcome == "denied"),
        "{log:?}"
    );
}

/// Issue 32: a path-like id in a registry query is bad input (400 naming
/// the parameter), not a chain of the caller's tenant.
#[test]
fn path_like_ids_in_resolve_are_refused() {
    let (_dir, _f, t, port, _s) = serving_fleet();
    for (q, name) in [
        (
            "domain=hr-ops&tenant=acme&user=../../globex/users/carol",
            "user",
        ),
        ("domain=hr-ops&tenant=acme%2F..&user=alice", "tenant"),
        ("domain=..&tenant=acme", "domain"),
        ("domain=hr-ops&tenant=acme&user=alice&agent=a%2Fb", "agent"),
    ] {
        let (code, v) = get(port, &format!("/v1/resolve?{q}"), &t.acme_harness);
        assert_eq!(code, 400, "{q}: {v}");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.starts_with(&format!("`{name}`"))),
            "{q}: {v}"
        );
        assert!(!v.to_string().contains("globex"), "{v}");
    }
    let (code, _) = get(
        port,
        "/v1/resolve?domain=hr-ops&tenant=acme&user=alice",
        &t.acme_harness,
    );
    assert_eq!(code, 200);
}

/// A run that happened before a rollout started (delivered late, after an
/// outage) is stored, but is no evidence for that rollout's arms.
#[test]
fn runs_from_before_a_rollout_are_not_its_evidence() {
    let (dir, f, t, port, _s) = serving_fleet();
    // A content change: a bare version bump renders on acme's chain exactly
    // like the champion, and such runs are evidence for neither arm (see
    // tests/it/attribution.rs).
    f.merge("good", 12, |f| {
        f.edit(
            "packs/domains/hr-ops/prompts/role.md",
            "workplace\npolicies",
            "workplace\nPolicies",
        );
        bump(f, HR, "1.1.0");
    });
    f.push();
    until("the rollout", Duration::from_secs(20), || {
        rollout_state(port, &t.admin, "1.1.0")
    });
    // The registry serves the canary (its snapshot holds the rollout).
    until("the canary served", Duration::from_secs(20), || {
        (0..100).find(|i| {
            get(
                port,
                &format!("/v1/resolve?domain=hr-ops&tenant=acme&user=probe-{i}"),
                &t.acme_harness,
            )
            .1["arm"]
                == "canary"
        })
    });
    let (_, r) = get(
        port,
        "/v1/resolve?domain=hr-ops&tenant=acme&user=late-user",
        &t.acme_harness,
    );
    let hour_ago = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let row = |id: &str, at: &str| json!({"run_id": id, "tenant_id": "acme", "user_id": "late-user", "agent_id": "hr-bot", "pack_id": r["pack_id"], "pack_version": r["pack_version"], "task_type": "qa", "latency_ms": 100.0, "cost_usd": 0.0, "success_bool": false, "error_code": "x", "created_at": at});
    let body = format!(
        "{}\n{}\n",
        row("late-1", &hour_ago),
        row("now-1", &missionctl::time_util::now_rfc3339())
    );
    let (code, resp) = post_runs(port, &t.acme_harness, body.as_bytes());
    assert_eq!(code, 200, "{resp}");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let arms: Vec<(String, Option<String>)> =
        tokio::runtime::Runtime::new().expect("rt").block_on(async {
            let pool = sqlx::SqlitePool::connect(&db).await.expect("db");
            sqlx::query_as("SELECT run_id, arm FROM runs ORDER BY run_id")
                .fetch_all(&pool)
                .await
                .expect("runs")
        });
    assert_eq!(arms.len(), 2, "{arms:?}");
    assert_eq!(arms[0], ("late-1".to_string(), None), "{arms:?}");
    assert!(
        arms[1].1.is_some(),
        "the current run is the rollout's: {arms:?}"
    );
}

/// `GET` with extra headers, the raw answer: (status, head, body bytes).
fn get_raw(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&raw[..at]).to_lowercase();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    assert!(
        !head.contains("transfer-encoding: chunked"),
        "a cached body is sent with its length: {head}"
    );
    (code, head, raw[at + 4..].to_vec())
}

fn header_of<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
}

/// Issue 30: `GET /v1/resolve` answers gzip to a client that accepts it
/// (the same JSON once decompressed, a weak form of the same entity tag,
/// so If-None-Match still answers 304), and plain JSON to one that does
/// not or refuses gzip by `q=0`.
#[test]
fn resolve_is_gzipped_when_accepted() {
    use std::io::Read;
    let (_dir, _f, t, port, _s) = serving_fleet();
    let path = "/v1/resolve?domain=hr-ops&tenant=acme&user=alice";
    let auth = format!("Bearer {}", t.acme_harness);
    let (code, plain_head, plain) = get_raw(port, path, &[("Authorization", &auth)]);
    assert_eq!(code, 200);
    assert_eq!(header_of(&plain_head, "content-encoding"), None);
    assert_eq!(header_of(&plain_head, "vary"), Some("accept-encoding"));
    let etag = header_of(&plain_head, "etag").expect("etag").to_string();
    let plain: Value = serde_json::from_slice(&plain).expect("json");
    assert_eq!(plain["content"]["prompt"]["sections"][0]["scope"], "global");

    for accept in ["gzip", "br, gzip;q=0.8", "*"] {
        let (code, head, body) = get_raw(
            port,
            path,
            &[("Authorization", &auth), ("Accept-Encoding", accept)],
        );
        assert_eq!(code, 200, "{accept}");
        assert_eq!(
            header_of(&head, "content-encoding"),
            Some("gzip"),
            "{accept}"
        );
        assert_eq!(
            header_of(&head, "etag"),
            Some(format!("w/{etag}").as_str()),
            "{accept}"
        );
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut json)
            .expect("gzip");
        assert!(body.len() < json.len());
        assert_eq!(serde_json::from_slice::<Value>(&json).expect("json"), plain);
        // The weak tag the gzip answer carried revalidates.
        let (code, _, _) = get_raw(
            port,
            path,
            &[
                ("Authorization", &auth),
                ("Accept-Encoding", accept),
                ("If-None-Match", &format!("W/{etag}")),
            ],
        );
        assert_eq!(code, 304, "{accept}");
    }
    for refuse in ["identity", "gzip;q=0", "gzip;q=0, *"] {
        let (code, head, body) = get_raw(
            port,
            path,
            &[("Authorization", &auth), ("Accept-Encoding", refuse)],
        );
        assert_eq!(code, 200, "{refuse}");
        assert_eq!(header_of(&head, "content-encoding"), None, "{refuse}");
        assert_eq!(serde_json::from_slice::<Value>(&body).expect("json"), plain);
    }
}
