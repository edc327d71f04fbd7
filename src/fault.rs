//! Fault injection at the effect boundaries of a rollout transition, for the
//! crash and failover tests (tests/it/faults.rs, benches/rollback_faults.sh).
//!
//! A boundary is a named [`point`]. It does nothing unless the process was
//! started with `MISSIONCTL_FAULTS=name=action[,name=action…]`, read once.
//! Actions:
//! - `crash`: the process sends itself SIGKILL (no destructor, no flush: as
//!   an OOM kill or a lost machine);
//! - `stop`: the process sends itself SIGSTOP (frozen, lease and all, until
//!   someone sends SIGCONT), the first time only;
//! - `error`: the point returns an error, as a failed write would.
//!
//! Hand-written rather than the `fail` crate: its points compile away unless
//! the crate is built with a feature, and the tests drive the real binary
//! that `cargo test` builds without features. An unset variable costs one
//! atomic load per point.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable that arms fault points.
pub const ENV: &str = "MISSIONCTL_FAULTS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Crash,
    Stop,
    Error,
}

struct Armed {
    points: HashMap<String, Action>,
    stopped: AtomicBool,
}

fn armed() -> &'static Option<Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED.get_or_init(|| {
        let spec = std::env::var(ENV).ok()?;
        let points: HashMap<String, Action> = spec
            .split(',')
            .filter_map(|p| {
                let (name, action) = p.trim().split_once('=')?;
                let action = match action.trim() {
                    "crash" => Action::Crash,
                    "stop" => Action::Stop,
                    "error" => Action::Error,
                    other => {
                        tracing::warn!(
                            point = name,
                            action = other,
                            "unknown fault action ignored (use crash, stop or error)"
                        );
                        return None;
                    }
                };
                Some((name.trim().to_string(), action))
            })
            .collect();
        (!points.is_empty()).then(|| Armed {
            points,
            stopped: AtomicBool::new(false),
        })
    })
}

/// A fault injected at a boundary.
#[derive(Debug, thiserror::Error)]
#[error("fault injected at {0} ({ENV})")]
pub struct Injected(pub &'static str);

/// The boundary `name`: returns `Err` when armed with `error`; does not
/// return when armed with `crash`; freezes the process once with `stop`.
pub fn point(name: &'static str) -> Result<(), Injected> {
    let Some(a) = armed() else { return Ok(()) };
    match a.points.get(name) {
        None => Ok(()),
        Some(Action::Error) => Err(Injected(name)),
        Some(Action::Crash) => {
            tracing::warn!(point = name, "fault: crashing here (SIGKILL)");
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
            // SIGKILL is not delivered late; this is only for the type checker.
            std::process::abort()
        }
        Some(Action::Stop) => {
            if !a.stopped.swap(true, Ordering::SeqCst) {
                tracing::warn!(point = name, "fault: freezing here (SIGSTOP) until SIGCONT");
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::STOP,
                );
            }
            Ok(())
        }
    }
}
