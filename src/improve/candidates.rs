//! Steps 2 to 4 of a run: propose a candidate from the parent's failures
//! on the feedback set, refuse what a proposal may not touch, evaluate the
//! rest with the gate, keep a Pareto front over the held-out selection set,
//! stop at a cap, when candidates stop improving it, or when every case
//! passes. The choice of the candidate to propose is [`super::choose`].

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::eval::llm::Client;
use crate::gate::{self, GateOptions};
use crate::git;
use crate::model::{
    CandidateOutcome, CaseFeedback, OptimiserAnswer, PassingExample, ResolvedPrompt, StopReason,
    Tag, TriedCandidate, Variant, Verdict, VoiceProfile,
};

use super::propose::Shown;
use super::report::{Candidate, Report, pct};
use super::select::{self, Scores};
use super::split::{Split, mean_over, restrict};
use super::worker::Ctx;
use super::{ImproveError, propose, publish, scope, signal};

/// A version the next step may build on: the champion, or an evaluated candidate.
struct Parent {
    n: u32,
    scores: Scores,
    /// Repository path -> text, for the pack file and its sections.
    files: BTreeMap<String, String>,
    voice: VoiceProfile,
    /// Its failures on the feedback set, and feedback-set cases it passes.
    feedback: Vec<CaseFeedback>,
    passing: Vec<PassingExample>,
    /// The full prompt the agent receives with this version.
    prompt: ResolvedPrompt,
}

/// What the signal gives the first step besides the failures: the
/// champion's passing examples and full prompt, and the contracts' schemas.
pub(super) struct Start {
    pub passing: Vec<PassingExample>,
    pub prompt: ResolvedPrompt,
    pub contracts: BTreeMap<String, serde_json::Value>,
}

/// Only what the optimiser may see: feedback-set cases.
fn shown(split: &Split, all: Vec<CaseFeedback>) -> Vec<CaseFeedback> {
    all.into_iter()
        .filter(|f| split.shown(&f.case_id))
        .collect()
}

