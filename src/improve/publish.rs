//! Propose, never promote: the winning candidate becomes a branch with one
//! commit and, when asked, a pull request through GitHub's REST API. One
//! open improvement pull request per pack: a rerun finds it instead of
//! opening another. A proposal is identified by its content digest, which
//! names its branch: the same content is never pushed again, and different
//! content never replaces what an open pull request proposes.

use serde_json::{Value as Json, json};

use crate::github::{Gh, GhError};

use super::report::PullRequest;

/// Who the worker's commits are by.
pub const AUTHOR: (&str, &str) = ("missionctl improve", "missionctl-improve@localhost");

/// The body GitHub accepts at most (65,536 characters), with room to spare.
const MAX_BODY: usize = 60_000;

/// A proposal's identity: the SHA-256 of what it writes (each edited
/// repository path and its full new text, the pack file with its version
/// included), in hex. The same content is the same proposal, whichever run
/// or commit produced it.
pub fn digest(edits: &std::collections::BTreeMap<String, String>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (p, t) in edits {
        h.update(p.as_bytes());
        h.update([0]);
        h.update(t.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The branch a proposal is published on: named by its pack, version and
/// content digest (12 hex digits), so a branch never has to change to hold
/// another proposal: different content is a different branch.
pub fn branch_name(pack_id: &str, version: &str, digest: &str) -> String {
    let short: String = digest.chars().take(12).collect();
    format!("missionctl/improve/{pack_id}/{version}-{short}")
}

fn prefix(pack_id: &str) -> String {
    format!("missionctl/improve/{pack_id}/")
}

/// The commit message, with trailers naming the run and the proposal.
pub fn message(
    pack_id: &str,
    from: &str,
    to: &str,
    rationale: &str,
    run_id: &str,
    digest: &str,
) -> String {
    let why: String = rationale.chars().take(2000).collect();
    format!(
        "Improve {pack_id} {from} -> {to}\n\n{why}\n\nMissionctl-Improve-Run: {run_id}\nMissionctl-Improve-Proposal: {digest}\n"
    )
}

/// An open pull request of this repository (not a fork) from one of the
/// worker's branches for `pack_id`.
fn ours<'a>(gh: &Gh, pulls: &'a [Json], pack_id: &str) -> Option<&'a Json> {
    pulls.iter().find(|p| is_ours(gh, p, pack_id))
}

fn is_ours(gh: &Gh, p: &Json, pack_id: &str) -> bool {
    let full = format!("{}/{}", gh.owner, gh.repo);
    let same_repo = p
        .pointer("/head/repo/full_name")
        .and_then(Json::as_str)
        .is_some_and(|n| n.eq_ignore_ascii_case(&full));
    let branch = p.pointer("/head/ref").and_then(Json::as_str).unwrap_or("");
    same_repo && branch.starts_with(&prefix(pack_id))
}

/// A pull request from this very branch (so the same proposal) that was
/// closed without being merged: a reviewer turned this content down, and
/// it is not proposed again.
pub async fn rejected(
    gh: &Gh,
    pack_id: &str,
    branch: &str,
) -> Result<Option<PullRequest>, GhError> {
    let pulls = gh
        .get_all(&format!(
            "/repos/{}/{}/pulls?state=closed&head={}:{branch}",
            gh.owner, gh.repo, gh.owner
        ))
        .await?;
    Ok(pulls
        .iter()
        .filter(|p| is_ours(gh, p, pack_id))
        .filter(|p| p.pointer("/head/ref").and_then(Json::as_str) == Some(branch))
        .filter(|p| p.get("merged_at").is_none_or(Json::is_null))
        .map(|p| as_pull(p, true))
        .max_by_key(|p| p.number))
}

/// After opening pull request `number`: the lowest-numbered other open
/// improvement pull request for `pack_id`, when another run opened one at
/// the same time (each listed none before opening its own). The lowest
/// number wins, so every racer agrees on which one stays.
pub async fn raced(gh: &Gh, pack_id: &str, number: u64) -> Result<Option<PullRequest>, GhError> {
    let pulls = gh
        .get_all(&format!("/repos/{}/{}/pulls?state=open", gh.owner, gh.repo))
        .await?;
    Ok(pulls
        .iter()
        .filter(|p| is_ours(gh, p, pack_id))
        .map(|p| as_pull(p, true))
        .filter(|p| p.number < number)
        .min_by_key(|p| p.number))
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

/// Supersede open pull request `old` by `new`, as a person would on
/// GitHub: a comment on the old one naming the new one, then the old one
/// closed (its branch is left as it is).
pub async fn supersede(gh: &Gh, old: u64, new: &PullRequest) -> Result<(), GhError> {
    gh.post(
        &format!("/repos/{}/{}/issues/{old}/comments", gh.owner, gh.repo),
        &json!({"body": format!(
            "Superseded by #{} ({}): `missionctl improve` found a different proposal for this pack. This pull request is closed; its branch is kept.",
            new.number, new.url
        )}),
    )
    .await?;
    gh.patch(
        &format!("/repos/{}/{}/pulls/{old}", gh.owner, gh.repo),
        &json!({"state": "closed"}),
    )
    .await
    .map(|_| ())
}

/// The label a partial fix's pull request carries.
pub const PARTIAL_LABEL: &str = "missionctl:partial-fix";

/// Add `PARTIAL_LABEL` to pull request `number` (GitHub creates the label
/// when the repository has none of that name).
pub async fn label_partial(gh: &Gh, number: u64) -> Result<(), GhError> {
    gh.post(
        &format!("/repos/{}/{}/issues/{number}/labels", gh.owner, gh.repo),
        &json!({"labels": [PARTIAL_LABEL]}),
    )
    .await
    .map(|_| ())
}

/// Refresh the body of open pull request `number` (the same proposal, with
/// this run's evidence). Nothing is pushed: the commits stay as reviewed.
pub async fn refresh(gh: &Gh, number: u64, body: &str) -> Result<(), GhError> {
    gh.patch(
        &format!("/repos/{}/{}/pulls/{number}", gh.owner, gh.repo),
        &json!({"body": clip(body)}),
    )
    .await
    .map(|_| ())
}

fn clip(body: &str) -> String {
    let truncated = body.chars().count() > MAX_BODY;
    let mut body: String = body.chars().take(MAX_BODY).collect();
    if truncated {
        body.push_str(
            "\n\n(truncated: the full report is in `missionctl improve --list --format json`)\n",
        );
    }
    body
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
    let body = clip(body);
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
