//! Issue 27, the fleet console's rollout actions and live pages: holding
//! and resuming a rollout (API, CLI, console), the pack page's version
//! diff, gate evidence and KPI chart, the fleet's KPI health and stale
//! replicas, and live updates over server-sent events. A real `serve` on
//! 127.0.0.1, on SQLite and PostgreSQL where the store is involved.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::console::pages::{csrf, page, post_form, sign_in};
use crate::reconcile::bump;
use crate::registry::{
    bearer, get, post_runs, rollout_state, serve_ready, serving_fleet_on, traffic, until,
};
use crate::util::{assert_success, http, missionctl};

const HR: &str = "packs/domains/hr-ops/pack.yaml";

fn post_json(port: u16, path: &str, token: &str, body: &str) -> (u16, Value) {
    let (code, _, resp) = http(
        port,
        "POST",
        path,
        &[
            ("Authorization", &bearer(token)),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
    (code, serde_json::from_str(&resp).unwrap_or(Value::Null))
}

/// The rollout `id` as `GET /v1/rollouts` has it now.
fn rollout(port: u16, admin: &str, id: &str) -> Value {
    let (_, v) = get(port, "/v1/rollouts", admin);
    v["rollouts"]
        .as_array()
        .and_then(|l| l.iter().find(|r| r["rollout_id"] == id).cloned())
        .unwrap_or(Value::Null)
}

/// Merge a new version of the hr-ops pack (its role prompt's `from` text
/// replaced by `to`) and wait for its rollout: its id.
fn merge_hr(
    f: &crate::reconcile::Fleet,
    port: u16,
    admin: &str,
    pr: u32,
    from: &str,
    to: &str,
    version: &str,
) -> String {
    f.git(&["pull", "-q", "--ff-only", "origin", "main"]);
    f.merge(&format!("v{version}"), pr, |f| {
        f.edit("packs/domains/hr-ops/prompts/role.md", from, to);
        bump(f, HR, version);
    });
    f.push();
    let r = until("the rollout", Duration::from_secs(30), || {
        rollout_state(port, admin, version)
    });
    r["rollout_id"].as_str().expect("id").to_string()
}

/// Healthy traffic for `secs` seconds, checking after each batch that the
/// rollout `id` is still held at 10%.
fn stays_held(port: u16, t: &crate::registry::Tok, id: &str, seed: &str, secs: u64) {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        n += 1;
        traffic(port, &t.acme_harness, &format!("{seed}{n}"), 700, 0.99);
        std::thread::sleep(Duration::from_millis(400));
        let r = rollout(port, &t.admin, id);
        assert_eq!(r["state"], "held", "{r}");
        assert_eq!(r["percent"], 10, "held at its share: {r}");
    }
}

fn hold_and_resume(db: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let tokens = dir.path().join("tokens.yaml");
    let (_dir, f, t, port, s) = serving_fleet_on(dir, db);
    let id = merge_hr(
        &f,
        port,
        &t.admin,
        41,
        "workplace\npolicies",
        "workplace\nPolicies",
        "1.1.0",
    );
    let hold = format!("/v1/rollouts/{id}/hold");
    let resume = format!("/v1/rollouts/{id}/resume");

    // Who may: an admin of the pack. Without a token 401; a viewer 403; a
    // tenant admin on a shared pack 403 (as POST /v1/rollback); an
    // unknown rollout 404; a bad body 400.
    assert_eq!(http(port, "POST", &hold, &[], b"").0, 401);
    assert_eq!(post_json(port, &hold, &t.acme_viewer, "").0, 403);
    let (code, v) = post_json(port, &hold, &t.acme_admin, "");
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        post_json(port, "/v1/rollouts/nope/hold", &t.admin, "").0,
        404
    );
    assert_eq!(post_json(port, &hold, &t.admin, "[1]").0, 400);
    assert_eq!(rollout(port, &t.admin, &id)["state"], "running");

    // Held: recorded, idempotent, and it keeps its share.
    let (code, v) = post_json(port, &hold, &t.admin, r#"{"reason": "holiday freeze"}"#);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["state"], "held", "{v}");
    assert_eq!(v["changed"], true, "{v}");
    let (code, again) = post_json(port, &hold, &t.admin, "");
    assert_eq!(code, 200, "{again}");
    assert_eq!(
        again["changed"], false,
        "asking again changes nothing: {again}"
    );
    let r = rollout(port, &t.admin, &id);
    assert!(
        r["detail"]["why"]
            .as_str()
            .unwrap_or("")
            .contains("holiday freeze"),
        "{r}"
    );
    // Healthy traffic that would advance it does not, tick after tick.
    stays_held(port, &t, &id, "held", 4);
    // The canary still serves at its share while held.
    let arms: Vec<Value> = (0..200)
        .map(|u| {
            get(
                port,
                &format!("/v1/resolve?domain=hr-ops&tenant=acme&user=h{u}"),
                &t.acme_harness,
            )
            .1["arm"]
                .clone()
        })
        .collect();
    assert!(arms.contains(&json!("canary")), "held, not pinned");

    // After a restart it is still held.
    drop(s);
    let (port, _s2) = serve_ready(&f, &tokens, &[], &t.admin);
    stays_held(port, &t, &id, "restarted", 3);

    // Resumed from the command line: it continues from its step.
    let out = missionctl()
        .args([
            "resume",
            &id,
            "--db",
            db,
            "--reason",
            "freeze over",
            "--by",
            "dana",
        ])
        .output()
        .expect("resume");
    assert_success(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("is running now"), "{said}");
    let mut n = 0;
    let done = until(
        "the resumed rollout to advance",
        Duration::from_secs(60),
        || {
            n += 1;
            traffic(port, &t.acme_harness, &format!("resumed{n}"), 700, 0.99);
            std::thread::sleep(Duration::from_millis(300));
            let r = rollout(port, &t.admin, &id);
            (r["percent"].as_u64().unwrap_or(10) > 10 || r["state"] == "completed").then_some(r)
        },
    );
    assert_ne!(done["state"], "held", "{done}");
    // Its history starts at 10%: it went on from where it stopped.
    let first = &done["detail"]["history"][0];
    assert_eq!(first["percent"], 10, "{done}");
    assert_eq!(first["outcome"], "advanced", "{done}");
    // A resume of a running rollout changes nothing.
    let (code, v) = post_json(port, &resume, &t.admin, "");
    assert!(code == 200 || code == 409, "{v}");

    // Both recorded as decisions and audit rows.
    let (_, v) = get(port, "/v1/decisions?pack=hr-ops-pack", &t.admin);
    let list = v["decisions"].as_array().expect("decisions").clone();
    let held = list
        .iter()
        .find(|d| d["decision"] == "hold")
        .unwrap_or_else(|| panic!("no hold decision: {v}"));
    assert_eq!(held["decided_by"], format!("admin (POST {hold})"), "{held}");
    assert!(
        held["reason"]
            .as_str()
            .unwrap_or("")
            .contains("holiday freeze")
    );
    assert_eq!(held["rollout"]["rollout_id"], id.as_str(), "{held}");
    let resumed = list
        .iter()
        .find(|d| d["decision"] == "resume")
        .unwrap_or_else(|| panic!("no resume decision: {v}"));
    assert_eq!(
        resumed["decided_by"], "dana (missionctl resume)",
        "{resumed}"
    );
    assert_eq!(
        list.iter().filter(|d| d["decision"] == "hold").count(),
        1,
        "the repeated hold wrote no second decision"
    );
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let log = rt.block_on(async {
        let s = missionctl::store::Store::connect(db).await.expect("db");
        s.audit_log(500).await.expect("audit")
    });
    assert!(
        log.iter()
            .any(|e| e.token == "admin" && e.action == hold && e.outcome == "ok"),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|e| e.token == "acme-admin" && e.action == hold && e.outcome == "denied"),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|e| e.token == "dana" && e.action == "missionctl resume" && e.outcome == "ok"),
        "{log:?}"
    );

    // A held rollout still rolls back on a regression: safety wins.
    until("full promotion", Duration::from_secs(60), || {
        n += 1;
        traffic(port, &t.acme_harness, &format!("finish{n}"), 700, 0.99);
        std::thread::sleep(Duration::from_millis(300));
        (rollout(port, &t.admin, &id)["state"] == "completed").then_some(())
    });
    let bad = merge_hr(
        &f,
        port,
        &t.admin,
        42,
        "workplace\nPolicies",
        "workplace policies",
        "1.2.0",
    );
    let (code, v) = post_json(port, &format!("/v1/rollouts/{bad}/hold"), &t.admin, "");
    assert_eq!(code, 200, "{v}");
    let rolled = until(
        "the automatic rollback while held",
        Duration::from_secs(60),
        || {
            n += 1;
            traffic(port, &t.acme_harness, &format!("bad{n}"), 700, 0.6);
            std::thread::sleep(Duration::from_millis(300));
            Some(rollout(port, &t.admin, &bad)).filter(|r| r["state"] == "rolled_back")
        },
    );
    assert!(
        rolled["detail"]["why"]
            .as_str()
            .unwrap_or("")
            .contains("sequential test"),
        "{rolled}"
    );
    // A finished rollout can be neither held nor resumed.
    let (code, v) = post_json(port, &format!("/v1/rollouts/{bad}/resume"), &t.admin, "");
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("rolled_back"),
        "{v}"
    );
}

