//! `missionctl github report`

use std::path::PathBuf;
use std::process::ExitCode;

use missionctl::github;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Post the gate's evidence: a sticky pull-request comment, a check run with
    /// annotations (or a commit status), the job summary and step outputs.
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
        #[arg(long, default_value = "missionctl/gate")]
        check_name: String,
    },
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    let Command::Report {
        evidence,
        pr,
        sha,
        repository,
        check_name,
    } = c;
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
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(ExitCode::SUCCESS)
}
