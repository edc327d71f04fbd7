//! The console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven through WebDriver with fantoccini: sign in
//! through the form, walk every page, roll back from the rollout page, and
//! crawl every link an acme viewer can reach for any trace of globex.
//! Screenshots of each page go to `<target>/console-screenshots/`.
//!
//! Without chromedriver the tests fail saying how to install it, unless
//! `MISSIONCTL_SKIP_BROWSER=1`.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::registry::{get, post_runs, rollout_state, until};
use crate::util::{missing, used};

/// Where the screenshots go: `console-screenshots/` in the target directory.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// A chromedriver on an ephemeral 127.0.0.1 port, with a browser profile
/// of its own; stopped (after the session is closed) when dropped.
pub struct Driver {
    child: Child,
    pub url: String,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MISSIONCTL_CHROMEDRIVER") {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("chromedriver"))
        .find(|p| p.is_file())
}

impl Driver {
    /// chromedriver, started; None (after saying so) when it is missing
    /// and `MISSIONCTL_SKIP_BROWSER=1`; a failure saying how to install it
    /// otherwise.
    pub fn start() -> Option<Driver> {
        let Some(bin) = chromedriver_path() else {
            missing(
                "chromium",
                "MISSIONCTL_SKIP_BROWSER",
                "no chromedriver on PATH or in /usr/bin: install Debian's browser and driver with `apt-get install --no-install-recommends chromium chromium-driver` (.ci/run does), or point MISSIONCTL_CHROMEDRIVER at one",
            );
            return None;
        };
        used("chromium");
        for _ in 0..5 {
            let port = crate::reconcile::free_port();
            let child = Command::new(&bin)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut d = Driver {
                child,
                url: format!("http://127.0.0.1:{port}"),
                profile: tempfile::tempdir().expect("profile"),
            };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if d.child.try_wait().ok().flatten().is_some() {
                    break; // the port was taken: try another
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(d);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("chromedriver ({}) did not start in 5 tries", bin.display());
    }

    /// A new headless browser session.
    pub async fn session(&self) -> Client {
        let mut args = vec![
            "--headless=new".to_string(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", self.profile.path().display()),
        ];
        if rustix::process::geteuid().is_root() {
            // Chromium refuses to run as root with its sandbox on.
            args.push("--no-sandbox".into());
        }
        let mut caps = fantoccini::wd::Capabilities::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "args": args }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| {
                panic!("chromedriver at {} could not open a browser: {e}", self.url)
            })
    }
}

/// The page's source and visible text.
pub async fn page_text(c: &Client) -> (String, String) {
    let src = c.source().await.expect("source");
    let text = c
        .find(Locator::Css("body"))
        .await
        .expect("body")
        .text()
        .await
        .expect("text");
    (src, text)
}

/// A PNG of what the browser shows, as `<name>.png` in the screenshots.
pub async fn shot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    let p = screenshot_dir().join(format!("{name}.png"));
    std::fs::write(&p, png).expect("write screenshot");
    p
}

