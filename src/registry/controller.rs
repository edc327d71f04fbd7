//! The canary controller: starts a rollout for every promote decision, moves
//! it through its steps on telemetry, and rolls back on a regression: the
//! registry pins the champion at once, a `rollback` decision is recorded with
//! the figures that triggered it, missionctl writes the revert commit so git
//! agrees, and the pack is held until a newer version is merged.

use std::sync::Arc;

use serde_json::Value as Json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Registry;
use super::{Authority, effects};
use crate::git::Target;
use crate::model::{
    Arm, ArmLabel, Decision, DecisionKind, Effect, EffectState, FiguresFrom, GitOutcome,
    RevertEffect, RollbackFigures, RollbackGit, Rollout, RolloutDetail, RolloutPlan, RolloutState,
    StepFigures, StepOutcome, StepRecord, pending_commit,
};
use crate::reconcile::Outcome;
use crate::reconcile::rollback;
use crate::rollout::{self, Params, Verdict};
use crate::store::{Applied, Store, StoreError, Transition};
use crate::telemetry;

fn ts(t: OffsetDateTime) -> String {
    crate::time_util::canonical(t)
}

fn semver_part(v: &str) -> &str {
    v.split('+').next().unwrap_or(v)
}

/// After a reconcile pass: the pass has started, superseded or ended
/// rollouts in its own transactions; serve what it left.
pub async fn on_pass(reg: &Arc<Registry>, _out: &Outcome) -> Result<(), StoreError> {
    reg.refresh().await
}

/// One evaluation of every rollout in progress, at `now`, by the replica
/// holding the controller lease (see [`super::Leader`]). Effects left
/// pending by a crash (or by a failed git write) are finished first.
///
/// Every transition is written fenced (the lease epoch this tick started
/// with) and from the row version it was computed on: a replica that lost
/// the lease while it computed, or a rollout that moved meanwhile, writes
/// nothing and the computed transition is dropped.
pub async fn tick(reg: &Arc<Registry>, now: OffsetDateTime) -> Result<Vec<String>, StoreError> {
    let fence = match reg.leader.authority() {
        Authority::Follower => return Ok(Vec::new()),
        Authority::Alone => None,
        Authority::Leader(f) => Some(f),
    };
    let mut events = effects::run_due(reg).await?;
    let mut changed = false;
    for r in reg.store.rollouts(true).await? {
        // One controller across replicas: a replica that does not hold the
        // lease (or has just lost it) starts nothing new.
        if !reg.leader.is_leader() {
            break;
        }
        if r.source != reg.source.key {
            continue;
        }
        let champion = reg
            .store
            .run_sample(
                &ArmLabel::new(&r.rollout_id, Arm::Champion),
                &r.step_started_at,
            )
            .await?;
        let canary = reg
            .store
            .run_sample(
                &ArmLabel::new(&r.rollout_id, Arm::Canary),
                &r.step_started_at,
            )
            .await?;
        fault("tick.after_read")?;
        let started = OffsetDateTime::parse(&r.step_started_at, &Rfc3339).unwrap_or(now);
        let minutes = (now - started).as_seconds_f64() / 60.0;
        let params = Params::from_plan(&r.params);
        let verdict = rollout::evaluate(&champion, &canary, &params, minutes);
        let pack = r.pack_id.clone();
        // A held rollout keeps its share: only a regression moves it
        // (safety wins over the hold); see [`super::hold`].
        if r.state == RolloutState::Held && !matches!(verdict, Verdict::Rollback { .. }) {
            continue;
        }
        let (event, t) = match verdict {
            Verdict::Advance { figures } => {
                fault("advance.before_transition")?;
                advance(r, now, &figures)
            }
            Verdict::Rollback { why, figures } => {
                fault("rollback.before_transition")?;
                let t = rollback_transition(reg, r, &why, *figures, now);
                (format!("{pack}: automatic rollback: {why}"), t)
            }
            Verdict::Stalled { why } => {
                if r.state == RolloutState::Stalled {
                    continue;
                }
                let mut r = r;
                r.state = RolloutState::Stalled;
                r.detail = Some(RolloutDetail::next(r.detail.as_ref(), why.clone()));
                r.updated_at = ts(now);
                (format!("{pack}: stalled: {why}"), Transition::of(r))
            }
            Verdict::Wait { why } => {
                let prev = r.detail.as_ref().map_or("", |d| d.why.as_str());
                if r.state != RolloutState::Stalled && prev == why {
                    continue;
                }
                let mut r = r;
                r.state = RolloutState::Running;
                r.detail = Some(RolloutDetail::next(r.detail.as_ref(), why));
                r.updated_at = ts(now);
                (String::new(), Transition::of(r))
            }
        };
        let rolled_back = !t.effects.is_empty();
        match reg
            .store
            .apply_transition(&Transition {
                fence: fence.clone(),
                ..t
            })
            .await?
        {
            Applied::Written => {}
            Applied::Fenced => {
                tracing::warn!(pack = %pack, replica = %reg.leader.replica, "this replica lost the controller lease while deciding; its decision was dropped (the new leader decides)");
                break;
            }
            Applied::Stale => {
                tracing::info!(pack = %pack, "the rollout moved while this tick decided; decided again on the next tick");
                continue;
            }
        }
        changed = true;
        if !event.is_empty() {
            events.push(event);
        }
        if rolled_back {
            // Pin from the durable state at once, then make git agree.
            reg.pin(&pack);
            fault("rollback.after_transition")?;
            events.extend(effects::run_due(reg).await?);
            reg.kick_reconciler();
        }
    }
    if changed {
        reg.refresh().await?;
    }
    Ok(events)
}

