//! What a reconciled commit does to rollouts, decided without I/O and
//! written in the commit's own transaction: a promotion starts its canary
//! (superseding one in progress), a rollback ends the one in progress.
//!
//! The champion of a new canary is what was *serving*: after an automatic
//! rollback whose revert waits on a review branch, main still holds the
//! rolled-back version, which is quarantined: the next merge's canary is
//! measured against (and its champion arm served) the version the rollback
//! restored, never the rolled-back one.

use crate::model::{Decision, DecisionKind, Rollout, RolloutDetail, RolloutState};

/// The rollout rows `decisions` (one commit's) start or end, given every
/// rollout of `source` (newest first) as the store holds them. A new row
/// has `row_version` -1; a changed one keeps the version it was read at.
pub(crate) fn changes(
    source: &str,
    decisions: &[Decision],
    existing: &[Rollout],
    now: &str,
) -> Vec<Rollout> {
    let mut out: Vec<Rollout> = Vec::new();
    for d in decisions {
        let current = existing
            .iter()
            .find(|r| r.pack_id == d.pack_id && r.source == source && r.state.in_progress())
            .map(|r| {
                // A row this commit already changed is changed again from there.
                out.iter()
                    .find(|o| o.rollout_id == r.rollout_id)
                    .cloned()
                    .unwrap_or_else(|| r.clone())
            })
            .filter(|r| r.state.in_progress());
        match d.decision {
            DecisionKind::Promote => {
                let plan = d.rollout.clone().unwrap_or_default();
                if plan.immediate {
                    continue;
                }
                let steps = plan.canary_steps();
                let (from_version, from_commit) = match &current {
                    // A newer promotion during a canary keeps the same champion.
                    Some(c) => {
                        let mut old = c.clone();
                        old.state = RolloutState::Superseded;
                        old.updated_at = now.to_string();
                        old.detail = Some(RolloutDetail::next(
                            old.detail.as_ref(),
                            format!("superseded by commit {:.8}", d.commit),
                        ));
                        let (v, c) = (old.from_version.clone(), old.from_commit.clone());
                        upsert(&mut out, old);
                        (v, c)
                    }
                    None => quarantined_champion(source, d, existing)
                        .unwrap_or((d.champion_pack_version.clone(), plan.from_commit.clone())),
                };
                if steps[0] >= 100 || from_version.is_none() {
                    continue;
                }
                upsert(
                    &mut out,
                    Rollout {
                        rollout_id: d.decision_id.clone(),
                        decision_id: d.decision_id.clone(),
                        source: source.to_string(),
                        pack_id: d.pack_id.clone(),
                        from_version,
                        to_version: d.challenger_pack_version.clone(),
                        from_commit,
                        to_commit: d.commit.clone(),
                        steps,
                        step: 0,
                        state: RolloutState::Running,
                        detail: Some(RolloutDetail::why("started")),
                        started_at: now.to_string(),
                        updated_at: now.to_string(),
                        step_started_at: now.to_string(),
                        params: plan,
                        row_version: -1,
                    },
                );
            }
            DecisionKind::Rollback => {
                if let Some(mut r) = current {
                    r.state = RolloutState::RolledBack;
                    r.updated_at = now.to_string();
                    r.detail = Some(RolloutDetail::next(
                        r.detail.as_ref(),
                        format!("rolled back by commit {:.8}: {}", d.commit, d.reason),
                    ));
                    upsert(&mut out, r);
                }
            }
            // Hold and resume come from people, never from a commit.
            DecisionKind::Reject | DecisionKind::Hold | DecisionKind::Resume => {}
        }
    }
    out
}

/// A promotion whose canary runs against another champion than the
/// version the branch held (that version was rolled back and is
/// quarantined) says so: its champion is what serves, and the reason names
/// the quarantined version.
pub(crate) fn name_quarantined(
    decisions: &mut [Decision],
    started: &[Rollout],
    existing: &[Rollout],
) {
    for r in started.iter().filter(|r| r.row_version == -1) {
        if let Some(d) = decisions
            .iter_mut()
            .find(|d| d.decision_id == r.decision_id)
            && d.champion_pack_version != r.from_version
            // Only a rolled-back champion is quarantined: a canary that
            // supersedes another keeps that one's champion, as before.
            && existing.iter().any(|x| {
                x.pack_id == d.pack_id
                    && x.state == RolloutState::RolledBack
                    && Some(&x.to_version) == d.champion_pack_version.as_ref()
            })
        {
            d.reason = format!(
                "{}; the canary runs against {} ({} was rolled back and is quarantined)",
                d.reason,
                r.from_version.as_deref().unwrap_or("none"),
                d.champion_pack_version.as_deref().unwrap_or("none"),
            );
            d.champion_pack_version.clone_from(&r.from_version);
        }
    }
}

