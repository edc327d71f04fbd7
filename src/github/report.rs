//! Posting the gate's evidence where reviewers look: one sticky comment per
//! pull request (found by a hidden marker and edited in place), a check run
//! `missionctl/gate` with annotations on the pack files' lines (at most 50
//! per request, as GitHub allows), a commit status where check runs are not
//! allowed, and the job summary and outputs inside Actions.

use std::path::Path;

use serde::Serialize;
use serde_json::{Value as Json, json};

use super::{Gh, GhError};
use crate::gate::Evidence;
use crate::model::Verdict;

pub const MARKER: &str = "<!-- missionctl:gate -->";
/// GitHub rejects comment bodies and check-run texts over 65,536 characters.
pub const GITHUB_TEXT_LIMIT: usize = 65_536;
pub const ANNOTATIONS_PER_REQUEST: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "cannot read the evidence in {dir}: {message}; run `missionctl gate --out {dir}` first"
    )]
    Evidence { dir: String, message: String },
    #[error(transparent)]
    Gh(#[from] GhError),
    #[error(
        "pull request #{pr} is at {head}, not at the evaluated commit {sha}; not posting (re-run the gate on the new head)"
    )]
    Mismatch { pr: u64, head: String, sha: String },
    #[error(
        "the evidence is for commit `{evidence}`, not for `{sha}`; a verdict is only posted on the commit it was computed for (drop --sha, or gate {sha})"
    )]
    NotThisCommit { evidence: String, sha: String },
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Outcome {
    pub comment_id: Option<u64>,
    pub comment_created: bool,
    pub check_run_id: Option<u64>,
    pub annotation_requests: usize,
    pub status_fallback: bool,
    pub comment_trimmed: bool,
}

/// Cut `s` to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

/// The comment body: the whole evidence when it fits; otherwise the verdict,
/// the blocking list and the summary table, with a note where the rest is.
pub(crate) fn comment_body(markdown: &str, check_name: &str) -> (String, bool) {
    let note = format!(
        "\n\n> The full evidence (guardrail ledger, prompt diffs, run details) is in the `{check_name}` check run and the workflow's `missionctl-evidence` artifact.\n"
    );
    let budget = GITHUB_TEXT_LIMIT - MARKER.len() - 2;
    if markdown.len() <= budget {
        return (format!("{MARKER}\n{markdown}"), false);
    }
    let keep = |title: &str| {
        title.starts_with("Blocking")
            || title.starts_with("Packs")
            || title.starts_with("Approvals")
    };
    let mut parts = markdown.split("\n#### ");
    let mut out = parts.next().unwrap_or_default().to_string();
    for section in parts {
        if keep(section) {
            out.push_str("\n#### ");
            out.push_str(section);
        }
    }
    let room = budget.saturating_sub(note.len() + 200);
    let mut body = cut(&out, room).to_string();
    if body.len() < out.len() {
        let dropped = out[body.len()..].lines().count();
        body.push_str(&format!("\n\n… {dropped} more lines in the check run."));
    }
    body.push_str(&note);
    (format!("{MARKER}\n{body}"), true)
}

