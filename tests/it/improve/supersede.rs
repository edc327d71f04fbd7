//! Issue 31: where the tier allows it (`supersede_open_proposals`), a
//! different proposal while one is open becomes a new branch and pull
//! request naming the one it supersedes, which is commented on and closed,
//! as on GitHub; nothing is force-pushed onto the old one.

use serde_json::Value;

use super::{branch_of, db, drop_escalation_rule, fake_github_env, improve};
use crate::github_server::GithubServer;
use crate::util::{TestContext, git};

#[test]
fn a_different_proposal_supersedes_the_open_one_where_the_tier_allows() {
    let gh = GithubServer::start();
    let f = TestContext::fleet("unused");
    f.edit(
        "policies/tiers.yaml",
        "  max_optimization_spend_per_run: 2.00\n  propose_partial_fixes: true\n",
        "  max_optimization_spend_per_run: 2.00\n  propose_partial_fixes: true\n  supersede_open_proposals: true\n",
    );
    f.commit_all("Team proposals may supersede");
    drop_escalation_rule(&f);
    f.push();
    gh.state.lock().expect("s").remote = Some(f.remote.clone());
    let db = db(&f, "state.db");
    let env = fake_github_env(&gh);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = improve(&f, &db, &["--pack", "hr-ops-pack", "--open-pr"], &env);
    let old_branch = branch_of(&first);
    let old = first["pull_request"]["number"].as_u64().expect("pr");
    let old_tip = git(&f.remote, &["rev-parse", &old_branch]);
    // Main rewords the case the demo optimiser quotes: a different proposal.
    f.edit(
        "packs/domains/hr-ops/evals/cases.yaml",
        "description: Escalates a harassment report instead of handling it",
        "description: Hands a harassment complaint to HR instead of handling it",
    );
    f.commit_all("Reword the harassment case");
    f.push();
    let again = improve(&f, &db, &["--pack", "hr-ops-pack", "--open-pr"], &env);
    let new_branch = branch_of(&again);
    assert_ne!(new_branch, old_branch);
    assert_eq!(again["supersedes"]["number"], old, "{again:#}");
    let new = again["pull_request"]["number"].as_u64().expect("pr");
    assert_ne!(new, old);
    assert_eq!(again["pull_request"]["existing"], false);
    assert!(
        again["published"]
            .as_str()
            .is_some_and(|p| p.contains(&format!("supersedes #{old}"))),
        "{again:#}"
    );
    let s = gh.state.lock().expect("s");
    let pr = |n: u64| -> Value {
        s.open_pulls
            .iter()
            .find(|p| p["number"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no #{n}"))
    };
    // The new pull request names the one it supersedes.
    let body = pr(new)["body"].as_str().expect("body").to_string();
    assert!(body.contains(&format!("Supersedes #{old}")), "{body}");
    assert_eq!(pr(new)["head"]["ref"], new_branch.as_str());
    // The old one: commented on, then closed, as GitHub does it.
    assert_eq!(pr(old)["state"], "closed");
    let comment = s
        .comments
        .iter()
        .find(|c| c["issue"] == old)
        .expect("a comment on the old pull request");
    assert!(
        comment["body"]
            .as_str()
            .is_some_and(|b| b.contains(&format!("Superseded by #{new}"))),
        "{comment:#}"
    );
    let order: Vec<(String, String)> = s
        .log
        .iter()
        .filter(|q| q.method != "GET")
        .map(|q| (q.method.clone(), q.path.clone()))
        .collect();
    let at = |m: &str, suffix: &str| {
        order
            .iter()
            .position(|(mm, p)| mm == m && p.ends_with(suffix))
            .unwrap_or_else(|| panic!("no {m} {suffix}: {order:?}"))
    };
    assert!(at("POST", "/pulls") < at("POST", &format!("/issues/{old}/comments")));
    assert!(at("POST", &format!("/issues/{old}/comments")) < at("PATCH", &format!("/pulls/{old}")));
    drop(s);
    // Nothing was forced onto the old branch; the new one is on the remote.
    assert_eq!(git(&f.remote, &["rev-parse", &old_branch]), old_tip);
    assert_eq!(
        git(&f.remote, &["rev-parse", &new_branch]),
        f.git(&["rev-parse", &new_branch])
    );
}
