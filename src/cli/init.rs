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
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let oid = missionctl::template::init(&a.dir, a.force)?;
    let d = a.dir.display();
    println!(
        "Created pack repository in {d} (commit {:.8} on main).",
        oid.to_string()
    );
    println!();
    println!("Next steps:");
    println!("  cd {d}");
    println!("  missionctl validate                     # every file and rule, with file:line:col");
    println!("  missionctl resolve --domain hr-ops --tenant acme --user alice --explain");
    println!("  missionctl packs list                   # prompt_pack records, champions on main");
    println!("  git switch -c my-change                 # edit a pack, bump its version, then:");
    println!("  missionctl diff main HEAD");
    Ok(ExitCode::SUCCESS)
}