/// Check-run annotations from the evidence: validation errors at their file
/// and line, regressions at the eval case that caught them.
pub fn annotations(evidence: &Evidence) -> Vec<Json> {
    let mut out = Vec::new();
    for d in &evidence.validation_errors {
        let line = d.line.max(1);
        out.push(json!({
            "path": d.file,
            "start_line": line,
            "end_line": line,
            "annotation_level": "failure",
            "title": d.code,
            "message": d.message,
        }));
    }
    // One annotation per case line, not per chain: its groups, each with
    // the chains it failed on.
    let mut by_line: std::collections::BTreeMap<
        (&str, u64),
        Vec<&crate::gate::group::RegressionGroup>,
    > = std::collections::BTreeMap::new();
    for g in &evidence.regression_groups {
        by_line
            .entry((g.case_file.as_str(), g.case_line.max(1)))
            .or_default()
            .push(g);
    }
    for ((path, line), groups) in by_line {
        let tags: Vec<&str> = {
            let mut t: Vec<&str> = groups.iter().map(|g| g.tag.as_str()).collect();
            t.dedup();
            t
        };
        let message = groups
            .iter()
            .map(|g| {
                format!(
                    "{} `{}` {} ({}): {}",
                    g.case_id,
                    g.assertion,
                    g.where_(),
                    crate::gate::markdown::chain_list(&g.chains, 5),
                    g.reason
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        out.push(json!({
            "path": path,
            "start_line": line,
            "end_line": line,
            "annotation_level": "failure",
            "title": format!("{} regression", tags.join(" and ")),
            "message": message,
        }));
    }
    out
}

fn conclusion(verdict: Verdict) -> (&'static str, &'static str) {
    // (check-run conclusion, commit-status state)
    match verdict {
        Verdict::Pass => ("success", "success"),
        // Neither is a pass: a required check must not be satisfied by them.
        Verdict::WaitingForApproval | Verdict::NotEvaluated => ("action_required", "pending"),
        Verdict::Blocked => ("failure", "failure"),
    }
}

/// `evidence.json` (typed) and `evidence.md` from the directory `gate --out` wrote.
pub fn load(dir: &Path) -> Result<(Evidence, String), ReportError> {
    crate::gate::evidence::read_evidence(dir).map_err(|message| ReportError::Evidence {
        dir: dir.display().to_string(),
        message,
    })
}

/// Post the comment and the check run (or status). Either part may be
/// skipped (no PR number, no SHA).
pub async fn post(
    gh: &Gh,
    evidence: &Evidence,
    markdown: &str,
    pr: Option<u64>,
    sha: Option<&str>,
    check_name: &str,
) -> Result<Outcome, ReportError> {
    let mut out = Outcome::default();
    let verdict = evidence.verdict;
    // Whatever the flags say, a verdict goes only on the commit it is for.
    if let Some(sha) = sha
        && evidence.head_commit != sha
    {
        return Err(ReportError::NotThisCommit {
            evidence: evidence.head_commit.clone(),
            sha: sha.to_string(),
        });
    }
    if let (Some(pr), Some(sha)) = (pr, sha) {
        // The evidence may come from an untrusted run: only comment on a pull
        // request whose head is the commit that was evaluated.
        let pull = gh.get(&gh.repo_path(&format!("/pulls/{pr}"))).await?;
        let head = pull
            .pointer("/head/sha")
            .and_then(Json::as_str)
            .unwrap_or_default();
        if head != sha {
            return Err(ReportError::Mismatch {
                pr,
                head: head.to_string(),
                sha: sha.to_string(),
            });
        }
    }
    if let Some(sha) = sha {
        let (concl, state) = conclusion(verdict);
        let title = markdown.lines().next().unwrap_or(verdict.as_str());
        let title = cut(title, 200).to_string();
        let summary = cut(markdown, GITHUB_TEXT_LIMIT - 100).to_string();
        let notes = annotations(evidence);
        let mut chunks = notes.chunks(ANNOTATIONS_PER_REQUEST);
        let first = chunks.next().map(<[Json]>::to_vec).unwrap_or_default();
        let create = json!({
            "name": check_name,
            "head_sha": sha,
            "status": "completed",
            "conclusion": concl,
            "output": {"title": title, "summary": summary, "annotations": first},
        });
        match gh.post(&gh.repo_path("/check-runs"), &create).await {
            Ok(v) => {
                out.annotation_requests = 1;
                // The id is the one field we need; without it we cannot append annotations.
                out.check_run_id = v["id"].as_u64();
                if let Some(id) = out.check_run_id {
                    for chunk in chunks {
                        gh.patch(
                            &gh.repo_path(&format!("/check-runs/{id}")),
                            &json!({"output": {"title": title, "summary": summary, "annotations": chunk}}),
                        )
                        .await?;
                        out.annotation_requests += 1;
                    }
                }
            }
            Err(GhError::Status {
                status: 403 | 404, ..
            }) => {
                // Check runs need an App or the Actions token; fall back to a commit status.
                out.status_fallback = true;
                gh.post(
                    &gh.repo_path(&format!("/statuses/{sha}")),
                    &json!({"state": state, "context": check_name, "description": cut(title.as_str(), 140)}),
                )
                .await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    // The check run first: it is the verdict, and a comment GitHub refuses
    // must not keep it from being posted.
    if let Some(pr) = pr {
        let (body, trimmed) = comment_body(markdown, check_name);
        out.comment_trimmed = trimmed;
        let (id, created) = sticky_comment(gh, pr, &body).await?;
        out.comment_id = id;
        out.comment_created = created;
    }
    Ok(out)
}

/// A neutral check run named `name` on `sha` saying why the pull request
/// was not judged. The name must not be the gate's own check: GitHub counts
/// a neutral conclusion as passing a required check.
pub async fn post_not_judged(gh: &Gh, sha: &str, name: &str, why: &str) -> Result<(), ReportError> {
    let create = json!({
        "name": name,
        "head_sha": sha,
        "status": "completed",
        "conclusion": "neutral",
        "output": {"title": "not judged", "summary": why},
    });
    gh.post(&gh.repo_path("/check-runs"), &create).await?;
    Ok(())
}

/// Whether `c` is our sticky comment: it carries the marker and was
/// written by the identity posting now. A comment by anyone else carrying
/// the marker (copied, or planted to be edited) is never touched.
fn ours(c: &Json, login: Option<&str>) -> bool {
    let marked = c["body"].as_str().is_some_and(|b| b.contains(MARKER));
    let author = c.pointer("/user/login").and_then(Json::as_str);
    marked
        && match login {
            Some(me) => author.is_some_and(|a| a.eq_ignore_ascii_case(me)),
            // Identity unknown: only a bot's comment can be ours.
            None => c.pointer("/user/type").and_then(Json::as_str) == Some("Bot"),
        }
}

/// Edit our sticky comment on `pr`, or create it. Creating is idempotent
/// across failures: when the create fails (a 5xx or a dropped connection,
/// possibly after GitHub stored it), the comments are listed again and
/// ours, if now there, is edited instead of a second one being made.
async fn sticky_comment(gh: &Gh, pr: u64, body: &str) -> Result<(Option<u64>, bool), GhError> {
    let list = gh.repo_path(&format!("/issues/{pr}/comments"));
    let find = |comments: &[Json]| {
        comments
            .iter()
            .find(|c| ours(c, gh.login.as_deref()))
            .and_then(|c| c["id"].as_u64())
    };
    let edit = |id: u64| async move {
        gh.patch(
            &gh.repo_path(&format!("/issues/comments/{id}")),
            &json!({"body": body}),
        )
        .await
        .map(|_| (Some(id), false))
    };
    if let Some(id) = find(&gh.get_all(&list).await?) {
        return edit(id).await;
    }
    for attempt in 1..=3u32 {
        match gh.post(&list, &json!({"body": body})).await {
            Ok(v) => return Ok((v["id"].as_u64(), true)),
            Err(
                e @ (GhError::Status {
                    status: 500..=599, ..
                }
                | GhError::Api { .. }),
            ) => {
                tracing::warn!(error = %e, attempt, "creating the comment failed; checking whether it was stored");
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
                if let Some(id) = find(&gh.get_all(&list).await?) {
                    return edit(id).await;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(GhError::Api {
        method: "POST".into(),
        path: list,
        message: "the comment could not be created after 3 attempts".into(),
    })
}

/// Append to the job summary and set step outputs when running in Actions.
pub fn actions_outputs(
    evidence: &Evidence,
    markdown: &str,
    evidence_dir: &Path,
) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(p) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
        // The job summary is capped at 1 MiB per step.
        writeln!(f, "{}", cut(markdown, 1_000_000))?;
    }
    if let Some(p) = std::env::var_os("GITHUB_OUTPUT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
        writeln!(f, "verdict={}", evidence.verdict)?;
        writeln!(f, "blocked={}", evidence.blocked)?;
        writeln!(f, "cost_usd={:.6}", evidence.cost_usd)?;
        writeln!(f, "evidence_path={}", evidence_dir.display())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reports_keep_the_verdict_and_fit() {
        let mut md = String::from(
            "BLOCKED: safety regression in hr-ops\n\n### missionctl gate\n\n#### Blocking\n\n",
        );
        for i in 0..5000 {
            md.push_str(&format!(
                "- reason number {i} with some words to make it longer\n"
            ));
        }
        md.push_str(
            "\n#### Packs\n\n| a | b |\n\n#### Guardrails (from the base revision)\n\n| x |\n",
        );
        let (body, trimmed) = comment_body(&md, "missionctl/gate");
        assert!(trimmed);
        assert!(body.len() <= GITHUB_TEXT_LIMIT);
        assert!(body.starts_with(MARKER));
        assert!(body.contains("BLOCKED: safety regression in hr-ops"));
        assert!(body.contains("more lines in the check run"));
        let (short, trimmed) = comment_body("PASS: ok\n", "missionctl/gate");
        assert!(!trimmed && short.ends_with("PASS: ok\n"));
    }
}
