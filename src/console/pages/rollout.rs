//! The rollouts list and one rollout's page: its timeline, the arms'
//! KPIs, the sequential test as an SVG chart, decisions and actions.

use super::*;

pub fn rollouts(v: &Viewer, list: &[RolloutStatus]) -> Markup {
    page(
        Some(v),
        "Rollouts",
        "/ui/rollouts",
        html! {
            h1 { "Rollouts" }
            @if list.is_empty() {
                p.muted { "No rollout yet: a promotion merged to the main branch starts one." }
            } @else {
                table {
                    thead { tr { th { "Rollout" } th { "Pack" } th { "State" } th { "Share" } th { "Champion" } th { "Canary" } th { "Step started" } } }
                    tbody {
                        @for r in list {
                            tr {
                                td { a href=(format!("/ui/rollouts/{}", enc(&r.rollout_id))) { (r.rollout_id) } }
                                td { a href=(format!("/ui/packs/{}", enc(&r.pack_id))) { (r.pack_id) } }
                                td { (state(r.state)) }
                                td { (r.percent) "%" }
                                td { (r.champion_version.as_deref().unwrap_or("–")) }
                                td { (r.canary_version) }
                                td { (when(&r.step_started_at)) }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub(super) fn state(s: RolloutState) -> Markup {
    let class = match s {
        RolloutState::Running | RolloutState::Completed => "ok",
        RolloutState::Stalled | RolloutState::Held => "warn",
        RolloutState::RolledBack => "bad",
        RolloutState::Superseded => "muted",
    };
    html! { span class=(class) { (s) } }
}

fn kpi_rows(champion: &Kpis, canary: &Kpis) -> Markup {
    html! {
        table {
            thead { tr { th { "Arm" } th { "Runs" } th { "Success" } th { "Errors" } th { "p95 latency" } th { "Cost per run" } } }
            tbody {
                @for (arm, k) in [("champion", champion), ("canary", canary)] {
                    tr {
                        td { (arm) }
                        td { (k.runs) }
                        td { (pct(k.success_rate)) }
                        td { (pct(k.error_rate)) }
                        td { (ms(k.latency_p95_ms)) }
                        td { (k.cost_per_run_usd.map_or("–".into(), |c| format!("${c:.4}"))) }
                    }
                }
            }
        }
    }
}

/// The sequential test's log-likelihood ratio per step against its two
/// thresholds, as a server-rendered SVG (no script).
fn sprt_chart(points: &[(String, f64, f64, f64)]) -> Markup {
    if points.is_empty() {
        return html! {};
    }
    let (w, h, pad) = (560.0_f64, 180.0_f64, 30.0_f64);
    let lo = points
        .iter()
        .map(|p| p.1.min(p.2))
        .fold(f64::INFINITY, f64::min)
        - 0.5;
    let hi = points
        .iter()
        .map(|p| p.1.max(p.3))
        .fold(f64::NEG_INFINITY, f64::max)
        + 0.5;
    let y = |v: f64| pad + (hi - v) / (hi - lo).max(1e-9) * (h - 2.0 * pad);
    let step = if points.len() > 1 {
        (w - 2.0 * pad) / (points.len() - 1) as f64
    } else {
        0.0
    };
    let x = |i: usize| pad + step * i as f64;
    let line: String = points
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.1)))
        .collect::<Vec<_>>()
        .join(" ");
    let (upper, lower) = (points[points.len() - 1].3, points[points.len() - 1].2);
    html! {
        svg.chart viewBox=(format!("0 0 {w} {h}")) width=(w) height=(h) role="img" aria-label="Sequential test statistic per step against its thresholds" {
            title { "Log-likelihood ratio per step; the canary fails above the upper line and holds below the lower line" }
            line x1=(pad) x2=(w - pad) y1=(y(upper)) y2=(y(upper)) stroke="#b3261e" stroke-dasharray="4 3" {}
            text x=(pad) y=(y(upper) - 4.0) font-size="11" fill="#b3261e" { "roll back " (format!("{upper:.2}")) }
            line x1=(pad) x2=(w - pad) y1=(y(lower)) y2=(y(lower)) stroke="#146c2e" stroke-dasharray="4 3" {}
            text x=(pad) y=(y(lower) + 12.0) font-size="11" fill="#146c2e" { "holds " (format!("{lower:.2}")) }
            polyline points=(line) fill="none" stroke="#0b57d0" stroke-width="2" {}
            @for (i, p) in points.iter().enumerate() {
                circle cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(p.1))) r="3.5" fill="#0b57d0" {}
                text x=(format!("{:.1}", x(i))) y=(h - 8.0) font-size="11" text-anchor="middle" { (p.0) }
            }
        }
    }
}

pub fn rollout(
    v: &Viewer,
    r: &RolloutStatus,
    decisions: &[Decision],
    may_act: bool,
    gh: Option<&str>,
) -> Markup {
    let history = r
        .detail
        .as_ref()
        .map(|d| d.history.as_slice())
        .unwrap_or_default();
    let points: Vec<(String, f64, f64, f64)> = history
        .iter()
        .filter_map(|s| {
            s.figures
                .sprt
                .as_ref()
                .map(|t| (format!("{}%", s.percent), t.llr, t.lower, t.upper))
        })
        .chain(
            r.detail
                .as_ref()
                .and_then(|d| d.last_step.as_ref())
                .filter(|_| r.state.in_progress())
                .and_then(|f| f.sprt.as_ref())
                .map(|t| (format!("{}% now", r.percent), t.llr, t.lower, t.upper)),
        )
        .collect();
    page(
        Some(v),
        &format!("Rollout {}", r.rollout_id),
        "/ui/rollouts",
        html! {
            h1 { "Rollout " (r.rollout_id) }
            div.panel {
                p {
                    "Pack " a href=(format!("/ui/packs/{}", enc(&r.pack_id))) { (r.pack_id) } ": "
                    (r.champion_version.as_deref().unwrap_or("(none)")) " → " strong { (r.canary_version) }
                    ". State " (state(r.state)) " at " (r.percent) "% of users"
                    @if let Some(n) = r.next_step { " (next step " (n) "%)" }
                    "; steps " (r.steps.iter().map(|s| format!("{s}%")).collect::<Vec<_>>().join(" → ")) "."
                }
                @if let Some(d) = &r.detail { p { (d.why) } }
            }
            h2 { "Arms (" (r.figures_from) ")" }
            (kpi_rows(&r.champion, &r.canary))
            h2 { "Timeline" }
            ol.timeline {
                li { "Started " (when(&r.step_started_at)) " (current step)" }
                @for s in history {
                    li class=(s.outcome.to_string()) {
                        strong { (s.percent) "%: " (s.outcome) }
                        " " (when(&s.started_at)) " → " (when(&s.ended_at))
                        " · champion " (pct(s.figures.champion.success_rate)) " of " (s.figures.champion.runs)
                        ", canary " (pct(s.figures.canary.success_rate)) " of " (s.figures.canary.runs)
                        @if let Some(t) = &s.figures.sprt {
                            " · SPRT " (format!("{:.2}", t.llr)) " (holds ≤ " (format!("{:.2}", t.lower)) ", rolls back ≥ " (format!("{:.2}", t.upper)) ")"
                        }
                    }
                }
            }
            @if !points.is_empty() {
                h2 { "Sequential test" }
                (sprt_chart(&points))
            }
            h2 { "Decisions" }
            (decision_table(decisions, gh))
            @if let Some(e) = &r.revert {
                h2 { "Revert" }
                p { "Revert " (e.effect_id) ": " (format!("{:?}", e.state).to_lowercase())
                    @if let Some(err) = &e.last_error { span.bad { " (" (err) ")" } } }
            }
            @if may_act && r.state.in_progress() {
                h2 { "Actions" }
                @if r.state == RolloutState::Held {
                    (action_form(v, r, "resume", "I confirm: let the rollout advance again on its figures", "primary", "Resume the rollout"))
                } @else {
                    (action_form(v, r, "hold", "I confirm: keep the rollout at its share; it does not advance until resumed (a regression still rolls it back)", "primary", "Hold the rollout"))
                }
                (action_form(v, r, "rollback", "I confirm: serve the champion to everyone now and write a revert commit", "danger", &format!("Roll back {}", r.pack_id)))
            }
        },
    )
}

/// One action's form: the CSRF token, a reason, a ticked confirmation.
fn action_form(
    v: &Viewer,
    r: &RolloutStatus,
    act: &str,
    confirm: &str,
    class: &str,
    button: &str,
) -> Markup {
    let reason = format!("{act}-reason");
    html! {
        form.stack method="post" action=(format!("/ui/rollouts/{}/{act}", enc(&r.rollout_id))) {
            input type="hidden" name="csrf" value=(v.csrf);
            label for=(reason) { "Reason (recorded with the decision)" }
            input id=(reason) type="text" name="reason" required;
            label.check {
                input type="checkbox" name="confirm" value="yes" required;
                (confirm)
            }
            button class=(class) type="submit" { (button) }
        }
    }
}

pub(super) fn decision_table(list: &[Decision], gh: Option<&str>) -> Markup {
    html! {
        @if list.is_empty() {
            p.muted { "No decision." }
        } @else {
            table {
                thead { tr { th { "When" } th { "Decision" } th { "Pack" } th { "Champion" } th { "Challenger" } th { "Commit" } th { "Pull request" } th { "By" } th { "Reason" } } }
                tbody {
                    @for d in list {
                        tr {
                            td { (when(&d.created_at)) }
                            td { strong { (d.decision) } }
                            td { a href=(format!("/ui/packs/{}", enc(&d.pack_id))) { (d.pack_id) } }
                            td { (d.champion_pack_version.as_deref().unwrap_or("–")) }
                            td { (d.challenger_pack_version) }
                            td { (links::commit(gh, &d.commit)) }
                            td {
                                @if let Some(pr) = d.pull_request { (links::pull(gh, pr)) } @else { "–" }
                                @if let Some(url) = d.evidence_url.as_deref().filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
                                    " " a href=(url) rel="noreferrer" { "evidence" }
                                }
                            }
                            td { (d.decided_by) }
                            td.wrap { (d.reason) }
                        }
                    }
                }
            }
        }
    }
}
