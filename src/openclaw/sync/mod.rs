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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;
use tokio::sync::{Mutex, Notify, mpsc};

use super::Settings;
use super::render;
use super::workspace::{self, WorkspaceError};
use crate::model::{Arm, Tier};
use crate::resolve::{Link, Resolved};

mod agents;
mod event;
mod fragment;
mod watch;

pub use agents::{AgentSpec, AgentsFile, load_agents};
pub use event::Event;
use fragment::{Shared, Verify};
pub use fragment::{previous_entries, write_fragment, write_mcp_fragment};
use watch::watch;

/// The most a registry answer may hold.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{file}: {message}")]
    AgentsFile { file: String, message: String },
    #[error("agent `{agent}`: {message}")]
    Agent { agent: String, message: String },
    #[error("{}", agents_failed(.0))]
    Agents(Vec<(String, String)>),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
}

fn agents_failed(failed: &[(String, String)]) -> String {
    let mut s = format!("{} agent(s) not delivered:", failed.len());
    for (agent, why) in failed {
        s.push_str(&format!("\n  agent `{agent}`: {why}"));
    }
    s
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
    /// Each layer as `pack version`, global first.
    pub fn chain(&self) -> Vec<String> {
        self.scope_chain
            .iter()
            .map(|l| format!("{} {}", l.pack_id, l.version))
            .collect()
    }

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

pub struct SyncOptions {
    pub registry: String,
    pub token: String,
    pub agents: AgentsFile,
    /// Long-poll wait per request.
    pub wait: Duration,
    /// One pass, then return (errors are fatal).
    pub once: bool,
    /// The Gateway's main config file, touched after each fragment write.
    pub gateway_config: Option<PathBuf>,
    /// How long a refused agent waits before it is asked about again.
    pub refused_retry: Duration,
    /// The Gateway's URL and token: after each fragment write, its agent
    /// list (`GET /v1/models`) is read back until it lists every agent.
    pub gateway: Option<(String, String)>,
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

/// Write the workspace for what was served; the agent's fragment entry.
fn deliver(
    opts: &SyncOptions,
    a: &AgentSpec,
    served: &Served,
) -> Result<(workspace::Written, Json), SyncError> {
    let settings = served.openclaw.clone().unwrap_or_default();
    let ws = render::render(
        &served.resolved(),
        &a.binding(),
        served.arm,
        served.commit.as_deref(),
        &settings,
    );
    let written = workspace::write(&a.workspace, &ws)?;
    if let Some(path) = &opts.agents.mcp_fragment {
        write_mcp_fragment(path, &settings)?;
    }
    let model = a.model.as_deref().or(opts.agents.model.as_deref());
    let dir = a.workspace.display().to_string();
    Ok((written, render::agent_entry(&ws, &dir, model, &settings)))
}

fn backoff(attempt: u32) -> Duration {
    // 0.5 s doubling to 30 s, with up to 25% jitter so many agents do not
    // retry in step after a registry restart.
    let base = 0.5f64 * 2f64.powi(attempt.min(6) as i32);
    let jitter = 1.0 + rand::random::<f64>() * 0.25;
    Duration::from_secs_f64((base * jitter).min(30.0))
}

/// How long an agent the registry refused (unknown chain, refused token)
/// waits before asking again: a merge or a new token may fix it.
pub const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// One agent's state after the first pass.
struct Start {
    etag: Option<String>,
    last: Option<Served>,
    /// The registry's refusal the first pass reported (not said again).
    refused: Option<String>,
}

/// The first pass: every agent asked once (concurrently), its workspace
/// written, and one fragment holding every agent written before the
/// Gateway can see any of them. An agent the registry cannot be asked
/// about keeps the entry an earlier sync wrote; one it refuses is reported
/// and left out, and the others go on.
async fn first_pass(
    http: &reqwest::Client,
    opts: &Arc<SyncOptions>,
    shared: &Shared,
    events: &mpsc::UnboundedSender<Event>,
) -> (BTreeMap<String, Start>, Vec<(String, String)>) {
    let previous = previous_entries(&opts.agents.fragment);
    let mut asks = tokio::task::JoinSet::new();
    for (i, a) in opts.agents.agents.iter().enumerate() {
        let (http, opts, a) = (http.clone(), opts.clone(), a.clone());
        asks.spawn(async move { (i, poll(&http, &opts, &a, None, Duration::ZERO).await) });
    }
    let mut answers = Vec::new();
    while let Some(r) = asks.join_next().await {
        if let Ok(v) = r {
            answers.push(v);
        }
    }
    answers.sort_by_key(|(i, _)| *i);
    let answers = answers
        .into_iter()
        .map(|(i, r)| (&opts.agents.agents[i], r));
    let mut starts = BTreeMap::new();
    let mut failed = Vec::new();
    let mut entries = shared.entries.lock().await;
    for (a, answer) in answers {
        let outcome: Result<(), (String, bool)> = match answer {
            Ok(Some((served, tag))) => match deliver(opts, a, &served) {
                Ok((w, entry)) => {
                    entries.insert(a.id.clone(), entry);
                    say_written(events, a, &served, w.drift, w.changed);
                    starts.insert(
                        a.id.clone(),
                        Start {
                            etag: Some(tag),
                            last: Some(served),
                            refused: None,
                        },
                    );
                    continue;
                }
                Err(e) => Err((e.to_string(), true)),
            },
            Ok(None) => Err(("the registry answered 304 to a first request".into(), true)),
            Err(e) => Err((e.message, e.retry)),
        };
        if let Err((error, retry)) = outcome {
            if retry && let Some(e) = previous.get(&a.id) {
                entries.insert(a.id.clone(), e.clone());
            }
            let _ = events.send(Event::Failed {
                agent: a.id.clone(),
                error: error.clone(),
                retry,
                again: opts.refused_retry,
            });
            failed.push((a.id.clone(), error.clone()));
            starts.insert(
                a.id.clone(),
                Start {
                    etag: None,
                    last: None,
                    refused: (!retry).then_some(error),
                },
            );
        }
    }
    drop(entries);
    (starts, failed)
}

/// Run sync. With `once`, every agent is delivered once, the fragment
/// written, and the agents that failed are the error; otherwise this runs
/// until the process stops (an error only when no agent could be served).
pub async fn run(opts: SyncOptions, events: mpsc::UnboundedSender<Event>) -> Result<(), SyncError> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| SyncError::Agent {
            agent: "(all)".into(),
            message: format!("HTTP client: {e}"),
        })?;
    // One sync per workspace: a second one would race this one's renames.
    // An agent whose workspace cannot be held is reported and skipped.
    let mut opts = opts;
    let of = opts.agents.agents.len();
    let mut locks = Vec::new();
    let mut unheld = Vec::new();
    let mut waiting: Vec<AgentSpec> = Vec::new();
    opts.agents
        .agents
        .retain(|a| match workspace::lock(&a.workspace) {
            Ok(l) => {
                locks.push(l);
                true
            }
            Err(message) => {
                let _ = events.send(Event::Failed {
                    agent: a.id.clone(),
                    error: message.clone(),
                    retry: false,
                    again: opts.refused_retry,
                });
                unheld.push((a.id.clone(), message));
                waiting.push(a.clone());
                false
            }
        });
    let shared = Arc::new(Shared {
        entries: Mutex::new(BTreeMap::new()),
        fragment: opts.agents.fragment.clone(),
        gateway_config: opts.gateway_config.clone(),
        verify: opts.gateway.as_ref().map(|(url, token)| Verify {
            http: http.clone(),
            url: url.clone(),
            token: token.clone(),
            config: opts.gateway_config.clone(),
            events: events.clone(),
        }),
        verifying: std::sync::Mutex::new(tokio::task::JoinSet::new()),
    });
    let opts = Arc::new(opts);
    let (starts, mut failed) = first_pass(&http, &opts, &shared, &events).await;
    failed.splice(0..0, unheld);
    // A fragment listing no agent would take every agent off the Gateway:
    // it is not written (the old one, if any, stays).
    let n = shared.entries.lock().await.len();
    if n > 0 && shared.write_all().await? {
        let _ = events.send(Event::Fragment { agents: n, of });
    }
    // Written or not, the Gateway should serve every agent now.
    if n > 0 && !opts.once {
        shared.verify_reload(shared.entries.lock().await.keys().cloned().collect());
    }
    if opts.once || (failed.len() == of && waiting.is_empty()) {
        return if failed.is_empty() {
            Ok(())
        } else {
            Err(SyncError::Agents(failed))
        };
    }
    let mut starts = starts;
    let wakes: BTreeMap<String, Arc<Notify>> = opts
        .agents
        .agents
        .iter()
        .map(|a| (a.id.clone(), Arc::new(Notify::new())))
        .collect();
    // Kept alive while sync runs; without it, drift waits for the next poll.
    // The fragment is sync's: a hand edit of it is rewritten from memory.
    let fragment_wake = Arc::new(Notify::new());
    let _watcher = watch(
        &opts.agents.agents,
        &wakes,
        &opts.agents.fragment,
        fragment_wake.clone(),
        &events,
    );
    let mut tasks = tokio::task::JoinSet::new();
    {
        // In the JoinSet: aborted with sync, never holding the channel open.
        let (shared, events) = (shared.clone(), events.clone());
        tasks.spawn(async move {
            loop {
                fragment_wake.notified().await;
                match shared.write_all().await {
                    Ok(true) => {
                        let _ = events.send(Event::Drift {
                            agent: "(fragment)".into(),
                            files: vec![shared.fragment.display().to_string()],
                        });
                    }
                    Ok(false) => {}
                    Err(e) => {
                        let _ = events.send(Event::Retrying {
                            agent: "(fragment)".into(),
                            error: e.to_string(),
                            after: Duration::ZERO,
                        });
                    }
                }
            }
        });
    }
    let _locks = locks;
    for a in opts.agents.agents.clone() {
        let start = starts.remove(&a.id).unwrap_or(Start {
            etag: None,
            last: None,
            refused: None,
        });
        let wake = wakes[&a.id].clone();
        let (http, opts, shared, events) =
            (http.clone(), opts.clone(), shared.clone(), events.clone());
        tasks.spawn(async move { follow(&http, &opts, &shared, &a, start, &wake, &events).await });
    }
    // Agents whose workspace another sync held: asked again every
    // `refused_retry`, then followed like the others.
    for a in waiting {
        let (http, opts, shared, events) =
            (http.clone(), opts.clone(), shared.clone(), events.clone());
        tasks.spawn(async move {
            let _lock = loop {
                tokio::time::sleep(opts.refused_retry).await;
                if let Ok(l) = workspace::lock(&a.workspace) {
                    break l;
                }
            };
            let start = Start {
                etag: None,
                last: None,
                refused: None,
            };
            follow(&http, &opts, &shared, &a, start, &Notify::new(), &events).await
        });
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            return Err(e);
        }
    }
    Ok(())
}

