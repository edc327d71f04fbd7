//! Issue 10: tenants cannot touch each other's rollouts, replicas agree,
//! and a hostile or slow client costs the server little. Real `serve`
//! processes on 127.0.0.1, on SQLite and on PostgreSQL.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::reconcile::bump;
use crate::registry::{
    bearer, get, post_runs, rollout_state, serve_ready, serving_fleet_on, tokens, until,
};
use crate::util::{Fleet, http};

const GLOBEX: &str = "packs/tenants/globex/pack.yaml";
const HR: &str = "packs/domains/hr-ops/pack.yaml";

fn run_row(id: &str, tenant: &str, pack: &Value, version: &Value, user: &str) -> Value {
    json!({"run_id": id, "tenant_id": tenant, "user_id": user, "agent_id": "a", "pack_id": pack, "pack_version": version, "task_type": "qa", "latency_ms": 100.0, "cost_usd": 0.001, "success_bool": false, "error_code": "tool_error", "created_at": missionctl::time_util::now_rfc3339()})
}

fn ndjson(rows: &[Value]) -> Vec<u8> {
    rows.iter()
        .map(|r| format!("{r}\n"))
        .collect::<String>()
        .into_bytes()
}

fn audit_log(db: &str) -> Vec<missionctl::store::AuditEntry> {
    tokio::runtime::Runtime::new().expect("rt").block_on(async {
        let s = missionctl::store::Store::connect(db).await.expect("db");
        s.audit_log(1000).await.expect("audit")
    })
}

