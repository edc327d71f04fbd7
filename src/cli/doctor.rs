//! `missionctl doctor`: what a command run here would use, and whether each
//! piece works, with what to do when it does not.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use missionctl::locate;
use missionctl::store::probe::{self, Health};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The pack repository (default: the one the current directory is in, found upwards as git does).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// State store: sqlite://PATH or postgres://USER@HOST/DB; see --help for the default.
    #[arg(long, long_help = super::DB_HELP)]
    pub db: Option<String>,
    /// The registry tokens file `serve` would load.
    #[arg(long, env = "MISSIONCTL_TOKENS")]
    pub tokens: Option<PathBuf>,
    /// A running registry (`missionctl serve`) to reach, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,
    /// `human`: one line per check; `json`: the checks as a JSON array.
    #[arg(long, value_enum, default_value = "human")]
    pub format: super::OutFormat,
}

#[derive(serde::Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(serde::Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    /// What is used.
    value: String,
    /// What to do about it (empty when fine).
    fix: String,
}

fn check(name: &'static str, status: Status, value: String, fix: &str) -> Check {
    Check {
        name,
        status,
        value,
        fix: fix.to_string(),
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let rt = missionctl::runtime()?;
    let (root, found) = match &a.repo {
        Some(r) => (r.clone(), true),
        None => match locate::discover(Path::new(".")) {
            Some(r) => (r, true),
            None => (PathBuf::from("."), false),
        },
    };
    let mut checks = vec![repository(&root, found, a.repo.is_some())];
    checks.push(rt.block_on(store(a.db.as_deref(), &root)));
    checks.push(tokens(a.tokens.as_deref()));
    checks.push(rt.block_on(registry(a.registry.as_deref())));
    checks.extend(openclaw());
    checks.push(action(&root));
    match a.format {
        super::OutFormat::Json => outln!("{}", serde_json::to_string_pretty(&checks)?),
        super::OutFormat::Human => {
            outln!("missionctl {}", env!("MISSIONCTL_VERSION_LONG"));
            for c in &checks {
                let mark = match c.status {
                    Status::Ok => "ok  ",
                    Status::Warn => "warn",
                    Status::Fail => "FAIL",
                };
                outln!("{mark}  {:<11} {}", c.name, c.value);
                if !c.fix.is_empty() {
                    outln!("      {:<11} fix: {}", "", c.fix);
                }
            }
        }
    }
    Ok(if checks.iter().any(|c| c.status == Status::Fail) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn repository(root: &Path, found: bool, given: bool) -> Check {
    let shown = std::fs::canonicalize(root)
        .unwrap_or_else(|_| root.to_path_buf())
        .display()
        .to_string();
    if !found {
        return check(
            "repository",
            Status::Fail,
            "none: the current directory is not inside a pack repository".into(),
            "cd into one, pass --repo PATH, or create one with `missionctl init DIR`",
        );
    }
    if !root.join(missionctl::pack::MISSION_FILE).is_file() {
        return check(
            "repository",
            Status::Fail,
            format!("{shown} has no mission.yaml"),
            if given {
                "pass --repo with the pack repository's root (the directory holding mission.yaml)"
            } else {
                "run inside a pack repository, pass --repo, or create one with `missionctl init DIR`"
            },
        );
    }
    if git2::Repository::open(root).is_err() {
        // Inside another git repository, below its top: missionctl reads the
        // packs from the top of a commit, so that is no pack repository yet.
        if let Ok(outer) = git2::Repository::discover(root) {
            let top = outer.workdir().map_or_else(
                || outer.path().display().to_string(),
                |w| w.display().to_string(),
            );
            return check(
                "repository",
                Status::Fail,
                format!("{shown} is inside the git repository at {top}, not its top"),
                "missionctl reads packs from the top of a commit: make the pack repository a git repository of its own (outside this one), or move its files to that top",
            );
        }
        return check(
            "repository",
            Status::Warn,
            format!("{shown} (not a git repository)"),
            "`git init` it and commit: gate, diff, reconcile and improve read commits",
        );
    }
    check("repository", Status::Ok, shown, "")
}

async fn store(flag: Option<&str>, root: &Path) -> Check {
    let env = std::env::var(locate::DATABASE_ENV).ok();
    let choice = match locate::store(flag, env.as_deref(), Some(root)) {
        Ok(c) => c,
        Err(e) => {
            return check(
                "store",
                Status::Fail,
                e.to_string(),
                "fix store.url in mission.yaml (or pass --db / set MISSIONCTL_DATABASE_URL)",
            );
        }
    };
    let shown = format!(
        "{} (from {})",
        missionctl::store::redact(&choice.url),
        choice.origin
    );
    match probe::probe(&choice.url).await {
        Ok(Health::Missing { .. }) => {
            check("store", Status::Ok, format!("{shown}: not created yet"), "")
        }
        Ok(
            h @ Health::Reachable {
                applied,
                known,
                newest,
                newest_known,
            },
        ) => {
            if h.migrated() {
                check(
                    "store",
                    Status::Ok,
                    format!("{shown}: reachable, {applied} migrations applied"),
                    "",
                )
            } else if newest > newest_known {
                check(
                    "store",
                    Status::Fail,
                    format!(
                        "{shown}: migrated by a newer missionctl (migration {newest}; this build knows {newest_known})"
                    ),
                    "upgrade missionctl to the version that wrote it",
                )
            } else {
                check(
                    "store",
                    Status::Warn,
                    format!("{shown}: reachable, {applied} of {known} migrations applied"),
                    "the next command that opens it migrates it (back it up first if it matters)",
                )
            }
        }
        Err(e) => check(
            "store",
            Status::Fail,
            format!("{shown}: {e}"),
            "check the URL, the credentials and that the server runs; choose another with --db or MISSIONCTL_DATABASE_URL",
        ),
    }
}

fn tokens(file: Option<&Path>) -> Check {
    let Some(file) = file else {
        return check(
            "tokens",
            Status::Warn,
            "none (no --tokens, no MISSIONCTL_TOKENS): serve refuses every registry request".into(),
            "`missionctl token new --name NAME --role harness --tokens-file tokens.yaml`, then serve --tokens tokens.yaml",
        );
    };
    match missionctl::registry::auth::Tokens::load(file) {
        Ok(t) if t.is_empty() => check(
            "tokens",
            Status::Warn,
            format!("{}: no tokens", file.display()),
            "add one with `missionctl token new --name NAME --role harness --tokens-file FILE`",
        ),
        Ok(t) => check(
            "tokens",
            Status::Ok,
            format!("{}: {} token(s)", file.display(), t.len()),
            "",
        ),
        Err(e) => check(
            "tokens",
            Status::Fail,
            e.to_string(),
            "fix the file as the message says, or make a new one with `missionctl token new --tokens-file FILE`",
        ),
    }
}

async fn registry(url: Option<&str>) -> Check {
    let Some(url) = url else {
        return check(
            "registry",
            Status::Warn,
            "not checked (pass --registry URL to reach a running `missionctl serve`)".into(),
            "",
        );
    };
    // `serve --listen` takes HOST:PORT; a URL needs its scheme.
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return check(
            "registry",
            Status::Fail,
            format!("`{url}` is not a URL"),
            "write it as http://HOST:PORT (the address `serve --listen` was given, with http://)",
        );
    }
    let health = format!("{}/healthz", url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build();
    let answer = match client {
        Ok(c) => c.get(&health).send().await,
        Err(e) => {
            return check("registry", Status::Fail, format!("{url}: {e}"), "");
        }
    };
    match answer {
        Ok(r) if r.status().is_success() => {
            let commit = r
                .headers()
                .get(missionctl::registry::api::COMMIT_HEADER)
                .and_then(|v| v.to_str().ok())
                .map_or("no commit yet".to_string(), |c| {
                    format!("serving commit {c:.8}")
                });
            check("registry", Status::Ok, format!("{url}: up, {commit}"), "")
        }
        Ok(r) => check(
            "registry",
            Status::Fail,
            format!("{health} answered {}", r.status()),
            "is this a missionctl serve? check its log",
        ),
        Err(e) => check(
            "registry",
            Status::Fail,
            format!("{health}: {e}"),
            "start `missionctl serve`, or pass the URL it listens on",
        ),
    }
}

/// Node.js and OpenClaw: needed only by `quickstart --openclaw` and the
/// gate's `openclaw` harness, so their absence is a warning.
fn openclaw() -> Vec<Check> {
    use missionctl::openclaw::gateway;
    match gateway::find() {
        Ok(install) => {
            let (node, claw) = gateway::versions(&install);
            vec![
                check(
                    "node",
                    Status::Ok,
                    format!(
                        "{} ({})",
                        node.unwrap_or_else(|| "version unknown".into()),
                        install.node.display()
                    ),
                    "",
                ),
                check(
                    "openclaw",
                    if claw.as_deref() == Some(gateway::OPENCLAW_VERSION) {
                        Status::Ok
                    } else {
                        Status::Warn
                    },
                    format!(
                        "{} ({})",
                        claw.as_deref().unwrap_or("version unknown"),
                        install.entry.display()
                    ),
                    if claw.as_deref() == Some(gateway::OPENCLAW_VERSION) {
                        ""
                    } else {
                        "missionctl is tested with OpenClaw 2026.9.6: `npm install --prefix ~/.missionctl/openclaw openclaw@2026.9.6`, or set MISSIONCTL_OPENCLAW"
                    },
                ),
            ]
        }
        Err(e) => vec![check(
            "openclaw",
            Status::Warn,
            "not found (needed only by `quickstart --openclaw` and the openclaw harness)".into(),
            &e.to_string(),
        )],
    }
}

/// The missionctl action the repository's workflows pin.
fn action(root: &Path) -> Check {
    use missionctl::template;
    let dir = root.join(".github/workflows");
    let mut pins = Vec::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for l in text.lines() {
            let Some(v) = l.trim().trim_start_matches("- ").strip_prefix("uses:") else {
                continue;
            };
            let v = v.split('#').next().unwrap_or_default().trim().to_string();
            let repo = v.split('@').next().unwrap_or_default();
            if repo.rsplit('/').next() == Some("missionctl") && !pins.contains(&v) {
                pins.push(v);
            }
        }
    }
    let fix_pin = "run `missionctl init --force --action OWNER/REPO@COMMIT` in a copy, or edit the `uses:` lines in .github/workflows";
    match pins.as_slice() {
        [] => check(
            "action",
            Status::Warn,
            format!("no missionctl action in {}", dir.display()),
            "the gate runs in CI from .github/workflows (`missionctl init` writes them)",
        ),
        // A warning, not a failure: everything local works, and a new
        // `init` repository has it until it is pinned.
        [one] if one == template::ACTION_PLACEHOLDER => check(
            "action",
            Status::Warn,
            format!("the placeholder {one}: the workflows cannot run in CI yet"),
            fix_pin,
        ),
        [one] => match template::check_action(one) {
            Err(e) => check("action", Status::Fail, e, fix_pin),
            Ok(()) => match template::built_action() {
                Some(built) if &built != one => check(
                    "action",
                    Status::Warn,
                    format!("{one} (this binary is {built})"),
                    "pin the workflows to the commit of the missionctl you run, so CI and you agree",
                ),
                _ => check("action", Status::Ok, one.clone(), ""),
            },
        },
        many => check(
            "action",
            Status::Warn,
            format!("several pins: {}", many.join(", ")),
            "pin every workflow to the same commit",
        ),
    }
}