/// Sign in through the form with `token`; lands on the fleet page.
pub async fn sign_in(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/ui/login")).await.expect("login");
    c.find(Locator::Css("input[name=token]"))
        .await
        .expect("token field")
        .send_keys(token)
        .await
        .expect("type");
    c.find(Locator::Css("form[action='/ui/login'] button[type=submit]"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("click");
    wait_path(c, "/ui/").await;
}

/// Wait until the browser shows `path`.
pub async fn wait_path(c: &Client, path: &str) {
    let start = Instant::now();
    loop {
        let url = c.current_url().await.expect("url");
        if url.path() == path {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still at {url}, waiting for {path}: {}",
            c.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sign_out(c: &Client) {
    c.find(Locator::Css("form[action='/ui/logout'] button"))
        .await
        .expect("sign-out button")
        .click()
        .await
        .expect("click");
    wait_path(c, "/ui/login").await;
}

/// Every same-origin console link on the current page.
async fn links(c: &Client, base: &str) -> Vec<String> {
    let mut out = Vec::new();
    for a in c.find_all(Locator::Css("a[href]")).await.expect("links") {
        // `href` as a property: absolute, resolved by the browser.
        let Some(href) = a.prop("href").await.expect("href") else {
            continue;
        };
        if let Some(rest) = href.strip_prefix(base)
            && rest.starts_with("/ui/")
        {
            out.push(rest.split('#').next().unwrap_or(rest).to_string());
        }
    }
    out
}

/// Two runs of `pack` for `tenant` as NDJSON (ids `<prefix>-1`, `<prefix>-2`).
pub fn runs(tenant: &str, pack: &str, prefix: &str) -> Vec<u8> {
    (1..=2)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({"run_id": format!("{prefix}-{i}"), "tenant_id": tenant,
                    "user_id": "u1", "agent_id": "bot", "pack_id": pack, "pack_version": "1.0.0",
                    "task_type": "qa", "latency_ms": 100 + i, "cost_usd": 0.001,
                    "success_bool": i == 1, "error_code": (i == 2).then_some("tool_error"),
                    "created_at": format!("2026-12-01T10:0{i}:00Z")})
            )
        })
        .collect::<String>()
        .into_bytes()
}

#[test]
fn a_real_browser_signs_in_walks_every_page_rolls_back_and_sees_no_other_tenant() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let (_dir, f, t, port, _s) = crate::registry::serving_fleet_on(dir, &db);
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(
        post_runs(port, &t.acme_harness, &runs("acme", "acme-tenant", "a")).0,
        200
    );
    assert_eq!(
        post_runs(port, &t.admin, &runs("globex", "globex-tenant", "g")).0,
        200
    );
    // A rollout of the shared hr-ops pack.
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

    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let c = driver.session().await;
        // Not signed in: the sign-in page, whatever was asked.
        c.goto(&format!("{base}/ui/runs")).await.expect("goto");
        wait_path(&c, "/ui/login").await;
        shot(&c, "login").await;

        // The unscoped admin signs in through the form and walks every page.
        sign_in(&c, &base, &t.admin).await;
        let rollout = format!("/ui/rollouts/{id}");
        for (name, path, expect) in [
            ("fleet", "/ui/", "hr-ops-pack"),
            ("pack", "/ui/packs/hr-ops-pack", "hr-ops-pack"),
            ("rollouts", "/ui/rollouts", rollout.as_str()),
            ("rollout", rollout.as_str(), "Timeline"),
            ("runs", "/ui/runs", "a-1"),
            ("decisions", "/ui/decisions", "Audit log"),
            ("improve", "/ui/improve", "Improve"),
        ] {
            c.goto(&format!("{base}{path}")).await.expect("goto");
            wait_path(&c, path).await;
            let (src, text) = page_text(&c).await;
            assert!(
                src.contains(expect),
                "{name} ({path}) lacks {expect}: {src}"
            );
            assert!(
                text.contains("admin (admin, every tenant)"),
                "{name}: {text}"
            );
            shot(&c, name).await;
        }

        // Roll back from the rollout page: tick the confirmation, submit,
        // and the decision is on the page.
        c.goto(&format!("{base}{rollout}")).await.expect("goto");
        let form = c
            .find(Locator::Css("form[action$='/rollback']"))
            .await
            .expect("the rollback form");
        form.find(Locator::Css("input[name=reason]"))
            .await
            .expect("reason")
            .send_keys("escalations missed in the browser")
            .await
            .expect("type");
        form.find(Locator::Css("input[name=confirm]"))
            .await
            .expect("confirmation box")
            .click()
            .await
            .expect("tick");
        shot(&c, "rollout-confirm").await;
        form.find(Locator::Css("button[type=submit]"))
            .await
            .expect("submit")
            .click()
            .await
            .expect("click");
        let start = Instant::now();
        loop {
            let (src, _) = page_text(&c).await;
            if src.contains("rolled_back") && src.contains("escalations missed in the browser") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no rollback shown: {src}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(c.current_url().await.expect("url").path(), rollout);
        shot(&c, "rollout-rolled-back").await;
        c.goto(&format!("{base}/ui/decisions")).await.expect("goto");
        let (_, text) = page_text(&c).await;
        assert!(
            text.contains("rollback") && text.contains("escalations missed in the browser"),
            "{text}"
        );
        shot(&c, "decisions-after-rollback").await;
        sign_out(&c).await;

        // An acme viewer crawls every link it can reach: no globex anywhere.
        sign_in(&c, &base, &t.acme_viewer).await;
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from(["/ui/".to_string()]);
        while let Some(path) = queue.pop_front() {
            if !seen.insert(path.clone()) || seen.len() > 300 {
                continue;
            }
            if path.contains("/export.") {
                // A download, not a page: read it over plain HTTP with the same session.
                continue;
            }
            c.goto(&format!("{base}{path}")).await.expect("goto");
            let (src, text) = page_text(&c).await;
            assert!(
                !src.to_lowercase().contains("globex") && !text.to_lowercase().contains("globex"),
                "{path} shows globex to an acme viewer: {src}"
            );
            assert!(
                text.contains("acme-viewer (viewer, tenant acme)"),
                "{path} lost the session: {text}"
            );
            for l in links(&c, &base).await {
                if !seen.contains(&l) {
                    queue.push_back(l);
                }
            }
        }
        for must in [
            "/ui/",
            "/ui/rollouts",
            "/ui/runs",
            "/ui/decisions",
            "/ui/improve",
        ] {
            assert!(
                seen.contains(must),
                "the crawl never reached {must}: {seen:?}"
            );
        }
        assert!(
            seen.iter().any(|p| p.starts_with("/ui/packs/")),
            "the crawl reached no pack page: {seen:?}"
        );
        assert!(
            seen.iter().any(|p| p.starts_with("/ui/rollouts/")),
            "the crawl reached no rollout page: {seen:?}"
        );
        c.goto(&format!("{base}/ui/")).await.expect("goto");
        shot(&c, "fleet-acme-viewer").await;
        c.close().await.expect("close the browser");
    });
    // The decision the browser made, as the API records it.
    let (_, v) = get(port, "/v1/decisions?pack=hr-ops-pack", &t.admin);
    let d = v["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .find(|d| d["decision"] == "rollback")
        .cloned()
        .unwrap_or_else(|| panic!("no rollback decision: {v}"));
    assert_eq!(
        d["decided_by"],
        format!("admin (POST /ui/rollouts/{id}/rollback)"),
        "{d}"
    );
    for name in [
        "login",
        "fleet",
        "pack",
        "rollouts",
        "rollout",
        "runs",
        "decisions",
        "improve",
        "rollout-rolled-back",
        "fleet-acme-viewer",
    ] {
        let p = screenshot_dir().join(format!("{name}.png"));
        assert!(
            std::fs::metadata(&p).is_ok_and(|m| m.len() > 1000),
            "{} missing or empty",
            p.display()
        );
    }
}

#[test]
fn a_real_browser_searches_the_market_and_reads_a_packs_compatibility_report() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let m = crate::console_market::market_fleet();
    let base = format!("http://127.0.0.1:{}", m.port);
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let c = driver.session().await;
        sign_in(&c, &base, &m.t.admin).await;
        // The navigation's Market link.
        c.find(Locator::Css("nav a[href='/ui/market']"))
            .await
            .expect("the Market link")
            .click()
            .await
            .expect("click");
        wait_path(&c, "/ui/market").await;
        let (_, text) = page_text(&c).await;
        assert!(
            text.contains("legal-intake") && text.contains("hr-ops"),
            "{text}"
        );
        // The catalog's HTML is text, never run.
        assert!(text.contains(crate::console_market::HOSTILE), "{text}");
        assert!(c.get_alert_text().await.is_err(), "a script ran");
        shot(&c, "market").await;
        // Search through the form.
        c.find(Locator::Css("input[name=q]"))
            .await
            .expect("search box")
            .send_keys("conflicts")
            .await
            .expect("type");
        c.find(Locator::Css(
            "form[action='/ui/market'] button[type=submit]",
        ))
        .await
        .expect("search button")
        .click()
        .await
        .expect("click");
        let start = Instant::now();
        while !c
            .current_url()
            .await
            .expect("url")
            .query()
            .is_some_and(|q| q.contains("q=conflicts"))
        {
            assert!(start.elapsed() < Duration::from_secs(20), "no search");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, text) = page_text(&c).await;
        assert!(
            text.contains("legal-intake") && !text.contains("hr-ops"),
            "{text}"
        );
        // The pack's page and its report.
        let pack = crate::console_market::PACK_PAGE;
        c.find(Locator::Css(&format!("a[href='{pack}']")))
            .await
            .expect("the pack link")
            .click()
            .await
            .expect("click");
        wait_path(&c, pack).await;
        let (_, text) = page_text(&c).await;
        for want in [
            "Compatibility with this fleet",
            "validates under this fleet",
            "Scope chains it adds",
            "Propose install",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        assert!(c.get_alert_text().await.is_err(), "a script ran");
        shot(&c, "market-pack").await;
        c.close().await.expect("close the browser");
    });
    for name in ["market", "market-pack"] {
        let p = screenshot_dir().join(format!("{name}.png"));
        assert!(
            std::fs::metadata(&p).is_ok_and(|m| m.len() > 1000),
            "{} missing or empty",
            p.display()
        );
    }
}
