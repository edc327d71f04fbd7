//! `missionctl reconcile`, `serve`, `rollback` and `decisions`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use missionctl::model::{Decision, DecisionKind};
use missionctl::reconcile::daemon::DaemonConfig;
use missionctl::reconcile::rollback::{self, Target};
use missionctl::reconcile::{self as rec, Options, Outcome, Source};
use missionctl::registry::auth::Tokens;
use missionctl::registry::{Registry, controller};
use missionctl::store::Store;

use super::OutFormat;

/// Where the pack repository and the state store are.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// The pack repository: a local path (bare or not) or a URL (default: the
    /// repository the current directory is in, found upwards as git does).
    #[arg(long)]
    pub repo: Option<String>,
    /// The branch decisions are made from.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// State store: sqlite://PATH or postgres://USER@HOST/DB; see --help for the default.
    #[arg(long, long_help = super::DB_HELP)]
    pub db: Option<String>,
    /// Where mirrors of remote repositories are kept (default: the user's cache directory).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

impl Common {
    pub fn source(&self) -> Source {
        let cache = self.cache_dir.clone().unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from("."))
                .join("missionctl")
        });
        Source::new(&self.repo(), &self.branch, &cache)
    }

    /// `--repo`, else the repository the current directory is in.
    pub fn repo(&self) -> String {
        match &self.repo {
            Some(r) => {
                super::note("repository", r);
                r.clone()
            }
            None => super::repo_root(None).display().to_string(),
        }
    }

    /// The store: `--repo`'s mission.yaml when it is a work tree, else that
    /// of the pack repository the current directory is in.
    pub fn db_url(&self) -> anyhow::Result<String> {
        super::db_url_was_default(
            self.db.as_deref(),
            self.repo.as_deref().map(std::path::Path::new),
        )
    }
}

#[derive(clap::Args, Debug)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub common: Common,
    /// One pass, then exit (otherwise keep polling).
    #[arg(long)]
    pub once: bool,
    /// Poll interval when not --once (e.g. 30s, 5m).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// Also write each decision as a git note under refs/notes/missionctl (pushed for remotes).
    #[arg(long)]
    pub notes: bool,
    /// History was rewritten on purpose: resume from the branch's current tip.
    #[arg(long)]
    pub acknowledge_rewrite: bool,
    /// `human`: one line per decision; `json`: the outcome as one JSON document.
    #[arg(long, value_enum, default_value = "human")]
    pub format: OutFormat,
}

fn print_outcome(out: &Outcome, format: OutFormat) -> anyhow::Result<()> {
    match format {
        OutFormat::Json => outln!("{}", serde_json::to_string(out)?),
        OutFormat::Human => {
            for d in &out.decisions {
                outln!(
                    "{:<8} {:<32} {} -> {}  [{:.8}{}] {}",
                    d.decision,
                    d.pack_id,
                    d.champion_pack_version.as_deref().unwrap_or("(none)"),
                    d.challenger_pack_version,
                    d.commit,
                    d.pull_request.map(|n| format!(" #{n}")).unwrap_or_default(),
                    d.reason
                );
            }
            if let Some(h) = &out.halted {
                eprintln!("halted: {h}");
            } else {
                eprintln!(
                    "reconciled {} commit(s) up to {:.8}: {} decision(s)",
                    out.commits,
                    out.tip,
                    out.decisions.len()
                );
            }
        }
    }
    Ok(())
}

