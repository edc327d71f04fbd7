//! `/ui/`: the fleet. Every scope chain with what it serves and its KPI
//! health over the last day against the targets its resolved pack sets
//! (`kpis:`), and what needs attention: rollouts in progress, stalled or
//! held, reverts not in git yet, held versions, chains below a target, and
//! replicas that stopped beating (each `serve` replica writes a heartbeat
//! at every controller-lease renewal, a third of the lease's length; one
//! not heard from in three of its intervals is stale) or serve another
//! commit than this one.

use maud::{Markup, html};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::*;
use crate::model::{Bound, Kpis, RunSample};
use crate::store::{KpiRun, ReplicaBeat};

/// The window KPI health is measured over.
pub const HEALTH_HOURS: i64 = 24;
/// At most this many runs (the newest) are read for KPI health.
const HEALTH_CAP: i64 = 200_000;

/// A chain's KPIs over the window against its targets.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub runs: usize,
    /// Targets met: `success_rate 97.0% ≥ 95.0%`.
    pub met: Vec<String>,
    /// Targets missed, the same way.
    pub missed: Vec<String>,
}

/// The measured value of target `name`, and how to show it.
/// How a KPI's value is shown.
type Show = fn(f64) -> String;

fn measured(k: &Kpis, name: &str) -> Option<(f64, Show)> {
    fn pct(x: f64) -> String {
        format!("{:.1}%", x * 100.0)
    }
    fn ms(x: f64) -> String {
        format!("{x:.0} ms")
    }
    fn usd(x: f64) -> String {
        format!("${x:.4}")
    }
    match name {
        "success_rate" => k.success_rate.map(|v| (v, pct as Show)),
        "error_rate" => k.error_rate.map(|v| (v, pct as Show)),
        "p95_latency_ms" => k.latency_p95_ms.map(|v| (v, ms as Show)),
        "p50_latency_ms" => k.latency_p50_ms.map(|v| (v, ms as Show)),
        "cost_per_run_usd" => k.cost_per_run_usd.map(|v| (v, usd as Show)),
        _ => None,
    }
}

/// `kpis` against `targets`.
pub fn health(k: &Kpis, targets: &std::collections::BTreeMap<String, Bound>) -> Health {
    let mut h = Health {
        runs: k.runs,
        ..Health::default()
    };
    for (name, b) in targets {
        let Some((v, show)) = measured(k, name) else {
            continue;
        };
        if let Some(min) = b.min {
            let line = format!("{name} {} (min {})", show(v), show(min));
            (if v < min { &mut h.missed } else { &mut h.met }).push(line);
        }
        if let Some(max) = b.max {
            let line = format!("{name} {} (max {})", show(v), show(max));
            (if v > max { &mut h.missed } else { &mut h.met }).push(line);
        }
    }
    h
}

/// Each chain's health from `runs` (the leaf pack's runs of the chain's
/// tenant), against its resolved pack's targets.
pub fn chain_health(
    snap: &crate::registry::Snapshot,
    chains: &mut [pages::ChainRow],
    runs: &[KpiRun],
) {
    for c in chains.iter_mut() {
        let key = crate::resolve::ChainKey::new(&c.domain, c.tenant.as_deref(), c.user.as_deref());
        let Some(targets) = crate::resolve::resolve(&snap.repo, &key)
            .ok()
            .and_then(|r| r.kpi_targets())
        else {
            continue;
        };
        let mut s = RunSample::default();
        for r in runs
            .iter()
            .filter(|r| r.pack_id == c.leaf && c.tenant.as_ref().is_none_or(|t| *t == r.tenant_id))
        {
            s.success.push(r.success_bool != 0);
            s.latency_ms.push(r.latency_ms);
            s.cost_usd += r.cost_usd;
        }
        c.health = Some(health(&crate::telemetry::kpis(&s), &targets));
    }
}

/// Replicas to look at: stale (not heard from in three of their
/// intervals) or serving another commit than `serving`.
pub fn replica_attention(
    beats: &[ReplicaBeat],
    now: OffsetDateTime,
    serving: Option<&str>,
) -> Vec<Markup> {
    let mut out = Vec::new();
    for b in beats {
        let Ok(seen) = OffsetDateTime::parse(&b.seen_at, &Rfc3339) else {
            continue;
        };
        let ago = (now - seen).as_seconds_f64();
        if ago > 3.0 * b.every_s.max(1.0) {
            out.push(html! {
                "Replica " code { (b.replica) } " is " span.bad { "stale" }
                ": last heard " (format!("{ago:.0}")) " s ago (it beats every " (format!("{:.1}", b.every_s)) " s)"
            });
        } else if let (Some(theirs), Some(ours)) = (b.commit_sha.as_deref(), serving)
            && theirs != ours
        {
            out.push(html! {
                "Replica " code { (b.replica) } " serves commit " code { (theirs.get(..10).unwrap_or(theirs)) }
                ", not " code { (ours.get(..10).unwrap_or(ours)) } span.warn { " (behind or ahead)" }
            });
        }
    }
    out
}