/// A fault point on the controller's path (see [`crate::fault`]).
fn fault(name: &'static str) -> Result<(), StoreError> {
    Ok(crate::fault::point(name)?)
}

impl Transition {
    /// A transition that only moves `r` (no decision, no effect).
    fn of(r: Rollout) -> Transition {
        Transition {
            rollout: Some(r),
            ..Transition::default()
        }
    }
}

/// The step ended with the canary holding: the next share, or complete.
fn advance(mut r: Rollout, now: OffsetDateTime, figures: &StepFigures) -> (String, Transition) {
    let record = step_record(&r, now, StepOutcome::Advanced, figures);
    r.step += 1;
    let pct = r.steps.get(r.step).copied().unwrap_or(100);
    let (event, why, record) = if pct >= 100 {
        r.state = RolloutState::Completed;
        (
            format!("{}: fully promoted ({})", r.pack_id, r.to_version),
            "fully promoted: the canary held at every step".to_string(),
            StepRecord {
                outcome: StepOutcome::Completed,
                ..record
            },
        )
    } else {
        r.state = RolloutState::Running;
        (
            format!("{}: canary advanced to {pct}%", r.pack_id),
            format!("advanced to {pct}%"),
            record,
        )
    };
    let mut detail = RolloutDetail::next(r.detail.as_ref(), why);
    detail.history.push(record);
    detail.last_step = Some(figures.clone());
    r.detail = Some(detail);
    r.step_started_at = ts(now);
    r.updated_at = ts(now);
    (event, Transition::of(r))
}

fn rollback_target(plan: &RolloutPlan, pack: &str, rollout_id: &str) -> Option<String> {
    match plan.rollback_git() {
        RollbackGit::Branch => Some(format!(
            "missionctl/rollback-{pack}-{}",
            &rollout_id[..8.min(rollout_id.len())]
        )),
        RollbackGit::Push => None,
    }
}

/// The step `r` is at, ended `now` with `outcome` on `figures`.
fn step_record(
    r: &Rollout,
    now: OffsetDateTime,
    outcome: StepOutcome,
    figures: &StepFigures,
) -> StepRecord {
    StepRecord {
        percent: r.percent(),
        started_at: r.step_started_at.clone(),
        ended_at: ts(now),
        outcome,
        figures: figures.clone(),
    }
}

