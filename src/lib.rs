//! missionctl: a GitOps control plane for fleets of AI agents.
//!
//! The modules in the order data flows through the loop; each reaches only
//! the ones above it:
//!
//! - [`model`]: plain records every stage shares (decisions, rollouts and
//!   their states, arms, verdicts, tags), no I/O.
//! - [`yaml`], [`schema`], [`diagnostic`]: positioned parsing, JSON Schemas,
//!   one diagnostic model with its renderers.
//! - [`git`]: the only user of libgit2 (trees, history, sources, writes).
//! - [`pack`], [`resolve`], [`policy`], [`validate`], [`diff`], [`catalog`],
//!   [`template`]: the repository format, scope resolution and its rules.
//! - [`openclaw`]: a resolved pack as an OpenClaw workspace and agent config,
//!   written atomically, kept current from the registry (`sync`), and the
//!   Gateway behind the gate's `openclaw` harness.
//! - [`eval`]: harnesses, the model client, assertions, judge, statistics,
//!   the built-in demo model.
//! - [`gate`]: champion against challenger, as a pipeline of phases.
//! - [`github`]: events, approvals, the pull-request report.
//! - [`store`]: the state store over SQLite and PostgreSQL.
//! - [`improve`]: the challenger generation worker: signal, proposals from
//!   an optimiser model, selection through the gate, a branch or pull
//!   request, never a promotion.
//! - [`market`]: catalogs of domain packs, checked against this fleet's
//!   rules and installed or upgraded as a branch through the gate.
//! - [`reconcile`]: commits in, decisions out; the daemon.
//! - [`rollout`], [`telemetry`]: canary statistics and KPIs.
//! - [`registry`]: what harnesses resolve against; the canary controller.
//! - [`server`]: the composition root `serve` runs.
//! - [`fault`], [`time_util`]: fault points for the crash tests, time helpers.

pub mod model;

pub mod diagnostic;
pub mod schema;
pub mod yaml;

pub mod js;

pub mod git;

pub mod catalog;
pub mod diff;
pub mod openclaw;
pub mod pack;
pub mod policy;
pub mod resolve;
pub mod template;
pub mod tokens;
pub mod validate;

pub mod eval;
pub mod gate;
pub mod github;

pub mod store;

pub mod improve;
pub mod market;

pub mod reconcile;
pub mod registry;
pub mod rollout;
pub mod run_query;
pub mod telemetry;

pub mod locate;

pub mod console;
pub mod http;
pub mod server;

pub mod fault;
pub mod time_util;

/// Stack for each runtime worker thread. Model outputs and cases files can
/// nest JSON thousands of levels deep, and a `serde_json::Value` of that
/// depth is dropped, compared and validated recursively: the default 2 MiB
/// overflowed on a 1,000-level object (aborting the gate). Reserved, not
/// committed: untouched pages cost no memory.
pub const WORKER_STACK_BYTES: usize = 256 << 20;

/// The runtime every command runs on: tokio's multi-threaded one, with
/// [`WORKER_STACK_BYTES`] of stack per worker.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
}
