//! OpenClaw delivery: a resolved pack as an OpenClaw agent workspace and
//! config fragment ([`render`]), written atomically with drift detection
//! ([`workspace`]), kept current from the registry's watch ([`sync`]), and a
//! Gateway missionctl starts for the gate's `openclaw` harness ([`gateway`]).
//!
//! OpenClaw owns the runtime and tool execution; missionctl writes the files
//! OpenClaw reads (`AGENTS.md`, `SOUL.md`, `IDENTITY.md`), the agent entry
//! of its config (`agents.entries.<id>`: workspace, model, tool policy,
//! bootstrap limits) and a sidecar naming the pack version
//! (`.missionctl/pack.json`, which OpenClaw does not inject into the prompt).
//! `USER.md`, `MEMORY.md` and `memory/` belong to the agent and its user:
//! they are never written or deleted.
//!
//! # Tool names
//!
//! Pack tool names are mapped to OpenClaw tool ids as follows, in order:
//! 1. `openclaw.tools.<pack name>` in `mission.yaml`, when set (for a native
//!    plugin tool, say `hris.lookup_employee: hris_lookup`);
//! 2. a name with a dot, `server.tool`, is the MCP tool `server__tool`, as
//!    OpenClaw names tools of `mcp.servers.<server>` (the server part made
//!    provider-safe as OpenClaw does: characters outside `[A-Za-z0-9_-]`
//!    become `-`);
//! 3. any other name is an OpenClaw tool id or group as written (`read`,
//!    `web_search`, `group:fs`).
//!
//! The agent's `tools.allow` is the mapped allow list (OpenClaw then declares
//! only those tools to the model), its `tools.deny` the mapped deny list
//! plus what the pack's autonomy rules out (see [`autonomy_denies`]).

pub mod clawhub;
pub mod gateway;
pub mod plugin;
pub mod render;
pub mod sync;
pub mod workspace;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Autonomy;

/// OpenClaw's default `agents.defaults.bootstrapMaxChars`.
pub const BOOTSTRAP_MAX_CHARS: usize = 20_000;
/// OpenClaw's default `agents.defaults.bootstrapTotalMaxChars`.
pub const BOOTSTRAP_TOTAL_MAX_CHARS: usize = 60_000;

/// `openclaw:` in `mission.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Characters per bootstrap file before OpenClaw truncates it.
    #[serde(default = "file_max")]
    pub bootstrap_max_chars: usize,
    /// Characters over all bootstrap files before OpenClaw truncates.
    #[serde(default = "total_max")]
    pub bootstrap_total_max_chars: usize,
    /// Pack tool name -> OpenClaw tool id, where the default mapping is wrong.
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
    /// Whether each agent's OpenClaw sandbox follows its pack's autonomy
    /// level (see [`sandbox_for`]). Off unless the repository says so: an
    /// OpenClaw sandbox needs a container runtime on the Gateway's host.
    #[serde(default, skip_serializing_if = "SandboxPolicy::is_off")]
    pub sandbox: SandboxPolicy,
    /// The MCP servers agents may be given (OpenClaw's `mcp.servers`
    /// definitions, by name): the policy owner's list; a pack names which
    /// of them its chain uses.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mcp_servers: BTreeMap<String, serde_json::Value>,
}

/// `openclaw.sandbox` in `mission.yaml`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxPolicy {
    /// missionctl sets no sandbox: the Gateway's own defaults apply.
    #[default]
    Off,
    /// Each agent's sandbox is the one its autonomy level calls for.
    ByAutonomy,
}

impl SandboxPolicy {
    fn is_off(&self) -> bool {
        *self == SandboxPolicy::Off
    }
}

