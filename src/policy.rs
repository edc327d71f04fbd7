//! Hard constraints, tool narrowing, tier ceilings and isolation: the rules a
//! child scope extends but never breaks.
//!
//! Each rule reports at the child's line and names the rule's own line as a
//! related place, so an author sees both what they wrote and what it breaks.

use std::collections::{BTreeSet, HashMap};

use rayon::prelude::*;

use crate::diagnostic::{Code, Diagnostic};
use crate::pack::{Autonomy, Location, PackDoc, Repo};
use crate::resolve;
use crate::yaml::Pos;

/// Case- and whitespace-insensitive form for clause and phrase matching.
pub(crate) fn normalize_text(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// What the model receives of a prompt file: the text without its HTML /
/// Markdown comments (`<!-- … -->`; an unclosed one runs to the end), which
/// are authoring notes. A clause inside a comment is not in force.
pub(crate) fn effective_text(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains("<!--") {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        match rest[start + 4..].find("-->") {
            Some(end) => rest = &rest[start + 4 + end + 3..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Text for phrase matching: lowercase words separated by single spaces,
/// punctuation and line breaks treated as spaces, with a space at each end
/// so a match starts and ends on word boundaries; and for each byte of the
/// result, the byte offset in `s` it came from.
pub(crate) fn phrase_form(s: &str) -> (String, Vec<usize>) {
    let mut out = String::from(" ");
    let mut at = vec![0];
    for (i, c) in s.char_indices() {
        if c.is_alphanumeric() {
            for l in c.to_lowercase() {
                let mut buf = [0u8; 4];
                let enc = l.encode_utf8(&mut buf);
                out.push_str(enc);
                at.extend(std::iter::repeat_n(i, enc.len()));
            }
        } else if !out.ends_with(' ') {
            out.push(' ');
            at.push(i);
        }
    }
    if !out.ends_with(' ') {
        out.push(' ');
        at.push(s.len());
    }
    (out, at)
}

/// Where a banned phrase occurs in `text` (byte offset), matched on words
/// whatever the case, spacing, line breaks or punctuation between them.
pub(crate) fn find_phrase(text: &str, phrase: &str) -> Option<usize> {
    let (p, _) = phrase_form(phrase);
    if p.trim().is_empty() {
        return None;
    }
    let (t, at) = phrase_form(text);
    t.find(&p).map(|i| at.get(i + 1).copied().unwrap_or(0))
}

/// Line and column (1-based) of byte offset `at` in `text`.
fn line_col(text: &str, at: usize) -> Pos {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Pos::new(line as u32, col as u32)
}

/// The parent packs whose tool profile a pack must stay within.
pub(crate) fn parents(repo: &Repo, p: &PackDoc) -> Vec<usize> {
    match &p.location {
        Location::Global => vec![],
        Location::Domain(_) | Location::Tenant(_) | Location::PersonalUser(_) => {
            repo.global.into_iter().collect()
        }
        Location::TenantUser { tenant, .. } => repo
            .tenants
            .get(tenant)
            .copied()
            .or(repo.global)
            .into_iter()
            .collect(),
    }
}

/// The effective allow list of a pack (its own, else its parent's), and where it was set.
fn effective_allow(repo: &Repo, i: usize) -> Option<(Vec<String>, usize)> {
    let p = &repo.packs[i];
    if let Some(a) = &p.pack.tools.allow {
        return Some((a.clone(), i));
    }
    parents(repo, p)
        .first()
        .and_then(|pi| effective_allow(repo, *pi))
}

pub(crate) fn effective_autonomy(repo: &Repo, i: usize) -> Option<(Autonomy, usize)> {
    let p = &repo.packs[i];
    if let Some(a) = p.pack.tools.autonomy {
        return Some((a, i));
    }
    parents(repo, p)
        .first()
        .and_then(|pi| effective_autonomy(repo, *pi))
}

/// A child whose autonomy is above `ancestor`'s effective autonomy.
fn escalation(repo: &Repo, p: &PackDoc, ancestor: usize, whose: &str) -> Option<Diagnostic> {
    let a = p.pack.tools.autonomy?;
    let (pa, set_in) = effective_autonomy(repo, ancestor)?;
    if a <= pa {
        return None;
    }
    let src = &repo.packs[set_in];
    Some(
        Diagnostic::error(
            Code::AutonomyEscalation,
            &p.file,
            p.node.pos_at("/tools/autonomy"),
            format!("autonomy {a} is above {whose} {pa}; a child may only lower autonomy"),
        )
        .related(
            &src.file,
            src.node.pos_at("/tools/autonomy"),
            "ancestor autonomy",
        ),
    )
}

/// All semantic checks. Packs that failed to load are skipped (their
/// syntax or schema errors are already reported).
pub fn check(repo: &Repo) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    check_structure(repo, &mut out);
    check_tools(repo, &mut out);
    check_prompts(repo, &mut out);
    check_chains(repo, &mut out);
    check_evals(repo, &mut out);
    out
}

fn check_structure(repo: &Repo, out: &mut Vec<Diagnostic>) {
    for p in &repo.packs {
        if let Location::TenantUser { tenant, .. } = &p.location
            && !repo.tenants.contains_key(tenant)
            && !repo
                .failed_packs
                .contains(&format!("packs/tenants/{tenant}/pack.yaml"))
        {
            out.push(
                Diagnostic::error(
                    Code::UnknownParent,
                    &p.file,
                    p.node.pos_at("/scope"),
                    format!("user pack of tenant `{tenant}`, but there is no packs/tenants/{tenant}/pack.yaml"),
                )
                .help("add the tenant pack, or move the user to the tenant they belong to"),
            );
        }
        if let Some(ds) = &p.pack.domains {
            for (n, d) in ds.iter().enumerate() {
                if !repo.domains.contains_key(d)
                    && !repo
                        .failed_packs
                        .contains(&format!("packs/domains/{d}/pack.yaml"))
                {
                    let suggestion = repo
                        .domains
                        .keys()
                        .map(|k| (strsim::jaro_winkler(k, d), k))
                        .filter(|(s, _)| *s > 0.8)
                        .max_by(|a, b| a.0.total_cmp(&b.0))
                        .map(|(_, k)| format!("did you mean `{k}`? "))
                        .unwrap_or_default();
                    out.push(
                        Diagnostic::error(
                            Code::UnknownParent,
                            &p.file,
                            p.node.pos_at(&format!("/domains/{n}")),
                            format!("unknown domain `{d}`"),
                        )
                        .help(format!(
                            "{suggestion}known domains: {}",
                            repo.domains.keys().cloned().collect::<Vec<_>>().join(", ")
                        )),
                    );
                }
            }
        }
    }
}

fn check_tools(repo: &Repo, out: &mut Vec<Diagnostic>) {
    let hard = repo.hard.as_ref();
    let forbidden: HashMap<&str, usize> = hard
        .map(|h| {
            h.value
                .forbidden_tools
                .iter()
                .enumerate()
                .map(|(i, t)| (t.as_str(), i))
                .collect()
        })
        .unwrap_or_default();
    for p in &repo.packs {
        let allow = p.pack.tools.allow.clone().unwrap_or_default();
        // Forbidden tools, whatever the scope.
        if let Some(h) = hard {
            for (n, t) in allow.iter().enumerate() {
                if let Some(fi) = forbidden.get(t.as_str()) {
                    out.push(
                        Diagnostic::error(
                            Code::ForbiddenTool,
                            &p.file,
                            p.node.pos_at(&format!("/tools/allow/{n}")),
                            format!("tool `{t}` is forbidden by the global hard constraints"),
                        )
                        .related(
                            &h.file,
                            h.node.pos_at(&format!("/forbidden_tools/{fi}")),
                            "forbidden here",
                        )
                        .help(format!("remove `{t}` from tools.allow")),
                    );
                }
            }
            if let (Some(m), Some(allowed)) = (&p.pack.model, &h.value.allowed_models)
                && !allowed.contains(m)
            {
                out.push(
                    Diagnostic::error(
                        Code::ModelNotAllowed,
                        &p.file,
                        p.node.pos_at("/model"),
                        format!("model `{m}` is not one the global hard constraints allow"),
                    )
                    .related(&h.file, h.node.pos_at("/allowed_models"), "allowed models")
                    .help(format!("use one of: {}", allowed.join(", "))),
                );
            }
            if let Some(a) = p.pack.tools.autonomy
                && a > h.value.max_autonomy
            {
                out.push(
                    Diagnostic::error(
                        Code::AutonomyCeiling,
                        &p.file,
                        p.node.pos_at("/tools/autonomy"),
                        format!(
                            "autonomy {a} ({}) exceeds the global ceiling {}",
                            a.meaning(),
                            h.value.max_autonomy
                        ),
                    )
                    .related(&h.file, h.node.pos_at("/max_autonomy"), "ceiling set here")
                    .help(format!("use {} or lower", h.value.max_autonomy)),
                );
            }
        }
        // Narrowing against the parent profile.
        let Some(&parent) = parents(repo, p).first() else {
            continue;
        };
        if !allow.is_empty()
            && let Some((parent_allow, set_in)) = effective_allow(repo, parent)
        {
            let src = &repo.packs[set_in];
            for (n, t) in allow.iter().enumerate() {
                if !parent_allow.contains(t) && !forbidden.contains_key(t.as_str()) {
                    out.push(
                        Diagnostic::error(
                            Code::ToolNotNarrowing,
                            &p.file,
                            p.node.pos_at(&format!("/tools/allow/{n}")),
                            format!(
                                "tool `{t}` is not allowed by the {} scope; a child may only narrow its parent's tools",
                                src.location.scope_type()
                            ),
                        )
                        .related(&src.file, src.node.key_pos_at("/tools/allow"), "the parent's allow list")
                        .help(format!("remove `{t}`, or add it to the parent's tools.allow through review by its owners")),
                    );
                }
            }
        }
        out.extend(escalation(repo, p, parent, "the parent's"));
        // Tenants and personal users against each domain they run.
        if matches!(p.location, Location::Tenant(_) | Location::PersonalUser(_)) {
            let domains: Vec<&String> = match &p.pack.domains {
                Some(ds) => ds.iter().collect(),
                None => repo.domains.keys().collect(),
            };
            for d in domains {
                let Some(&di) = repo.domains.get(d) else {
                    continue;
                };
                let dp = &repo.packs[di];
                out.extend(escalation(repo, p, di, &format!("domain `{d}`'s")));
                if let (false, Some((dallow, _))) = (allow.is_empty(), effective_allow(repo, di)) {
                    for (n, t) in allow.iter().enumerate() {
                        if !dallow.contains(t) && dp.pack.tools.allow.is_some() {
                            out.push(
                                Diagnostic::warning(
                                    Code::ToolNotNarrowing,
                                    &p.file,
                                    p.node.pos_at(&format!("/tools/allow/{n}")),
                                    format!("tool `{t}` is not allowed by domain `{d}`, so it has no effect there"),
                                )
                                .related(&dp.file, dp.node.key_pos_at("/tools/allow"), "domain allow list"),
                            );
                        }
                    }
                }
            }
        }
    }
}

fn check_prompts(repo: &Repo, out: &mut Vec<Diagnostic>) {
    check_safety_clauses(repo, out);
    check_banned_phrases(repo, out);
    check_section_shadowing(repo, out);
}

/// Required safety clauses must be in the global prompt, which every chain starts with.
fn check_safety_clauses(repo: &Repo, out: &mut Vec<Diagnostic>) {
    if let (Some(h), Some(g)) = (&repo.hard, repo.global) {
        let gp = &repo.packs[g];
        // What the model receives: comments removed; spacing, case and
        // punctuation do not matter, disabling the clause does.
        let text = gp
            .sections
            .iter()
            .map(|s| effective_text(&s.text).into_owned())
            .collect::<Vec<_>>()
            .join("\n");
        for (n, c) in h.value.required_safety_clauses.iter().enumerate() {
            if find_phrase(&text, &c.text).is_none() {
                out.push(
                    Diagnostic::error(
                        Code::SafetyClauseMissing,
                        &gp.file,
                        gp.node.key_pos_at("/prompt"),
                        format!("the global prompt lacks required safety clause `{}`", c.id),
                    )
                    .related(
                        &h.file,
                        h.node.pos_at(&format!("/required_safety_clauses/{n}/text")),
                        "required here",
                    )
                    .help(format!(
                        "include this sentence in a global prompt section, outside any <!-- comment -->: \"{}\"",
                        c.text
                    )),
                );
            }
        }
    }
}

/// Banned phrases in any prompt text: the policy's, the global voice's and the pack's own.
fn check_banned_phrases(repo: &Repo, out: &mut Vec<Diagnostic>) {
    let mut banned: Vec<(String, String, Pos)> = Vec::new();
    if let Some(h) = &repo.hard {
        for (n, b) in h.value.banned_phrases.iter().enumerate() {
            banned.push((
                b.clone(),
                h.file.clone(),
                h.node.pos_at(&format!("/banned_phrases/{n}")),
            ));
        }
    }
    if let Some(g) = repo.global {
        let gp = &repo.packs[g];
        for (n, b) in gp.pack.voice.banned_phrases.iter().enumerate() {
            banned.push((
                b.clone(),
                gp.file.clone(),
                gp.node.pos_at(&format!("/voice/banned_phrases/{n}")),
            ));
        }
    }
    let banned: Vec<(String, String, Pos)> = banned
        .into_iter()
        .map(|(b, f, p)| (b.to_lowercase(), f, p))
        .collect();
    let found: Vec<Diagnostic> = repo
        .packs
        .par_iter()
        .flat_map_iter(|p| {
            let mut local = Vec::new();
            let own: Vec<(String, String, Pos)> = p
                .pack
                .voice
                .banned_phrases
                .iter()
                .enumerate()
                .map(|(n, b)| {
                    (
                        b.to_lowercase(),
                        p.file.clone(),
                        p.node.pos_at(&format!("/voice/banned_phrases/{n}")),
                    )
                })
                .collect();
            // Every text the model receives: the prompt sections (comments
            // removed) and the voice profile's persona, tone and style rules.
            let mut texts: Vec<(&str, String, Option<Pos>)> = p
                .sections
                .iter()
                .map(|s| (s.file.as_str(), effective_text(&s.text).into_owned(), None))
                .collect();
            if let Some(v) = p.node.get("voice") {
                for key in ["persona", "tone", "style_rules"] {
                    let Some(n) = v.get(key) else { continue };
                    let items: Vec<&crate::yaml::Node> = match &n.value {
                        crate::yaml::Value::Seq(items) => items.iter().collect(),
                        _ => vec![n],
                    };
                    for item in items {
                        if let Some(t) = item.as_str() {
                            texts.push((p.file.as_str(), t.to_string(), Some(item.pos)));
                        }
                    }
                }
            }
            for (file, text, at_pos) in &texts {
                for (phrase, bfile, pos) in banned.iter().chain(own.iter()) {
                    if let Some(at) = find_phrase(text, phrase) {
                        let (where_, at) = match at_pos {
                            Some(p) => ("the voice profile", *p),
                            None => ("prompt text", line_col(text, at)),
                        };
                        local.push(
                            Diagnostic::error(
                                Code::BannedPhrase,
                                *file,
                                at,
                                format!("{where_} contains the banned phrase \"{phrase}\""),
                            )
                            .related(bfile, *pos, "banned here")
                            .help("rephrase this sentence (phrases match whatever the case, spacing, line breaks or punctuation)"),
                        );
                    }
                }
            }
            local
        })
        .collect();
    out.extend(found);
}

/// A child cannot redefine an ancestor's prompt section.
fn check_section_shadowing(repo: &Repo, out: &mut Vec<Diagnostic>) {
    for p in &repo.packs {
        let mut ancestors: Vec<usize> = Vec::new();
        match &p.location {
            Location::Global => {}
            Location::Domain(_) => ancestors.extend(repo.global),
            Location::Tenant(_) | Location::PersonalUser(_) => {
                ancestors.extend(repo.global);
                match &p.pack.domains {
                    Some(ds) => ancestors.extend(ds.iter().filter_map(|d| repo.domains.get(d))),
                    None => ancestors.extend(repo.domains.values()),
                }
            }
            Location::TenantUser { tenant, .. } => {
                ancestors.extend(repo.global);
                if let Some(&t) = repo.tenants.get(tenant) {
                    ancestors.push(t);
                    match &repo.packs[t].pack.domains {
                        Some(ds) => ancestors.extend(ds.iter().filter_map(|d| repo.domains.get(d))),
                        None => ancestors.extend(repo.domains.values()),
                    }
                }
            }
        }
        for s in &p.sections {
            if let Some((a, asec)) = ancestors.iter().find_map(|a| {
                repo.packs[*a]
                    .sections
                    .iter()
                    .find(|x| x.id == s.id)
                    .map(|x| (*a, x))
            }) {
                let ap = &repo.packs[a];
                out.push(
                    Diagnostic::error(
                        Code::SectionShadow,
                        &p.file,
                        s.pos,
                        format!(
                            "prompt section `{}` is already defined by the {} scope; children add sections, they cannot replace one",
                            s.id,
                            ap.location.scope_type()
                        ),
                    )
                    .related(&ap.file, asec.pos, "defined here")
                    .help("give this section its own id"),
                );
            }
        }
    }
}

/// Checks over every resolvable chain: the prompt token ceiling and the tier's autonomy ceiling.
fn check_chains(repo: &Repo, out: &mut Vec<Diagnostic>) {
    let chains = resolve::all_chains(repo);
    let hard = repo.hard.as_ref();
    let mut reported: BTreeSet<(usize, &'static str)> = BTreeSet::new();
    for key in &chains {
        let Ok(idx) = resolve::chain(repo, key) else {
            continue;
        };
        // Bytes bound tokens from above: a chain under the ceiling in bytes
        // is under it in tokens, and nothing on it is tokenized.
        if let Some(h) = hard.filter(|h| {
            idx.iter()
                .map(|&i| repo.packs[i].prompt_tokens_upper_bound())
                .sum::<u64>()
                > h.value.max_prompt_tokens
        }) {
            // Report at the first layer where the running total crosses the ceiling.
            let mut total = 0u64;
            for &i in &idx {
                total += repo.packs[i].prompt_tokens();
                if total > h.value.max_prompt_tokens {
                    if reported.insert((i, "tokens")) {
                        let p = &repo.packs[i];
                        out.push(
                            Diagnostic::error(
                                Code::PromptTokens,
                                &p.file,
                                p.node.key_pos_at("/prompt"),
                                format!(
                                    "the resolved prompt for `{key}` is about {total} tokens, over the ceiling of {}",
                                    h.value.max_prompt_tokens
                                ),
                            )
                            .related(&h.file, h.node.pos_at("/max_prompt_tokens"), "ceiling set here")
                            .help("shorten the prompt sections in this chain"),
                        );
                    }
                    break;
                }
            }
        }
        // A bare domain chain serves no tenant or user; tiers apply once one is on the chain.
        if let Some(t) = repo
            .tiers
            .as_ref()
            .filter(|_| key.tenant.is_some() || key.user.is_some())
        {
            let tier = resolve::tier_of(repo, &idx);
            let preset = t.value.get(tier);
            let leaf = *idx.last().unwrap_or(&0);
            // Children can only lower autonomy, so the leaf-most setting is the effective one.
            let effective = idx
                .iter()
                .rev()
                .find_map(|i| repo.packs[*i].pack.tools.autonomy.map(|a| (a, *i)));
            if let Some((a, set_in)) = effective
                && a > preset.max_autonomy
                && reported.insert((leaf, "tier"))
            {
                let p = &repo.packs[leaf];
                let src = &repo.packs[set_in];
                let at = p
                    .node
                    .get("tier")
                    .map(|_| p.node.pos_at("/tier"))
                    .unwrap_or_else(|| p.node.pos_at("/id"));
                out.push(
                    Diagnostic::error(
                        Code::AutonomyCeiling,
                        &p.file,
                        at,
                        format!(
                            "`{key}` runs on the {tier} tier, whose ceiling is {}, but resolves to autonomy {a}",
                            preset.max_autonomy
                        ),
                    )
                    .related(&src.file, src.node.pos_at("/tools/autonomy"), "autonomy set here")
                    .related(&t.file, t.node.pos_at(&format!("/{}/max_autonomy", tier.as_str())), "tier ceiling")
                    .help(format!("set tools.autonomy: {} (or lower) in this pack", preset.max_autonomy)),
                );
            }
        }
    }
}

fn check_evals(repo: &Repo, out: &mut Vec<Diagnostic>) {
    const MIN_DOMAIN_CASES: usize = 8;
    for p in &repo.packs {
        // Assertions that name a contract must name one the chain defines.
        let mut contracts: BTreeSet<&str> =
            p.pack.eval.contracts.keys().map(String::as_str).collect();
        if let Some(g) = repo.global {
            contracts.extend(repo.packs[g].pack.eval.contracts.keys().map(String::as_str));
        }
        if let Location::Tenant(_) | Location::TenantUser { .. } | Location::PersonalUser(_) =
            p.location
        {
            for d in repo.domains.values() {
                contracts.extend(
                    repo.packs[*d]
                        .pack
                        .eval
                        .contracts
                        .keys()
                        .map(String::as_str),
                );
            }
        }
        for c in &p.cases {
            for a in &c.asserts {
                if let Some(name) = a
                    .value
                    .as_ref()
                    .and_then(|v| v.as_str())
                    .and_then(|v| v.strip_prefix("contract:"))
                    && !contracts.contains(name)
                {
                    out.push(
                        Diagnostic::error(
                            Code::EvalCase,
                            &c.file,
                            Pos::new(c.line, 1),
                            format!("case `{}` checks contract `{name}`, which no pack on its chain defines", c.id),
                        )
                        .help(format!("define it under eval.contracts in {}, or fix the name", p.file)),
                    );
                }
            }
        }
        if matches!(p.location, Location::Domain(_)) {
            if p.cases.len() < MIN_DOMAIN_CASES {
                out.push(
                    Diagnostic::warning(
                        Code::EvalCoverage,
                        &p.file,
                        p.node.key_pos_at("/eval"),
                        format!(
                            "domain pack has {} eval cases; at least {MIN_DOMAIN_CASES} give the gate evidence worth trusting",
                            p.cases.len()
                        ),
                    ),
                );
            }
            let tags: BTreeSet<&str> = p
                .cases
                .iter()
                .flat_map(|c| c.asserts.iter())
                .filter_map(|a| a.raw().get("tag").and_then(|t| t.as_str()))
                .collect();
            for needed in ["safety", "format", "quality"] {
                if !tags.contains(needed) {
                    out.push(Diagnostic::warning(
                        Code::EvalCoverage,
                        &p.file,
                        p.node.key_pos_at("/eval"),
                        format!("no eval case asserts anything tagged `{needed}`"),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