/// Scope of `pack` as the served snapshot knows it.
fn scope_of(reg: &Registry, pack: &str) -> (String, String) {
    reg.snapshot
        .load()
        .repo
        .pack(pack)
        .map(|p| {
            (
                p.location.scope_type().as_str().to_string(),
                p.location.scope_id().to_string(),
            )
        })
        .unwrap_or_else(|| ("domain".into(), pack.to_string()))
}

/// The automatic rollback as one transition: the rollout rolled back (the
/// registry pins the champion as soon as it is written), the decision with
/// the figures that triggered it, the hold on the rolled-back version, and
/// the revert commit owed to git.
fn rollback_transition(
    reg: &Registry,
    mut r: Rollout,
    why: &str,
    figures: StepFigures,
    now: OffsetDateTime,
) -> Transition {
    r.state = RolloutState::RolledBack;
    let mut detail = RolloutDetail::next(r.detail.as_ref(), why);
    detail
        .history
        .push(step_record(&r, now, StepOutcome::RolledBack, &figures));
    detail.figures = Some(figures.clone());
    r.detail = Some(detail);
    r.updated_at = ts(now);
    let transition = r.rollout_id.clone();
    let reason = format!("automatic rollback: {why}");
    let (scope_type, scope_id) = scope_of(reg, &r.pack_id);
    let d = Decision {
        decision_id: crate::reconcile::decision_id(&format!("rollback:{transition}"), &r.pack_id),
        scope_type,
        scope_id,
        champion_pack_version: Some(r.to_version.clone()),
        challenger_pack_version: r.from_version.clone().unwrap_or_default(),
        decision: DecisionKind::Rollback,
        reason: reason.clone(),
        decided_by: "missionctl canary controller (automatic)".into(),
        created_at: ts(now),
        pack_id: r.pack_id.clone(),
        commit: pending_commit(&transition),
        pull_request: None,
        evidence_url: None,
        rollout: Some(RolloutPlan {
            rollout_id: Some(r.rollout_id.clone()),
            ..RolloutPlan::immediate()
        }),
        figures: Some(RollbackFigures {
            trigger: figures,
            git: GitOutcome::Pending {
                revert_pending: true,
            },
        }),
    };
    let effect = revert_effect(
        &reg.source.key,
        RevertEffect {
            transition_id: transition.clone(),
            rollout_id: Some(r.rollout_id.clone()),
            decision_id: d.decision_id.clone(),
            pack_id: r.pack_id.clone(),
            to_version: r.from_version.as_deref().map(semver_part).map(String::from),
            bad_version: Some(semver_part(&r.to_version).to_string()),
            reason: reason.clone(),
            review_branch: rollback_target(&r.params, &r.pack_id, &r.rollout_id),
        },
        now,
    );
    Transition {
        fence: None,
        hold: Some((
            reg.source.key.clone(),
            r.pack_id.clone(),
            semver_part(&r.to_version).to_string(),
            reason,
        )),
        rollout: Some(r),
        decisions: vec![(reg.source.key.clone(), d)],
        effects: vec![effect],
        audit: None,
    }
}

fn revert_effect(source: &str, revert: RevertEffect, now: OffsetDateTime) -> Effect {
    Effect {
        effect_id: format!("revert:{}", revert.transition_id),
        source: source.to_string(),
        pack_id: revert.pack_id.clone(),
        state: EffectState::Pending,
        attempts: 0,
        last_error: None,
        next_attempt_at: ts(now),
        created_at: ts(now),
        done_at: None,
        revert,
        result: None,
    }
}