/// Steps 2-4: propose and evaluate candidates until a cap or a stop. Returns
/// the gate's evidence (markdown) of each candidate it passed, by number.
pub(super) async fn run(
    ctx: &Ctx<'_>,
    r: &mut Report,
    demo_url: Option<String>,
    start: Start,
) -> Result<BTreeMap<u32, String>, ImproveError> {
    let mut passed = BTreeMap::new();
    let client = Client::new(1, Some(ctx.store.clone()));
    let mut pool = vec![Parent {
        n: 0,
        scores: r.champion_scores.clone(),
        files: ctx.champion_files.clone(),
        voice: ctx.champion_voice.clone(),
        feedback: shown(&r.split, r.failures.clone()),
        passing: start.passing,
        prompt: start.prompt,
    }];
    // Evaluated candidates in a row that improved no held-out case.
    let mut stale: Vec<u32> = Vec::new();
    let mut history: Vec<TriedCandidate> = Vec::new();
    // What each proposal edits (sections and voice, not the version), to
    // tell a repeated proposal from a new one.
    let mut seen: Vec<(String, u32)> = Vec::new();
    r.stop = StopReason::CandidateCap;
    r.stop_detail = format!(
        "{} candidate(s) tried: max_candidates_per_run is {} ({})",
        r.caps.max_candidates, r.caps.max_candidates, r.caps.max_candidates_from
    );
    for n in 1..=r.caps.max_candidates {
        // The parent is chosen on the held-out selection set.
        let held: Vec<Scores> = pool
            .iter()
            .map(|p| restrict(&p.scores, &r.split.selection))
            .collect();
        let all: Vec<&Scores> = held.iter().collect();
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
            Shown {
                failures: minibatch,
                passing: parent.passing.clone(),
                prompt: parent.prompt.clone(),
                contracts: start.contracts.clone(),
                // An evaluated candidate passed the gate's validation.
                validation: if parent.n == 0 {
                    r.validation.clone()
                } else {
                    vec![]
                },
                telemetry: r.telemetry.clone(),
                history: history.clone(),
            },
        );
        // Caps before spending: the optimiser call's worst case must fit.
        let worst = propose::worst_case(&ctx.cfg, &ctx.settings.model, &req);
        let left = ctx.left(r).await?;
        if worst > left {
            r.stop = StopReason::SpendCap;
            r.stop_detail = format!(
                "the next optimiser call could cost up to ${worst:.4} and ${:.4} is left under {}",
                left.max(0.0),
                ctx.binding_cap(r).await?
            );
            return Ok(passed);
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
        // Intent first: the call's worst case is booked before it is made
        // and settled to its real cost once answered, so a process killed
        // mid-call, or a call that times out, stays on the ledger and the
        // daily cap never misses it.
        let (day, tenant, run_id) = (
            crate::time_util::today(),
            r.tenant.clone(),
            r.run_id.clone(),
        );
        let book = |usd: f64| {
            let (day, tenant, run_id) = (day.clone(), tenant.clone(), run_id.clone());
            async move {
                if usd == 0.0 {
                    return Ok(());
                }
                ctx.store
                    .spend_record(&tenant, &day, usd, "improve", &run_id)
                    .await
                    .map_err(ImproveError::Ledger)
            }
        };
        book(worst).await?;
        let asked = propose::ask(&client, &ctx.settings.model, demo_url.as_deref(), &req).await;
        // The endpoint did not answer (unreachable, an HTTP error, not a
        // chat completion): a setup error, not a candidate. Never retried
        // as one, never "no improvement". The worst case stays booked (a
        // request that timed out may still be billed).
        if let Err((why, false)) = &asked {
            r.spend_usd += worst;
            return Err(ImproveError::Optimiser(why.clone()));
        }
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
        book(actual - worst).await?;
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
            digest: None,
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
            floor: None,
            feedback_score: None,
            selection_score: None,
        };
        let answer = match asked {
            Ok((a, _)) => a,
            Err((why, _)) => {
                cand.reason = Some(format!("the optimiser's answer could not be used: {why}"));
                history.push(tried(&cand, &r.split));
                r.candidates.push(cand);
                continue;
            }
        };
        cand.rationale = answer.rationale.clone();
        if answer.sections.is_empty() && answer.voice.is_none() {
            cand.reason = Some("the optimiser proposed no edit".into());
            r.candidates.push(cand);
            r.stop = no_improvement(r);
            r.stop_detail = format!("the optimiser proposed no edit: {}", answer.rationale);
            return Ok(passed);
        }
        let Proposal {
            files,
            voice,
            edits,
            content,
        } = proposal(ctx, parent, &answer, &version);
        if let Some((_, k)) = seen.iter().find(|(c, _)| *c == content) {
            cand.reason = Some(format!("the same edit as candidate #{k}"));
            r.stop = no_improvement(r);
            r.stop_detail = format!("the optimiser repeated candidate #{k}");
            r.candidates.push(cand);
            break;
        }
        seen.push((content, n));
        let refusals = scope::check(&ctx.champion, &edits);
        if !refusals.is_empty() {
            let why = refusals
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            set_aside(
                ctx,
                r,
                &mut history,
                cand,
                CandidateOutcome::OutOfScope,
                why,
            );
            continue;
        }
        let digest = publish::digest(&edits);
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
                    &digest,
                ),
            )?
        };
        cand.commit = Some(commit.to_string());
        cand.digest = Some(digest);
        // Evaluate with the gate itself, within what is left to spend.
        let left = ctx.left(r).await?;
        if left <= 0.0 {
            cand.outcome = CandidateOutcome::Partial;
            cand.reason = Some("not evaluated: nothing left to spend".into());
            r.candidates.push(cand);
            r.stop = StopReason::SpendCap;
            r.stop_detail = format!(
                "{} was reached before the candidate could be evaluated",
                ctx.binding_cap(r).await?
            );
            return Ok(passed);
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
            store: Some(ctx.store.clone()),
        })
        .await?;
        // What the next step may show of this candidate: feedback-set cases only.
        let feedback = shown(
            &r.split,
            signal::feedback(evaluated.done(), Variant::Challenger),
        );
        let passing = signal::passing(
            evaluated.done(),
            Variant::Challenger,
            |c| r.split.shown(c),
            ctx.settings.passing_examples,
        );
        let prompt = signal::prompt_of(evaluated.done(), Variant::Challenger, &feedback);
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
        figures(&mut cand, r, &evidence);
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
            r.stop_detail = format!(
                "{} was reached while candidate #{n} was evaluated; its results are partial",
                ctx.binding_cap(r).await?
            );
            return Ok(passed);
        }
        if let Some(why) = hard {
            set_aside(ctx, r, &mut history, cand, CandidateOutcome::Discarded, why);
            continue;
        }
        // Improvement is judged on the held-out selection set only.
        let improved = select::improved(
            &restrict(&cand.scores, &r.split.selection),
            &held.iter().collect::<Vec<_>>(),
        );
        cand.outcome = CandidateOutcome::Front;
        ctx.say(&format!(
            "  #{n}: pass rate {} -> {}, verdict {}, feedback set {:.2} -> {:.2}, selection set {:.2} -> {:.2}, improves held-out {:?}",
            pct(cand.champion_pass_rate),
            pct(cand.pass_rate),
            evidence.verdict,
            r.champion_feedback_score.unwrap_or(0.0),
            cand.feedback_score.unwrap_or(0.0),
            r.champion_selection_score.unwrap_or(0.0),
            cand.selection_score.unwrap_or(0.0),
            improved
        ));
        history.push(tried(&cand, &r.split));
        let all_pass = select::all_pass(&cand.scores);
        pool.push(Parent {
            n,
            scores: cand.scores.clone(),
            files,
            voice,
            feedback,
            passing,
            prompt,
        });
        if evidence.verdict == Verdict::Pass {
            passed.insert(n, gate::render_markdown(&evidence));
        }
        r.candidates.push(cand);
        if all_pass {
            r.stop = StopReason::AllFixed;
            r.stop_detail = format!("candidate #{n} passes every case on every evaluated chain");
            break;
        }
        // Candidates continue while they improve the selection set; a run
        // stops after `improve.patience` in a row that improve nothing there.
        if improved.is_empty() {
            stale.push(n);
            if stale.len() as u32 >= ctx.settings.patience {
                r.stop = StopReason::NoImprovement;
                r.stop_detail = format!(
                    "candidate(s) {} improve no held-out case over the best so far ({} in a row: improve.patience)",
                    stale
                        .iter()
                        .map(|k| format!("#{k}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    ctx.settings.patience
                );
                break;
            }
        } else {
            stale.clear();
        }
    }
    super::choose::mark_front(r);
    Ok(passed)
}

