//! Issue 23: the rollout lifecycle under faults. A real `serve` (one or two
//! replicas) on a real store, a bare remote, failing canary telemetry; a
//! fault injected at each effect boundary of the rollback transition
//! (SIGKILL there, then a restart), or a leader frozen (SIGSTOP) past its
//! lease while another takes over, then thawed (SIGCONT). After each, one
//! checker asserts the invariants:
//!
//! - exactly one rollback decision, by the controller, with its trigger
//!   figures and the revert commit (never a placeholder);
//! - exactly one revert commit on main;
//! - the hold on the rolled-back version;
//! - the rollout rolled back, its revert effect done;
//! - none of 60 users served the rolled-back content.
//!
//! `MISSIONCTL_FAULT_ROUNDS=N` repeats each scenario (benches/rollback_faults.sh
//! runs 20 per boundary); the suite runs one.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::reconcile::{Fleet, Served, bump, free_port};
use crate::registry::{Tok, get, rollout_state, tokens, traffic, until};
use crate::util::{git, http};

const HR: &str = "packs/domains/hr-ops/pack.yaml";
const BAD: &str = "BAD-VERSION-MARKER";
const USERS: usize = 60;

/// The store for round `round` of a scenario on `db`: the first round uses
/// `db`; later rounds a fresh SQLite file beside it, or a fresh PostgreSQL
/// database (kept alive by the returned guard), so rounds never see each
/// other's decisions.
fn round_db(db: &str, round: usize) -> (String, Option<crate::db::PgDb>) {
    if round == 0 {
        return (db.to_string(), None);
    }
    match db.strip_prefix("sqlite://") {
        Some(path) => (format!("sqlite://{path}.round{round}"), None),
        None => {
            let pg = crate::db::postgres(&format!("faultround{round}")).expect("postgres");
            (pg.url.clone(), Some(pg))
        }
    }
}