/// Why a rollback asked for through the API was not done; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    /// The reason is not one line of plain text (see [`crate::model::reason_problem`]): 400.
    #[error("{0}")]
    BadReason(String),
    /// The rollback cannot be done as asked (unknown pack or version, a
    /// checked-out work tree): 409.
    #[error("{0}")]
    Refused(String),
    /// The rollout moved while the request was handled: 409, retry.
    #[error(
        "the rollout of {0} changed while this rollback was being recorded; nothing was changed, retry"
    )]
    Moved(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A rollback asked for through the API (`via`: the route asked, as the
/// decision and the audit row name it), as one transition: any canary of
/// the pack rolled back (and pinned), the decision and the audit row
/// written, the revert owed to git, all at once or not at all; then the
/// revert is written at once. Checked before anything is written.
pub(crate) async fn manual_rollback(
    reg: &Arc<Registry>,
    pack: &str,
    to: Option<&str>,
    reason: &str,
    by: &str,
    via: &str,
) -> Result<Json, ManualError> {
    if let Some(why) = crate::model::reason_problem(reason) {
        return Err(ManualError::BadReason(why));
    }
    let (source, pack_s, to_s) = (reg.source.clone(), pack.to_string(), to.map(String::from));
    let (cur_version, to_version, tip) = tokio::task::spawn_blocking(move || {
        rollback::plan(&source, &pack_s, to_s.as_deref(), &Target::Push)
    })
    .await
    .map_err(|e| ManualError::Refused(e.to_string()))?
    .map_err(|e| ManualError::Refused(e.to_string()))?;
    let held = reg.store.holds(&reg.source.key).await?;
    if let Some((_, v)) = held.iter().find(|(p, v)| p == pack && *v == to_version) {
        return Err(ManualError::Refused(format!(
            "{pack} {v} was rolled back and is held: it is not restored by a rollback (merge a newer version instead)"
        )));
    }
    if cur_version == to_version {
        return Err(ManualError::Refused(format!(
            "{pack} is at {cur_version} on {} already: nothing to roll back to (name an earlier version with \"to\")",
            reg.source.branch
        )));
    }
    let now = OffsetDateTime::now_utc();
    let transition = format!("manual-{:016x}", rand::random::<u64>());
    let reason = format!("{reason} (requested by {by})");
    let rolling = reg
        .store
        .rollouts(true)
        .await?
        .into_iter()
        .find(|r| r.pack_id == pack && r.source == reg.source.key)
        .map(|mut r| {
            r.state = RolloutState::RolledBack;
            r.detail = Some(RolloutDetail::next(
                r.detail.as_ref(),
                format!("manual rollback by {by}: {reason}"),
            ));
            r.updated_at = ts(now);
            r
        });
    let (scope_type, scope_id) = scope_of(reg, pack);
    let d = Decision {
        decision_id: crate::reconcile::decision_id(&format!("rollback:{transition}"), pack),
        scope_type,
        scope_id,
        champion_pack_version: Some(cur_version.clone()),
        challenger_pack_version: to_version.clone(),
        decision: DecisionKind::Rollback,
        reason: reason.clone(),
        decided_by: format!("{by} (POST {via})"),
        created_at: ts(now),
        pack_id: pack.to_string(),
        commit: pending_commit(&transition),
        pull_request: None,
        evidence_url: None,
        rollout: Some(RolloutPlan {
            rollout_id: rolling.as_ref().map(|r| r.rollout_id.clone()),
            ..RolloutPlan::immediate()
        }),
        figures: None,
    };
    let mut effect = revert_effect(
        &reg.source.key,
        RevertEffect {
            transition_id: transition.clone(),
            rollout_id: rolling.as_ref().map(|r| r.rollout_id.clone()),
            decision_id: d.decision_id.clone(),
            pack_id: pack.to_string(),
            to_version: Some(to_version.clone()),
            bad_version: Some(cur_version.clone()),
            reason: reason.clone(),
            review_branch: None,
        },
        now,
    );
    // One rollback per branch tip and pack: a second request for the same
    // tip (sent twice, or by two people at once) is refused, not recorded.
    effect.effect_id = format!("revert:{pack}@{tip}");
    // This request writes the revert itself; the executor is the fallback.
    effect.next_attempt_at = ts(now + time::Duration::seconds(10));
    let summary = serde_json::json!({
        "transition": transition,
        "pack_id": pack,
        "from_version": cur_version,
        "to_version": to_version,
        "decision_id": d.decision_id,
        "rollout_id": rolling.as_ref().map(|r| r.rollout_id.clone()),
    });
    let pinned = rolling.is_some();
    let t = Transition {
        fence: None,
        rollout: rolling,
        decisions: vec![(reg.source.key.clone(), d)],
        // The version rolled back is held, as after an automatic rollback:
        // reverting the revert is refused until a newer version is merged.
        hold: Some((
            reg.source.key.clone(),
            pack.to_string(),
            cur_version.clone(),
            reason.clone(),
        )),
        effects: vec![effect.clone()],
        audit: Some((
            by.to_string(),
            via.to_string(),
            "ok".into(),
            summary.to_string(),
        )),
    };
    match reg.store.apply_transition(&t).await? {
        Applied::Written => {}
        Applied::Fenced | Applied::Stale => return Err(ManualError::Moved(pack.to_string())),
    }
    if pinned {
        reg.pin(pack);
    }
    let git = match effects::run(reg, &effect).await? {
        effects::Ran::Done(outcome) => serde_json::to_value(outcome).unwrap_or_default(),
        effects::Ran::Failed(why) => {
            serde_json::json!({"revert_pending": true, "revert_error": why})
        }
    };
    reg.refresh().await?;
    let mut out = summary;
    out["git"] = git;
    Ok(out)
}

/// A rollout as `status` and `GET /v1/rollouts` show it: where it is, and
/// each arm's KPIs in the current step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RolloutStatus {
    pub rollout_id: String,
    pub pack_id: String,
    pub state: RolloutState,
    pub champion_version: Option<String>,
    pub canary_version: String,
    pub steps: Vec<u32>,
    pub percent: u32,
    pub next_step: Option<u32>,
    pub step_started_at: String,
    /// Each arm's KPIs: of the current step while the rollout is in
    /// progress; of its last recorded step once it has finished (the
    /// figures the completion or rollback was decided on).
    pub champion: crate::model::Kpis,
    pub canary: crate::model::Kpis,
    /// Where `champion` and `canary` come from.
    pub figures_from: FiguresFrom,
    pub detail: Option<RolloutDetail>,
    /// The revert this rollout's rollback owes git: pending (with each
    /// failed attempt's error) or done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revert: Option<Effect>,
}

/// Rollouts with each arm's KPIs in the current step and the next step.
pub async fn status(store: &Store, all: bool) -> Result<Vec<RolloutStatus>, StoreError> {
    let mut out = Vec::new();
    let effects = store.effects(None).await?;
    for r in store.rollouts(!all).await? {
        let recorded = (!r.state.in_progress())
            .then_some(r.detail.as_ref())
            .flatten()
            .and_then(|d| {
                d.figures
                    .clone()
                    .or_else(|| d.history.last().map(|h| h.figures.clone()))
                    .or_else(|| d.last_step.clone())
            });
        let (champion, canary, figures_from) = match recorded {
            Some(f) => (f.champion, f.canary, FiguresFrom::LastStep),
            None => {
                let (ch, ca) = (
                    ArmLabel::new(&r.rollout_id, Arm::Champion),
                    ArmLabel::new(&r.rollout_id, Arm::Canary),
                );
                (
                    telemetry::kpis(&store.run_sample(&ch, &r.step_started_at).await?),
                    telemetry::kpis(&store.run_sample(&ca, &r.step_started_at).await?),
                    FiguresFrom::Live,
                )
            }
        };
        let revert = effects
            .iter()
            .find(|e| {
                e.revert.transition_id == r.rollout_id
                    || e.revert.rollout_id.as_deref() == Some(r.rollout_id.as_str())
            })
            .cloned();
        out.push(RolloutStatus {
            revert,
            percent: r.percent(),
            next_step: r.next_step(),
            champion,
            canary,
            figures_from,
            rollout_id: r.rollout_id,
            pack_id: r.pack_id,
            state: r.state,
            champion_version: r.from_version,
            canary_version: r.to_version,
            steps: r.steps,
            step_started_at: r.step_started_at,
            detail: r.detail,
        });
    }
    Ok(out)
}
