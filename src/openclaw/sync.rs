//! `missionctl openclaw sync`: keep the workspaces of one OpenClaw Gateway's
//! agents on the version the registry assigns each of them.
//!
//! One task per agent follows the registry's long-poll (`GET /v1/resolve`
//! with `If-None-Match` and `wait`), renders what it is served (the
//! champion, or the canary arm for agents the rollout put there), writes
//! the workspace atomically and the agents fragment the Gateway includes.
//! A network error or a registry restart is retried with capped
//! exponential backoff; the workspace keeps the last good version meanwhile.
//! After every poll the workspace is checked for hand edits (drift), which
//! are reported, kept under `.missionctl/drift/`, and replaced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;
use tokio::sync::{Mutex, mpsc};

use super::Settings;
use super::render::{self, AgentBinding};
use super::workspace::{self, WorkspaceError};
use crate::model::{Arm, Tier};
use crate::resolve::{Link, Resolved};

/// The most an agents file may hold.
const AGENTS_FILE_LIMIT: u64 = 4 * 1024 * 1024;
/// The most a registry answer may hold.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{file}: {message}")]
    AgentsFile { file: String, message: String },
    #[error("agent `{agent}`: {message}")]
    Agent { agent: String, message: String },
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
}

/// One agent in the agents file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub id: String,
    pub domain: String,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// The agent's workspace directory (relative to the agents file).
    pub workspace: PathBuf,
    /// The agent's model (`provider/model`), else the file's `model`.
    #[serde(default)]
    pub model: Option<String>,
}

impl AgentSpec {
    pub fn binding(&self) -> AgentBinding {
        AgentBinding {
            id: self.id.clone(),
            domain: self.domain.clone(),
            tenant: self.tenant.clone(),
            user: self.user.clone(),
        }
    }
}

/// `agents.yaml`: the Gateway's agents, each bound to a chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsFile {
    /// The file the Gateway's config includes as its `agents` object
    /// (`agents: { $include: "…" }`), relative to the agents file.
    pub fragment: PathBuf,
    /// Default model for every agent (`provider/model`).
    #[serde(default)]
    pub model: Option<String>,
    pub agents: Vec<AgentSpec>,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Read and check an agents file; relative paths become relative to it.
