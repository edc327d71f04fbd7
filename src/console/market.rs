//! `/ui/market`: the domain packs of every catalog `mission.yaml` lists
//! (`marketplace.catalogs` at the served commit), searchable; and
//! `/ui/market/<catalog>/<id>`: one pack's facts and its compatibility
//! report against the fleet at the served commit. An unscoped admin may
//! propose the install (or upgrade) from there: the same branch, and pull
//! request when GitHub is configured, as `missionctl market add --open-pr`
//! (`market upgrade --open-pr`), in the repository `serve` serves. A pack
//! that does not validate is never proposed from the console.
//!
//! Catalogs are fetched off the async runtime and kept for [`TTL`]; one
//! that cannot be fetched is served from its cached copy with a warning.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;
use crate::git::SourceKind;
use crate::market::{self, compat, fetch, install, publish};

/// How long fetched catalogs are reused before they are fetched again.
pub const TTL: Duration = Duration::from_secs(60);

/// The configured catalogs as last fetched.
pub struct Loaded {
    pub catalogs: Vec<fetch::Catalog>,
    /// A line per catalog served from its cache, or not read at all.
    pub warnings: Vec<String>,
    /// `marketplace.catalogs` itself is malformed (why).
    pub config_error: Option<String>,
    /// Catalogs are listed (else the page says how to list one).
    pub configured: bool,
    /// The served repository, when it is a path on this machine.
    pub root: Option<PathBuf>,
    pub cache: PathBuf,
}

/// The catalogs, fetched at most once per [`TTL`] for the same
/// `marketplace` section; a fetch in progress is waited for, not repeated.
#[derive(Default)]
pub struct Cache {
    inner: tokio::sync::Mutex<Option<(Instant, String, Arc<Loaded>)>>,
}

/// Where the served repository is (a local path only) and where catalogs
/// are cached for it.
fn places(source: &crate::git::Source) -> (Option<PathBuf>, PathBuf) {
    match &source.kind {
        SourceKind::Local(p) => (Some(p.clone()), fetch::cache_dir(p)),
        SourceKind::Remote { mirror, .. } => (None, mirror.with_extension("market")),
    }
}

async fn loaded(c: &Console, snap: &crate::registry::Snapshot) -> Arc<Loaded> {
    let value = snap
        .repo
        .mission
        .as_ref()
        .map(|m| m.value.marketplace.clone())
        .unwrap_or_default();
    let key = value.to_string();
    let mut guard = c.market.inner.lock().await;
    if let Some((at, k, l)) = guard.as_ref()
        && *k == key
        && at.elapsed() < TTL
    {
        return l.clone();
    }
    let (root, cache) = places(&c.reg.source);
    let l = tokio::task::spawn_blocking(move || {
        let mut l = Loaded {
            catalogs: Vec::new(),
            warnings: Vec::new(),
            config_error: None,
            configured: false,
            root,
            cache,
        };
        let mut specs = match fetch::configured(&value) {
            Ok(s) => s,
            Err(e) => {
                l.config_error = Some(e.to_string());
                return l;
            }
        };
        if let Some(r) = &l.root {
            fetch::relative_to(&mut specs, r);
        }
        l.configured = !specs.is_empty();
        for s in &specs {
            match fetch::load(s, &l.cache, false, &mut l.warnings) {
                Ok(cat) => l.catalogs.push(cat),
                Err(e) => l.warnings.push(format!("{e} (its packs are not listed)")),
            }
        }
        l
    })
    .await
    .unwrap_or_else(|e| Loaded {
        catalogs: Vec::new(),
        warnings: vec![format!("the catalogs could not be read: {e}")],
        config_error: None,
        configured: true,
        root: None,
        cache: PathBuf::new(),
    });
    let l = Arc::new(l);
    *guard = Some((Instant::now(), key, l.clone()));
    l
}

/// As `missionctl market search` matches ([`market::PackEntry::matches`]).
pub fn matches(p: &market::PackEntry, v: &market::VersionEntry, words: &[String]) -> bool {
    p.matches(v, words)
}

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    q: Option<String>,
    catalog: Option<String>,
}

/// One row of the list.
pub struct Row<'a> {
    pub catalog: &'a str,
    pub pack: &'a market::PackEntry,
    pub latest: &'a market::VersionEntry,
}

