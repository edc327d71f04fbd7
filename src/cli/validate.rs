//! `missionctl validate`

use std::path::PathBuf;
use std::process::ExitCode;

use missionctl::diagnostic::render;
use missionctl::{pack, validate};

use super::DiagFormat;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The pack repository (default: the one the current directory is in, found upwards as git does).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Validate this revision from the git object database instead of the work tree.
    #[arg(long)]
    pub rev: Option<String>,
    /// Require a higher version for every pack whose content changed since this revision.
    #[arg(long)]
    pub base: Option<String>,
    /// `human`: file:line:col with the source; `json`: one diagnostic per line; `github`: workflow annotations.
    #[arg(long, value_enum, default_value = "human")]
    pub format: DiagFormat,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let root = super::repo_root(a.repo.as_deref());
    let tree = super::open_tree(&root, a.rev.as_deref())?;
    let repo = pack::load(&tree);
    let base = match &a.base {
        Some(b) => Some(pack::load(&super::open_tree(&root, Some(b))?)),
        None => None,
    };
    let diags = validate::validate(&repo, base.as_ref());
    match a.format {
        DiagFormat::Human => {
            out!("{}", render::human(&diags, &repo, super::color()));
            let files = repo.packs.len();
            eprintln!(
                "{}: {} in {} ({} packs)",
                if diags
                    .iter()
                    .any(missionctl::diagnostic::Diagnostic::is_error)
                {
                    "invalid"
                } else {
                    "valid"
                },
                render::summary(&diags),
                tree.label,
                files
            );
        }
        DiagFormat::Json => out!("{}", render::json_lines(&diags)),
        DiagFormat::Github => out!("{}", render::github(&diags)),
    }
    Ok(
        if diags
            .iter()
            .any(missionctl::diagnostic::Diagnostic::is_error)
        {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}
