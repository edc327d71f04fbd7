//! Issue 28's console part: `/ui/market` and `/ui/market/<catalog>/<id>`
//! on a real `serve`, over a catalog served by real git (`git
//! http-backend` on 127.0.0.1) built from a second `missionctl init`
//! repository; proposing an install from the console writes the branch in
//! the served repository and opens the pull request on the fake GitHub.

use std::path::PathBuf;

use crate::console::pages::{csrf, page, post_form, sign_in};
use crate::git_http::GitHttp;
use crate::github_server::GithubServer;
use crate::market::{catalog, publish};
use crate::reconcile::Served;
use crate::registry::{Tok, ready_on_a_free_port, serve_command, tokens, until};
use crate::util::{Fleet, TestRepo, git};

pub(crate) const PACK_PAGE: &str = "/ui/market/community/legal-intake";
pub(crate) const BRANCH: &str = "missionctl/market/legal-intake-1.0.0";
/// What the catalog's legal-intake description says (HTML in it).
pub(crate) const HOSTILE: &str = "<script>alert(1)</script>";

/// A fleet listing catalog `community` (the template over git http-backend,
/// legal-intake's description carrying [`HOSTILE`]), served on a free port
/// with GitHub pointed at the fake. Bind in order: the server stops first.
pub(crate) struct MarketFleet {
    pub served: Served,
    pub port: u16,
    pub t: Tok,
    pub gh: GithubServer,
    pub f: Fleet,
    pub http: GitHttp,
    pub _cat: TestRepo,
    pub _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// A fleet whose main branch lacks legal-intake (globex serving every
/// domain) and lists catalog
/// `community` at `{url}/catalog.git`, merged as GitHub merges a pull
/// request (the reconciler serves it).
fn fleet_listing(url: &str) -> Fleet {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("state.db").display());
    let f = Fleet::fleet(&db);
    std::mem::forget(dir);
    f.merge("market", 1, |f| {
        f.git(&["rm", "-q", "-r", "packs/domains/legal-intake"]);
        // globex serves every domain (no `domains:` list): a fleet
        // without legal-intake validates, and installing it adds globex's chain.
        let globex = "packs/tenants/globex/pack.yaml";
        f.edit(globex, "domains: [legal-intake, hr-ops, infra-sre]\n", "");
        crate::reconcile::bump(f, globex, "1.0.1");
        let m = f.read("mission.yaml");
        f.write(
            "mission.yaml",
            &format!("{m}\nmarketplace:\n  catalogs:\n    - name: community\n      git: {url}/catalog.git\n    - name: gone\n      git: http://127.0.0.1:9/gone.git\n"),
        );
    });
    f.push();
    f
}

pub(crate) fn market_fleet() -> MarketFleet {
    let served = tempfile::tempdir().expect("tempdir");
    let cat = catalog(served.path());
    cat.edit(
        "packs/domains/legal-intake/pack.yaml",
        "description: Legal intake",
        &format!("description: 'Legal intake {HOSTILE} &amp;"),
    );
    cat.edit(
        "packs/domains/legal-intake/pack.yaml",
        "Never gives legal advice.",
        "Never gives legal advice.'",
    );
    // A second pack the fleet's hard constraints forbid (it wants a shell).
    let from = cat.work.join("packs/domains/legal-intake");
    let to = cat.work.join("packs/domains/legal-shell");
    std::process::Command::new("cp")
        .arg("-r")
        .arg(&from)
        .arg(&to)
        .status()
        .expect("cp");
    let shell = "packs/domains/legal-shell/pack.yaml";
    cat.write(
        shell,
        &cat.read(shell).replace("legal-intake", "legal-shell"),
    );
    cat.edit(shell, "  allow:\n", "  allow:\n    - shell.exec\n");
    cat.commit_all("A description with HTML in it; legal-shell");
    publish(&cat, served.path());
    let http = GitHttp::start(served.path());
    let f = fleet_listing(&http.url);
    let gh = GithubServer::start();
    // The served repository's `origin` stands for GitHub's copy (bare, as
    // libgit2 pushes only to bare local repositories); as GitHub, a pull
    // request's head branch must have been pushed there.
    let origin: PathBuf = f.dir.path().join("github.git");
    git(
        f.dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            f.remote.to_str().expect("utf-8"),
            "github.git",
        ],
    );
    git(
        &f.remote,
        &[
            "remote",
            "set-url",
            "origin",
            origin.to_str().expect("utf-8"),
        ],
    );
    gh.with(|s| s.remote = Some(origin));
    let dir = tempfile::tempdir().expect("tmp");
    let (tok_file, t) = tokens(dir.path());
    let env = gh.env();
    let (port, s) = ready_on_a_free_port(&t.admin, |port| {
        let mut c = serve_command(&f, port, &tok_file);
        c.env("MISSIONCTL_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(if std::env::var_os("MC_TEST_DEBUG").is_some() {
                std::process::Stdio::inherit()
            } else {
                std::process::Stdio::null()
            });
        let s = Served(c.spawn().expect("serve"));
        crate::reconcile::wait_http(port);
        s
    });
    MarketFleet {
        served: s,
        port,
        t,
        gh,
        f,
        http,
        _cat: cat,
        _dirs: (served, dir),
    }
}

