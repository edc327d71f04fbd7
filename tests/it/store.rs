//! One suite for both state-store implementations.

use missionctl::model::{ArmLabel, Decision, DecisionKind, RolloutPlan, RunRow, Serving, Word};
use missionctl::store::{CommitApply, HistoryEntry, Store};

fn decision(commit: &str, pack: &str, kind: &str) -> Decision {
    Decision {
        decision_id: format!("{commit}-{pack}"),
        scope_type: "domain".into(),
        scope_id: pack.into(),
        champion_pack_version: Some("1.0.0".into()),
        challenger_pack_version: "1.1.0".into(),
        decision: DecisionKind::parse(kind).expect("decision kind"),
        reason: "test".into(),
        decided_by: "tester".into(),
        created_at: "2026-11-26T00:00:00Z".into(),
        pack_id: pack.into(),
        commit: commit.into(),
        pull_request: Some(7),
        evidence_url: None,
        rollout: Some(RolloutPlan {
            steps: vec![5, 25, 100],
            ..RolloutPlan::default()
        }),
        figures: None,
    }
}

fn serving(pack: &str, digest: &str, commit: &str) -> Serving {
    Serving {
        pack_id: pack.into(),
        scope_type: "domain".into(),
        scope_id: pack.into(),
        version: format!("1.0.0+{digest}"),
        digest: digest.into(),
        commit: commit.into(),
    }
}

