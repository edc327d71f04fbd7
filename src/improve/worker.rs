//! The run itself: signal, propose, select, publish, record.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::eval::EvalConfig;
use crate::eval::llm::Client;
use crate::gate::{self, GateOptions};
use crate::git::{self, CommitId, Tree};
use crate::model::{
    CandidateOutcome, CaseFeedback, StopReason, Tag, TriedCandidate, Variant, Verdict, VoiceProfile,
};
use crate::pack::{self, PackDoc};
use crate::store::{ImproveRow, Store};

use super::report::{Calls, Candidate, Caps, Report};
use super::select::{self, Scores};
use super::{ImproveError, ImproveOptions, Publish, Settings, propose, publish, scope, signal};

/// A version the next step may build on: the champion, or an evaluated candidate.
struct Parent {
    n: u32,
    scores: Scores,
    /// Repository path -> text, for the pack file and its sections.
    files: BTreeMap<String, String>,
    voice: VoiceProfile,
    feedback: Vec<CaseFeedback>,
}

/// Everything fixed for the run.
struct Ctx<'a> {
    opts: &'a ImproveOptions,
    store: Store,
    git_lock: std::sync::Mutex<git::Repo>,
    base_commit: CommitId,
    champion: PackDoc,
    champion_files: BTreeMap<String, String>,
    champion_voice: VoiceProfile,
    cfg: EvalConfig,
    settings: Settings,
}

fn short_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..6])
}

impl Ctx<'_> {
    fn say(&self, line: &str) {
        if let Some(f) = &self.opts.on_step {
            f(line);
        }
    }

    /// What the run may still spend: the tenant's daily cap left (from the
    /// ledger, so the gate's and earlier runs' spending counts) and the
    /// run's own budget left.
    async fn left(&self, r: &Report) -> Result<f64, ImproveError> {
        let today = crate::time_util::today();
        let spent = self.store.spend_on(&r.tenant, &today).await?;
        let daily = r.caps.daily_cap_usd - spent;
        let run = r
            .caps
            .run_budget_usd
            .map_or(f64::INFINITY, |b| b - r.spend_usd);
        Ok(daily.min(run))
    }
}

