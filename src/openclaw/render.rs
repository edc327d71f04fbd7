//! A resolved pack as an OpenClaw workspace and agent config entry. Pure:
//! no I/O, so the same function serves `openclaw render`, `openclaw sync`,
//! the gate's `openclaw` harness and `validate`'s size checks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use super::{Settings, autonomy_denies, js_length};
use crate::model::{Arm, Autonomy};
use crate::resolve::Resolved;

/// The bootstrap files missionctl writes, in the order OpenClaw injects them.
pub const MANAGED_FILES: [&str; 3] = ["AGENTS.md", "SOUL.md", "IDENTITY.md"];
/// Files and directories that belong to the agent and its user.
pub const USER_OWNED: [&str; 3] = ["USER.md", "MEMORY.md", "memory"];
/// The sidecar, under the workspace; OpenClaw does not inject it.
pub const SIDECAR: &str = ".missionctl/pack.json";

/// Which agent a workspace is for: its id and the chain it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentBinding {
    pub id: String,
    pub domain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// One layer of the chain, as the sidecar records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    pub scope_type: String,
    pub scope_id: String,
    pub pack_id: String,
    pub version: String,
}

/// `.missionctl/pack.json`: what version a workspace holds and the digests
/// of the files missionctl wrote (drift is a file that no longer matches).
/// The telemetry plugin reads the ids and version from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub managed_by: String,
    pub pack_id: String,
    pub pack_version: String,
    pub digest: String,
    pub arm: Arm,
    pub agent_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub domain: String,
    /// `run_telemetry.task_type` for runs of this agent: its domain.
    pub task_type: String,
    pub chain: Vec<ChainLink>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// File name -> `sha256:<hex>` of the text written.
    pub files: BTreeMap<String, String>,
    /// The tool policy in OpenClaw ids, which the telemetry plugin applies
    /// to every tool (client tools too) at prompt build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<SidecarTools>,
    /// The pack's autonomy level: at A0-A2 the plugin refuses a turn on
    /// hand-edited files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autonomy: Option<Autonomy>,
}

/// `tools` in the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidecarTools {
    /// None: the pack sets no allow list.
    pub allow: Option<Vec<String>>,
    pub deny: Vec<String>,
}

impl Sidecar {
    /// The version of `pack_id` on this workspace's chain.
    pub fn chain_version(&self, pack_id: &str) -> Option<&str> {
        self.chain
            .iter()
            .find(|l| l.pack_id == pack_id)
            .map(|l| l.version.as_str())
    }
}

/// A rendered workspace: the bootstrap files, the sidecar and the tool policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Workspace {
    pub files: Vec<(&'static str, String)>,
    /// The chain's skills, each written whole to `skills/<name>/` where
    /// OpenClaw loads workspace skills.
    pub skills: Vec<Skill>,
    pub sidecar: Sidecar,
    pub allow: Option<Vec<String>>,
    pub deny: Vec<String>,
    /// The chain's model (`provider/model`), if its pack sets one.
    pub model: Option<String>,
}

/// A skill as written to a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skill {
    pub name: String,
    /// (path within the skill's folder, text): `SKILL.md` first, then the
    /// folder's scripts and references in path order.
    pub files: Vec<(String, String)>,
}

