//! `missionctl packs list`

use std::path::PathBuf;
use std::process::ExitCode;

use missionctl::catalog;

use super::OutFormat;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// One prompt_pack record per pack.
    #[command(
        after_help = "Examples:\n  missionctl packs list --history\n  missionctl packs list --rev my-branch --format json"
    )]
    List {
        /// The pack repository (default: the one the current directory is in, found upwards as git does).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// List the packs at this revision; versions not on main are challengers.
        #[arg(long)]
        rev: Option<String>,
        /// Include earlier versions from main's history as archived.
        #[arg(long)]
        history: bool,
        /// `human`: a table; `json`: the prompt_pack records as a JSON array.
        #[arg(long, value_enum, default_value = "human")]
        format: OutFormat,
    },
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::List {
            repo,
            rev,
            history,
            format,
        } => {
            let (records, diags) =
                catalog::list(&super::repo_root(repo.as_deref()), rev.as_deref(), history)?;
            let errors = diags.iter().filter(|d| d.is_error()).count();
            if errors > 0 {
                eprintln!(
                    "warning: {errors} validation error(s) at this revision; packs that failed to load are not listed (run `missionctl validate`)"
                );
            }
            match format {
                OutFormat::Json => outln!("{}", serde_json::to_string_pretty(&records)?),
                OutFormat::Human => {
                    outln!(
                        "{:<30} {:<8} {:<26} {:<10} {:<11} {:<20} CREATED BY",
                        "ID",
                        "SCOPE",
                        "SCOPE ID",
                        "VERSION",
                        "STATUS",
                        "CREATED AT"
                    );
                    for r in &records {
                        outln!(
                            "{:<30} {:<8} {:<26} {:<10} {:<11} {:<20} {}",
                            r.id,
                            r.scope_type,
                            r.scope_id,
                            r.version,
                            r.status,
                            r.created_at,
                            r.created_by
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
