//! `missionctl hold` and `missionctl resume`: hold a rollout at its share,
//! or resume it, on the state store (the same transition as `POST
//! /v1/rollouts/<id>/hold`; a running `serve` sees it on its next tick).

use std::path::PathBuf;
use std::process::ExitCode;

use missionctl::registry::hold::{self, Pause};
use missionctl::store::Store;

use super::OutFormat;

#[derive(clap::Args, Debug)]
pub struct PauseArgs {
    /// The rollout's id (missionctl status lists them).
    pub rollout: String,
    /// State store: sqlite://PATH or postgres://USER@HOST/DB; see --help for the default.
    #[arg(long, long_help = super::DB_HELP)]
    pub db: Option<String>,
    /// The pack repository whose mission.yaml names the store (default: the one the
    /// current directory is in, found upwards as git does).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Why: recorded with the decision.
    #[arg(long)]
    pub reason: Option<String>,
    /// Who asks, as the decision and the audit log name it (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    /// `human`: one line; `json`: the outcome as JSON.
    #[arg(long, value_enum, default_value = "human")]
    pub format: OutFormat,
}

pub fn run(a: PauseArgs, what: Pause) -> anyhow::Result<ExitCode> {
    let root = super::repo_root(a.repo.as_deref());
    let url = super::db_url_was_default(a.db.as_deref(), Some(&root))?;
    let word = match what {
        Pause::Hold => "hold",
        Pause::Resume => "resume",
    };
    let by =
        a.by.or_else(|| std::env::var("USER").ok())
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| "cli".to_string());
    let reason = a
        .reason
        .filter(|r| !r.trim().is_empty())
        // The transition adds "(requested by NAME)".
        .unwrap_or_else(|| "no reason given".to_string());
    let rt = missionctl::runtime()?;
    let out = rt.block_on(async {
        let store = Store::connect(&url).await?;
        anyhow::Ok(
            hold::pause(
                &store,
                what,
                &a.rollout,
                &reason,
                &by,
                &format!("missionctl {word}"),
            )
            .await?,
        )
    })?;
    match a.format {
        OutFormat::Json => outln!("{}", serde_json::to_string_pretty(&out)?),
        OutFormat::Human if out.changed => outln!(
            "rollout {} of {} is {} now (decision {})",
            out.rollout_id,
            out.pack_id,
            out.state,
            out.decision_id.as_deref().unwrap_or("-")
        ),
        OutFormat::Human => outln!(
            "rollout {} of {} is {} already: nothing changed",
            out.rollout_id,
            out.pack_id,
            out.state
        ),
    }
    Ok(ExitCode::SUCCESS)
}
