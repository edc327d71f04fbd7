//! `missionctl diff BASE HEAD`

use std::path::PathBuf;
use std::process::ExitCode;

use missionctl::{diff, pack};

use super::OutFormat;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The old revision (a branch, tag or commit), e.g. main.
    pub base: String,
    /// The new revision, e.g. HEAD or a pull request's branch.
    pub head: String,
    /// The pack repository (default: the one the current directory is in, found upwards as git does).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// `human`: a readable report; `json`: the whole diff as one JSON document.
    #[arg(long, value_enum, default_value = "human")]
    pub format: OutFormat,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let root = super::repo_root(a.repo.as_deref());
    let base = pack::load(&super::open_tree(&root, Some(&a.base))?);
    let head = pack::load(&super::open_tree(&root, Some(&a.head))?);
    let report = diff::diff(&base, &head);
    match a.format {
        OutFormat::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        OutFormat::Human => out!("{}", human(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

fn human(r: &diff::DiffReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if r.is_empty() {
        let _ = writeln!(
            s,
            "no pack, policy or config changes between {} and {}",
            r.base, r.head
        );
        return s;
    }
    for p in &r.packs {
        let v = match (&p.base_version, &p.head_version) {
            (Some(b), Some(h)) => format!("{b} -> {h}"),
            (None, Some(h)) => format!("new {h}"),
            (Some(b), None) => format!("removed {b}"),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "{} {} ({} {}) {v}  [{}]",
            match p.status {
                diff::Status::Added => "+",
                diff::Status::Removed => "-",
                diff::Status::Modified => "~",
            },
            p.pack_id,
            p.scope_type,
            p.scope_id,
            p.file
        );
        for f in &p.fields {
            let _ = writeln!(s, "    {}: {} -> {}", f.field, f.before, f.after);
        }
        for c in &p.cases_added {
            let _ = writeln!(s, "    eval case added: {c}");
        }
        for c in &p.cases_removed {
            let _ = writeln!(s, "    eval case removed: {c}");
        }
        for c in &p.cases_changed {
            let _ = writeln!(s, "    eval case changed: {c}");
        }
        for d in &p.prompts {
            let _ = writeln!(
                s,
                "    prompt section {} ({} -> {} tokens):",
                d.section, d.tokens_before, d.tokens_after
            );
            for line in d.unified.lines() {
                let _ = writeln!(s, "      {line}");
            }
        }
    }
    for f in &r.policies_changed {
        let _ = writeln!(s, "! policy changed: {f} (needs policy-owner approval)");
    }
    if r.mission_changed {
        let _ = writeln!(s, "! mission.yaml changed");
    }
    let _ = writeln!(s, "\n{} resolved chain(s) change:", r.chains.len());
    for c in r.chains.iter().take(50) {
        let _ = writeln!(
            s,
            "    {}: {} -> {}",
            c.chain,
            c.base_version.as_deref().unwrap_or("(none)"),
            c.head_version.as_deref().unwrap_or("(none)")
        );
    }
    if r.chains.len() > 50 {
        let _ = writeln!(
            s,
            "    … and {} more (use --format json for all)",
            r.chains.len() - 50
        );
    }
    s
}
