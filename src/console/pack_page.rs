//! `/ui/packs/<id>`: a pack's versions from git, the prompt and voice diff
//! between any two of them (`?from=<version>&to=<version>`, a unified diff
//! rendered on the server and escaped), the gate evidence the store has for
//! each version (its promotion decision: pull request, evidence link,
//! reason), and its KPIs per version per day as an SVG chart, from the
//! runs the sign-in may read (a tenant-scoped sign-in: its tenant's runs).

use std::collections::BTreeMap;

use super::*;
use crate::model::{Decision, DecisionKind, Kpis, RunSample};

/// How far back the KPI chart reads runs.
pub const KPI_DAYS: i64 = 30;
/// At most this many runs (the newest) feed the chart.
const KPI_CAP: i64 = 200_000;

#[derive(Deserialize, Default)]
pub(super) struct PackQuery {
    from: Option<String>,
    to: Option<String>,
}

/// One section's change between the two versions.
pub struct SectionDiff {
    pub section: String,
    pub unified: String,
}

/// What the pack page shows beyond the basics.
#[derive(Default)]
pub struct PackExtra {
    /// (version, the newest commit holding it), newest first, from git.
    pub versions: Vec<(String, String)>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Prompt sections and the voice (section `voice`) that differ.
    pub diff: Vec<SectionDiff>,
    /// Why there is no diff (a version not in this pack's history, …).
    pub diff_note: Option<String>,
    /// Each version's promotion decision (the gate's verdict as recorded).
    pub evidence: Vec<(String, Decision)>,
    /// Per version: (day, KPIs of that day's runs), days ascending.
    pub kpis: Vec<(String, Vec<(String, Kpis)>)>,
    /// The repository on GitHub, for commit and pull request links.
    pub github: Option<String>,
}

fn semver(v: &str) -> &str {
    v.split('+').next().unwrap_or(v)
}

/// Runs grouped per version and day.
pub fn kpi_series(runs: &[crate::store::KpiRun]) -> Vec<(String, Vec<(String, Kpis)>)> {
    let mut by: BTreeMap<String, BTreeMap<String, RunSample>> = BTreeMap::new();
    for r in runs {
        let day = r.created_at.get(..10).unwrap_or(&r.created_at).to_string();
        let s = by
            .entry(semver(&r.pack_version).to_string())
            .or_default()
            .entry(day)
            .or_default();
        s.success.push(r.success_bool != 0);
        s.latency_ms.push(r.latency_ms);
        s.cost_usd += r.cost_usd;
        if r.success_bool == 0 {
            *s.errors
                .entry(r.error_code.clone().unwrap_or_else(|| "unknown".into()))
                .or_default() += 1;
        }
    }
    by.into_iter()
        .map(|(v, days)| {
            (
                v,
                days.into_iter()
                    .map(|(d, s)| (d, crate::telemetry::kpis(&s)))
                    .collect(),
            )
        })
        .collect()
}

/// The voice section of `p` as indented JSON, one field a line.
fn voice_text(p: &crate::pack::PackDoc) -> String {
    p.node
        .to_json()
        .get("voice")
        .map(|v| serde_json::to_string_pretty(v).unwrap_or_default() + "\n")
        .unwrap_or_default()
}