crate::both_stores!(
    a_held_rollout_keeps_its_share_across_ticks_and_a_restart_resumes_and_still_rolls_back,
    |db: &str| {
        crate::console_actions::hold_and_resume(db);
    }
);

/// The rollout page's hold and resume buttons: CSRF, confirmation, roles,
/// recorded as the API records them.
#[test]
fn the_console_holds_and_resumes_with_csrf_and_confirmation() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let (_dir, f, t, port, _s) = serving_fleet_on(dir, &db);
    let id = merge_hr(
        &f,
        port,
        &t.admin,
        51,
        "workplace\npolicies",
        "workplace\nPolicies",
        "1.1.0",
    );
    let path = format!("/ui/rollouts/{id}");
    let admin = sign_in(port, &t.admin);
    let acme = sign_in(port, &t.acme_viewer);
    let (_, _, viewer_page) = page(port, &path, &acme);
    assert!(
        !viewer_page.contains("/hold\""),
        "a viewer gets no hold form"
    );
    let (_, _, p) = page(port, &path, &admin);
    assert!(p.contains(&format!("action=\"{path}/hold\"")), "{p}");
    assert!(!p.contains("/resume\""), "no resume for a running rollout");
    let token = csrf(&p);
    let action = format!("{path}/hold");
    // No CSRF token (403, as a wrong one), a wrong one, another
    // session's, or unconfirmed: refused.
    assert_eq!(
        post_form(port, &action, &admin, "reason=x&confirm=yes").0,
        403
    );
    assert_eq!(
        post_form(port, &action, &admin, "csrf=00&reason=x&confirm=yes").0,
        403
    );
    let other = csrf(&viewer_page);
    assert_eq!(
        post_form(
            port,
            &action,
            &admin,
            &format!("csrf={other}&reason=x&confirm=yes")
        )
        .0,
        403
    );
    let (code, _, body) = post_form(port, &action, &admin, &format!("csrf={token}&reason=x"));
    assert_eq!(code, 400);
    assert!(body.contains("Tick the confirmation box to hold"), "{body}");
    // A viewer may not.
    assert_eq!(
        post_form(
            port,
            &action,
            &acme,
            &format!("csrf={other}&reason=x&confirm=yes")
        )
        .0,
        403
    );
    // Another tenant's rollout, or none: 404 naming nothing.
    let (code, _, body) = post_form(
        port,
        "/ui/rollouts/no-such/hold",
        &admin,
        &format!("csrf={token}&reason=x&confirm=yes"),
    );
    assert_eq!(code, 404);
    assert!(body.contains("nothing your sign-in may see"));
    assert_eq!(rollout(port, &t.admin, &id)["state"], "running");
    // Held from the page.
    let (code, head, body) = post_form(
        port,
        &action,
        &admin,
        &format!("csrf={token}&reason=board+review&confirm=yes"),
    );
    assert_eq!(code, 303, "{body}");
    assert!(head.contains(&format!("\r\nlocation: {path}")), "{head}");
    assert_eq!(rollout(port, &t.admin, &id)["state"], "held");
    let (_, _, p) = page(port, &path, &admin);
    assert!(p.contains("held") && p.contains("board review"), "{p}");
    assert!(p.contains(&format!("action=\"{path}/resume\"")), "{p}");
    assert!(
        p.contains(&format!("action=\"{path}/rollback\"")),
        "rollback stays: {p}"
    );
    let (_, _, fleet) = page(port, "/ui/", &admin);
    assert!(fleet.contains("span class=\"warn\">held<"), "{fleet}");
    // Resumed from the page.
    let (code, _, body) = post_form(
        port,
        &format!("{path}/resume"),
        &admin,
        &format!("csrf={token}&reason=done&confirm=yes"),
    );
    assert_eq!(code, 303, "{body}");
    assert_eq!(rollout(port, &t.admin, &id)["state"], "running");
    let (_, v) = get(port, "/v1/decisions?pack=hr-ops-pack", &t.admin);
    for (kind, route) in [
        ("hold", action.clone()),
        ("resume", format!("{path}/resume")),
    ] {
        assert!(
            v["decisions"].as_array().expect("d").iter().any(
                |d| d["decision"] == kind && d["decided_by"] == format!("admin (POST {route})")
            ),
            "{kind}: {v}"
        );
    }
    let (_, _, decisions) = page(port, "/ui/decisions", &admin);
    assert!(decisions.contains("<strong>hold</strong>"), "{decisions}");
}