/// OpenClaw's per-agent `sandbox` for an autonomy level, as OpenClaw's
/// multi-agent guide writes its read-only and no-filesystem agents: tools
/// run in a per-agent container (`mode: all`, `scope: agent`), with
/// - A0 (observe): no access to the workspace;
/// - A1 (low-risk auto): the workspace read-only;
/// - A2 (approval-needed): the workspace read-write, still in the container;
/// - A3 (explicit approval path), or no level: none set (the Gateway's
///   `agents.defaults.sandbox` applies).
pub fn sandbox_for(autonomy: Option<Autonomy>) -> Option<serde_json::Value> {
    let access = match autonomy? {
        Autonomy::A0 => "none",
        Autonomy::A1 => "ro",
        Autonomy::A2 => "rw",
        Autonomy::A3 => return None,
    };
    Some(serde_json::json!({"mode": "all", "scope": "agent", "workspaceAccess": access}))
}

fn file_max() -> usize {
    BOOTSTRAP_MAX_CHARS
}
fn total_max() -> usize {
    BOOTSTRAP_TOTAL_MAX_CHARS
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bootstrap_max_chars: BOOTSTRAP_MAX_CHARS,
            bootstrap_total_max_chars: BOOTSTRAP_TOTAL_MAX_CHARS,
            tools: BTreeMap::new(),
            sandbox: SandboxPolicy::Off,
            mcp_servers: BTreeMap::new(),
        }
    }
}

impl Settings {
    /// The settings in a `mission.yaml`'s `openclaw` value (defaults where
    /// absent; the file was schema-checked when loaded).
    pub fn from_mission(openclaw: &serde_json::Value) -> Settings {
        if openclaw.is_null() {
            return Settings::default();
        }
        serde_json::from_value(openclaw.clone()).unwrap_or_default()
    }

    /// The OpenClaw tool id for a pack tool name (see the module docs).
    pub fn tool_id(&self, pack_name: &str) -> String {
        if let Some(t) = self.tools.get(pack_name) {
            return t.clone();
        }
        match pack_name.split_once('.') {
            Some((server, tool)) => {
                format!("{}__{}", mcp_prefix(server), tool.replace('.', "_"))
            }
            None => pack_name.to_string(),
        }
    }

    /// The `mcp.servers` object a Gateway includes (`mcp: { $include: … }`):
    /// every server of the catalog.
    pub fn mcp_fragment(&self) -> serde_json::Value {
        serde_json::json!({ "servers": self.mcp_servers })
    }

    /// The pack tool name an OpenClaw tool id stands for, among `names`.
    pub fn pack_name<'a>(&self, tool_id: &str, names: &'a [String]) -> Option<&'a str> {
        names
            .iter()
            .find(|n| self.tool_id(n) == tool_id)
            .map(String::as_str)
    }
}

/// The most characters of an MCP tool prefix (OpenClaw's
/// `TOOL_NAME_MAX_PREFIX`).
pub const MCP_PREFIX_MAX: usize = 30;

/// The prefix OpenClaw 2026.9.6 gives the tools of MCP server `server`
/// (`sanitizeToolFragment` in its `agent-bundle-mcp-names`): trimmed,
/// characters outside `[A-Za-z0-9_-]` as `-`, `mcp-` before a name that
/// does not start with a letter, cut to 30 characters; case kept. OpenClaw
/// adds `-2`, `-3` to prefixes that collide (ignoring case), in declaration
/// order; `validate` refuses a catalog where that would happen
/// (`openclaw/mcp-unknown`), so this is every server's prefix.
pub fn mcp_prefix(server: &str) -> String {
    let safe: String = server
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let safe = if safe.is_empty() {
        "mcp".to_string()
    } else {
        safe
    };
    let safe = if safe.starts_with(|c: char| c.is_ascii_alphabetic()) {
        safe
    } else {
        format!("mcp-{safe}")
    };
    safe.chars().take(MCP_PREFIX_MAX).collect()
}

/// OpenClaw tools and groups an agent at `autonomy` may not use, whatever
/// its allow list says. No level may reconfigure the harness itself
/// (`gateway`, `plugins`, `openclaw`): missionctl owns that configuration.
/// - A0 (observe): no shell, no file changes, no messages, no automation,
///   no devices;
/// - A1 (low-risk auto): no shell, no automation, no devices;
/// - A2 (approval-needed): no automation (cron, heartbeats);
/// - A3: only the harness-configuration tools.
pub fn autonomy_denies(autonomy: Option<Autonomy>) -> Vec<&'static str> {
    let mut d = vec!["gateway", "plugins", "openclaw"];
    match autonomy {
        Some(Autonomy::A0) => d.extend([
            "group:runtime",
            "write",
            "edit",
            "apply_patch",
            "group:messaging",
            "group:automation",
            "group:nodes",
        ]),
        Some(Autonomy::A1) => d.extend(["group:runtime", "group:automation", "group:nodes"]),
        Some(Autonomy::A2) => d.push("group:automation"),
        Some(Autonomy::A3) | None => {}
    }
    d
}