fn suite(url: &str) {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let s = Store::connect(url).await.expect("connect");
        // Migrations are idempotent.
        let s2 = Store::connect(url).await.expect("reconnect");
        // Cache.
        s.cache_put("k", "v").await.expect("put");
        s2.cache_put("k", "w").await.expect("put twice");
        assert_eq!(s.cache_get("k").await.expect("get").as_deref(), Some("v"));
        // Spend ledger.
        s.spend_record("acme", "2026-11-26", 0.5, "eval", "r")
            .await
            .expect("spend");
        s.spend_record("acme", "2026-11-26", 0.25, "judge", "r")
            .await
            .expect("spend");
        assert!((s.spend_on("acme", "2026-11-26").await.expect("sum") - 0.75).abs() < 1e-9);
        // First commit: no expected position.
        let mut a = CommitApply {
            source: "src".into(),
            branch: "main".into(),
            expected_last: None,
            new_last: "c1".into(),
            decisions: vec![
                decision("c1", "hr", "promote"),
                decision("c1", "legal", "promote"),
            ],
            serving: vec![serving("hr", "d1", "c1"), serving("legal", "d2", "c1")],
            removed: vec![],
            good: true,
            release_holds: vec![],
            rollouts: vec![],
            transition: None,
        };
        assert!(s.apply_commit(&a).await.expect("apply"));
        // Applying the same commit again is refused and writes nothing.
        assert!(!s2.apply_commit(&a).await.expect("apply again"));
        assert_eq!(s.decisions(None).await.expect("list").len(), 2);
        // A stale expected position is refused.
        a.expected_last = Some("nope".into());
        a.new_last = "c2".into();
        a.decisions = vec![decision("c2", "hr", "rollback")];
        assert!(!s.apply_commit(&a).await.expect("stale"));
        // Two writers racing from the same position: exactly one wins.
        a.expected_last = Some("c1".into());
        a.serving = vec![serving("hr", "d3", "c2")];
        a.removed = vec!["legal".into()];
        let (x, y) = tokio::join!(s.apply_commit(&a), s2.apply_commit(&a));
        assert_eq!(x.expect("x") as u8 + y.expect("y") as u8, 1);
        let all = s.decisions(None).await.expect("list");
        assert_eq!(
            all.iter()
                .map(|d| (d.commit.as_str(), d.pack_id.as_str()))
                .collect::<Vec<_>>(),
            [("c1", "hr"), ("c1", "legal"), ("c2", "hr")]
        );
        assert_eq!(all[0], decision("c1", "hr", "promote"));
        assert_eq!(s.decisions(Some("hr")).await.expect("hr").len(), 2);
        let sv = s.serving("src").await.expect("serving");
        assert_eq!(sv, vec![serving("hr", "d3", "c2")]);
        assert_eq!(
            s.history_lookup("src", "hr", "d1").await.expect("h"),
            Some(HistoryEntry {
                pack_id: "hr".into(),
                digest: "d1".into(),
                version: "1.0.0+d1".into(),
                commit: "c1".into(),
            })
        );
        assert_eq!(s.history("src").await.expect("h").len(), 3);
        // Halting stops further application until acknowledged.
        s.halt("src", "main", "rewritten").await.expect("halt");
        assert_eq!(
            s.source_state("src")
                .await
                .expect("state")
                .and_then(|x| x.halted)
                .as_deref(),
            Some("rewritten")
        );
        a.expected_last = Some("c2".into());
        a.new_last = "c3".into();
        a.decisions = vec![decision("c3", "hr", "promote")];
        assert!(!s.apply_commit(&a).await.expect("halted"));
        s.acknowledge("src", "main", "c2").await.expect("ack");
        assert!(s.apply_commit(&a).await.expect("resumed"));
        // Runs: bulk insert, duplicates ignored, samples by arm.
        let run = |id: &str, ok: bool, arm: &str| RunRow {
            run_id: id.into(),
            tenant_id: "acme".into(),
            user_id: "u".into(),
            agent_id: "a".into(),
            pack_id: "p".into(),
            pack_version: "1".into(),
            task_type: "t".into(),
            latency_ms: 10.0,
            cost_usd: 0.5,
            success_bool: ok,
            error_code: (!ok).then(|| "timeout".to_string()),
            created_at: "2026-11-26T10:00:00Z".into(),
            attempts: None,
            arm: Some(arm.parse().expect("arm label")),
            other_arms: Vec::new(),
        };
        let rows: Vec<_> = (0..6000)
            .map(|i| {
                run(
                    &format!("r{i}"),
                    i % 4 != 0,
                    if i % 2 == 0 { "x:canary" } else { "x:champion" },
                )
            })
            .collect();
        assert_eq!(s.insert_runs(&rows).await.expect("runs").inserted, 6000);
        assert_eq!(
            s2.insert_runs(&rows[..10]).await.expect("again").inserted,
            0
        );
        assert_eq!(s.count_runs().await.expect("count"), 6000);
        let x_canary: ArmLabel = "x:canary".parse().expect("arm label");
        let canary = s
            .run_sample(&x_canary, "2026-11-26T00:00:00Z")
            .await
            .expect("sample");
        assert_eq!(canary.success.len(), 3000);
        assert_eq!(canary.success.iter().filter(|x| !**x).count(), 1500);
        assert_eq!(canary.errors.get("timeout"), Some(&1500));
        assert!(
            s.run_sample(&x_canary, "2026-11-27T00:00:00Z")
                .await
                .expect("later")
                .success
                .is_empty()
        );
        // Issue 10 point 7: a row the database refuses is reported by its
        // index and every other row of the batch is kept. PostgreSQL cannot
        // store a NUL in text; SQLite can, so there all rows go in. (The
        // telemetry checks refuse NULs before the store on both; this is
        // the store's own guarantee for what those checks do not foresee.)
        let mut batch: Vec<_> = (0..1000)
            .map(|i| run(&format!("n{i}"), true, "y:canary"))
            .collect();
        batch[617].user_id = "bad\u{0}user".into();
        let done = s
            .insert_runs(&batch)
            .await
            .expect("a refused row is not a store failure");
        if url.starts_with("postgres") {
            assert_eq!(done.inserted, 999);
            assert_eq!(done.refused.len(), 1);
            assert_eq!(done.refused[0].0, 617, "{:?}", done.refused);
        } else {
            assert_eq!((done.inserted, done.refused.len()), (1000, 0));
        }
        assert_eq!(
            s.count_runs().await.expect("count"),
            6000 + done.inserted as i64
        );
    });
}

crate::both_stores!(store_suite, |url: &str| super::suite(url));