pub(super) async fn list(
    State(c): State<Console>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let v = signed_in!(c, headers);
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let snap = c.reg.snapshot.load_full();
    let l = loaded(&c, &snap).await;
    let text = q.q.unwrap_or_default();
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    let only = q.catalog.filter(|x| !x.is_empty());
    let mut rows = Vec::new();
    for cat in &l.catalogs {
        if only.as_ref().is_some_and(|o| *o != cat.name) {
            continue;
        }
        for p in &cat.index.packs {
            if let Some(latest) = p.latest()
                && matches(p, latest, &words)
            {
                rows.push(Row {
                    catalog: &cat.name,
                    pack: p,
                    latest,
                });
            }
        }
    }
    html(
        StatusCode::OK,
        pages::market_list(&v, &l, &rows, &text, only.as_deref()),
    )
}

#[derive(Deserialize, Default)]
pub(super) struct PackQuery {
    version: Option<String>,
}

/// How the pack stands in the fleet, for what the page offers.
pub enum Installed {
    No,
    /// Installed with a lock at this version and digest.
    Locked(Box<market::Lock>),
    /// `packs/domains/<id>/` exists without a lock.
    Unlocked,
}

/// What the pack page shows beyond the catalog's facts.
pub struct Checked {
    pub report: Result<compat::Report, String>,
    pub installed: Installed,
    /// Other tenants' findings left out for a tenant-scoped sign-in.
    pub withheld: usize,
}

/// Read version `v`'s files, check them against their digests and report
/// on them against the fleet at the served commit.
fn check(
    l: &Loaded,
    c: &Console,
    commit: Option<&str>,
    cat: &str,
    id: &str,
    version: &str,
) -> Checked {
    let mut out = Checked {
        report: Err(String::new()),
        installed: Installed::No,
        withheld: 0,
    };
    let run = || -> Result<(compat::Report, Installed), String> {
        let (cat, entry, v) =
            fetch::find(&l.catalogs, Some(cat), id, Some(version)).map_err(|e| e.to_string())?;
        let files = fetch::version_files(cat, id, v, &l.cache).map_err(|e| e.to_string())?;
        let commit: crate::git::CommitId = commit
            .and_then(|x| x.parse().ok())
            .ok_or("no commit is served yet")?;
        let repo = c.reg.source.open_local().map_err(|e| e.to_string())?;
        let tree = repo
            .tree(commit, &c.reg.source.branch)
            .map_err(|e| e.to_string())?;
        let installed = match install::read_lock(&tree, id) {
            Ok(Some(lock)) => Installed::Locked(Box::new(lock)),
            Ok(None) if tree.is_dir(&format!("packs/domains/{id}")) => Installed::Unlocked,
            Ok(None) => Installed::No,
            Err(e) => return Err(e),
        };
        let report = compat::report(tree, id, &v.version, &files).map_err(|e| e.to_string())?;
        // As `market show`: a catalog whose claims its files contradict is refused.
        if let Some(f) = &report.facts {
            market::check_claims(entry, v, f).map_err(|e| e.to_string())?;
        }
        Ok((report, installed))
    };
    match run() {
        Ok((r, i)) => {
            out.report = Ok(r);
            out.installed = i;
        }
        Err(e) => out.report = Err(e),
    }
    out
}

/// The report as a tenant-scoped sign-in may read it: other tenants'
/// names, and findings in or naming other tenants' packs, left out.
fn for_scope(r: &mut compat::Report, scope: Option<&str>, tenants: &[String]) -> usize {
    let Some(mine) = scope else {
        return 0;
    };
    let others: Vec<&String> = tenants.iter().filter(|t| *t != mine).collect();
    r.chains.tenants.retain(|t| t == mine);
    let before = r.problems.len();
    r.problems.retain(|f| {
        let own = format!("packs/tenants/{mine}/");
        let outside = (f.file.starts_with("packs/tenants/") && !f.file.starts_with(&own))
            || f.file.starts_with("packs/users/");
        !outside
            && !others.iter().any(|t| {
                f.message.contains(t.as_str())
                    || f.help.as_ref().is_some_and(|h| h.contains(t.as_str()))
            })
    });
    before - r.problems.len()
}

