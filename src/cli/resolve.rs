//! `missionctl resolve`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use missionctl::pack;
use missionctl::resolve::{self, ChainKey};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// A scope chain in a repository, at a revision or in the work tree.
#[derive(clap::Args, Debug)]
pub struct ChainArgs {
    /// Domain scope id (e.g. hr-ops) or domain pack id (hr-ops-pack).
    #[arg(long)]
    pub domain: String,
    /// Tenant scope id (e.g. acme): resolve the tenant's chain (default: the domain alone).
    #[arg(long)]
    pub tenant: Option<String>,
    /// User scope id within --tenant (e.g. alice): resolve that user's chain.
    #[arg(long)]
    pub user: Option<String>,
    /// The pack repository (default: the one the current directory is in, found upwards as git does).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Read this revision instead of the work tree.
    #[arg(long)]
    pub rev: Option<String>,
}

impl ChainArgs {
    /// The chain's key, the repository loaded for it, and the commit it
    /// was read from (None for the work tree).
    pub fn load(&self) -> anyhow::Result<(ChainKey, pack::Repo, Option<String>)> {
        let root = super::repo_root(self.repo.as_deref());
        let tree = super::open_tree_lazy(&root, self.rev.as_deref())?;
        let key = ChainKey::new(&self.domain, self.tenant.as_deref(), self.user.as_deref());
        let repo = pack::load_chain(&tree, &key);
        Ok((key, repo, tree.commit.map(|c| c.to_string())))
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Show the file and line every value came from.
    #[arg(long)]
    pub explain: bool,
    /// The effective pack as `json` or `yaml`.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let (key, repo, _) = a.chain.load()?;
    let r = match resolve::resolve(&repo, &key) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    if let (Some(t), Some(u)) = (&a.chain.tenant, &a.chain.user)
        && !repo.tenant_users.contains_key(&(t.clone(), u.clone()))
    {
        eprintln!("note: user `{u}` has no pack in tenant `{t}`; resolved at tenant scope");
    }
    let mut out = serde_json::to_value(&r)?;
    if a.explain
        && let serde_json::Value::Object(o) = &mut out
    {
        let prov: serde_json::Map<String, serde_json::Value> = r
            .provenance
            .iter()
            .map(|(k, v)| {
                (
                    format!("/content{k}"),
                    serde_json::Value::String(format!(
                        "{}:{}:{} ({})",
                        v.file, v.line, v.col, v.scope
                    )),
                )
            })
            .collect();
        o.insert("provenance".into(), serde_json::Value::Object(prov));
    }
    match a.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&out)?),
        Format::Yaml => out!("{}", serde_saphyr::to_string(&out)?),
    }
    Ok(ExitCode::SUCCESS)
}
