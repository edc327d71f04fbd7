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
use crate::model::Verdict;

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

/// A merge queue's temporary branch, as GitHub names it:
/// `gh-readonly-queue/<base branch>/pr-<number>-<sha>`. The group holds the
/// base branch's tip, the pull requests queued ahead, and pull request
/// `pr`, the one this group decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    /// The branch as fetched: `refs/heads/gh-readonly-queue/...`.
    pub refname: String,
    /// The queue's base branch (may contain `/`).
    pub base: String,
    pub pr: u64,
}

/// Parse a merge group's head ref (with or without `refs/heads/`). Anything
/// else is refused with what was expected: a verdict is never posted for a
/// group whose pull request cannot be named.
pub fn parse_queue_ref(r: &str) -> Result<QueueRef, String> {
    let bad = || {
        format!(
            "`{r}` is not a merge queue branch: expected gh-readonly-queue/<base>/pr-<number>-<sha> (the merge group's head_ref, or workflow_run.head_branch)"
        )
    };
    let short = r.strip_prefix("refs/heads/").unwrap_or(r);
    let rest = short.strip_prefix("gh-readonly-queue/").ok_or_else(bad)?;
    let (base, last) = rest.rsplit_once('/').ok_or_else(bad)?;
    let (number, sha) = last
        .strip_prefix("pr-")
        .and_then(|l| l.split_once('-'))
        .ok_or_else(bad)?;
    let pr = number
        .parse::<u64>()
        .ok()
        .filter(|_| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(bad)?;
    let clean = |s: &str| {
        !s.is_empty()
            && !s.split('/').any(|c| c.is_empty() || c == "." || c == "..")
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    };
    if !clean(base) || sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(QueueRef {
        refname: format!("refs/heads/{short}"),
        base: base.to_string(),
        pr,
    })
}

/// A merge group's verdict from its evaluations, all with the queue base's
/// rules: the pull requests it holds, each on its own (its approvals read
/// from its reviews; `pull` is the worst of them), and the group's combined
/// content (base tip, the pull requests ahead, this one). The group passes
/// only when every pull request in it passes and the combination blocks
/// nothing. The combination's approval needs are not asked again: each of
/// its changes was approved in its own pull request.
pub fn queue_verdict(pull: Verdict, group: Verdict) -> Verdict {
    match (pull, group) {
        (Verdict::Pass, Verdict::Pass | Verdict::WaitingForApproval) => Verdict::Pass,
        (Verdict::Pass, other) => other,
        (Verdict::Blocked, _) | (_, Verdict::Blocked) => Verdict::Blocked,
        (other, _) => other,
    }
}

/// The verdict that holds the most of several pull requests' own:
/// blocked over waiting or not evaluated, those over pass.
pub fn worst(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
    let rank = |v: Verdict| match v {
        Verdict::Pass => 0,
        Verdict::WaitingForApproval => 1,
        Verdict::NotEvaluated => 2,
        Verdict::Blocked => 3,
    };
    verdicts
        .into_iter()
        .max_by_key(|v| rank(*v))
        .unwrap_or(Verdict::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queue_refs_name_their_base_and_pull_request() {
        let q = parse_queue_ref(
            "refs/heads/gh-readonly-queue/main/pr-104-929f8209d40f77f4abc622a499c93a83babdbe64",
        )
        .expect("the payload's ref");
        assert_eq!(q.base, "main");
        assert_eq!(q.pr, 104);
        assert!(q.refname.starts_with("refs/heads/gh-readonly-queue/main/"));
        let nested = parse_queue_ref("gh-readonly-queue/release/1.x/pr-7-abc123").expect("nested");
        assert_eq!((nested.base.as_str(), nested.pr), ("release/1.x", 7));
        for bad in [
            "main",
            "gh-readonly-queue/main",
            "gh-readonly-queue/main/pr--abc",
            "gh-readonly-queue/main/pr-12",
            "gh-readonly-queue/main/pr-+12-abc",
            "gh-readonly-queue/main/pr-12-xyz",
            "gh-readonly-queue/../x/pr-1-abc",
            "gh-readonly-queue//pr-1-abc",
            "gh-readonly-queue/ma in/pr-1-abc",
        ] {
            let e = parse_queue_ref(bad).expect_err(bad);
            assert!(
                e.contains("gh-readonly-queue/<base>/pr-<number>-<sha>"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_group_passes_only_with_its_pull_request() {
        use Verdict::*;
        assert_eq!(queue_verdict(Pass, Pass), Pass);
        assert_eq!(queue_verdict(Pass, WaitingForApproval), Pass);
        assert_eq!(queue_verdict(Pass, Blocked), Blocked);
        assert_eq!(queue_verdict(Pass, NotEvaluated), NotEvaluated);
        assert_eq!(queue_verdict(WaitingForApproval, Pass), WaitingForApproval);
        assert_eq!(queue_verdict(WaitingForApproval, Blocked), Blocked);
        assert_eq!(queue_verdict(NotEvaluated, Pass), NotEvaluated);
        assert_eq!(queue_verdict(Blocked, Pass), Blocked);
        assert_eq!(worst([Pass, WaitingForApproval, Pass]), WaitingForApproval);
        assert_eq!(worst([NotEvaluated, Blocked]), Blocked);
        assert_eq!(worst([Pass]), Pass);
    }

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
