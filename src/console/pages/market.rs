//! The marketplace pages: every configured catalog's packs, one pack's
//! facts with its compatibility report, and what a proposal came to. All
//! catalog text goes through maud's escaping; the only links built from
//! catalog values are the console's own, percent-encoded.

use super::*;
use crate::console::market::{Checked, Installed, Loaded, Outcome, Row};
use crate::market::compat::Report;
use crate::market::{PackEntry, VersionEntry};

fn pack_href(catalog: &str, id: &str) -> String {
    format!("/ui/market/{}/{}", enc(catalog), enc(id))
}

fn or_none(v: &[String], none: &str) -> String {
    if v.is_empty() {
        none.to_string()
    } else {
        v.join(", ")
    }
}

pub fn market_list(
    v: &Viewer,
    l: &Loaded,
    rows: &[Row<'_>],
    q: &str,
    only: Option<&str>,
) -> Markup {
    page(
        Some(v),
        "Market",
        "/ui/market",
        html! {
            h1 { "Domain-pack market" }
            @if let Some(e) = &l.config_error {
                p.bad role="alert" { (e) }
            } @else if !l.configured {
                p.muted { "mission.yaml lists no catalogs. Add one under "
                    code { "marketplace.catalogs" } " (see the marketplace chapter) to browse its packs here." }
            }
            @for w in &l.warnings {
                p.warn role="status" { "Warning: " (w) }
            }
            form.filters method="get" action="/ui/market" {
                label { "Search (every word must match)"
                    input type="text" name="q" value=(q) placeholder="id, description, tool, contract, maintainer";
                }
                label { "Catalog"
                    select name="catalog" {
                        option value="" { "every catalog" }
                        @for c in &l.catalogs {
                            @if Some(c.name.as_str()) == only {
                                option value=(c.name) selected { (c.name) }
                            } @else {
                                option value=(c.name) { (c.name) }
                            }
                        }
                    }
                }
                button.primary type="submit" { "Search" }
            }
            @if rows.is_empty() {
                p.muted { "No pack matches." }
            } @else {
                table {
                    thead { tr { th { "Catalog" } th { "Pack" } th { "Latest" } th { "Autonomy" }
                        th { "Tools" } th { "Eval cases" } th { "Description" } } }
                    tbody {
                        @for r in rows {
                            tr {
                                td { (r.catalog) }
                                td { a href=(pack_href(r.catalog, &r.pack.id)) { (r.pack.id) } }
                                td { (r.latest.version) }
                                td { (r.latest.tools.autonomy.as_deref().unwrap_or("unset")) }
                                td { (r.latest.tools.allow.len()) }
                                td { (r.latest.eval_cases.total) }
                                td.wrap { (r.pack.description) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The compatibility report, as a panel.
fn report(r: &Report, withheld: usize) -> Markup {
    html! {
        div.panel #compatibility {
            p { "Against " strong { (r.fleet) } ": "
                @if r.validates { span.ok { "validates under this fleet's hard constraints, policies and tiers" } }
                @else { span.bad { "does not validate under this fleet's rules" } } }
            p { "Autonomy " strong { (r.autonomy.as_deref().unwrap_or("unset")) }
                " (ceiling " (r.max_autonomy.as_deref().unwrap_or("none")) ")" }
            p { "Prompt " strong { (r.prompt_tokens) " tokens" } "; the largest chain it joins about "
                (r.largest_chain_tokens) " (ceiling "
                (r.max_prompt_tokens.map_or("none".to_string(), |m| m.to_string())) ")" }
            @if !r.forbidden_tools.is_empty() {
                p.bad { "Tools this fleet forbids: " (r.forbidden_tools.join(", ")) }
            }
            p { "Scope chains it adds: " (r.chains.total) " (domain " code { (r.chains.domain) }
                "; tenants: " (or_none(&r.chains.tenants, "none")) "; "
                (r.chains.tenant_users) " tenant users; " (r.chains.personal_users)
                " personal users decide by their " code { "domains:" } ")" }
            p { "Installed now: " (r.installed.as_deref().unwrap_or("no")) }
            @if withheld > 0 {
                p.muted { (withheld) " finding(s) in other tenants' packs are not shown to a tenant sign-in." }
            }
        }
        @if r.problems.is_empty() {
            p.muted { "Placing it adds no error or warning." }
        } @else {
            h3 { "What placing it adds" }
            table {
                thead { tr { th { "Severity" } th { "Code" } th { "Where" } th { "Message" } } }
                tbody {
                    @for f in &r.problems {
                        tr {
                            td { @if f.severity == "error" { span.bad { (f.severity) } } @else { span.warn { (f.severity) } } }
                            td { code { (f.code) } }
                            td { code { (f.file) ":" (f.line) ":" (f.col) } }
                            td.wrap { (f.message)
                                @if let Some(h) = &f.help { br; span.muted { "help: " (h) } } }
                        }
                    }
                }
            }
        }
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

pub fn market_pack(
    v: &Viewer,
    catalog: &str,
    entry: &PackEntry,
    ver: &VersionEntry,
    checked: &Checked,
    may_propose: bool,
    local: bool,
) -> Markup {
    let contracts: Vec<String> = ver
        .contracts
        .iter()
        .map(|c| match &c.description {
            Some(d) => format!("{} ({d})", c.id),
            None => c.id.clone(),
        })
        .collect();
    let tags: Vec<String> = ver
        .eval_cases
        .by_tag
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    page(
        Some(v),
        &entry.id,
        "/ui/market",
        html! {
            p { a href="/ui/market" { "Market" } " / " (catalog) }
            h1 { (entry.id) " " (ver.version) }
            div.panel {
                p { (entry.description) }
                table {
                    tbody {
                        tr { th { "Catalog" } td { (catalog) } }
                        tr { th { "Pack id" } td { (entry.pack_id) " (domain " (entry.domain) ")" } }
                        tr { th { "Licence" } td { (entry.license.as_deref().unwrap_or("not stated")) } }
                        tr { th { "Maintainers" } td.wrap { (or_none(&entry.maintainers, "not stated")) } }
                        tr { th { "Versions" } td {
                            @for (i, x) in entry.versions.iter().enumerate() {
                                @if i > 0 { ", " }
                                @if x.version == ver.version { strong { (x.version) } }
                                @else { a href=(format!("{}?version={}", pack_href(catalog, &entry.id), enc(&x.version))) { (x.version) } }
                            }
                        } }
                        tr { th { "Source" } td.wrap { code { (ver.source.repository) } " at " code { (ver.source.commit) } " in " code { (ver.source.path) } } }
                        tr { th { "Digest" } td { code { (ver.digest) } } }
                        tr { th { "Autonomy" } td { (ver.tools.autonomy.as_deref().unwrap_or("unset")) } }
                        tr { th { "Tools" } td.wrap { (or_none(&ver.tools.allow, "none"))
                            @if !ver.tools.deny.is_empty() { " · denied: " (ver.tools.deny.join(", ")) } } }
                        tr { th { "Output contracts" } td.wrap { (or_none(&contracts, "none")) } }
                        tr { th { "Eval cases" } td.wrap { (ver.eval_cases.total) " (" (or_none(&tags, "no tags")) ")" } }
                        tr { th { "Prompt" } td { (ver.prompt_tokens) " tokens" } }
                    }
                }
            }
            h2 { "KPIs it declares" }
            pre.diff { (pretty(&ver.kpis)) }
            h2 { "Recorded evidence" }
            @match &ver.evidence {
                Some(e) => { pre.diff { (pretty(e)) } }
                None => { p.muted { "None recorded in the catalog." } }
            }
            h2 { "Compatibility with this fleet" }
            @match &checked.report {
                Err(e) => { p.bad role="alert" { "The compatibility report could not be made: " (e) } }
                Ok(r) => {
                    (report(r, checked.withheld))
                    h2 { "Propose" }
                    (propose(v, catalog, entry, ver, r, &checked.installed, may_propose, local))
                }
            }
        },
    )
}

#[allow(clippy::too_many_arguments)]
fn propose(
    v: &Viewer,
    catalog: &str,
    entry: &PackEntry,
    ver: &VersionEntry,
    r: &Report,
    installed: &Installed,
    may_propose: bool,
    local: bool,
) -> Markup {
    let dir = format!("packs/domains/{}/", entry.id);
    let button = match installed {
        Installed::Locked(l) if l.version == ver.version && l.digest == ver.digest => {
            return html! { p.muted { "Installed at this version, as catalog " (l.catalog) " publishes it." } };
        }
        Installed::Locked(_) => "Propose upgrade",
        Installed::Unlocked => {
            return html! { p.muted { code { (dir) } " exists in this fleet but was not installed from a catalog (it has no "
            code { (crate::market::LOCK_FILE) } "): there is nothing to propose." } };
        }
        Installed::No => "Propose install",
    };
    if !r.validates {
        return html! { p.bad { "It does not validate under this fleet's rules (above), so the console does not propose it." } };
    }
    if !may_propose {
        return html! { p.muted { "Proposing takes an unscoped admin sign-in: a domain pack is shared by every tenant." } };
    }
    if !local {
        return html! { p.muted { "The served repository is a remote URL: propose from a clone with "
        code { "missionctl market add " (entry.id) "@" (ver.version) " --open-pr" } "." } };
    }
    html! {
        form.stack method="post" action=(format!("{}/propose", pack_href(catalog, &entry.id))) {
            input type="hidden" name="csrf" value=(v.csrf);
            input type="hidden" name="version" value=(ver.version);
            p.muted { "Writes " code { (dir) } " with its lock on a new branch (never the main branch) and, when GitHub is configured, opens the pull request: the gate, approvals and canary apply as to any change." }
            button.primary type="submit" { (button) }
        }
    }
}

pub fn market_result(
    v: &Viewer,
    catalog: &str,
    id: &str,
    outcome: &Outcome,
    no_pr: Option<&str>,
) -> Markup {
    let back = pack_href(catalog, id);
    page(
        Some(v),
        "Proposal",
        "/ui/market",
        html! {
            @match outcome {
                Outcome::Proposed { proposal, upgrade, report: r, pull } => {
                    h1 { "Proposed " (id) " " (proposal.lock.version) }
                    p role="status" {
                        @if proposal.existing { "The branch already held this proposal: " } @else { "Branch " }
                        code { (proposal.branch) } " at " code { (proposal.commit.get(..12).unwrap_or(&proposal.commit)) }
                        " off " code { (proposal.base.get(..12).unwrap_or(&proposal.base)) }
                        " (" (proposal.written.len()) " file(s) written"
                        @if !proposal.removed.is_empty() { ", " (proposal.removed.len()) " removed" } ")."
                    }
                    @match pull {
                        Some(Ok(p)) => { p { "Pull request "
                            @if p.url.starts_with("https://") || p.url.starts_with("http://") {
                                a href=(p.url) rel="noreferrer" { "#" (p.number) }
                            } @else { "#" (p.number) }
                            @if p.existing { " (already open)" } } }
                        Some(Err(e)) => { p.bad role="alert" { "The pull request was not opened: " (e) } }
                        None => { p.muted { "No pull request: " (no_pr.unwrap_or("")) "." } }
                    }
                    @if let Some(u) = upgrade {
                        @if !u.kept_local.is_empty() { p { "Local edits kept: " (u.kept_local.join(", ")) } }
                        h2 { "Upstream change " (u.from) " → " (u.to) }
                        pre.diff { (u.upstream_diff) }
                    }
                    (report(r, 0))
                }
                Outcome::Conflicts(u) => {
                    h1 { "Not proposed" }
                    p.bad role="alert" { (u.conflicts.len()) " file(s) changed both here and upstream (" (u.from) " → " (u.to)
                        "); nothing was written. Move the local changes to a tenant or user pack, or restore the catalog's files, then propose again." }
                    ul { @for c in &u.conflicts { li { code { (c.path) } ": " (c.why) } } }
                }
                Outcome::Invalid(r) => {
                    h1 { "Not proposed" }
                    p.bad role="alert" { (id) " " (r.version) " does not validate under this fleet's rules; nothing was written. Fix it upstream in its catalog." }
                    (report(r, 0))
                }
                Outcome::Refused(why) => {
                    h1 { "Not proposed" }
                    p.bad role="alert" { (why) }
                }
            }
            p { a href=(back) { "Back to " (id) } " · " a href="/ui/market" { "Market" } }
        },
    )
}
