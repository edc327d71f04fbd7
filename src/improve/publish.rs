//! Propose, never promote: the winning candidate becomes a branch with one
//! commit and, when asked, a pull request through GitHub's REST API. One
//! open improvement pull request per pack: a rerun finds it instead of
//! opening another.

use serde_json::{Value as Json, json};

use crate::github::{Gh, GhError};

use super::report::PullRequest;

/// Who the worker's commits are by.
pub const AUTHOR: (&str, &str) = ("missionctl improve", "missionctl-improve@localhost");

/// The body GitHub accepts at most (65,536 characters), with room to spare.
const MAX_BODY: usize = 60_000;

/// The branch a candidate is proposed on: one name per pack and version, so
/// a rerun that finds the same candidate lands on the same branch.
pub fn branch_name(pack_id: &str, version: &str) -> String {
    format!("missionctl/improve/{pack_id}/{version}")
}

fn prefix(pack_id: &str) -> String {
    format!("missionctl/improve/{pack_id}/")
}

/// The commit message, with a trailer naming the run.
pub fn message(pack_id: &str, from: &str, to: &str, rationale: &str, run_id: &str) -> String {
    let why: String = rationale.chars().take(2000).collect();
    format!("Improve {pack_id} {from} -> {to}\n\n{why}\n\nMissionctl-Improve-Run: {run_id}\n")
}

/// An open pull request of this repository (not a fork) from one of the
/// worker's branches for `pack_id`.
fn ours<'a>(gh: &Gh, pulls: &'a [Json], pack_id: &str) -> Option<&'a Json> {
    let full = format!("{}/{}", gh.owner, gh.repo);
    pulls.iter().find(|p| {
        let same_repo = p
            .pointer("/head/repo/full_name")
            .and_then(Json::as_str)
            .is_some_and(|n| n.eq_ignore_ascii_case(&full));
        let branch = p.pointer("/head/ref").and_then(Json::as_str).unwrap_or("");
        same_repo && branch.starts_with(&prefix(pack_id))
    })
}

fn as_pull(p: &Json, existing: bool) -> PullRequest {
    PullRequest {
        number: p.get("number").and_then(Json::as_u64).unwrap_or(0),
        url: p
            .get("html_url")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string(),
        existing,
    }
}

/// What to do about a pull request for `pack_id`, before pushing anything.
pub enum Existing {
    /// None is open: push and open one.
    None,
    /// One is open from this very branch: pushing updates it.
    Same(PullRequest),
    /// One is open from another of the worker's branches for this pack.
    Other(PullRequest, String),
}

pub async fn existing(gh: &Gh, pack_id: &str, branch: &str) -> Result<Existing, GhError> {
    let pulls = gh
        .get_all(&format!("/repos/{}/{}/pulls?state=open", gh.owner, gh.repo))
        .await?;
    Ok(match ours(gh, &pulls, pack_id) {
        None => Existing::None,
        Some(p) => {
            let head = p
                .pointer("/head/ref")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            if head == branch {
                Existing::Same(as_pull(p, true))
            } else {
                Existing::Other(as_pull(p, true), head)
            }
        }
    })
}

/// Open the pull request. When GitHub fails after creating it (a 5xx once
/// the write happened), the open pull requests are read again and the one
/// just created is returned rather than opening a second.
pub async fn open(
    gh: &Gh,
    pack_id: &str,
    branch: &str,
    base: &str,
    title: &str,
    body: &str,
) -> Result<PullRequest, GhError> {
    let truncated = body.chars().count() > MAX_BODY;
    let mut body: String = body.chars().take(MAX_BODY).collect();
    if truncated {
        body.push_str(
            "\n\n(truncated: the full report is in `missionctl improve --list --format json`)\n",
        );
    }
    let created = gh
        .post(
            &format!("/repos/{}/{}/pulls", gh.owner, gh.repo),
            &json!({"title": title, "head": branch, "base": base, "body": body, "maintainer_can_modify": false}),
        )
        .await;
    match created {
        Ok(p) => Ok(as_pull(&p, false)),
        Err(e) => match existing(gh, pack_id, branch).await {
            Ok(Existing::Same(p)) => Ok(PullRequest {
                existing: false,
                ..p
            }),
            _ => Err(e),
        },
    }
}