/// Regression: a daemon and CLI readers opening a new SQLite store at the
/// same moment raced on migrations, and the loser exited with
/// "UNIQUE constraint failed: _sqlx_migrations.version".
#[test]
fn concurrent_first_opens_of_a_sqlite_store_all_succeed() {
    let dir = tempfile::tempdir().expect("tmp");
    // Processes, not tasks: each has its own connections, as in production.
    let procs: Vec<std::process::Child> = (0..8)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_missionctl"))
                .args([
                    "decisions",
                    "--format",
                    "json",
                    "--db",
                    &format!("sqlite://{}", dir.path().join("fresh.db").display()),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for p in procs {
        let out = p.wait_with_output().expect("wait");
        crate::util::assert_success(&out);
    }
}

/// Issue 16, point 7: run timestamps are stored in UTC in one fixed form and
/// windows compare times: `06:00-05:00` (11:00Z) is after a 10:30Z step
/// start, and `10:29:59.9Z` is before it.
fn windows_compare_times(url: &str) {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let s = Store::connect(url).await.expect("connect");
        let label: ArmLabel = "w:canary".parse().expect("label");
        let row = |id: &str, at: &str| {
            format!(
                r#"{{"run_id":"{id}","tenant_id":"acme","user_id":"u","agent_id":"a","pack_id":"p","pack_version":"1","task_type":"t","latency_ms":1.0,"cost_usd":0.0,"success_bool":true,"error_code":null,"created_at":"{at}"}}"#
            )
        };
        let body = [
            row("east", "2026-11-26T06:00:00-05:00"),
            row("early", "2026-11-26T10:29:59.9Z"),
            row("late", "2026-11-26T10:30:00.5+00:00"),
        ]
        .join("\n");
        let l = label.clone();
        let rep = missionctl::registry::ingest::ingest(
            &s,
            &body,
            &missionctl::telemetry::TenantScope(None),
            &move |_| {
                Ok(vec![missionctl::telemetry::ArmServed {
                    label: l.clone(),
                    since: "2026-01-01T00:00:00Z".into(),
                }])
            },
        )
        .await
        .expect("ingest");
        assert_eq!(rep.accepted, 3, "{:?}", rep.errors);
        let since = missionctl::time_util::normalize("2026-11-26T10:30:00Z").expect("since");
        let sample = s.run_sample(&label, &since).await.expect("sample");
        assert_eq!(sample.success.len(), 2, "east (11:00Z) and late count; early does not");
    });
}
crate::both_stores!(run_windows_compare_times, |url: &str| {
    super::windows_compare_times(url);
});

/// A run that is evidence for two rollouts (a domain and a tenant canary on
/// its chain) is in both arms' samples; sending it again, alone or in a
/// batch with new runs, adds nothing to either; a run id repeated within a
/// batch is stored, and labelled, once.
fn runs_in_two_rollouts_count_once(url: &str) {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let s = Store::connect(url).await.expect("connect");
        let (dom, ten): (ArmLabel, ArmLabel) = (
            "dom:canary".parse().expect("label"),
            "ten:champion".parse().expect("label"),
        );
        let run = |id: &str, ok: bool| RunRow {
            run_id: id.into(),
            tenant_id: "acme".into(),
            user_id: "u".into(),
            agent_id: "a".into(),
            pack_id: "acme-tenant".into(),
            pack_version: "1.2.0+sha256.0000".into(),
            task_type: "t".into(),
            latency_ms: 10.0,
            cost_usd: 0.5,
            success_bool: ok,
            error_code: (!ok).then(|| "timeout".to_string()),
            created_at: format!("2026-11-26T10:00:{:02}.000000000Z", id.len()),
            attempts: None,
            arm: Some(ten.clone()),
            other_arms: vec![dom.clone()],
        };
        let sizes = || async {
            let a = s
                .run_sample(&dom, "2026-11-26T00:00:00Z")
                .await
                .expect("dom");
            let b = s
                .run_sample(&ten, "2026-11-26T00:00:00Z")
                .await
                .expect("ten");
            (
                a.success.len(),
                b.success.len(),
                a.errors.get("timeout").copied(),
            )
        };
        let first: Vec<RunRow> = (0..700)
            .map(|i| run(&format!("r{i}"), i % 7 != 0))
            .collect();
        assert_eq!(s.insert_runs(&first).await.expect("runs").inserted, 700);
        assert_eq!(sizes().await, (700, 700, Some(100)));
        assert_eq!(s.insert_runs(&first).await.expect("again").inserted, 0);
        assert_eq!(sizes().await, (700, 700, Some(100)));
        // Old and new runs together, and one new run twice.
        let mut mixed: Vec<RunRow> = first[..300].to_vec();
        mixed.extend((700..710).map(|i| run(&format!("r{i}"), true)));
        mixed.push(run("r705", false));
        let done = s.insert_runs(&mixed).await.expect("mixed");
        assert_eq!(done.inserted, 10);
        assert_eq!(sizes().await, (710, 710, Some(100)));
        // The rollout's runs read back as `missionctl runs --arm` does.
        let f = missionctl::run_query::RunFilter {
            arm: Some(missionctl::run_query::ArmFilter::Exact(dom.to_string())),
            ..Default::default()
        };
        let runs = s.query_runs(&f).await.expect("query");
        assert_eq!(runs.len(), 710);
        assert!(runs.iter().all(|r| r.arm.as_ref() == Some(&ten)));
    });
}
crate::both_stores!(run_in_two_rollouts_counts_once, |url: &str| {
    super::runs_in_two_rollouts_count_once(url);
});