#[derive(Deserialize, Default)]
pub(super) struct FleetQuery {
    domain: Option<String>,
    tenant: Option<String>,
}

pub(super) async fn fleet(
    State(c): State<Console>,
    headers: HeaderMap,
    q: Result<Query<FleetQuery>, QueryRejection>,
) -> Response {
    let v = signed_in!(c, headers);
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let tenant_filter = q.tenant.filter(|t| !t.is_empty());
    if let (Some(mine), Some(asked)) = (v.tenant(), tenant_filter.as_deref())
        && mine != asked
    {
        return not_found(Some(&v));
    }
    let snap = c.reg.snapshot.load_full();
    let now = OffsetDateTime::now_utc();
    let since = crate::time_util::canonical(now - time::Duration::hours(HEALTH_HOURS));
    let rollouts = crate::registry::controller::status(&c.reg.store, false).await;
    let effects = c.reg.store.effects(Some(&c.reg.source.key)).await;
    let holds = c.reg.store.holds(&c.reg.source.key).await;
    let runs = c
        .reg
        .store
        .kpi_runs(None, v.tenant(), &since, HEALTH_CAP)
        .await;
    let beats = c.reg.store.replicas().await;
    let (Ok(rollouts), Ok(effects), Ok(holds), Ok(runs), Ok(beats)) =
        (rollouts, effects, holds, runs, beats)
    else {
        return unavailable(&v);
    };
    let mut data = pages::FleetData::build(
        &snap,
        v.tenant(),
        q.domain.as_deref().filter(|d| !d.is_empty()),
        tenant_filter.as_deref(),
        rollouts,
        effects,
        holds,
    );
    chain_health(&snap, &mut data.chains, &runs);
    for c in data
        .chains
        .iter()
        .filter(|c| c.health.as_ref().is_some_and(|h| !h.missed.is_empty()))
    {
        let missed = c
            .health
            .as_ref()
            .map(|h| h.missed.join("; "))
            .unwrap_or_default();
        let chain = [
            Some(c.domain.as_str()),
            c.tenant.as_deref(),
            c.user.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" × ");
        data.attention.push((
            c.leaf.clone(),
            html! { "Chain " (chain) " (" a href=(format!("/ui/packs/{}", pages::enc(&c.leaf))) { (c.leaf) } ") is " span.bad { "below its KPI targets" } " over the last " (HEALTH_HOURS) " h: " (missed) },
        ));
    }
    for m in replica_attention(&beats, now, snap.commit.as_deref()) {
        data.attention.push((String::new(), m));
    }
    data.github = github(&c);
    html(StatusCode::OK, pages::fleet(&v, &data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_compares_each_target_both_ways() {
        let k = Kpis {
            runs: 10,
            success_rate: Some(0.9),
            error_rate: Some(0.1),
            latency_p95_ms: Some(900.0),
            cost_per_run_usd: Some(0.01),
            ..Kpis::default()
        };
        let mut t = std::collections::BTreeMap::new();
        t.insert(
            "success_rate".to_string(),
            Bound {
                min: Some(0.95),
                max: None,
            },
        );
        t.insert(
            "p95_latency_ms".to_string(),
            Bound {
                min: None,
                max: Some(1000.0),
            },
        );
        t.insert(
            "made_up".to_string(),
            Bound {
                min: Some(1.0),
                max: None,
            },
        );
        let h = health(&k, &t);
        assert_eq!(h.missed, ["success_rate 90.0% (min 95.0%)"]);
        assert_eq!(h.met, ["p95_latency_ms 900 ms (max 1000 ms)"]);
        assert_eq!(h.runs, 10);
    }

    #[test]
    fn a_replica_silent_for_three_intervals_is_stale() {
        let now = OffsetDateTime::parse("2026-12-01T10:00:00Z", &Rfc3339).expect("t");
        let beat = |name: &str, seen: &str, commit: &str| ReplicaBeat {
            replica: name.into(),
            seen_at: seen.into(),
            every_s: 10.0,
            commit_sha: Some(commit.into()),
        };
        let out = replica_attention(
            &[
                beat("fresh", "2026-12-01T09:59:50Z", "aaaa"),
                beat("late", "2026-12-01T09:59:00Z", "aaaa"),
                beat("behind", "2026-12-01T09:59:55Z", "bbbb"),
            ],
            now,
            Some("aaaa"),
        );
        let text: Vec<String> = out.into_iter().map(maud::PreEscaped::into_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].contains("late") && text[0].contains("stale"),
            "{text:?}"
        );
        assert!(
            text[1].contains("behind") && text[1].contains("bbbb"),
            "{text:?}"
        );
    }
}
