//! `missionctl eval` and `missionctl gate`

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use missionctl::gate::{self, GateOptions};
use missionctl::github;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The champion: usually the merge base on main (default: from the GitHub event).
    #[arg(long)]
    pub base: Option<String>,
    /// The challenger: the pull request's head (default: from the GitHub event).
    #[arg(long)]
    pub head: Option<String>,
    /// The pack repository (default: the one the current directory is in, found upwards as git does).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Write eval_result.jsonl, evidence.json and evidence.md here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// State store URL (sqlite://PATH or postgres://...); see --help for the default.
    #[arg(long, long_help = super::DB_HELP)]
    pub db: Option<String>,
    /// Skip paid model calls. Set automatically for pull requests from forks unless a
    /// maintainer has added the `missionctl-paid-evals` label.
    #[arg(long)]
    pub skip_paid_calls: bool,
    /// Check this pull request's reviews against the approvals the changes need
    /// (default: the pull request of the GitHub event, when a token is available).
    #[arg(long)]
    pub pr: Option<u64>,
    /// Stop spending at this many USD for the whole run (each tenant's daily cap
    /// from policies/guardrails.yaml applies as well); the results are then partial.
    #[arg(long, value_name = "USD")]
    pub budget_usd: Option<f64>,
    /// `human`: the verdict and a summary that fits on a screen; `json`: evidence.json.
    #[arg(long, value_enum, default_value = "human")]
    pub format: super::OutFormat,
}

pub fn run(a: Args, decide: bool) -> anyhow::Result<ExitCode> {
    let event = github::event::from_env().map_err(|e| anyhow::anyhow!(e))?;
    let base = a
        .base
        .clone()
        .or_else(|| event.as_ref().and_then(|e| e.base_sha.clone()))
        .ok_or_else(|| {
            anyhow::anyhow!("--base is required outside a GitHub pull_request or merge_group event")
        })?;
    let head = a
        .head
        .clone()
        .or_else(|| event.as_ref().and_then(|e| e.head_sha.clone()))
        .ok_or_else(|| {
            anyhow::anyhow!("--head is required outside a GitHub pull_request or merge_group event")
        })?;
    let fork_without_opt_in = event
        .as_ref()
        .is_some_and(|e| !github::trusted::paid_calls_allowed(e.from_fork, &e.labels));
    let repo = super::repo_root(a.repo.as_deref());
    let db_url = super::db_url(a.db.as_deref(), Some(&repo))?;
    // A bar on a terminal; in CI logs (or any other pipe) a line every 15 s.
    let progress = if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
        gate::Progress::Bar
    } else {
        gate::Progress::Lines
    };
    let rt = missionctl::runtime()?;
    let pr = a.pr.or_else(|| event.as_ref().and_then(|e| e.pr));
    let github = match pr {
        Some(pr)
            if std::env::var_os("GITHUB_TOKEN").is_some()
                || std::env::var_os("GITHUB_APP_ID").is_some() =>
        {
            match rt.block_on(github::Gh::from_env(
                event.as_ref().and_then(|e| e.repository.as_deref()),
            )) {
                Ok(gh) => Some((gh, pr)),
                Err(e) => {
                    eprintln!("warning: approvals not checked: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    let out = a.out.clone();
    let opts = GateOptions {
        repo,
        base,
        head: head.clone(),
        out: out.clone(),
        db_url,
        skip_paid_calls: a.skip_paid_calls || fork_without_opt_in,
        progress,
        spend_limit_usd: a.budget_usd,
        store: None,
    };
    let concluded = rt.block_on(evaluate_and_conclude(&opts, github.as_ref()));
    let ev = match concluded {
        Ok(ev) => ev,
        Err(e) => {
            eprintln!("error: could not evaluate: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    match a.format {
        super::OutFormat::Human => out!("{}", gate::terminal::render(&ev, out.as_deref())),
        super::OutFormat::Json => outln!("{}", serde_json::to_string_pretty(&ev)?),
    }
    if std::env::var_os("GITHUB_ACTIONS").is_some() {
        // Workflow commands go to stdout, except where stdout is JSON.
        if a.format == super::OutFormat::Human {
            out!(
                "{}",
                missionctl::diagnostic::render::github(&ev.validation_errors)
            );
        }
        let dir = out.clone().unwrap_or_else(|| PathBuf::from("."));
        let md = gate::render_markdown(&ev);
        if let Err(e) = github::report::actions_outputs(&ev, &md, &dir) {
            eprintln!("warning: cannot write the job summary or outputs: {e}");
        }
    }
    if let Some(out) = &out {
        eprintln!("evidence written to {}", out.display());
    }
    Ok(if decide && ev.blocked {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Evaluate, read the pull request's reviews when a GitHub client is given,
/// and conclude: the verdict and its evidence.
pub(crate) async fn evaluate_and_conclude(
    opts: &GateOptions,
    github: Option<&(github::Gh, u64)>,
) -> Result<gate::Evidence, gate::GateError> {
    let evaluated = gate::evaluate(opts).await?;
    // The reviews come from GitHub; what they must satisfy comes from the base.
    let approvals = match github {
        Some((gh, pr)) => Some(
            github::approvals::evaluate(
                gh,
                *pr,
                &evaluated.head_commit(),
                evaluated.base(),
                evaluated.head(),
                evaluated.candidates(),
                &evaluated.policy_owner_paths(),
            )
            .await
            .map_err(|e| e.to_string()),
        ),
        None => None,
    };
    gate::conclude(evaluated, approvals)
}
