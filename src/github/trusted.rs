//! The trusted side of the gate: what GitHub shows as `missionctl/gate` is
//! computed here, in a job the pull request cannot reach (a `workflow_run`
//! in the base repository), never taken from the pull request's own run.
//!
//! Everything that decides the verdict comes from a source the pull request
//! cannot write: the pull request's number, head, base and labels from the
//! GitHub API (an artifact's claims are at most a hint, checked against it);
//! the head's content fetched as git objects and read as data, never checked
//! out or run; the harness, judge, policies, thresholds and approval rules
//! from the base revision, which the workflow checked out from the base
//! repository.

use serde_json::Value as Json;

use super::{Gh, GhError};

/// The label a maintainer with write access puts on a fork's pull request to
/// allow paid model calls on the trusted side.
pub const PAID_EVALS_LABEL: &str = "missionctl-paid-evals";

/// A pull request as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFacts {
    pub number: u64,
    pub head_sha: String,
    pub base_sha: Option<String>,
    pub base_ref: String,
    pub open: bool,
    /// The base repository's default branch, as the API reports it.
    pub default_branch: Option<String>,
    /// From another repository, or from one since deleted (`head.repo: null`).
    pub from_fork: bool,
    pub labels: Vec<String>,
}

/// Whether paid model calls may run for a pull request: from the same
/// repository, or from a fork a maintainer labelled.
pub fn paid_calls_allowed(from_fork: bool, labels: &[String]) -> bool {
    !from_fork || labels.iter().any(|l| l == PAID_EVALS_LABEL)
}

impl PullFacts {
    pub fn paid_calls_allowed(&self) -> bool {
        paid_calls_allowed(self.from_fork, &self.labels)
    }

    /// Why this pull request gets no verdict, if it gets none: it is
    /// closed, or its base is not the default branch. A check run is tied to
    /// the head commit only, so a success earned against another base (an
    /// old branch, with that branch's rules and approvals) would show on the
    /// same commit's pull request to the default branch.
    pub fn not_judged(&self) -> Option<String> {
        if !self.open {
            return Some(format!(
                "pull request #{} is closed: closed pull requests are not judged",
                self.number
            ));
        }
        let default = self.default_branch.as_deref().unwrap_or("main");
        (self.base_ref != default).then(|| {
            format!(
                "pull request #{} is based on `{}`, not the default branch `{default}`: only pull requests to `{default}` are judged (their rules and approvals are the default branch's)",
                self.number, self.base_ref
            )
        })
    }
}

/// Read pull request `pr` from the API.
pub async fn pull_facts(gh: &Gh, pr: u64) -> Result<PullFacts, GhError> {
    let v = gh
        .get(&format!("/repos/{}/{}/pulls/{pr}", gh.owner, gh.repo))
        .await?;
    Ok(parse_pull(&v, &format!("{}/{}", gh.owner, gh.repo)))
}

/// The facts of a pull request object; `repository` is the base `owner/name`.
pub fn parse_pull(v: &Json, repository: &str) -> PullFacts {
    let s = |p: &str| v.pointer(p).and_then(Json::as_str).map(String::from);
    let base_repo = s("/base/repo/full_name").unwrap_or_else(|| repository.to_string());
    let head_repo = s("/head/repo/full_name");
    PullFacts {
        number: v.get("number").and_then(Json::as_u64).unwrap_or_default(),
        head_sha: s("/head/sha").unwrap_or_default(),
        base_sha: s("/base/sha"),
        base_ref: s("/base/ref").unwrap_or_else(|| "main".into()),
        open: s("/state").as_deref() == Some("open"),
        default_branch: s("/base/repo/default_branch"),
        from_fork: head_repo.is_none_or(|h| !h.eq_ignore_ascii_case(&base_repo)),
        labels: super::event::label_names(v),
    }
}

/// A pull request number from an untrusted hint (the gate run's artifact):
/// digits only, at most 20 of them; anything else is no hint.
pub fn pr_hint(text: &str) -> Option<u64> {
    let t = text.trim();
    (!t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()))
        .then(|| t.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn forks_deleted_forks_and_labels() {
        let same = json!({"number": 3, "state": "open", "head": {"sha": "h", "repo": {"full_name": "acme/packs"}}, "base": {"sha": "b", "ref": "main", "repo": {"full_name": "acme/packs"}}});
        let f = parse_pull(&same, "acme/packs");
        assert!(!f.from_fork && f.open && f.paid_calls_allowed());
        let mut fork = same.clone();
        fork["head"]["repo"]["full_name"] = json!("someone/packs");
        assert!(!parse_pull(&fork, "acme/packs").paid_calls_allowed());
        fork["labels"] = json!([{"name": PAID_EVALS_LABEL}]);
        assert!(parse_pull(&fork, "acme/packs").paid_calls_allowed());
        let mut deleted = same;
        deleted["head"]["repo"] = Json::Null;
        assert!(parse_pull(&deleted, "acme/packs").from_fork);
    }

    #[test]
    fn hints_are_digits_only() {
        assert_eq!(pr_hint("42\n"), Some(42));
        assert_eq!(pr_hint("42; rm -rf /"), None);
        assert_eq!(pr_hint(""), None);
        assert_eq!(pr_hint(&"9".repeat(30)), None);
    }
}
