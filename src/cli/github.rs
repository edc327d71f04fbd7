//! `missionctl github report`

use std::path::PathBuf;
use std::process::ExitCode;

use missionctl::github;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Post the gate's evidence: a sticky pull-request comment, a check run with
    /// annotations (or a commit status), the job summary and step outputs.
    #[command(
        after_help = "Examples:\n  missionctl github report --evidence evidence --pr 12 --sha \"$HEAD_SHA\""
    )]
    Report {
        /// The directory `missionctl gate --out` wrote.
        #[arg(long)]
        evidence: PathBuf,
        /// Pull request number (default: from the GitHub event).
        #[arg(long)]
        pr: Option<u64>,
        /// Commit for the check run (default: the evidence's head commit).
        #[arg(long)]
        sha: Option<String>,
        /// owner/name (default: GITHUB_REPOSITORY).
        #[arg(long)]
        repository: Option<String>,
        /// The check run's name (match the branch protection's required check).
        #[arg(long, default_value = "missionctl/gate")]
        check_name: String,
    },
    /// The trusted gate (run from a `workflow_run` job in the base
    /// repository): read the pull request from the API, fetch its head as git
    /// objects (never checked out), evaluate it against the merge base with
    /// the base revision's configuration, compute approvals, and post the
    /// verdict. Nothing the pull request's own run produced is believed.
    #[command(
        after_help = "Examples:\n  missionctl github verdict --sha \"$HEAD_SHA\" --pr-hint evidence/pr-number"
    )]
    Verdict(Trusted),
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    let (evidence, pr, sha, repository, check_name) = match c {
        Command::Report {
            evidence,
            pr,
            sha,
            repository,
            check_name,
        } => (evidence, pr, sha, repository, check_name),
        Command::Verdict(t) => return verdict(t),
    };
    let (ev, md) = github::report::load(&evidence)?;
    let event = github::event::from_env().map_err(|e| anyhow::anyhow!(e))?;
    let pr = pr.or_else(|| event.as_ref().and_then(|e| e.pr));
    let sha = sha
        .or_else(|| Some(ev.head_commit.clone()).filter(|s| !s.is_empty()))
        .or_else(|| event.as_ref().and_then(|e| e.head_sha.clone()));
    let rt = tokio::runtime::Runtime::new()?;
    let outcome = rt.block_on(async {
        let repo = repository.or_else(|| event.as_ref().and_then(|e| e.repository.clone()));
        let gh = github::Gh::from_env(repo.as_deref()).await?;
        anyhow::Ok(github::report::post(&gh, &ev, &md, pr, sha.as_deref(), &check_name).await?)
    })?;
    if let Err(e) = github::report::actions_outputs(&ev, &md, &evidence) {
        eprintln!("warning: cannot write the job summary or outputs: {e}");
    }
    outln!("{}", serde_json::to_string(&outcome)?);
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct Trusted {
    /// The checkout of the base repository (trusted: its configuration is used).
    /// (default: the repository the current directory is in, found upwards as git does).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// The head commit the gate ran on (default: the event's `head_sha`).
    #[arg(long)]
    pub sha: Option<String>,
    /// Pull request number (default: the event's). Checked against the API.
    #[arg(long)]
    pub pr: Option<u64>,
    /// A file holding a pull request number from the untrusted run (its
    /// artifact): used only when the event names none, and only if the
    /// API says that pull request's head is `--sha`.
    #[arg(long)]
    pub pr_hint: Option<PathBuf>,
    /// Where to write the trusted evidence.
    #[arg(long, default_value = "missionctl-verdict")]
    pub out: PathBuf,
    /// State store URL (sqlite://PATH or postgres://...); see --help for the default.
    #[arg(long, long_help = super::DB_HELP)]
    pub db: Option<String>,
    /// owner/name (default: GITHUB_REPOSITORY).
    #[arg(long)]
    pub repository: Option<String>,
    /// The check run's name (default: the base's mission.yaml
    /// `github.check_name`, else missionctl/gate).
    #[arg(long)]
    pub check_name: Option<String>,
}

