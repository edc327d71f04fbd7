//! Issue 31, report 7, end to end: with a GitHub App configured, `improve
//! --open-pr` signs a JWT with the App's key, exchanges it for an
//! installation token (the fake GitHub verifies the JWT as GitHub does) and
//! opens the pull request with that token, never with the workflow's.

use super::{branch_of, db, drop_escalation_rule, improve, improve_out};
use crate::github_server::{App, GithubServer};
use crate::util::TestContext;

/// An RSA key pair made with openssl: (private PEM text, public PEM path).
fn key_pair(dir: &std::path::Path, name: &str) -> (String, std::path::PathBuf) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let ok = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("openssl genrsa");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ok = std::process::Command::new("openssl")
        .arg("rsa")
        .arg("-in")
        .arg(&key)
        .args(["-pubout", "-out"])
        .arg(&public)
        .output()
        .expect("openssl rsa");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    (std::fs::read_to_string(&key).expect("key"), public)
}

#[test]
fn open_pr_as_a_github_app_uses_the_installation_token_not_the_workflow_token() {
    let keys = tempfile::tempdir().expect("tmp");
    let (private, public) = key_pair(keys.path(), "app");
    let gh = GithubServer::start();
    gh.state.lock().expect("s").app = Some(App {
        id: 4242,
        public_key_pem: public,
        installation: 77,
        token: "ghs_installation77".into(),
    });
    let f = TestContext::fleet("unused");
    drop_escalation_rule(&f);
    f.push();
    gh.state.lock().expect("s").remote = Some(f.remote.clone());
    let env = [
        ("GITHUB_API_URL", gh.url.as_str()),
        ("GITHUB_REPOSITORY", "acme/fleet"),
        ("GITHUB_TOKEN", ""),
        ("GITHUB_APP_ID", "4242"),
        ("GITHUB_APP_PRIVATE_KEY", private.as_str()),
        // The workflow's own token, as Actions would offer it for git.
        ("MISSIONCTL_GIT_TOKEN", "ghs_workflow"),
    ];
    let rep = improve(
        &f,
        &db(&f, "s.db"),
        &["--pack", "hr-ops-pack", "--open-pr"],
        &env,
    );
    let branch = branch_of(&rep);
    let s = gh.state.lock().expect("s");
    // The JWT was checked and accepted, then exchanged for the token.
    assert!(
        !s.jwt_checks.is_empty() && s.jwt_checks.iter().all(Result::is_ok),
        "{:?}",
        s.jwt_checks
    );
    let exchange = s
        .log
        .iter()
        .find(|q| q.method == "POST" && q.path == "/app/installations/77/access_tokens")
        .expect("the token exchange");
    assert!(
        exchange
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer ey"))
    );
    // The pull request is opened with the installation token.
    let open = s
        .log
        .iter()
        .find(|q| q.method == "POST" && q.path == "/repos/acme/fleet/pulls")
        .expect("the pull request");
    assert!(
        open.authorization
            .as_deref()
            .is_some_and(|a| a.ends_with("ghs_installation77")),
        "{:?}",
        open.authorization
    );
    for q in &s.log {
        assert!(
            !q.authorization
                .as_deref()
                .unwrap_or("")
                .contains("ghs_workflow"),
            "the workflow token was sent: {q:?}"
        );
    }
    let pr = s
        .open_pulls
        .iter()
        .find(|p| p["head"]["ref"] == branch.as_str())
        .expect("opened");
    assert_eq!(pr["number"], rep["pull_request"]["number"]);
    drop(s);

    // A key GitHub does not know: the JWT is refused, and so is the run
    // (exit 2, naming the App's token), before anything is pushed.
    let (other, _) = key_pair(keys.path(), "other");
    let env = [
        ("GITHUB_API_URL", gh.url.as_str()),
        ("GITHUB_REPOSITORY", "acme/fleet"),
        ("GITHUB_TOKEN", ""),
        ("GITHUB_APP_ID", "4242"),
        ("GITHUB_APP_PRIVATE_KEY", other.as_str()),
    ];
    let before = crate::util::git(&f.remote, &["branch", "--list", "missionctl/*"]);
    let (code, _, err) = improve_out(
        &f,
        &db(&f, "t.db"),
        &["--pack", "hr-ops-pack", "--open-pr"],
        &env,
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("signature does not verify") || err.contains("installation"),
        "{err}"
    );
    assert!(
        gh.state.lock().expect("s").jwt_checks.iter().any(|c| c
            .as_ref()
            .is_err_and(|e| e.contains("signature does not verify"))),
        "the bad JWT was refused"
    );
    assert_eq!(
        crate::util::git(&f.remote, &["branch", "--list", "missionctl/*"]),
        before,
        "nothing pushed"
    );
}
