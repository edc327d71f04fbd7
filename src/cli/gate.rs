//! `missionctl eval` and `missionctl gate`

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use missionctl::gate::{self, GateOptions};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The champion: usually the merge base on main.
    #[arg(long)]
    pub base: String,
    /// The challenger: the pull request's head.
    #[arg(long)]
    pub head: String,
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Write eval_result.jsonl, evidence.json and evidence.md here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// State store URL (sqlite://PATH or postgres://...). Default: MISSIONCTL_DATABASE_URL,
    /// then mission.yaml's store.url, then a SQLite file in the user's data directory.
    #[arg(long, env = "MISSIONCTL_DATABASE_URL", hide_env_values = true)]
    pub db: Option<String>,
    /// Skip paid model calls (set for fork pull requests without a maintainer's opt-in).
    #[arg(long)]
    pub skip_paid_calls: bool,
}

pub fn run(a: Args, decide: bool) -> anyhow::Result<ExitCode> {
    let db_url = super::db_url(a.db.as_deref(), &a.repo);
    let progress = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
    let rt = tokio::runtime::Runtime::new()?;
    let ev = match rt.block_on(gate::run(GateOptions {
        repo: a.repo.clone(),
        base: a.base,
        head: a.head,
        out: a.out.clone(),
        db_url,
        skip_paid_calls: a.skip_paid_calls,
        progress,
    })) {
        Ok(ev) => ev,
        Err(e) => {
            eprintln!("error: could not evaluate: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    print!("{}", gate::render_markdown(&ev));
    if let Some(out) = &a.out {
        eprintln!("evidence written to {}", out.display());
    }
    Ok(if decide && ev.blocked {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
