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
use crate::git::Target;
use crate::model::{
    Arm, ArmLabel, Decision, DecisionKind, FiguresFrom, GitOutcome, RollbackFigures, RollbackGit,
    Rollout, RolloutDetail, RolloutPlan, RolloutState, StepFigures, StepOutcome, StepRecord,
};
use crate::reconcile::Outcome;
use crate::reconcile::rollback;
use crate::rollout::{self, Params, Verdict};
use crate::store::{Store, StoreError};
use crate::telemetry;

fn ts(t: OffsetDateTime) -> String {
    crate::time_util::canonical(t)
}

fn semver_part(v: &str) -> &str {
    v.split('+').next().unwrap_or(v)
}

/// Start, supersede or end rollouts from a reconcile pass's decisions.
pub async fn on_pass(reg: &Arc<Registry>, out: &Outcome) -> Result<(), StoreError> {
    let now = ts(OffsetDateTime::now_utc());
    let running = reg.store.rollouts(true).await?;
    for d in &out.decisions {
        let current = running
            .iter()
            .find(|r| r.pack_id == d.pack_id && r.source == reg.source.key);
        match d.decision {
            DecisionKind::Promote => {
                let plan = d.rollout.clone().unwrap_or_default();
                if plan.immediate {
                    continue;
                }
                let steps = plan.canary_steps();
                // A newer promotion during a canary keeps the same champion.
                let (from_version, from_commit) = match current {
                    Some(c) => {
                        let mut old = c.clone();
                        old.state = RolloutState::Superseded;
                        old.updated_at = now.clone();
                        reg.store.put_rollout(&old).await?;
                        (c.from_version.clone(), c.from_commit.clone())
                    }
                    None => (d.champion_pack_version.clone(), plan.from_commit.clone()),
                };
                if steps[0] >= 100 || from_version.is_none() {
                    continue;
                }
                reg.store
                    .put_rollout(&Rollout {
                        rollout_id: d.decision_id.clone(),
                        decision_id: d.decision_id.clone(),
                        source: reg.source.key.clone(),
                        pack_id: d.pack_id.clone(),
                        from_version,
                        to_version: d.challenger_pack_version.clone(),
                        from_commit,
                        to_commit: d.commit.clone(),
                        steps,
                        step: 0,
                        state: RolloutState::Running,
                        detail: Some(RolloutDetail::why("started")),
                        started_at: now.clone(),
                        updated_at: now.clone(),
                        step_started_at: now.clone(),
                        params: plan,
                    })
                    .await?;
            }
            DecisionKind::Rollback => {
                if let Some(c) = current {
                    let mut r = c.clone();
                    r.state = RolloutState::RolledBack;
                    r.updated_at = now.clone();
                    r.detail = Some(RolloutDetail::next(
                        r.detail.as_ref(),
                        format!("rolled back by commit {:.8}: {}", d.commit, d.reason),
                    ));
                    reg.store.put_rollout(&r).await?;
                }
            }
            DecisionKind::Reject => {}
        }
    }
    reg.refresh().await
}

/// One evaluation of every rollout in progress, at `now`, by the replica
/// holding the controller lease (see [`super::Leader`]).
pub async fn tick(reg: &Arc<Registry>, now: OffsetDateTime) -> Result<Vec<String>, StoreError> {
    let mut events = Vec::new();
    let mut changed = false;
    for mut r in reg.store.rollouts(true).await? {
        // One controller across replicas: a replica that does not hold the
        // lease (or has just lost it) acts on nothing.
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
        let started = OffsetDateTime::parse(&r.step_started_at, &Rfc3339).unwrap_or(now);
        let minutes = (now - started).as_seconds_f64() / 60.0;
        let params = Params::from_plan(&r.params);
        let verdict = rollout::evaluate(&champion, &canary, &params, minutes);
        match verdict {
            Verdict::Advance { figures } => {
                let record = step_record(&r, now, StepOutcome::Advanced, &figures);
                r.step += 1;
                let pct = r.steps.get(r.step).copied().unwrap_or(100);
                let (why, record) = if pct >= 100 {
                    events.push(format!("{}: fully promoted ({})", r.pack_id, r.to_version));
                    r.state = RolloutState::Completed;
                    (
                        "fully promoted: the canary held at every step".to_string(),
                        StepRecord {
                            outcome: StepOutcome::Completed,
                            ..record
                        },
                    )
                } else {
                    events.push(format!("{}: canary advanced to {pct}%", r.pack_id));
                    r.state = RolloutState::Running;
                    (format!("advanced to {pct}%"), record)
                };
                let mut detail = RolloutDetail::next(r.detail.as_ref(), why);
                detail.history.push(record);
                detail.last_step = Some(*figures);
                r.detail = Some(detail);
                r.step_started_at = ts(now);
                r.updated_at = ts(now);
                reg.store.put_rollout(&r).await?;
                changed = true;
            }
            Verdict::Rollback { why, figures } => {
                events.push(format!("{}: automatic rollback: {why}", r.pack_id));
                auto_rollback(reg, &mut r, &why, *figures, now).await?;
                changed = true;
            }
            Verdict::Stalled { why } => {
                if r.state != RolloutState::Stalled {
                    events.push(format!("{}: stalled: {why}", r.pack_id));
                    r.state = RolloutState::Stalled;
                    r.detail = Some(RolloutDetail::next(r.detail.as_ref(), why));
                    r.updated_at = ts(now);
                    reg.store.put_rollout(&r).await?;
                    changed = true;
                }
            }
            Verdict::Wait { why } => {
                let prev = r.detail.as_ref().map_or("", |d| d.why.as_str());
                if r.state == RolloutState::Stalled || prev != why {
                    r.state = RolloutState::Running;
                    r.detail = Some(RolloutDetail::next(r.detail.as_ref(), why));
                    r.updated_at = ts(now);
                    reg.store.put_rollout(&r).await?;
                }
            }
        }
    }
    if changed {
        reg.refresh().await?;
    }
    Ok(events)
}

