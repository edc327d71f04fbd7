//! `missionctl market`: index, search, show, add, verify, upgrade.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use missionctl::market::{self, compat, fetch, install};

use super::OutFormat;
use super::market_out::{finish, open_pr, plain, print_report};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Build a catalog index of a pack repository's domain packs (every version on its main branch).
    #[command(
        after_help = "Examples:\n  missionctl market index --repo ../hr-packs --out index.json\n  missionctl market index --repo . --source-url https://github.com/acme/packs.git --out public/index.json"
    )]
    Index {
        /// The catalog repository (a pack repository).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Index this revision (default: mission.yaml's main branch, else HEAD).
        #[arg(long)]
        rev: Option<String>,
        /// Where to write the index (JSON; `-` for stdout).
        #[arg(long)]
        out: PathBuf,
        /// The catalog's name (default: market.yaml's `name`, else mission.yaml's).
        #[arg(long)]
        name: Option<String>,
        /// The repository URL installers fetch from (default: the `origin` remote, else the path).
        #[arg(long)]
        source_url: Option<String>,
    },
    /// Search the configured catalogs (mission.yaml `marketplace.catalogs`).
    #[command(
        after_help = "Examples:\n  missionctl market search\n  missionctl market search legal --catalog community"
    )]
    Search {
        /// Words to match in the id, description, tools, contracts and maintainers (all must match).
        query: Vec<String>,
        #[command(flatten)]
        at: Catalogs,
        /// `human`: text for a terminal; `json`: everything, as JSON.
        #[arg(long, value_enum, default_value = "human")]
        format: OutFormat,
    },
    /// What a catalog pack is, its versions, and whether it fits this fleet.
    #[command(
        after_help = "Examples:\n  missionctl market show hr-ops\n  missionctl market show hr-ops@1.0.0 --format json"
    )]
    Show {
        /// ID or ID@VERSION (default: the newest version).
        pack: String,
        #[command(flatten)]
        at: Catalogs,
        /// `human`: text for a terminal; `json`: everything, as JSON.
        #[arg(long, value_enum, default_value = "human")]
        format: OutFormat,
    },
    /// Write a catalog pack under packs/domains/<id>/ on a new branch, with its lock.
    #[command(
        after_help = "Examples:\n  missionctl market add hr-ops\n  missionctl market add hr-ops@1.0.0 --catalog community --open-pr"
    )]
    Add {
        /// ID or ID@VERSION (default: the newest version).
        pack: String,
        #[command(flatten)]
        at: Catalogs,
        #[command(flatten)]
        pr: PrArgs,
        /// Propose it even though it does not validate under this fleet's rules (the gate will block it).
        #[arg(long)]
        propose_anyway: bool,
        /// `human`: text for a terminal; `json`: everything, as JSON.
        #[arg(long, value_enum, default_value = "human")]
        format: OutFormat,
    },
    /// Check every installed catalog pack's files against its lock.
    #[command(
        after_help = "Examples:\n  missionctl market verify\n  missionctl market verify --rev main --format json"
    )]
    Verify {
        /// The fleet repository (default: found upwards from the current directory).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Check this revision instead of the work tree.
        #[arg(long)]
        rev: Option<String>,
        /// Check the locks against the catalogs as last fetched, fetching nothing.
        #[arg(long)]
        offline: bool,
        /// `human`: text for a terminal; `json`: everything, as JSON.
        #[arg(long, value_enum, default_value = "human")]
        format: OutFormat,
    },
    /// Three-way update of an installed pack to a catalog version, on a new branch.
    #[command(
        after_help = "Examples:\n  missionctl market upgrade hr-ops\n  missionctl market upgrade hr-ops@1.1.0 --open-pr"
    )]
    Upgrade {
        /// ID or ID@VERSION (default: the newest version).
        pack: String,
        #[command(flatten)]
        at: Catalogs,
        #[command(flatten)]
        pr: PrArgs,
        /// `human`: text for a terminal; `json`: everything, as JSON.
        #[arg(long, value_enum, default_value = "human")]
        format: OutFormat,
    },
}

