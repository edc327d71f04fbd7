//! The agents fragment sync owns: written whole and atomically, and (with
//! `--gateway`) read back from the Gateway after each write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value as Json;
use tokio::sync::{Mutex, mpsc};

use super::Event;
use crate::openclaw::render;
use crate::openclaw::workspace::{self, WorkspaceError};

/// The fragment sync owns: one entry per managed agent, every write whole.
pub(super) struct Shared {
    pub(super) entries: Mutex<BTreeMap<String, Json>>,
    pub(super) fragment: PathBuf,
    /// The Gateway's main config, touched after each fragment write.
    pub(super) gateway_config: Option<PathBuf>,
    /// Where to read the Gateway's agent list back, and how to say it.
    pub(super) verify: Option<Verify>,
    /// Read-backs in flight: aborted with sync (a task outliving it would
    /// hold the event channel open).
    pub(super) verifying: std::sync::Mutex<tokio::task::JoinSet<()>>,
}

#[derive(Clone)]
pub(super) struct Verify {
    pub(super) http: reqwest::Client,
    pub(super) url: String,
    pub(super) token: String,
    pub(super) config: Option<PathBuf>,
    pub(super) events: mpsc::UnboundedSender<Event>,
}

/// How long the Gateway gets to list a written fragment's agents before its
/// config is touched, and in all.
const RELOAD_TOUCH_AFTER: Duration = Duration::from_secs(5);
const RELOAD_GIVE_UP: Duration = Duration::from_secs(30);

impl Verify {
    /// The `openclaw/<id>` agents the Gateway lists now.
    pub(super) async fn listed(&self) -> Option<std::collections::BTreeSet<String>> {
        let v: Json = self
            .http
            .get(format!("{}/v1/models", self.url.trim_end_matches('/')))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some(
            v["data"]
                .as_array()?
                .iter()
                .filter_map(|m| {
                    m["id"]
                        .as_str()?
                        .strip_prefix("openclaw/")
                        .map(str::to_string)
                })
                .collect(),
        )
    }

    /// Wait until the Gateway lists every one of `ids`; touch its config
    /// once if it has not after [`RELOAD_TOUCH_AFTER`]; say how it went.
    pub(super) async fn check(self, ids: Vec<String>) {
        let start = tokio::time::Instant::now();
        let mut touched = false;
        loop {
            let missing: Vec<String> = match self.listed().await {
                Some(l) => ids.iter().filter(|i| !l.contains(*i)).cloned().collect(),
                None => ids.clone(),
            };
            let waited = start.elapsed();
            if missing.is_empty() || waited >= RELOAD_GIVE_UP {
                let _ = self.events.send(Event::Reloaded {
                    agents: ids.len(),
                    missing,
                    waited,
                });
                return;
            }
            if !touched && waited >= RELOAD_TOUCH_AFTER {
                touched = true;
                if let Some(c) = &self.config {
                    let _ = workspace::touch(c);
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Shared {
    /// Set one agent's entry and write the whole fragment (every managed
    /// agent), unless nothing changed.
    pub(super) async fn put(&self, id: &str, entry: Json) -> Result<bool, WorkspaceError> {
        let mut e = self.entries.lock().await;
        if e.get(id) == Some(&entry) {
            return Ok(false);
        }
        e.insert(id.to_string(), entry);
        let wrote = write_fragment(&self.fragment, &e, self.gateway_config.as_deref())?;
        if wrote {
            self.verify_reload(e.keys().cloned().collect());
        }
        Ok(wrote)
    }

    /// Read the Gateway's agent list back (in the background), if asked to.
    pub(super) fn verify_reload(&self, ids: Vec<String>) {
        if let Some(v) = self.verify.clone() {
            let mut set = self
                .verifying
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Finished read-backs are reaped as new ones start.
            while set.try_join_next().is_some() {}
            set.spawn(v.check(ids));
        }
    }

    pub(super) async fn write_all(&self) -> Result<bool, WorkspaceError> {
        let e = self.entries.lock().await;
        // No agent at all would take every agent off the Gateway.
        if e.is_empty() {
            return Ok(false);
        }
        write_fragment(&self.fragment, &e, self.gateway_config.as_deref())
    }
}

/// Write the agents fragment atomically, skipped when the file already
/// holds exactly this text (an identical rewrite is no reload). After a
/// write, `touch` (the Gateway's main config) gets a new modification time:
/// OpenClaw 2026.9.6 was seen once not to reload an included file for 15
/// minutes until the main config changed.
pub fn write_fragment(
    path: &Path,
    entries: &BTreeMap<String, Json>,
    touch: Option<&Path>,
) -> Result<bool, WorkspaceError> {
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(&render::agents_fragment(entries)).unwrap_or_default()
    );
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    workspace::replace_file(path, &text)?;
    if let Some(cfg) = touch {
        workspace::touch(cfg)?;
    }
    Ok(true)
}

/// Write the Gateway's `mcp` object (mission.yaml's MCP servers)
/// atomically, skipped when the file already holds exactly this text.
pub fn write_mcp_fragment(
    path: &Path,
    settings: &crate::openclaw::Settings,
) -> Result<bool, WorkspaceError> {
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(&settings.mcp_fragment()).unwrap_or_default()
    );
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    workspace::replace_file(path, &text)?;
    Ok(true)
}

/// The entries of an agents fragment sync wrote before (for agents the
/// registry cannot be asked about yet, so a restart drops no agent).
pub fn previous_entries(path: &Path) -> BTreeMap<String, Json> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Json>(&t).ok())
        .and_then(|v| v.get("entries").and_then(Json::as_object).cloned())
        .map(|m| m.into_iter().collect())
        .unwrap_or_default()
}