/// The versions of `id` from git (newest first) and, for `from` and `to`
/// (defaults: the one before the newest, and the newest), what differs.
fn from_git(
    c: &Console,
    commit: Option<&str>,
    id: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> PackExtra {
    let mut out = PackExtra::default();
    let Some(tip) = commit.and_then(|c| c.parse::<crate::git::CommitId>().ok()) else {
        out.diff_note = Some("No commit is served yet.".into());
        return out;
    };
    let Ok(repo) = c.reg.source.open_local() else {
        out.diff_note = Some("The repository could not be opened.".into());
        return out;
    };
    let snap = c.reg.snapshot.load_full();
    let Some(file) = snap.repo.pack(id).map(|p| p.file.clone()) else {
        return out;
    };
    // Newest first along main's first parents: each version is credited
    // to the commit that brought it in (the oldest of the run of commits
    // that carry it), not to the tip or to a later, unrelated merge.
    // (The version of the current run, and whether that run is the newest
    // one of its version, whose commit is moved back along it.)
    let mut run: Option<(String, bool)> = None;
    for (cid, v) in crate::git::versions_of_file(&repo, tip, &file).unwrap_or_default() {
        match &run {
            Some((current, true)) if *current == v => {
                if let Some(e) = out.versions.last_mut() {
                    e.1 = cid.to_string();
                }
            }
            Some((current, false)) if *current == v => {}
            _ => {
                let first = !out.versions.iter().any(|(x, _)| *x == v);
                if first {
                    out.versions.push((v.clone(), cid.to_string()));
                }
                run = Some((v, first));
            }
        }
    }
    let find = |want: &str| {
        out.versions
            .iter()
            .find(|(v, _)| v == want || semver(v) == semver(want))
            .cloned()
    };
    let (a, b) = match (from, to) {
        (Some(f), Some(t)) => (find(f), find(t)),
        (f, t) => (
            f.map_or_else(|| out.versions.get(1).cloned(), find),
            t.map_or_else(|| out.versions.first().cloned(), find),
        ),
    };
    let (Some(a), Some(b)) = (a, b) else {
        out.diff_note = Some(match (from, to) {
            (None, None) => "This pack has had one version: nothing to compare.".into(),
            _ => "No such version of this pack: pick two from the list.".into(),
        });
        return out;
    };
    out.from = Some(a.0.clone());
    out.to = Some(b.0.clone());
    let load = |commit: &str| {
        c.reg
            .repo_at(&repo, commit)
            .and_then(|r| r.pack(id).cloned())
    };
    let (Some(pa), Some(pb)) = (load(&a.1), load(&b.1)) else {
        out.diff_note = Some("A version's content could not be read from git.".into());
        return out;
    };
    if let Some(change) = crate::diff::pack_change(Some(&pa), Some(&pb)) {
        for p in change.prompts {
            out.diff.push(SectionDiff {
                section: format!("prompt: {} ({})", p.section, p.file),
                unified: p.unified,
            });
        }
    }
    let (va, vb) = (voice_text(&pa), voice_text(&pb));
    if va != vb {
        out.diff.push(SectionDiff {
            section: "voice".into(),
            unified: crate::diff::unified(
                &va,
                &vb,
                &format!("a/voice@{}", a.0),
                &format!("b/voice@{}", b.0),
            ),
        });
    }
    if out.diff.is_empty() {
        out.diff_note = Some("The prompt and the voice are the same in both versions.".into());
    }
    out
}

pub(super) async fn pack(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<PackQuery>, QueryRejection>,
) -> Response {
    let v = signed_in!(c, headers);
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let snap = c.reg.snapshot.load_full();
    if snap.repo.pack(&id).is_none() || !snap.visible(&id, v.tenant()) {
        return not_found(Some(&v));
    }
    let since = crate::time_util::canonical(
        time::OffsetDateTime::now_utc() - time::Duration::days(KPI_DAYS),
    );
    let decisions = c.reg.store.decisions(Some(&id)).await;
    let history = c.reg.store.history_of(&c.reg.source.key, &id).await;
    let rollouts = crate::registry::controller::status(&c.reg.store, true).await;
    let runs = c
        .reg
        .store
        .kpi_runs(Some(&id), v.tenant(), &since, KPI_CAP)
        .await;
    let (Ok(mut decisions), Ok(history), Ok(rollouts), Ok(runs)) =
        (decisions, history, rollouts, runs)
    else {
        return unavailable(&v);
    };
    decisions.reverse();
    let decisions: Vec<_> = decisions
        .into_iter()
        .map(|d| snap.decision_for(d, v.tenant()))
        .collect();
    let history: Vec<_> = history.into_iter().filter(|h| h.pack_id == id).collect();
    let rollouts: Vec<_> = rollouts
        .into_iter()
        .filter(|r| r.pack_id == id)
        .map(|r| snap.rollout_for(r, v.tenant()))
        .collect();
    let filled = |s: Option<String>| s.filter(|x| !x.trim().is_empty());
    let (from, to) = (filled(q.from), filled(q.to));
    let (c2, id2, commit) = (c.clone(), id.clone(), snap.commit.clone());
    let Ok(mut extra) = tokio::task::spawn_blocking(move || {
        from_git(&c2, commit.as_deref(), &id2, from.as_deref(), to.as_deref())
    })
    .await
    else {
        return unavailable(&v);
    };
    for (ver, _) in &extra.versions {
        if let Some(d) = decisions.iter().find(|d| {
            d.decision == DecisionKind::Promote && semver(&d.challenger_pack_version) == semver(ver)
        }) {
            extra.evidence.push((ver.clone(), d.clone()));
        }
    }
    extra.kpis = kpi_series(&runs);
    extra.github = github(&c);
    html(
        StatusCode::OK,
        pages::pack(&v, &snap, &id, &decisions, &history, &rollouts, &extra),
    )
}
