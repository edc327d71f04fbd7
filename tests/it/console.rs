//! Reading runs back (`GET /v1/runs`, `missionctl runs`, CSV and NDJSON
//! exports) and the fleet console at `/ui/`: a real `serve` on 127.0.0.1,
//! on SQLite and PostgreSQL, with tenant-scoped tokens.

use serde_json::{Value, json};

use crate::registry::{bearer, get, post_runs, serving_fleet_on};
use crate::util::{assert_success, http, missionctl};

/// A run of `pack` at 1.0.0 for `tenant`, `minutes` after 10:00 on 1 Dec.
fn run(id: &str, tenant: &str, pack: &str, minutes: u32, task: &str, error: Option<&str>) -> Value {
    json!({"run_id": id, "tenant_id": tenant, "user_id": "u1", "agent_id": "bot",
        "pack_id": pack, "pack_version": "1.0.0", "task_type": task,
        "latency_ms": 100 + minutes, "cost_usd": 0.001, "success_bool": error.is_none(),
        "error_code": error,
        "created_at": format!("2026-12-01T10:{minutes:02}:00Z")})
}

fn ndjson(rows: &[Value]) -> Vec<u8> {
    rows.iter()
        .map(|r| format!("{r}\n"))
        .collect::<String>()
        .into_bytes()
}

fn ids(v: &Value) -> Vec<String> {
    v["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no runs in {v}"))
        .iter()
        .map(|r| r["run_id"].as_str().expect("run_id").to_string())
        .collect()
}

/// `missionctl runs --db <db> <args>`: its stdout, which must succeed.
fn cli_runs(db: &str, args: &[&str]) -> String {
    let out = missionctl()
        .args(["runs", "--db", db])
        .args(args)
        .output()
        .expect("runs");
    assert_success(&out);
    String::from_utf8(out.stdout).expect("utf-8")
}