#[derive(clap::Args, Debug)]
pub struct Catalogs {
    /// The fleet repository (default: found upwards from the current directory).
    #[arg(long)]
    repo: Option<PathBuf>,
    /// Only this catalog (a `name` in mission.yaml's marketplace.catalogs).
    #[arg(long)]
    catalog: Option<String>,
    /// Use the catalogs as last fetched (under .missionctl/market/), fetching nothing.
    #[arg(long)]
    offline: bool,
}

#[derive(clap::Args, Debug)]
pub struct PrArgs {
    /// Push the branch to `origin` and open a pull request (GITHUB_TOKEN, GITHUB_API_URL).
    #[arg(long)]
    open_pr: bool,
    /// The GitHub repository (owner/name; default: GITHUB_REPOSITORY).
    #[arg(long)]
    repository: Option<String>,
}

struct Loaded {
    root: PathBuf,
    catalogs: Vec<fetch::Catalog>,
}

fn load(at: &Catalogs) -> anyhow::Result<Loaded> {
    let root = super::repo_root(at.repo.as_deref());
    let tree = missionctl::git::Tree::work_tree_lazy(&root);
    let Some(mission) = missionctl::pack::mission(&tree) else {
        let problems: Vec<String> = missionctl::pack::load_files(&tree, &[])
            .diagnostics
            .iter()
            .filter(|d| d.file == "mission.yaml" && d.is_error())
            .take(5)
            .map(|d| format!("\n  mission.yaml:{}:{}: {}", d.line, d.col, d.message))
            .collect();
        anyhow::bail!(
            "{}/mission.yaml is missing or does not validate:{}\n(`missionctl validate` lists every problem)",
            root.display(),
            problems.concat()
        );
    };
    let mut specs = fetch::configured(&mission.marketplace)?;
    fetch::relative_to(&mut specs, &root);
    let specs: Vec<fetch::CatalogSpec> = specs
        .into_iter()
        .filter(|s| at.catalog.as_ref().is_none_or(|c| c == &s.name))
        .collect();
    if specs.is_empty() {
        anyhow::bail!(match &at.catalog {
            Some(c) => format!("mission.yaml lists no catalog named `{c}` under marketplace.catalogs"),
            None => "mission.yaml lists no catalogs: add `marketplace: {catalogs: [{name: community, git: https://…}]}` (see the marketplace chapter)".into(),
        });
    }
    let mut warnings = Vec::new();
    let catalogs = fetch::load_all(&specs, &fetch::cache_dir(&root), at.offline, &mut warnings)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(Loaded { root, catalogs })
}

