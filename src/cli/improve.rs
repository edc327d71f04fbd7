//! `missionctl improve`: propose challenger packs (never promote them).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use missionctl::improve::{self, ImproveOptions, Publish};

use super::OutFormat;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  missionctl improve --pack hr-ops-pack\n  missionctl improve --pack hr-ops-pack --open-pr --budget-usd 2\n  missionctl improve --all --cadence nightly --open-pr\n  missionctl improve --list --format json"
)]
pub struct Args {
    /// The pack to improve (its id).
    #[arg(long, required_unless_present_any = ["list", "all"])]
    pub pack: Option<String>,
    /// Every pack whose tier's optimization_cadence is --cadence (or not `off`).
    #[arg(long, conflicts_with_all = ["pack", "list"])]
    pub all: bool,
    /// With --all: only packs whose tier's cadence is this (nightly, weekly).
    #[arg(long, requires = "all", value_parser = ["nightly", "weekly", "off"])]
    pub cadence: Option<String>,
    /// The pack repository (default: the one the current directory is in, found upwards as git does).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// The branch the champion is read from, and the pull request's base.
    #[arg(long, default_value = "main")]
    pub base: String,
    /// What this run may spend in USD (within the tier's and the tenant's caps).
    #[arg(long, value_name = "USD")]
    pub budget_usd: Option<f64>,
    /// At most this many candidates (within max_candidates_per_run).
    #[arg(long, value_name = "N")]
    pub max_candidates: Option<u32>,
    /// Push the winning branch and open a pull request (GITHUB_TOKEN, GITHUB_REPOSITORY).
    #[arg(long, conflicts_with = "branch_only")]
    pub open_pr: bool,
    /// Only create the local branch (the default).
    #[arg(long)]
    pub branch_only: bool,
    /// The remote --open-pr pushes to.
    #[arg(long, default_value = "origin")]
    pub remote: String,
    /// owner/name for --open-pr (default: GITHUB_REPOSITORY).
    #[arg(long)]
    pub repository: Option<String>,
    /// List recorded improvement runs instead of running one.
    #[arg(long)]
    pub list: bool,
    /// With --list: at most this many runs, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// State store URL (sqlite://PATH or postgres://...); see --help for the default.
    #[arg(long, long_help = super::DB_HELP)]
    pub db: Option<String>,
    /// `human`: the steps and a summary; `json`: each run's report as a JSON array.
    #[arg(long, value_enum, default_value = "human")]
    pub format: OutFormat,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let rt = missionctl::runtime()?;
    let repo = super::repo_root(a.repo.as_deref());
    let db_url = super::db_url(a.db.as_deref(), Some(&repo))?;
    if a.list {
        return rt.block_on(list(&a, &db_url));
    }
    let packs = match (&a.pack, a.all) {
        (Some(p), _) => vec![p.clone()],
        (None, _) => improve::due(&repo, &a.base, a.cadence.as_deref())?,
    };
    // One GitHub client for every pack (no token exchange per pack).
    let gh = if a.open_pr && !packs.is_empty() {
        Some(
            rt.block_on(missionctl::github::Gh::from_env(a.repository.as_deref()))
                .map_err(|e| anyhow::anyhow!("--open-pr needs GitHub access: {e}"))?,
        )
    } else {
        None
    };
    // One store for every pack: one pool, one writer, migrations checked once.
    let store = if packs.is_empty() {
        None
    } else {
        Some(rt.block_on(missionctl::store::Store::connect(&db_url))?)
    };
    let mut failed = 0;
    let mut reports = Vec::new();
    for pack in packs {
        let publish = match &gh {
            Some(gh) => Publish::PullRequest {
                gh: Box::new(gh.clone()),
                remote: a.remote.clone(),
            },
            None => Publish::Branch,
        };
        let opts = ImproveOptions {
            repo: repo.clone(),
            pack_id: pack.clone(),
            base: a.base.clone(),
            db_url: db_url.clone(),
            store: store.clone(),
            budget_usd: a.budget_usd,
            max_candidates: a.max_candidates,
            publish,
            on_step: (a.format == OutFormat::Human)
                .then(|| Arc::new(|l: &str| eprintln!("{l}")) as improve::OnStep),
        };
        match rt.block_on(improve::run(&opts)) {
            Ok(r) => {
                if a.format == OutFormat::Human {
                    out!("{}", r.summary());
                }
                reports.push(r);
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: improve {pack}: {e}");
            }
        }
    }
    if a.format == OutFormat::Json {
        outln!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(if failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

async fn list(a: &Args, db_url: &str) -> anyhow::Result<ExitCode> {
    let store = missionctl::store::Store::connect(db_url).await?;
    let rows = store.improve_runs(a.pack.as_deref(), a.limit).await?;
    match a.format {
        OutFormat::Json => {
            let reports: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| serde_json::from_str(&r.report).unwrap_or_else(|_| serde_json::json!(r)))
                .collect();
            outln!("{}", serde_json::to_string_pretty(&reports)?);
        }
        OutFormat::Human => {
            // Columns as wide as their widest value: a run id is 16 hex
            // digits and is what `--list --format json` is searched by.
            let w = |head: &str, f: &dyn Fn(&missionctl::store::ImproveRow) -> usize| {
                rows.iter().map(f).max().unwrap_or(0).max(head.len())
            };
            let (run, pack, champ) = (
                w("RUN", &|r| r.run_id.len()),
                w("PACK", &|r| r.pack_id.len()),
                w("CHAMPION", &|r| r.champion_version.len()),
            );
            outln!(
                "{:<run$} {:<pack$} {:<champ$} {:<16} {:>5} {:>9} {:<30} PROPOSAL",
                "RUN",
                "PACK",
                "CHAMPION",
                "STOP",
                "CANDS",
                "SPEND",
                "STARTED"
            );
            for r in &rows {
                outln!(
                    "{:<run$} {:<pack$} {:<champ$} {:<16} {:>5} {:>9} {:<30} {}",
                    r.run_id,
                    r.pack_id,
                    r.champion_version,
                    r.stop.as_str(),
                    r.candidates,
                    format!("${:.4}", r.spend_usd),
                    r.started_at,
                    r.pull_request
                        .as_deref()
                        .or(r.branch.as_deref())
                        .unwrap_or("-")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