fn rounds() -> usize {
    std::env::var("MISSIONCTL_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// `serve` on the fleet with a 2 s lease and `faults` armed, its stderr
/// written to `log`; not waited for.
fn spawn_logged(
    f: &Fleet,
    port: u16,
    tok: &Path,
    faults: Option<&str>,
    log: Option<&Path>,
) -> Child {
    let mut c = crate::registry::serve_command(f, port, tok);
    c.args(["--lease-ttl", "2s", "--follow-interval", "100ms"])
        .env_remove("MISSIONCTL_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(match log {
            Some(p) => Stdio::from(std::fs::File::create(p).expect("log file")),
            None if std::env::var_os("MC_TEST_DEBUG").is_some() => Stdio::inherit(),
            None => Stdio::null(),
        });
    match faults {
        Some(spec) => c.env(missionctl::fault::ENV, spec),
        None => c.env_remove(missionctl::fault::ENV),
    };
    c.spawn().expect("spawn serve")
}

/// A replica up on a free port, ready (its own `/readyz` answers 200).
fn replica(f: &Fleet, tok: &Path, admin: &str, faults: Option<&str>) -> (u16, Served) {
    replica_logged(f, tok, admin, faults, None)
}

/// [`replica`], its stderr written to `log`.
fn replica_logged(
    f: &Fleet,
    tok: &Path,
    admin: &str,
    faults: Option<&str>,
    log: Option<&Path>,
) -> (u16, Served) {
    for _ in 0..5 {
        let port = free_port();
        let mut s = Served(spawn_logged(f, port, tok, faults, log));
        let pid = format!("-{}-", s.0.id());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if s.0.try_wait().ok().flatten().is_some() {
                break;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                std::thread::sleep(Duration::from_millis(20));
                continue;
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

fn leader(port: u16, admin: &str) -> bool {
    get(port, "/readyz", admin).1["leader"] == true
}

/// Merge hr-ops 1.1.0 carrying the marker (with `rollback.git: mode`) and push.
fn merge_bad(f: &Fleet, mode: &str) {
    f.merge("bad", 41, |f| {
        f.edit(
            "packs/domains/hr-ops/prompts/role.md",
            "workplace\npolicies",
            &format!("workplace {BAD}\npolicies"),
        );
        f.edit(HR, "rollback:\n", &format!("rollback:\n  git: {mode}\n"));
        bump(f, HR, "1.1.0");
    });
    f.push();
}

/// Failing canary traffic until the rollout of 1.1.0 is rolled back, or
/// `alive` says the replica is gone.
fn drive_to_rollback(port: u16, t: &Tok, seed: &str, mut alive: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(90) {
        if !alive() {
            return false;
        }
        n += 1;
        // A replica that died mid-request answers nothing: not a test failure.
        let sent = std::panic::catch_unwind(|| {
            traffic(port, &t.acme_harness, &format!("{seed}-{n}"), 300, 0.6)
        });
        if sent.is_err() {
            return false;
        }
        let rolled = std::panic::catch_unwind(|| {
            rollout_state(port, &t.admin, "1.1.0").is_some_and(|r| r["state"] == "rolled_back")
        });
        match rolled {
            Ok(true) => return true,
            Ok(false) => {}
            Err(_) => return false,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no rollback within 90 s");
}

fn served_bad(port: u16, t: &Tok) -> usize {
    (0..USERS)
        .filter(|u| {
            let (code, r) = get(
                port,
                &format!("/v1/resolve?domain=hr-ops&tenant=acme&user=x{u}"),
                &t.acme_harness,
            );
            assert_eq!(code, 200, "{r}");
            r["content"].to_string().contains(BAD)
        })
        .count()
}

fn reverts_on(f: &Fleet, branch: &str) -> Vec<String> {
    git(
        &f.remote,
        &[
            "log",
            "--format=%H",
            "--grep=Missionctl-Rollback: hr-ops-pack",
            branch,
        ],
    )
    .lines()
    .map(String::from)
    .collect()
}

fn holds(f: &Fleet) -> Vec<(String, String)> {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let s = missionctl::store::Store::connect(&f.db)
            .await
            .expect("store");
        let key = std::fs::canonicalize(&f.remote)
            .expect("remote")
            .display()
            .to_string();
        s.holds(&key).await.expect("holds")
    })
}

/// The invariants after a rollback of hr-ops 1.1.0, asked of the replica on `port`.
fn check_invariants(f: &Fleet, port: u16, t: &Tok, mode: &str) {
    let branch = if mode == "push" {
        "main".to_string()
    } else {
        let b = git(&f.remote, &["branch", "--list", "missionctl/rollback-*"]);
        until("the review branch", Duration::from_secs(20), || {
            let b = git(&f.remote, &["branch", "--list", "missionctl/rollback-*"]);
            let name = b.trim().trim_start_matches(['*', ' ']).to_string();
            (!name.is_empty()).then_some(name)
        });
        let _ = b;
        git(&f.remote, &["branch", "--list", "missionctl/rollback-*"])
            .trim()
            .trim_start_matches(['*', ' '])
            .to_string()
    };
    let revert = until("the revert commit", Duration::from_secs(30), || {
        let r = reverts_on(f, &branch);
        (!r.is_empty()).then_some(r)
    });
    let start = Instant::now();
    let decision = loop {
        let d: Vec<Value> = f
            .decisions()
            .into_iter()
            .filter(|d| d["decision"] == "rollback" && d["pack_id"] == "hr-ops-pack")
            .collect();
        if d.len() == 1
            && !d[0]["commit"]
                .as_str()
                .unwrap_or("")
                .starts_with("pending:")
            && d[0]["figures"]["git"]["revert_commit"].is_string()
        {
            break d[0].clone();
        }
        if start.elapsed() > Duration::from_secs(30) {
            let status = crate::util::missionctl()
                .args(["status", "--all", "--format", "json", "--db", &f.db])
                .output()
                .expect("status");
            panic!(
                "timed out waiting for the decision with its revert commit; rollback decisions: {d:#?}; status: {}",
                String::from_utf8_lossy(&status.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Give a stale replica, a retry or the reconciler time to double anything.
    std::thread::sleep(Duration::from_secs(3));
    let reverts = reverts_on(f, &branch);
    assert_eq!(reverts, revert, "exactly one revert commit on {branch}");
    let all: Vec<Value> = f
        .decisions()
        .into_iter()
        .filter(|d| d["decision"] == "rollback" && d["pack_id"] == "hr-ops-pack")
        .collect();
    assert_eq!(all.len(), 1, "exactly one rollback decision: {all:#?}");
    assert_eq!(all[0], decision);
    assert_eq!(
        decision["decided_by"], "missionctl canary controller (automatic)",
        "{decision}"
    );
    assert_eq!(decision["commit"], revert[0].as_str(), "{decision}");
    assert!(
        decision["figures"]["trigger"]["canary"]["runs"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{decision}"
    );
    assert_eq!(
        decision["figures"]["git"]["revert_commit"],
        revert[0].as_str(),
        "{decision}"
    );
    assert!(
        holds(f).contains(&("hr-ops-pack".to_string(), "1.1.0".to_string())),
        "the hold on 1.1.0"
    );
    let r = rollout_state(port, &t.admin, "1.1.0");
    let (_, all_rollouts) = get(port, "/v1/rollouts", &t.admin);
    let r = r.unwrap_or_else(|| {
        // Finished rollouts leave /v1/rollouts' in-progress list: read status.
        let out = crate::util::missionctl()
            .args(["status", "--all", "--format", "json", "--db", &f.db])
            .output()
            .expect("status");
        let v: Value = serde_json::from_slice(&out.stdout).expect("status json");
        v.as_array()
            .and_then(|a| {
                a.iter()
                    .find(|r| {
                        r["canary_version"]
                            .as_str()
                            .is_some_and(|c| c.starts_with("1.1.0"))
                    })
                    .cloned()
            })
            .unwrap_or_else(|| panic!("no 1.1.0 rollout: {v} {all_rollouts}"))
    });
    assert_eq!(r["state"], "rolled_back", "{r}");
    assert_eq!(r["revert"]["state"], "done", "{r}");
    assert_eq!(served_bad(port, t), 0, "rolled-back content served");
}

/// A SIGKILL at `point`, a restart, and the invariants.
fn crash_at(db: &str, point: &str, mode: &str) {
    for round in 0..rounds() {
        let (db, _pg) = round_db(db, round);
        let dir = tempfile::tempdir().expect("tmp");
        let f = Fleet::fleet(&db);
        let (tok, t) = tokens(dir.path());
        let spec = format!("{point}=crash");
        let (port, mut s) = replica(&f, &tok, &t.admin, Some(&spec));
        merge_bad(&f, mode);
        until("the rollout", Duration::from_secs(20), || {
            rollout_state(port, &t.admin, "1.1.0")
        });
        let finished = drive_to_rollback(port, &t, &format!("r{round}"), || {
            s.0.try_wait().ok().flatten().is_none()
        });
        // Every point here is on the rollback's path: the replica dies there
        // (the rollback may be visible a moment before, after its transition).
        let _ = finished;
        let died = Instant::now();
        while s.0.try_wait().ok().flatten().is_none() {
            assert!(
                died.elapsed() < Duration::from_secs(15),
                "the rollback finished without reaching {point}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = s.0.wait().expect("wait");
        assert!(!status.success(), "serve ended without the injected crash");
        drop(s);
        let (port, _s2) = replica(&f, &tok, &t.admin, None);
        drive_to_rollback(port, &t, &format!("r{round}b"), || true);
        check_invariants(&f, port, &t, mode);
        // Report 3: reverting the revert is refused as held, never a
        // rollback to the bad version.
        if mode == "push" {
            f.git(&["pull", "-q", "--ff-only", "origin", "main"]);
            f.git(&["revert", "--no-edit", "HEAD"]);
            f.push();
            let held = until("the held refusal", Duration::from_secs(20), || {
                f.decisions().into_iter().rev().find(|d| {
                    d["decision"] == "reject" && d["reason"].as_str().unwrap_or("").contains("held")
                })
            });
            assert_eq!(held["pack_id"], "hr-ops-pack");
            let rollbacks = f
                .decisions()
                .into_iter()
                .filter(|d| d["decision"] == "rollback" && d["pack_id"] == "hr-ops-pack")
                .count();
            assert_eq!(rollbacks, 1);
        }
    }
}

both_stores!(crash_before_the_transition, |db: &str| {
    super::crash_at(db, "rollback.before_transition", "push");
});
both_stores!(crash_after_the_transition, |db: &str| {
    super::crash_at(db, "rollback.after_transition", "push");
});
both_stores!(crash_before_the_revert_is_written, |db: &str| {
    super::crash_at(db, "revert.before_write", "push");
});
both_stores!(crash_after_the_revert_is_pushed, |db: &str| {
    super::crash_at(db, "revert.after_write", "push");
});
both_stores!(crash_after_the_review_branch_is_written, |db: &str| {
    super::crash_at(db, "revert.after_write", "branch");
});

fn sigstop(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success(), "kill {sig} {pid}");
}

/// Report 1: the leader freezes (SIGSTOP) right after deciding, before it
/// writes; the other replica takes over and acts; the first thaws (SIGCONT)
/// and writes its stale decision: the fence refuses it.
fn frozen_leader(db: &str, healthy: bool) {
    for round in 0..rounds() {
        let (db, _pg) = round_db(db, round);
        let dir = tempfile::tempdir().expect("tmp");
        let f = Fleet::fleet(&db);
        let (tok, t) = tokens(dir.path());
        let point = if healthy {
            "advance.before_transition=stop"
        } else {
            "rollback.before_transition=stop"
        };
        let (pa, a) = replica(&f, &tok, &t.admin, Some(point));
        until("replica A to lead", Duration::from_secs(20), || {
            leader(pa, &t.admin).then_some(())
        });
        let (pb, _b) = replica(&f, &tok, &t.admin, None);
        merge_bad(&f, "push");
        until("the rollout", Duration::from_secs(20), || {
            rollout_state(pb, &t.admin, "1.1.0")
        });
        if healthy {
            let start = Instant::now();
            let mut n = 0;
            let done = loop {
                n += 1;
                traffic(pb, &t.acme_harness, &format!("h{round}-{n}"), 400, 0.97);
                std::thread::sleep(Duration::from_millis(200));
                if let Some(r) =
                    rollout_state(pb, &t.admin, "1.1.0").filter(|r| r["state"] == "completed")
                {
                    break r;
                }
                let out = crate::util::missionctl()
                    .args(["status", "--all", "--format", "json", "--db", &f.db])
                    .output()
                    .expect("status");
                let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                if let Some(r) = v
                    .as_array()
                    .and_then(|a| a.iter().find(|r| r["state"] == "completed").cloned())
                {
                    break r;
                }
                assert!(start.elapsed() < Duration::from_secs(120), "no completion");
            };
            // A is frozen (it decided to advance, then stopped): thaw it.
            sigstop(a.0.id(), "-CONT");
            std::thread::sleep(Duration::from_secs(3));
            let out = crate::util::missionctl()
                .args(["status", "--all", "--format", "json", "--db", &f.db])
                .output()
                .expect("status");
            let v: Value = serde_json::from_slice(&out.stdout).expect("status");
            let after = v
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .find(|r| r["rollout_id"] == done["rollout_id"])
                        .cloned()
                })
                .expect("rollout");
            assert_eq!(after["state"], "completed", "{after}");
            let steps: Vec<u64> = after["detail"]["history"]
                .as_array()
                .expect("history")
                .iter()
                .map(|h| h["percent"].as_u64().expect("pct"))
                .collect();
            let mut sorted = steps.clone();
            sorted.dedup();
            assert_eq!(steps, sorted, "a step was taken twice: {after}");
            assert_eq!(after["percent"], 100, "{after}");
        } else {
            let start = Instant::now();
            let mut n = 0;
            loop {
                n += 1;
                traffic(pb, &t.acme_harness, &format!("s{round}-{n}"), 300, 0.6);
                std::thread::sleep(Duration::from_millis(100));
                if rollout_state(pb, &t.admin, "1.1.0").is_some_and(|r| r["state"] == "rolled_back")
                {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(90), "no rollback");
            }
            check_invariants(&f, pb, &t, "push");
            sigstop(a.0.id(), "-CONT");
            std::thread::sleep(Duration::from_secs(2));
            check_invariants(&f, pb, &t, "push");
        }
        // Whatever A did once thawed, it is the follower now.
        let _ = http(pa, "GET", "/readyz", &[], b"");
        drop(a);
    }
}

both_stores!(a_frozen_leader_cannot_roll_back_twice, |db: &str| {
    super::frozen_leader(db, false);
});
both_stores!(a_frozen_leader_cannot_rewrite_a_step, |db: &str| {
    super::frozen_leader(db, true);
});

fn rollout_of(port: u16, t: &Tok, version: &str) -> Value {
    rollout_state(port, &t.admin, version).unwrap_or(Value::Null)
}

/// Report 5: a revert git refuses is loud and persistent (an error line,
/// `status` and `/v1/rollouts` name it, `/readyz` is degraded), retried with
/// backoff, and finished once the cause is gone.
#[test]
fn a_revert_git_refuses_is_loud_retried_and_finished_later() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let f = Fleet::fleet(&db);
    let (tok, t) = tokens(dir.path());
    let log = dir.path().join("serve.log");
    let (port, s) = replica_logged(
        &f,
        &tok,
        &t.admin,
        Some("revert.before_write=error"),
        Some(&log),
    );
    merge_bad(&f, "push");
    until("the rollout", Duration::from_secs(20), || {
        rollout_state(port, &t.admin, "1.1.0")
    });
    assert!(drive_to_rollback(port, &t, "loud", || true));
    let degraded = until("/readyz to say degraded", Duration::from_secs(20), || {
        let (code, v) = get(port, "/readyz", &t.admin);
        (code == 200 && v["status"] == "degraded").then_some(v)
    });
    assert_eq!(degraded["failing_reverts"], 1, "{degraded}");
    // Unauthenticated, it names no pack and no error.
    let (_, _, anon) = http(port, "GET", "/readyz", &[], b"");
    assert!(
        !anon.contains("hr-ops") && !anon.contains("fault"),
        "{anon}"
    );
    // Retried on its own, with backoff.
    let r = until("a second attempt", Duration::from_secs(20), || {
        let r = rollout_of(port, &t, "1.1.0");
        (r["revert"]["attempts"].as_u64().unwrap_or(0) >= 2).then_some(r)
    });
    assert_eq!(r["revert"]["state"], "pending", "{r}");
    assert!(
        r["revert"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("fault injected at revert.before_write")),
        "{r}"
    );
    let status = crate::util::missionctl()
        .args(["status", "--all", "--db", &db])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("git: REVERT NOT WRITTEN after"), "{text}");
    let stderr = std::fs::read_to_string(&log).expect("log");
    assert!(
        stderr.contains("could not be written to git"),
        "no error line: {stderr}"
    );
    // Meanwhile nobody gets the rolled-back version, and main still has it.
    assert_eq!(served_bad(port, &t), 0);
    assert!(reverts_on(&f, "main").is_empty());
    // The cause goes away (a restart without the fault): git agrees.
    drop(s);
    let (port, _s) = replica(&f, &tok, &t.admin, None);
    check_invariants(&f, port, &t, "push");
    let (_, ready) = get(port, "/readyz", &t.admin);
    assert_eq!(ready["status"], "ok", "{ready}");
}

/// `serve --repo REPO` expected to refuse at start: its stderr.
fn refused_serve(repo: &Path, db: &str, tok: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_missionctl"))
        .args(["serve", "--repo", repo.to_str().expect("p"), "--db", db])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--tokens",
            tok.to_str().expect("p"),
        ])
        .output()
        .expect("serve");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    err
}

/// Report 5: `serve` on a work tree with the branch checked out is refused
/// at start with the fix; `rollback --push` there names the real flag.
#[test]
fn serve_refuses_a_checked_out_work_tree() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let f = Fleet::fleet(&db);
    let (tok, _t) = tokens(dir.path());
    let err = refused_serve(&f.work, &db, &tok);
    assert!(err.contains("`main` checked out"), "{err}");
    assert!(err.contains("git clone --bare"), "{err}");
    let out = crate::util::missionctl()
        .args(["rollback", "--repo", f.work.to_str().expect("p")])
        .args(["--pack", "hr-ops-pack", "--to", "1.0.0", "--push"])
        .output()
        .expect("rollback");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--to-branch NAME"), "{err}");
    assert!(!err.contains("--branch NAME"), "{err}");
}

/// Report 4: after a rollback whose revert waits on a review branch, the
/// next merge's canary runs against the version that was serving (1.0.0),
/// never the rolled-back one that main still holds.
#[test]
fn the_next_merge_after_a_branch_rollback_keeps_the_champion() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let f = Fleet::fleet(&db);
    let (tok, t) = tokens(dir.path());
    let (port, _s) = replica(&f, &tok, &t.admin, None);
    merge_bad(&f, "branch");
    until("the rollout", Duration::from_secs(20), || {
        rollout_state(port, &t.admin, "1.1.0")
    });
    assert!(drive_to_rollback(port, &t, "br", || true));
    check_invariants(&f, port, &t, "branch");
    // 1.2.0 on main, without the review branch.
    f.git(&["pull", "-q", "--ff-only", "origin", "main"]);
    f.merge("next", 42, |f| {
        f.edit(
            "packs/domains/hr-ops/prompts/role.md",
            &format!("workplace {BAD}\npolicies"),
            "workplace FIXED-MARKER\npolicies",
        );
        bump(f, HR, "1.2.0");
    });
    f.push();
    let r = until("the 1.2.0 rollout", Duration::from_secs(20), || {
        rollout_state(port, &t.admin, "1.2.0")
    });
    assert!(
        r["champion_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.0.0")),
        "the champion must be what was serving: {r}"
    );
    let served = until("the 1.2.0 canary served", Duration::from_secs(20), || {
        let all: Vec<String> = (0..USERS)
            .map(|u| {
                get(
                    port,
                    &format!("/v1/resolve?domain=hr-ops&tenant=acme&user=x{u}"),
                    &t.acme_harness,
                )
                .1["content"]
                    .to_string()
            })
            .collect();
        all.iter()
            .any(|c| c.contains("FIXED-MARKER"))
            .then_some(all)
    });
    assert!(
        served.iter().all(|c| !c.contains(BAD)),
        "rolled-back content served after the next merge"
    );
    let fixed = served.iter().filter(|c| c.contains("FIXED-MARKER")).count();
    assert!(fixed < USERS, "{fixed} of {USERS} in the canary");
    // The decision names the version that was serving as its champion.
    let promote = f
        .decisions()
        .into_iter()
        .rev()
        .find(|d| d["decision"] == "promote" && d["pack_id"] == "hr-ops-pack")
        .expect("promote");
    assert!(
        promote["challenger_pack_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.2.0")),
        "{promote}"
    );
    assert!(
        promote["champion_pack_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.0.0")),
        "{promote}"
    );
    assert!(
        promote["reason"]
            .as_str()
            .is_some_and(|r| r.contains("was rolled back and is quarantined")),
        "{promote}"
    );
}

