//! A pack's page: where it serves, its versions from git, the prompt and
//! voice diff between two of them, each version's gate evidence, its KPIs
//! per version over time (an SVG chart, and the same figures as a table),
//! its rollouts and decisions.

use super::*;
use crate::console::pack_page::PackExtra;

/// Colours of the chart's lines, one per version in turn (contrast ≥ 4.5:1 on white).
const COLOURS: [&str; 6] = [
    "#0b57d0", "#b3261e", "#146c2e", "#8a5a00", "#6d28d9", "#0e7490",
];

/// What a line of a unified diff is, as a CSS class.
fn line_class(line: &str) -> &'static str {
    if line.starts_with("+++") || line.starts_with("---") || line.starts_with("@@") {
        "hunk"
    } else if line.starts_with('+') {
        "add"
    } else if line.starts_with('-') {
        "del"
    } else {
        "same"
    }
}

/// A unified diff, each line classed by what it is; every character escaped.
fn unified(text: &str) -> Markup {
    html! {
        pre.diff {
            @for line in text.lines() {
                span class=(line_class(line)) { (line) } "\n"
            }
        }
    }
}

/// Success rate per version per day as an SVG (no script): one line per
/// version over the days any version had runs.
fn kpi_chart(series: &[(String, Vec<(String, Kpis)>)]) -> Markup {
    let mut days: Vec<&str> = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|(d, _)| d.as_str()))
        .collect();
    days.sort_unstable();
    days.dedup();
    if days.is_empty() {
        return html! {};
    }
    let (w, h, pad) = (560.0_f64, 200.0_f64, 36.0_f64);
    let step = if days.len() > 1 {
        (w - 2.0 * pad) / (days.len() - 1) as f64
    } else {
        0.0
    };
    let x = |d: &str| pad + step * days.iter().position(|x| *x == d).unwrap_or(0) as f64;
    let y = |rate: f64| pad + (1.0 - rate.clamp(0.0, 1.0)) * (h - 2.0 * pad);
    let lines: Vec<(&str, &str, String)> = series
        .iter()
        .enumerate()
        .map(|(i, (version, pts))| {
            let points: Vec<String> = pts
                .iter()
                .filter_map(|(d, k)| k.success_rate.map(|r| format!("{:.1},{:.1}", x(d), y(r))))
                .collect();
            (
                version.as_str(),
                COLOURS[i % COLOURS.len()],
                points.join(" "),
            )
        })
        .collect();
    html! {
        svg.chart viewBox=(format!("0 0 {w} {h}")) width=(w) height=(h) role="img" aria-label="Success rate per version per day" {
            title { "Success rate per version per day (0% to 100%)" }
            @for (label, rate) in [("100%", 1.0), ("50%", 0.5), ("0%", 0.0)] {
                line x1=(pad) x2=(w - pad) y1=(y(rate)) y2=(y(rate)) stroke="#d0d7de" {}
                text x="2" y=(y(rate) + 4.0) font-size="10" fill="#4b5563" { (label) }
            }
            @for (i, ((version, colour, points), (_, pts))) in lines.iter().zip(series).enumerate() {
                polyline points=(points) fill="none" stroke=(colour) stroke-width="2" {}
                @for (d, k) in pts {
                    @if let Some(r) = k.success_rate {
                        circle cx=(format!("{:.1}", x(d))) cy=(format!("{:.1}", y(r))) r="3" fill=(colour) {
                            title { (version) " on " (d) ": " (pct(Some(r))) " of " (k.runs) " runs" }
                        }
                    }
                }
                text x=(w - pad + 4.0) y=(pad + 12.0 * i as f64) font-size="10" fill=(colour) { (version) }
            }
            @for d in [days[0], days[days.len() - 1]] {
                text x=(format!("{:.1}", x(d))) y=(h - 8.0) font-size="10" text-anchor="middle" { (d) }
            }
        }
    }
}

