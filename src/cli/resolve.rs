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

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domain scope id (e.g. hr-ops) or domain pack id (hr-ops-pack).
    #[arg(long)]
    pub domain: String,
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Resolve at this revision instead of the work tree.
    #[arg(long)]
    pub rev: Option<String>,
    /// Show the file and line every value came from.
    #[arg(long)]
    pub explain: bool,
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let tree = super::open_tree_lazy(&a.repo, a.rev.as_deref())?;
    let key = ChainKey::new(&a.domain, a.tenant.as_deref(), a.user.as_deref());
    let repo = pack::load_chain(&tree, &key);
    let r = match resolve::resolve(&repo, &key) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    if let (Some(t), Some(u)) = (&a.tenant, &a.user)
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
        Format::Json => println!("{}", serde_json::to_string_pretty(&out)?),
        Format::Yaml => print!("{}", serde_saphyr::to_string(&out)?),
    }
    Ok(ExitCode::SUCCESS)
}