fn verdict(t: Trusted) -> anyhow::Result<ExitCode> {
    use github::trusted;
    let event = github::event::from_env().map_err(|e| anyhow::anyhow!(e))?;
    let sha = t
        .sha
        .or_else(|| event.as_ref().and_then(|e| e.head_sha.clone()))
        .ok_or_else(|| anyhow::anyhow!("--sha is required outside a workflow_run event"))?;
    // GitHub leaves `workflow_run.pull_requests` empty for forks: then the
    // untrusted run's artifact may name the pull request, and the API decides.
    let hint = t
        .pr_hint
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| trusted::pr_hint(&s));
    let pr =
        t.pr.or_else(|| event.as_ref().and_then(|e| e.pr))
            .or(hint)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no pull request: pass --pr, or --pr-hint with the gate run's pr-number"
                )
            })?;
    // The trusted checkout's (the base branch's) mission.yaml.
    let repo = super::repo_root(t.repo.as_deref());
    let mission = missionctl::pack::mission(&missionctl::git::Tree::work_tree_lazy(&repo));
    let check_name = t
        .check_name
        .clone()
        .or_else(|| {
            mission
                .as_ref()
                .and_then(|m| m.check_name().map(String::from))
        })
        .unwrap_or_else(|| "missionctl/gate".into());
    let fork_paid_evals = mission
        .as_ref()
        .is_some_and(missionctl::pack::Mission::fork_paid_evals);
    let rt = tokio::runtime::Runtime::new()?;
    let repository = t
        .repository
        .or_else(|| event.as_ref().and_then(|e| e.repository.clone()));
    let gh = rt.block_on(github::Gh::from_env(repository.as_deref()))?;
    let facts = rt.block_on(trusted::pull_facts(&gh, pr))?;
    if facts.head_sha != sha {
        anyhow::bail!(
            "pull request #{pr}'s head is {}, not {sha}: nothing is posted (a newer push gets its own run)",
            facts.head_sha
        );
    }
    if let Some(why) = facts.not_judged() {
        // No verdict, and no check named `--check-name` either: a neutral or
        // any other conclusion there would count for this commit everywhere.
        if facts.open {
            let posted = rt.block_on(github::report::post_not_judged(
                &gh,
                &sha,
                &format!("{check_name} (not judged)"),
                &why,
            ));
            if let Err(e) = posted {
                eprintln!("warning: the not-judged check could not be posted: {e}");
            }
        }
        outln!("not judged: {why}");
        return Ok(ExitCode::SUCCESS);
    }
    let fetched = missionctl::git::fetch_pull_head(&repo, pr)?;
    if fetched.to_string() != sha {
        anyhow::bail!(
            "refs/pull/{pr}/head on origin is {fetched}, not {sha}: nothing is posted (a newer push gets its own run)"
        );
    }
    // The rules come from the base branch's tip: the trusted checkout's own
    // branch when it has it (the workflow checks out the default branch),
    // else the commit the API names, else the remote-tracking branch.
    let local = format!("refs/heads/{}", facts.base_ref);
    let base = if missionctl::git::open(&repo)
        .and_then(|g| g.resolve(&local))
        .is_ok()
    {
        local
    } else {
        facts
            .base_sha
            .clone()
            .unwrap_or_else(|| format!("origin/{}", facts.base_ref))
    };
    let opts = missionctl::gate::GateOptions {
        repo: repo.clone(),
        base,
        head: sha.clone(),
        out: Some(t.out.clone()),
        db_url: super::db_url(t.db.as_deref(), Some(&repo)),
        skip_paid_calls: !(facts.paid_calls_allowed() || fork_paid_evals),
        progress: missionctl::gate::Progress::Off,
        spend_limit_usd: None,
        store: None,
    };
    let github = (gh, pr);
    let ev = match rt.block_on(super::gate::evaluate_and_conclude(&opts, Some(&github))) {
        Ok(ev) => ev,
        Err(e) => {
            eprintln!("error: could not evaluate: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let md = missionctl::gate::render_markdown(&ev);
    out!("{md}");
    let (gh, pr) = github;
    let outcome = rt.block_on(github::report::post(
        &gh,
        &ev,
        &md,
        Some(pr),
        Some(&sha),
        &check_name,
    ))?;
    if let Err(e) = github::report::actions_outputs(&ev, &md, &t.out) {
        eprintln!("warning: cannot write the job summary or outputs: {e}");
    }
    outln!("{}", serde_json::to_string(&outcome)?);
    Ok(ExitCode::SUCCESS)
}