fn runs_read_back(db: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let (_dir, f, t, port, _s) = serving_fleet_on(dir, db);
    let acme = [
        run("a-1", "acme", "acme-tenant", 1, "qa", None),
        run("a-2", "acme", "acme-tenant", 2, "qa", Some("tool_error")),
        run(
            "a-3",
            "acme",
            "acme-tenant",
            3,
            "summarize",
            Some("timeout"),
        ),
        run("a-4", "acme", "hr-ops-pack", 4, "qa", None),
        // A harness-chosen id that a spreadsheet would run as a formula.
        run("=cmd|' /C calc'!A0,x", "acme", "acme-tenant", 5, "qa", None),
    ];
    let (code, resp) = post_runs(port, &t.acme_harness, &ndjson(&acme));
    assert_eq!(code, 200, "{resp}");
    let globex = [
        run("g-1", "globex", "globex-tenant", 6, "qa", None),
        run(
            "g-2",
            "globex",
            "globex-tenant",
            7,
            "qa",
            Some("tool_error"),
        ),
    ];
    let (code, resp) = post_runs(port, &t.admin, &ndjson(&globex));
    assert_eq!(code, 200, "{resp}");

    // Who may read: no token 401, a harness token 403, a viewer 200.
    assert_eq!(http(port, "GET", "/v1/runs", &[], b"").0, 401);
    assert_eq!(get(port, "/v1/runs", &t.acme_harness).0, 403);
    let (code, v) = get(port, "/v1/runs", &t.acme_viewer);
    assert_eq!(code, 200, "{v}");
    // Newest first; an acme token reads acme's runs only, and nothing of globex.
    assert_eq!(
        ids(&v),
        ["=cmd|' /C calc'!A0,x", "a-4", "a-3", "a-2", "a-1"]
    );
    assert!(!v.to_string().contains("globex"), "{v}");
    assert_eq!(v["next"], Value::Null);
    // Naming another tenant is refused (403) and audited, as on every endpoint.
    let (code, v) = get(port, "/v1/runs?tenant=globex", &t.acme_viewer);
    assert_eq!(code, 403, "{v}");
    assert!(!v.to_string().contains("g-1"));
    // An unscoped token reads every tenant, or one.
    assert_eq!(ids(&get(port, "/v1/runs", &t.admin).1).len(), 7);
    assert_eq!(
        ids(&get(port, "/v1/runs?tenant=globex", &t.admin).1),
        ["g-2", "g-1"]
    );

    // Every filter.
    for (query, want) in [
        ("pack=hr-ops-pack", vec!["a-4"]),
        ("error_code=tool_error", vec!["a-2"]),
        (
            "error_code=none&task_type=qa&pack=acme-tenant",
            vec!["=cmd|' /C calc'!A0,x", "a-1"],
        ),
        ("task_type=summarize", vec!["a-3"]),
        (
            "since=2026-12-01T10:02:00Z&until=2026-12-01T10:04:00Z",
            vec!["a-3", "a-2"],
        ),
        (
            "since=2026-12-01T05:03:00-05:00&limit=1",
            vec!["=cmd|' /C calc'!A0,x"],
        ),
        (
            "version=1.0.0&pack=acme-tenant&until=2026-12-01T10:02:00Z",
            vec!["a-1"],
        ),
        ("version=1.0", vec![]),
        ("arm=none&task_type=summarize", vec!["a-3"]),
        ("arm=canary", vec![]),
        ("since=1h", vec![]),
    ] {
        let (code, v) = get(port, &format!("/v1/runs?{query}"), &t.acme_viewer);
        assert_eq!(code, 200, "{query}: {v}");
        assert_eq!(ids(&v), want, "{query}");
    }
    // Pages: each `next` cursor continues where the last page ended.
    let mut seen = Vec::new();
    let mut path = "/v1/runs?limit=2".to_string();
    loop {
        let (code, v) = get(port, &path, &t.admin);
        assert_eq!(code, 200, "{v}");
        seen.extend(ids(&v));
        match v["next"].as_str() {
            Some(c) => path = format!("/v1/runs?limit=2&after={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ids(&get(port, "/v1/runs", &t.admin).1));
    // A bad query says which parameter and what it takes.
    for (query, says) in [
        ("since=yesterday", "`since` is `yesterday`"),
        ("arm=blue", "`arm` is `blue`"),
        ("limit=0", "`limit` is 0"),
        ("after=nope", "`after` is not a cursor"),
        ("colour=red", "unknown field `colour`"),
    ] {
        let (code, v) = get(port, &format!("/v1/runs?{query}"), &t.acme_viewer);
        assert_eq!(code, 400, "{query}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains(says)),
            "{query}: {v}"
        );
    }

    // CSV: a header, one line per run, quoted and defused; acme's only.
    let (code, head, csv) = http(
        port,
        "GET",
        "/v1/runs?format=csv",
        &[("Authorization", &bearer(&t.acme_viewer))],
        b"",
    );
    assert_eq!(code, 200, "{csv}");
    assert!(
        head.to_lowercase().contains("content-type: text/csv"),
        "{head}"
    );
    assert!(head.contains("filename=\"runs.csv\""), "{head}");
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 6, "{csv}");
    assert!(lines[0].starts_with("run_id,tenant_id,user_id,agent_id,pack_id,pack_version"));
    assert!(
        lines[1].starts_with("\"'=cmd|' /C calc'!A0,x\",acme,"),
        "a formula-like field is quoted and prefixed: {}",
        lines[1]
    );
    assert!(
        lines[3].contains(",summarize,") && lines[3].contains(",false,timeout,"),
        "{}",
        lines[3]
    );
    assert!(!csv.contains("globex"), "{csv}");
    // NDJSON: the same records as the JSON page, one a line.
    let (code, _, nd) = http(
        port,
        "GET",
        "/v1/runs?format=ndjson&tenant=acme",
        &[("Authorization", &bearer(&t.admin))],
        b"",
    );
    assert_eq!(code, 200);
    let records: Vec<Value> = nd
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let page = get(port, "/v1/runs?tenant=acme", &t.admin).1;
    assert_eq!(Value::from(records), page["runs"]);

    // The CLI runs the same query on the store.
    let cli: Value =
        serde_json::from_str(&cli_runs(&f.db, &["--tenant", "acme", "--format", "json"]))
            .expect("json");
    assert_eq!(cli, page);
    let cli_csv = cli_runs(&f.db, &["--error-code", "tool_error", "--format", "csv"]);
    let (_, _, api_csv) = http(
        port,
        "GET",
        "/v1/runs?error_code=tool_error&format=csv",
        &[("Authorization", &bearer(&t.admin))],
        b"",
    );
    assert_eq!(cli_csv, api_csv);
    assert_eq!(cli_csv.lines().count(), 3, "{cli_csv}");
    let table = cli_runs(&f.db, &["--pack", "globex-tenant", "--limit", "1"]);
    assert!(table.starts_with("WHEN"), "{table}");
    assert!(
        table.contains("g-2") && table.contains("tool_error") && !table.contains("g-1"),
        "{table}"
    );
    assert!(table.contains("more: missionctl runs --after "), "{table}");
    let out = missionctl()
        .args(["runs", "--db", &f.db, "--since", "last week"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`since` is `last week`") && err.contains("24h"),
        "{err}"
    );
}

crate::both_stores!(
    runs_are_read_back_filtered_paged_exported_and_tenant_scoped,
    |db: &str| {
        crate::console::runs_read_back(db);
    }
);

/// An export streams every matching run across many store pages (2,000
/// rows each), none twice; `limit` bounds it.
fn export_streams_every_page(db: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let (_dir, _f, t, port, _s) = serving_fleet_on(dir, db);
    let rows: Vec<Value> = (0..4_500)
        .map(|i| {
            let mut r = run(&format!("r{i:05}"), "acme", "acme-tenant", 0, "qa", None);
            // Many runs share a timestamp: the cursor must still not skip or repeat one.
            r["created_at"] = json!(format!("2026-12-01T10:{:02}:00Z", i / 100));
            r
        })
        .collect();
    for chunk in rows.chunks(1_500) {
        let (code, resp) = post_runs(port, &t.acme_harness, &ndjson(chunk));
        assert_eq!(code, 200, "{resp}");
    }
    let (code, _, nd) = http(
        port,
        "GET",
        "/v1/runs?format=ndjson",
        &[("Authorization", &bearer(&t.acme_viewer))],
        b"",
    );
    assert_eq!(code, 200);
    let got: Vec<String> = nd
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["run_id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    let mut want: Vec<String> = (0..4_500).map(|i| format!("r{i:05}")).collect();
    want.reverse();
    assert_eq!(got, want, "every run once, newest first");
    let (_, _, csv) = http(
        port,
        "GET",
        "/v1/runs?format=csv&limit=1000",
        &[("Authorization", &bearer(&t.acme_viewer))],
        b"",
    );
    assert_eq!(csv.split("\r\n").filter(|l| !l.is_empty()).count(), 1_001);
}

crate::both_stores!(an_export_streams_every_page_once, |db: &str| {
    crate::console::export_streams_every_page(db);
});

/// The console at `/ui/` (plain HTTP): sign-in, the session cookie, the
/// security headers, each page's access rules, tenant isolation, and a
/// rollback from the rollout page recorded as the API records one.
pub(crate) mod pages {
    use std::time::Duration;

    use serde_json::Value;

    use crate::registry::{get, post_runs, rollout_state, until};
    use crate::util::http;

    /// Every page a signed-in viewer can reach from the navigation.
    pub const PAGES: [&str; 6] = [
        "/ui/",
        "/ui/rollouts",
        "/ui/runs",
        "/ui/decisions",
        "/ui/improve",
        "/ui/packs/hr-ops-pack",
    ];

    /// Sign in with `token`: the session cookie (`mc_session=…`), checking
    /// its attributes.
    pub fn sign_in(port: u16, token: &str) -> String {
        let body = format!(
            "token={}",
            form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
        );
        let (code, head, page) = http(
            port,
            "POST",
            "/ui/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        );
        assert_eq!(code, 303, "{head}\n{page}");
        assert!(head.contains("\r\nlocation: /ui/"), "{head}");
        let set = head
            .lines()
            .find_map(|l| l.strip_prefix("set-cookie: "))
            .unwrap_or_else(|| panic!("no cookie: {head}"));
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
            assert!(set.contains(attr), "{attr} missing: {set}");
        }
        set.split(';').next().expect("value").to_string()
    }

    pub fn page(port: u16, path: &str, cookie: &str) -> (u16, String, String) {
        http(port, "GET", path, &[("Cookie", cookie)], b"")
    }

    /// POST a form with the session cookie.
    pub fn post_form(port: u16, path: &str, cookie: &str, body: &str) -> (u16, String, String) {
        http(
            port,
            "POST",
            path,
            &[
                ("Cookie", cookie),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body.as_bytes(),
        )
    }

    pub fn csrf(html: &str) -> String {
        let re = regex::Regex::new(r#"name="csrf" value="([0-9a-f]+)""#).expect("re");
        re.captures(html)
            .unwrap_or_else(|| panic!("no CSRF field in {html}"))[1]
            .to_string()
    }

    #[test]
    fn console_access_rules_tenant_isolation_and_a_rollback() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = format!("sqlite://{}", dir.path().join("s.db").display());
        let (_dir, f, t, port, _s) = crate::registry::serving_fleet_on(dir, &db);
        let rows = [
            super::run("a-1", "acme", "acme-tenant", 1, "qa", None),
            super::run("a-2", "acme", "acme-tenant", 2, "qa", Some("tool_error")),
        ];
        assert_eq!(
            post_runs(port, &t.acme_harness, &super::ndjson(&rows)).0,
            200
        );
        let g = [super::run("g-1", "globex", "globex-tenant", 3, "qa", None)];
        assert_eq!(post_runs(port, &t.admin, &super::ndjson(&g)).0, 200);

        // No session: every page redirects to the sign-in page.
        for p in PAGES
            .iter()
            .chain(&["/ui/packs/globex-tenant", "/ui/rollouts/x"])
        {
            let (code, head, _) = http(port, "GET", p, &[], b"");
            assert_eq!(code, 303, "{p}");
            assert!(head.contains("\r\nlocation: /ui/login"), "{p}: {head}");
        }
        // The sign-in page, with the security headers every page carries.
        let (code, head, login) = http(port, "GET", "/ui/login", &[], b"");
        assert_eq!(code, 200);
        assert!(login.contains(r#"name="token""#), "{login}");
        for h in [
            "content-security-policy: default-src 'none'; style-src 'self'",
            "x-frame-options: DENY",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
            "cross-origin-opener-policy: same-origin",
            "cache-control: no-store",
        ] {
            assert!(head.contains(h), "{h} missing: {head}");
        }
        assert!(!login.contains("<script"), "no script anywhere");
        let (code, head, css) = http(port, "GET", "/ui/style.css", &[], b"");
        assert_eq!(code, 200);
        assert!(
            head.contains("content-type: text/css") && css.contains("--accent"),
            "{head}"
        );
        // A bad token, or a harness token, does not sign in.
        let (code, _, body) = http(
            port,
            "POST",
            "/ui/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"token=nope",
        );
        assert_eq!(code, 401);
        assert!(body.contains("not a valid registry token"), "{body}");
        let harness = format!("token={}", t.acme_harness);
        let (code, _, body) = http(
            port,
            "POST",
            "/ui/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            harness.as_bytes(),
        );
        assert_eq!(code, 403);
        assert!(body.contains("harness token cannot sign in"), "{body}");
        // Behind a proxy that terminated TLS, the cookie is also `Secure`.
        let (code, head, _) = http(
            port,
            "POST",
            "/ui/login",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Forwarded-Proto", "https"),
            ],
            format!("token={}", t.acme_viewer).as_bytes(),
        );
        assert_eq!(code, 303);
        assert!(head.contains("; Secure"), "{head}");
        // Login CSRF: a form another site posts (its own token, to sign
        // this browser in as it) is refused, audited, and signs nobody in:
        // an Origin that is not this console's, or Sec-Fetch-Site:
        // cross-site, or Origin null without Sec-Fetch-Site: same-origin.
        // The console's own origin (the Host, https behind a proxy saying
        // so, a proxy's X-Forwarded-Host, default ports aside), or no
        // Origin at all, signs in.
        let admin_form = format!("token={}", t.admin);
        let login_with = |extra: &[(&str, &str)]| {
            let mut h = vec![("Content-Type", "application/x-www-form-urlencoded")];
            h.extend_from_slice(extra);
            http(port, "POST", "/ui/login", &h, admin_form.as_bytes())
        };
        for refused in [
            vec![("Origin", "https://evil.example")],
            vec![("Origin", "null")],
            vec![("Origin", "null"), ("Sec-Fetch-Site", "same-site")],
            vec![("Origin", "http://127.0.0.1:1")],
            vec![("Origin", "https://127.0.0.1")],
            vec![("Origin", "http://127.0.0.1.evil.example")],
            vec![("Sec-Fetch-Site", "cross-site")],
            vec![
                ("Origin", "http://127.0.0.1"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            vec![
                ("Origin", "https://console.example"),
                ("X-Forwarded-Host", "console.example"),
            ],
        ] {
            let (code, head, body) = login_with(&refused);
            assert_eq!(code, 403, "{refused:?}: {head}");
            assert!(!head.contains("mc_session="), "{refused:?}: {head}");
            assert!(body.contains("sent from another site"), "{body}");
        }
        for allowed in [
            vec![("Origin", "http://127.0.0.1")],
            vec![("Origin", "HTTP://127.0.0.1:80")],
            vec![
                ("Origin", "http://127.0.0.1"),
                ("Sec-Fetch-Site", "same-origin"),
            ],
            vec![
                ("Origin", "https://127.0.0.1"),
                ("X-Forwarded-Proto", "https"),
            ],
            vec![
                ("Origin", "https://console.example:443"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "console.example"),
            ],
            vec![("Sec-Fetch-Site", "none")],
            // What a browser sends for this console's own form: its pages'
            // `Referrer-Policy: no-referrer` withholds a POST's origin.
            vec![("Origin", "null"), ("Sec-Fetch-Site", "same-origin")],
            vec![],
        ] {
            let (code, head, _) = login_with(&allowed);
            assert_eq!(code, 303, "{allowed:?}: {head}");
            assert!(head.contains("mc_session="), "{allowed:?}: {head}");
        }
        // A forged or garbled cookie is no session.
        for bad in ["mc_session=00.00", "mc_session=garbage"] {
            assert_eq!(page(port, "/ui/", bad).0, 303);
        }

        // An acme viewer: every page, nothing of globex, and 404 (naming
        // nothing) for what is globex's or another tenant's.
        let acme = sign_in(port, &t.acme_viewer);
        for p in PAGES.iter().chain(&[
            "/ui/packs/acme-tenant",
            "/ui/runs?pack=acme-tenant&error_code=tool_error",
            "/ui/decisions?pack=acme-tenant",
        ]) {
            let (code, head, body) = page(port, p, &acme);
            assert_eq!(code, 200, "{p}: {body}");
            assert!(head.contains("content-security-policy:"), "{p}");
            assert!(
                !body.to_lowercase().contains("globex"),
                "{p} shows globex: {body}"
            );
            assert!(body.contains("acme-viewer (viewer, tenant acme)"), "{p}");
        }
        let (_, _, fleet) = page(port, "/ui/", &acme);
        assert!(
            fleet.contains("acme-alice") && fleet.contains("hr-ops-pack"),
            "{fleet}"
        );
        assert!(
            !fleet.contains("sam-personal"),
            "a personal user's pack is not acme's"
        );
        let (_, _, runs) = page(port, "/ui/runs", &acme);
        assert!(
            runs.contains("a-1") && runs.contains("a-2") && runs.contains("tool_error"),
            "{runs}"
        );
        let (_, _, only) = page(port, "/ui/runs?error_code=tool_error", &acme);
        assert!(only.contains("a-2") && !only.contains(">a-1<"), "{only}");
        for p in [
            "/ui/packs/globex-tenant",
            "/ui/packs/globex-carol",
            "/ui/packs/sam-personal",
            "/ui/runs?tenant=globex",
            "/ui/runs/export.csv?tenant=globex",
            "/ui/decisions?pack=globex-tenant",
            "/ui/?tenant=globex",
            "/ui/rollouts/no-such-rollout",
            "/ui/packs/no-such-pack",
        ] {
            let (code, _, body) = page(port, p, &acme);
            assert_eq!(code, 404, "{p}");
            assert!(!body.to_lowercase().contains("globex"), "{p}: {body}");
            assert!(body.contains("nothing your sign-in may see"), "{p}");
        }
        // Exports carry the session's tenant too.
        let (code, head, csv) = page(port, "/ui/runs/export.csv", &acme);
        assert_eq!(code, 200);
        assert!(head.contains("content-type: text/csv"), "{head}");
        assert_eq!(
            csv.split("\r\n").filter(|l| !l.is_empty()).count(),
            3,
            "{csv}"
        );
        assert!(!csv.contains("globex"));
        let (_, _, nd) = page(port, "/ui/runs/export.ndjson?error_code=tool_error", &acme);
        assert_eq!(nd.lines().count(), 1, "{nd}");
        // `after` is checked as on the runs page and the API: a bad cursor
        // is a 400 naming it; a good one exports the runs after it.
        for p in [
            "/ui/runs?after=x",
            "/ui/runs/export.csv?after=x",
            "/ui/runs/export.ndjson?after=x",
        ] {
            let (code, _, body) = page(port, p, &acme);
            assert_eq!(code, 400, "{p}: {body}");
            assert!(body.contains("`after` is not a cursor"), "{p}: {body}");
        }
        // A value the query cannot even parse is named, with what it takes.
        let (code, _, body) = page(port, "/ui/runs?limit=-1", &acme);
        assert_eq!(code, 400, "{body}");
        assert!(
            body.contains("limit") && body.contains("1 to 1000"),
            "{body}"
        );
        let (_, first) = get(port, "/v1/runs?limit=1", &t.acme_viewer);
        let after = first["next"].as_str().expect("a cursor");
        let (code, _, nd) = page(
            port,
            &format!("/ui/runs/export.ndjson?after={after}"),
            &acme,
        );
        assert_eq!(code, 200);
        assert!(nd.lines().count() == 1 && nd.contains("\"a-1\""), "{nd}");

        // An unscoped admin sees every tenant and the audit log.
        let admin = sign_in(port, &t.admin);
        let (_, _, fleet) = page(port, "/ui/", &admin);
        assert!(fleet.contains("globex-tenant"), "{fleet}");
        let (_, _, d) = page(port, "/ui/decisions", &admin);
        assert!(
            d.contains("Audit log") && d.contains("signed in to the console"),
            "{d}"
        );
        let (_, _, d) = page(port, "/ui/decisions", &acme);
        assert!(
            !d.contains("Audit log"),
            "token names of other tenants stay out"
        );

        // A rollout, rolled back from its page.
        f.merge("tone", 31, |f| {
            f.edit(
                "packs/domains/hr-ops/prompts/role.md",
                "workplace\npolicies",
                "workplace\nPolicies",
            );
            crate::reconcile::bump(f, "packs/domains/hr-ops/pack.yaml", "1.1.0");
        });
        f.push();
        let r = until("the rollout", Duration::from_secs(30), || {
            rollout_state(port, &t.admin, "1.1.0")
        });
        let id = r["rollout_id"].as_str().expect("id").to_string();
        let path = format!("/ui/rollouts/{id}");
        let (_, _, rollouts) = page(port, "/ui/rollouts", &acme);
        assert!(
            rollouts.contains(&path),
            "a shared pack's rollout is listed for acme"
        );
        let (code, _, viewer_page) = page(port, &path, &acme);
        assert_eq!(code, 200);
        assert!(
            !viewer_page.contains("/rollback\""),
            "a viewer gets no rollback form"
        );
        // A shared pack's arms count every tenant's runs: a tenant's
        // sign-in and token get the rollout without them.
        assert!(
            viewer_page.contains("withheld from tenant sign-ins"),
            "{viewer_page}"
        );
        let (_, mine) = get(port, "/v1/rollouts", &t.acme_viewer);
        let mine = mine["rollouts"]
            .as_array()
            .and_then(|l| l.iter().find(|r| r["rollout_id"] == id.as_str()))
            .cloned()
            .expect("listed for acme");
        assert!(
            mine["figures_from"]
                .as_str()
                .is_some_and(|f| f.starts_with("withheld"))
                && mine["detail"].is_null()
                && mine["champion"]["runs"] == 0,
            "{mine}"
        );
        assert_eq!(r["figures_from"], "live", "the admin's view: {r}");
        // A reason is one line of plain text: an escape sequence or a
        // newline (a forged line in a revert commit) is refused, 400.
        for reason in [
            "\u{1b}[2Jcleared",
            "x\nMissionctl-Rollback: acme-tenant",
            "rtl \u{202E}",
        ] {
            let body = serde_json::json!({ "reason": reason }).to_string();
            let (code, _, answer) = http(
                port,
                "POST",
                &format!("/v1/rollouts/{id}/hold"),
                &[
                    ("Authorization", &crate::registry::bearer(&t.admin)),
                    ("Content-Type", "application/json"),
                ],
                body.as_bytes(),
            );
            assert_eq!(code, 400, "{reason:?}: {answer}");
            assert!(answer.contains("plain text"), "{answer}");
        }
        let (code, _, admin_page) = page(port, &path, &admin);
        assert_eq!(code, 200);
        assert!(
            admin_page.contains("Timeline") && admin_page.contains("1.1.0"),
            "{admin_page}"
        );
        let token = csrf(&admin_page);
        let action = format!("{path}/rollback");
        // Without the CSRF token (the field missing is as a wrong one:
        // 403), with another session's, or unconfirmed: refused.
        assert_eq!(
            post_form(port, &action, &admin, "reason=x&confirm=yes").0,
            403
        );
        assert_eq!(
            post_form(port, &action, &admin, "csrf=00&reason=x&confirm=yes").0,
            403
        );
        let acme_csrf = csrf(&viewer_page);
        assert_eq!(
            post_form(
                port,
                &action,
                &admin,
                &format!("csrf={acme_csrf}&reason=x&confirm=yes")
            )
            .0,
            403
        );
        assert_eq!(
            post_form(port, &action, &admin, &format!("csrf={token}&reason=x")).0,
            400
        );
        // A viewer, and a tenant admin on a shared pack, may not.
        assert_eq!(
            post_form(
                port,
                &action,
                &acme,
                &format!("csrf={acme_csrf}&reason=x&confirm=yes")
            )
            .0,
            403
        );
        let acme_admin = sign_in(port, &t.acme_admin);
        let (_, _, p) = page(port, &path, &acme_admin);
        assert!(
            !p.contains("/rollback\""),
            "no form for a tenant admin on a shared pack"
        );
        let c = csrf(&p);
        assert_eq!(
            post_form(
                port,
                &action,
                &acme_admin,
                &format!("csrf={c}&reason=x&confirm=yes")
            )
            .0,
            403
        );
        let (code, head, body) = post_form(
            port,
            &action,
            &admin,
            &format!("csrf={token}&reason=escalations+missed&confirm=yes"),
        );
        assert_eq!(code, 303, "{body}");
        assert!(head.contains(&format!("\r\nlocation: {path}")), "{head}");
        // Recorded as the API records a rollback: the decision and the audit row.
        let (_, v) = get(port, "/v1/decisions?pack=hr-ops-pack", &t.admin);
        let d = v["decisions"]
            .as_array()
            .expect("decisions")
            .iter()
            .find(|d| d["decision"] == "rollback")
            .cloned()
            .unwrap_or_else(|| panic!("no rollback decision: {v}"));
        assert_eq!(d["decided_by"], format!("admin (POST {action})"), "{d}");
        assert!(
            d["reason"]
                .as_str()
                .expect("r")
                .contains("escalations missed"),
            "{d}"
        );
        let (_, after) = get(port, "/v1/rollouts", &t.admin);
        let state = after["rollouts"]
            .as_array()
            .expect("r")
            .iter()
            .find(|r| r["rollout_id"] == id.as_str())
            .map(|r| r["state"].clone());
        assert_eq!(state, Some(Value::from("rolled_back")), "{after}");
        let (_, _, shown) = page(port, &path, &admin);
        assert!(
            shown.contains("rolled_back") && shown.contains("escalations missed"),
            "{shown}"
        );
        let rt = tokio::runtime::Runtime::new().expect("rt");
        let log = rt.block_on(async {
            let s = missionctl::store::Store::connect(&db).await.expect("db");
            s.audit_log(200).await.expect("audit")
        });
        assert!(
            log.iter()
                .any(|e| e.token == "admin" && e.action == action && e.outcome == "ok"),
            "{log:?}"
        );
        assert!(
            log.iter()
                .any(|e| e.token == "acme-admin" && e.action == action && e.outcome == "denied"),
            "{log:?}"
        );
        assert!(
            log.iter()
                .any(|e| e.token == "acme-viewer" && e.action == "/ui/login" && e.outcome == "ok"),
            "{log:?}"
        );
        assert!(
            log.iter().any(|e| e.token == "(unauthenticated)"
                && e.action == "/ui/login"
                && e.outcome == "denied"
                && e.detail
                    .contains("posted from another site (Origin `https://evil.example`")),
            "{log:?}"
        );
        assert!(
            !log.iter().any(|e| e.detail.contains(&t.acme_viewer)),
            "a token leaked into the audit log"
        );

        // Signing out needs the CSRF token, clears the cookie, and the old
        // cookie no longer signs in.
        let (_, _, p) = page(port, "/ui/", &acme);
        assert_eq!(post_form(port, "/ui/logout", &acme, "csrf=00").0, 403);
        assert_eq!(post_form(port, "/ui/logout", &acme, "").0, 403);
        let (code, head, _) = post_form(port, "/ui/logout", &acme, &format!("csrf={}", csrf(&p)));
        assert_eq!(code, 303);
        assert!(head.contains("mc_session=; Path=/ui; Max-Age=0"), "{head}");
        assert_eq!(page(port, "/ui/", &acme).0, 303);
    }

    /// An audit entry the console cannot write is never skipped: a
    /// sign-in, a refused sign-in and a sign-out each answer 503 saying so
    /// (a sign-out still clears the cookie), as the API does. A sign-out
    /// the state store cannot record is a 503 too, and signs nobody out.
    #[test]
    fn an_audit_entry_that_cannot_be_written_is_a_503_never_skipped() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("s.db");
        let db = format!("sqlite://{}", path.display());
        let (_dir, _f, t, port, _s) = crate::registry::serving_fleet_on(dir, &db);
        let viewer = sign_in(port, &t.acme_viewer);
        let (_, _, p) = page(port, "/ui/", &viewer);
        let csrf_token = csrf(&p);
        let sql = |q: &'static str| {
            tokio::runtime::Runtime::new().expect("rt").block_on(async {
                let pool = sqlx::SqlitePool::connect(&db).await.expect("open");
                sqlx::query(q).execute(&pool).await.expect(q);
            });
        };
        // A sign-out the state store does not record is no sign-out: 503
        // saying so, the cookie kept, still signed in (retry).
        sql(
            "CREATE TRIGGER no_sign_out BEFORE INSERT ON console_sign_outs BEGIN SELECT RAISE(ABORT, 'disk full'); END",
        );
        let (code, head, body) =
            post_form(port, "/ui/logout", &viewer, &format!("csrf={csrf_token}"));
        assert_eq!(code, 503, "{head}\n{body}");
        assert!(body.contains("could not be recorded"), "{body}");
        assert!(!head.contains("mc_session="), "{head}");
        assert_eq!(page(port, "/ui/", &viewer).0, 200);
        sql("DROP TRIGGER no_sign_out");
        // A session that cannot be checked against the sign-outs is not
        // let in.
        sql("ALTER TABLE console_sign_outs RENAME TO console_sign_outs_gone");
        let (code, _, body) = page(port, "/ui/", &viewer);
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("could not be checked"), "{body}");
        sql("ALTER TABLE console_sign_outs_gone RENAME TO console_sign_outs");
        assert_eq!(page(port, "/ui/", &viewer).0, 200);
        // The audit log stops taking rows (a full disk, a lost database).
        sql(
            "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END",
        );
        let unavailable = |what: &str, (code, head, body): (u16, String, String)| {
            assert_eq!(code, 503, "{what}: {head}\n{body}");
            assert!(
                body.contains("The audit log could not be written"),
                "{what}: {body}"
            );
            head
        };
        let form = |token: &str| {
            format!(
                "token={}",
                form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
            )
        };
        let head = unavailable(
            "sign-in",
            post_form(port, "/ui/login", "", &form(&t.acme_admin)),
        );
        assert!(!head.contains("mc_session="), "no session: {head}");
        unavailable(
            "a refused sign-in",
            post_form(port, "/ui/login", "", &form(&t.acme_harness)),
        );
        unavailable(
            "a wrong one-time link",
            http(port, "GET", "/ui/login/link/00", &[], b""),
        );
        let head = unavailable(
            "sign-out",
            post_form(port, "/ui/logout", &viewer, &format!("csrf={csrf_token}")),
        );
        assert!(head.contains("mc_session=; Path=/ui; Max-Age=0"), "{head}");
    }
}

/// `serve` on the fleet with `MISSIONCTL_CONSOLE_KEY` set to `key`, ready
/// on a free port (as [`crate::registry::serve_ready`]: its `/readyz`
/// answers from this very process).
fn serve_keyed(
    f: &crate::util::Fleet,
    tokens: &std::path::Path,
    key: &str,
    admin: &str,
) -> (u16, crate::reconcile::Served) {
    use std::process::Stdio;
    crate::registry::ready_on_a_free_port(admin, |port| {
        let s = crate::reconcile::Served(
            crate::registry::serve_command(f, port, tokens)
                .env("MISSIONCTL_CONSOLE_KEY", key)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("serve"),
        );
        crate::reconcile::wait_http(port);
        s
    })
}

/// Issue 27: a signed-out session stays signed out after `serve` restarts
/// (and on every replica: the sign-outs are in the state store), for pages,
/// state changes and the live stream, while the session key (shared) keeps
/// other sessions. A token removed from the tokens file keeps its sessions
/// until the restart (the file is read at start) and loses them then.
fn signed_out_sessions_stay_out_after_a_restart(db: &str) {
    use pages::{csrf, page, sign_in};
    let dir = tempfile::tempdir().expect("tmp");
    let f = crate::util::Fleet::fleet(db);
    let (tok_file, t) = crate::registry::tokens(dir.path());
    let key = "c0nsole-key-shared-by-every-replica-of-this-test";
    let (port, served) = serve_keyed(&f, &tok_file, key, &t.admin);
    let viewer = sign_in(port, &t.acme_viewer);
    let acme_admin = sign_in(port, &t.acme_admin);
    let admin = sign_in(port, &t.admin);
    let (code, _, p) = page(port, "/ui/", &viewer);
    assert_eq!(code, 200);
    let viewer_csrf = csrf(&p);
    let (code, head, _) = http(
        port,
        "POST",
        "/ui/logout",
        &[
            ("Cookie", &viewer),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        format!("csrf={viewer_csrf}").as_bytes(),
    );
    assert_eq!(code, 303, "{head}");
    assert_eq!(page(port, "/ui/", &viewer).0, 303);
    // acme-admin leaves the tokens file: serve read it at start, so the
    // session holds until the restart.
    let file = std::fs::read_to_string(&tok_file).expect("tokens");
    let kept: Vec<&str> = file
        .split("\n  - ")
        .filter(|e| !e.starts_with("name: acme-admin\n"))
        .collect();
    assert_eq!(kept.len() + 1, file.split("\n  - ").count(), "{file}");
    std::fs::write(&tok_file, kept.join("\n  - ")).expect("write tokens");
    assert_eq!(page(port, "/ui/", &acme_admin).0, 200);
    drop(served);

    // The same key, the same store, a new process.
    let (port, _served) = serve_keyed(&f, &tok_file, key, &t.admin);
    assert_eq!(page(port, "/ui/", &admin).0, 200, "the key is shared");
    for p in [
        "/ui/",
        "/ui/runs",
        "/ui/runs/export.csv",
        "/ui/rollouts",
        "/ui/events",
    ] {
        let (code, head, _) = page(port, p, &viewer);
        assert_eq!(code, 303, "{p}: {head}");
        assert!(head.contains("\r\nlocation: /ui/login"), "{p}: {head}");
    }
    // The sign-in page shows its form (no redirect back to the fleet).
    let (code, _, login) = page(port, "/ui/login", &viewer);
    assert_eq!(code, 200);
    assert!(login.contains(r#"name="token""#), "{login}");
    // A state change with the old cookie and its CSRF token: refused before
    // anything is looked at (signed in, it would be a 404).
    let (code, head, _) = http(
        port,
        "POST",
        "/ui/rollouts/no-such/hold",
        &[
            ("Cookie", &viewer),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        format!("csrf={viewer_csrf}&reason=x&confirm=yes").as_bytes(),
    );
    assert_eq!(code, 303, "{head}");
    assert!(head.contains("\r\nlocation: /ui/login"), "{head}");
    // The removed token's session ended with the restart.
    assert_eq!(page(port, "/ui/", &acme_admin).0, 303);
}

crate::both_stores!(
    a_signed_out_session_stays_out_after_a_restart,
    |db: &str| {
        crate::console::signed_out_sessions_stay_out_after_a_restart(db);
    }
);

/// A console key shorter than 32 bytes stops `serve` at start, saying what to set.
#[test]
fn a_short_console_key_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let f = crate::util::Fleet::fleet(&db);
    let (tokens, _) = crate::registry::tokens(dir.path());
    let out = crate::registry::serve_command(&f, crate::reconcile::free_port(), &tokens)
        .env("MISSIONCTL_CONSOLE_KEY", "too-short")
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MISSIONCTL_CONSOLE_KEY is shorter than 32 bytes"),
        "{err}"
    );
}
