//! What sync did, for its log.

use std::time::Duration;

use crate::model::Arm;

/// Something sync did, for the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Delivered {
        agent: String,
        pack_id: String,
        pack_version: String,
        arm: Arm,
        /// Each layer's pack and version, global first (`global-pack 1.0.0`).
        chain: Vec<String>,
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
    /// An agent not delivered; the others go on. `retry`: a transient
    /// error (retried with backoff), else a refusal, asked again after
    /// `again` (`--retry-refused`).
    Failed {
        agent: String,
        error: String,
        retry: bool,
        again: Duration,
    },
    /// The fragment was written, listing `agents` of the `of` managed agents.
    Fragment {
        agents: usize,
        of: usize,
    },
    /// The Gateway's agent list read back after a fragment write: `missing`
    /// agents it does not serve (after `waited`, a config touch included).
    Reloaded {
        agents: usize,
        missing: Vec<String>,
        waited: Duration,
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
                chain,
            } => write!(
                f,
                "{agent}: now on {pack_id} {pack_version} ({arm}; chain {})",
                chain.join(" > ")
            ),
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
            Event::Failed {
                agent,
                error,
                retry,
                again,
            } => {
                if *retry {
                    write!(
                        f,
                        "{agent}: not delivered: {error}; keeping its last good version and retrying; the other agents go on"
                    )
                } else {
                    write!(
                        f,
                        "{agent}: not delivered: {error}; skipped (fix agents.yaml or the registry; asked again every {}); the other agents go on",
                        humantime::format_duration(*again)
                    )
                }
            }
            Event::Fragment { agents, of } => {
                write!(f, "agents fragment written: {agents} of {of} agent(s)")
            }
            Event::Reloaded {
                agents,
                missing,
                waited,
            } if missing.is_empty() => write!(
                f,
                "the Gateway serves all {agents} agent(s) in the fragment ({:.1}s after the write)",
                waited.as_secs_f64()
            ),
            Event::Reloaded {
                agents,
                missing,
                waited,
            } => write!(
                f,
                "the Gateway does not serve {} of the {agents} agent(s) in the fragment {:.0}s after the write (its config was touched): {}; check that its config includes the fragment (agents: {{ $include: \"…\" }}) and its log",
                missing.len(),
                waited.as_secs_f64(),
                missing.join(", ")
            ),
        }
    }
}
