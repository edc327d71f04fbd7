//! The console's pages (maud: compile-time templates, every value escaped).
//! Each page is plain HTML that reads without JavaScript; the one
//! stylesheet is `/ui/style.css`.

use maud::{DOCTYPE, Markup, html};

use super::{Viewer, links};
use crate::model::{Decision, Kpis, RolloutState, RunRow};
use crate::registry::Snapshot;
use crate::registry::controller::RolloutStatus;
use crate::resolve::ChainKey;
use crate::store::{AuditEntry, HistoryEntry, ImproveRow};

mod market;
mod pack;
mod rollout;
pub use market::{market_list, market_pack, market_result};
pub use pack::pack;
use rollout::{decision_table, state};
pub use rollout::{rollout, rollouts};

/// `s` percent-encoded for a path segment or a query value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{:.1}%", x * 100.0))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{x:.0} ms"))
}

fn when(t: &str) -> &str {
    t.get(..19).unwrap_or(t)
}

/// The page frame: navigation, who is signed in, sign out.
pub(super) fn page(v: Option<&Viewer>, title: &str, current: &str, body: Markup) -> Markup {
    let nav = [
        ("/ui/", "Fleet"),
        ("/ui/rollouts", "Rollouts"),
        ("/ui/runs", "Runs"),
        ("/ui/decisions", "Decisions"),
        ("/ui/improve", "Improve"),
        ("/ui/market", "Market"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · missionctl" }
                link rel="stylesheet" href="/ui/style.css";
            }
            body {
                header {
                    strong { "missionctl" }
                    @if let Some(v) = v {
                        nav aria-label="Console" {
                            @for (href, label) in nav {
                                @if href == current {
                                    a href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                            }
                        }
                        span.who {
                            (v.label()) " "
                            form method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main data-live { (body) }
                @if v.is_some() {
                    script src="/ui/live.js" defer {}
                }
            }
        }
    }
}

/// The sign-in page: single sign-on first when configured, then the token form.
pub fn login(error: Option<&str>, sso: bool) -> Markup {
    page(
        None,
        "Sign in",
        "",
        html! {
            div.login {
                h1 { "Sign in to the fleet console" }
                @if let Some(e) = error {
                    p.bad role="alert" { (e) }
                }
                @if sso {
                    p { a.button.primary href="/ui/login/sso" { "Sign in with SSO" } }
                    p.muted { "Or with a registry token:" }
                }
                form.stack method="post" action="/ui/login" {
                    label for="token" { "Registry token (viewer or admin)" }
                    input #token type="password" name="token" autocomplete="off" required;
                    button.primary type="submit" { "Sign in" }
                }
                p.muted { "A tenant-scoped token shows that tenant and the shared packs only. Make one with "
                    code { "missionctl token new --role viewer --tenant acme" } "." }
            }
        },
    )
}

pub fn not_found(v: Option<&Viewer>) -> Markup {
    page(
        v,
        "Not found",
        "",
        html! {
            h1 { "Not found" }
            p { "There is nothing here, or nothing your sign-in may see." }
            p { a href="/ui/" { "Back to the fleet" } }
        },
    )
}

pub fn message(v: Option<&Viewer>, title: &str, text: &str) -> Markup {
    page(
        v,
        title,
        "",
        html! {
            h1 { (title) }
            p role="alert" { (text) }
            p { a href="/ui/" { "Back to the fleet" } }
        },
    )
}

/// Whether a sign-in scoped to `scope` (a tenant, or None for the fleet)
/// sees `key`: a personal user's chain is that user's tenant
/// (`user:<id>`); a chain without a tenant or user (a domain's) is seen by
/// every sign-in that sees its pack.
pub fn chain_in_scope(key: &ChainKey, scope: Option<&str>) -> bool {
    let Some(s) = scope else {
        return true;
    };
    match (&key.tenant, &key.user) {
        (Some(t), _) => t == s,
        (None, Some(u)) => s.strip_prefix("user:") == Some(u.as_str()),
        (None, None) => true,
    }
}

/// Scope chains per fleet page.
pub const FLEET_PAGE: usize = 100;

/// One scope chain as the fleet page shows it.
pub struct ChainRow {
    pub domain: String,
    pub tenant: Option<String>,
    pub user: Option<String>,
    pub leaf: String,
    pub champion: String,
    /// (rollout id, canary version, share %, pinned).
    pub canary: Option<(String, String, u32, bool)>,
    /// KPI health over the last day (None: the chain sets no KPI target).
    pub health: Option<super::fleet::Health>,
}

pub struct FleetData {
    pub commit: Option<String>,
    /// The chains of this page.
    pub chains: Vec<ChainRow>,
    /// Chains matching the filters, over every page.
    pub total: usize,
    /// This page (from 1) of `pages`.
    pub page: usize,
    pub pages: usize,
    /// The filters, kept in the page links.
    pub domain: Option<String>,
    pub tenant: Option<String>,
    pub attention: Vec<(String, Markup)>,
    pub domains: Vec<String>,
    pub tenants: Vec<String>,
    /// The repository on GitHub, for commit links.
    pub github: Option<String>,
}

impl FleetData {
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        snap: &Snapshot,
        scope: Option<&str>,
        domain: Option<&str>,
        tenant: Option<&str>,
        page: usize,
        rollouts: Vec<RolloutStatus>,
        effects: Vec<crate::model::Effect>,
        holds: Vec<(String, String)>,
    ) -> FleetData {
        // Every visible chain's key (cheap); only the page's chains are
        // rendered (what they serve), so a 10,000-pack fleet costs one page.
        let mut keys: Vec<(ChainKey, usize)> = Vec::new();
        for (i, p) in snap.repo.packs.iter().enumerate() {
            if !snap.visible(&p.pack.id, scope) {
                continue;
            }
            for key in snap.leaf_chains(p) {
                if domain.is_some_and(|d| d != key.domain)
                    || tenant.is_some_and(|t| key.tenant.as_deref() != Some(t))
                {
                    continue;
                }
                if !chain_in_scope(&key, scope) {
                    continue;
                }
                keys.push((key, i));
            }
        }
        keys.sort();
        let total = keys.len();
        let pages = total.div_ceil(FLEET_PAGE).max(1);
        let page = page.clamp(1, pages);
        let mut chains = Vec::new();
        for (key, i) in keys
            .into_iter()
            .skip((page - 1) * FLEET_PAGE)
            .take(FLEET_PAGE)
        {
            let Ok(champ) = snap.render(&key, "", Some(crate::model::Arm::Champion)) else {
                continue;
            };
            let idx = crate::resolve::chain(&snap.repo, &key).unwrap_or_default();
            let canary = idx.iter().find_map(|i| {
                let rv = snap.rollouts.get(&snap.repo.packs[*i].pack.id)?;
                let c = snap
                    .render(&key, "", Some(crate::model::Arm::Canary))
                    .ok()?;
                Some((
                    rv.rollout_id.clone(),
                    c.pack_version.clone(),
                    rv.percent,
                    rv.pinned,
                ))
            });
            chains.push(ChainRow {
                domain: key.domain.clone(),
                tenant: key.tenant.clone(),
                user: key.user.clone(),
                leaf: snap.repo.packs[i].pack.id.clone(),
                champion: champ.pack_version.clone(),
                canary,
                health: None,
            });
        }
        let mut attention = Vec::new();
        for r in rollouts.iter().filter(|r| snap.visible(&r.pack_id, scope)) {
            let what = match r.state {
                RolloutState::Stalled => "stalled",
                RolloutState::Held => "held",
                _ => "in progress",
            };
            attention.push((
                r.pack_id.clone(),
                html! {
                    "Rollout " a href=(format!("/ui/rollouts/{}", enc(&r.rollout_id))) { (r.rollout_id) }
                    " of " (r.pack_id) " is " span.(if what == "in progress" { "ok" } else { "warn" }) { (what) }
                    " at " (r.percent) "% (" (r.canary_version) "): "
                    (r.detail.as_ref().map(|d| d.why.as_str()).unwrap_or(""))
                },
            ));
        }
        for e in effects.iter().filter(|e| snap.visible(&e.pack_id, scope)) {
            if e.state == crate::model::EffectState::Pending {
                attention.push((
                    e.pack_id.clone(),
                    html! {
                        "The revert of " (e.pack_id) " is not in git yet"
                        @if e.attempts > 0 {
                            span.bad { " (" (e.attempts) " failed attempts: " (e.last_error.as_deref().unwrap_or("")) ")" }
                        }
                    },
                ));
            }
        }
        for (pack, version) in holds.iter().filter(|(p, _)| snap.visible(p, scope)) {
            attention.push((
                pack.clone(),
                html! { (pack) " " (version) " was rolled back and is held until a newer version is merged" },
            ));
        }
        let mut domains: Vec<String> = snap.repo.domains.keys().cloned().collect();
        domains.sort();
        let tenants: Vec<String> = match scope {
            Some(t) => vec![t.to_string()],
            None => snap.repo.tenants.keys().cloned().collect(),
        };
        FleetData {
            commit: snap.commit.clone(),
            chains,
            total,
            page,
            pages,
            domain: domain.map(String::from),
            tenant: tenant.map(String::from),
            attention,
            domains,
            tenants,
            github: None,
        }
    }
}

/// Previous and next links of the fleet's chain table, filters kept.
fn fleet_pager(d: &FleetData) -> Markup {
    let link = |page: usize| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(x) = &d.domain {
            q.append_pair("domain", x);
        }
        if let Some(x) = &d.tenant {
            q.append_pair("tenant", x);
        }
        q.append_pair("page", &page.to_string());
        format!("/ui/?{}", q.finish())
    };
    html! {
        @if d.pages > 1 {
            nav.pager aria-label="Chain pages" {
                @if d.page > 1 { a href=(link(d.page - 1)) rel="prev" { "← previous" } " " }
                @if d.page < d.pages { a href=(link(d.page + 1)) rel="next" { "next →" } }
            }
        }
    }
}

pub fn fleet(v: &Viewer, d: &FleetData) -> Markup {
    page(
        Some(v),
        "Fleet",
        "/ui/",
        html! {
            h1 { "Fleet" }
            p.muted {
                "Serving commit "
                @match &d.commit {
                    Some(c) => { (links::commit(d.github.as_deref(), c)) }
                    None => { code { "(none yet)" } }
                }
                ". Every scope chain (domain × tenant × user) and what it serves now."
            }
            h2 { "Needs attention" }
            @if d.attention.is_empty() {
                p.ok { "Nothing: no rollout in progress, no revert owed to git, no held version." }
            } @else {
                ul {
                    @for (_, item) in &d.attention { li { (item) } }
                }
            }
            h2 { "Scope chains" }
            form.filters method="get" action="/ui/" {
                label { "Domain"
                    select name="domain" {
                        option value="" { "every domain" }
                        @for dom in &d.domains { option value=(dom) selected[d.domain.as_deref() == Some(dom.as_str())] { (dom) } }
                    }
                }
                @if v.tenant().is_none() {
                    label { "Tenant"
                        select name="tenant" {
                            option value="" { "every tenant" }
                            @for t in &d.tenants { option value=(t) selected[d.tenant.as_deref() == Some(t.as_str())] { (t) } }
                        }
                    }
                }
                button.primary type="submit" { "Filter" }
            }
            p.muted {
                (d.total) " chain(s)"
                @if d.pages > 1 { ", page " (d.page) " of " (d.pages) " (" (FLEET_PAGE) " a page)" }
                "."
            }
            (fleet_pager(d))
            table {
                thead { tr { th { "Domain" } th { "Tenant" } th { "User" } th { "Leaf pack" } th { "Champion" } th { "Canary (share)" } th { "KPI health (24 h)" } } }
                tbody {
                    @for c in &d.chains {
                        tr {
                            td { (c.domain) }
                            td { (c.tenant.as_deref().unwrap_or("–")) }
                            td { (c.user.as_deref().unwrap_or("–")) }
                            td { a href=(format!("/ui/packs/{}", enc(&c.leaf))) { (c.leaf) } }
                            td { (c.champion) }
                            td {
                                @match &c.canary {
                                    Some((id, version, _, true)) => {
                                        a href=(format!("/ui/rollouts/{}", enc(id))) { (version) } " " span.bad { "rolled back: champion pinned" }
                                    }
                                    Some((id, version, share, false)) => {
                                        a href=(format!("/ui/rollouts/{}", enc(id))) { (version) } " (" (share) "%)"
                                    }
                                    None => { span.muted { "–" } }
                                }
                            }
                            td.wrap {
                                @match &c.health {
                                    None => { span.muted { "no target" } }
                                    Some(h) if h.runs == 0 => { span.muted { "no runs" } }
                                    Some(h) if h.missed.is_empty() => { span.ok { "meets its targets" } " (" (h.runs) " runs)" }
                                    Some(h) => { span.bad { "below target: " (h.missed.join("; ")) } " (" (h.runs) " runs)" }
                                }
                            }
                        }
                    }
                }
            }
            (fleet_pager(d))
        },
    )
}

pub fn runs(
    v: &Viewer,
    q: &crate::run_query::RunQuery,
    rows: &[RunRow],
    next: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let val = |o: &Option<String>| o.clone().unwrap_or_default();
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for (k, o) in [
        ("tenant", &q.tenant),
        ("pack", &q.pack),
        ("version", &q.version),
        ("arm", &q.arm),
        ("task_type", &q.task_type),
        ("error_code", &q.error_code),
        ("since", &q.since),
        ("until", &q.until),
    ] {
        if let Some(x) = o {
            pairs.push((k, x.clone()));
        }
    }
    let qs = |extra: &[(&str, String)]| -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, x) in pairs.iter().chain(extra) {
            s.append_pair(k, x);
        }
        s.finish()
    };
    page(
        Some(v),
        "Runs",
        "/ui/runs",
        html! {
            h1 { "Runs" }
            form.filters method="get" action="/ui/runs" {
                @if v.tenant().is_none() {
                    label { "Tenant" input type="text" name="tenant" value=(val(&q.tenant)); }
                }
                label { "Pack" input type="text" name="pack" value=(val(&q.pack)); }
                label { "Version" input type="text" name="version" value=(val(&q.version)); }
                label { "Arm" input type="text" name="arm" value=(val(&q.arm)) placeholder="champion, canary, none"; }
                label { "Task type" input type="text" name="task_type" value=(val(&q.task_type)); }
                label { "Error code" input type="text" name="error_code" value=(val(&q.error_code)) placeholder="none: no error"; }
                label { "Since" input type="text" name="since" value=(val(&q.since)) placeholder="24h or RFC 3339"; }
                label { "Until" input type="text" name="until" value=(val(&q.until)); }
                button.primary type="submit" { "Filter" }
            }
            @if let Some(e) = error {
                p.bad role="alert" { (e) }
            }
            p {
                "Export every matching run: "
                a href=(format!("/ui/runs/export.csv?{}", qs(&[]))) { "CSV" } " · "
                a href=(format!("/ui/runs/export.ndjson?{}", qs(&[]))) { "NDJSON" }
            }
            table {
                thead { tr { th { "When" } th { "Tenant" } th { "Pack" } th { "Version" } th { "Task" } th { "Outcome" } th { "Latency" } th { "Arm" } th { "User" } th { "Run" } } }
                tbody {
                    @for r in rows {
                        tr {
                            td { (when(&r.created_at)) }
                            td { (r.tenant_id) }
                            td { a href=(format!("/ui/packs/{}", enc(&r.pack_id))) { (r.pack_id) } }
                            td { (r.pack_version.split('+').next().unwrap_or_default()) }
                            td { (r.task_type) }
                            td {
                                @if r.success_bool { span.ok { "ok" } }
                                @else { span.bad { "failed" } " " (r.error_code.as_deref().unwrap_or("")) }
                            }
                            td { (format!("{:.0} ms", r.latency_ms)) }
                            td { (r.arm.as_ref().map_or("–".to_string(), |a| a.arm.to_string())) }
                            td { (r.user_id) }
                            td { code { (r.run_id) } }
                        }
                    }
                }
            }
            @if rows.is_empty() { p.muted { "No run matches." } }
            @if let Some(n) = next {
                p { a href=(format!("/ui/runs?{}", qs(&[("after", n.to_string())]))) { "Older runs →" } }
            }
        },
    )
}

