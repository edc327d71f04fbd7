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
use std::collections::HashMap;

use crate::model::{Bound, Kpis, RunSample};
use crate::resolve::ChainKey;
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

/// Each chain with runs in the window → its health against its resolved
/// pack's targets (None: the chain sets no KPI target). A chain's runs are
/// its leaf pack's runs of its tenant (every tenant's for a chain without
/// one). Chains without runs are not in the map. One pass over the runs,
/// then one resolution per chain that has runs.
pub type HealthMap = HashMap<ChainKey, Option<Health>>;

pub fn health_map(
    snap: &crate::registry::Snapshot,
    scope: Option<&str>,
    runs: &[KpiRun],
) -> HealthMap {
    fn add(s: &mut RunSample, r: &KpiRun) {
        s.success.push(r.success_bool != 0);
        s.latency_ms.push(r.latency_ms);
        s.cost_usd += r.cost_usd;
    }
    let mut by_tenant: HashMap<(&str, &str), RunSample> = HashMap::new();
    let mut by_leaf: HashMap<&str, RunSample> = HashMap::new();
    for r in runs {
        add(by_tenant.entry((&r.pack_id, &r.tenant_id)).or_default(), r);
        add(by_leaf.entry(&r.pack_id).or_default(), r);
    }
    let mut out = HealthMap::new();
    for p in &snap.repo.packs {
        if !by_leaf.contains_key(p.pack.id.as_str()) || !snap.visible(&p.pack.id, scope) {
            continue;
        }
        for key in snap.leaf_chains(p) {
            if !pages::chain_in_scope(&key, scope) {
                continue;
            }
            let sample = match &key.tenant {
                Some(t) => by_tenant.get(&(p.pack.id.as_str(), t.as_str())),
                None => by_leaf.get(p.pack.id.as_str()),
            };
            let Some(sample) = sample else {
                continue;
            };
            let targets = crate::resolve::resolve(&snap.repo, &key)
                .ok()
                .and_then(|r| r.kpi_targets());
            let h = targets.map(|t| health(&crate::telemetry::kpis(sample), &t));
            out.insert(key, h);
        }
    }
    out
}

/// How long a tenant scope's health map is reused before the runs are
/// read again (the page says "over the last 24 h": a few seconds late is
/// fine, reading up to [`HEALTH_CAP`] runs per page view is not).
pub const HEALTH_TTL: std::time::Duration = std::time::Duration::from_secs(15);

/// Per tenant scope: when the map was computed, at which commit, and it.
pub type HealthCache =
    std::sync::Mutex<HashMap<Option<String>, (std::time::Instant, Option<String>, Arc<HealthMap>)>>;

/// The health map of `scope` at `snap`'s commit: from the cache when it is
/// younger than [`HEALTH_TTL`], else computed (off the async workers).
async fn health_of(
    c: &Console,
    snap: &Arc<crate::registry::Snapshot>,
    scope: Option<&str>,
) -> Option<Arc<HealthMap>> {
    let key = scope.map(String::from);
    if let Ok(cache) = c.health.lock()
        && let Some((at, commit, map)) = cache.get(&key)
        && at.elapsed() < HEALTH_TTL
        && *commit == snap.commit
    {
        return Some(map.clone());
    }
    let since = crate::time_util::canonical(
        OffsetDateTime::now_utc() - time::Duration::hours(HEALTH_HOURS),
    );
    let runs = c
        .reg
        .store
        .kpi_runs(None, scope, &since, HEALTH_CAP)
        .await
        .ok()?;
    let (s, k) = (snap.clone(), key.clone());
    let map = Arc::new(
        tokio::task::spawn_blocking(move || health_map(&s, k.as_deref(), &runs))
            .await
            .ok()?,
    );
    if let Ok(mut cache) = c.health.lock() {
        cache.insert(
            key,
            (std::time::Instant::now(), snap.commit.clone(), map.clone()),
        );
    }
    Some(map)
}

/// At most this many chains below target are listed under "needs attention".
const ATTENTION_CHAINS: usize = 50;

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
    page: Option<usize>,
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
    let rollouts = crate::registry::controller::status(&c.reg.store, false).await;
    let effects = c.reg.store.effects(Some(&c.reg.source.key)).await;
    let holds = c.reg.store.holds(&c.reg.source.key).await;
    let beats = c.reg.store.replicas().await;
    let health = health_of(&c, &snap, v.tenant()).await;
    let (Ok(rollouts), Ok(effects), Ok(holds), Some(health), Ok(beats)) =
        (rollouts, effects, holds, health, beats)
    else {
        return unavailable(&v);
    };
    let domain = q.domain.as_deref().filter(|d| !d.is_empty());
    let mut data = pages::FleetData::build(
        &snap,
        v.tenant(),
        domain,
        tenant_filter.as_deref(),
        q.page.unwrap_or(1),
        rollouts
            .into_iter()
            .map(|r| snap.rollout_for(r, v.tenant()))
            .collect(),
        effects,
        holds,
    );
    for row in &mut data.chains {
        let key = ChainKey::new(&row.domain, row.tenant.as_deref(), row.user.as_deref());
        row.health = match health.get(&key) {
            Some(h) => h.clone(),
            None => Some(Health::default()),
        };
    }
    let mut below: Vec<(&ChainKey, &Health)> = health
        .iter()
        .filter_map(|(k, h)| Some((k, h.as_ref()?)))
        .filter(|(k, h)| {
            !h.missed.is_empty()
                && domain.is_none_or(|d| d == k.domain)
                && tenant_filter
                    .as_deref()
                    .is_none_or(|t| k.tenant.as_deref() == Some(t))
        })
        .collect();
    below.sort_by(|a, b| a.0.cmp(b.0));
    let leaf_of = |k: &ChainKey| {
        crate::resolve::chain(&snap.repo, k)
            .ok()
            .and_then(|idx| idx.last().map(|i| snap.repo.packs[*i].pack.id.clone()))
            .unwrap_or_default()
    };
    for (k, h) in below.iter().take(ATTENTION_CHAINS) {
        let leaf = leaf_of(k);
        let chain = [
            Some(k.domain.as_str()),
            k.tenant.as_deref(),
            k.user.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" × ");
        let missed = h.missed.join("; ");
        data.attention.push((
            leaf.clone(),
            html! { "Chain " (chain) " (" a href=(format!("/ui/packs/{}", pages::enc(&leaf))) { (leaf) } ") is " span.bad { "below its KPI targets" } " over the last " (HEALTH_HOURS) " h: " (missed) },
        ));
    }
    if below.len() > ATTENTION_CHAINS {
        let more = below.len() - ATTENTION_CHAINS;
        data.attention.push((
            String::new(),
            html! { "… and " (more) " more chains " span.bad { "below their KPI targets" } " (filter by domain or tenant to see them)" },
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
