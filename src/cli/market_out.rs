//! What `missionctl market` prints, and the pull request it opens: the
//! compatibility report, the proposal, catalog text made safe for a terminal.

use std::path::Path;
use std::process::ExitCode;

use missionctl::market::{self, compat, install, publish};

use super::OutFormat;

#[allow(clippy::too_many_arguments)]
pub(super) fn open_pr(
    root: &Path,
    proposal: &install::Proposal,
    catalog: &str,
    entry: &market::PackEntry,
    v: &market::VersionEntry,
    report: &compat::Report,
    up: Option<&install::Upgrade>,
    repository: Option<&str>,
) -> anyhow::Result<publish::PullRequest> {
    let repo = missionctl::git::open(root)?;
    let (main, _) = install::main_tip(&repo, root)?;
    let title = publish::title(entry, v, up, catalog);
    let body = publish::body(catalog, entry, v, report, up);
    let rt = missionctl::runtime()?;
    Ok(rt.block_on(publish::open(
        root, proposal, &main, &title, &body, repository,
    ))?)
}

pub(super) fn finish(
    format: OutFormat,
    proposal: &install::Proposal,
    pull: Option<&publish::PullRequest>,
    report: &compat::Report,
    up: Option<&install::Upgrade>,
) -> anyhow::Result<ExitCode> {
    match format {
        OutFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "proposal": proposal, "pull_request": pull, "compatibility": report, "upgrade": up,
            }))?
        ),
        OutFormat::Human => {
            print_report(report);
            if let Some(u) = up {
                outln!(
                    "\nupstream change {} -> {}:\n{}",
                    u.from,
                    u.to,
                    plain_block(&u.upstream_diff)
                );
                for k in &u.kept_local {
                    outln!("kept local edits: {}", plain(k));
                }
            }
            outln!(
                "\n{} branch {} at {:.12} ({} file(s) written{}) off {:.12}",
                if proposal.existing {
                    "unchanged:"
                } else {
                    "proposed on"
                },
                proposal.branch,
                proposal.commit,
                proposal.written.len(),
                if proposal.removed.is_empty() {
                    String::new()
                } else {
                    format!(", {} removed", proposal.removed.len())
                },
                proposal.base
            );
            match pull {
                Some(p) => outln!(
                    "pull request #{} {}{}",
                    p.number,
                    p.url,
                    if p.existing { " (already open)" } else { "" }
                ),
                None => outln!(
                    "push it and open a pull request (or run again with --open-pr): the gate, approvals and canary apply as to any change"
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn print_report(r: &compat::Report) {
    outln!(
        "compatibility with {}: {}",
        plain(&r.fleet),
        if r.validates {
            "validates under this fleet's hard constraints, policies and tiers"
        } else {
            "DOES NOT VALIDATE under this fleet's rules"
        }
    );
    outln!(
        "  autonomy     {} (ceiling {})",
        plain(r.autonomy.as_deref().unwrap_or("unset")),
        plain(r.max_autonomy.as_deref().unwrap_or("none"))
    );
    outln!(
        "  prompt       {} tokens; largest chain it joins about {} (ceiling {})",
        r.prompt_tokens,
        r.largest_chain_tokens,
        r.max_prompt_tokens.map_or("none".into(), |m| m.to_string())
    );
    if !r.forbidden_tools.is_empty() {
        outln!("  forbidden    {}", plain(&r.forbidden_tools.join(", ")));
    }
    outln!(
        "  chains       {} it serves: domain {}, {} tenant(s) [{}], {} tenant user(s); {} personal user(s) decide by their `domains:`",
        r.chains.total,
        plain(&r.chains.domain),
        r.chains.tenants.len(),
        plain(&{
            let mut t = r
                .chains
                .tenants
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if r.chains.tenants.len() > 10 {
                t.push_str(&format!(
                    ", … {} more (--format json lists them)",
                    r.chains.tenants.len() - 10
                ));
            }
            t
        }),
        r.chains.tenant_users,
        r.chains.personal_users
    );
    if let Some(v) = &r.installed {
        outln!("  installed    {}", plain(v));
    }
    for f in &r.problems {
        outln!(
            "  {} {}:{}:{}: [{}] {}",
            f.severity,
            plain(&f.file),
            f.line,
            f.col,
            f.code,
            plain(&f.message)
        );
        if let Some(h) = &f.help {
            outln!("      help: {}", plain(h));
        }
    }
}

/// Catalog text for a terminal: control characters (escape sequences,
/// bidirectional overrides) dropped, line breaks folded.
pub(super) fn plain(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' => Some(' '),
            c if c.is_control() || missionctl::model::is_bidi_control(c) => None,
            c => Some(c),
        })
        .collect()
}

/// As [`plain`], keeping line breaks.
pub(super) fn plain_block(s: &str) -> String {
    s.lines().map(plain).collect::<Vec<_>>().join("\n")
}