pub fn load_agents(path: &Path) -> Result<AgentsFile, SyncError> {
    let file = path.display().to_string();
    let err = |message: String| SyncError::AgentsFile {
        file: file.clone(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    if meta.len() > AGENTS_FILE_LIMIT {
        return Err(err(format!(
            "{} bytes is over the {AGENTS_FILE_LIMIT}-byte limit",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    let mut f: AgentsFile = serde_saphyr::from_str(&text).map_err(|e| {
        err(format!(
            "{e} (expected `fragment: FILE`, optional `model`, and `agents:` entries with id, domain, tenant, user, workspace)"
        ))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    f.fragment = base.join(&f.fragment);
    let mut seen = std::collections::BTreeSet::new();
    for (i, a) in f.agents.iter_mut().enumerate() {
        if !valid_id(&a.id) {
            return Err(err(format!(
                "agents[{i}].id: `{}` is not an OpenClaw agent id (letters, digits, `-` and `_`, at most 64)",
                a.id
            )));
        }
        if a.tenant.is_none() && a.user.is_none() {
            return Err(err(format!(
                "agents[{i}] (`{}`): bind the agent to a `tenant` (or a personal `user`): a bare domain chain serves no one, and its runs could not be attributed to anyone",
                a.id
            )));
        }
        if !seen.insert(a.id.clone()) {
            return Err(err(format!("agents[{i}].id: `{}` is listed twice", a.id)));
        }
        a.workspace = base.join(&a.workspace);
    }
    if f.agents.is_empty() {
        return Err(err("agents: lists no agent".into()));
    }
    Ok(f)
}

/// What the registry serves for a chain (`GET /v1/resolve`).
#[derive(Debug, Clone, Deserialize)]
pub struct Served {
    pub pack_id: String,
    pub pack_version: String,
    pub digest: String,
    pub scope_chain: Vec<Link>,
    pub arm: Arm,
    pub tier: Tier,
    #[serde(default)]
    pub commit: Option<String>,
    pub content: Json,
    /// `openclaw:` from the served revision's mission.yaml.
    #[serde(default)]
    pub openclaw: Option<Settings>,
}

impl Served {
    pub fn resolved(&self) -> Resolved {
        Resolved {
            pack_id: self.pack_id.clone(),
            pack_version: self.pack_version.clone(),
            digest: self.digest.clone(),
            scope_chain: self.scope_chain.clone(),
            tier: self.tier,
            content: self.content.clone(),
            provenance: BTreeMap::new(),
            prompt_tokens: 0,
            cases: Vec::new(),
        }
    }
}

/// Something sync did, for the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Delivered {
        agent: String,
        pack_id: String,
        pack_version: String,
        arm: Arm,
    },
    Drift {
        agent: String,
        files: Vec<String>,
    },
    Retrying {
        agent: String,
        error: String,
        after: Duration,
    },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Delivered {
                agent,
                pack_id,
                pack_version,
                arm,
            } => write!(f, "{agent}: now on {pack_id} {pack_version} ({arm})"),
            Event::Drift { agent, files } => write!(
                f,
                "{agent}: drift: {} edited by hand since missionctl wrote it; the edit is kept under .missionctl/drift/ and the managed version restored (change the pack in git instead)",
                files.join(", ")
            ),
            Event::Retrying {
                agent,
                error,
                after,
            } => write!(
                f,
                "{agent}: {error}; keeping the last good version, retrying in {:.1}s",
                after.as_secs_f64()
            ),
        }
    }
}

pub struct SyncOptions {
    pub registry: String,
    pub token: String,
    pub agents: AgentsFile,
    /// Long-poll wait per request.
    pub wait: Duration,
    /// One pass, then return (errors are fatal).
    pub once: bool,
}

/// A registry URL with any password removed, for messages.
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(an unparseable URL)".into(),
    }
}

struct Shared {
    entries: Mutex<BTreeMap<String, Json>>,
    fragment: PathBuf,
}

impl Shared {
    async fn put(&self, id: &str, entry: Json) -> Result<(), WorkspaceError> {
        let mut e = self.entries.lock().await;
        if e.get(id) == Some(&entry) {
            return Ok(());
        }
        e.insert(id.to_string(), entry);
        let text = serde_json::to_string_pretty(&render::agents_fragment(&e)).unwrap_or_default();
        workspace::replace_file(&self.fragment, &format!("{text}\n"))
    }
}

/// Why one poll failed, and whether retrying can help.
struct PollError {
    message: String,
    retry: bool,
}

async fn poll(
    http: &reqwest::Client,
    opts: &SyncOptions,
    a: &AgentSpec,
    etag: Option<&str>,
    wait: Duration,
) -> Result<Option<(Served, String)>, PollError> {
    let mut q: Vec<(&str, String)> = vec![("domain", a.domain.clone()), ("agent", a.id.clone())];
    if let Some(t) = &a.tenant {
        q.push(("tenant", t.clone()));
    }
    if let Some(u) = &a.user {
        q.push(("user", u.clone()));
    }
    if etag.is_some() && !wait.is_zero() {
        q.push(("wait", wait.as_secs().to_string()));
    }
    let mut url = reqwest::Url::parse(&format!(
        "{}/v1/resolve",
        opts.registry.trim_end_matches('/')
    ))
    .map_err(|e| PollError {
        message: format!("--registry: {e}"),
        retry: false,
    })?;
    url.query_pairs_mut()
        .extend_pairs(q.iter().map(|(k, v)| (*k, v.as_str())));
    let mut req = http
        .get(url)
        .bearer_auth(&opts.token)
        .timeout(wait + Duration::from_secs(15));
    if let Some(e) = etag {
        req = req.header(reqwest::header::IF_NONE_MATCH, e);
    }
    let retry = |message: String| PollError {
        message,
        retry: true,
    };
    let resp = req.send().await.map_err(|e| {
        retry(format!(
            "the registry at {} is unreachable ({})",
            shown(&opts.registry),
            e.without_url()
        ))
    })?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    let new_etag = resp
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = read_limited(resp, BODY_LIMIT)
        .await
        .map_err(|e| retry(format!("reading the registry's answer: {e}")))?;
    if !status.is_success() {
        let why = serde_json::from_slice::<Json>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        // 401/403/404 are configuration errors: the token or the chain is wrong.
        let fatal = matches!(status.as_u16(), 400 | 401 | 403 | 404);
        return Err(PollError {
            message: format!("the registry answered {status}: {why}"),
            retry: !fatal,
        });
    }
    let served: Served = serde_json::from_slice(&body).map_err(|e| {
        retry(format!(
            "the registry's answer is not a resolved pack ({e}); is {} a missionctl registry?",
            shown(&opts.registry)
        ))
    })?;
    Ok(Some((served, new_etag)))
}

/// A response body, refused past `limit` bytes.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if out.len() + chunk.len() > limit {
            return Err(format!("the answer is over {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn deliver(
    shared: &Shared,
    opts: &SyncOptions,
    a: &AgentSpec,
    served: &Served,
) -> Result<workspace::Written, SyncError> {
    let settings = served.openclaw.clone().unwrap_or_default();
    let ws = render::render(
        &served.resolved(),
        &a.binding(),
        served.arm,
        served.commit.as_deref(),
        &settings,
    );
    let written = workspace::write(&a.workspace, &ws)?;
    let model = a.model.as_deref().or(opts.agents.model.as_deref());
    let dir = a.workspace.display().to_string();
    shared
        .put(&a.id, render::agent_entry(&ws, &dir, model, &settings))
        .await?;
    Ok(written)
}

fn backoff(attempt: u32) -> Duration {
    // 0.5 s doubling to 30 s, with up to 25% jitter so many agents do not
    // retry in step after a registry restart.
    let base = 0.5f64 * 2f64.powi(attempt.min(6) as i32);
    let jitter = 1.0 + rand::random::<f64>() * 0.25;
    Duration::from_secs_f64((base * jitter).min(30.0))
}

/// Run sync. With `once`, every agent is delivered once and the first
/// error is returned; otherwise this runs until the process stops.
pub async fn run(opts: SyncOptions, events: mpsc::UnboundedSender<Event>) -> Result<(), SyncError> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| SyncError::Agent {
            agent: "(all)".into(),
            message: format!("HTTP client: {e}"),
        })?;
    let shared = Arc::new(Shared {
        entries: Mutex::new(BTreeMap::new()),
        fragment: opts.agents.fragment.clone(),
    });
    let opts = Arc::new(opts);
    if opts.once {
        for a in &opts.agents.agents {
            let agent_err = |message: String| SyncError::Agent {
                agent: a.id.clone(),
                message,
            };
            let (served, _) = poll(&http, &opts, a, None, Duration::ZERO)
                .await
                .map_err(|e| agent_err(e.message))?
                .ok_or_else(|| agent_err("the registry answered 304 to a first request".into()))?;
            let w = deliver(&shared, &opts, a, &served).await?;
            if !w.drift.is_empty() {
                let _ = events.send(Event::Drift {
                    agent: a.id.clone(),
                    files: w.drift,
                });
            }
            let _ = events.send(Event::Delivered {
                agent: a.id.clone(),
                pack_id: served.pack_id.clone(),
                pack_version: served.pack_version.clone(),
                arm: served.arm,
            });
        }
        return Ok(());
    }
    let mut tasks = tokio::task::JoinSet::new();
    for a in opts.agents.agents.clone() {
        let (http, opts, shared, events) =
            (http.clone(), opts.clone(), shared.clone(), events.clone());
        tasks.spawn(async move { follow(&http, &opts, &shared, &a, &events).await });
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            return Err(e);
        }
    }
    Ok(())
}

