//! `missionctl init DIR`

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to create (must be empty unless --force).
    pub dir: PathBuf,
    /// Write into a non-empty directory, overwriting template files.
    #[arg(long)]
    pub force: bool,
    /// The missionctl action the workflows use, `owner/repo@<commit>`: where
    /// this project is hosted and the commit to pin (default: what this
    /// build knows, when it was built with MISSIONCTL_ACTION_REPO).
    #[arg(long, value_name = "OWNER/REPO@COMMIT")]
    pub action: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let action = a.action.clone().or_else(missionctl::template::built_action);
    if let Some(act) = &action {
        missionctl::template::check_action(act).map_err(|e| anyhow::anyhow!("--action {e}"))?;
    }
    let oid = missionctl::template::init_with(&a.dir, a.force, action.as_deref())?;
    if action.is_none() {
        eprintln!(
            "warning: the workflows in .github/workflows name the placeholder action `{}`; \
             run `missionctl init --force --action OWNER/REPO@COMMIT` with where missionctl is hosted \
             and the commit to pin, or edit the `uses:` lines, before they can run",
            missionctl::template::ACTION_PLACEHOLDER
        );
    }
    let d = a.dir.display();
    outln!(
        "Created pack repository in {d} (commit {:.8} on main).",
        oid.to_string()
    );
    outln!();
    outln!("Next steps:");
    outln!("  cd {d}");
    outln!("  missionctl doctor                       # the repository, store and tokens in use");
    outln!("  missionctl validate                     # every file and rule, with file:line:col");
    outln!("  missionctl resolve --domain hr-ops --tenant acme --user alice --explain");
    outln!("  missionctl packs list                   # prompt_pack records, champions on main");
    outln!("  git switch -c my-change                 # edit a pack, bump its version, then:");
    outln!("  missionctl diff main HEAD");
    Ok(ExitCode::SUCCESS)
}