pub(super) async fn pack(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((catalog, id)): Path<(String, String)>,
    q: Result<Query<PackQuery>, QueryRejection>,
) -> Response {
    let v = signed_in!(c, headers);
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let snap = c.reg.snapshot.load_full();
    let l = loaded(&c, &snap).await;
    let Some(cat) = l.catalogs.iter().find(|x| x.name == catalog) else {
        return not_found(Some(&v));
    };
    let Some(entry) = cat.index.packs.iter().find(|p| p.id == id) else {
        return not_found(Some(&v));
    };
    let version = match q.version.filter(|x| !x.is_empty()) {
        Some(want) => match entry.version(&want) {
            Some(x) => x,
            None => return not_found(Some(&v)),
        },
        None => match entry.latest() {
            Some(x) => x,
            None => return not_found(Some(&v)),
        },
    };
    let (l2, c2, commit) = (l.clone(), c.clone(), snap.commit.clone());
    let (cat2, id2, ver2) = (catalog.clone(), id.clone(), version.version.clone());
    let Ok(mut checked) =
        tokio::task::spawn_blocking(move || check(&l2, &c2, commit.as_deref(), &cat2, &id2, &ver2))
            .await
    else {
        return unavailable(&v);
    };
    let tenants: Vec<String> = snap.repo.tenants.keys().cloned().collect();
    if let Ok(r) = checked.report.as_mut() {
        checked.withheld = for_scope(r, v.tenant(), &tenants);
    }
    let may_propose = may_propose(&v);
    html(
        StatusCode::OK,
        pages::market_pack(
            &v,
            &catalog,
            entry,
            version,
            &checked,
            may_propose,
            l.root.is_some(),
        ),
    )
}

/// Only an unscoped admin proposes: a domain pack is shared by every
/// tenant (the rule a rollback of a shared pack follows).
fn may_propose(v: &Viewer) -> bool {
    v.token.may(Action::Rollback) && v.token.covers(Scope::Shared)
}

#[derive(Deserialize)]
pub(super) struct ProposeForm {
    /// Missing: empty, refused (403) as a wrong one is.
    #[serde(default)]
    csrf: String,
    version: Option<String>,
}

/// What a proposal came to.
pub enum Outcome {
    /// The branch is written (and the pull request, or why not).
    Proposed {
        proposal: Box<install::Proposal>,
        upgrade: Option<Box<install::Upgrade>>,
        report: Box<compat::Report>,
        pull: Option<Result<publish::PullRequest, String>>,
    },
    /// The upgrade's files changed both here and upstream: nothing written.
    Conflicts(Box<install::Upgrade>),
    /// It does not validate under this fleet's rules: nothing written.
    Invalid(Box<compat::Report>),
    /// Refused (why): nothing written.
    Refused(String),
}

/// What a blocking proposal gives the async side: the outcome, and what
/// opening the pull request takes when it is to be opened.
struct Written {
    outcome: Outcome,
    /// (main branch, title, body) when GitHub is configured and `origin` set.
    pr: Option<(String, String, String)>,
    /// Why no pull request is opened, when none is.
    no_pr: Option<String>,
}

fn github_configured() -> bool {
    std::env::var_os("GITHUB_REPOSITORY").is_some()
        && (std::env::var_os("GITHUB_TOKEN").is_some()
            || std::env::var_os("GITHUB_APP_ID").is_some())
}

