//! The run itself: signal, propose, select, publish, record.

use std::collections::BTreeMap;

use crate::eval::EvalConfig;
use crate::gate::{self};
use crate::git::{self, CommitId, Tree};
use crate::model::{StopReason, Variant, VoiceProfile};
use crate::pack::{self, PackDoc};
use crate::store::{ImproveRow, Store};

use super::report::{Calls, Caps, Report};
use super::select::{self};
use super::{
    ImproveError, ImproveOptions, Publish, Settings, candidates, propose, publish, signal, split,
};

/// Everything fixed for the run.
pub(super) struct Ctx<'a> {
    pub opts: &'a ImproveOptions,
    pub store: Store,
    pub git_lock: std::sync::Mutex<git::Repo>,
    pub base_commit: CommitId,
    pub champion: PackDoc,
    pub champion_files: BTreeMap<String, String>,
    pub champion_voice: VoiceProfile,
    /// The pack repository at `base_commit`, loaded once.
    pub base_repo: pack::Repo,
    pub cfg: EvalConfig,
    pub settings: Settings,
}

impl Ctx<'_> {
    pub fn say(&self, line: &str) {
        if let Some(f) = &self.opts.on_step {
            f(line);
        }
    }

    /// What the run may still spend: the tenant's daily cap left (from the
    /// ledger, so the gate's and earlier runs' spending counts) and the
    /// run's own budget left.
    pub async fn left(&self, r: &Report) -> Result<f64, ImproveError> {
        let today = crate::time_util::today();
        let spent = self.store.spend_on(&r.tenant, &today).await?;
        let daily = r.caps.daily_cap_usd - spent;
        let run = r
            .caps
            .run_budget_usd
            .map_or(f64::INFINITY, |b| b - r.spend_usd);
        Ok(daily.min(run))
    }

    /// The spend cap that binds now, named with its figures: the tenant's
    /// daily cap or this run's budget, whichever leaves less.
    pub async fn binding_cap(&self, r: &Report) -> Result<String, ImproveError> {
        let today = crate::time_util::today();
        let spent = self.store.spend_on(&r.tenant, &today).await?;
        let daily = r.caps.daily_cap_usd - spent;
        let run = r
            .caps
            .run_budget_usd
            .map_or(f64::INFINITY, |b| b - r.spend_usd);
        Ok(if daily <= run {
            format!(
                "tenant `{}`'s max_optimization_spend_per_day (${:.2}, ${:.4} left today; policies/guardrails.yaml)",
                r.tenant,
                r.caps.daily_cap_usd,
                daily.max(0.0)
            )
        } else {
            format!(
                "this run's budget (${:.4}, the lower of tier {}'s max_optimization_spend_per_run and --budget-usd; ${:.4} left)",
                r.caps.run_budget_usd.unwrap_or(0.0),
                r.caps.tier,
                run.max(0.0)
            )
        })
    }
}