/// Issue 23: leadership is an epoch, and a transition is written only while
/// its writer's epoch is the lease's and the rollout is at the version it
/// was computed on.
fn fencing(url: &str) {
    use missionctl::model::{Rollout, RolloutState};
    use missionctl::store::{Applied, Fence, Transition};
    use std::time::Duration;
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let s = Store::connect(url).await.expect("connect");
        let ttl = Duration::from_millis(300);
        let a = s.try_lease("l", "A", ttl).await.expect("lease");
        assert_eq!(a, Some(1));
        assert_eq!(s.try_lease("l", "B", ttl).await.expect("lease"), None);
        // Renewal keeps the epoch.
        assert_eq!(s.try_lease("l", "A", ttl).await.expect("lease"), Some(1));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // Taken over after expiry: a new epoch.
        let b = s.try_lease("l", "B", ttl).await.expect("lease");
        assert_eq!(b, Some(2));
        // A rollout to move.
        let mut apply = CommitApply {
            source: "src".into(),
            branch: "main".into(),
            new_last: "c1".into(),
            ..CommitApply::default()
        };
        let r = Rollout {
            rollout_id: "r1".into(),
            decision_id: "r1".into(),
            source: "src".into(),
            pack_id: "hr".into(),
            from_version: Some("1.0.0".into()),
            to_version: "1.1.0".into(),
            from_commit: None,
            to_commit: "c1".into(),
            steps: vec![10, 100],
            step: 0,
            state: RolloutState::Running,
            detail: None,
            started_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            step_started_at: "2026-01-01T00:00:00Z".into(),
            params: RolloutPlan::default(),
            row_version: -1,
        };
        apply.rollouts = vec![r.clone()];
        assert!(s.apply_commit(&apply).await.expect("apply"));
        let read = s.rollouts(true).await.expect("rollouts");
        assert_eq!(read[0].row_version, 0);
        let fence = |holder: &str, epoch| Fence {
            lease: "l".into(),
            holder: holder.into(),
            epoch,
        };
        let mut moved = read[0].clone();
        moved.state = RolloutState::RolledBack;
        let t = |f: Fence, r: Rollout| Transition {
            fence: Some(f),
            rollout: Some(r),
            ..Transition::default()
        };
        // The old leader (epoch 1) writes nothing.
        assert_eq!(
            s.apply_transition(&t(fence("A", 1), moved.clone()))
                .await
                .expect("t"),
            Applied::Fenced
        );
        assert_eq!(
            s.rollouts(true).await.expect("r")[0].state,
            RolloutState::Running
        );
        // The new one does, once: the same transition again is stale.
        assert_eq!(
            s.apply_transition(&t(fence("B", 2), moved.clone()))
                .await
                .expect("t"),
            Applied::Written
        );
        assert_eq!(
            s.apply_transition(&t(fence("B", 2), moved))
                .await
                .expect("t"),
            Applied::Stale
        );
        // A release keeps the epoch growing: the next holder gets 3.
        s.release_lease("l", "B").await.expect("release");
        assert_eq!(s.try_lease("l", "A", ttl).await.expect("lease"), Some(3));
    });
}

crate::both_stores!(leases_fence_transitions, |url: &str| super::fencing(url));
