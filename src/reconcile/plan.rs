//! What one commit means, decided without I/O: given the packs at the
//! commit, what serves now, the holds and everything reconciled before,
//! `plan_commit` returns the decisions and serving changes to apply.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::git::{CommitInfo, Source};
use crate::model::{Decision, DecisionKind, RolloutPlan, Serving};
use crate::pack::{Location, PackDoc, Repo};
use crate::store::CommitApply;
use crate::validate;

/// (pack id, digest) -> (version, commit) of content reconciled before.
pub type History = HashMap<(String, String), (String, String)>;

/// What serves now, per pack: the baseline every commit is compared with
/// (after a refused commit it is still the last good content).
pub type ServingMap = HashMap<String, Serving>;

const RECONCILER: &str = "missionctl reconciler";

/// "Merge pull request #12 from …" or a squash merge's "… (#12)".
pub(crate) fn pull_request_of(message: &str) -> Option<i64> {
    let first = message.lines().next().unwrap_or_default();
    if let Some(rest) = first.strip_prefix("Merge pull request #") {
        return rest.split_whitespace().next()?.parse().ok();
    }
    let open = first.rfind("(#")?;
    first[open + 2..].trim_end().strip_suffix(')')?.parse().ok()
}

fn trailer<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
}

pub fn pack_version(p: &PackDoc) -> String {
    format!(
        "{}+sha256.{}",
        p.pack.version,
        &p.own_digest[..8.min(p.own_digest.len())]
    )
}

pub fn decision_id(commit: &str, pack: &str) -> String {
    let h = hex::encode(Sha256::digest(format!("{commit}\u{0}{pack}").as_bytes()));
    // UUID-shaped for readability; derived, so every replica computes the same id.
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The rollout plan for promoting `p`: its canary steps, else its tier's, else a default.
fn rollout_plan(repo: &Repo, p: &PackDoc) -> RolloutPlan {
    let mut idx: Vec<usize> = repo.global.into_iter().collect();
    if let Location::TenantUser { tenant, .. } = &p.location
        && let Some(t) = repo.tenants.get(tenant)
    {
        idx.push(*t);
    }
    if let Some(i) = repo.by_id.get(&p.pack.id)
        && !idx.contains(i)
    {
        idx.push(*i);
    }
    let resolved = crate::resolve::resolve_indices(repo, &idx);
    let promotion = resolved.promotion();
    let canary = promotion.canary.unwrap_or_default();
    let tier_steps = repo
        .tiers
        .as_ref()
        .and_then(|t| t.value.get(resolved.tier).canary_steps.clone());
    RolloutPlan {
        steps: canary
            .steps
            .or(tier_steps)
            .unwrap_or_else(|| vec![10, 50, 100]),
        immediate: false,
        min_runs_per_arm: Some(canary.min_runs_per_arm.unwrap_or(200)),
        step_deadline_minutes: Some(canary.step_deadline_minutes.unwrap_or(240.0)),
        max_false_rollback_rate: Some(canary.max_false_rollback_rate.unwrap_or(0.05)),
        rollback: resolved.rollback_rules(),
        kpis: resolved.kpi_targets(),
        from_commit: None,
        rollout_id: None,
    }
}

/// The facts every decision of one commit shares.
struct Ctx<'a> {
    info: &'a CommitInfo,
    pr: Option<i64>,
    evidence: Option<String>,
}

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    fn decision(
        &self,
        (pack_id, scope_type, scope_id): (&str, &str, &str),
        champion: Option<String>,
        challenger: String,
        kind: DecisionKind,
        reason: String,
        by: String,
        rollout: Option<RolloutPlan>,
    ) -> Decision {
        Decision {
            decision_id: decision_id(&self.info.sha, pack_id),
            scope_type: scope_type.into(),
            scope_id: scope_id.into(),
            champion_pack_version: champion,
            challenger_pack_version: challenger,
            decision: kind,
            reason,
            decided_by: by,
            created_at: self.info.time.clone(),
            pack_id: pack_id.into(),
            commit: self.info.sha.clone(),
            pull_request: self.pr,
            evidence_url: self.evidence.clone(),
            rollout,
            figures: None,
        }
    }

    fn for_pack(
        &self,
        p: &PackDoc,
        champion: Option<String>,
        kind: DecisionKind,
        reason: String,
        by: String,
        rollout: Option<RolloutPlan>,
    ) -> Decision {
        self.decision(
            (
                &p.pack.id,
                p.location.scope_type().as_str(),
                p.location.scope_id(),
            ),
            champion,
            pack_version(p),
            kind,
            reason,
            by,
            rollout,
        )
    }
}