/// The pack page: the prompt and voice diff between two versions (escaped),
/// each version's gate evidence, KPIs per version as an SVG chart (a
/// tenant-scoped sign-in counts its tenant's runs only); an acme viewer
/// cannot diff a globex pack.
#[test]
fn the_pack_page_diffs_versions_shows_evidence_and_charts_kpis() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let (_dir, f, t, port, _s) = serving_fleet_on(dir, &db);
    f.git(&["pull", "-q", "--ff-only", "origin", "main"]);
    let voice = f.merge("voice", 61, |f| {
        f.edit(
            "packs/domains/hr-ops/prompts/role.md",
            "workplace\npolicies",
            "workplace\n<b>policies</b> & rules",
        );
        f.edit(
            HR,
            "tone: [warm, discreet]",
            "tone: [warm, discreet, brief]",
        );
        bump(f, HR, "1.1.0");
    });
    f.push();
    until("the rollout", Duration::from_secs(30), || {
        rollout_state(port, &t.admin, "1.1.0")
    });
    // Runs of acme's tenant pack on two days (a harness reports the leaf
    // pack of its chain: acme's chains end in acme-tenant).
    let run = |id: &str, day: u32, ok: bool| {
        json!({"run_id": id, "tenant_id": "acme", "user_id": "u1", "agent_id": "bot",
            "pack_id": "acme-tenant", "pack_version": "1.0.0", "task_type": "qa",
            "latency_ms": 100, "cost_usd": 0.001, "success_bool": ok,
            "error_code": if ok { Value::Null } else { json!("tool_error") },
            "created_at": missionctl::time_util::canonical(
                time::OffsetDateTime::now_utc() - time::Duration::days(i64::from(day)))})
    };
    let acme: String = (0..8)
        .map(|i| format!("{}\n", run(&format!("a{i}"), i % 2 + 1, i != 0)))
        .collect();
    assert_eq!(post_runs(port, &t.acme_harness, acme.as_bytes()).0, 200);

    let viewer = sign_in(port, &t.acme_viewer);
    // The rollout is in the store a moment before the commit is served.
    let _p = until("1.1.0 served", Duration::from_secs(30), || {
        let (code, _, p) = page(port, "/ui/packs/hr-ops-pack?from=1.0.0&to=1.1.0", &viewer);
        assert_eq!(code, 200, "{p}");
        p.contains("1.0.0 → <strong>1.1.0</strong>").then_some(p)
    });
    // Each version is credited to the commit that brought it in, not the
    // tip: a later merge of another tenant's pack changes nothing here.
    f.merge("globex-later", 62, |f| {
        f.edit(
            "packs/tenants/globex/pack.yaml",
            "tone: [formal]",
            "tone: [formal, precise]",
        );
    });
    f.push();
    let later = f.git(&["rev-parse", "HEAD"]);
    let p = until("the later commit served", Duration::from_secs(30), || {
        let (_, _, p) = page(port, "/ui/packs/hr-ops-pack?from=1.0.0&to=1.1.0", &viewer);
        let (_, ready) = get(port, "/readyz", &t.admin);
        (ready["commit"] == later.as_str()).then_some(p)
    });
    let row = format!("<td>1.1.0</td><td><code>{}</code></td>", &voice[..10]);
    assert!(p.contains(&row), "1.1.0 credited to {}: {p}", &voice[..10]);
    assert!(!p.contains(&later[..10]), "a later, unrelated commit: {p}");
    // The prompt diff, escaped: the markup in the prompt is text.
    assert!(p.contains("Prompt and voice diff"), "{p}");
    assert!(
        p.contains("<span class=\"del\">-policies, onboarding"),
        "{p}"
    );
    assert!(
        p.contains("<span class=\"add\">+&lt;b&gt;policies&lt;/b&gt; &amp; rules, onboarding"),
        "{p}"
    );
    assert!(!p.contains("<b>policies"), "never unescaped");
    // The voice diff.
    assert!(p.contains("<h3>voice</h3>"), "{p}");
    assert!(
        p.contains("<span class=\"add\">+    &quot;brief&quot;"),
        "{p}"
    );
    // The default pair is the previous and the newest version; reversed works too.
    let (_, _, default) = page(port, "/ui/packs/hr-ops-pack", &viewer);
    assert!(
        default.contains("1.0.0 → <strong>1.1.0</strong>"),
        "{default}"
    );
    let (_, _, back) = page(port, "/ui/packs/hr-ops-pack?from=1.1.0&to=1.0.0", &viewer);
    assert!(
        back.contains("<span class=\"add\">+policies, onboarding"),
        "{back}"
    );
    let (code, _, none) = page(port, "/ui/packs/hr-ops-pack?from=9.9.9&to=1.0.0", &viewer);
    assert_eq!(code, 200);
    assert!(none.contains("No such version of this pack"), "{none}");
    // Gate evidence of each version: its promotion decision's pull request.
    assert!(p.contains("from pull request #61"), "{p}");
    // KPIs per version over time: an SVG chart and its table.
    let (code, _, k) = page(port, "/ui/packs/acme-tenant", &viewer);
    assert_eq!(code, 200, "{k}");
    assert!(
        k.contains("aria-label=\"Success rate per version per day\""),
        "{k}"
    );
    assert!(k.contains("<polyline"), "{k}");
    let days: Vec<(String, u64, String)> = rows_re(r"1\.0\.0")
        .captures_iter(&k)
        .map(|c| {
            (
                c[2].to_string(),
                c[3].parse::<u64>().expect("n"),
                c[4].to_string(),
            )
        })
        .collect();
    assert_eq!(days.len(), 2, "two days: {k}");
    assert_eq!(days.iter().map(|d| d.1).sum::<u64>(), 8, "{k}");
    assert!(
        days.iter().any(|d| d.2 == "75.0") && days.iter().any(|d| d.2 == "100.0"),
        "{days:?}"
    );
    // A pack without runs says so; no GitHub links for a remote that is not there.
    let admin = sign_in(port, &t.admin);
    let (_, _, all) = page(port, "/ui/packs/hr-ops-pack?from=1.0.0&to=1.1.0", &admin);
    assert!(all.contains("No run in the last 30 days"), "{all}");
    assert!(!all.contains("github.com"), "{all}");
    // A shared pack's runs of two tenants (written to the store directly):
    // a tenant-scoped sign-in counts its own tenant's only.
    let rows: Vec<missionctl::model::RunRow> = [("acme", 3), ("globex", 5)]
        .iter()
        .flat_map(|(tenant, n)| {
            (0..*n).map(move |i| {
                serde_json::from_value(json!({"run_id": format!("{tenant}-{i}"), "tenant_id": tenant,
                    "user_id": "u1", "agent_id": "bot", "pack_id": "hr-ops-pack", "pack_version": "1.1.0",
                    "task_type": "qa", "latency_ms": 100.0, "cost_usd": 0.001, "success_bool": true,
                    "error_code": null, "created_at": missionctl::time_util::now_rfc3339()}))
                .expect("row")
            })
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let s = missionctl::store::Store::connect(&db).await.expect("db");
        s.insert_runs(&rows).await.expect("runs");
    });
    let count = |html: &str| -> u64 {
        rows_re(r"1\.1\.0")
            .captures_iter(html)
            .map(|c| c[3].parse::<u64>().expect("n"))
            .sum()
    };
    let (_, _, mine) = page(port, "/ui/packs/hr-ops-pack", &viewer);
    assert_eq!(count(&mine), 3, "acme's runs only: {mine}");
    assert!(!mine.to_lowercase().contains("globex"), "{mine}");
    let (_, _, every) = page(port, "/ui/packs/hr-ops-pack", &admin);
    assert_eq!(
        count(&every),
        8,
        "every tenant's for an unscoped admin: {every}"
    );
    // An acme viewer cannot diff a globex pack: 404, naming nothing.
    for path in [
        "/ui/packs/globex-tenant?from=1.0.0&to=1.0.0",
        "/ui/packs/globex-tenant",
    ] {
        let (code, _, body) = page(port, path, &viewer);
        assert_eq!(code, 404, "{path}");
        assert!(!body.to_lowercase().contains("globex"), "{body}");
    }
}

