//! Integration tests: the real binary against real git repositories made in
//! temporary directories.

mod attribution;
mod bad_input;
mod browser;
mod cli_surface;
mod commands;
mod conformance;
mod console;
mod console_actions;
mod console_fleet;
mod console_market;
#[macro_use]
mod db;
mod faults;
mod gate;
mod git_http;
mod github;
mod github_server;
mod improve;
mod isolation;
mod llm_server;
mod market;
mod one_store;
mod openclaw;
mod openclaw_packs;
mod reconcile;
mod registry;
mod regressions;
mod rollback_nested;
mod snapshots;
mod sso;
mod store;
mod suites;
mod util;