/// `market add` (or `market upgrade` when the pack is installed with a
/// lock) against the fleet repository at `root`, refusing a pack that
/// does not validate.
fn write(
    l: &Loaded,
    root: &std::path::Path,
    cat: &str,
    id: &str,
    version: Option<&str>,
) -> Written {
    let refused = |m: String| Written {
        outcome: Outcome::Refused(m),
        pr: None,
        no_pr: None,
    };
    let go = || -> Result<Written, market::MarketError> {
        let (cat, entry, v) = fetch::find(&l.catalogs, Some(cat), id, version)?;
        let theirs = fetch::version_files(cat, id, v, &l.cache)?;
        let tree = compat::fleet_tree(root)?;
        let old = install::read_lock(&tree, id).map_err(market::MarketError::Refused)?;
        let report = compat::report(tree, id, &v.version, &theirs)?;
        if let Some(f) = &report.facts {
            market::check_claims(entry, v, f)?;
        }
        if !report.validates {
            return Ok(Written {
                outcome: Outcome::Invalid(Box::new(report)),
                pr: None,
                no_pr: None,
            });
        }
        let lock = install::lock_for(
            &cat.name,
            id,
            &entry.pack_id,
            &v.version,
            &v.source,
            &theirs,
        );
        let (proposal, upgrade) = match &old {
            Some(old) if old.version == v.version && old.digest == v.digest => {
                return Err(market::MarketError::Refused(format!(
                    "{id} is at {} already, as catalog {} publishes it",
                    old.version, cat.name
                )));
            }
            Some(old) => {
                let base = fetch::locked_files(cat, old, &l.cache)?;
                let up = install::upgrade(root, old, &base, &lock, &theirs)?;
                match up.proposal.clone() {
                    Some(p) => (p, Some(Box::new(up))),
                    None => {
                        return Ok(Written {
                            outcome: Outcome::Conflicts(Box::new(up)),
                            pr: None,
                            no_pr: None,
                        });
                    }
                }
            }
            None => (install::add(root, &lock, &theirs)?, None),
        };
        let repo = crate::git::open(root)?;
        let (pr, no_pr) = if !github_configured() {
            (None, Some("GitHub is not configured for `serve` (GITHUB_TOKEN and GITHUB_REPOSITORY): push the branch and open the pull request yourself".to_string()))
        } else if crate::git::remote_url(&repo, "origin").is_none() {
            (None, Some("the served repository has no `origin` remote to push the branch to: push it and open the pull request yourself".to_string()))
        } else {
            let (main, _) = install::main_tip(&repo, root)?;
            let title = publish::title(entry, v, upgrade.as_deref(), &cat.name);
            let body = publish::body(&cat.name, entry, v, &report, upgrade.as_deref());
            (Some((main, title, body)), None)
        };
        Ok(Written {
            outcome: Outcome::Proposed {
                proposal: Box::new(proposal),
                upgrade,
                report: Box::new(report),
                pull: None,
            },
            pr,
            no_pr,
        })
    };
    go().unwrap_or_else(|e| refused(e.to_string()))
}