/// Run one improvement: see the module documentation of [`super`].
/// The run is recorded in the state store whatever happens; a failed
/// record is an error.
pub async fn run(opts: &ImproveOptions) -> Result<Report, ImproveError> {
    let started_at = crate::time_util::now_rfc3339();
    let run_id = crate::gate::short_id(&[
        &started_at,
        &opts.pack_id,
        &opts.base,
        &std::process::id().to_string(),
    ]);
    let (repo, base) = (opts.repo.clone(), opts.base.clone());
    let (g, base_commit, champion_repo, tree) = tokio::task::spawn_blocking(move || {
        let g = git::open(&repo)?;
        let c = g.resolve(&base)?;
        let tree = Tree::at_rev(&repo, &c.to_string())?;
        let loaded = pack::load(&tree);
        Ok::<_, crate::git::GitError>((g, c, loaded, tree))
    })
    .await
    .map_err(|e| ImproveError::Usage(format!("loading failed: {e}")))??;
    let champion = champion_repo.pack(&opts.pack_id).cloned().ok_or_else(|| {
        ImproveError::Usage(format!(
            "`{}` has no pack `{}`; `missionctl packs list --repo {}` shows the ids",
            opts.base,
            opts.pack_id,
            opts.repo.display()
        ))
    })?;
    let mission = champion_repo
        .mission
        .as_ref()
        .ok_or_else(|| ImproveError::Usage(format!("`{}` has no valid mission.yaml", opts.base)))?;
    let guard = champion_repo
        .guardrails
        .as_ref()
        .ok_or_else(|| {
            ImproveError::Usage(format!(
                "`{}` has no valid policies/guardrails.yaml",
                opts.base
            ))
        })?
        .value
        .clone();
    let tier = champion.pack.tier.unwrap_or(mission.value.tier);
    let preset = champion_repo
        .tiers
        .as_ref()
        .map(|t| t.value.get(tier).clone());
    let cfg = EvalConfig::from_mission(&mission.value.eval)?;
    let settings = Settings::from_mission(&mission.value.improve)?;
    let tenant = super::tenant_of(&champion);
    let max_candidates = [
        Some(guard.max_candidates_per_run),
        preset.as_ref().and_then(|p| p.max_candidates_per_run),
        opts.max_candidates,
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(0);
    let max_candidates_from = [
        Some(format!("guardrails.yaml {}", guard.max_candidates_per_run)),
        preset
            .as_ref()
            .and_then(|p| p.max_candidates_per_run)
            .map(|n| format!("tier {tier} {n}")),
        opts.max_candidates.map(|n| format!("--max-candidates {n}")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    let run_budget = [
        preset
            .as_ref()
            .and_then(|p| p.max_optimization_spend_per_run),
        opts.budget_usd,
    ]
    .into_iter()
    .flatten()
    .reduce(f64::min);
    let daily_cap = guard
        .max_optimization_spend_per_day
        .tenants
        .get(&tenant)
        .copied()
        .unwrap_or(guard.max_optimization_spend_per_day.default);
    let store = match &opts.store {
        Some(s) => s.clone(),
        None => Store::connect(&opts.db_url).await?,
    };
    let spent_today = store.spend_on(&tenant, &crate::time_util::today()).await?;
    let mut champion_files = BTreeMap::new();
    let tree_repo = tree.repo();
    for path in champion
        .sections
        .iter()
        .map(|s| s.file.as_str())
        .chain([champion.file.as_str()])
    {
        let bytes = tree
            .read(
                path,
                crate::pack::MAX_YAML_BYTES.max(crate::pack::MAX_PROMPT_BYTES),
                tree_repo.as_ref(),
            )
            .map_err(|e| ImproveError::Usage(format!("{path}: {e}")))?;
        champion_files.insert(
            path.to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        );
    }
    let mut r = Report {
        run_id,
        pack_id: champion.pack.id.clone(),
        tenant,
        champion_version: champion.pack.version.clone(),
        base: opts.base.clone(),
        base_commit: base_commit.to_string(),
        started_at,
        finished_at: String::new(),
        caps: Caps {
            tier: tier.to_string(),
            max_candidates,
            max_candidates_from: format!("the lowest of {max_candidates_from}"),
            daily_cap_usd: daily_cap,
            daily_left_usd: (daily_cap - spent_today).max(0.0),
            run_budget_usd: run_budget,
            max_prompt_growth_tokens: guard.max_prompt_growth_tokens,
            propose_partial_fixes: preset.as_ref().is_some_and(|p| p.propose_partial_fixes),
            supersede_open_proposals: preset.as_ref().is_some_and(|p| p.supersede_open_proposals),
        },
        failures: vec![],
        telemetry: None,
        validation: vec![],
        kpi_success_min: None,
        uncovered_task_types: vec![],
        chains: (0, 0),
        champion_scores: BTreeMap::new(),
        split: Default::default(),
        champion_feedback_score: None,
        champion_selection_score: None,
        validation_fix: false,
        candidates: vec![],
        stop: StopReason::NothingToFix,
        stop_detail: String::new(),
        winner: None,
        partial_fix: None,
        no_winner: None,
        branch: None,
        commit: None,
        pull_request: None,
        supersedes: None,
        published: None,
        spend_usd: 0.0,
        calls: Calls::default(),
        evidence_markdown: None,
    };
    // Main's validation errors in this pack's own files are part of the signal.
    let own: std::collections::BTreeSet<&str> = champion
        .sections
        .iter()
        .map(|s| s.file.as_str())
        .chain([champion.file.as_str()])
        .collect();
    r.validation = crate::validate::validate(&champion_repo, None)
        .iter()
        .filter(|d| {
            d.severity == crate::diagnostic::Severity::Error && own.contains(d.file.as_str())
        })
        .map(|d| format!("{}:{}: {} [{}]", d.file, d.line, d.message, d.code))
        .collect();
    r.kpi_success_min = champion
        .node
        .to_json()
        .pointer("/kpis/success_rate/min")
        .and_then(serde_json::Value::as_f64);
    let ctx = Ctx {
        opts,
        store: store.clone(),
        git_lock: std::sync::Mutex::new(g),
        base_commit,
        champion_voice: propose::voice_of(&champion),
        champion,
        champion_files,
        base_repo: champion_repo,
        cfg,
        settings,
    };
    let outcome = body(&ctx, &mut r).await;
    r.finished_at = crate::time_util::now_rfc3339();
    if let Err(e) = &outcome {
        r.stop = StopReason::Failed;
        r.stop_detail = format!("the run failed: {e}");
    }
    store
        .improve_record(&ImproveRow {
            run_id: r.run_id.clone(),
            pack_id: r.pack_id.clone(),
            tenant: r.tenant.clone(),
            champion_version: r.champion_version.clone(),
            base_commit: r.base_commit.clone(),
            started_at: r.started_at.clone(),
            finished_at: r.finished_at.clone(),
            stop: r.stop,
            candidates: r.candidates.len() as i64,
            spend_usd: r.spend_usd,
            branch: r.branch.clone(),
            pull_request: r.pull_request.as_ref().map(|p| p.url.clone()),
            report: serde_json::to_string(&r).unwrap_or_default(),
        })
        .await?;
    outcome.map(|()| r)
}

async fn body(ctx: &Ctx<'_>, r: &mut Report) -> Result<(), ImproveError> {
    // 1. Signal.
    ctx.say(&format!(
        "signal: evaluating {} {} on its cases (cached results are reused)",
        r.pack_id, r.champion_version
    ));
    // A run allowed no candidate has nothing to spend the signal on.
    if r.caps.max_candidates == 0 {
        r.stop = StopReason::CandidateCap;
        r.stop_detail = format!(
            "max_candidates_per_run is 0 ({}): nothing was evaluated or spent",
            r.caps.max_candidates_from
        );
        return Ok(());
    }
    let left = ctx.left(r).await?;
    if left <= 0.0 {
        r.stop = StopReason::SpendCap;
        r.stop_detail = format!(
            "nothing left to spend before the signal was read: {}",
            ctx.binding_cap(r).await?
        );
        return Ok(());
    }
    let base = gate::baseline(
        &ctx.base_repo,
        &ctx.base_commit.to_string(),
        &r.pack_id,
        &ctx.store,
        r.caps.run_budget_usd,
    )
    .await?;
    r.spend_usd += base.cost_usd;
    r.calls.evaluation += base.requests.0;
    r.calls.cache_hits += base.requests.1;
    r.calls.rollouts += base
        .done
        .iter()
        .filter(|d| !d.run.cached && d.run.error.is_none())
        .count() as u64;
    r.chains = base.chains;
    // A run the harness could not make is no signal: failing it as a case
    // would have the optimiser "fix" an unreachable endpoint.
    let errors: Vec<&str> = base
        .done
        .iter()
        .filter(|d| !d.unpaid)
        .filter_map(|d| d.run.error.as_deref())
        .collect();
    if let Some(first) = errors.first() {
        return Err(ImproveError::Harness {
            failed: errors.len(),
            runs: base.done.iter().filter(|d| !d.unpaid).count(),
            first: (*first).to_string(),
        });
    }
    r.champion_scores = select::case_scores(&base.results, Variant::Champion);
    r.failures = signal::feedback(&base.done, Variant::Champion);
    // GEPA's discipline: the feedback set the optimiser sees, and the
    // held-out selection set that decides.
    r.split = split::Split::new(
        &r.pack_id,
        &r.champion_scores.keys().cloned().collect(),
        &r.failures,
    );
    r.champion_feedback_score = split::mean_over(&r.champion_scores, &r.split.feedback);
    r.champion_selection_score = split::mean_over(&r.champion_scores, &r.split.selection);
    if !r.champion_scores.is_empty() {
        ctx.say(&format!("signal: {}", r.sets_line()));
    }
    let start = candidates::Start {
        passing: signal::passing(
            &base.done,
            Variant::Champion,
            |c| r.split.shown(c),
            ctx.settings.passing_examples,
        ),
        prompt: signal::prompt_of(
            &base.done,
            Variant::Champion,
            &r.failures
                .iter()
                .filter(|f| r.split.shown(&f.case_id))
                .cloned()
                .collect::<Vec<_>>(),
        ),
        contracts: signal::contracts(&base.done),
    };
    let since = crate::time_util::days_ago_rfc3339(ctx.settings.telemetry_window_days);
    let t = ctx
        .store
        .telemetry_signal(
            &r.pack_id,
            &r.champion_version,
            &since,
            ctx.settings.telemetry_window_days,
        )
        .await?;
    r.telemetry = (t.runs > 0).then_some(t);
    if let Some(t) = &r.telemetry {
        let min = r.kpi_success_min.unwrap_or(1.0);
        let covered: std::collections::BTreeSet<&str> = ctx
            .champion
            .cases
            .iter()
            .filter_map(|c| c.vars.get("task_type").and_then(serde_json::Value::as_str))
            .collect();
        r.uncovered_task_types = t
            .worst_task_types
            .iter()
            .filter(|(task, _, rate)| *rate + 1e-12 < min && !covered.contains(task.as_str()))
            .map(|(task, _, _)| task.clone())
            .collect();
    }
    if base.unpaid_calls > 0 {
        r.stop = StopReason::SpendCap;
        r.stop_detail = format!(
            "{} model call(s) for the champion's {} case runs could not be paid for within {}; the signal is incomplete",
            base.unpaid_calls,
            base.done.len(),
            ctx.binding_cap(r).await?
        );
        return Ok(());
    }
    // Main's validation errors in the pack's own prompt sections are in
    // scope: candidates are proposed for them even when every case passes.
    let fixable_validation = r.validation.iter().any(|v| {
        ctx.champion
            .sections
            .iter()
            .any(|s| v.starts_with(&format!("{}:", s.file)))
    });
    if r.failures.is_empty() && !fixable_validation {
        let mut outside = Vec::new();
        if !r.validation.is_empty() {
            outside.push(format!(
                "main fails validation for this pack ({} error(s), first: {})",
                r.validation.len(),
                r.validation[0]
            ));
        }
        if let Some(p) = r.production_shortfall() {
            outside.push(p);
        }
        if outside.is_empty() {
            r.stop = StopReason::NothingToFix;
            r.stop_detail = format!("every case passes on all {} evaluated chains", r.chains.1);
        } else {
            r.stop = StopReason::UncoveredFailures;
            r.stop_detail = format!(
                "every eval case passes on all {} evaluated chains, but {}; no eval case fails, so there is nothing to evaluate a candidate against",
                r.chains.1,
                outside.join("; ")
            );
        }
        return Ok(());
    }
    if r.failures.is_empty() {
        ctx.say(&format!(
            "signal: every case passes, but main fails validation in the pack's prompt sections: {}",
            r.validation.join("; ")
        ));
    }
    ctx.say(&format!(
        "signal: {} case(s) fail or score low: {}",
        r.failures.len(),
        r.failures
            .iter()
            .map(|f| f.case_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let demo = if ctx.settings.model.is_demo() {
        Some(
            crate::eval::demo_model::start_loopback()
                .await
                .map_err(ImproveError::Demo)?,
        )
    } else {
        None
    };
    let result = candidates::run(
        ctx,
        r,
        demo.as_ref().map(crate::eval::demo_model::DemoServer::url),
        start,
    )
    .await;
    if let Some(d) = demo {
        d.shutdown().await;
    }
    let mut evidence = result?;
    super::choose::choose(r);
    // The gate's own evidence for the candidate proposed.
    r.evidence_markdown = r.winner.and_then(|n| evidence.remove(&n));
    publish_winner(ctx, r).await
}

/// Step 5: the winner as a branch (and a pull request when asked). The
/// branch is named by the proposal's content digest: an existing branch of
/// that name already holds this content and is neither moved nor pushed
/// again, and a push is never forced.
async fn publish_winner(ctx: &Ctx<'_>, r: &mut Report) -> Result<(), ImproveError> {
    let Some(w) = r.winner().cloned() else {
        return Ok(());
    };
    let Some(commit) = w.commit.as_deref().and_then(|c| c.parse::<CommitId>().ok()) else {
        return Ok(());
    };
    let digest = w.digest.clone().unwrap_or_default();
    let short: String = digest.chars().take(12).collect();
    let branch = publish::branch_name(&r.pack_id, &w.version, &digest);
    // What is open already, read once: another proposal for this pack
    // waits; this very proposal (the same branch) is not pushed again.
    let open = match &ctx.opts.publish {
        Publish::PullRequest { gh, .. } => Some(publish::existing(gh, &r.pack_id, &branch).await?),
        Publish::Branch => None,
    };
    if let Some(publish::Existing::Other(p, _)) = &open
        && r.caps.supersede_open_proposals
    {
        r.supersedes = Some(p.clone());
    } else if let Some(publish::Existing::Other(p, head)) = &open {
        r.no_winner = Some(format!(
            "a different proposal waits: candidate #{} ({}, content {short}) differs from what the open improvement pull request #{} for {} proposes (branch {head}); nothing was pushed or opened, and #{} is left as its reviewers see it; review or close it and rerun",
            w.n, w.version, p.number, r.pack_id, p.number
        ));
        r.pull_request = Some(p.clone());
        return Ok(());
    }
    if let (Publish::PullRequest { gh, .. }, Some(publish::Existing::None)) =
        (&ctx.opts.publish, &open)
        && let Some(p) = publish::rejected(gh, &r.pack_id, &branch).await?
    {
        r.no_winner = Some(format!(
            "candidate #{} ({}, content {short}) is what pull request #{} proposed, and it was closed without being merged: not proposed again (a different proposal will be)",
            w.n, w.version, p.number
        ));
        return Ok(());
    }
    let kept = {
        let g = ctx
            .git_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match git::branch_tip(&g, &branch) {
            // The name says nothing: the branch must hold this proposal.
            Some(tip) if git::same_proposal(&g, tip, commit)? => Some(tip),
            Some(tip) => {
                return Err(ImproveError::Usage(format!(
                    "local branch {branch} holds commit {}, which is not this proposal (content {short}): someone changed it; nothing was pushed or opened. Inspect it, delete it (`git branch -D {branch}`) and rerun",
                    &tip.to_string()[..12]
                )));
            }
            None => {
                git::set_branch(&g, &branch, commit)?;
                None
            }
        }
    };
    r.branch = Some(branch.clone());
    r.commit = Some(kept.unwrap_or(commit).to_string());
    if let Some(tip) = kept {
        r.published = Some(format!(
            "unchanged: branch {branch} already holds this proposal (content {short}, commit {}); no new commit",
            &tip.to_string()[..12]
        ));
    }
    ctx.say(&format!("proposed: branch {branch} ({})", w.version));
    if let (Publish::PullRequest { gh, remote }, Some(open)) = (&ctx.opts.publish, open) {
        // Listing and pushing are blocking network I/O: on the blocking pool.
        let (repo, remote, b) = (ctx.opts.repo.clone(), remote.clone(), branch.clone());
        // A GitHub App's token when the worker has one: a push made with
        // it starts the gate on the pull request.
        let token = gh.git_token.clone();
        let (url, on_remote) = tokio::task::spawn_blocking(move || {
            let g = git::open(&repo)?;
            let url = git::remote_url(&g, &remote).ok_or_else(|| {
                ImproveError::Usage(format!(
                    "the repository has no remote `{remote}` to push {b} to; add it or pass --remote"
                ))
            })?;
            // What the remote's branch of that name holds, fetched and
            // compared: never trusted by its name.
            let held = |g: &git::Repo| -> Result<_, ImproveError> {
                Ok(match git::fetch_remote_branch(g, &url, &b, token.as_deref())? {
                    Some(at) => Some((at, git::same_proposal(g, at, commit)?)),
                    None => None,
                })
            };
            let on_remote = match held(&g)? {
                Some(found) => Some(found),
                None => match git::push_branch(&g, &url, &b, token.as_deref()) {
                    Ok(()) => None,
                    // Refused because another run pushed the branch in the
                    // meantime: what it pushed is judged like any branch of
                    // that name (the same proposal is fine, anything else
                    // is refused below).
                    Err(e) => Some(held(&g)?.ok_or(e)?),
                },
            };
            Ok::<_, ImproveError>((url, on_remote))
        })
        .await
        .map_err(|e| ImproveError::Usage(format!("the push failed: {e}")))??;
        match on_remote {
            Some((at, false)) => {
                let at = &at.to_string()[..12];
                if let publish::Existing::Same(p) = open {
                    // Reviewers pushed onto the pull request: their commits
                    // are theirs, and its body must not claim this run's
                    // evidence for content it no longer holds.
                    r.published = Some(format!(
                        "pull request #{} ({branch}) has moved past this proposal (its branch is at commit {at}, with changes beyond content {short}): left as its reviewers made it; nothing pushed and its body not refreshed",
                        p.number
                    ));
                    r.pull_request = Some(p);
                    return Ok(());
                }
                return Err(ImproveError::Usage(format!(
                    "branch {branch} on {} holds commit {at}, which is not this proposal (content {short}): someone else pushed it; nothing was opened. Inspect it, delete the remote branch and rerun",
                    crate::store::redact(&url)
                )));
            }
            Some((at, true)) => {
                r.commit = Some(at.to_string());
                ctx.say(&format!(
                    "{branch} is on {} already (the same content): not pushed",
                    crate::store::redact(&url)
                ));
            }
            None => ctx.say(&format!(
                "pushed {branch} to {}",
                crate::store::redact(&url)
            )),
        }
        let pr = match open {
            publish::Existing::Same(p) => {
                publish::refresh(gh, p.number, &r.body()).await?;
                r.published = Some(format!(
                    "unchanged: pull request #{} already proposes this content ({short}); nothing pushed, its body refreshed with this run's evidence",
                    p.number
                ));
                p
            }
            _ => {
                let pr =
                    publish::open(gh, &r.pack_id, &branch, &r.base, &r.title(), &r.body()).await?;
                if r.partial_fix.is_some() {
                    publish::label_partial(gh, pr.number).await?;
                }
                if let Some(old) = &r.supersedes {
                    publish::supersede(gh, old.number, &pr).await?;
                    r.published = Some(format!(
                        "supersedes #{}: a different proposal, opened as #{}; #{} is commented on and closed (tier {}'s supersede_open_proposals)",
                        old.number, pr.number, old.number, r.caps.tier
                    ));
                    pr
                } else if let Some(first) = publish::raced(gh, &r.pack_id, pr.number).await? {
                    // Another run opened one at the same time: one
                    // improvement pull request per pack stays open.
                    publish::supersede(gh, pr.number, &first).await?;
                    r.published = Some(format!(
                        "raced: another run opened #{} for {} at the same time; #{} is commented on and closed in its favour (one improvement pull request per pack is open at a time)",
                        first.number, r.pack_id, pr.number
                    ));
                    first
                } else {
                    pr
                }
            }
        };
        ctx.say(&format!(
            "pull request #{} {}{}",
            pr.number,
            pr.url,
            if pr.existing {
                " (already open with this content: nothing pushed, body refreshed)"
            } else {
                ""
            }
        ));
        r.pull_request = Some(pr);
    }
    Ok(())
}