/// Why a run stops when the optimiser has nothing new: "no improvement"
/// only when a candidate was evaluated, else "nothing proposed".
fn no_improvement(r: &Report) -> StopReason {
    if r.candidates.iter().any(|c| c.verdict.is_some()) {
        StopReason::NoImprovement
    } else {
        StopReason::NothingProposed
    }
}

/// A proposal as files: the parent's, the answer's edits, the voice and a
/// bumped version in the pack file; what differs from the champion; and a
/// digest of what it edits (sections and voice, not the version), to tell a
/// repeated proposal from a new one.
struct Proposal {
    files: BTreeMap<String, String>,
    voice: VoiceProfile,
    edits: BTreeMap<String, String>,
    content: String,
}

fn proposal(ctx: &Ctx<'_>, parent: &Parent, answer: &OptimiserAnswer, version: &str) -> Proposal {
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
            version,
            (voice != ctx.champion_voice).then_some(&voice),
        ),
    );
    let edits: BTreeMap<String, String> = files
        .iter()
        .filter(|(p, t)| ctx.champion_files.get(*p) != Some(*t))
        .map(|(p, t)| (p.clone(), t.clone()))
        .collect();
    let mut h = Sha256::new();
    for (p, t) in edits.iter().filter(|(p, _)| **p != ctx.champion.file) {
        h.update(p.as_bytes());
        h.update([0]);
        h.update(t.as_bytes());
        h.update([0]);
    }
    h.update(serde_json::to_string(&voice).unwrap_or_default().as_bytes());
    Proposal {
        files,
        voice,
        edits,
        content: hex::encode(h.finalize()),
    }
}