/// A commit whose content fails validation: `reject` for every pack it
/// touched (or for the policies), and nothing changes what serves.
fn refuse(
    ctx: &Ctx<'_>,
    source: &Source,
    serving: &ServingMap,
    cur: &Repo,
    changed: &[&PackDoc],
    errors: &[crate::diagnostic::Diagnostic],
) -> Vec<Decision> {
    let summary = errors
        .iter()
        .take(3)
        .map(|d| format!("{}:{}:{}: {}: {}", d.file, d.line, d.col, d.code, d.message))
        .collect::<Vec<_>>()
        .join("; ");
    let reason = format!(
        "refused: the content on {} fails validation ({} error(s)): {summary}; the last good version keeps serving",
        source.branch,
        errors.len()
    );
    let sha = &ctx.info.sha;
    let mut packs: Vec<(String, String, String, String)> = changed
        .iter()
        .map(|p| {
            (
                p.pack.id.clone(),
                p.location.scope_type().as_str().into(),
                p.location.scope_id().into(),
                pack_version(p),
            )
        })
        .collect();
    // Packs that no longer load at all are broken, not removed.
    for f in &cur.failed_packs {
        let old = Location::from_path(f).and_then(|loc| {
            serving
                .values()
                .find(|s| s.scope_type == loc.scope_type().as_str() && s.scope_id == loc.scope_id())
        });
        if let Some(old) = old {
            packs.push((
                old.pack_id.clone(),
                old.scope_type.clone(),
                old.scope_id.clone(),
                format!("unparseable at {}", &sha[..8.min(sha.len())]),
            ));
        }
    }
    if packs.is_empty() {
        packs.push((
            "policies".into(),
            "global".into(),
            "policies".into(),
            format!("invalid at {}", &sha[..8.min(sha.len())]),
        ));
    }
    packs
        .into_iter()
        .map(|(id, st, sid, ver)| {
            ctx.decision(
                (&id, &st, &sid),
                serving.get(&id).map(|s| s.version.clone()),
                ver,
                DecisionKind::Reject,
                reason.clone(),
                RECONCILER.into(),
                None,
            )
        })
        .collect()
}

/// What a hold says about a changed pack.
enum HoldCheck {
    /// No hold, or the hold does not concern this version.
    Clear,
    /// A newer version: the hold is lifted.
    Release,
    /// The rolled-back version itself: refused.
    Refuse(String),
}

fn check_hold(p: &PackDoc, holds: &HashMap<String, String>) -> HoldCheck {
    let Some(held) = holds.get(&p.pack.id) else {
        return HoldCheck::Clear;
    };
    let newer = match (
        semver::Version::parse(&p.pack.version),
        semver::Version::parse(held),
    ) {
        (Ok(a), Ok(b)) => a > b,
        _ => false,
    };
    if newer {
        HoldCheck::Release
    } else if p.pack.version == *held {
        HoldCheck::Refuse(format!(
            "held: {} was rolled back automatically at version {held}; merge a version newer than {held} to promote again",
            p.pack.id
        ))
    } else {
        HoldCheck::Clear
    }
}

