//! `missionctl github report`

use std::path::PathBuf;
use std::process::ExitCode;

use missionctl::github;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Post the gate's evidence: a sticky pull-request comment, a check run with
    /// annotations (or a commit status), the job summary and step outputs.
    #[command(
        after_help = "Examples:\n  missionctl github report --evidence evidence --pr 12 --sha \"$HEAD_SHA\""
    )]
    Report {
        /// The directory `missionctl gate --out` wrote.
        #[arg(long)]
        evidence: PathBuf,
        /// Pull request number (default: from the GitHub event).
        #[arg(long)]
        pr: Option<u64>,
        /// Commit for the check run (default: the evidence's head commit).
        #[arg(long)]
        sha: Option<String>,
        /// owner/name (default: GITHUB_REPOSITORY).
        #[arg(long)]
        repository: Option<String>,
        /// The check run's name (match the branch protection's required check).
        #[arg(long, default_value = "missionctl/gate")]
        check_name: String,
    },
    /// The trusted gate (run from a `workflow_run` job in the base
    /// repository): read the pull request from the API, fetch its head as git
    /// objects (never checked out), evaluate it against the merge base with
    /// the base revision's configuration, compute approvals, and post the
    /// verdict. Nothing the pull request's own run produced is believed.
    #[command(
        after_help = "Examples:\n  missionctl github verdict --sha \"$HEAD_SHA\" --pr-hint evidence/pr-number"
    )]
    Verdict(Trusted),
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    let (evidence, pr, sha, repository, check_name) = match c {
        Command::Report {
            evidence,
            pr,
            sha,
            repository,
            check_name,
        } => (evidence, pr, sha, repository, check_name),
        Command::Verdict(t) => return verdict(t),
    };
    let (ev, md) = github::report::load(&evidence)?;
    let event = github::event::from_env().map_err(|e| anyhow::anyhow!(e))?;
    let pr = pr.or_else(|| event.as_ref().and_then(|e| e.pr));
    let sha = sha
        .or_else(|| Some(ev.head_commit.clone()).filter(|s| !s.is_empty()))
        .or_else(|| event.as_ref().and_then(|e| e.head_sha.clone()));
    let rt = missionctl::runtime()?;
    let outcome = rt.block_on(async {
        let repo = repository.or_else(|| event.as_ref().and_then(|e| e.repository.clone()));
        let gh = github::Gh::from_env(repo.as_deref()).await?;
        anyhow::Ok(github::report::post(&gh, &ev, &md, pr, sha.as_deref(), &check_name).await?)
    })?;
    if let Err(e) = github::report::actions_outputs(&ev, &md, &evidence) {
        eprintln!("warning: cannot write the job summary or outputs: {e}");
    }
    outln!("{}", serde_json::to_string(&outcome)?);
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct Trusted {
    /// The checkout of the base repository (trusted: its configuration is used).
    /// (default: the repository the current directory is in, found upwards as git does).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// The head commit the gate ran on (default: the event's `head_sha`).
    #[arg(long)]
    pub sha: Option<String>,
    /// Pull request number (default: the event's). Checked against the API.
    #[arg(long)]
    pub pr: Option<u64>,
    /// A file holding a pull request number from the untrusted run (its
    /// artifact): used only when the event names none, and only if the
    /// API says that pull request's head is `--sha`.
    #[arg(long)]
    pub pr_hint: Option<PathBuf>,
    /// Where to write the trusted evidence.
    #[arg(long, default_value = "missionctl-verdict")]
    pub out: PathBuf,
    /// State store URL (sqlite://PATH or postgres://...); see --help for the default.
    #[arg(long, long_help = super::DB_HELP)]
    pub db: Option<String>,
    /// owner/name (default: GITHUB_REPOSITORY).
    #[arg(long)]
    pub repository: Option<String>,
    /// The check run's name (default: the base's mission.yaml
    /// `github.check_name`, else missionctl/gate).
    #[arg(long)]
    pub check_name: Option<String>,
    /// Judge a merge group instead of a pull request: its temporary branch
    /// (`gh-readonly-queue/<base>/pr-<N>-<sha>`; default: the event's, when
    /// a merge group started the gate run). Pull request N is judged on
    /// its own and the group's content as a whole, both with the queue
    /// base's rules; the check goes on the group's head commit.
    #[arg(long, value_name = "REF")]
    pub merge_group: Option<String>,
}