fn branch_in(repo: &std::path::Path) -> bool {
    std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["rev-parse", "--verify", "-q", BRANCH])
        .output()
        .expect("git")
        .status
        .success()
}

#[test]
fn the_console_lists_searches_reports_and_an_unscoped_admin_proposes_an_install() {
    let m = market_fleet();
    let port = m.port;
    let admin = sign_in(port, &m.t.admin);

    // The list: every pack of the catalog, fetched over HTTP from git.
    let (code, _, list) = page(port, "/ui/market", &admin);
    assert_eq!(code, 200, "{list}");
    for want in [
        "community",
        "legal-intake",
        "hr-ops",
        "infra-sre",
        "href=\"/ui/market\" aria-current=\"page\"",
    ] {
        assert!(list.contains(want), "the list lacks {want}: {list}");
    }
    let fetched = m.http.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert!(fetched > 0, "the catalog was fetched over HTTP");
    // A catalog that cannot be fetched (and was never cached): a warning
    // line, the others listed.
    assert!(
        list.contains("Warning: catalog `gone`: cannot fetch http://127.0.0.1:9/gone.git"),
        "{list}"
    );
    // Catalog text is escaped, never markup.
    assert!(!list.contains(HOSTILE), "{list}");
    assert!(
        list.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{list}"
    );
    // Search: every word must match (id, description, tools, contracts,
    // maintainers); the catalog filter.
    let (_, _, hits) = page(port, "/ui/market?q=conflicts+MATTERS", &admin);
    assert!(hits.contains(PACK_PAGE), "{hits}");
    assert!(!hits.contains("/ui/market/community/hr-ops"), "{hits}");
    let (_, _, none) = page(port, "/ui/market?q=legal+no-such-word", &admin);
    assert!(none.contains("No pack matches"), "{none}");
    let (_, _, other) = page(port, "/ui/market?catalog=elsewhere", &admin);
    assert!(other.contains("No pack matches"), "{other}");
    let (_, _, only) = page(port, "/ui/market?catalog=community&q=legal", &admin);
    assert!(only.contains(PACK_PAGE), "{only}");

    // The pack page: facts and the compatibility report at the served commit.
    let (code, _, p) = page(port, PACK_PAGE, &admin);
    assert_eq!(code, 200, "{p}");
    for want in [
        "1.0.0",
        "packs/domains/legal-intake",
        "sha256:",
        "Eval cases",
        "safety",
        "Compatibility with this fleet",
        "validates under this fleet",
        "globex",
        "Installed now: no",
        "Propose install",
        "action=\"/ui/market/community/legal-intake/propose\"",
    ] {
        assert!(p.contains(want), "the pack page lacks {want}: {p}");
    }
    assert!(!p.contains(HOSTILE), "{p}");
    assert!(p.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{p}");
    // Within the cache's TTL, pages do not fetch the catalog again.
    assert_eq!(
        m.http.requests.load(std::sync::atomic::Ordering::Relaxed),
        fetched,
        "fetched again within the TTL"
    );
    // A pack the fleet has without a lock: nothing to propose; unknown
    // packs and versions are 404.
    let (code, _, hr) = page(port, "/ui/market/community/hr-ops", &admin);
    assert_eq!(code, 200, "{hr}");
    assert!(
        hr.contains("nothing to propose") && !hr.contains("/propose\""),
        "{hr}"
    );
    assert_eq!(page(port, "/ui/market/community/nope", &admin).0, 404);
    assert_eq!(page(port, "/ui/market/nope/legal-intake", &admin).0, 404);
    assert_eq!(
        page(port, &format!("{PACK_PAGE}?version=9.9.9"), &admin).0,
        404
    );

    // A pack that does not validate: the report says why, and the console
    // offers nothing (no "propose anyway"); a POST is refused, nothing written.
    let shell = "/ui/market/community/legal-shell";
    let (code, _, p2) = page(port, shell, &admin);
    assert_eq!(code, 200, "{p2}");
    for want in [
        "does not validate under this fleet",
        "shell.exec",
        "Tools this fleet forbids",
        "packs/domains/legal-shell/pack.yaml:",
        "the console does not propose it",
    ] {
        assert!(p2.contains(want), "{want}: {p2}");
    }
    assert!(!p2.contains("/propose\""), "{p2}");
    let (code, _, r) = post_form(
        port,
        &format!("{shell}/propose"),
        &admin,
        &format!("csrf={}", csrf(&p2)),
    );
    assert_eq!(code, 422, "{r}");
    assert!(
        r.contains("does not validate") && r.contains("nothing was written"),
        "{r}"
    );
    assert!(
        git(
            &m.f.remote,
            &["branch", "--list", "missionctl/market/legal-shell*"]
        )
        .is_empty()
    );

    // A tenant viewer and a tenant admin: the page without the form and
    // without other tenants; their forged POSTs are refused (403) and
    // nothing is written.
    let propose = format!("{PACK_PAGE}/propose");
    for token in [&m.t.acme_viewer, &m.t.acme_admin] {
        let cookie = sign_in(port, token);
        let (code, _, p) = page(port, PACK_PAGE, &cookie);
        assert_eq!(code, 200, "{p}");
        assert!(p.contains("Compatibility with this fleet"), "{p}");
        assert!(
            !p.contains("/propose\"") && p.contains("unscoped admin"),
            "{p}"
        );
        assert!(!p.to_lowercase().contains("globex"), "{p}");
        let token_csrf = csrf(&p);
        let (code, _, r) = post_form(
            port,
            &propose,
            &cookie,
            &format!("csrf={token_csrf}&version=1.0.0"),
        );
        assert_eq!(code, 403, "{r}");
    }
    // The admin without the CSRF token, or with another session's: 403.
    assert_eq!(post_form(port, &propose, &admin, "version=1.0.0").0, 403);
    assert_eq!(
        post_form(port, &propose, &admin, "csrf=00ff&version=1.0.0").0,
        403
    );
    assert!(!branch_in(&m.f.remote), "nothing was written yet");

    // The admin proposes: the branch in the served repository (main does
    // not move), pushed to its origin, and the pull request.
    let main_before = git(&m.f.remote, &["rev-parse", "main"]);
    let (code, _, done) = post_form(
        port,
        &propose,
        &admin,
        &format!("csrf={}&version=1.0.0", csrf(&p)),
    );
    assert_eq!(code, 200, "{done}");
    assert!(done.contains(BRANCH), "{done}");
    assert!(
        done.contains("https://github.com/acme-fleet/packs/pull/"),
        "{done}"
    );
    assert!(
        branch_in(&m.f.remote),
        "the branch is in the served repository"
    );
    assert!(
        branch_in(&m.f.dir.path().join("github.git")),
        "and pushed to its origin"
    );
    assert_eq!(git(&m.f.remote, &["rev-parse", "main"]), main_before);
    let lock = git(
        &m.f.remote,
        &[
            "show",
            &format!("{BRANCH}:packs/domains/legal-intake/market.lock.json"),
        ],
    );
    assert!(lock.contains("\"catalog\": \"community\""), "{lock}");
    let pull =
        m.gh.with(|s| s.open_pulls.last().cloned())
            .expect("a pull request");
    assert_eq!(pull["head"]["ref"], BRANCH);
    let body = pull["body"].as_str().expect("body");
    assert!(body.contains("Compatibility with this fleet"), "{body}");
    assert!(!body.contains(HOSTILE), "{body}");

    // Audited: the denials and the proposal, under the tokens' names.
    let audit = until("the audit rows", std::time::Duration::from_secs(10), || {
        let (_, _, d) = page(port, "/ui/decisions", &admin);
        d.contains(BRANCH).then_some(d)
    });
    assert!(audit.contains(&propose), "{audit}");
    assert!(
        audit.contains("acme-viewer") && audit.contains("acme-admin") && audit.contains("denied"),
        "{audit}"
    );
    drop(m.served);
}