/// One agent, for as long as sync runs.
async fn follow(
    http: &reqwest::Client,
    opts: &SyncOptions,
    shared: &Shared,
    a: &AgentSpec,
    start: Start,
    wake: &Notify,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), SyncError> {
    let Start {
        mut etag,
        mut last,
        mut refused,
    } = start;
    let mut attempt = 0u32;
    loop {
        let answer = tokio::select! {
            r = poll(http, opts, a, etag.as_deref(), opts.wait) => r,
            () = wake.notified() => {
                // A managed file changed on disk: restore it now, then poll again.
                if let Some(s) = &last {
                    repair(opts, shared, a, s, events).await;
                }
                continue;
            }
        };
        match answer {
            Ok(Some((served, tag))) => {
                attempt = 0;
                refused = None;
                let put = match deliver(opts, a, &served) {
                    Ok((w, entry)) => shared
                        .put(&a.id, entry)
                        .await
                        .map(|_| w)
                        .map_err(SyncError::from),
                    Err(e) => Err(e),
                };
                match put {
                    Ok(w) => {
                        say_written(events, a, &served, w.drift, w.changed);
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
                if let Some(s) = &last {
                    repair(opts, shared, a, s, events).await;
                }
            }
            Err(e) if !e.retry => {
                // This agent only: the others keep syncing. Said once per
                // distinct refusal, asked again after a while.
                if refused.as_deref() != Some(e.message.as_str()) {
                    let _ = events.send(Event::Failed {
                        agent: a.id.clone(),
                        error: e.message.clone(),
                        retry: false,
                        again: opts.refused_retry,
                    });
                    refused = Some(e.message);
                }
                etag = None;
                tokio::time::sleep(opts.refused_retry).await;
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

/// Say what a workspace write did: drift repaired, and (when `delivered`)
/// the version the agent is now on.
fn say_written(
    events: &mpsc::UnboundedSender<Event>,
    a: &AgentSpec,
    served: &Served,
    drift: Vec<String>,
    delivered: bool,
) {
    if !drift.is_empty() {
        let _ = events.send(Event::Drift {
            agent: a.id.clone(),
            files: drift,
        });
    }
    if delivered {
        let _ = events.send(Event::Delivered {
            agent: a.id.clone(),
            pack_id: served.pack_id.clone(),
            pack_version: served.pack_version.clone(),
            arm: served.arm,
            chain: served.chain(),
        });
    }
}

/// Restore hand-edited managed files of `a` to what `served` says.
async fn repair(
    opts: &SyncOptions,
    shared: &Shared,
    a: &AgentSpec,
    served: &Served,
    events: &mpsc::UnboundedSender<Event>,
) {
    // The workspace is made to hold what was served, whatever is on disk:
    // an edited, deleted or rewritten sidecar vouches for nothing. The
    // write is idempotent, so a workspace that is right is left alone.
    let r = match deliver(opts, a, served) {
        Ok((w, entry)) => {
            if w.changed {
                let mut files = w.drift;
                if files.is_empty() {
                    files.push("the workspace (missing files or sidecar)".into());
                }
                let _ = events.send(Event::Drift {
                    agent: a.id.clone(),
                    files,
                });
            }
            shared
                .put(&a.id, entry)
                .await
                .map(|_| ())
                .map_err(SyncError::from)
        }
        Err(e) => Err(e),
    };
    if let Err(e) = r {
        let _ = events.send(Event::Retrying {
            agent: a.id.clone(),
            error: e.to_string(),
            after: opts.wait,
        });
    }
}
