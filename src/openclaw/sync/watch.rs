//! Watching the workspaces and the fragment for hand edits (`notify`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::{AgentSpec, Event};
use crate::openclaw::render;

/// Watch every agent's workspace: a change to a managed file (or the
/// sidecar) wakes that agent's task, which restores a hand edit at once.
/// None (said) when the platform cannot watch; drift is then repaired at
/// each poll, at most `--wait` later.
pub(super) fn watch(
    agents: &[AgentSpec],
    wakes: &BTreeMap<String, Arc<Notify>>,
    fragment: &Path,
    fragment_wake: Arc<Notify>,
    events: &mpsc::UnboundedSender<Event>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let fragment = std::path::absolute(fragment).ok();
    let fragment_dir = fragment
        .as_ref()
        .and_then(|f| f.parent().map(Path::to_path_buf));
    let dirs: Vec<(PathBuf, Arc<Notify>)> = agents
        .iter()
        .map(|a| {
            (
                std::path::absolute(&a.workspace).unwrap_or(a.workspace.clone()),
                wakes[&a.id].clone(),
            )
        })
        .collect();
    let routes = dirs.clone();
    let handler = move |ev: notify::Result<notify::Event>| {
        let Ok(ev) = ev else { return };
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            return;
        }
        for p in &ev.paths {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let parent = p.parent();
            // A managed file, the sidecar, `.missionctl` or `skills` itself
            // (deleted, say): not the user's files, not sync's own scratch.
            let route = routes.iter().find(|(d, _)| {
                // Anything under `skills/`: a skill's SKILL.md or one of
                // its scripts and references.
                p.starts_with(d.join("skills"))
                    || (Some(d.as_path()) == parent
                        && (render::MANAGED_FILES.contains(&name)
                            || name == ".missionctl"
                            || name == "skills"))
                    || (parent == Some(d.join(".missionctl").as_path()) && name == "pack.json")
            });
            if let Some((_, w)) = route {
                w.notify_one();
            }
            if Some(p.as_path()) == fragment.as_deref() {
                fragment_wake.notify_one();
            }
        }
    };
    let mut w = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            let _ = events.send(Event::Retrying {
                agent: "(all)".into(),
                error: format!("cannot watch the workspaces ({e}); hand edits are repaired at each poll instead"),
                after: Duration::ZERO,
            });
            return None;
        }
    };
    if let Some(f) = fragment_dir {
        let _ = w.watch(&f, notify::RecursiveMode::NonRecursive);
    }
    for (d, _) in &dirs {
        let _ = w.watch(&d.join(".missionctl"), notify::RecursiveMode::NonRecursive);
        // Recursive: skills live in folders below the workspace (events on
        // the user's own files there route nowhere).
        if let Err(e) = w.watch(d, notify::RecursiveMode::Recursive) {
            let _ = events.send(Event::Retrying {
                agent: d.display().to_string(),
                error: format!(
                    "cannot watch the workspace ({e}); hand edits are repaired at each poll instead"
                ),
                after: Duration::ZERO,
            });
        }
    }
    Some(w)
}