fn split_pack(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once('@') {
        Some((id, v)) => (id, Some(v)),
        None => (spec, None),
    }
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Index {
            repo,
            rev,
            out,
            name,
            source_url,
        } => {
            let root = super::repo_root(repo.as_deref());
            let (index, skipped) = market::index::build(
                &root,
                rev.as_deref(),
                &market::index::Options { name, source_url },
            )?;
            let mut text = serde_json::to_string_pretty(&index)?;
            text.push('\n');
            if out == Path::new("-") {
                out!("{text}");
            } else {
                std::fs::write(&out, &text)
                    .with_context(|| format!("cannot write {}", out.display()))?;
            }
            let versions: usize = index.packs.iter().map(|p| p.versions.len()).sum();
            eprintln!(
                "catalog `{}`: {} pack(s), {versions} version(s) at {:.12}{}",
                index.name,
                index.packs.len(),
                index.source.commit,
                if out == Path::new("-") {
                    String::new()
                } else {
                    format!(" -> {}", out.display())
                }
            );
            for s in &skipped {
                eprintln!(
                    "left out {}@{} ({:.12}): {}",
                    s.id, s.version, s.commit, s.reason
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Search { query, at, format } => {
            let l = load(&at)?;
            let words: Vec<String> = query.iter().map(|q| q.to_lowercase()).collect();
            let mut hits = Vec::new();
            for c in &l.catalogs {
                for p in &c.index.packs {
                    let Some(v) = p.latest() else { continue };
                    if p.matches(v, &words) {
                        hits.push((c.name.as_str(), p, v));
                    }
                }
            }
            match format {
                OutFormat::Json => {
                    let rows: Vec<serde_json::Value> = hits
                        .iter()
                        .map(|(c, p, v)| serde_json::json!({
                            "catalog": c, "id": p.id, "pack_id": p.pack_id, "latest": v.version,
                            "versions": p.versions.iter().map(|v| &v.version).collect::<Vec<_>>(),
                            "description": p.description, "license": p.license,
                            "autonomy": v.tools.autonomy, "tools": v.tools.allow,
                            "eval_cases": v.eval_cases.total,
                        }))
                        .collect();
                    outln!("{}", serde_json::to_string_pretty(&rows)?);
                }
                OutFormat::Human => {
                    if hits.is_empty() {
                        outln!(
                            "no pack matches; `missionctl market search` with no words lists them all"
                        );
                    } else {
                        outln!(
                            "{:<14} {:<24} {:<10} {:<5} {:>5} {:>5}  DESCRIPTION",
                            "CATALOG",
                            "ID",
                            "LATEST",
                            "AUTON",
                            "TOOLS",
                            "CASES"
                        );
                        for (c, p, v) in &hits {
                            let d: String = plain(&p.description).chars().take(60).collect();
                            outln!(
                                "{:<14} {:<24} {:<10} {:<5} {:>5} {:>5}  {d}",
                                plain(c),
                                plain(&p.id),
                                plain(&v.version),
                                plain(v.tools.autonomy.as_deref().unwrap_or("-")),
                                v.tools.allow.len(),
                                v.eval_cases.total
                            );
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { pack, at, format } => {
            let l = load(&at)?;
            let (id, version) = split_pack(&pack);
            let (cat, entry, v) = fetch::find(&l.catalogs, at.catalog.as_deref(), id, version)?;
            let files = fetch::version_files(cat, id, v, &fetch::cache_dir(&l.root))?;
            let report = compat::report(compat::fleet_tree(&l.root)?, id, &v.version, &files)?;
            if let Some(f) = &report.facts {
                market::check_claims(entry, v, f)?;
            }
            match format {
                OutFormat::Json => outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "catalog": cat.name, "pack": entry, "version": v, "compatibility": report,
                    }))?
                ),
                OutFormat::Human => {
                    outln!(
                        "{} {} ({}) from catalog {}",
                        plain(&entry.id),
                        plain(&v.version),
                        plain(&entry.pack_id),
                        plain(&cat.name)
                    );
                    outln!("  {}", plain(&entry.description));
                    outln!(
                        "  licence      {}",
                        plain(entry.license.as_deref().unwrap_or("not stated"))
                    );
                    outln!("  maintainers  {}", plain(&entry.maintainers.join(", ")));
                    let vs: Vec<&str> = entry.versions.iter().map(|v| v.version.as_str()).collect();
                    outln!("  versions     {}", plain(&vs.join(", ")));
                    outln!(
                        "  source       {} {} {}",
                        plain(&v.source.repository),
                        &v.source.commit,
                        plain(&v.source.path)
                    );
                    outln!("  digest       {}", v.digest);
                    outln!(
                        "  autonomy     {}",
                        plain(v.tools.autonomy.as_deref().unwrap_or("unset"))
                    );
                    outln!("  tools        {}", plain(&v.tools.allow.join(", ")));
                    let cs: Vec<&str> = v.contracts.iter().map(|c| c.id.as_str()).collect();
                    outln!("  contracts    {}", plain(&cs.join(", ")));
                    let tags: Vec<String> = v
                        .eval_cases
                        .by_tag
                        .iter()
                        .map(|(k, n)| format!("{k} {n}"))
                        .collect();
                    outln!(
                        "  eval cases   {} ({})",
                        v.eval_cases.total,
                        plain(&tags.join(", "))
                    );
                    outln!("  kpis         {}", plain(&v.kpis.to_string()));
                    outln!("  prompt       {} tokens", v.prompt_tokens);
                    if let Some(ev) = &v.evidence {
                        outln!("  evidence     {}", plain(&ev.to_string()));
                    }
                    outln!();
                    print_report(&report);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Add {
            pack,
            at,
            pr,
            propose_anyway,
            format,
        } => {
            let l = load(&at)?;
            let (id, version) = split_pack(&pack);
            let (cat, entry, v) = fetch::find(&l.catalogs, at.catalog.as_deref(), id, version)?;
            let files = fetch::version_files(cat, id, v, &fetch::cache_dir(&l.root))?;
            let report = compat::report(compat::fleet_tree(&l.root)?, id, &v.version, &files)?;
            if let Some(f) = &report.facts {
                market::check_claims(entry, v, f)?;
            }
            if !report.validates && !propose_anyway {
                print_report(&report);
                eprintln!(
                    "error: {id}@{} does not validate under this fleet's rules (above); nothing was written. Fix it upstream, or pass --propose-anyway to let the gate judge it",
                    v.version
                );
                return Ok(ExitCode::FAILURE);
            }
            let lock =
                install::lock_for(&cat.name, id, &entry.pack_id, &v.version, &v.source, &files);
            let proposal = install::add(&l.root, &lock, &files)?;
            let pull = if pr.open_pr {
                Some(open_pr(
                    &l.root,
                    &proposal,
                    &cat.name,
                    entry,
                    v,
                    &report,
                    None,
                    pr.repository.as_deref(),
                )?)
            } else {
                None
            };
            finish(format, &proposal, pull.as_ref(), &report, None)
        }
        Command::Verify {
            repo,
            rev,
            offline,
            format,
        } => {
            let root = super::repo_root(repo.as_deref());
            let tree = super::open_tree(&root, rev.as_deref())?;
            let main = missionctl::git::open(&root)
                .ok()
                .and_then(|r| install::main_tip(&r, &root).ok().map(|(_, c)| (r, c)))
                .and_then(|(r, c)| r.tree(c, "main").ok());
            let mut results = install::verify(&tree, main.as_ref());
            // Each lock against what its catalog publishes (cached copies
            // when a catalog cannot be fetched).
            if results.iter().any(|r| r.lock.is_some()) {
                let at = Catalogs {
                    repo: Some(root.clone()),
                    catalog: None,
                    offline,
                };
                let catalogs = load(&at).map(|l| l.catalogs).unwrap_or_else(|e| {
                    eprintln!("warning: {e}");
                    Vec::new()
                });
                for r in &mut results {
                    install::confirm(r, &catalogs);
                }
            }
            let drift = results.iter().filter(|r| !r.clean()).count();
            match format {
                OutFormat::Json => outln!("{}", serde_json::to_string_pretty(&results)?),
                OutFormat::Human => {
                    if results.is_empty() {
                        outln!(
                            "no pack under packs/domains/ was installed from a catalog (none has a {})",
                            market::LOCK_FILE
                        );
                    }
                    for r in &results {
                        if let Some(u) = &r.unconfirmed {
                            eprintln!("note: {}: {}", plain(&r.id), plain(u));
                        }
                        if r.clean() {
                            outln!(
                                "ok      {} {} (catalog {})",
                                plain(&r.id),
                                plain(&r.version),
                                plain(&r.catalog)
                            );
                            continue;
                        }
                        if r.version.is_empty() {
                            outln!("CHANGED {} (its lock cannot be read)", plain(&r.id));
                        } else {
                            outln!(
                                "CHANGED {} {} (catalog {})",
                                plain(&r.id),
                                plain(&r.version),
                                plain(&r.catalog)
                            );
                        }
                        if let Some(b) = &r.broken {
                            outln!("  lock: {}", plain(b));
                        }
                        for f in &r.modified {
                            outln!("  modified  {}", plain(f));
                        }
                        for f in &r.missing {
                            outln!("  missing   {}", plain(f));
                        }
                        for f in &r.added {
                            outln!("  added     {}", plain(f));
                        }
                    }
                    if drift > 0 {
                        outln!(
                            "\nAn installed catalog pack is kept as the catalog published it. Local changes belong in a tenant or user pack (packs/tenants/<tenant>/…), which extends the domain pack without forking it; or propose them to the catalog. `git checkout` the files to restore them; `missionctl market upgrade` keeps merged edits and names conflicts."
                        );
                    }
                }
            }
            Ok(if drift > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Upgrade {
            pack,
            at,
            pr,
            format,
        } => {
            let l = load(&at)?;
            let (id, version) = split_pack(&pack);
            let repo = missionctl::git::open(&l.root)?;
            let (_, main) = install::main_tip(&repo, &l.root)?;
            let tree = repo.tree(main, "main")?;
            let old = install::read_lock(&tree, id)
                .map_err(anyhow::Error::msg)?
                .with_context(|| format!("packs/domains/{id}/ was not installed from a catalog (it has no {}); `missionctl market add` installs one", market::LOCK_FILE))?;
            let only = at.catalog.as_deref().or(Some(old.catalog.as_str()));
            let (cat, entry, v) = fetch::find(&l.catalogs, only, id, version)?;
            let older = match (
                semver::Version::parse(&v.version),
                semver::Version::parse(&old.version),
            ) {
                (Ok(new), Ok(installed)) => new < installed,
                _ => false,
            };
            if older && version.is_none() {
                eprintln!(
                    "error: catalog `{}`'s newest {id} is {}, older than the installed {}: it withdrew the newer version. Nothing was written; to go back on purpose, name it: `missionctl market upgrade {id}@{}`",
                    cat.name,
                    market::shown(&v.version),
                    old.version,
                    market::shown(&v.version)
                );
                return Ok(ExitCode::FAILURE);
            }
            if older {
                eprintln!(
                    "note: {id} {} -> {} is a downgrade, as asked",
                    old.version,
                    market::shown(&v.version)
                );
            }
            if v.version == old.version && v.digest == old.digest {
                outln!(
                    "{id} is at {} already, as catalog {} publishes it",
                    old.version,
                    cat.name
                );
                return Ok(ExitCode::SUCCESS);
            }
            let cache = fetch::cache_dir(&l.root);
            let base = fetch::locked_files(cat, &old, &cache)?;
            let theirs = fetch::version_files(cat, id, v, &cache)?;
            let report = compat::report(compat::fleet_tree(&l.root)?, id, &v.version, &theirs)?;
            if let Some(f) = &report.facts {
                market::check_claims(entry, v, f)?;
            }
            let lock = install::lock_for(
                &cat.name,
                id,
                &entry.pack_id,
                &v.version,
                &v.source,
                &theirs,
            );
            let up = install::upgrade(&l.root, &old, &base, &lock, &theirs)?;
            if !up.conflicts.is_empty() {
                for c in &up.conflicts {
                    eprintln!("conflict: {}: {}", plain(&c.path), c.why);
                }
                eprintln!(
                    "error: {} file(s) changed both here and upstream ({} -> {}); nothing was written. Move the local changes to a tenant or user pack (or `git checkout` the catalog's files), then run the upgrade again",
                    up.conflicts.len(),
                    old.version,
                    v.version
                );
                return Ok(ExitCode::FAILURE);
            }
            let proposal = up.proposal.clone().context("no proposal")?;
            let pull = if pr.open_pr {
                Some(open_pr(
                    &l.root,
                    &proposal,
                    &cat.name,
                    entry,
                    v,
                    &report,
                    Some(&up),
                    pr.repository.as_deref(),
                )?)
            } else {
                None
            };
            finish(format, &proposal, pull.as_ref(), &report, Some(&up))
        }
    }
}