/// Characters as OpenClaw counts them (JavaScript string length: UTF-16
/// code units), for its bootstrap limits.
pub fn js_length(s: &str) -> usize {
    if s.is_ascii() {
        return s.len();
    }
    s.chars().map(char::len_utf16).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_narrows_with_the_autonomy_level() {
        let access = |a| sandbox_for(Some(a)).map(|s| s["workspaceAccess"].clone());
        assert_eq!(access(Autonomy::A0), Some("none".into()));
        assert_eq!(access(Autonomy::A1), Some("ro".into()));
        assert_eq!(access(Autonomy::A2), Some("rw".into()));
        assert_eq!(access(Autonomy::A3), None);
        assert_eq!(sandbox_for(None), None);
        for a in [Autonomy::A0, Autonomy::A1, Autonomy::A2] {
            let s = sandbox_for(Some(a)).expect("sandbox");
            assert_eq!(
                (s["mode"].as_str(), s["scope"].as_str()),
                (Some("all"), Some("agent"))
            );
        }
        let m: Settings = serde_json::from_value(serde_json::json!({"sandbox": "by-autonomy"}))
            .expect("settings");
        assert_eq!(m.sandbox, SandboxPolicy::ByAutonomy);
        assert!(serde_json::from_value::<Settings>(serde_json::json!({"sandbox": "on"})).is_err());
    }

    #[test]
    fn tool_names_map_to_openclaw_ids() {
        let mut s = Settings::default();
        assert_eq!(s.tool_id("hris.lookup_employee"), "hris__lookup_employee");
        assert_eq!(s.tool_id("read"), "read");
        assert_eq!(s.tool_id("group:fs"), "group:fs");
        assert_eq!(s.tool_id("my crm.find.one"), "my-crm__find_one");
        s.tools
            .insert("hris.lookup_employee".into(), "hris_lookup".into());
        assert_eq!(s.tool_id("hris.lookup_employee"), "hris_lookup");
        let names = vec!["hris.lookup_employee".to_string(), "ticket.create".into()];
        assert_eq!(s.pack_name("ticket__create", &names), Some("ticket.create"));
        assert_eq!(s.pack_name("exec", &names), None);
    }

    #[test]
    fn mcp_prefixes_are_openclaws() {
        // OpenClaw's own example: `mcp.servers["Outlook Graph"]` -> `outlook-graph__*`.
        // (OpenClaw's own function, run on these names, gives the same.)
        assert_eq!(mcp_prefix("Outlook Graph"), "Outlook-Graph");
        assert_eq!(mcp_prefix("hris"), "hris");
        assert_eq!(mcp_prefix("HRIS"), "HRIS");
        assert_eq!(mcp_prefix("365mail"), "mcp-365mail");
        assert_eq!(mcp_prefix("a.b"), "a-b");
        assert_eq!(
            mcp_prefix("human-resources-information-system"),
            "human-resources-information-sy"
        );
    }

    #[test]
    fn lower_autonomy_denies_more() {
        let a0 = autonomy_denies(Some(Autonomy::A0));
        let a2 = autonomy_denies(Some(Autonomy::A2));
        let a3 = autonomy_denies(Some(Autonomy::A3));
        assert!(a0.contains(&"group:runtime") && !a2.contains(&"group:runtime"));
        assert!(a3.iter().all(|t| a2.contains(t)) && a2.iter().all(|t| a0.contains(t)));
        assert!(a3.contains(&"gateway"));
    }

    #[test]
    fn lengths_are_utf16_units() {
        assert_eq!(js_length("aé😀"), 4);
    }
}