fn audit_rows(db: &str) -> Vec<missionctl::store::AuditEntry> {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        missionctl::store::Store::connect(db)
            .await
            .expect("store")
            .audit_log(100)
            .await
            .expect("audit")
    })
}

/// Report 6: `POST /v1/rollback` does the whole transition or nothing.
#[test]
fn the_rollback_api_does_all_or_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let f = Fleet::fleet(&db);
    let (tok, t) = tokens(dir.path());
    let (port, _s) = replica(&f, &tok, &t.admin, None);
    merge_bad(&f, "push");
    until("the rollout", Duration::from_secs(20), || {
        rollout_state(port, &t.admin, "1.1.0")
    });
    let post = |body: &str| {
        let (code, _, resp) = http(
            port,
            "POST",
            "/v1/rollback",
            &[("Authorization", &format!("Bearer {}", t.admin))],
            body.as_bytes(),
        );
        (
            code,
            serde_json::from_str::<Value>(&resp).unwrap_or(Value::Null),
        )
    };
    // A rollback that cannot be done: 409, and nothing changed.
    let (code, v) = post(r#"{"pack_id": "hr-ops-pack", "to": "9.9.9"}"#);
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("9.9.9")),
        "{v}"
    );
    assert_eq!(rollout_of(port, &t, "1.1.0")["state"], "running");
    assert!(
        !f.decisions().iter().any(|d| d["decision"] == "rollback"),
        "a refused rollback wrote a decision"
    );
    assert!(
        !audit_rows(&db)
            .iter()
            .any(|e| e.action == "/v1/rollback" && e.outcome == "ok"),
        "a refused rollback was audited as done"
    );
    assert!(reverts_on(&f, "main").is_empty());
    // Rolling back to the version the branch holds (the canary's own) is
    // refused too, with nothing changed.
    let (code, v) = post(r#"{"pack_id": "hr-ops-pack", "to": "1.1.0"}"#);
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("already")),
        "{v}"
    );
    assert_eq!(rollout_of(port, &t, "1.1.0")["state"], "running");
    // One that can, asked four times at once: everything, once.
    let answers: Vec<(u16, Value)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|_| sc.spawn(|| post(r#"{"pack_id": "hr-ops-pack", "reason": "bad canary"}"#)))
            .collect();
        hs.into_iter().map(|h| h.join().expect("join")).collect()
    });
    let ok: Vec<&Value> = answers
        .iter()
        .filter(|(c, _)| *c == 200)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(ok.len(), 1, "{answers:?}");
    assert!(
        answers.iter().all(|(c, _)| *c == 200 || *c == 409),
        "{answers:?}"
    );
    let v = ok[0].clone();
    let commit = v["git"]["revert_commit"]
        .as_str()
        .expect("revert commit")
        .to_string();
    assert_eq!(reverts_on(&f, "main"), vec![commit.clone()]);
    assert_eq!(rollout_of(port, &t, "1.1.0")["state"], "rolled_back");
    assert_eq!(served_bad(port, &t), 0);
    let d = until("the decision", Duration::from_secs(10), || {
        f.decisions()
            .into_iter()
            .find(|d| d["decision"] == "rollback" && d["commit"] == commit.as_str())
    });
    assert!(
        d["decided_by"]
            .as_str()
            .is_some_and(|b| b.starts_with("admin")),
        "{d}"
    );
    assert!(
        audit_rows(&db)
            .iter()
            .any(|e| e.action == "/v1/rollback" && e.outcome == "ok" && e.token == "admin")
    );
    std::thread::sleep(Duration::from_secs(2));
    let rollbacks = f
        .decisions()
        .into_iter()
        .filter(|d| d["decision"] == "rollback")
        .count();
    assert_eq!(rollbacks, 1, "the reconciler added a second decision");
    assert!(
        !f.decisions()
            .iter()
            .any(|d| d["commit"].as_str().unwrap_or("").starts_with("pending:")),
        "a decision left on a placeholder"
    );
    assert_eq!(reverts_on(&f, "main"), vec![commit]);
    // The rolled-back version is held: reverting the revert is refused.
    assert!(
        holds(&f).contains(&("hr-ops-pack".to_string(), "1.1.0".to_string())),
        "a manual rollback holds the version it rolled back"
    );
    f.git(&["pull", "-q", "--ff-only", "origin", "main"]);
    f.git(&["revert", "--no-edit", "HEAD"]);
    f.push();
    until("the held refusal", Duration::from_secs(20), || {
        f.decisions().into_iter().rev().find(|d| {
            d["decision"] == "reject" && d["reason"].as_str().unwrap_or("").contains("held")
        })
    });
    assert_eq!(served_bad(port, &t), 0);
}

/// A branch checked out in a linked work tree (`git worktree add`) of a
/// bare repository is refused as well.
#[test]
fn serve_refuses_a_branch_checked_out_in_a_linked_work_tree() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let f = Fleet::fleet(&db);
    let (tok, _t) = tokens(dir.path());
    let linked = dir.path().join("linked");
    git(
        &f.remote,
        &["worktree", "add", "-q", linked.to_str().expect("p"), "main"],
    );
    let err = refused_serve(&f.remote, &db, &tok);
    assert!(err.contains("linked work tree"), "{err}");
    assert!(!err.contains("missionctl serve: reconciling"), "{err}");
}