pub fn sha256(text: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

fn strings(v: Option<&Json>) -> Vec<String> {
    v.and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The resolved pack's autonomy level (`tools.autonomy`), if it sets one.
pub fn autonomy(r: &Resolved) -> Option<Autonomy> {
    r.content
        .pointer("/tools/autonomy")
        .and_then(|a| serde_json::from_value::<Autonomy>(a.clone()).ok())
}

/// The tool policy of a resolved pack in OpenClaw ids: `allow` (None when
/// the pack sets no allow list) and `deny` (the pack's, then autonomy's).
pub fn tool_policy(r: &Resolved, settings: &Settings) -> (Option<Vec<String>>, Vec<String>) {
    let tools = r.content.get("tools");
    let allow = tools.and_then(|t| t.get("allow")).map(|a| {
        strings(Some(a))
            .iter()
            .map(|n| settings.tool_id(n))
            .collect()
    });
    let autonomy = autonomy(r);
    let mut deny: Vec<String> = strings(tools.and_then(|t| t.get("deny")))
        .iter()
        .map(|n| settings.tool_id(n))
        .collect();
    for d in autonomy_denies(autonomy) {
        if !deny.iter().any(|x| x == d) {
            deny.push(d.to_string());
        }
    }
    // The Gateway connects every catalog server; this chain's agents get
    // the tools of the servers it names and no other.
    let used = mcp_servers(r);
    for server in settings.mcp_servers.keys() {
        if !used.iter().any(|u| u == server) {
            let glob = format!("{}__*", super::mcp_prefix(server));
            if !deny.contains(&glob) {
                deny.push(glob);
            }
        }
    }
    (allow, deny)
}

/// The MCP servers a resolved pack's chain names (`mcp_servers`).
pub fn mcp_servers(r: &Resolved) -> Vec<String> {
    strings(r.content.get("mcp_servers"))
}

fn agents_md(r: &Resolved, allow: &Option<Vec<String>>) -> String {
    let mut s = String::from("# Operating instructions\n\n");
    s.push_str(r.prompt_text().trim());
    s.push('\n');
    s.push_str(&r.contracts_text());
    s.push_str("\n## Tools\n");
    match allow {
        Some(ids) if !ids.is_empty() => {
            s.push_str("Use only these tools, and only for what the instructions above ask:\n");
            let names = strings(r.content.pointer("/tools/allow"));
            for (id, name) in ids.iter().zip(&names) {
                if id == name {
                    s.push_str(&format!("- `{id}`\n"));
                } else {
                    s.push_str(&format!("- `{id}` ({name})\n"));
                }
            }
        }
        Some(_) => s.push_str("Use no tools.\n"),
        None => s.push_str("Use the tools OpenClaw offers, within the rules above.\n"),
    }
    s
}

fn soul_md(r: &Resolved) -> String {
    let voice = r.voice_text();
    if voice.is_empty() {
        "# Voice\n\nClear and respectful.\n".to_string()
    } else {
        format!("# Voice\n\n{voice}")
    }
}

fn identity_md(r: &Resolved, agent: &AgentBinding) -> String {
    let mut s = format!("# Identity\n\n- Name: {}\n", agent.id);
    if let Some(d) = r.content.get("description").and_then(Json::as_str) {
        s.push_str(&format!("- Role: {}\n", d.trim()));
    }
    s
}

/// The bootstrap files alone (what `validate` measures).
pub fn files(
    r: &Resolved,
    agent: &AgentBinding,
    allow: &Option<Vec<String>>,
) -> Vec<(&'static str, String)> {
    vec![
        ("AGENTS.md", agents_md(r, allow)),
        ("SOUL.md", soul_md(r)),
        ("IDENTITY.md", identity_md(r, agent)),
    ]
}

/// Render `r` for `agent`, served on `arm`.
pub fn render(
    r: &Resolved,
    agent: &AgentBinding,
    arm: Arm,
    commit: Option<&str>,
    settings: &Settings,
) -> Workspace {
    let (allow, deny) = tool_policy(r, settings);
    let files = files(r, agent, &allow);
    let skills = skills(r);
    let sidecar = Sidecar {
        managed_by: format!("missionctl {}", env!("CARGO_PKG_VERSION")),
        pack_id: r.pack_id.clone(),
        pack_version: r.pack_version.clone(),
        digest: r.digest.clone(),
        arm,
        agent_id: agent.id.clone(),
        // A personal user's runs belong to the scope `user:<id>`, as the
        // registry's tokens and attribution name it.
        tenant_id: match (&agent.tenant, &agent.user) {
            (Some(t), _) => t.clone(),
            (None, Some(u)) => format!("user:{u}"),
            (None, None) => String::new(),
        },
        user_id: agent.user.clone().unwrap_or_default(),
        domain: agent.domain.clone(),
        task_type: agent.domain.clone(),
        chain: r
            .scope_chain
            .iter()
            .map(|l| ChainLink {
                scope_type: l.scope_type.clone(),
                scope_id: l.scope_id.clone(),
                pack_id: l.pack_id.clone(),
                version: l.version.clone(),
            })
            .collect(),
        commit: commit.map(str::to_string),
        files: files
            .iter()
            .map(|(n, t)| (n.to_string(), sha256(t)))
            .chain(skills.iter().flat_map(|k| {
                k.files
                    .iter()
                    .map(|(f, t)| (skill_file(&k.name, f), sha256(t)))
            }))
            .collect(),
        tools: Some(SidecarTools {
            allow: allow.clone(),
            deny: deny.clone(),
        }),
        autonomy: autonomy(r),
    };
    Workspace {
        files,
        skills,
        sidecar,
        allow,
        deny,
        model: r.model().map(str::to_string),
    }
}

/// The chain's skills from resolved content. A name that is no skill name,
/// or a file path that is not a plain relative path (content from elsewhere
/// than this repository's loader), never becomes a path: such a skill is
/// left out whole.
fn skills(r: &Resolved) -> Vec<Skill> {
    let Some(list) = r.content.get("skills").and_then(Json::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|k| {
            let name = k["name"]
                .as_str()
                .filter(|n| crate::pack::valid_skill_name(n))?;
            let mut files = vec![("SKILL.md".to_string(), k["text"].as_str()?.to_string())];
            if let Some(more) = k.get("files").and_then(Json::as_object) {
                for (rel, t) in more {
                    if !is_skill_file(rel) || rel == "SKILL.md" {
                        return None;
                    }
                    files.push((rel.clone(), t.as_str()?.to_string()));
                }
            }
            Some(Skill {
                name: name.to_string(),
                files,
            })
        })
        .collect()
}

/// A plain relative path: components that are neither empty, `.`, `..`
/// nor hidden, with no backslash or NUL.
pub(crate) fn is_skill_file(rel: &str) -> bool {
    rel.split('/')
        .all(|c| !c.is_empty() && !c.starts_with('.') && !c.contains(['\\', '\0']))
}

/// Where file `rel` of skill `name` goes in the workspace.
pub fn skill_file(name: &str, rel: &str) -> String {
    format!("skills/{name}/{rel}")
}

/// Where a skill's SKILL.md goes in the workspace.
pub fn skill_path(name: &str) -> String {
    skill_file(name, "SKILL.md")
}

impl Workspace {
    /// Every file missionctl writes: (path relative to the workspace, text).
    pub fn all_files(&self) -> Vec<(String, &str)> {
        self.files
            .iter()
            .map(|(n, t)| (n.to_string(), t.as_str()))
            .chain(self.skills.iter().flat_map(|k| {
                k.files
                    .iter()
                    .map(|(f, t)| (skill_file(&k.name, f), t.as_str()))
            }))
            .collect()
    }
}

/// Where a rendered workspace is over OpenClaw's bootstrap limits: each
/// file over `bootstrap_max_chars` (name, length), and the total when over
/// `bootstrap_total_max_chars`.
pub fn over_limits(
    files: &[(&'static str, String)],
    settings: &Settings,
) -> (Vec<(&'static str, usize)>, Option<usize>) {
    let mut over = Vec::new();
    let mut total = 0;
    for (name, text) in files {
        let n = js_length(text);
        total += n;
        if n > settings.bootstrap_max_chars {
            over.push((*name, n));
        }
    }
    (
        over,
        (total > settings.bootstrap_total_max_chars).then_some(total),
    )
}

/// The agent's entry under `agents.entries.<id>`.
pub fn agent_entry(
    ws: &Workspace,
    workspace_dir: &str,
    model: Option<&str>,
    settings: &Settings,
) -> Json {
    let mut tools = serde_json::Map::new();
    if let Some(a) = &ws.allow {
        tools.insert("allow".into(), json!(a));
    }
    tools.insert("deny".into(), json!(ws.deny));
    // Only the pack's skills: OpenClaw's bundled ones are off (an agent's
    // `skills` list is an allow list; `[]` turns every skill off).
    let skills: Vec<&str> = ws.skills.iter().map(|k| k.name.as_str()).collect();
    let mut e = json!({
        "workspace": workspace_dir,
        "skills": skills,
        "tools": tools,
        "bootstrapMaxChars": settings.bootstrap_max_chars,
        "bootstrapTotalMaxChars": settings.bootstrap_total_max_chars,
    });
    // The pack's model (what the gate evaluated) wins over the agents
    // file's default.
    if let Some(m) = ws.model.as_deref().or(model) {
        e["model"] = json!(m);
    }
    if settings.sandbox == super::SandboxPolicy::ByAutonomy
        && let Some(sandbox) = super::sandbox_for(ws.sidecar.autonomy)
    {
        e["sandbox"] = sandbox;
    }
    e
}

/// The `agents` object a Gateway includes (`agents: { $include: "…" }`):
/// explicit ownership (several agents), no bootstrap seeding, one entry per
/// agent. JSON, which is JSON5.
pub fn agents_fragment(entries: &BTreeMap<String, Json>) -> Json {
    json!({
        "ownership": "explicit",
        "defaults": { "skipBootstrap": true },
        "entries": entries,
    })
}
