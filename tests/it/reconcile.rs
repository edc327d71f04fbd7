//! The reconciler end to end: a bare "remote", a clone where authors commit
//! and merge as they would, and the real binary, on SQLite and PostgreSQL.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use crate::util::Fleet;
use crate::util::{assert_success, git, missionctl};

pub fn bump(f: &Fleet, pack: &str, to: &str) {
    let p = f.work.join(pack);
    let s = std::fs::read_to_string(&p).expect("read");
    let re = s
        .lines()
        .find(|l| l.starts_with("version: "))
        .expect("version line")
        .to_string();
    std::fs::write(&p, s.replacen(&re, &format!("version: {to}"), 1)).expect("write");
}

const HR: &str = "packs/domains/hr-ops/pack.yaml";
const HR_ROLE: &str = "packs/domains/hr-ops/prompts/role.md";

fn merge_revert_and_refusal(db: &str) {
    let f = Fleet::fleet(db);
    let (code, out) = f.reconcile(&[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out["decisions"].as_array().expect("d").len(),
        12,
        "initial import: one decision per pack"
    );

    // A merged pull request promotes exactly the changed pack.
    let merge = f.merge("tone", 5, |f| {
        f.edit(HR_ROLE, "workplace\npolicies", "workplace\nPolicies");
        bump(f, HR, "1.1.0");
    });
    f.push();
    let (code, out) = f.reconcile(&[]);
    assert_eq!(code, 0);
    let d = out["decisions"].as_array().expect("d");
    assert_eq!(d.len(), 1, "{d:#?}");
    let d = &d[0];
    assert_eq!(d["decision"], "promote");
    assert_eq!(d["pack_id"], "hr-ops-pack");
    assert_eq!(d["scope_type"], "domain");
    assert_eq!(d["scope_id"], "hr-ops");
    assert_eq!(d["commit"], merge.as_str());
    assert_eq!(d["pull_request"], 5);
    assert!(
        d["champion_pack_version"]
            .as_str()
            .expect("c")
            .starts_with("1.0.0+sha256.")
    );
    assert!(
        d["challenger_pack_version"]
            .as_str()
            .expect("c")
            .starts_with("1.1.0+sha256.")
    );
    assert_eq!(d["rollout"]["steps"], serde_json::json!([10, 50, 100]));
    // The test helper commits as "Test Author" (GIT_COMMITTER_NAME), who merged.
    assert!(
        d["decided_by"]
            .as_str()
            .expect("by")
            .contains("merged by Test Author"),
        "{d}"
    );
    for field in [
        "decision_id",
        "scope_type",
        "scope_id",
        "champion_pack_version",
        "challenger_pack_version",
        "decision",
        "reason",
        "decided_by",
        "created_at",
    ] {
        assert!(!d[field].is_null(), "{field}");
    }
    // Every record validates against the promotion_decision contract.
    for rec in f.decisions() {
        let problems =
            missionctl::schema::check_json(missionctl::schema::Kind::PromotionDecision, &rec);
        assert!(problems.is_empty(), "{problems:?}");
    }

    // Reverting the merge is a rollback, in one pass.
    f.git(&["revert", "--no-edit", "-m", "1", "HEAD"]);
    f.push();
    let (_, out) = f.reconcile(&[]);
    let d = &out["decisions"][0];
    assert_eq!(out["decisions"].as_array().expect("d").len(), 1);
    assert_eq!(d["decision"], "rollback");
    assert_eq!(d["pack_id"], "hr-ops-pack");
    assert!(
        d["challenger_pack_version"]
            .as_str()
            .expect("v")
            .starts_with("1.0.0+sha256.")
    );
    assert_eq!(d["rollout"]["immediate"], true);

    // Three merges pushed together: three decisions, in order.
    let a = f.merge("one", 6, |f| {
        f.edit(
            "packs/domains/legal-intake/prompts/triage.md",
            "## Triage",
            "## Triage table",
        );
        bump(f, "packs/domains/legal-intake/pack.yaml", "1.0.1");
    });
    let b = f.merge("two", 7, |f| {
        f.edit(
            "packs/domains/infra-sre/prompts/incident.md",
            "## Incident habits",
            "## Incident habits we keep",
        );
        bump(f, "packs/domains/infra-sre/pack.yaml", "1.0.1");
    });
    let c = f.merge("three", 8, |f| {
        f.edit(
            "packs/tenants/acme/context.md",
            "builds warehouse robots",
            "builds and runs warehouse robots",
        );
        bump(f, "packs/tenants/acme/pack.yaml", "1.0.1");
    });
    f.push();
    let (_, out) = f.reconcile(&[]);
    let got: Vec<(String, String, i64)> = out["decisions"]
        .as_array()
        .expect("d")
        .iter()
        .map(|d| {
            (
                d["commit"].as_str().unwrap_or("").to_string(),
                d["pack_id"].as_str().unwrap_or("").to_string(),
                d["pull_request"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (a, "legal-intake-pack".into(), 6),
            (b, "infra-sre-pack".into(), 7),
            (c, "acme-tenant".into(), 8)
        ]
    );

    // A broken pack on main is refused; the previous version keeps serving.
    std::fs::write(
        f.work.join("packs/domains/legal-intake/pack.yaml"),
        "id: [\n",
    )
    .expect("write");
    f.git(&["commit", "-qam", "bypass the gate"]);
    f.push();
    let (code, out) = f.reconcile(&[]);
    assert_eq!(code, 1, "refusals are reported");
    let d = &out["decisions"][0];
    assert_eq!(d["decision"], "reject");
    assert_eq!(d["pack_id"], "legal-intake-pack");
    assert!(
        d["reason"]
            .as_str()
            .expect("r")
            .contains("packs/domains/legal-intake/pack.yaml:1:5: yaml/syntax"),
        "{d}"
    );
    // The fix is judged against the last good version, not the broken one.
    f.git(&[
        "checkout",
        "HEAD~1",
        "--",
        "packs/domains/legal-intake/pack.yaml",
    ]);
    f.edit(
        "packs/domains/legal-intake/prompts/triage.md",
        "## Triage table",
        "## Triage table (v2)",
    );
    bump(&f, "packs/domains/legal-intake/pack.yaml", "1.0.2");
    f.git(&["commit", "-qam", "fix legal"]);
    f.push();
    let (code, out) = f.reconcile(&[]);
    assert_eq!(code, 0);
    let d = &out["decisions"][0];
    assert_eq!(d["decision"], "promote");
    assert!(
        d["champion_pack_version"]
            .as_str()
            .expect("c")
            .starts_with("1.0.1+"),
        "{d}"
    );
}
crate::both_stores!(merges_reverts_and_refusals, |url: &str| {
    super::merge_revert_and_refusal(url);
});

fn force_push_and_rollback(db: &str) {
    let f = Fleet::fleet(db);
    f.reconcile(&[]);
    f.merge("tone", 5, |f| {
        f.edit(HR_ROLE, "workplace\npolicies", "workplace\nPolicies");
        bump(f, HR, "1.1.0");
    });
    f.push();
    assert_eq!(f.reconcile(&[]).0, 0);

    // One-click rollback onto main, then the reconciler sees a rollback.
    let out = missionctl()
        .args([
            "rollback",
            "--repo",
            f.remote.to_str().expect("p"),
            "--pack",
            "hr-ops-pack",
            "--reason",
            "KPI drop",
            "--push",
        ])
        .output()
        .expect("run");
    assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("rolled back hr-ops-pack from 1.1.0 to 1.0.0")
    );
    let msg = git(&f.remote, &["log", "-1", "--format=%B", "main"]);
    assert!(
        msg.contains("Missionctl-Rollback: hr-ops-pack") && msg.contains("Reason: KPI drop"),
        "{msg}"
    );
    let (_, out) = f.reconcile(&[]);
    let d = &out["decisions"][0];
    assert_eq!(d["decision"], "rollback", "{out}");
    assert!(
        d["reason"]
            .as_str()
            .expect("r")
            .contains("returns to version 1.0.0")
    );
    // To a branch for review instead: main does not move.
    let before = git(&f.remote, &["rev-parse", "main"]);
    let out = missionctl()
        .args([
            "rollback",
            "--repo",
            f.remote.to_str().expect("p"),
            "--pack",
            "hr-ops-pack",
            "--to",
            "1.1.0",
            "--to-branch",
            "restore-hr",
        ])
        .output()
        .expect("run");
    assert_success(&out);
    assert_eq!(git(&f.remote, &["rev-parse", "main"]), before);
    assert!(
        git(&f.remote, &["log", "-1", "--format=%s", "restore-hr"])
            .contains("Roll back hr-ops-pack to 1.1.0")
    );

    // Rewritten history halts the reconciler until acknowledged.
    f.git(&["pull", "-q", "--ff-only", "origin", "main"]);
    f.git(&["reset", "-q", "--hard", "HEAD~2"]);
    f.git(&["push", "-q", "-f", "origin", "main"]);
    let (code, out) = f.reconcile(&[]);
    assert_eq!(code, 1);
    assert!(
        out["halted"]
            .as_str()
            .expect("halted")
            .contains("history rewritten"),
        "{out}"
    );
    let (code, out) = f.reconcile(&[]);
    assert_eq!(code, 1, "still halted: {out}");
    let ack = missionctl()
        .args([
            "reconcile",
            "--repo",
            f.remote.to_str().expect("p"),
            "--db",
            &f.db,
            "--acknowledge-rewrite",
        ])
        .output()
        .expect("run");
    assert!(ack.status.success());
    f.merge("again", 9, |f| {
        f.edit(HR_ROLE, "workplace\npolicies", "workplace\nPolicies");
        bump(f, HR, "1.2.0");
    });
    f.push();
    let (code, out) = f.reconcile(&[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["decisions"][0]["pull_request"], 9);
}
crate::both_stores!(force_push_and_rollback_cmd, |url: &str| {
    super::force_push_and_rollback(url);
});

#[test]
fn decisions_are_written_as_git_notes() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let f = Fleet::fleet(&db);
    f.reconcile(&["--notes"]);
    let merge = f.merge("tone", 5, |f| {
        f.edit(HR_ROLE, "workplace\npolicies", "workplace\nPolicies");
        bump(f, HR, "1.1.0");
    });
    f.push();
    f.reconcile(&["--notes"]);
    let note = git(&f.remote, &["notes", "--ref=missionctl", "show", &merge]);
    let v: Value = serde_json::from_str(note.lines().next().expect("line")).expect("json");
    assert_eq!(v["pack_id"], "hr-ops-pack");
    assert_eq!(v["decision"], "promote");
}

/// Kill `reconcile` with SIGKILL at random points across many passes while
/// commits land; afterwards every (commit, pack) has exactly one decision.
fn sigkill_loses_and_duplicates_nothing(db: &str) {
    let f = Fleet::fleet(db);
    // The baseline (initial import) exists before the daemon's life of crashes begins;
    // merges before any baseline are covered by the import itself.
    assert_eq!(f.reconcile(&[]).0, 0);
    let mut expected: Vec<(String, String)> = Vec::new();
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let packs = [
        "hr-ops",
        "legal-intake",
        "infra-sre",
        "engineering-delivery",
        "personal-exec-assistant",
    ];
    let mut versions = [1u32; 5];
    for pass in 0..200 {
        if pass % 10 == 5 {
            // Two merges land between passes.
            for _ in 0..2 {
                let i = (next() % 5) as usize;
                versions[i] += 1;
                let path = format!("packs/domains/{}/pack.yaml", packs[i]);
                let name = format!("p{pass}-{i}-{}", versions[i]);
                let sha = f.merge(&name, pass, |f| {
                    bump(f, &path, &format!("1.{}.0", versions[i]));
                });
                expected.push((sha, format!("{}-pack", packs[i])));
            }
            f.push();
        }
        let mut child: Child = Command::new(env!("CARGO_BIN_EXE_missionctl"))
            .args([
                "reconcile",
                "--once",
                "--repo",
                f.remote.to_str().expect("p"),
                "--db",
                &f.db,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(next() % 60));
        let _ = child.kill(); // SIGKILL on Unix
        let _ = child.wait();
    }
    // A clean final pass catches up.
    assert_eq!(f.reconcile(&[]).0, 0);
    let all = f.decisions();
    let mut seen = std::collections::BTreeSet::new();
    for d in &all {
        let key = (
            d["commit"].as_str().unwrap_or("").to_string(),
            d["pack_id"].as_str().unwrap_or("").to_string(),
        );
        assert!(seen.insert(key.clone()), "duplicate decision {key:?}");
    }
    for e in &expected {
        assert!(
            seen.contains(e),
            "lost decision {e:?}; decisions for that pack: {:#?}",
            all.iter()
                .filter(|d| d["pack_id"] == e.1.as_str())
                .map(|d| format!(
                    "{} {} {} {}",
                    d["commit"], d["decision"], d["challenger_pack_version"], d["reason"]
                ))
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(
        all.len(),
        12 + expected.len(),
        "exactly the initial import and one per merge"
    );
}
crate::both_stores!(sigkill_200_passes, |url: &str| {
    super::sigkill_loses_and_duplicates_nothing(url);
});

pub struct Served(pub Child);
impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `missionctl serve` on `repo` (the fleet's remote path, or a URL mirrored
/// under `cache`) with the fleet's store.
fn serve_cmd(f: &Fleet, repo: &str, port: u16, poll: &str, cache: Option<&Path>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_missionctl"));
    c.args([
        "serve",
        "--repo",
        repo,
        "--db",
        &f.db,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--poll-interval",
        poll,
    ])
    .stdout(Stdio::null())
    .stderr(if std::env::var_os("MC_TEST_DEBUG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    if let Some(cache) = cache {
        c.args(["--cache-dir", cache.to_str().expect("p")]);
    }
    c
}

fn serve(f: &Fleet, port: u16, poll: &str, secret: Option<&str>) -> Served {
    let mut c = serve_cmd(f, f.remote.to_str().expect("p"), port, poll, None);
    if let Some(s) = secret {
        c.env("MISSIONCTL_WEBHOOK_SECRET", s);
    }
    Served(c.spawn().expect("spawn serve"))
}

fn wait_for(f: &Fleet, n: usize, within: Duration) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let d = f.decisions();
        if d.len() >= n || start.elapsed() > within {
            return d;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_http(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_reacts_to_a_watched_local_path_without_polling() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let f = Fleet::fleet(&db);
    let port = free_port();
    let _s = serve(&f, port, "1h", None);
    assert_eq!(wait_for(&f, 12, Duration::from_secs(20)).len(), 12);
    f.merge("tone", 5, |f| bump(f, HR, "1.1.0"));
    f.push();
    let d = wait_for(&f, 13, Duration::from_secs(10));
    assert_eq!(d.len(), 13, "the file watch did not trigger a pass");
    assert_eq!(d[12]["pack_id"], "hr-ops-pack");
}

/// A webhook delivery: the status and the whole response.
fn post(port: u16, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let (code, head, body) = crate::util::http(port, "POST", "/v1/github/webhook", headers, body);
    (code, format!("{head}\r\n\r\n{body}"))
}

fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn serve_webhook_verifies_signatures_and_ignores_duplicates() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    // A URL source (file://) is fetched into a mirror: only the webhook or the poll trigger it.
    let f = Fleet::fleet(&db);
    let port = free_port();
    let url = format!("file://{}", f.remote.display());
    let mut c = serve_cmd(&f, &url, port, "1h", Some(&dir.path().join("cache")));
    c.env("MISSIONCTL_WEBHOOK_SECRET", "hush")
        .args(["--github-repo", "codertocat/hello-world"]);
    let first = Served(c.spawn().expect("spawn"));
    wait_http(port);
    assert_eq!(wait_for(&f, 12, Duration::from_secs(20)).len(), 12);
    f.merge("tone", 5, |f| bump(f, HR, "1.1.0"));
    f.push();
    let mut payload: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/fixtures/github-payloads/push.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture"),
    )
    .expect("json");
    payload["ref"] = Value::from("refs/heads/main");
    payload["deleted"] = Value::from(false);
    // Issue 11 point 8: what GitHub sends that is not a push to reconcile is
    // ignored, with the reason: main deleted, another repository's main.
    for (field, value, why) in [
        ("deleted", json!(true), "was deleted"),
        (
            "repository",
            json!({"full_name": "evil/hello-world"}),
            "push to evil/hello-world",
        ),
        ("repository", Value::Null, "without a repository"),
    ] {
        let mut p = payload.clone();
        p[field] = value;
        let b = p.to_string().into_bytes();
        let (code, resp) = post(
            port,
            &[
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", &sign("hush", &b)),
            ],
            &b,
        );
        assert_eq!(code, 202, "{resp}");
        assert!(resp.contains("ignored") && resp.contains(why), "{resp}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(f.decisions().len(), 12, "an ignored push started a pass");
    let body = payload.to_string().into_bytes();
    // Wrong signature: refused, nothing happens.
    let (code, _) = post(
        port,
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "d-1"),
            ("X-Hub-Signature-256", &sign("wrong", &body)),
        ],
        &body,
    );
    assert_eq!(code, 401);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(f.decisions().len(), 12);
    // Signed: accepted, and the decision follows.
    let good = sign("hush", &body);
    let deliver_d2 = || {
        post(
            port,
            &[
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", "d-2"),
                ("X-Hub-Signature-256", &good),
            ],
            &body,
        )
    };
    let (code, _) = deliver_d2();
    assert_eq!(code, 202);
    assert_eq!(wait_for(&f, 13, Duration::from_secs(10)).len(), 13);
    // The same delivery again is ignored.
    let (code, resp) = deliver_d2();
    assert_eq!(code, 200);
    assert!(resp.contains("duplicate delivery ignored"));
    // Issue 10 point 10: the delivery id is in the store, so a restarted
    // server (or another replica) still knows it.
    drop(first);
    let mut c = serve_cmd(&f, &url, port, "1h", Some(&dir.path().join("cache")));
    c.env("MISSIONCTL_WEBHOOK_SECRET", "hush");
    let _s = Served(c.spawn().expect("spawn again"));
    wait_http(port);
    let (code, resp) = deliver_d2();
    assert_eq!(code, 200, "{resp}");
    assert!(resp.contains("duplicate delivery ignored"), "{resp}");
    // GitHub's default content type: the JSON in a `payload` form field,
    // signed as sent. Reconciled like a JSON delivery.
    f.merge("tone2", 6, |f| bump(f, HR, "1.2.0"));
    f.push();
    let form = format!(
        "payload={}",
        form_urlencoded::byte_serialize(&body).collect::<String>()
    )
    .into_bytes();
    let (code, resp) = post(
        port,
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "d-3"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Hub-Signature-256", &sign("hush", &form)),
        ],
        &form,
    );
    assert_eq!(code, 202, "{resp}");
    assert!(resp.contains("reconciling"), "{resp}");
    assert_eq!(wait_for(&f, 14, Duration::from_secs(10)).len(), 14);
    // Oversized bodies are refused before any work.
    let big = vec![b'x'; 2 * 1024 * 1024];
    let (code, _) = post(
        port,
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sign("hush", &big)),
        ],
        &big,
    );
    assert_eq!(code, 413);
}

#[test]
fn two_replicas_on_one_postgres_make_one_decision_per_commit() {
    let Some(db) = crate::db::postgres("two_replicas") else {
        return;
    };
    let f = Fleet::fleet(&db.url);
    let (p1, p2) = (free_port(), free_port());
    let _a = serve(&f, p1, "100ms", None);
    let _b = serve(&f, p2, "100ms", None);
    assert!(wait_for(&f, 12, Duration::from_secs(20)).len() >= 12);
    let mut expected = 12;
    for i in 0..5u32 {
        f.merge(&format!("r{i}"), 20 + i, |f| {
            bump(f, HR, &format!("1.{}.0", i + 1));
        });
        f.push();
        expected += 1;
        std::thread::sleep(Duration::from_millis(30));
    }
    let all = wait_for(&f, expected, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    let all2 = f.decisions();
    assert_eq!(all.len(), expected);
    assert_eq!(all2.len(), expected, "a replica added a duplicate later");
}

#[test]
fn serve_retries_a_failed_pass_without_waiting_for_the_poll() {
    // The remote is away when serve starts: its first passes fail. Nothing
    // kicks it when the remote comes back, and the poll is an hour away, so
    // only the daemon's own retry can pick it up.
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let f = Fleet::fleet(&db);
    let away = dir.path().join("away.git");
    std::fs::rename(&f.remote, &away).expect("move the remote away");
    let port = free_port();
    let url = format!("file://{}", f.remote.display());
    let mut c = serve_cmd(&f, &url, port, "1h", Some(&dir.path().join("cache")));
    let _s = Served(c.spawn().expect("spawn"));
    wait_http(port);
    std::thread::sleep(Duration::from_millis(700));
    assert!(f.decisions().is_empty());
    std::fs::rename(&away, &f.remote).expect("bring the remote back");
    assert_eq!(wait_for(&f, 12, Duration::from_secs(20)).len(), 12);
}

/// Issue 16, point 10: Ctrl-C (SIGINT) during a pass ends the daemon once the
/// pass is done; a signal that arrives while the loop is busy is not lost.
#[test]
fn ctrl_c_during_a_pass_stops_serve() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = Fleet::fleet(&format!("sqlite://{}", dir.path().join("s.db").display()));
    for attempt in 0..3 {
        let port = free_port();
        let mut s = serve(&f, port, "1h", None);
        wait_http(port);
        // A parallel test can take a probed free port first: then this serve
        // could not bind (exit 2) and what answered was someone else.
        if s.0.try_wait().expect("wait").is_some() {
            continue;
        }
        // The first pass (importing the whole template) is under way now.
        let pid = s.0.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let start = Instant::now();
        let status = loop {
            if let Some(st) = s.0.try_wait().expect("wait") {
                break Some(st);
            }
            // Generous: under a loaded CI machine the first pass (the whole
            // template) can take many seconds; ignoring the signal would
            // hang forever.
            if start.elapsed() > Duration::from_secs(60) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let status = status.unwrap_or_else(|| panic!("serve ignored Ctrl-C (attempt {attempt})"));
        assert!(status.success(), "{status:?}");
    }
}