/// The decision for one changed, accepted pack.
#[allow(clippy::too_many_arguments)]
fn decide_pack(
    ctx: &Ctx<'_>,
    source: &Source,
    serving: &ServingMap,
    cur: &Repo,
    p: &PackDoc,
    initial: bool,
    history: &History,
) -> Decision {
    let champion = serving.get(&p.pack.id).map(|s| s.version.clone());
    // `p` changed, so its digest is not the serving one: a hit here is
    // content from earlier on main, i.e. a return to an older version.
    let earlier = history.get(&(p.pack.id.clone(), p.own_digest.clone()));
    let by = format!("merged by {}", ctx.info.committer);
    if initial {
        return ctx.for_pack(
            p,
            None,
            DecisionKind::Promote,
            "initial reconcile: first version seen on main".into(),
            RECONCILER.into(),
            Some(RolloutPlan::immediate()),
        );
    }
    // A rollback is recognised by content alone: a return to a version
    // reconciled before. A commit message or trailer ("This reverts …",
    // `Missionctl-Rollback:`) that brings new content is a promotion and
    // goes through the canary like any other.
    if let Some((v, c)) = earlier {
        let why = format!("rollback: content returns to version {v} reconciled at {c:.8}");
        return ctx.for_pack(
            p,
            champion,
            DecisionKind::Rollback,
            why,
            by,
            Some(RolloutPlan::immediate()),
        );
    }
    let mut plan = rollout_plan(cur, p);
    plan.from_commit = serving.get(&p.pack.id).map(|sv| sv.commit.clone());
    let why = match &champion {
        Some(c) => format!(
            "promote: content changed on {} ({c} -> {})",
            source.branch,
            pack_version(p)
        ),
        None => format!("promote: new pack on {}", source.branch),
    };
    ctx.for_pack(p, champion, DecisionKind::Promote, why, by, Some(plan))
}