/// One agent, until a configuration error (unknown chain, refused token).
async fn follow(
    http: &reqwest::Client,
    opts: &SyncOptions,
    shared: &Shared,
    a: &AgentSpec,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), SyncError> {
    let mut etag: Option<String> = workspace::read_sidecar(&a.workspace)
        .filter(|s| workspace::drift(&a.workspace, s).is_empty())
        .map(|s| format!("\"{}\"", s.digest.trim_start_matches("sha256:")));
    let mut last: Option<Served> = None;
    let mut attempt = 0u32;
    loop {
        match poll(http, opts, a, etag.as_deref(), opts.wait).await {
            Ok(Some((served, tag))) => {
                attempt = 0;
                match deliver(shared, opts, a, &served).await {
                    Ok(w) => {
                        if !w.drift.is_empty() {
                            let _ = events.send(Event::Drift {
                                agent: a.id.clone(),
                                files: w.drift,
                            });
                        }
                        if w.changed {
                            let _ = events.send(Event::Delivered {
                                agent: a.id.clone(),
                                pack_id: served.pack_id.clone(),
                                pack_version: served.pack_version.clone(),
                                arm: served.arm,
                            });
                        }
                        etag = Some(tag);
                        last = Some(served);
                    }
                    Err(e) => {
                        let after = backoff(attempt);
                        attempt += 1;
                        let _ = events.send(Event::Retrying {
                            agent: a.id.clone(),
                            error: e.to_string(),
                            after,
                        });
                        tokio::time::sleep(after).await;
                    }
                }
            }
            Ok(None) => {
                attempt = 0;
                // Unchanged upstream: repair hand edits, if any.
                if let Some(s) = &last
                    && let Some(side) = workspace::read_sidecar(&a.workspace)
                {
                    let drifted = workspace::drift(&a.workspace, &side);
                    if !drifted.is_empty() {
                        let _ = events.send(Event::Drift {
                            agent: a.id.clone(),
                            files: drifted,
                        });
                        // A failed repair is said, and tried again after the next poll.
                        if let Err(e) = deliver(shared, opts, a, s).await {
                            let _ = events.send(Event::Retrying {
                                agent: a.id.clone(),
                                error: e.to_string(),
                                after: opts.wait,
                            });
                        }
                    }
                } else if last.is_none() {
                    // Started on a workspace already current: fetch it once
                    // in full so the fragment has this agent's entry.
                    etag = None;
                }
            }
            Err(e) if !e.retry => {
                return Err(SyncError::Agent {
                    agent: a.id.clone(),
                    message: e.message,
                });
            }
            Err(e) => {
                let after = backoff(attempt);
                attempt += 1;
                let _ = events.send(Event::Retrying {
                    agent: a.id.clone(),
                    error: e.message,
                    after,
                });
                tokio::time::sleep(after).await;
            }
        }
    }
}