fn upsert(out: &mut Vec<Rollout>, r: Rollout) {
    match out.iter_mut().find(|o| o.rollout_id == r.rollout_id) {
        Some(o) => *o = r,
        None => out.push(r),
    }
}

/// When the version the reconciler counts as champion is one a rollout
/// rolled back (its revert not on the branch), the champion is what that
/// rollback restored: (version, commit).
fn quarantined_champion(
    source: &str,
    d: &Decision,
    existing: &[Rollout],
) -> Option<(Option<String>, Option<String>)> {
    let champion = d.champion_pack_version.as_deref()?;
    let rolled = existing.iter().find(|r| {
        r.source == source
            && r.pack_id == d.pack_id
            && r.state == RolloutState::RolledBack
            && r.to_version == champion
    })?;
    Some((rolled.from_version.clone(), rolled.from_commit.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RolloutPlan;

    fn promote(commit: &str, champion: &str, challenger: &str) -> Decision {
        Decision {
            decision_id: format!("d-{commit}"),
            scope_type: "domain".into(),
            scope_id: "hr-ops".into(),
            champion_pack_version: Some(champion.into()),
            challenger_pack_version: challenger.into(),
            decision: DecisionKind::Promote,
            reason: "promote".into(),
            decided_by: "merged by x".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            pack_id: "hr-ops-pack".into(),
            commit: commit.into(),
            pull_request: None,
            evidence_url: None,
            rollout: Some(RolloutPlan {
                steps: vec![10, 50, 100],
                from_commit: Some(format!("commit-of-{champion}")),
                ..RolloutPlan::default()
            }),
            figures: None,
        }
    }

    #[test]
    fn a_promotion_starts_a_canary_against_what_serves() {
        let rows = changes("s", &[promote("c2", "1.0.0", "1.1.0")], &[], "now");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].from_version.as_deref(), Some("1.0.0"));
        assert_eq!(rows[0].from_commit.as_deref(), Some("commit-of-1.0.0"));
        assert_eq!(rows[0].row_version, -1);
    }

    /// Issue 23, report 4: after a rollback whose revert waits on a review
    /// branch, the next merge's champion is the restored version, not the
    /// rolled-back one main still holds.
    #[test]
    fn the_champion_after_a_rollback_is_what_was_serving() {
        let mut first = changes("s", &[promote("c2", "1.0.0", "1.1.0")], &[], "t1");
        first[0].state = RolloutState::RolledBack;
        first[0].row_version = 3;
        let next = changes("s", &[promote("c3", "1.1.0", "1.2.0")], &first, "t2");
        assert_eq!(next.len(), 1, "{next:?}");
        assert_eq!(next[0].from_version.as_deref(), Some("1.0.0"));
        assert_eq!(next[0].from_commit.as_deref(), Some("commit-of-1.0.0"));
        assert_eq!(next[0].to_version, "1.2.0");
        let mut d = vec![promote("c3", "1.1.0", "1.2.0")];
        name_quarantined(&mut d, &next, &first);
        assert_eq!(d[0].champion_pack_version.as_deref(), Some("1.0.0"));
        assert!(
            d[0].reason
                .contains("1.1.0 was rolled back and is quarantined"),
            "{}",
            d[0].reason
        );
    }

    #[test]
    fn a_newer_promotion_supersedes_and_keeps_the_champion() {
        let mut first = changes("s", &[promote("c2", "1.0.0", "1.1.0")], &[], "t1");
        first[0].row_version = 2;
        let next = changes("s", &[promote("c3", "1.1.0", "1.2.0")], &first, "t2");
        assert_eq!(next.len(), 2);
        assert_eq!(next[0].state, RolloutState::Superseded);
        assert_eq!(next[0].row_version, 2, "written from the version read");
        assert_eq!(next[1].from_version.as_deref(), Some("1.0.0"));
        // Superseded, not rolled back: the decision keeps the version that served.
        let mut d = vec![promote("c3", "1.1.0", "1.2.0")];
        name_quarantined(&mut d, &next, &first);
        assert_eq!(d[0].champion_pack_version.as_deref(), Some("1.1.0"));
    }
}