/// The KPI table's rows of `version` (a regex): (version, day, runs, success %).
fn rows_re(version: &str) -> regex::Regex {
    regex::Regex::new(&format!(
        r"<tr><td>({version})</td><td>(\d{{4}}-\d\d-\d\d)</td><td>(\d+)</td><td>([0-9.]+)%</td>"
    ))
    .expect("re")
}

/// The fleet page: KPI health per chain against its targets, a stale
/// replica under "needs attention", this replica not.
fn fleet_health(db: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let (_dir, _f, t, port, _s) = serving_fleet_on(dir, db);
    let now = missionctl::time_util::now_rfc3339();
    let rows: String = (0..10)
        .map(|i| {
            format!(
                "{}\n",
                json!({"run_id": format!("k{i}"), "tenant_id": "acme", "user_id": "u1", "agent_id": "bot",
                    "pack_id": "acme-tenant", "pack_version": "1.0.0", "task_type": "qa",
                    "latency_ms": 100, "cost_usd": 0.001, "success_bool": i % 2 == 0,
                    "error_code": if i % 2 == 0 { Value::Null } else { json!("tool_error") },
                    "created_at": now})
            )
        })
        .collect();
    assert_eq!(post_runs(port, &t.acme_harness, rows.as_bytes()).0, 200);
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let s = missionctl::store::Store::connect(db).await.expect("db");
        s.heartbeat("ghost-replica", Some("0000000000"), 0.2)
            .await
            .expect("beat");
    });
    // Stale after three intervals (at least three seconds).
    std::thread::sleep(Duration::from_millis(3_500));
    let acme = sign_in(port, &t.acme_viewer);
    let (code, _, fleet) = page(port, "/ui/", &acme);
    assert_eq!(code, 200, "{fleet}");
    assert!(fleet.contains("KPI health (24 h)"), "{fleet}");
    assert!(
        fleet.contains("below target: ") && fleet.contains("success_rate 50.0% (min 95.0%)"),
        "acme's chains run at 50% against a 9x% target: {fleet}"
    );
    assert!(
        fleet.contains("below its KPI targets"),
        "needs attention: {fleet}"
    );
    assert!(
        fleet.contains("no runs"),
        "chains without runs say so: {fleet}"
    );
    assert!(
        fleet.contains("ghost-replica") && fleet.contains("stale"),
        "{fleet}"
    );
    assert!(!fleet.to_lowercase().contains("globex"), "{fleet}");
    // This replica beats: it is not stale.
    let (_, ready) = get(port, "/readyz", &t.admin);
    let me = ready["replica"].as_str().expect("replica").to_string();
    let stale_me = format!("<code>{me}</code> is <span class=\"bad\">stale");
    assert!(!fleet.contains(&stale_me), "{fleet}");
}

