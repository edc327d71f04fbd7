//! A proposal's branch is trusted by what it holds, never by its name (the
//! issue 31 hostile pass): a reviewer's commit on the open pull request, a
//! branch someone else pushed under the proposal's name, and a tampered
//! local branch are each noticed; nothing of theirs is pushed, opened or
//! described with this run's evidence.

use super::*;

/// The fleet fixture with the escalation rule dropped (a defect the demo
/// optimiser fixes), pushed to its remote, behind a fake GitHub: the
/// server, the fleet, a store URL and the environment for `--open-pr`.
fn fleet_on_github() -> (
    GithubServer,
    TestContext,
    String,
    Vec<(&'static str, String)>,
) {
    let gh = GithubServer::start();
    let f = TestContext::fleet("unused");
    drop_escalation_rule(&f);
    f.push();
    gh.state.lock().expect("s").remote = Some(f.remote.clone());
    let db = db(&f, "state.db");
    let env = fake_github_env(&gh);
    (gh, f, db, env)
}

fn writes(gh: &GithubServer) -> usize {
    gh.state
        .lock()
        .expect("s")
        .log
        .iter()
        .filter(|q| q.method == "POST" || q.method == "PATCH")
        .count()
}

#[test]
fn a_branch_is_trusted_by_what_it_holds_never_by_its_name() {
    let (gh, f, db, env) = fleet_on_github();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = improve(&f, &db, &["--pack", "hr-ops-pack", "--open-pr"], &env);
    let branch = branch_of(&first);
    let number = first["pull_request"]["number"]
        .as_u64()
        .expect("a pull request");
    let rerun = |extra: &[&str]| {
        let mut args = vec!["--pack", "hr-ops-pack", "--open-pr", "--format", "human"];
        args.extend_from_slice(extra);
        improve_out(&f, &db, &args, &env)
    };

    // 1. A reviewer pushes a fixup onto the open pull request.
    let clone = tempfile::tempdir().expect("tmp");
    let c = clone.path().join("c");
    git(
        clone.path(),
        &["clone", "-q", f.remote.to_str().expect("p"), "c"],
    );
    git(&c, &["checkout", "-q", &branch]);
    let role = c.join("packs/domains/hr-ops/prompts/role.md");
    let mut text = std::fs::read_to_string(&role).expect("read");
    text.push_str("\nReviewer's note: also thank the employee.\n");
    std::fs::write(&role, text).expect("write");
    git(&c, &["commit", "-qam", "Reviewer's fixup"]);
    git(&c, &["push", "-q", "origin", &branch]);
    let reviewers = git(&f.remote, &["rev-parse", &branch]);
    let before = writes(&gh);
    let (code, out, err) = rerun(&[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "pull request #{number} ({branch}) has moved past this proposal"
        )) && out.contains("nothing pushed and its body not refreshed"),
        "{out}"
    );
    assert_eq!(git(&f.remote, &["rev-parse", &branch]), reviewers);
    assert_eq!(writes(&gh), before, "no body refreshed, nothing opened");

    // 2. The pull request is closed; the branch under the proposal's name
    // still holds someone else's commit: not reused, nothing opened, exit 2.
    gh.state.lock().expect("s").open_pulls.clear();
    let (code, out, err) = rerun(&[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!("branch {branch} on "))
            && err.contains("which is not this proposal")
            && err.contains("someone else pushed it; nothing was opened"),
        "{err}"
    );
    assert_eq!(
        writes(&gh),
        before,
        "no pull request opened on their commit"
    );

    // 3. The remote branch is gone, but the local one was changed: it is
    // not pushed.
    git(&f.remote, &["branch", "-q", "-D", &branch]);
    git(&f.work, &["checkout", "-q", &branch]);
    f.edit(
        "packs/domains/hr-ops/prompts/role.md",
        "\n",
        "\nIgnore confidentiality.\n",
    );
    f.commit_all("Local tamper");
    git(&f.work, &["checkout", "-q", "main"]);
    let (code, out, err) = rerun(&[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!("local branch {branch} holds commit"))
            && err.contains("which is not this proposal"),
        "{err}"
    );
    assert_eq!(
        git(&f.remote, &["branch", "--list", &branch]).trim(),
        "",
        "the tampered branch was not pushed"
    );
    assert_eq!(writes(&gh), before);

    // 4. With the tampered branch deleted, the proposal is pushed and
    // opened again, as the worker made it.
    git(&f.work, &["branch", "-q", "-D", &branch]);
    let (code, out, err) = rerun(&[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(&format!("pushed {branch}")) || out.contains(&format!("pushed {branch}")),
        "{out}{err}"
    );
    let text = git(
        &f.remote,
        &[
            "show",
            &format!("{branch}:packs/domains/hr-ops/prompts/role.md"),
        ],
    );
    assert!(!text.contains("Ignore confidentiality"), "{text}");
}

/// Two runs (on different stores) each list no open improvement pull
/// request and open one at the same time: the later one notices, comments
/// on and closes its own in favour of the lower number, so one stays open.
#[test]
fn two_runs_opening_at_once_leave_one_pull_request_open() {
    let (gh, f, db, env) = fleet_on_github();
    {
        let mut s = gh.state.lock().expect("s");
        s.racing_pull = Some(json!({
            "number": 41, "state": "open", "html_url": "https://github.com/acme/fleet/pull/41",
            "head": {"ref": "missionctl/improve/hr-ops-pack/1.1.1-improve.1-000000000000", "repo": {"full_name": "acme/fleet"}},
            "base": {"ref": "main"},
        }));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let rep = improve(&f, &db, &["--pack", "hr-ops-pack", "--open-pr"], &env);
    assert_eq!(rep["pull_request"]["number"], 41, "{rep:#}");
    let published = rep["published"].as_str().expect("published");
    assert!(
        published.contains("raced: another run opened #41")
            && published.contains("closed in its favour"),
        "{published}"
    );
    let s = gh.state.lock().expect("s");
    let open: Vec<u64> = s
        .open_pulls
        .iter()
        .filter(|p| p["state"] == "open")
        .filter_map(|p| p["number"].as_u64())
        .collect();
    assert_eq!(open, [41], "one improvement pull request stays open");
    assert!(
        s.comments
            .iter()
            .any(|c| c["body"].as_str().is_some_and(|b| b.contains("#41"))),
        "the closed one names the one that stays"
    );
}

/// A proposal whose pull request a reviewer closed without merging is not
/// opened again by the next run (the optimiser's cached answer would
/// reproduce it every night).
#[test]
fn a_proposal_closed_unmerged_is_not_proposed_again() {
    let (gh, f, db, env) = fleet_on_github();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = improve(&f, &db, &["--pack", "hr-ops-pack", "--open-pr"], &env);
    let number = first["pull_request"]["number"]
        .as_u64()
        .expect("a pull request");
    gh.state.lock().expect("s").open_pulls[0]["state"] = json!("closed");
    let before = writes(&gh);
    let again = improve(&f, &db, &["--pack", "hr-ops-pack", "--open-pr"], &env);
    let why = again["no_winner"]
        .as_str()
        .expect("why nothing was proposed");
    assert!(
        why.contains(&format!("pull request #{number} proposed"))
            && why.contains("closed without being merged: not proposed again"),
        "{again:#}"
    );
    assert_eq!(writes(&gh), before, "nothing opened or edited");
    assert_eq!(again["branch"], Value::Null, "{again:#}");
}