fn rollback_target(plan: &RolloutPlan, pack: &str, rollout_id: &str) -> Target {
    match plan.rollback_git() {
        RollbackGit::Branch => Target::Branch(format!(
            "missionctl/rollback-{pack}-{}",
            &rollout_id[..8.min(rollout_id.len())]
        )),
        RollbackGit::Push => Target::Push,
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

async fn auto_rollback(
    reg: &Arc<Registry>,
    r: &mut Rollout,
    why: &str,
    figures: StepFigures,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    // 1. Pin the champion at once: from here on every user gets it.
    r.state = RolloutState::RolledBack;
    let mut detail = RolloutDetail::next(r.detail.as_ref(), why);
    detail
        .history
        .push(step_record(r, now, StepOutcome::RolledBack, &figures));
    detail.figures = Some(figures.clone());
    r.detail = Some(detail);
    r.updated_at = ts(now);
    reg.store.put_rollout(r).await?;
    reg.pin(&r.pack_id);
    // 2. Make git agree: a revert commit, pushed or on a branch, per policy.
    let to = r.from_version.as_deref().map(semver_part).map(String::from);
    let (source, pack, target) = (
        reg.source.clone(),
        r.pack_id.clone(),
        rollback_target(&r.params, &r.pack_id, &r.rollout_id),
    );
    let reason = format!("automatic rollback: {why}");
    let git = tokio::task::spawn_blocking({
        let (reason, to) = (reason.clone(), to.clone());
        move || rollback::rollback(&source, &pack, to.as_deref(), &reason, &target)
    })
    .await;
    let failed = |e: String| {
        (
            format!("auto-rollback:{}", r.rollout_id),
            GitOutcome::Failed { revert_error: e },
        )
    };
    let (commit, git_note) = match git {
        Ok(Ok(o)) => (
            o.commit.clone(),
            GitOutcome::Reverted {
                revert_commit: o.commit,
                branch: o.branch,
            },
        ),
        Ok(Err(e)) => failed(e.to_string()),
        Err(e) => failed(e.to_string()),
    };
    // 3. The decision, with the figures that triggered it.
    let snap = reg.snapshot.load();
    let (scope_type, scope_id) = snap
        .repo
        .pack(&r.pack_id)
        .map(|p| {
            (
                p.location.scope_type().as_str().to_string(),
                p.location.scope_id().to_string(),
            )
        })
        .unwrap_or_else(|| ("domain".into(), r.pack_id.clone()));
    let d = Decision {
        decision_id: crate::reconcile::decision_id(&commit, &r.pack_id),
        scope_type,
        scope_id,
        champion_pack_version: Some(r.to_version.clone()),
        challenger_pack_version: r.from_version.clone().unwrap_or_default(),
        decision: DecisionKind::Rollback,
        reason: reason.clone(),
        decided_by: "missionctl canary controller (automatic)".into(),
        created_at: ts(now),
        pack_id: r.pack_id.clone(),
        commit: commit.clone(),
        pull_request: None,
        evidence_url: None,
        rollout: Some(RolloutPlan {
            rollout_id: Some(r.rollout_id.clone()),
            ..RolloutPlan::immediate()
        }),
        figures: Some(RollbackFigures {
            trigger: figures,
            git: git_note,
        }),
    };
    if !reg.store.insert_decision(&reg.source.key, &d).await? {
        tracing::info!(commit = %commit, "the reconciler recorded the revert first");
    }
    // 4. Hold: the rolled-back version is not promoted again; a newer one is.
    reg.store
        .hold(
            &reg.source.key,
            &r.pack_id,
            semver_part(&r.to_version),
            &reason,
        )
        .await?;
    reg.kick_reconciler();
    Ok(())
}

/// A rollback asked for through the API: pin any canary, write the revert.
pub(crate) async fn manual_rollback(
    reg: &Arc<Registry>,
    pack: &str,
    to: Option<&str>,
    reason: &str,
    by: &str,
) -> Result<Json, String> {
    if let Ok(running) = reg.store.rollouts(true).await
        && let Some(r) = running
            .into_iter()
            .find(|r| r.pack_id == pack && r.source == reg.source.key)
    {
        let mut r = r;
        r.state = RolloutState::RolledBack;
        r.detail = Some(RolloutDetail::next(
            r.detail.as_ref(),
            format!("manual rollback by {by}: {reason}"),
        ));
        r.updated_at = ts(OffsetDateTime::now_utc());
        reg.store.put_rollout(&r).await.map_err(|e| e.to_string())?;
        reg.pin(pack);
    }
    let (source, pack_s, to_s, reason_s) = (
        reg.source.clone(),
        pack.to_string(),
        to.map(String::from),
        format!("{reason} (requested by {by})"),
    );
    let out = tokio::task::spawn_blocking(move || {
        rollback::rollback(&source, &pack_s, to_s.as_deref(), &reason_s, &Target::Push)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    reg.kick_reconciler();
    serde_json::to_value(out).map_err(|e| e.to_string())
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
}

/// Rollouts with each arm's KPIs in the current step and the next step.
pub async fn status(store: &Store, all: bool) -> Result<Vec<RolloutStatus>, StoreError> {
    let mut out = Vec::new();
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
        out.push(RolloutStatus {
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
