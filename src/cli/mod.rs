//! Command-line surface. Each command lives in its own file and only wires
//! flags to the library.

/// `println!` for command output: when stdout is closed (the reader, e.g.
/// `head`, went away) the process ends quietly with status 0, as ripgrep
/// does, instead of panicking; any other write error is exit 2.
macro_rules! outln {
    () => { $crate::cli::write_out(format_args!(""), true) };
    ($($t:tt)*) => { $crate::cli::write_out(format_args!($($t)*), true) };
}
/// `print!` for command output, with [`outln!`]'s handling of a closed stdout.
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::write_out(format_args!($($t)*), false) };
}

mod demo;
mod diff;
mod gate;
mod github;
mod improve;
mod init;
pub mod log;
mod openclaw;
mod packs;
mod quickstart;
mod quickstart_openclaw;
mod reconcile;
pub mod reference;
mod resolve;
mod validate;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use missionctl::git::Tree;

#[derive(Parser, Debug)]
#[command(
    name = "missionctl",
    version,
    about = "GitOps control plane for fleets of AI agents",
    long_about = "Packs, policies and thresholds live in git. missionctl validates and resolves them, \
                  gates challengers against champions, promotes merges through a canary and rolls back reverts."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the whole loop on the embedded default, narrated: init, a challenger, the gate,
    /// the merge, a canary on telemetry, full promotion, a bad version rolled back automatically,
    /// the improvement worker proposing a fix the gate passes.
    #[command(
        after_help = "Examples:\n  missionctl quickstart\n  missionctl quickstart --dir /tmp/qs\n  missionctl quickstart --openclaw"
    )]
    Quickstart {
        /// Where to put the repositories and the state (default: a new temporary directory).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// The loop with real OpenClaw agents (needs Node.js >= 24.16 and OpenClaw 2026.9.6).
        #[arg(long)]
        openclaw: bool,
    },
    /// Write the example pack repository into DIR and commit it on `main`.
    #[command(
        after_help = "Examples:\n  missionctl init fleet\n  missionctl init fleet --force --action acme/missionctl@<40-character commit>"
    )]
    Init(init::Args),
    /// Check every file and rule; exit 1 on any error.
    #[command(
        after_help = "Examples:\n  missionctl validate --repo fleet\n  missionctl validate --rev HEAD --base main --format json"
    )]
    Validate(validate::Args),
    /// Print the effective pack for a scope chain.
    #[command(
        after_help = "Examples:\n  missionctl resolve --domain hr-ops --tenant acme --user alice --explain\n  missionctl resolve --domain hr-ops --tenant acme --format json | head"
    )]
    Resolve(resolve::Args),
    /// Show what changed between two revisions, down to prompt text.
    #[command(
        after_help = "Examples:\n  missionctl diff main HEAD\n  missionctl diff main my-branch --format json"
    )]
    Diff(diff::Args),
    /// Evaluate challenger (head) against champion (base) and write the evidence; exit 0 unless it cannot run.
    #[command(
        after_help = "Examples:\n  missionctl eval --base main --head my-branch --out evidence"
    )]
    Eval(gate::Args),
    /// Evaluate and decide: exit 0 pass, 1 blocked, 2 could not evaluate.
    #[command(
        after_help = "Examples:\n  missionctl gate --base main --head my-branch --out evidence\n  missionctl gate --base main --head my-branch --budget-usd 2 --format json"
    )]
    Gate(gate::Args),
    /// Propose challenger packs from eval failures and telemetry (a branch or pull request; never a promotion).
    Improve(improve::Args),
    /// Turn new commits on the main branch into promotion decisions.
    #[command(
        after_help = "Examples:\n  missionctl reconcile --repo fleet.git --once\n  missionctl reconcile --repo https://github.com/acme/fleet.git --notes"
    )]
    Reconcile(reconcile::ReconcileArgs),
    /// Run the reconciler continuously (poll, file watch, GitHub webhook).
    #[command(
        after_help = "Examples:\n  missionctl serve --repo fleet.git --listen 127.0.0.1:8080 --tokens tokens.yaml"
    )]
    Serve(reconcile::ServeArgs),
    /// Write a revert commit restoring a pack to an earlier version.
    #[command(
        after_help = "Examples:\n  missionctl rollback --pack hr-ops-pack --to 1.0.0 --reason \"escalations missed\" --push"
    )]
    Rollback(reconcile::RollbackArgs),
    /// The audit history of promotion decisions.
    #[command(
        after_help = "Examples:\n  missionctl decisions --pack hr-ops-pack\n  missionctl decisions --format json"
    )]
    Decisions(reconcile::DecisionsArgs),
    /// Rollouts in progress: each arm's KPIs and the next step.
    #[command(
        after_help = "Examples:\n  missionctl status --all\n  missionctl status --format json"
    )]
    Status(reconcile::StatusArgs),
    /// Run telemetry.
    #[command(after_help = "Examples:\n  missionctl telemetry ingest runs.jsonl --repo fleet.git")]
    Telemetry {
        #[command(subcommand)]
        command: TelemetryCommand,
    },
    /// Registry tokens.
    #[command(
        after_help = "Examples:\n  missionctl token new --name harness-acme --role harness --tenant acme"
    )]
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Post evidence to GitHub.
    #[command(
        after_help = "Examples:\n  missionctl github verdict --sha \"$HEAD_SHA\" --pr-hint evidence/pr-number\n  missionctl github report --evidence evidence --pr 12"
    )]
    Github {
        #[command(subcommand)]
        command: github::Command,
    },
    /// Deliver packs to OpenClaw agents: render a workspace, or sync a Gateway's agents from the registry.
    #[command(
        after_help = "Examples:\n  missionctl openclaw render --domain hr-ops --tenant acme --out workspace\n  missionctl openclaw sync --registry http://127.0.0.1:8080 --token-file harness.token --agents agents.yaml"
    )]
    Openclaw {
        #[command(subcommand)]
        command: openclaw::Command,
    },
    /// Serve the built-in deterministic stand-in model (OpenAI-compatible) on loopback.
    #[command(
        after_help = "Examples:\n  missionctl demo-model --listen 127.0.0.1:8089 --latency-ms 50"
    )]
    DemoModel(demo::Args),
    /// Pack records (`prompt_pack`) with champion / challenger / archived status.
    #[command(
        after_help = "Examples:\n  missionctl packs list --history\n  missionctl packs list --rev my-branch --format json"
    )]
    Packs {
        #[command(subcommand)]
        command: packs::Command,
    },
}

