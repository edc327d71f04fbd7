//! The agents file (`agents.yaml`): one Gateway's agents, each bound to a
//! chain, checked before any request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::SyncError;
use crate::openclaw::render::AgentBinding;

/// The most an agents file may hold.
const AGENTS_FILE_LIMIT: u64 = 4 * 1024 * 1024;

/// One agent in the agents file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub id: String,
    pub domain: String,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// The agent's workspace directory (relative to the agents file).
    pub workspace: PathBuf,
    /// The agent's model (`provider/model`), else the file's `model`; used
    /// only when the agent's chain sets no `model` (the pack's, which the
    /// gate evaluated, wins).
    #[serde(default)]
    pub model: Option<String>,
}

impl AgentSpec {
    pub fn binding(&self) -> AgentBinding {
        AgentBinding {
            id: self.id.clone(),
            domain: self.domain.clone(),
            tenant: self.tenant.clone(),
            user: self.user.clone(),
        }
    }
}

/// `agents.yaml`: the Gateway's agents, each bound to a chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsFile {
    /// The file the Gateway's config includes as its `agents` object
    /// (`agents: { $include: "…" }`), relative to the agents file.
    pub fragment: PathBuf,
    /// The file the Gateway's config includes as its `mcp` object
    /// (`mcp: { $include: "…" }`), relative to the agents file: sync writes
    /// mission.yaml's `openclaw.mcp_servers` there.
    #[serde(default)]
    pub mcp_fragment: Option<PathBuf>,
    /// Default model for every agent (`provider/model`) whose entry and
    /// chain set none.
    #[serde(default)]
    pub model: Option<String>,
    pub agents: Vec<AgentSpec>,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// `p` without `.` components and with `..` applied (lexically: the
/// workspace may not exist yet), so one directory has one spelling.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Read and check an agents file; relative paths become relative to it.
pub fn load_agents(path: &Path) -> Result<AgentsFile, SyncError> {
    let file = path.display().to_string();
    let err = |message: String| SyncError::AgentsFile {
        file: file.clone(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    if meta.len() > AGENTS_FILE_LIMIT {
        return Err(err(format!(
            "{} bytes is over the {AGENTS_FILE_LIMIT}-byte limit",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    let mut f: AgentsFile = serde_saphyr::from_str(&text).map_err(|e| {
        err(format!(
            "{e} (expected `fragment: FILE`, optional `model` and `mcp_fragment`, and `agents:` entries with id, domain, tenant, user, workspace)"
        ))
    })?;
    // Absolute paths: the fragment holds each agent's workspace, and
    // OpenClaw would resolve a relative one against its own directory.
    // (`agents.yaml` alone has the empty path as its parent: the current
    // directory.)
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base =
        std::path::absolute(parent).map_err(|e| err(format!("cannot tell where it is: {e}")))?;
    let base = base.as_path();
    f.fragment = clean(&base.join(&f.fragment));
    f.mcp_fragment = f.mcp_fragment.map(|m| clean(&base.join(m)));
    let mut seen = std::collections::BTreeSet::new();
    let mut workspaces: BTreeMap<PathBuf, usize> = BTreeMap::new();
    for (i, a) in f.agents.iter_mut().enumerate() {
        if !valid_id(&a.id) {
            return Err(err(format!(
                "agents[{i}].id: `{}` is not an OpenClaw agent id (lowercase letters, digits, `-` and `_`, at most 64; OpenClaw lowercases ids, so `A1` and `a1` would be one agent)",
                a.id
            )));
        }
        if a.id == "default" {
            return Err(err(format!(
                "agents[{i}].id: `default` means OpenClaw's default agent (`openclaw/default`); choose another id"
            )));
        }
        if a.tenant.is_none() && a.user.is_none() {
            return Err(err(format!(
                "agents[{i}] (`{}`): bind the agent to a `tenant` (or a personal `user`): a bare domain chain serves no one, and its runs could not be attributed to anyone",
                a.id
            )));
        }
        if !seen.insert(a.id.clone()) {
            return Err(err(format!("agents[{i}].id: `{}` is listed twice", a.id)));
        }
        a.workspace = clean(&base.join(&a.workspace));
        if let Some(first) = workspaces.insert(a.workspace.clone(), i) {
            return Err(err(format!(
                "agents[{i}] (`{}`) has the workspace of agents[{first}] ({}); every agent needs its own workspace",
                a.id,
                a.workspace.display()
            )));
        }
    }
    if f.agents.is_empty() {
        return Err(err("agents: lists no agent".into()));
    }
    // One Gateway, one tenant: the telemetry plugin reports with one
    // tenant's harness token, so another tenant's runs would be refused
    // (HTTP 400), and OpenClaw's own docs advise a Gateway per tenant.
    let tenant_of = |a: &AgentSpec| match (&a.tenant, &a.user) {
        (Some(t), _) => t.clone(),
        (None, Some(u)) => format!("user:{u}"),
        (None, None) => String::new(),
    };
    let first = tenant_of(&f.agents[0]);
    if let Some((i, a)) = f
        .agents
        .iter()
        .enumerate()
        .find(|(_, a)| tenant_of(a) != first)
    {
        return Err(err(format!(
            "agents[{i}] (`{}`) belongs to `{}` but agents[0] (`{}`) to `{first}`: one Gateway (one agents file) serves one tenant, as OpenClaw advises, and its telemetry plugin reports with that tenant's token, so the other tenant's runs would be refused; give each tenant its own Gateway and agents file",
            a.id,
            tenant_of(a),
            f.agents[0].id
        )));
    }
    Ok(f)
}
