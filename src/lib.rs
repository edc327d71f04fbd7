//! missionctl: a GitOps control plane for fleets of AI agents.
//!
//! Data flows one way: a git snapshot (`gitrepo`) becomes packs (`pack`,
//! `yaml`, `schema`), packs resolve by scope (`resolve`, `policy`,
//! `validate`, `diff`), challengers are evaluated against champions
//! (`eval`, `llm`, `gate`, `github`), merges become decisions (`reconcile`),
//! and decisions are served and watched (`registry`, `rollout`, `telemetry`),
//! with the state kept in `store`. `src/main.rs` is a thin CLI over this.

pub mod catalog;
pub mod diagnostic;
pub mod diff;
pub mod eval;
pub mod gate;
pub mod git;
pub mod github;
pub mod model;
pub mod pack;
pub mod policy;
pub mod reconcile;
pub mod registry;
pub mod resolve;
pub mod rollout;
pub mod schema;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod time_util;
pub mod tokens;
pub mod validate;
pub mod yaml;