fn verdict(t: Trusted) -> anyhow::Result<ExitCode> {
    use github::trusted;
    let event = github::event::from_env().map_err(|e| anyhow::anyhow!(e))?;
    let repo = super::repo_root(t.repo.as_deref());
    let sha = t
        .sha
        .clone()
        .or_else(|| event.as_ref().and_then(|e| e.head_sha.clone()))
        .ok_or_else(|| anyhow::anyhow!("--sha is required outside a workflow_run event"))?;
    let repository = t
        .repository
        .clone()
        .or_else(|| event.as_ref().and_then(|e| e.repository.clone()));
    let queue = t
        .merge_group
        .clone()
        .or_else(|| event.as_ref().and_then(|e| e.queue_ref.clone()));
    if let Some(queue) = queue {
        let ctx = Context::new(&t, &repo, repository.as_deref())?;
        return merge_group(&t, &repo, &ctx, &queue, &sha);
    }
    // GitHub leaves `workflow_run.pull_requests` empty for forks: then the
    // untrusted run's artifact may name the pull request, and the API decides.
    let hint = t
        .pr_hint
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| trusted::pr_hint(&s));
    let pr =
        t.pr.or_else(|| event.as_ref().and_then(|e| e.pr))
            .or(hint)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no pull request: pass --pr, or --pr-hint with the gate run's pr-number"
                )
            })?;
    let ctx = Context::new(&t, &repo, repository.as_deref())?;
    let Context {
        rt,
        gh,
        check_name,
        fork_paid_evals,
    } = ctx;
    let facts = rt.block_on(trusted::pull_facts(&gh, pr))?;
    if facts.head_sha != sha {
        anyhow::bail!(
            "pull request #{pr}'s head is {}, not {sha}: nothing is posted (a newer push gets its own run)",
            facts.head_sha
        );
    }
    if let Some(why) = facts.not_judged() {
        // No verdict, and no check named `--check-name` either: a neutral or
        // any other conclusion there would count for this commit everywhere.
        if facts.open {
            not_judged(&rt, &gh, &sha, &check_name, &why);
        }
        outln!("not judged: {why}");
        return Ok(ExitCode::SUCCESS);
    }
    let fetched = missionctl::git::fetch_pull_head(&repo, pr)?;
    if fetched.to_string() != sha {
        anyhow::bail!(
            "refs/pull/{pr}/head on origin is {fetched}, not {sha}: nothing is posted (a newer push gets its own run)"
        );
    }
    let base = rules_base(&repo, &facts);
    let opts = missionctl::gate::GateOptions {
        repo: repo.clone(),
        base,
        head: sha.clone(),
        out: Some(t.out.clone()),
        db_url: super::db_url(t.db.as_deref(), Some(&repo))?,
        skip_paid_calls: !(facts.paid_calls_allowed() || fork_paid_evals),
        progress: missionctl::gate::Progress::Off,
        spend_limit_usd: None,
        store: None,
    };
    let github = (gh, pr);
    let ev = match rt.block_on(super::gate::evaluate_and_conclude(&opts, Some(&github))) {
        Ok(ev) => ev,
        Err(e) => {
            eprintln!("error: could not evaluate: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let md = missionctl::gate::render_markdown(&ev);
    out!("{md}");
    let (gh, pr) = github;
    let outcome = rt.block_on(github::report::post(
        &gh,
        &ev,
        &md,
        Some(pr),
        Some(&sha),
        &check_name,
    ))?;
    if let Err(e) = github::report::actions_outputs(&ev, &md, &t.out) {
        eprintln!("warning: cannot write the job summary or outputs: {e}");
    }
    outln!("{}", serde_json::to_string(&outcome)?);
    Ok(ExitCode::SUCCESS)
}

/// What every trusted verdict needs: the runtime, the API client, and what
/// the trusted checkout's (the base branch's) mission.yaml says.
struct Context {
    rt: tokio::runtime::Runtime,
    gh: github::Gh,
    check_name: String,
    fork_paid_evals: bool,
}

impl Context {
    fn new(
        t: &Trusted,
        repo: &std::path::Path,
        repository: Option<&str>,
    ) -> anyhow::Result<Context> {
        let mission = missionctl::pack::mission(&missionctl::git::Tree::work_tree_lazy(repo));
        let check_name = t
            .check_name
            .clone()
            .or_else(|| {
                mission
                    .as_ref()
                    .and_then(|m| m.check_name().map(String::from))
            })
            .unwrap_or_else(|| "missionctl/gate".into());
        let fork_paid_evals = mission
            .as_ref()
            .is_some_and(missionctl::pack::Mission::fork_paid_evals);
        let rt = missionctl::runtime()?;
        let gh = rt.block_on(github::Gh::from_env(repository))?;
        Ok(Context {
            rt,
            gh,
            check_name,
            fork_paid_evals,
        })
    }
}

/// A neutral `<check> (not judged)` check saying why; never the gate's own
/// check name, whose any conclusion would count for this commit everywhere.
fn not_judged(rt: &tokio::runtime::Runtime, gh: &github::Gh, sha: &str, check: &str, why: &str) {
    let posted = rt.block_on(github::report::post_not_judged(
        gh,
        sha,
        &format!("{check} (not judged)"),
        why,
    ));
    if let Err(e) = posted {
        eprintln!("warning: the not-judged check could not be posted: {e}");
    }
}

/// The revision the rules come from: the base branch's tip. The trusted
/// checkout's own branch when it has it (the workflow checks out the default
/// branch), else the commit the API names, else the remote-tracking branch.
fn rules_base(repo: &std::path::Path, facts: &github::trusted::PullFacts) -> String {
    let local = format!("refs/heads/{}", facts.base_ref);
    if missionctl::git::open(repo)
        .and_then(|g| g.resolve(&local))
        .is_ok()
    {
        local
    } else {
        facts
            .base_sha
            .clone()
            .unwrap_or_else(|| format!("origin/{}", facts.base_ref))
    }
}

/// The merge queue's trusted verdict. GitHub runs the gate workflow for a
/// merge group from the group's own commit, which the queued pull requests
/// wrote: that run holds no secret and decides nothing. This job (from the
/// default branch's report workflow) judges the group with the queue base's
/// rules:
/// - which pull requests it holds: the queue's other group branches on
///   origin that are in its history (the ones queued ahead), then pull
///   request N, whose head merged onto the entry before it must give the
///   group's own tree (else nothing is posted);
/// - each of them on its own (its head, its reviews), as its pull request's
///   verdict would be now;
/// - the group's content as a whole (fetched as data) against the base;
///
/// then posts the check on the group's head commit. Paid model calls run
/// only when every pull request in the group may have them.
fn merge_group(
    t: &Trusted,
    repo: &std::path::Path,
    ctx: &Context,
    queue: &str,
    sha: &str,
) -> anyhow::Result<ExitCode> {
    use github::trusted;
    use missionctl::git::CommitId;
    use missionctl::model::Verdict;
    let q = trusted::parse_queue_ref(queue).map_err(anyhow::Error::msg)?;
    let Context {
        rt,
        gh,
        check_name,
        fork_paid_evals,
    } = ctx;
    let group_head = missionctl::git::fetch_queue_head(repo, &q.refname, q.pr)?.to_string();
    if group_head != sha {
        anyhow::bail!(
            "{} on origin is {group_head}, not {sha}: nothing is posted (a rebuilt group gets its own run)",
            q.refname
        );
    }
    let group: CommitId = sha.parse()?;
    // The pull requests queued ahead: the queue's other branches in this
    // group's history, oldest first.
    let git = missionctl::git::open(repo)?;
    let prefix = format!("refs/heads/gh-readonly-queue/{}/", q.base);
    let mut ahead: Vec<(u64, CommitId)> = missionctl::git::remote_branches(repo, &prefix)?
        .into_iter()
        .filter_map(|(name, id)| {
            let r = trusted::parse_queue_ref(&name).ok()?;
            (r.pr != q.pr && id != group && git.holds_ancestor(group, id)).then_some((r.pr, id))
        })
        .collect();
    let ids: Vec<CommitId> = ahead.iter().map(|(_, id)| *id).collect();
    ahead.sort_by_cached_key(|(_, id)| {
        ids.iter()
            .filter(|o| *o != id && git.holds_ancestor(*id, **o))
            .count()
    });
    let mut pulls = Vec::new();
    for pr in ahead.iter().map(|(pr, _)| *pr).chain([q.pr]) {
        let facts = rt.block_on(trusted::pull_facts(gh, pr))?;
        if facts.base_ref != q.base {
            anyhow::bail!(
                "merge group {queue} is for `{}`, but pull request #{pr} in it is based on `{}`: nothing is posted",
                q.base,
                facts.base_ref
            );
        }
        if let Some(why) = facts.not_judged() {
            not_judged(rt, gh, sha, check_name, &why);
            outln!("not judged: {why}");
            return Ok(ExitCode::SUCCESS);
        }
        let head = missionctl::git::fetch_pull_head(repo, pr)?.to_string();
        if head != facts.head_sha {
            anyhow::bail!(
                "refs/pull/{pr}/head on origin is {head}, not {}: nothing is posted",
                facts.head_sha
            );
        }
        pulls.push(facts);
    }
    let base = rules_base(repo, pulls.last().expect("pull request N"));
    // The group is the entry before it plus pull request N, nothing else.
    let before = match ahead.last() {
        Some((_, id)) => *id,
        None => git.merge_base(git.resolve(&base)?, group)?,
    };
    let own: CommitId = pulls.last().expect("pull request N").head_sha.parse()?;
    if !git.merges_to(before, own, group)? {
        anyhow::bail!(
            "merge group {queue} ({sha}) is not pull request #{}'s head ({own}) merged onto {before} (the base or the group queued ahead): nothing is posted",
            q.pr
        );
    }
    drop(git);
    let skip_paid_calls =
        !(*fork_paid_evals || pulls.iter().all(trusted::PullFacts::paid_calls_allowed));
    let db_url = super::db_url(t.db.as_deref(), Some(repo))?;
    let opts = |head: &str, out: String| missionctl::gate::GateOptions {
        repo: repo.to_path_buf(),
        base: base.clone(),
        head: head.to_string(),
        out: Some(t.out.join(out)),
        db_url: db_url.clone(),
        skip_paid_calls,
        progress: missionctl::gate::Progress::Off,
        spend_limit_usd: None,
        store: None,
    };
    let evaluated = rt.block_on(async {
        let mut each = Vec::new();
        for p in &pulls {
            let github = (gh.clone(), p.number);
            let o = opts(&p.head_sha, format!("pull-{}", p.number));
            each.push(super::gate::evaluate_and_conclude(&o, Some(&github)).await?);
        }
        let group = super::gate::evaluate_and_conclude(&opts(sha, "group".into()), None).await?;
        Ok::<_, missionctl::gate::GateError>((each, group))
    });
    let (each, mut group_ev) = match evaluated {
        Ok(both) => both,
        Err(e) => {
            eprintln!("error: could not evaluate: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let pull_verdict = trusted::worst(each.iter().map(|e| e.verdict));
    let verdict = trusted::queue_verdict(pull_verdict, group_ev.verdict);
    let mut md = format!(
        "{}: merge group for pull request #{} into `{}`\n",
        verdict.as_str(),
        q.pr,
        q.base
    );
    for (p, e) in pulls.iter().zip(&each) {
        md.push_str(&format!(
            "\n## Pull request #{} on its own\n\n{}\n",
            p.number,
            missionctl::gate::render_markdown(e)
        ));
    }
    md.push_str(&format!(
        "\n## The group as a whole (the base, the pull requests queued ahead, #{})\n\n{}",
        q.pr,
        missionctl::gate::render_markdown(&group_ev)
    ));
    group_ev.verdict = verdict;
    group_ev.blocked = verdict != Verdict::Pass;
    out!("{md}");
    // The check only: each pull request's comment is its own verdict's.
    let outcome = rt.block_on(github::report::post(
        gh,
        &group_ev,
        &md,
        None,
        Some(sha),
        check_name,
    ))?;
    outln!("{}", serde_json::to_string(&outcome)?);
    Ok(ExitCode::SUCCESS)
}
