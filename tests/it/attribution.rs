//! Run attribution when more than one pack on a chain has a canary: each
//! rollout gets every run as evidence for the arm that run was really
//! served, on its own, and a run whose version does not tell a rollout's
//! arms apart is evidence for neither. A real `serve` on SQLite and
//! PostgreSQL, real harness-style traffic.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::reconcile::bump;
use crate::registry::{get, post_runs, rollout_state, serving_fleet_on, until};
use missionctl::model::{Arm, ArmLabel, Word};
use missionctl::rollout::arm;
use missionctl::run_query::{ArmFilter, RunFilter};
use missionctl::store::Store;

const HR: &str = "packs/domains/hr-ops/pack.yaml";
const ACME: &str = "packs/tenants/acme/pack.yaml";
const DOMAIN: &str = "hr-ops-pack";
const TENANT: &str = "acme-tenant";

/// `/v1/resolve` on acme's hr-ops chain for `user`.
fn resolve(port: u16, token: &str, user: &str) -> Value {
    let (code, r) = get(
        port,
        &format!("/v1/resolve?domain=hr-ops&tenant=acme&user={user}"),
        token,
    );
    assert_eq!(code, 200, "{r}");
    r
}

/// The arm `r` (a resolution) served `pack`'s rollout, if it is rolling.
fn served(r: &Value, pack: &str) -> Option<Arm> {
    r["rollouts"]
        .as_array()?
        .iter()
        .find(|x| x["pack_id"] == pack)
        .and_then(|x| Arm::parse(x["arm"].as_str()?).ok())
}

/// A run record for what `r` served `user`.
fn run(id: &str, user: &str, r: &Value, ok: bool) -> Value {
    json!({"run_id": id, "tenant_id": "acme", "user_id": user, "agent_id": "hr-bot", "pack_id": r["pack_id"], "pack_version": r["pack_version"], "task_type": "qa", "latency_ms": 120.0, "cost_usd": 0.002, "success_bool": ok, "error_code": if ok { Value::Null } else { json!("tool_error") }, "created_at": missionctl::time_util::now_rfc3339()})
}

fn ndjson(rows: &[Value]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

/// The run ids of each label, read back as `missionctl runs --arm` does,
/// and each label's canary-controller sample size.
fn evidence(db: &str, labels: &[ArmLabel]) -> BTreeMap<String, (Vec<String>, usize)> {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let s = Store::connect(db).await.expect("store");
        let mut out = BTreeMap::new();
        for l in labels {
            let f = RunFilter {
                arm: Some(ArmFilter::Exact(l.to_string())),
                ..RunFilter::default()
            };
            let mut ids: Vec<String> = s
                .query_runs(&f)
                .await
                .expect("runs")
                .into_iter()
                .map(|r| r.run_id)
                .collect();
            ids.sort();
            let n = s
                .run_sample(l, "2000-01-01T00:00:00Z")
                .await
                .expect("sample")
                .success
                .len();
            out.insert(l.to_string(), (ids, n));
        }
        out
    })
}

/// Users of acme, by the arms (domain, tenant) they are hashed into at
/// `percent` for both rollouts: `per` of each of the four combinations.
fn users_by_combination(percent: u32, per: usize) -> Vec<((Arm, Arm), Vec<String>)> {
    let combos = [
        (Arm::Champion, Arm::Champion),
        (Arm::Canary, Arm::Champion),
        (Arm::Champion, Arm::Canary),
        (Arm::Canary, Arm::Canary),
    ];
    combos
        .into_iter()
        .map(|c| {
            let users: Vec<String> = (0..100_000)
                .map(|i| format!("mix-{i}"))
                .filter(|u| (arm(DOMAIN, u, percent), arm(TENANT, u, percent)) == c)
                .take(per)
                .collect();
            assert_eq!(users.len(), per, "{c:?}");
            (c, users)
        })
        .collect()
}