#[derive(Subcommand, Debug)]
pub enum TelemetryCommand {
    /// Store run_telemetry records from a file (as POST /v1/runs does).
    #[command(
        after_help = "Examples:\n  missionctl telemetry ingest runs.jsonl --repo fleet.git --tenant acme"
    )]
    Ingest(reconcile::IngestArgs),
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a new bearer token and print its tokens-file entry.
    #[command(
        after_help = "Examples:\n  missionctl token new --name harness-acme --role harness --tenant acme\n  missionctl token new --name ops --role admin"
    )]
    New(reconcile::TokenArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiagFormat {
    Human,
    Json,
    Github,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutFormat {
    Human,
    Json,
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init(a) => init::run(a),
        Command::Quickstart { dir, openclaw } => {
            let rt = tokio::runtime::Runtime::new()?;
            if openclaw {
                rt.block_on(quickstart_openclaw::run(dir))?;
            } else {
                rt.block_on(quickstart::run(dir))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(a) => validate::run(a),
        Command::Openclaw { command } => openclaw::run(command),
        Command::Resolve(a) => resolve::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Packs { command } => packs::run(command),
        Command::Eval(a) => gate::run(a, false),
        Command::Gate(a) => gate::run(a, true),
        Command::Improve(a) => improve::run(a),
        Command::DemoModel(a) => demo::run(a),
        Command::Github { command } => github::run(command),
        Command::Reconcile(a) => reconcile::reconcile(a),
        Command::Serve(a) => reconcile::serve(a),
        Command::Rollback(a) => reconcile::rollback(a),
        Command::Decisions(a) => reconcile::decisions(a),
        Command::Status(a) => reconcile::status(a),
        Command::Telemetry {
            command: TelemetryCommand::Ingest(a),
        } => reconcile::ingest(a),
        Command::Token {
            command: TokenCommand::New(a),
        } => reconcile::token(a),
    }
}

/// The tree to read: the work tree, or a revision from the object database.
pub fn open_tree(repo: &Path, rev: Option<&str>) -> anyhow::Result<Tree> {
    match rev {
        Some(r) => Tree::at_rev(repo, r).with_context(|| format!("reading {}", repo.display())),
        None => {
            if !repo.is_dir() {
                anyhow::bail!(
                    "{} is not a directory; pass --repo with the pack repository's path",
                    repo.display()
                );
            }
            Tree::work_tree(repo).with_context(|| format!("reading {}", repo.display()))
        }
    }
}

/// Like [`open_tree`], but paths are looked up on demand: for commands that
/// read a few known files (one chain) from a possibly huge repository.
pub fn open_tree_lazy(repo: &Path, rev: Option<&str>) -> anyhow::Result<Tree> {
    match rev {
        Some(r) => {
            Tree::at_rev_lazy(repo, r).with_context(|| format!("reading {}", repo.display()))
        }
        None => {
            if !repo.is_dir() {
                anyhow::bail!(
                    "{} is not a directory; pass --repo with the pack repository's path",
                    repo.display()
                );
            }
            Ok(Tree::work_tree_lazy(repo))
        }
    }
}

/// The state store URL: the flag (or MISSIONCTL_DATABASE_URL), else
/// mission.yaml's `store.url` in the work tree at `repo` when there is one (a
/// relative SQLite path is relative to the repository), else a SQLite file in
/// the user's data directory.
pub fn db_url(flag: Option<&str>, repo: Option<&Path>) -> String {
    if let Some(u) = flag.filter(|u| !u.is_empty()) {
        return u.to_string();
    }
    let from_mission = repo.and_then(|repo| {
        let u = missionctl::pack::mission(&Tree::work_tree_lazy(repo))?
            .store_url()?
            .to_string();
        Some(match u.strip_prefix("sqlite://") {
            Some(p) if !p.starts_with('/') => format!("sqlite://{}", repo.join(p).display()),
            _ => u,
        })
    });
    from_mission.unwrap_or_else(missionctl::store::default_url)
}

pub fn color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Write command output to stdout (see [`outln!`]).
pub fn write_out(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let r = o
        .write_fmt(args)
        .and_then(|()| if newline { o.write_all(b"\n") } else { Ok(()) })
        .and_then(|()| o.flush());
    if let Err(e) = r {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(2);
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command a person runs shows an example in its `--help`.
    #[test]
    fn every_command_has_an_example() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in c.get_subcommands() {
                let p = format!("{path} {}", sub.get_name());
                let help = sub
                    .get_after_help()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                if !help.contains("Example") {
                    missing.push(p.clone());
                }
                walk(sub, &p, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "missionctl", &mut missing);
        assert!(missing.is_empty(), "no example in --help: {missing:?}");
    }
}