/// Points 1, 2 and 7: acme's harness token reports 600 failing runs naming
/// globex's pack and the version globex is served during globex's canary;
/// every row is refused (and audited) and globex's canary is untouched.
/// Run ids are per tenant. A row the database cannot store (a NUL) is one
/// refused row; its neighbours are kept.
fn tenants_cannot_report_into_each_others_rollouts(db: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let (_dir, f, t, port, _s) = serving_fleet_on(dir, db);
    f.merge("globex-tone", 21, |f| {
        f.edit(
            "packs/tenants/globex/context.md",
            "Globex",
            "Globex Corporation",
        );
        bump(f, GLOBEX, "1.1.0");
    });
    f.push();
    let r = until("globex's rollout", Duration::from_secs(20), || {
        rollout_state(port, &t.admin, "1.1.0")
    });
    assert_eq!(r["pack_id"], "globex-tenant");
    let step = r["percent"].clone();
    // What globex's harness is served, learned by any means.
    let mut served = Vec::new();
    for who in ["", "&user=carol"] {
        let (code, v) = get(
            port,
            &format!("/v1/resolve?domain=hr-ops&tenant=globex{who}"),
            &t.admin,
        );
        assert_eq!(code, 200, "{v}");
        served.push(v);
    }
    let forged: Vec<Value> = (0..600)
        .map(|i| {
            let v = &served[i % 2];
            run_row(
                &format!("forged-{i}"),
                "acme",
                &v["pack_id"],
                &v["pack_version"],
                &format!("u{i}"),
            )
        })
        .collect();
    let (code, resp) = post_runs(port, &t.acme_harness, &ndjson(&forged));
    assert_eq!(code, 400, "{resp}");
    let rep: Value = serde_json::from_str(&resp).expect("json");
    assert_eq!(rep["accepted"], 0, "{rep}");
    let errors = rep["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 600);
    assert!(
        errors.iter().all(|e| e["error"]
            .as_str()
            .is_some_and(|m| m.contains("is not on a chain of tenant `acme`"))),
        "{:?}",
        errors[0]
    );
    // acme's own pack with a version nobody was served: refused too.
    let (code, acme) = get(
        port,
        "/v1/resolve?domain=hr-ops&tenant=acme",
        &t.acme_harness,
    );
    assert_eq!(code, 200, "{acme}");
    let made_up = run_row(
        "made-up",
        "acme",
        &acme["pack_id"],
        &json!("7.7.7+sha256.deadbeef"),
        "u",
    );
    let (code, resp) = post_runs(port, &t.acme_harness, &ndjson(&[made_up]));
    assert_eq!(code, 400, "{resp}");
    assert!(resp.contains("is neither what tenant `acme`"), "{resp}");
    // Refusals are audited under the token's name.
    let log = audit_log(db);
    assert!(
        log.iter().any(|e| e.token == "acme-harness"
            && e.action == "/v1/runs"
            && e.outcome == "denied"
            && e.detail.contains("600 row(s)")),
        "{log:?}"
    );
    // globex's canary never saw them: still running at its first step.
    std::thread::sleep(Duration::from_millis(1500));
    let r = rollout_state(port, &t.admin, "1.1.0").expect("rollout");
    assert_eq!(
        (&r["state"], &r["percent"]),
        (&json!("running"), &step),
        "{r}"
    );

    // Point 2: the same run id in two tenants is two runs.
    let mine = run_row(
        "shared-id",
        "acme",
        &acme["pack_id"],
        &acme["pack_version"],
        "u",
    );
    let (code, resp) = post_runs(port, &t.acme_harness, &ndjson(std::slice::from_ref(&mine)));
    assert_eq!(code, 200, "{resp}");
    let theirs = run_row(
        "shared-id",
        "globex",
        &served[0]["pack_id"],
        &served[0]["pack_version"],
        "u",
    );
    let (code, resp) = post_runs(port, &t.admin, &ndjson(&[theirs]));
    assert_eq!(code, 200, "{resp}");
    let rep: Value = serde_json::from_str(&resp).expect("json");
    assert_eq!(
        (rep["accepted"].as_u64(), rep["duplicates"].as_u64()),
        (Some(1), Some(0)),
        "{rep}"
    );
    let (_, resp) = post_runs(port, &t.acme_harness, &ndjson(&[mine]));
    let rep: Value = serde_json::from_str(&resp).expect("json");
    assert_eq!(
        (rep["accepted"].as_u64(), rep["duplicates"].as_u64()),
        (Some(0), Some(1)),
        "{rep}"
    );

    // Point 7: a NUL in user_id is one refused row on either store.
    let rows = [
        run_row(
            "nul-0",
            "acme",
            &acme["pack_id"],
            &acme["pack_version"],
            "u",
        ),
        run_row(
            "nul-1",
            "acme",
            &acme["pack_id"],
            &acme["pack_version"],
            "bad\u{0}user",
        ),
        run_row(
            "nul-2",
            "acme",
            &acme["pack_id"],
            &acme["pack_version"],
            "u",
        ),
    ];
    let (code, resp) = post_runs(port, &t.acme_harness, &ndjson(&rows));
    assert_eq!(code, 400, "{resp}");
    let rep: Value = serde_json::from_str(&resp).expect("json");
    assert_eq!(rep["accepted"], 2, "{rep}");
    assert_eq!(rep["errors"][0]["line"], 2, "{rep}");
    assert!(
        rep["errors"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("user_id contains a NUL")),
        "{rep}"
    );
}
crate::both_stores!(tenants_and_runs, |url: &str| {
    super::tenants_cannot_report_into_each_others_rollouts(url);
});

/// `/readyz` of a replica: (commit it serves, whether it is the controller).
fn replica(port: u16, admin: &str) -> Option<(String, bool)> {
    let (code, v) = get(port, "/readyz", admin);
    (code == 200).then(|| {
        (
            v["commit"].as_str().unwrap_or("").to_string(),
            v["leader"].as_bool().unwrap_or(false),
        )
    })
}

/// Point 3: two replicas on one database. Under a commit a second, both
/// serve the branch tip within the stated bound once it is reconciled, the
/// commit header says which commit answered, exactly one replica is the
/// canary controller, and when it dies the other takes over.
fn replicas_converge_and_one_controls(db: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let f = Fleet::fleet(db);
    let (tok_file, t) = tokens(dir.path());
    let args = ["--lease-ttl", "2s", "--follow-interval", "200ms"];
    let (pa, a) = serve_ready(&f, &tok_file, &args, &t.admin);
    let (pb, b) = serve_ready(&f, &tok_file, &args, &t.admin);
    let mut a = Some(a);
    for i in 0..5 {
        f.merge(&format!("tone-{i}"), 40 + i, |f| {
            f.edit(
                "packs/domains/hr-ops/prompts/role.md",
                "workplace",
                &format!("workplace{i}"),
            );
            bump(f, HR, &format!("1.{}.0", i + 1));
        });
        f.push();
        std::thread::sleep(Duration::from_secs(1));
    }
    let tip = crate::util::git(&f.remote, &["rev-parse", "main"])
        .trim()
        .to_string();
    // The bound: the watching replica reconciles within a second; the
    // other follows within the follow interval plus a rebuild.
    let started = Instant::now();
    until("both replicas on the tip", Duration::from_secs(10), || {
        let both = [pa, pb]
            .iter()
            .all(|p| replica(*p, &t.admin).is_some_and(|(c, _)| c == tip));
        both.then_some(())
    });
    eprintln!(
        "both replicas served the tip {:?} after the last push settled",
        started.elapsed()
    );
    let (_, head, _) = http(
        pb,
        "GET",
        "/v1/resolve?domain=hr-ops&tenant=acme",
        &[("Authorization", &bearer(&t.acme_harness))],
        b"",
    );
    assert!(
        head.to_lowercase()
            .contains(&format!("x-missionctl-commit: {tip}")),
        "{head}"
    );
    // Exactly one controller.
    let leaders = until("one controller", Duration::from_secs(10), || {
        let l: Vec<bool> = [pa, pb]
            .iter()
            .map(|p| replica(*p, &t.admin).is_some_and(|(_, l)| l))
            .collect();
        (l.iter().filter(|x| **x).count() == 1).then_some(l)
    });
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        let n = [pa, pb]
            .iter()
            .filter(|p| replica(**p, &t.admin).is_some_and(|(_, l)| l))
            .count();
        assert_eq!(n, 1, "two controllers at once");
    }
    // The controller dies without a word (SIGKILL): the other takes over
    // once the lease expires.
    let (dead, alive) = if leaders[0] { (pa, pb) } else { (pb, pa) };
    let mut killed = if dead == pa { a.take().expect("a") } else { b };
    let _ = killed.0.kill();
    let _ = killed.0.wait();
    let t0 = Instant::now();
    until("the survivor takes over", Duration::from_secs(10), || {
        replica(alive, &t.admin).filter(|(_, l)| *l)
    });
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "took {:?}",
        t0.elapsed()
    );
    drop(a);
    drop(killed);
}
crate::both_stores!(replicas, |url: &str| {
    super::replicas_converge_and_one_controls(url);
});