/// What the gate's evidence says of a candidate: its spend, verdict, pass
/// rates, per-case scores, and the cases it fixed and broke.
fn figures(cand: &mut Candidate, r: &Report, evidence: &gate::Evidence) {
    cand.spend_usd += evidence.cost_usd;
    cand.model_requests = evidence.model_requests;
    cand.verdict = Some(evidence.verdict);
    cand.gate_run_id = Some(evidence.run_id.clone());
    cand.gate_reasons = evidence.reasons.clone();
    // Blocked only by an absolute floor (every reason is one): a partial
    // fix, if it also raises the pass rate and breaks nothing.
    let floor = |x: &String| x.contains("is below the floor of");
    if evidence.verdict == Verdict::Blocked
        && !evidence.reasons.is_empty()
        && evidence.reasons.iter().all(floor)
    {
        cand.floor = Some(evidence.reasons.join("; "));
    }
    if let Some(p) = evidence.packs.iter().find(|p| p.pack_id == r.pack_id) {
        cand.champion_pass_rate = p.champion_pass_rate;
        cand.pass_rate = p.challenger_pass_rate;
        cand.mcnemar_p = p.mcnemar_p;
        cand.prompt_growth_tokens = p.prompt_growth_tokens;
    }
    cand.scores = select::case_scores(&evidence.results, Variant::Challenger);
    cand.feedback_score = mean_over(&cand.scores, &r.split.feedback);
    cand.selection_score = mean_over(&cand.scores, &r.split.selection);
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
}

/// A candidate set aside before or after evaluation (out of scope, or a
/// hard check failed): said, shown to the optimiser next time, recorded.
fn set_aside(
    ctx: &Ctx<'_>,
    r: &mut Report,
    history: &mut Vec<TriedCandidate>,
    mut cand: Candidate,
    outcome: CandidateOutcome,
    why: String,
) {
    let verb = if outcome == CandidateOutcome::OutOfScope {
        "refused before evaluation"
    } else {
        "discarded"
    };
    ctx.say(&format!("  #{} {verb}: {why}", cand.n));
    cand.outcome = outcome;
    cand.reason = Some(why);
    history.push(tried(&cand, &r.split));
    r.candidates.push(cand);
}

/// A candidate as the optimiser may see it later: feedback-set cases and
/// scores only (never a held-out case, or a score on the selection set).
fn tried(c: &Candidate, split: &Split) -> TriedCandidate {
    TriedCandidate {
        candidate: c.n,
        rationale: c.rationale.clone(),
        passes: c
            .scores
            .iter()
            .filter(|(k, v)| **v >= 1.0 && split.shown(k))
            .map(|(k, _)| k.clone())
            .collect(),
        outcome: match &c.reason {
            // A hard check's reason may name a held-out case: say only what failed.
            Some(r) if split.held_out().iter().any(|h| r.contains(h)) => {
                format!("{}: a held-out case failed a hard check", c.outcome)
            }
            Some(r) => format!("{}: {r}", c.outcome),
            None => c.outcome.to_string(),
        },
        feedback_score: c.feedback_score,
    }
}

/// The first hard check the gate's evidence fails, if any: runs that
/// failed at the model endpoint (the candidate's evaluation is incomplete:
/// it is set aside, the run goes on), safety or format regressions,
/// validation, a guardrail (prompt growth, the candidate cap).
fn hard_check(e: &gate::Evidence) -> Option<String> {
    let errors: Vec<&String> = e.packs.iter().flat_map(|p| p.errors.iter()).collect();
    if let Some(first) = errors.first() {
        return Some(format!(
            "harness: {} run(s) failed at the model endpoint while it was evaluated, so its figures are incomplete; first: {first}",
            errors.len()
        ));
    }
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