pub fn pack(
    v: &Viewer,
    snap: &Snapshot,
    id: &str,
    decisions: &[Decision],
    history: &[HistoryEntry],
    rollouts: &[RolloutStatus],
    extra: &PackExtra,
) -> Markup {
    let Some(p) = snap.repo.pack(id) else {
        return not_found(Some(v));
    };
    let serving = crate::reconcile::pack_version(p);
    let selected = |o: &Option<String>, ver: &str| o.as_deref() == Some(ver);
    page(
        Some(v),
        id,
        "",
        html! {
            h1 { "Pack " (id) }
            div.panel {
                p { "Scope " (p.location.scope_type().as_str()) " " strong { (p.location.scope_id()) }
                    " · file " code { (p.file) } }
                p { "At the served commit: " strong { (serving) } }
                @if let Some(rv) = snap.rollouts.get(id) {
                    p { "Rollout " a href=(format!("/ui/rollouts/{}", enc(&rv.rollout_id))) { (rv.rollout_id) }
                        @if rv.pinned { span.bad { " rolled back: champion " (rv.from_version.as_deref().unwrap_or("")) " pinned" } }
                        @else { ": " (rv.to_version) " to " (rv.percent) "%" } }
                }
                p { a href=(format!("/ui/runs?pack={}", enc(id))) { "Runs of this pack" } " · "
                    a href=(format!("/ui/decisions?pack={}", enc(id))) { "Its decisions" } }
            }
            h2 { "Versions" }
            @if extra.versions.is_empty() && history.is_empty() { p.muted { "No version recorded yet." } }
            @else {
                table {
                    thead { tr { th { "Version" } th { "Commit" } th { "Gate evidence" } } }
                    tbody {
                        @for (ver, commit) in &extra.versions {
                            tr {
                                td { (ver) }
                                td { (links::commit(extra.github.as_deref(), commit)) }
                                td.wrap {
                                    @match extra.evidence.iter().find(|(x, _)| x == ver) {
                                        Some((_, d)) => {
                                            "promoted " (when(&d.created_at))
                                            @if let Some(pr) = d.pull_request { " from pull request " (links::pull(extra.github.as_deref(), pr)) }
                                            @if let Some(url) = d.evidence_url.as_deref().filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
                                                " · " a href=(url) rel="noreferrer" { "evidence" }
                                            }
                                            ": " (d.reason)
                                        }
                                        None => { span.muted { "none recorded" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Prompt and voice diff" }
            @if extra.versions.len() > 1 {
                form.filters method="get" action=(format!("/ui/packs/{}", enc(id))) {
                    label { "From"
                        select name="from" {
                            @for (ver, _) in &extra.versions {
                                option value=(ver) selected[selected(&extra.from, ver)] { (ver) }
                            }
                        }
                    }
                    label { "To"
                        select name="to" {
                            @for (ver, _) in &extra.versions {
                                option value=(ver) selected[selected(&extra.to, ver)] { (ver) }
                            }
                        }
                    }
                    button.primary type="submit" { "Compare" }
                }
            }
            @if let (Some(a), Some(b)) = (&extra.from, &extra.to) {
                p { (a) " → " strong { (b) } }
            }
            @if let Some(n) = &extra.diff_note { p.muted { (n) } }
            @for d in &extra.diff {
                h3 { (d.section) }
                (unified(&d.unified))
            }
            h2 { "KPIs per version" }
            @if extra.kpis.is_empty() {
                p.muted { "No run in the last " (crate::console::pack_page::KPI_DAYS) " days." }
            } @else {
                (kpi_chart(&extra.kpis))
                table {
                    thead { tr { th { "Version" } th { "Day" } th { "Runs" } th { "Success" } th { "p95 latency" } th { "Cost per run" } } }
                    tbody {
                        @for (ver, pts) in &extra.kpis {
                            @for (day, k) in pts {
                                tr {
                                    td { (ver) } td { (day) } td { (k.runs) } td { (pct(k.success_rate)) }
                                    td { (ms(k.latency_p95_ms)) }
                                    td { (k.cost_per_run_usd.map_or("–".into(), |c| format!("${c:.4}"))) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Rollouts" }
            @if rollouts.is_empty() { p.muted { "None." } }
            @else {
                ul { @for r in rollouts {
                    li { a href=(format!("/ui/rollouts/{}", enc(&r.rollout_id))) { (r.rollout_id) } " " (r.canary_version) ": " (state(r.state)) }
                } }
            }
            h2 { "Decisions" }
            (decision_table(decisions, extra.github.as_deref()))
        },
    )
}