/// Point 8: a state store that cannot take a write answers 503 with
/// `Retry-After` (a client following HTTP retries), not 400.
#[test]
fn a_store_failure_is_503_with_retry_after() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("s.db");
    let db = format!("sqlite://{}", path.display());
    let (_dir, _f, t, port, _s) = serving_fleet_on(dir, &db);
    let (code, acme) = get(
        port,
        "/v1/resolve?domain=hr-ops&tenant=acme",
        &t.acme_harness,
    );
    assert_eq!(code, 200);
    let rt = tokio::runtime::Runtime::new().expect("rt");
    // Another process holds the write lock past the server's busy timeout.
    let lock = rt.block_on(async {
        use sqlx::ConnectOptions;
        let mut c = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .expect("open");
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut c)
            .await
            .expect("lock");
        c
    });
    let row = run_row(
        "locked-1",
        "acme",
        &acme["pack_id"],
        &acme["pack_version"],
        "u",
    );
    let (code, head, body) = http(
        port,
        "POST",
        "/v1/runs",
        &[("Authorization", &bearer(&t.acme_harness))],
        &ndjson(&[row]),
    );
    assert_eq!(code, 503, "{body}");
    assert!(head.to_lowercase().contains("retry-after: "), "{head}");
    drop(lock);
}

/// Read whatever the server sends until it closes the connection (or 20 s).
fn read_until_closed(s: &mut TcpStream) -> (String, Duration) {
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (String::from_utf8_lossy(&out).to_string(), t0.elapsed())
}

/// Point 9: a request without a valid token is answered before its body is
/// read; slow and idle connections are cut off; 401s are audited at a
/// bounded rate and never with the token.
#[test]
fn unauthenticated_and_slow_clients_cost_little() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let f = Fleet::fleet(&db);
    let (tok_file, t) = tokens(dir.path());
    let (port, _s) = serve_ready(
        &f,
        &tok_file,
        &["--header-timeout", "1s", "--body-timeout", "1s"],
        &t.admin,
    );
    let connect = || TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // A 30 MB body announced without a token: 401 at once, nothing read.
    let mut s = connect();
    s.write_all(b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-a-token\r\nContent-Length: 31457280\r\n\r\n")
        .expect("head");
    s.write_all(&[b'x'; 1024]).expect("a little body");
    let (resp, took) = read_until_closed(&mut s);
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // A head never finished: closed after the header timeout.
    let mut s = connect();
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
        .expect("half a head");
    let (resp, took) = read_until_closed(&mut s);
    assert!(resp.is_empty() || resp.contains("408"), "{resp}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // A connection that never sends anything: closed too.
    let mut s = connect();
    let (_, took) = read_until_closed(&mut s);
    assert!(took < Duration::from_secs(5), "{took:?}");
    // A kept-alive connection left idle after a request: closed.
    let mut s = connect();
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let (resp, took) = read_until_closed(&mut s);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // An authenticated body that stops arriving: 408 after the body timeout.
    let mut s = connect();
    s.write_all(
        format!(
            "POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 1000\r\n\r\n{{",
            bearer(&t.acme_harness)
        )
        .as_bytes(),
    )
    .expect("head");
    let (resp, took) = read_until_closed(&mut s);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // 30 bad tokens in a burst: audited, but at most 10 rows, no token.
    for i in 0..30 {
        let (code, _, _) = http(
            port,
            "GET",
            "/v1/packs",
            &[("Authorization", &format!("Bearer secret-guess-{i}"))],
            b"",
        );
        assert_eq!(code, 401);
    }
    let log = audit_log(&db);
    let unauth: Vec<_> = log
        .iter()
        .filter(|e| e.outcome == "unauthenticated")
        .collect();
    assert!(!unauth.is_empty() && unauth.len() <= 10, "{unauth:?}");
    assert!(
        !log.iter()
            .any(|e| e.detail.contains("secret-guess") || e.token.contains("secret-guess")),
        "a token reached the audit log"
    );
}