/// The most decisions the decisions page lists (newest first).
pub const DECISIONS_SHOWN: usize = 500;

pub fn decisions(
    v: &Viewer,
    pack: Option<&str>,
    list: &[Decision],
    audit: Option<&[AuditEntry]>,
    gh: Option<&str>,
) -> Markup {
    page(
        Some(v),
        "Decisions",
        "/ui/decisions",
        html! {
            h1 { "Decisions" @if let Some(p) = pack { " of " (p) } }
            form.filters method="get" action="/ui/decisions" {
                label { "Pack" input type="text" name="pack" value=(pack.unwrap_or("")); }
                button.primary type="submit" { "Filter" }
            }
            @if list.len() > DECISIONS_SHOWN {
                p.muted { "The newest " (DECISIONS_SHOWN) " of " (list.len()) " decisions; filter by pack for the rest of a pack's history." }
            }
            (decision_table(&list[..list.len().min(DECISIONS_SHOWN)], gh))
            @if let Some(a) = audit {
                h2 { "Audit log" }
                table {
                    thead { tr { th { "When" } th { "Token" } th { "Action" } th { "Outcome" } th { "Detail" } } }
                    tbody {
                        @for e in a {
                            tr {
                                td { (when(&e.at)) }
                                td { (e.token) }
                                td { (e.action) }
                                td { (e.outcome) }
                                td.wrap { (e.detail) }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn improve(v: &Viewer, list: &[ImproveRow]) -> Markup {
    page(
        Some(v),
        "Improve",
        "/ui/improve",
        html! {
            h1 { "Improve runs" }
            @if list.is_empty() {
                p.muted { "No improvement run recorded (missionctl improve writes one per run)." }
            } @else {
                table {
                    thead { tr { th { "Started" } th { "Pack" } th { "Tenant" } th { "Champion" } th { "Candidates" } th { "Stop" } th { "Spend" } th { "Branch / pull request" } } }
                    tbody {
                        @for r in list {
                            tr {
                                td { (when(&r.started_at)) }
                                td { a href=(format!("/ui/packs/{}", enc(&r.pack_id))) { (r.pack_id) } }
                                td { (r.tenant) }
                                td { (r.champion_version) }
                                td { (r.candidates) }
                                td { (r.stop.as_str()) }
                                td { (format!("${:.2}", r.spend_usd)) }
                                td { (r.pull_request.as_deref().or(r.branch.as_deref()).unwrap_or("–")) }
                            }
                        }
                    }
                }
            }
        },
    )
}