/// Decide what one commit means against what serves now.
pub(crate) fn plan_commit(
    source: &Source,
    serving: &ServingMap,
    holds: &HashMap<String, String>,
    initial: bool,
    cur: &Repo,
    info: &CommitInfo,
    history: &History,
) -> CommitApply {
    let mut apply = CommitApply {
        source: source.key.clone(),
        branch: source.branch.clone(),
        new_last: info.sha.clone(),
        transition: trailer(&info.message, "Missionctl-Transition").map(String::from),
        ..CommitApply::default()
    };
    let ctx = Ctx {
        info,
        pr: pull_request_of(&info.message),
        evidence: trailer(&info.message, "Missionctl-Evidence").map(String::from),
    };
    let errors: Vec<_> = validate::validate(cur, None)
        .into_iter()
        .filter(crate::diagnostic::Diagnostic::is_error)
        .collect();
    let changed: Vec<&PackDoc> = cur
        .packs
        .iter()
        .filter(|p| {
            serving
                .get(&p.pack.id)
                .is_none_or(|old| old.digest != p.own_digest)
        })
        .collect();
    if !errors.is_empty() {
        apply.decisions = refuse(&ctx, source, serving, cur, &changed, &errors);
        return apply;
    }
    apply.good = true;
    for p in changed {
        // After an automatic rollback the pack is held: only a newer version is promoted.
        match check_hold(p, holds) {
            HoldCheck::Release => apply.release_holds.push(p.pack.id.clone()),
            HoldCheck::Refuse(why) => {
                apply.decisions.push(ctx.for_pack(
                    p,
                    serving.get(&p.pack.id).map(|s| s.version.clone()),
                    DecisionKind::Reject,
                    why,
                    RECONCILER.into(),
                    None,
                ));
                continue;
            }
            HoldCheck::Clear => {}
        }
        apply
            .decisions
            .push(decide_pack(&ctx, source, serving, cur, p, initial, history));
        apply.serving.push(Serving {
            pack_id: p.pack.id.clone(),
            scope_type: p.location.scope_type().as_str().into(),
            scope_id: p.location.scope_id().into(),
            version: pack_version(p),
            digest: p.own_digest.clone(),
            commit: info.sha.clone(),
        });
    }
    for id in serving.keys() {
        if cur.pack(id).is_none() {
            apply.removed.push(id.clone());
        }
    }
    apply.removed.sort();
    apply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::Tree;

    /// The template as packs, plus edits, loaded from a temp work tree.
    fn packs(edit: &[(&str, &str, &str)]) -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        for (rel, bytes) in crate::template::files() {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, bytes).expect("write");
        }
        for (file, from, to) in edit {
            let p = dir.path().join(file);
            let text = std::fs::read_to_string(&p).expect("read");
            assert!(text.contains(from), "{file} has no `{from}`");
            std::fs::write(p, text.replacen(from, to, 1)).expect("write");
        }
        crate::pack::load(&Tree::work_tree(dir.path()).expect("tree"))
    }

    fn info(sha_digit: char, message: &str) -> CommitInfo {
        let sha: String = std::iter::repeat_n(sha_digit, 40).collect();
        CommitInfo {
            sha,
            message: message.into(),
            committer: "Ann <ann@example.com>".into(),
            author: "Ann <ann@example.com>".into(),
            time: "2026-11-26T00:00:00Z".into(),
        }
    }

    fn source() -> Source {
        Source::new(
            "/nonexistent/missionctl-test",
            "main",
            std::path::Path::new("/tmp"),
        )
    }

    /// What serves after applying `apply` to `serving`.
    fn served(mut serving: ServingMap, apply: &CommitApply) -> ServingMap {
        for s in &apply.serving {
            serving.insert(s.pack_id.clone(), s.clone());
        }
        serving
    }

    fn kinds(a: &CommitApply) -> Vec<(String, DecisionKind)> {
        a.decisions
            .iter()
            .map(|d| (d.pack_id.clone(), d.decision))
            .collect()
    }

    const HR: &str = "packs/domains/hr-ops/pack.yaml";

    /// The first pass over `base`: everything imported.
    fn imported(base: &Repo) -> CommitApply {
        plan_commit(
            &source(),
            &HashMap::new(),
            &HashMap::new(),
            true,
            base,
            &info('a', "init"),
            &History::new(),
        )
    }

    #[test]
    fn initial_import_promotes_everything_at_once() {
        let cur = packs(&[]);
        let a = plan_commit(
            &source(),
            &HashMap::new(),
            &HashMap::new(),
            true,
            &cur,
            &info('a', "init"),
            &History::new(),
        );
        assert!(a.good);
        assert_eq!(a.decisions.len(), cur.packs.len());
        assert!(
            a.decisions
                .iter()
                .all(|d| d.decision == DecisionKind::Promote
                    && d.rollout.as_ref().is_some_and(|r| r.immediate))
        );
        assert_eq!(a.serving.len(), cur.packs.len());
    }

    #[test]
    fn a_changed_pack_is_promoted_with_a_canary_plan_and_pr_number() {
        let base = packs(&[]);
        let a0 = imported(&base);
        let serving = served(HashMap::new(), &a0);
        let head = packs(&[(HR, "version: 1.0.0", "version: 1.0.1")]);
        let a = plan_commit(
            &source(),
            &serving,
            &HashMap::new(),
            false,
            &head,
            &info('b', "Merge pull request #12 from x/y"),
            &History::new(),
        );
        assert_eq!(
            kinds(&a),
            vec![("hr-ops-pack".to_string(), DecisionKind::Promote)]
        );
        let d = &a.decisions[0];
        assert_eq!(d.pull_request, Some(12));
        let plan = d.rollout.as_ref().expect("plan");
        assert!(!plan.immediate);
        assert_eq!(plan.canary_steps().last(), Some(&100));
        assert_eq!(plan.from_commit.as_deref(), Some(a0.new_last.as_str()));
        assert_eq!(
            d.champion_pack_version,
            serving.get("hr-ops-pack").map(|s| s.version.clone())
        );
    }

    #[test]
    fn a_return_to_earlier_content_is_a_rollback() {
        let base = packs(&[]);
        let a0 = imported(&base);
        let mut history = History::new();
        for s in &a0.serving {
            history.insert(
                (s.pack_id.clone(), s.digest.clone()),
                (s.version.clone(), s.commit.clone()),
            );
        }
        let head = packs(&[(HR, "version: 1.0.0", "version: 1.0.1")]);
        let a1 = plan_commit(
            &source(),
            &served(HashMap::new(), &a0),
            &HashMap::new(),
            false,
            &head,
            &info('b', "bump"),
            &history,
        );
        let serving = served(served(HashMap::new(), &a0), &a1);
        let a2 = plan_commit(
            &source(),
            &serving,
            &HashMap::new(),
            false,
            &base,
            &info('c', "back"),
            &history,
        );
        assert_eq!(
            kinds(&a2),
            vec![("hr-ops-pack".to_string(), DecisionKind::Rollback)]
        );
        assert!(
            a2.decisions[0]
                .rollout
                .as_ref()
                .is_some_and(|r| r.immediate)
        );
    }

    #[test]
    fn invalid_content_is_refused_and_serves_nothing_new() {
        let base = packs(&[]);
        let a0 = imported(&base);
        let broken = packs(&[(HR, "version: 1.0.0", "version: not-a-version")]);
        let a = plan_commit(
            &source(),
            &served(HashMap::new(), &a0),
            &HashMap::new(),
            false,
            &broken,
            &info('b', "oops"),
            &History::new(),
        );
        assert!(!a.good);
        assert!(a.serving.is_empty());
        assert!(!a.decisions.is_empty());
        assert!(
            a.decisions
                .iter()
                .all(|d| d.decision == DecisionKind::Reject),
            "{:?}",
            kinds(&a)
        );
        assert!(a.decisions[0].reason.contains("fails validation"));
    }

    #[test]
    fn a_held_version_is_refused_and_a_newer_one_releases_the_hold() {
        let base = packs(&[]);
        let a0 = imported(&base);
        let serving = served(HashMap::new(), &a0);
        let holds: HashMap<String, String> =
            [("hr-ops-pack".to_string(), "1.0.1".to_string())].into();
        let held = packs(&[(HR, "version: 1.0.0", "version: 1.0.1")]);
        let a = plan_commit(
            &source(),
            &serving,
            &holds,
            false,
            &held,
            &info('b', "again"),
            &History::new(),
        );
        assert_eq!(
            kinds(&a),
            vec![("hr-ops-pack".to_string(), DecisionKind::Reject)]
        );
        assert!(a.serving.is_empty());
        let newer = packs(&[(HR, "version: 1.0.0", "version: 1.0.2")]);
        let a = plan_commit(
            &source(),
            &serving,
            &holds,
            false,
            &newer,
            &info('c', "fix"),
            &History::new(),
        );
        assert_eq!(a.release_holds, vec!["hr-ops-pack".to_string()]);
        assert_eq!(
            kinds(&a),
            vec![("hr-ops-pack".to_string(), DecisionKind::Promote)]
        );
    }

    /// Issue 16, point 2: a message or trailer alone never skips the canary.
    #[test]
    fn a_revert_message_with_new_content_is_a_promotion_with_a_canary() {
        let base = packs(&[]);
        let a0 = imported(&base);
        let head = packs(&[(HR, "version: 1.0.0", "version: 1.0.1")]);
        for message in [
            "Revert \"x\"\n\nThis reverts commit 0123456789abcdef0123456789abcdef01234567.",
            "Roll back hr-ops-pack\n\nMissionctl-Rollback: hr-ops-pack\n",
        ] {
            let a = plan_commit(
                &source(),
                &served(HashMap::new(), &a0),
                &HashMap::new(),
                false,
                &head,
                &info('b', message),
                &History::new(),
            );
            assert_eq!(
                kinds(&a),
                vec![("hr-ops-pack".to_string(), DecisionKind::Promote)]
            );
            assert!(
                a.decisions[0]
                    .rollout
                    .as_ref()
                    .is_some_and(|r| !r.immediate)
            );
        }
    }

    #[test]
    fn pull_request_numbers_from_merge_and_squash_messages() {
        assert_eq!(pull_request_of("Merge pull request #7 from a/b"), Some(7));
        assert_eq!(pull_request_of("Fix tone (#42)"), Some(42));
        assert_eq!(pull_request_of("no number"), None);
    }
}