/// A domain and a tenant rollout at once on acme's chains: users in each
/// of the four arm combinations are evidence for both rollouts' right arms
/// (a re-sent batch counts once); then, on traffic where only the tenant's
/// canary fails, the tenant rollout rolls back on its own evidence while
/// the domain rollout, whose arms see the same mix of tenant arms, advances.
fn two_rollouts_on_one_chain(db: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let (_dir, f, t, port, _s) = serving_fleet_on(dir, db);
    f.merge("both", 31, |f| {
        f.edit(
            "packs/domains/hr-ops/prompts/role.md",
            "workplace\npolicies",
            "workplace\nPolicies",
        );
        bump(f, HR, "1.1.0");
        f.edit(
            "packs/tenants/acme/context.md",
            "warehouse robots",
            "warehouse robots and drones",
        );
        bump(f, ACME, "1.2.0");
    });
    f.push();
    let domain = until("the domain rollout", Duration::from_secs(30), || {
        rollout_state(port, &t.admin, "1.1.0")
    });
    let tenant = until("the tenant rollout", Duration::from_secs(30), || {
        rollout_state(port, &t.admin, "1.2.0")
    });
    assert_eq!(
        (&domain["pack_id"], &tenant["pack_id"]),
        (&json!(DOMAIN), &json!(TENANT))
    );
    assert_eq!(
        (&domain["percent"], &tenant["percent"]),
        (&json!(10), &json!(10))
    );
    let label = |r: &Value, a: Arm| ArmLabel::new(r["rollout_id"].as_str().expect("id"), a);
    let labels = [
        label(&domain, Arm::Champion),
        label(&domain, Arm::Canary),
        label(&tenant, Arm::Champion),
        label(&tenant, Arm::Canary),
    ];

    // Two users of each combination, one run each; the registry serves
    // each user the combination its hashes say.
    let groups = users_by_combination(10, 2);
    until("both canaries served", Duration::from_secs(20), || {
        let u = &groups[3].1[0];
        let r = resolve(port, &t.acme_harness, u);
        (served(&r, DOMAIN) == Some(Arm::Canary) && served(&r, TENANT) == Some(Arm::Canary))
            .then_some(())
    });
    let mut rows = Vec::new();
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((d, tn), users) in &groups {
        for u in users {
            let r = resolve(port, &t.acme_harness, u);
            assert_eq!(
                (served(&r, DOMAIN), served(&r, TENANT)),
                (Some(*d), Some(*tn))
            );
            let id = format!("{u}-run");
            rows.push(run(&id, u, &r, true));
            for l in [label(&domain, *d), label(&tenant, *tn)] {
                want.entry(l.to_string()).or_default().push(id.clone());
            }
        }
    }
    let body = ndjson(&rows);
    let (code, resp) = post_runs(port, &t.acme_harness, body.as_bytes());
    assert_eq!(code, 200, "{resp}");
    let rep: Value = serde_json::from_str(&resp).expect("report");
    assert_eq!(rep["accepted"], 8, "{rep}");
    let check = |what: &str| {
        let got = evidence(db, &labels);
        for l in &labels {
            let mut ids = want.get(&l.to_string()).cloned().unwrap_or_default();
            ids.sort();
            let (got_ids, n) = &got[&l.to_string()];
            assert_eq!(got_ids, &ids, "{what}: runs of {l}: {got:?}");
            assert_eq!(*n, ids.len(), "{what}: sample of {l}: {got:?}");
        }
    };
    check("first send");
    // The same batch again (a harness retrying after a lost answer): every
    // run is a duplicate and no arm counts any run twice.
    let (code, resp) = post_runs(port, &t.acme_harness, body.as_bytes());
    assert_eq!(code, 200, "{resp}");
    let rep: Value = serde_json::from_str(&resp).expect("report");
    assert_eq!(
        (&rep["accepted"], &rep["duplicates"]),
        (&json!(0), &json!(8)),
        "{rep}"
    );
    check("re-sent");
    // The run's own `arm` (what `missionctl runs` and the console show) is
    // the most specific rollout's: the tenant's.
    let (code, v) = get(port, "/v1/runs?limit=100", &t.acme_viewer);
    assert_eq!(code, 200, "{v}");
    for r in v["runs"].as_array().expect("runs") {
        assert!(
            r["arm"]
                .as_str()
                .is_some_and(|a| a.starts_with(tenant["rollout_id"].as_str().expect("id"))),
            "{r}"
        );
    }

    // Traffic from a fixed mix of users, each domain arm with the same
    // share of tenant canary users (1 in 6): only the tenant's canary fails
    // often (6 runs in 25, against 1 in 100), so both domain arms see the
    // same failures, under the domain's error-rate ceiling, and the
    // tenant's canary is far worse than its champion. Runs per combination
    // are counted so the outcomes are deterministic.
    let mix: Vec<_> = users_by_combination(10, 30)
        .into_iter()
        .map(|(c, mut users)| {
            if c.1 == Arm::Canary {
                users.truncate(6);
            }
            (c, users)
        })
        .collect();
    let mut seq = 0usize;
    let mut counters = BTreeMap::new();
    let done = until(
        "the tenant's rollback and the domain's advance",
        Duration::from_secs(120),
        || {
            let mut rows = Vec::new();
            for (_, users) in &mix {
                for u in users {
                    let r = resolve(port, &t.acme_harness, u);
                    let combo = (served(&r, DOMAIN), served(&r, TENANT));
                    for _ in 0..3 {
                        let c = counters.entry(combo).or_insert(0usize);
                        *c += 1;
                        let ok = if combo.1 == Some(Arm::Canary) {
                            *c % 25 >= 6
                        } else {
                            *c % 100 != 0
                        };
                        seq += 1;
                        rows.push(run(&format!("mix-run-{seq}"), u, &r, ok));
                    }
                }
            }
            for _ in 0..20 {
                let (code, resp) = post_runs(port, &t.acme_harness, ndjson(&rows).as_bytes());
                if code == 429 || code == 503 {
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
                assert_eq!(code, 200, "{resp}");
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
            let d = rollout_state(port, &t.admin, "1.1.0")?;
            let tn = rollout_state(port, &t.admin, "1.2.0")?;
            assert_ne!(d["state"], "rolled_back", "the domain rolled back: {d}");
            assert_ne!(tn["state"], "completed", "the tenant completed: {tn}");
            let advanced = d["state"] == "completed" || d["percent"].as_u64() > Some(10);
            (advanced && tn["state"] == "rolled_back").then_some((d, tn))
        },
    );
    let (d, tn) = done;
    // Rolled back on its own figures (with no evidence it would only stall).
    assert!(
        tn["detail"]["why"]
            .as_str()
            .is_some_and(|w| w.contains("canary") && !w.contains("missing data")),
        "the tenant rolled back on its evidence: {tn}"
    );
    assert!(
        tn["canary"]["runs"].as_u64() > Some(0) && tn["champion"]["runs"].as_u64() > Some(0),
        "{tn}"
    );
    // The domain advanced on its own figures, mixed-arm runs included.
    let step = &d["detail"]["history"][0];
    assert_eq!(step["outcome"], "advanced", "{d}");
    assert!(
        step["figures"]["canary"]["runs"].as_u64() >= Some(150)
            && step["figures"]["champion"]["runs"].as_u64() >= Some(150),
        "{d}"
    );
}

crate::both_stores!(domain_and_tenant_canaries, |db: &str| {
    super::two_rollouts_on_one_chain(db);
});

/// A domain pack whose new version changes nothing on the tenant's chain
/// (a version bump alone): on that chain its canary renders exactly like
/// its champion, so a tenant-chain run is evidence for neither arm (it was
/// counted as canary). On the domain's own chain the versions differ and
/// runs are labelled as before.
#[test]
fn a_canary_that_renders_like_its_champion_counts_no_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let (_dir, f, t, port, _s) = serving_fleet_on(dir, &db);
    f.merge("bump", 32, |f| bump(f, HR, "1.1.0"));
    f.push();
    let rollout = until("the rollout", Duration::from_secs(30), || {
        rollout_state(port, &t.admin, "1.1.0")
    });
    let user = |a: Arm| {
        (0..10_000)
            .map(|i| format!("same-{i}"))
            .find(|u| arm(DOMAIN, u, 10) == a)
            .expect("a user")
    };
    let (canary_user, champion_user) = (user(Arm::Canary), user(Arm::Champion));
    until("the canary served", Duration::from_secs(20), || {
        (served(&resolve(port, &t.acme_harness, &canary_user), DOMAIN) == Some(Arm::Canary))
            .then_some(())
    });
    let (tc, th) = (
        resolve(port, &t.acme_harness, &canary_user),
        resolve(port, &t.acme_harness, &champion_user),
    );
    assert_eq!(served(&th, DOMAIN), Some(Arm::Champion), "{th}");
    assert_eq!(
        tc["pack_version"], th["pack_version"],
        "the tenant chain renders alike"
    );
    // The domain's own chain, as an agent (hashed as `agent:<name>`) is
    // served it; any tenant may report runs of a domain pack.
    let agent = |a: Arm| {
        (0..10_000)
            .map(|i| format!("bot-{i}"))
            .find(|b| arm(DOMAIN, &format!("agent:{b}"), 10) == a)
            .expect("an agent")
    };
    let on_domain = |a: Arm| {
        let (code, r) = get(
            port,
            &format!("/v1/resolve?domain=hr-ops&agent={}", agent(a)),
            &t.admin,
        );
        assert_eq!(code, 200, "{r}");
        assert_eq!(served(&r, DOMAIN), Some(a), "{r}");
        r
    };
    let (dc, dh) = (on_domain(Arm::Canary), on_domain(Arm::Champion));
    assert_ne!(dc["pack_version"], dh["pack_version"], "{dc} {dh}");
    let rows = [
        run("tenant-canary", &canary_user, &tc, true),
        run("tenant-champion", &champion_user, &th, true),
        run("domain-canary", &canary_user, &dc, true),
        run("domain-champion", &champion_user, &dh, true),
    ];
    let (code, resp) = post_runs(port, &t.acme_harness, ndjson(&rows).as_bytes());
    assert_eq!(code, 200, "{resp}");
    let id = rollout["rollout_id"].as_str().expect("id");
    let got = evidence(
        &db,
        &[
            ArmLabel::new(id, Arm::Canary),
            ArmLabel::new(id, Arm::Champion),
        ],
    );
    assert_eq!(
        got[&format!("{id}:canary")],
        (vec!["domain-canary".to_string()], 1),
        "{got:?}"
    );
    assert_eq!(
        got[&format!("{id}:champion")],
        (vec!["domain-champion".to_string()], 1),
        "{got:?}"
    );
}
