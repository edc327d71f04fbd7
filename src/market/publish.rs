//! The pull request an install or upgrade opens: the branch pushed to the
//! fleet's `origin`, and a body that carries what the pack is, where it
//! comes from and the compatibility report, every catalog text escaped. The
//! gate, approvals and canary then apply as to any pull request.

use std::path::Path;

use serde::Serialize;
use serde_json::json;

use super::compat::Report;
use super::install::{Proposal, Upgrade};
use super::{MarketError, PackEntry, VersionEntry, md_escape};
use crate::git;
use crate::github::Gh;

const MAX_BODY: usize = 60_000;

#[derive(Debug, Clone, Serialize)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
    /// It was open already from this branch (a re-run).
    pub existing: bool,
}

/// The pull request's title.
pub fn title(
    entry: &PackEntry,
    v: &VersionEntry,
    upgrade: Option<&Upgrade>,
    catalog: &str,
) -> String {
    let id: String = entry.id.chars().take(64).collect();
    let version: String = v
        .version
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    match upgrade {
        Some(u) => format!(
            "market: upgrade {id} {} -> {version} (catalog {catalog})",
            u.from.chars().take(64).collect::<String>()
        ),
        None => format!("market: add {id} {version} (catalog {catalog})"),
    }
}

/// The pull request's body.
pub fn body(
    catalog: &str,
    entry: &PackEntry,
    v: &VersionEntry,
    report: &Report,
    upgrade: Option<&Upgrade>,
) -> String {
    use std::fmt::Write;
    let e = md_escape;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Proposed by `missionctl market {}` from catalog {}. The gate, approvals and canary apply as to any pull request.\n",
        if upgrade.is_some() { "upgrade" } else { "add" },
        e(catalog)
    );
    let _ = writeln!(
        s,
        "**{}** {} ({})\n",
        e(&entry.id),
        e(&v.version),
        e(&entry.pack_id)
    );
    let _ = writeln!(s, "> {}\n", e(&entry.description));
    let _ = writeln!(
        s,
        "- Licence: {}",
        e(entry.license.as_deref().unwrap_or("not stated"))
    );
    let m: Vec<String> = entry.maintainers.iter().map(|x| e(x)).collect();
    let _ = writeln!(
        s,
        "- Maintainers: {}",
        if m.is_empty() {
            "not stated".into()
        } else {
            m.join(", ")
        }
    );
    let _ = writeln!(
        s,
        "- Source: {} at {} in {}",
        e(&v.source.repository),
        e(&v.source.commit),
        e(&v.source.path)
    );
    let _ = writeln!(s, "- Digest: {}", e(&v.digest));
    let tools: Vec<String> = v.tools.allow.iter().map(|t| e(t)).collect();
    let _ = writeln!(
        s,
        "- Tools: {}",
        if tools.is_empty() {
            "none".into()
        } else {
            tools.join(", ")
        }
    );
    let contracts: Vec<String> = v.contracts.iter().map(|c| e(&c.id)).collect();
    let _ = writeln!(
        s,
        "- Output contracts: {}",
        if contracts.is_empty() {
            "none".into()
        } else {
            contracts.join(", ")
        }
    );
    let tags: Vec<String> = v
        .eval_cases
        .by_tag
        .iter()
        .map(|(k, n)| format!("{} {n}", e(k)))
        .collect();
    let _ = writeln!(
        s,
        "- Eval cases: {} ({})",
        v.eval_cases.total,
        tags.join(", ")
    );
    if let Some(ev) = &v.evidence {
        let _ = writeln!(
            s,
            "- Its own last promotion: {} by {} at {}",
            e(ev.get("decision").and_then(|x| x.as_str()).unwrap_or("?")),
            e(ev.get("decided_by").and_then(|x| x.as_str()).unwrap_or("?")),
            e(ev.get("created_at").and_then(|x| x.as_str()).unwrap_or("?"))
        );
    }
    let _ = writeln!(s, "\n{}", report.markdown());
    if let Some(u) = upgrade {
        if !u.kept_local.is_empty() {
            let k: Vec<String> = u.kept_local.iter().map(|x| e(x)).collect();
            let _ = writeln!(s, "Local edits kept: {}\n", k.join(", "));
        }
        let _ = writeln!(
            s,
            "<details><summary>Upstream change {} → {}</summary>\n",
            e(&u.from),
            e(&u.to)
        );
        let _ = writeln!(
            s,
            "{}",
            crate::improve::report::fenced("diff", &u.upstream_diff)
        );
        let _ = writeln!(s, "</details>");
    }
    if s.chars().count() > MAX_BODY {
        s = s.chars().take(MAX_BODY).collect();
        s.push_str("\n\n(truncated: `missionctl market show` prints the whole report)\n");
    }
    s
}

/// Push the proposal's branch to the fleet's `origin` (never forced) and
/// open the pull request against the main branch; a re-run finds the one
/// already open from the same branch.
pub async fn open(
    root: &Path,
    proposal: &Proposal,
    main: &str,
    title: &str,
    body: &str,
    repository: Option<&str>,
) -> Result<PullRequest, MarketError> {
    let repo = git::open(root)?;
    let url = git::remote_url(&repo, "origin").ok_or_else(|| {
        MarketError::Refused("the fleet repository has no `origin` remote to push the branch to; add one (`git remote add origin URL`) or leave out --open-pr".into())
    })?;
    git::push_branch(&repo, &url, &proposal.branch, None)?;
    let gh = Gh::from_env(repository)
        .await
        .map_err(|e| MarketError::Refused(format!("GitHub: {e}")))?;
    let created = gh
        .post(
            &format!("/repos/{}/{}/pulls", gh.owner, gh.repo),
            &json!({"title": title, "head": proposal.branch, "base": main, "body": body, "maintainer_can_modify": false}),
        )
        .await;
    let as_pull = |p: &serde_json::Value, existing: bool| PullRequest {
        number: p
            .get("number")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
        url: p
            .get("html_url")
            .and_then(|u| u.as_str())
            .unwrap_or_default()
            .to_string(),
        existing,
    };
    match created {
        Ok(p) => Ok(as_pull(&p, false)),
        Err(err) => {
            // Open already (a re-run), or created before the error reached us.
            let open = gh
                .get_all(&format!("/repos/{}/{}/pulls?state=open", gh.owner, gh.repo))
                .await
                .unwrap_or_default();
            open.iter()
                .find(|p| p.pointer("/head/ref").and_then(|r| r.as_str()) == Some(&proposal.branch))
                .map(|p| as_pull(p, true))
                .ok_or_else(|| {
                    MarketError::Refused(format!("GitHub refused the pull request: {err}"))
                })
        }
    }
}