fn exit_for(out: &Outcome) -> ExitCode {
    if out.halted.is_some()
        || out
            .decisions
            .iter()
            .any(|d| d.decision == DecisionKind::Reject)
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

pub fn reconcile(a: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let rt = missionctl::runtime()?;
    rt.block_on(async {
        let store = Store::connect(&a.common.db_url()?).await?;
        let source = a.common.source();
        let opts = Options {
            notes: a.notes,
            acknowledge: a.acknowledge_rewrite,
        };
        if a.acknowledge_rewrite {
            let out = rec::reconcile(&source, &store, &opts).await?;
            eprintln!("acknowledged: reconciling resumes from {:.8}", out.tip);
            return Ok(ExitCode::SUCCESS);
        }
        loop {
            let out = rec::reconcile(&source, &store, &opts).await?;
            print_outcome(&out, a.format)?;
            if a.once || out.halted.is_some() {
                return Ok(exit_for(&out));
            }
            tokio::time::sleep(a.poll_interval).await;
        }
    })
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Address for the webhook and the registry API (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Fetch interval for remotes and the safety net for local paths.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// Also write each decision as a git note under refs/notes/missionctl (pushed for remotes).
    #[arg(long)]
    pub notes: bool,
    /// Registry tokens file (see schema/tokens.schema.json; `missionctl token new` makes entries).
    /// Without one, every registry request is refused (401).
    #[arg(long, env = "MISSIONCTL_TOKENS")]
    pub tokens: Option<PathBuf>,
    /// How often running canaries are evaluated.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub rollout_interval: Duration,
    /// How long the canary controller lease lasts unrenewed: with several
    /// replicas on one database, one holds it and acts on rollouts; if it
    /// dies, another takes over within this.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_ttl: Duration,
    /// How often each replica checks the store for commits and rollout
    /// steps another replica recorded.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub follow_interval: Duration,
    /// How long a client may take to send a request head (and the longest
    /// a kept-alive connection may sit idle).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// How long a client may take to send a request body.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,
    /// The GitHub repository (`owner/name`) whose push webhooks are acted on;
    /// pushes to any other are ignored. Default: from a github.com `--repo` URL.
    #[arg(long, value_name = "OWNER/NAME")]
    pub github_repo: Option<String>,
    /// Console single sign-on (OpenID Connect) configuration: issuer,
    /// client_id, client_secret_env (the variable holding the secret),
    /// redirect_url and the groups' roles (see the console chapter).
    #[arg(long, env = "MISSIONCTL_CONSOLE_SSO", value_name = "FILE")]
    pub console_sso: Option<PathBuf>,
    /// Print no one-time console login link, even on loopback.
    #[arg(long)]
    pub no_login_link: bool,
}

pub fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = missionctl::runtime()?;
    rt.block_on(async {
        let store = Store::connect(&a.common.db_url()?).await?;
        let cfg = DaemonConfig {
            source: a.common.source(),
            store,
            poll: a.poll_interval,
            webhook_secret: std::env::var("MISSIONCTL_WEBHOOK_SECRET")
                .ok()
                .filter(|s| !s.is_empty()),
            options: Options {
                notes: a.notes,
                acknowledge: false,
            },
            debounce: Duration::from_millis(50),
            max_wait: Duration::from_millis(500),
            timeouts: missionctl::http::Timeouts {
                header: a.header_timeout,
                body: a.body_timeout,
            },
            github_repo: a.github_repo.clone(),
        };
        if let Some(why) = cfg.source.checked_out() {
            anyhow::bail!("cannot serve this repository: {why}");
        }
        super::note(
            "tokens",
            &a.tokens
                .as_ref()
                .map_or("none (every registry request is refused)".into(), |p| {
                    p.display().to_string()
                }),
        );
        let tokens = match &a.tokens {
            Some(p) => Tokens::load(p)?,
            None => {
                eprintln!(
                    "warning: no --tokens file: every registry request will be refused (401)"
                );
                Tokens::default()
            }
        };
        let console_keys =
            missionctl::console::session::Keys::from_env().map_err(anyhow::Error::msg)?;
        let sso = a
            .console_sso
            .as_deref()
            .map(missionctl::console::sso::Sso::load)
            .transpose()?;
        let listener = tokio::net::TcpListener::bind(a.listen).await?;
        eprintln!(
            "missionctl serve: reconciling {} ({}) on http://{}",
            cfg.source.key,
            cfg.source.branch,
            listener.local_addr()?
        );
        let addr = listener.local_addr()?;
        eprintln!(
            "missionctl serve: the fleet console is at http://{addr}/ui/ (sign in with a viewer or admin token{})",
            if sso.is_some() { " or single sign-on" } else { "" }
        );
        // The personal tier: whoever can read this terminal may sign in
        // once, as an admin. Printed here only, once; never logged.
        let link = (addr.ip().is_loopback() && !a.no_login_link).then(|| {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let (code, link) = missionctl::console::signin::OneTimeLink::new(now);
            eprintln!(
                "missionctl serve: sign in to the console once with http://{addr}/ui/login/link/{code} (single use, expires in {} minutes)",
                missionctl::console::signin::LINK_TTL_SECONDS / 60
            );
            link
        });
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            // Every Ctrl-C cancels; the token remembers, so one during a pass is not lost.
            while tokio::signal::ctrl_c().await.is_ok() {
                stop.cancel();
            }
        });
        missionctl::server::run(
            missionctl::server::ServeConfig {
                daemon: cfg,
                tokens,
                listener,
                rollout_interval: a.rollout_interval,
                lease_ttl: a.lease_ttl,
                follow_interval: a.follow_interval,
                console: missionctl::console::Settings {
                    keys: console_keys,
                    sso,
                    link,
                },
            },
            shutdown,
        )
        .await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub common: Common,
    /// The pack to roll back.
    #[arg(long)]
    pub pack: String,
    /// The version to restore (default: the previous version on the branch).
    #[arg(long)]
    pub to: Option<String>,
    /// Why: recorded in the revert commit's message and the decision.
    #[arg(long, default_value = "manual rollback")]
    pub reason: String,
    /// Commit onto the branch itself and push it.
    #[arg(long, conflicts_with = "to_branch")]
    pub push: bool,
    /// Commit onto a new branch for review instead.
    #[arg(long = "to-branch", value_name = "NAME")]
    pub to_branch: Option<String>,
}

pub fn rollback(a: RollbackArgs) -> anyhow::Result<ExitCode> {
    let target = match (&a.to_branch, a.push) {
        (Some(b), _) => Target::Branch(b.clone()),
        (None, true) => Target::Push,
        (None, false) => anyhow::bail!(
            "say where the revert goes: --push (onto the branch) or --to-branch NAME (for review)"
        ),
    };
    if let Some(why) = missionctl::model::reason_problem(&a.reason) {
        anyhow::bail!("--reason: {why}");
    }
    let out = rollback::rollback(
        &a.common.source(),
        &a.pack,
        a.to.as_deref(),
        &a.reason,
        &target,
    )?;
    outln!(
        "rolled back {} from {} to {} (content of {:.8}) in commit {:.8} on {}",
        out.pack_id,
        out.from_version,
        out.to_version,
        out.restored_from_commit,
        out.commit,
        out.branch
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct DecisionsArgs {
    /// State store: sqlite://PATH or postgres://USER@HOST/DB; see --help for the default.
    #[arg(long, long_help = super::DB_HELP)]
    pub db: Option<String>,
    /// The pack repository whose mission.yaml names the store (default: the one the
    /// current directory is in, found upwards as git does).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Only this pack's decisions (its id, e.g. hr-ops-pack).
    #[arg(long)]
    pub pack: Option<String>,
    /// `human`: a table; `json`: every decision as a JSON array.
    #[arg(long, value_enum, default_value = "human")]
    pub format: OutFormat,
}

pub fn decisions(a: DecisionsArgs) -> anyhow::Result<ExitCode> {
    let root = super::repo_root(a.repo.as_deref());
    let url = super::db_url_was_default(a.db.as_deref(), Some(&root))?;
    let rt = missionctl::runtime()?;
    let list: Vec<Decision> = rt.block_on(async {
        let store = Store::connect(&url).await?;
        anyhow::Ok(store.decisions(a.pack.as_deref()).await?)
    })?;
    match a.format {
        OutFormat::Json => outln!("{}", serde_json::to_string_pretty(&list)?),
        OutFormat::Human => {
            outln!(
                "{:<20} {:<8} {:<30} {:<26} {:<26} {:<10} REASON",
                "WHEN",
                "DECISION",
                "PACK",
                "CHAMPION",
                "CHALLENGER",
                "COMMIT"
            );
            for d in &list {
                outln!(
                    "{:<20} {:<8} {:<30} {:<26} {:<26} {:<10} {}",
                    d.created_at.get(..19).unwrap_or(&d.created_at),
                    d.decision,
                    d.pack_id,
                    d.champion_pack_version.as_deref().unwrap_or("-"),
                    d.challenger_pack_version,
                    d.commit.get(..8).unwrap_or(&d.commit),
                    d.reason
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// State store: sqlite://PATH or postgres://USER@HOST/DB; see --help for the default.
    #[arg(long, long_help = super::DB_HELP)]
    pub db: Option<String>,
    /// The pack repository whose mission.yaml names the store (default: the one the
    /// current directory is in, found upwards as git does).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Include finished rollouts.
    #[arg(long)]
    pub all: bool,
    /// `human`: each rollout with its arms' figures; `json`: the same as a JSON array.
    #[arg(long, value_enum, default_value = "human")]
    pub format: OutFormat,
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{:.1}%", x * 100.0))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.0}"))
}

/// What became of a rollback's revert, in one line for `status`.
fn revert_line(e: &missionctl::model::Effect) -> String {
    use missionctl::model::{EffectState, GitOutcome};
    match (&e.state, &e.result, &e.last_error) {
        (
            EffectState::Done,
            Some(GitOutcome::Reverted {
                revert_commit,
                branch,
            }),
            _,
        ) => {
            format!("git: revert {revert_commit:.8} on {branch}")
        }
        (EffectState::Done, Some(GitOutcome::NotNeeded { revert_not_needed }), _) => {
            format!("git: no revert needed ({revert_not_needed})")
        }
        (EffectState::Done, _, _) => "git: done".into(),
        (EffectState::Pending, _, Some(err)) => format!(
            "git: REVERT NOT WRITTEN after {} attempt(s): {err}; retrying at {} (the registry serves the champion meanwhile)",
            e.attempts, e.next_attempt_at
        ),
        (EffectState::Pending, _, None) => "git: revert pending".into(),
    }
}

pub fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let root = super::repo_root(a.repo.as_deref());
    let url = super::db_url_was_default(a.db.as_deref(), Some(&root))?;
    let rt = missionctl::runtime()?;
    let (list, refused) = rt.block_on(async {
        let store = Store::connect(&url).await?;
        let list = controller::status(&store, a.all).await?;
        // Rows a harness sent for a tenant its token is not for (a Gateway
        // hosting two tenants): refused at ingest, shown here so the loss
        // is not only in the harness's log.
        let since = missionctl::time_util::days_ago_rfc3339(1);
        anyhow::Ok((list, store.refused_telemetry(&since).await?))
    })?;
    match a.format {
        OutFormat::Json => outln!("{}", serde_json::to_string_pretty(&list)?),
        OutFormat::Human => {
            if list.is_empty() {
                outln!("no rollouts in progress");
            }
            for t in &refused {
                outln!(
                    "telemetry REFUSED in the last 24 h: token `{}` sent rows outside its tenant in {} batch(es), last at {}: {} (one Gateway per tenant, or one token per tenant's agents)",
                    t.token,
                    t.batches,
                    t.last_at,
                    t.last_detail
                );
            }
            for r in &list {
                outln!(
                    "{}  {}  {} -> {}  at {}%  next {}",
                    r.pack_id,
                    r.state,
                    r.champion_version.as_deref().unwrap_or("-"),
                    r.canary_version,
                    r.percent,
                    r.next_step.map_or("-".to_string(), |n| format!("{n}%"))
                );
                outln!(
                    "    {:<9} {:>6} {:>9} {:>9} {:>8} {:>8} {:>12}  ({})",
                    "ARM",
                    "RUNS",
                    "SUCCESS",
                    "ERRORS",
                    "P50 MS",
                    "P95 MS",
                    "COST/RUN",
                    r.figures_from
                );
                for (arm, k) in [("champion", &r.champion), ("canary", &r.canary)] {
                    outln!(
                        "    {:<9} {:>6} {:>9} {:>9} {:>8} {:>8} {:>12}",
                        arm,
                        k.runs,
                        pct(k.success_rate),
                        pct(k.error_rate),
                        ms(k.latency_p50_ms),
                        ms(k.latency_p95_ms),
                        k.cost_per_run_usd
                            .map_or("-".into(), |c| format!("${c:.4}"))
                    );
                }
                if let Some(d) = &r.detail {
                    outln!("    {}", d.why);
                    for h in &d.history {
                        let sprt = h.figures.sprt.map_or(String::new(), |t| {
                            format!(
                                "; SPRT LLR {:.2} (advance at <= {:.2}, roll back at >= {:.2})",
                                t.llr, t.lower, t.upper
                            )
                        });
                        outln!(
                            "    step {:>3}%: {} at {}: champion {} runs, {} success; canary {} runs, {} success, p95 {} ms{sprt}",
                            h.percent,
                            h.outcome,
                            h.ended_at,
                            h.figures.champion.runs,
                            pct(h.figures.champion.success_rate),
                            h.figures.canary.runs,
                            pct(h.figures.canary.success_rate),
                            ms(h.figures.canary.latency_p95_ms),
                        );
                    }
                }
                if let Some(e) = &r.revert {
                    outln!("    {}", revert_line(e));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct IngestArgs {
    /// NDJSON, a JSON array, or one JSON object of run_telemetry records.
    pub file: PathBuf,
    #[command(flatten)]
    pub common: Common,
    /// Accept only rows of this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
}

pub fn ingest(a: IngestArgs) -> anyhow::Result<ExitCode> {
    let body = std::fs::read_to_string(&a.file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", a.file.display()))?;
    let rt = missionctl::runtime()?;
    let rep = rt.block_on(async {
        let store = Store::connect(&a.common.db_url()?).await?;
        // Attribute rows to rollout arms as the registry would.
        let reg = Registry::new(store.clone(), a.common.source(), Tokens::default(), None);
        let _ = reg.refresh().await;
        let snap = reg.snapshot.load_full();
        let scope = missionctl::telemetry::TenantScope(a.tenant.clone());
        anyhow::Ok(
            missionctl::registry::ingest::ingest(&store, &body, &scope, &|row| snap.attribute(row))
                .await?,
        )
    })?;
    outln!("{}", serde_json::to_string_pretty(&rep)?);
    Ok(if rep.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    /// The token's name: shown in the audit log and on every request it makes (unique in the file).
    #[arg(long)]
    pub name: String,
    /// What the token may do: harness (resolve, report runs), viewer (resolve, read), admin (everything).
    #[arg(long, value_parser = ["harness", "viewer", "admin"])]
    pub role: String,
    /// Limit to one tenant (or user:<id> for a personal user).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Append the entry to this tokens file (created with its `tokens:` key when missing)
    /// instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,
}

pub fn token(a: TokenArgs) -> anyhow::Result<ExitCode> {
    use missionctl::registry::auth;
    if !auth::valid_name(&a.name) {
        anyhow::bail!(
            "--name `{}`: a token name is 1 to 64 letters, digits, `.`, `_` or `-` (it is shown in the audit log); choose another",
            a.name
        );
    }
    if let Some(t) = a.tenant.as_deref().filter(|t| !auth::valid_tenant(t)) {
        anyhow::bail!(
            "--tenant `{t}`: a tenant is an id (letters, digits, `.`, `_`, `-`) or user:<id>; omit --tenant for a token of every tenant"
        );
    }
    let t = auth::generate();
    let entry = auth::entry(&a.name, &a.role, a.tenant.as_deref(), &t);
    if let Some(file) = &a.tokens_file {
        auth::append(file, &a.name, &entry)?;
        outln!("{t}");
        eprintln!(
            "Added `{}` to {} (it holds only the hash); give the line above to the client. \
             A running `serve --tokens {}` reads the file at start: restart it.",
            a.name,
            file.display(),
            file.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{t}");
    // YAML comments: what is printed on stderr is a complete tokens file.
    eprintln!(
        "# A tokens file with this token's entry (it holds only the hash); give the line on stdout to the client.\n\
         # Save it as e.g. tokens.yaml, or add the entry to an existing file with \
         `missionctl token new --tokens-file FILE`."
    );
    eprint!("{}", auth::file_with(&entry));
    Ok(ExitCode::SUCCESS)
}