/// Run one improvement: see the module documentation of [`super`].
/// The run is recorded in the state store whatever happens; a failed
/// record is an error.
pub async fn run(opts: &ImproveOptions) -> Result<Report, ImproveError> {
    let started_at = crate::time_util::now_rfc3339();
    let run_id = short_id(&[
        &started_at,
        &opts.pack_id,
        &opts.base,
        &std::process::id().to_string(),
    ]);
    let (repo, base) = (opts.repo.clone(), opts.base.clone());
    let (g, base_commit, champion_repo) = tokio::task::spawn_blocking(move || {
        let g = git::open(&repo)?;
        let c = g.resolve(&base)?;
        let tree = Tree::at_rev(&repo, &c.to_string())?;
        Ok::<_, crate::git::GitError>((g, c, pack::load(&tree)))
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
    let store = Store::connect(&opts.db_url).await?;
    let spent_today = store.spend_on(&tenant, &crate::time_util::today()).await?;
    let mut champion_files = BTreeMap::new();
    let tree = Tree::at_rev(&opts.repo, &base_commit.to_string())?;
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
            daily_cap_usd: daily_cap,
            daily_left_usd: (daily_cap - spent_today).max(0.0),
            run_budget_usd: run_budget,
            max_prompt_growth_tokens: guard.max_prompt_growth_tokens,
        },
        failures: vec![],
        telemetry: None,
        chains: (0, 0),
        champion_scores: BTreeMap::new(),
        candidates: vec![],
        stop: StopReason::NothingToFix,
        stop_detail: String::new(),
        winner: None,
        no_winner: None,
        branch: None,
        commit: None,
        pull_request: None,
        spend_usd: 0.0,
        calls: Calls::default(),
        evidence_markdown: None,
    };
    let ctx = Ctx {
        opts,
        store: store.clone(),
        git_lock: std::sync::Mutex::new(g),
        base_commit,
        champion_voice: propose::voice_of(&champion),
        champion,
        champion_files,
        cfg,
        settings,
    };
    let outcome = body(&ctx, &mut r).await;
    r.finished_at = crate::time_util::now_rfc3339();
    if let Err(e) = &outcome {
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
    let left = ctx.left(r).await?;
    if left <= 0.0 {
        r.stop = StopReason::SpendCap;
        r.stop_detail = format!(
            "nothing left to spend (${:.4}) before the signal was read",
            left.max(0.0)
        );
        return Ok(());
    }
    let base = gate::baseline(
        &ctx.opts.repo,
        &ctx.base_commit.to_string(),
        &r.pack_id,
        &ctx.opts.db_url,
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
    r.champion_scores = select::case_scores(&base.results, Variant::Champion);
    let not_paid = base
        .done
        .iter()
        .filter(|d| {
            [d.run.error.as_deref(), d.judge_error.as_deref()]
                .into_iter()
                .flatten()
                .any(|e| e.contains("spend cap") || e.contains("spend limit"))
        })
        .count();
    r.failures = signal::feedback(&base.done, Variant::Champion);
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
    if not_paid > 0 {
        r.stop = StopReason::SpendCap;
        r.stop_detail = format!(
            "{not_paid} of the champion's {} case runs could not be paid for; the signal is incomplete",
            base.done.len()
        );
        return Ok(());
    }
    if r.failures.is_empty() {
        r.stop = StopReason::NothingToFix;
        r.stop_detail = format!("every case passes on all {} evaluated chains", r.chains.1);
        return Ok(());
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
    if r.caps.max_candidates == 0 {
        r.stop = StopReason::CandidateCap;
        r.stop_detail = format!("max_candidates_per_run is 0 for tier {}", r.caps.tier);
        return Ok(());
    }
    let demo = if ctx.settings.model.is_demo() {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        Some(
            crate::eval::demo_model::start(addr, crate::eval::demo_model::DemoConfig::default())
                .await
                .map_err(ImproveError::Demo)?,
        )
    } else {
        None
    };
    let result = candidates(
        ctx,
        r,
        demo.as_ref().map(crate::eval::demo_model::DemoServer::url),
    )
    .await;
    if let Some(d) = demo {
        d.shutdown().await;
    }
    result?;
    choose(r);
    publish_winner(ctx, r).await
}

/// Steps 2-4: propose and evaluate candidates until a cap or a stop.
async fn candidates(
    ctx: &Ctx<'_>,
    r: &mut Report,
    demo_url: Option<String>,
) -> Result<(), ImproveError> {
    let client = Client::new(1, Some(ctx.store.clone()));
    let mut pool = vec![Parent {
        n: 0,
        scores: r.champion_scores.clone(),
        files: ctx.champion_files.clone(),
        voice: ctx.champion_voice.clone(),
        feedback: r.failures.clone(),
    }];
    let mut history: Vec<TriedCandidate> = Vec::new();
    // What each proposal edits (sections and voice, not the version), to
    // tell a repeated proposal from a new one.
    let mut seen: Vec<(String, u32)> = Vec::new();
    r.stop = StopReason::CandidateCap;
    r.stop_detail = format!(
        "{} candidate(s) tried, the cap for tier {}",
        r.caps.max_candidates, r.caps.tier
    );
    for n in 1..=r.caps.max_candidates {
        let all: Vec<&Scores> = pool.iter().map(|p| &p.scores).collect();
        let parent = &pool[select::parent(&all)];
        let minibatch: Vec<CaseFeedback> = parent
            .feedback
            .iter()
            .take(ctx.settings.minibatch)
            .cloned()
            .collect();
        let req = propose::request(
            &ctx.champion,
            &parent.files,
            &parent.voice,
            minibatch,
            r.telemetry.clone(),
            history.clone(),
        );
        // Caps before spending: the optimiser call's worst case must fit.
        let worst = propose::worst_case(&ctx.cfg, &ctx.settings.model, &req);
        let left = ctx.left(r).await?;
        if worst > left {
            r.stop = StopReason::SpendCap;
            r.stop_detail = format!(
                "the next optimiser call could cost up to ${worst:.4} and ${:.4} is left (tenant `{}`'s daily cap or this run's budget)",
                left.max(0.0),
                r.tenant
            );
            return Ok(());
        }
        ctx.say(&format!(
            "propose #{n}: the optimiser reflects on {} failing case(s) of {}",
            req.failures.len(),
            if parent.n == 0 {
                "the champion".to_string()
            } else {
                format!("candidate #{}", parent.n)
            }
        ));
        let asked = propose::ask(&client, &ctx.settings.model, demo_url.as_deref(), &req).await;
        let actual = match &asked {
            Ok((_, c)) if c.cached => 0.0,
            Ok((_, c)) => ctx.cfg.cost(
                &ctx.settings.model.model,
                c.prompt_tokens,
                c.completion_tokens,
            ),
            // Answered but unusable: paid, its usage unknown; the worst case stands.
            Err((_, true)) => worst,
            Err((_, false)) => 0.0,
        };
        if !matches!(&asked, Ok((_, c)) if c.cached) && !matches!(asked, Err((_, false))) {
            r.calls.optimiser += 1;
        }
        if actual > 0.0 {
            ctx.store
                .spend_record(
                    &r.tenant,
                    &crate::time_util::today(),
                    actual,
                    "improve",
                    &r.run_id,
                )
                .await
                .map_err(ImproveError::Ledger)?;
        }
        r.spend_usd += actual;
        let version = propose::bump(&r.champion_version, n).ok_or_else(|| {
            ImproveError::Usage(format!(
                "{}: version `{}` is not semantic versioning",
                ctx.champion.file, r.champion_version
            ))
        })?;
        let mut cand = Candidate {
            n,
            version: version.clone(),
            rationale: String::new(),
            outcome: CandidateOutcome::Unusable,
            reason: None,
            parent: parent.n,
            commit: None,
            verdict: None,
            gate_run_id: None,
            champion_pass_rate: None,
            pass_rate: None,
            mcnemar_p: None,
            prompt_growth_tokens: 0,
            scores: BTreeMap::new(),
            fixed: vec![],
            broke: vec![],
            spend_usd: actual,
            model_requests: 0,
            gate_reasons: vec![],
        };
        let answer = match asked {
            Ok((a, _)) => a,
            Err((why, _)) => {
                cand.reason = Some(format!("the optimiser's answer could not be used: {why}"));
                history.push(tried(&cand));
                r.candidates.push(cand);
                continue;
            }
        };
        cand.rationale = answer.rationale.clone();
        if answer.sections.is_empty() && answer.voice.is_none() {
            cand.reason = Some("the optimiser proposed no edit".into());
            r.candidates.push(cand);
            r.stop = StopReason::NoImprovement;
            r.stop_detail = format!("the optimiser proposed no edit: {}", answer.rationale);
            return Ok(());
        }
        // The candidate's files: the parent's, the answer's edits, the voice
        // and a bumped version in the pack file.
        let mut files = parent.files.clone();
        files.extend(answer.sections.clone());
        let voice = answer.voice.clone().unwrap_or_else(|| parent.voice.clone());
        let pack_text = ctx
            .champion_files
            .get(&ctx.champion.file)
            .cloned()
            .unwrap_or_default();
        files.insert(
            ctx.champion.file.clone(),
            propose::edit_pack_file(
                &pack_text,
                &version,
                (voice != ctx.champion_voice).then_some(&voice),
            ),
        );
        let edits: BTreeMap<String, String> = files
            .iter()
            .filter(|(p, t)| ctx.champion_files.get(*p) != Some(*t))
            .map(|(p, t)| (p.clone(), t.clone()))
            .collect();
        let content = {
            let mut h = Sha256::new();
            for (p, t) in edits.iter().filter(|(p, _)| **p != ctx.champion.file) {
                h.update(p.as_bytes());
                h.update([0]);
                h.update(t.as_bytes());
                h.update([0]);
            }
            h.update(serde_json::to_string(&voice).unwrap_or_default().as_bytes());
            hex::encode(h.finalize())
        };
        if let Some((_, k)) = seen.iter().find(|(c, _)| *c == content) {
            cand.reason = Some(format!("the same edit as candidate #{k}"));
            r.stop = StopReason::NoImprovement;
            r.stop_detail = format!("the optimiser repeated candidate #{k}");
            r.candidates.push(cand);
            break;
        }
        seen.push((content, n));
        let refusals = scope::check(&ctx.champion, &edits);
        if !refusals.is_empty() {
            cand.outcome = CandidateOutcome::OutOfScope;
            cand.reason = Some(
                refusals
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            );
            ctx.say(&format!(
                "  #{n} refused before evaluation: {}",
                cand.reason.as_deref().unwrap_or("")
            ));
            history.push(tried(&cand));
            r.candidates.push(cand);
            continue;
        }
        let commit = {
            let g = ctx
                .git_lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            git::commit_files(
                &g,
                ctx.base_commit,
                &edits,
                publish::AUTHOR,
                &publish::message(
                    &r.pack_id,
                    &r.champion_version,
                    &version,
                    &answer.rationale,
                    &r.run_id,
                ),
            )?
        };
        cand.commit = Some(commit.to_string());
        // Evaluate with the gate itself, within what is left to spend.
        let left = ctx.left(r).await?;
        if left <= 0.0 {
            cand.outcome = CandidateOutcome::Partial;
            cand.reason = Some("not evaluated: nothing left to spend".into());
            r.candidates.push(cand);
            r.stop = StopReason::SpendCap;
            r.stop_detail =
                "the spend cap was reached before the candidate could be evaluated".into();
            return Ok(());
        }
        ctx.say(&format!(
            "select #{n}: the gate evaluates {version} against {}",
            r.champion_version
        ));
        let evaluated = gate::evaluate(&GateOptions {
            repo: ctx.opts.repo.clone(),
            base: ctx.base_commit.to_string(),
            head: commit.to_string(),
            out: None,
            db_url: ctx.opts.db_url.clone(),
            skip_paid_calls: false,
            progress: gate::Progress::Off,
            spend_limit_usd: r.caps.run_budget_usd.map(|b| (b - r.spend_usd).max(0.0)),
        })
        .await?;
        let feedback = signal::feedback(evaluated.done(), Variant::Challenger);
        let rollouts = evaluated
            .done()
            .iter()
            .filter(|d| {
                d.job.variant == Variant::Challenger && !d.run.cached && d.run.error.is_none()
            })
            .count() as u64;
        let evidence = gate::conclude(evaluated, None)?;
        r.spend_usd += evidence.cost_usd;
        r.calls.evaluation += evidence.model_requests;
        r.calls.cache_hits += evidence.cache_hits;
        r.calls.rollouts += rollouts;
        cand.spend_usd += evidence.cost_usd;
        cand.model_requests = evidence.model_requests;
        cand.verdict = Some(evidence.verdict);
        cand.gate_run_id = Some(evidence.run_id.clone());
        cand.gate_reasons = evidence.reasons.clone();
        if let Some(p) = evidence.packs.iter().find(|p| p.pack_id == r.pack_id) {
            cand.champion_pass_rate = p.champion_pass_rate;
            cand.pass_rate = p.challenger_pass_rate;
            cand.mcnemar_p = p.mcnemar_p;
            cand.prompt_growth_tokens = p.prompt_growth_tokens;
        }
        cand.scores = select::case_scores(&evidence.results, Variant::Challenger);
        let passes_everywhere = |s: &Scores, c: &str| s.get(c).is_some_and(|v| *v >= 1.0);
        cand.fixed = r
            .failures
            .iter()
            .filter(|f| passes_everywhere(&cand.scores, &f.case_id))
            .map(|f| f.case_id.clone())
            .collect();
        cand.broke = r
            .champion_scores
            .iter()
            .filter(|(c, v)| **v >= 1.0 && !passes_everywhere(&cand.scores, c))
            .map(|(c, _)| c.clone())
            .collect();
        // Hard checks: any one discards the candidate.
        let hard = hard_check(&evidence);
        if evidence.partial {
            cand.outcome = CandidateOutcome::Partial;
            cand.reason = Some(
                evidence
                    .reasons
                    .iter()
                    .find(|x| x.contains("spend"))
                    .cloned()
                    .unwrap_or_else(|| "partial results".into()),
            );
            r.candidates.push(cand);
            r.stop = StopReason::SpendCap;
            r.stop_detail = "the spend cap was reached while a candidate was evaluated; its results are partial".into();
            return Ok(());
        }
        if let Some(why) = hard {
            cand.outcome = CandidateOutcome::Discarded;
            cand.reason = Some(why);
            ctx.say(&format!(
                "  #{n} discarded: {}",
                cand.reason.as_deref().unwrap_or("")
            ));
            history.push(tried(&cand));
            r.candidates.push(cand);
            continue;
        }
        let before: Vec<&Scores> = pool.iter().map(|p| &p.scores).collect();
        let improved = select::improved(&cand.scores, &before);
        cand.outcome = CandidateOutcome::Front;
        ctx.say(&format!(
            "  #{n}: pass rate {} -> {}, verdict {}, improves {:?}",
            pct(cand.champion_pass_rate),
            pct(cand.pass_rate),
            evidence.verdict,
            improved
        ));
        history.push(tried(&cand));
        let all_pass = select::all_pass(&cand.scores);
        pool.push(Parent {
            n,
            scores: cand.scores.clone(),
            files,
            voice,
            feedback,
        });
        if r.winner.is_none() && evidence.verdict == Verdict::Pass {
            r.evidence_markdown = Some(gate::render_markdown(&evidence));
        }
        cand_evidence(r, &cand, &evidence);
        r.candidates.push(cand);
        if all_pass {
            r.stop = StopReason::AllFixed;
            r.stop_detail = format!("candidate #{n} passes every case on every evaluated chain");
            break;
        }
        if improved.is_empty() {
            r.stop = StopReason::NoImprovement;
            r.stop_detail = format!("candidate #{n} improves no case over the best so far");
            break;
        }
    }
    mark_front(r);
    Ok(())
}

/// Keep the gate's evidence of the best passing candidate so far.
fn cand_evidence(r: &mut Report, cand: &Candidate, evidence: &gate::Evidence) {
    if evidence.verdict != Verdict::Pass {
        return;
    }
    let better = r
        .candidates
        .iter()
        .filter(|c| c.verdict == Some(Verdict::Pass))
        .all(|c| c.pass_rate.unwrap_or(0.0) < cand.pass_rate.unwrap_or(0.0));
    if better {
        r.evidence_markdown = Some(gate::render_markdown(evidence));
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.1}%", v * 100.0))
}

fn tried(c: &Candidate) -> TriedCandidate {
    TriedCandidate {
        candidate: c.n,
        rationale: c.rationale.clone(),
        passes: c
            .scores
            .iter()
            .filter(|(_, v)| **v >= 1.0)
            .map(|(k, _)| k.clone())
            .collect(),
        outcome: match &c.reason {
            Some(r) => format!("{}: {r}", c.outcome),
            None => c.outcome.to_string(),
        },
    }
}

/// The first hard check the gate's evidence fails, if any: safety or
/// format regressions, validation, a guardrail (prompt growth, the
/// candidate cap).
fn hard_check(e: &gate::Evidence) -> Option<String> {
    if let Some(reg) = e
        .regressions
        .iter()
        .find(|x| x.tag == Tag::Safety)
        .or_else(|| e.regressions.first())
    {
        return Some(format!(
            "{} regression: case `{}` ({}) on {}: {}",
            reg.tag, reg.case_id, reg.assertion, reg.chain, reg.challenger_reason
        ));
    }
    if let Some(d) = e.validation_errors.first() {
        return Some(format!("validation: {}:{}: {}", d.file, d.line, d.message));
    }
    e.guardrails
        .iter()
        .find(|g| g.exceeded)
        .map(|g| format!("guardrail: {} is {} (cap {})", g.name, g.value, g.cap))
}

/// Candidates on the Pareto front stay `front`; the rest are `dominated`.
fn mark_front(r: &mut Report) {
    let evaluated: Vec<usize> = r
        .candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.outcome == CandidateOutcome::Front)
        .map(|(i, _)| i)
        .collect();
    let mut all: Vec<&Scores> = vec![&r.champion_scores];
    all.extend(evaluated.iter().map(|i| &r.candidates[*i].scores));
    let front = select::front(&all);
    let dominated: Vec<usize> = evaluated
        .iter()
        .enumerate()
        .filter(|(k, _)| !front.contains(&(k + 1)))
        .map(|(_, i)| *i)
        .collect();
    for i in dominated {
        r.candidates[i].outcome = CandidateOutcome::Dominated;
    }
}

/// The winner: a candidate the gate passes whose pass rate beats the
/// champion's, best pass rate first, then the best mean case score, then
/// the earliest (the smallest change that does as well).
fn choose(r: &mut Report) {
    let mean = |s: &Scores| s.values().sum::<f64>() / s.len().max(1) as f64;
    let best = r
        .candidates
        .iter()
        .filter(|c| {
            matches!(
                c.outcome,
                CandidateOutcome::Front | CandidateOutcome::Dominated
            )
        })
        .filter(|c| c.verdict == Some(Verdict::Pass))
        .filter(|c| matches!((c.pass_rate, c.champion_pass_rate), (Some(p), Some(ch)) if p > ch))
        .max_by(|a, b| {
            a.pass_rate
                .unwrap_or(0.0)
                .total_cmp(&b.pass_rate.unwrap_or(0.0))
                .then(mean(&a.scores).total_cmp(&mean(&b.scores)))
                .then(b.n.cmp(&a.n))
        });
    match best {
        Some(c) => r.winner = Some(c.n),
        None => {
            r.no_winner = Some(if r.candidates.is_empty() {
                format!("no candidate was tried ({})", r.stop_detail)
            } else {
                let passed = r
                    .candidates
                    .iter()
                    .filter(|c| c.verdict == Some(Verdict::Pass))
                    .count();
                format!(
                    "none of the {} candidate(s) beats the champion with the gate's statistics ({passed} passed the gate without raising the pass rate)",
                    r.candidates.len()
                )
            });
        }
    }
}

/// Step 5: the winner as a branch (and a pull request when asked).
async fn publish_winner(ctx: &Ctx<'_>, r: &mut Report) -> Result<(), ImproveError> {
    let Some(w) = r.winner().cloned() else {
        return Ok(());
    };
    let Some(commit) = w.commit.as_deref().and_then(|c| c.parse::<CommitId>().ok()) else {
        return Ok(());
    };
    let branch = publish::branch_name(&r.pack_id, &w.version);
    if let Publish::PullRequest { gh, .. } = &ctx.opts.publish
        && let publish::Existing::Other(p, head) =
            publish::existing(gh, &r.pack_id, &branch).await?
    {
        r.no_winner = Some(format!(
            "an improvement pull request for {} is already open (#{} from {head}); review or close it before another is proposed",
            r.pack_id, p.number
        ));
        r.pull_request = Some(p);
        return Ok(());
    }
    {
        let g = ctx
            .git_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        git::set_branch(&g, &branch, commit)?;
    }
    r.branch = Some(branch.clone());
    r.commit = Some(commit.to_string());
    ctx.say(&format!("proposed: branch {branch} ({})", w.version));
    if let Publish::PullRequest { gh, remote } = &ctx.opts.publish {
        let url = {
            let g = ctx
                .git_lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let url = git::remote_url(&g, remote).ok_or_else(|| {
                ImproveError::Usage(format!(
                    "the repository has no remote `{remote}` to push {branch} to; add it or pass --remote"
                ))
            })?;
            git::push_branch(&g, &url, &branch)?;
            url
        };
        ctx.say(&format!(
            "pushed {branch} to {}",
            crate::store::redact(&url)
        ));
        let pr = match publish::existing(gh, &r.pack_id, &branch).await? {
            publish::Existing::Same(p) => p,
            _ => publish::open(gh, &r.pack_id, &branch, &r.base, &r.title(), &r.body()).await?,
        };
        ctx.say(&format!(
            "pull request #{} {}{}",
            pr.number,
            pr.url,
            if pr.existing {
                " (already open; updated by the push)"
            } else {
                ""
            }
        ));
        r.pull_request = Some(pr);
    }
    Ok(())
}