pub(super) async fn propose(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((catalog, id)): Path<(String, String)>,
    form: Result<Form<ProposeForm>, FormRejection>,
) -> Response {
    let v = signed_in!(c, headers);
    let snap = c.reg.snapshot.load_full();
    let l = loaded(&c, &snap).await;
    let known = l
        .catalogs
        .iter()
        .any(|x| x.name == catalog && x.index.packs.iter().any(|p| p.id == id));
    if !known {
        return not_found(Some(&v));
    }
    let f = match form {
        Ok(Form(f)) if c.keys.csrf_ok(&v.session, &f.csrf) => f,
        _ => {
            return html(
                StatusCode::FORBIDDEN,
                pages::message(
                    Some(&v),
                    "Refused",
                    "That form is stale or did not come from this console (CSRF check): reload the page and try again.",
                ),
            );
        }
    };
    let route = format!("/ui/market/{catalog}/{id}/propose");
    if !may_propose(&v) {
        let why = format!("token `{}` may not propose {catalog}/{id}", v.token.name);
        if let Err(r) = audit(&c, &v.token.name, &route, "denied", &why).await {
            return r;
        }
        return html(
            StatusCode::FORBIDDEN,
            pages::message(
                Some(&v),
                "Refused",
                "Your sign-in may not propose a catalog pack: a domain pack is shared by every tenant, so it takes an unscoped admin token.",
            ),
        );
    }
    let Some(root) = l.root.clone() else {
        let why = "the served repository is a remote URL: the console proposes only into a repository on this machine; run `missionctl market add --open-pr` in a clone";
        if let Err(r) = audit(&c, &v.token.name, &route, "refused", why).await {
            return r;
        }
        return html(
            StatusCode::CONFLICT,
            pages::market_result(&v, &catalog, &id, &Outcome::Refused(why.into()), None),
        );
    };
    let version = f.version.filter(|x| !x.is_empty());
    let (l2, cat2, id2) = (l.clone(), catalog.clone(), id.clone());
    let root2 = root.clone();
    let Ok(mut w) =
        tokio::task::spawn_blocking(move || write(&l2, &root2, &cat2, &id2, version.as_deref()))
            .await
    else {
        return unavailable(&v);
    };
    if let (Some((main, title, body)), Outcome::Proposed { proposal, pull, .. }) =
        (&w.pr, &mut w.outcome)
    {
        *pull = Some(
            publish::open(&root, proposal, main, title, body, None)
                .await
                .map_err(|e| e.to_string()),
        );
    }
    let (status, outcome, detail) = match &w.outcome {
        Outcome::Proposed { proposal, pull, .. } => (
            StatusCode::OK,
            "ok",
            format!(
                "proposed {catalog}/{id} {} on branch {} at {}{}",
                proposal.lock.version,
                proposal.branch,
                proposal.commit,
                match pull {
                    Some(Ok(p)) => format!(", pull request #{} {}", p.number, p.url),
                    Some(Err(e)) => format!(", no pull request: {e}"),
                    None => String::new(),
                }
            ),
        ),
        Outcome::Conflicts(up) => (
            StatusCode::CONFLICT,
            "refused",
            format!(
                "{catalog}/{id} {} -> {}: {} conflict(s), nothing written",
                up.from,
                up.to,
                up.conflicts.len()
            ),
        ),
        Outcome::Invalid(r) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            format!(
                "{catalog}/{id} {} does not validate under this fleet's rules, nothing written",
                r.version
            ),
        ),
        Outcome::Refused(why) => (StatusCode::CONFLICT, "refused", why.clone()),
    };
    if let Err(r) = audit(&c, &v.token.name, &route, outcome, &detail).await {
        return r;
    }
    html(
        status,
        pages::market_result(&v, &catalog, &id, &w.outcome, w.no_pr.as_deref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(file: &str, message: &str) -> compat::Finding {
        compat::Finding {
            severity: "error".into(),
            code: "x".into(),
            file: file.into(),
            line: 1,
            col: 1,
            message: message.into(),
            help: None,
        }
    }

    #[test]
    fn a_tenant_sign_in_reads_no_other_tenant_in_the_report() {
        let mut r = compat::Report {
            id: "legal".into(),
            version: "1.0.0".into(),
            fleet: "main at 0".into(),
            validates: false,
            problems: vec![
                finding("packs/domains/legal/pack.yaml", "too many tools"),
                finding("packs/tenants/globex/pack.yaml", "chain too long"),
                finding("packs/tenants/acme/pack.yaml", "chain too long"),
                finding(
                    "packs/domains/legal/pack.yaml",
                    "the chain legal/globex is too long",
                ),
                finding("packs/users/sam/pack.yaml", "personal"),
            ],
            forbidden_tools: Vec::new(),
            autonomy: None,
            max_autonomy: None,
            prompt_tokens: 0,
            max_prompt_tokens: None,
            largest_chain_tokens: 0,
            chains: compat::Chains {
                domain: "legal".into(),
                tenants: vec!["acme".into(), "globex".into()],
                ..compat::Chains::default()
            },
            installed: None,
            facts: None,
        };
        let tenants = vec!["acme".to_string(), "globex".to_string()];
        let mut all = r.clone();
        assert_eq!(for_scope(&mut all, None, &tenants), 0);
        assert_eq!(all.problems.len(), 5);
        assert_eq!(for_scope(&mut r, Some("acme"), &tenants), 3);
        assert_eq!(r.chains.tenants, vec!["acme".to_string()]);
        let text = serde_json::to_string(&r).expect("json");
        assert!(!text.contains("globex") && !text.contains("sam"), "{text}");
    }

    #[test]
    fn search_needs_every_word() {
        let idx: market::CatalogIndex = serde_json::from_value(serde_json::json!({
            "missionctl_catalog": 1, "name": "c",
            "source": {"repository": "r", "commit": "0"},
            "packs": [{"id": "legal", "pack_id": "legal-pack", "domain": "legal",
                "description": "Triages matters", "license": null, "maintainers": ["@acme/law"],
                "versions": [{"version": "1.0.0",
                    "source": {"repository": "r", "commit": "0", "path": "packs/domains/legal"},
                    "files": [], "digest": "sha256:0",
                    "tools": {"autonomy": "A1", "allow": ["conflict.check"], "deny": []},
                    "contracts": [{"id": "intake-record", "description": null}],
                    "eval_cases": {"total": 1, "by_tag": {}}, "kpis": {}, "prompt_tokens": 1,
                    "evidence": null}]}]
        }))
        .expect("index");
        let p = &idx.packs[0];
        let v = p.latest().expect("latest");
        let m = |q: &str| {
            let w: Vec<String> = q.split_whitespace().map(str::to_lowercase).collect();
            matches(p, v, &w)
        };
        assert!(m(""));
        assert!(m("MATTERS conflict.check"));
        assert!(m("intake-record @acme/law"));
        assert!(!m("matters payroll"));
    }
}
