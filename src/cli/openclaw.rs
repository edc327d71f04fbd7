//! `missionctl openclaw render|sync`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use missionctl::model::Arm;
use missionctl::openclaw::{render, sync, workspace};
use missionctl::resolve;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Render a resolved pack as an OpenClaw workspace (AGENTS.md, SOUL.md,
    /// IDENTITY.md, .missionctl/pack.json) and the agent's config fragment.
    ///
    /// Example: missionctl openclaw render --domain hr-ops --tenant acme --user alice --out ./ws/hr-alice
    #[command(
        after_help = "Examples:\n  missionctl openclaw render --domain hr-ops --tenant acme --out workspace --agent hr-acme"
    )]
    Render(RenderArgs),
    /// Keep the workspaces of one Gateway's agents on the version the registry
    /// assigns each (long-poll watch, atomic writes, drift reports).
    ///
    /// Example: missionctl openclaw sync --registry http://127.0.0.1:8080 --token-file harness.token --agents agents.yaml
    #[command(
        after_help = "Examples:\n  missionctl openclaw sync --registry http://127.0.0.1:8080 --token-file harness.token --agents agents.yaml"
    )]
    Sync(SyncArgs),
    /// Vendor a ClawHub skill, pinned to a version, into a pack's folder
    /// (`DIR/skills/<slug>/`, with `.clawhub/origin.json`), to add to the
    /// pack's `skills.add` in a pull request.
    ///
    /// Example: missionctl openclaw skill-add @acme/leave-lookup@1.2.0 --pack-dir packs/domains/hr-ops
    #[command(
        after_help = "Examples:\n  missionctl openclaw skill-add @acme/leave-lookup@1.2.0 --pack-dir packs/domains/hr-ops\n  OPENCLAW_CLAWHUB_URL=https://clawhub.internal missionctl openclaw skill-add leave-lookup@1.2.0 --pack-dir packs/domains/hr-ops"
    )]
    SkillAdd(SkillAddArgs),
    /// Write the telemetry plugin (plain JavaScript) into DIR, for a Gateway's
    /// `plugins.load.paths`.
    ///
    /// Example: missionctl openclaw plugin --out ~/.openclaw/plugins/missionctl-telemetry
    #[command(
        after_help = "Examples:\n  missionctl openclaw plugin --out ~/.openclaw/plugins/missionctl"
    )]
    Plugin {
        /// The directory to write the plugin's files into.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    #[command(flatten)]
    pub chain: super::resolve::ChainArgs,
    /// The workspace directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// The agent id in the config fragment (default: derived from the chain).
    #[arg(long)]
    pub agent: Option<String>,
    /// The agent's model (`provider/model`) in the config fragment, when
    /// its chain's pack sets none (a pack's `model` wins).
    #[arg(long)]
    pub model: Option<String>,
    /// Where to write the config fragment (the Gateway's `agents` object,
    /// JSON5); default: OUT/.missionctl/agents.json5.
    #[arg(long)]
    pub fragment: Option<PathBuf>,
    /// Where to write the Gateway's `mcp` object (mission.yaml's
    /// `openclaw.mcp_servers`, JSON5), to include as `mcp: { $include: … }`.
    #[arg(long)]
    pub mcp_fragment: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct SyncArgs {
    /// The registry's base URL (missionctl serve).
    #[arg(long)]
    pub registry: String,
    /// A file holding a harness token for the registry.
    #[arg(long)]
    pub token_file: PathBuf,
    /// The agents file: `fragment:`, optional `model:`, and `agents:` with
    /// id, domain, tenant, user, workspace each.
    #[arg(long)]
    pub agents: PathBuf,
    /// Long-poll wait per request.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Deliver every agent's current version once and exit (1 when any
    /// agent could not be delivered; the others are delivered).
    #[arg(long)]
    pub once: bool,
    /// The Gateway's main config file (the one that `$include`s the
    /// fragment): its modification time is renewed after every fragment
    /// write, so the Gateway re-reads its includes.
    #[arg(long)]
    pub gateway_config: Option<PathBuf>,
    /// How long an agent the registry refused (or whose workspace another
    /// sync holds) waits before it is tried again.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub retry_refused: Duration,
    /// The Gateway's URL: after every fragment write (and at start) sync
    /// reads its agent list back (`GET /v1/models`) and says whether it
    /// serves every agent, touching --gateway-config if it does not after 5 s.
    #[arg(long, requires = "gateway_token_file")]
    pub gateway: Option<String>,
    /// A file holding the Gateway's token (for --gateway).
    #[arg(long, requires = "gateway")]
    pub gateway_token_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct SkillAddArgs {
    /// The skill on ClawHub, pinned: `@owner/slug@VERSION` (or `slug@VERSION`).
    pub reference: String,
    /// The pack's folder (the one holding its pack.yaml); the skill goes to
    /// its `skills/<slug>/`.
    #[arg(long)]
    pub pack_dir: PathBuf,
    /// The ClawHub registry's URL (default: OPENCLAW_CLAWHUB_URL, else
    /// https://clawhub.ai).
    #[arg(long)]
    pub clawhub: Option<String>,
    /// The environment variable holding a ClawHub token, for private skills.
    #[arg(long)]
    pub token_env: Option<String>,
}

fn skill_add(a: SkillAddArgs) -> anyhow::Result<ExitCode> {
    use missionctl::openclaw::clawhub;
    let r = clawhub::parse_ref(&a.reference)?;
    if !a.pack_dir.join("pack.yaml").is_file() {
        anyhow::bail!(
            "{}: no pack.yaml there; --pack-dir names the folder of the pack that will add the skill",
            a.pack_dir.display()
        );
    }
    let registry = clawhub::registry(a.clawhub.as_deref());
    super::note("clawhub", &registry);
    let token = match &a.token_env {
        Some(v) => Some(
            std::env::var(v)
                .ok()
                .filter(|t| !t.is_empty())
                .with_context(|| {
                    format!("--token-env {v}: that environment variable is not set")
                })?,
        ),
        None => None,
    };
    let rt = missionctl::runtime()?;
    let client = reqwest::Client::new();
    let archive = rt.block_on(clawhub::download(&client, &registry, &r, token.as_deref()))?;
    let files = clawhub::unpack(&archive, &r)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let dir = clawhub::vendor(&a.pack_dir, &registry, &r, &archive, &files, now)?;
    outln!(
        "{}: {}@{} from {registry} ({} file(s)); add `skills/{}/SKILL.md` to the pack's `skills.add`, bump its version, and run `missionctl validate`",
        dir.display(),
        r.slug,
        r.version,
        files.len(),
        r.slug
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::SkillAdd(a) => skill_add(a),
        Command::Render(a) => render_cmd(a),
        Command::Plugin { out } => {
            missionctl::openclaw::plugin::write(&out)?;
            outln!(
                "{}: the missionctl-telemetry plugin. Load it with plugins.load.paths: [\"{}\"] and plugins.entries.missionctl-telemetry: {{ enabled: true, hooks: {{ allowConversationAccess: true }}, config: {{ registryUrl: \"…\", tokenFile: \"…\" }} }}",
                out.display(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync(a) => {
            let rt = missionctl::runtime()?;
            rt.block_on(sync_cmd(a))
        }
    }
}

fn render_cmd(a: RenderArgs) -> anyhow::Result<ExitCode> {
    let (key, repo, commit) = a.chain.load()?;
    let r = match resolve::resolve(&repo, &key) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    // A pack of the chain that does not load whole (a skill refused, a
    // file unreadable) is not rendered with the part left out.
    let dirs: Vec<String> = resolve::chain(&repo, &key)
        .unwrap_or_default()
        .iter()
        .map(|i| {
            let f = &repo.packs[*i].file;
            f.rsplit_once('/')
                .map_or(String::new(), |(d, _)| format!("{d}/"))
        })
        .collect();
    let broken: Vec<_> = repo
        .diagnostics
        .iter()
        .filter(|d| d.is_error() && dirs.iter().any(|dir| d.file.starts_with(dir.as_str())))
        .collect();
    if !broken.is_empty() {
        for d in &broken {
            eprintln!(
                "error: {}:{}:{}: {} ({})",
                d.file, d.line, d.col, d.message, d.code
            );
        }
        eprintln!(
            "the chain's packs do not load whole; fix these (`missionctl validate` shows them all) before rendering"
        );
        return Ok(ExitCode::from(1));
    }
    let settings = repo.openclaw();
    let id = a.agent.clone().unwrap_or_else(|| {
        [
            Some(key.domain.as_str()),
            key.tenant.as_deref(),
            key.user.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("-")
    });
    let agent = render::AgentBinding {
        id: id.clone(),
        domain: key.domain.clone(),
        tenant: key.tenant.clone(),
        user: key.user.clone(),
    };
    let ws = render::render(&r, &agent, Arm::Champion, commit.as_deref(), &settings);
    let (files, total) = render::over_limits(&ws.files, &settings);
    for (name, n) in &files {
        eprintln!(
            "warning: {name} is {n} characters; OpenClaw injects at most {} (`missionctl validate` reports this as openclaw/bootstrap-file)",
            settings.bootstrap_max_chars
        );
    }
    if let Some(n) = total {
        eprintln!(
            "warning: the bootstrap files hold {n} characters; OpenClaw injects at most {} in all",
            settings.bootstrap_total_max_chars
        );
    }
    let written = workspace::write(&a.out, &ws)?;
    if !written.drift.is_empty() {
        eprintln!(
            "note: {} had been edited by hand; the edits are kept under {}",
            written.drift.join(", "),
            a.out.join(".missionctl/drift").display()
        );
    }
    let dir = std::path::absolute(&a.out).unwrap_or(a.out.clone());
    let entry = render::agent_entry(
        &ws,
        &dir.display().to_string(),
        a.model.as_deref(),
        &settings,
    );
    let fragment_path = a
        .fragment
        .clone()
        .unwrap_or_else(|| a.out.join(".missionctl/agents.json5"));
    // Other agents already in the fragment stay: it is the Gateway's whole
    // `agents` object, and an agent missing from it is unknown to the Gateway.
    let mut entries = sync::previous_entries(&fragment_path);
    entries.insert(id.clone(), entry);
    sync::write_fragment(&fragment_path, &entries, None)
        .with_context(|| format!("writing {}", fragment_path.display()))?;
    if let Some(m) = &a.mcp_fragment {
        sync::write_mcp_fragment(m, &settings)
            .with_context(|| format!("writing {}", m.display()))?;
        let shown = std::path::absolute(m).unwrap_or(m.clone());
        outln!(
            "MCP fragment: {} ({} server(s); include it as the Gateway's `mcp`: mcp: {{ $include: \"{}\" }})",
            m.display(),
            settings.mcp_servers.len(),
            shown.display()
        );
    }
    outln!(
        "{}: {} {} for agent `{id}` ({})",
        a.out.display(),
        r.pack_id,
        r.pack_version,
        if written.changed {
            "written"
        } else {
            "unchanged"
        }
    );
    // OpenClaw resolves `$include` relative to the config file holding it,
    // and refuses a file outside that file's directory ("Include path
    // escapes config directory", checked with `openclaw config validate`):
    // an absolute path is right wherever the config is, within that rule.
    let shown = std::path::absolute(&fragment_path).unwrap_or(fragment_path.clone());
    outln!(
        "config fragment: {} ({} agent(s); include it as the Gateway's `agents`: agents: {{ $include: \"{}\" }}; OpenClaw includes only files in its config file's directory or below)",
        fragment_path.display(),
        entries.len(),
        shown.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn sync_cmd(a: SyncArgs) -> anyhow::Result<ExitCode> {
    super::note("registry", &a.registry);
    super::note("token", &a.token_file.display().to_string());
    let token = std::fs::read_to_string(&a.token_file)
        .with_context(|| format!("reading the token file {}", a.token_file.display()))?
        .trim()
        .to_string();
    if token.is_empty() {
        anyhow::bail!(
            "{}: the token file is empty; put a harness token there (missionctl token new --role harness)",
            a.token_file.display()
        );
    }
    if !a.registry.starts_with("http://") && !a.registry.starts_with("https://") {
        anyhow::bail!(
            "--registry: `{}` is not an http(s) URL",
            missionctl::store::redact(&a.registry)
        );
    }
    let gateway = match (&a.gateway, &a.gateway_token_file) {
        (Some(url), Some(file)) => {
            let token = std::fs::read_to_string(file)
                .with_context(|| format!("reading the Gateway token file {}", file.display()))?
                .trim()
                .to_string();
            Some((url.clone(), token))
        }
        _ => None,
    };
    let agents = sync::load_agents(&a.agents)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            match e {
                sync::Event::Delivered { .. } => outln!("{e}"),
                _ => eprintln!("{e}"),
            }
        }
    });
    let opts = sync::SyncOptions {
        registry: a.registry.clone(),
        token,
        agents,
        wait: a.wait,
        once: a.once,
        gateway_config: a.gateway_config.clone(),
        refused_retry: a.retry_refused,
        gateway,
    };
    let result = tokio::select! {
        r = sync::run(opts, tx) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    let _ = printer.await;
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