crate::both_stores!(
    the_fleet_shows_kpi_health_per_chain_and_stale_replicas,
    |db: &str| {
        crate::console_actions::fleet_health(db);
    }
);

/// An open `/ui/events` stream: the session's cookie, reading until it
/// has seen `event: <name>` or `within` passed.
struct Stream(std::net::TcpStream, String);

impl Stream {
    fn open(port: u16, cookie: &str) -> Stream {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        write!(
            s,
            "GET /ui/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nCookie: {cookie}\r\n\r\n"
        )
        .expect("write");
        Stream(s, String::new())
    }

    /// Whether `event: <name>` arrived (counted from the last call) within `within`.
    fn saw(&mut self, name: &str, within: Duration) -> bool {
        let start = Instant::now();
        let want = format!("event: {name}");
        let mut buf = [0u8; 4096];
        loop {
            if let Some(at) = self.1.find(&want) {
                self.1.drain(..at + want.len());
                return true;
            }
            if start.elapsed() > within {
                return false;
            }
            match self.0.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => self.1.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => {}
            }
        }
    }
}

/// Live updates: a decision reaches an open stream within seconds; an acme
/// session hears nothing of a globex change; the script is first-party and
/// every page still reads without it.
#[test]
fn a_decision_reaches_an_open_page_and_no_other_tenant_hears_of_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let (_dir, f, t, port, _s) = serving_fleet_on(dir, &db);
    let admin = sign_in(port, &t.admin);
    let acme = sign_in(port, &t.acme_viewer);
    // Without a session: to the sign-in page, as every page.
    let (code, head, _) = http(port, "GET", "/ui/events", &[], b"");
    assert_eq!(code, 303, "{head}");
    // The script: first-party, named by every signed-in page, nothing inline.
    let (code, head, js) = http(port, "GET", "/ui/live.js", &[], b"");
    assert_eq!(code, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert!(js.contains("new EventSource(\"/ui/events\")"), "{js}");
    let (_, head, fleet) = page(port, "/ui/", &acme);
    assert!(
        fleet.contains("<script src=\"/ui/live.js\" defer></script>"),
        "{fleet}"
    );
    assert_eq!(fleet.matches("<script").count(), 1, "no inline script");
    assert!(
        head.contains("script-src 'self'; connect-src 'self'"),
        "{head}"
    );
    assert!(fleet.contains("<main data-live>"), "{fleet}");

    let mut a = Stream::open(port, &admin);
    let mut g = Stream::open(port, &acme);
    assert!(a.saw("ready", Duration::from_secs(5)));
    assert!(g.saw("ready", Duration::from_secs(5)));
    // A globex change (a merge of its tenant pack records a decision).
    f.git(&["pull", "-q", "--ff-only", "origin", "main"]);
    f.merge("globex", 71, |f| {
        f.edit(
            "packs/tenants/globex/pack.yaml",
            "tone: [formal]",
            "tone: [formal, precise]",
        );
        bump(f, "packs/tenants/globex/pack.yaml", "1.1.0");
    });
    f.push();
    assert!(
        a.saw("change", Duration::from_secs(15)),
        "an unscoped admin hears of the globex decision"
    );
    assert!(
        !g.saw("change", Duration::from_secs(4)),
        "an acme session hears nothing of globex: {}",
        g.1
    );
    // A decision acme may see: its stream says so within seconds.
    // (1.5.0: the globex rollout is at 1.1.0.)
    let id = merge_hr(
        &f,
        port,
        &t.admin,
        72,
        "workplace\npolicies",
        "workplace\nPolicies",
        "1.5.0",
    );
    assert!(
        g.saw("change", Duration::from_secs(10)),
        "the hr-ops decision"
    );
    let _ = g.saw("change", Duration::from_secs(2));
    let started = Instant::now();
    let (code, v) = post_json(port, &format!("/v1/rollouts/{id}/hold"), &t.admin, "");
    assert_eq!(code, 200, "{v}");
    assert!(
        g.saw("change", Duration::from_secs(5)),
        "the hold decision: {:?} {v}",
        g.1
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // A second acme rollout (acme now sees two, in a map whose order
    // changes with every publication); then globex holds and resumes its
    // own rollout four times: acme hears nothing of it.
    f.git(&["pull", "-q", "--ff-only", "origin", "main"]);
    f.merge("acme-tone", 73, |f| {
        f.edit(
            "packs/tenants/acme/pack.yaml",
            "never \"Acme Robotics Inc.\" in conversation.",
            "never \"Acme Robotics Inc.\" in any conversation.",
        );
        bump(f, "packs/tenants/acme/pack.yaml", "1.2.0");
    });
    f.push();
    until("the acme rollout", Duration::from_secs(30), || {
        rollout_state(port, &t.admin, "1.2.0")
    });
    // acme's own new rollout moves for a while (its first controller
    // ticks): wait until acme's stream has been quiet for 3 s.
    until("acme's stream to settle", Duration::from_secs(60), || {
        (!g.saw("change", Duration::from_secs(3))).then_some(())
    });
    let globex = rollout_state(port, &t.admin, "1.1.0").expect("the globex rollout");
    assert_eq!(globex["pack_id"], "globex-tenant", "{globex}");
    let gid = globex["rollout_id"].as_str().expect("id").to_string();
    for word in ["hold", "resume", "hold", "resume"] {
        let (code, v) = post_json(port, &format!("/v1/rollouts/{gid}/{word}"), &t.admin, "");
        assert_eq!(code, 200, "{v}");
        assert!(
            a.saw("change", Duration::from_secs(5)),
            "the admin hears the globex {word}"
        );
        assert!(
            !g.saw("change", Duration::from_millis(1500)),
            "an acme session heard of globex's {word}: {}",
            g.1
        );
    }
    // Signed out: the stream ends.
    let (_, _, p) = page(port, "/ui/", &acme);
    let (code, _, _) = post_form(port, "/ui/logout", &acme, &format!("csrf={}", csrf(&p)));
    assert_eq!(code, 303);
    let mut rest = [0u8; 4096];
    let mut tail = String::new();
    let ended = until("the stream to end", Duration::from_secs(10), || {
        match g.0.read(&mut rest) {
            Ok(0) => Some(true),
            Ok(n) => {
                tail.push_str(&String::from_utf8_lossy(&rest[..n]));
                // The last chunk of a chunked body.
                tail.ends_with("0\r\n\r\n").then_some(true)
            }
            Err(_) => None,
        }
    });
    assert!(ended);
}
