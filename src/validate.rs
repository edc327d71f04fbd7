//! `missionctl validate`: load, check every rule, and (with a base revision)
//! require a higher version for every pack whose content changed.

use crate::diagnostic::{self, Code, Diagnostic};
use crate::pack::Repo;
use crate::policy;

/// Everything validation found, sorted by file and position.
pub fn validate(repo: &Repo, base: Option<&Repo>) -> Vec<Diagnostic> {
    let mut d = repo.diagnostics.clone();
    d.extend(policy::check(repo));
    d.extend(check_openclaw(repo));
    d.extend(check_skills_shadowed(repo));
    d.extend(check_mcp_servers(repo));
    if let Some(base) = base {
        d.extend(check_versions(repo, base));
    }
    diagnostic::sort(&mut d);
    d.dedup();
    d
}

/// Every MCP server a pack names is one mission.yaml's
/// `openclaw.mcp_servers` defines (a pack cannot define one: a server
/// definition runs a program or reaches an address).
pub(crate) fn check_mcp_servers(repo: &Repo) -> Vec<Diagnostic> {
    let settings = repo.openclaw();
    let mut out = Vec::new();
    // OpenClaw renames colliding tool prefixes (`-2`, in declaration
    // order): every server's prefix must be its own for the deny globs to
    // name its tools.
    if let Some(m) = &repo.mission {
        let mut seen: std::collections::BTreeMap<String, &str> = Default::default();
        for name in settings.mcp_servers.keys() {
            let prefix = crate::openclaw::mcp_prefix(name);
            if let Some(first) = seen.insert(prefix.to_lowercase(), name) {
                out.push(
                    Diagnostic::error(
                        Code::OpenClawMcpUnknown,
                        &m.file,
                        m.node.pos_at(&format!("/openclaw/mcp_servers/{}", name.replace('~', "~0").replace('/', "~1"))),
                        format!(
                            "MCP servers `{first}` and `{name}` both get the tool prefix `{prefix}` in OpenClaw (case ignored, at most {} characters), which would rename one of them",
                            crate::openclaw::MCP_PREFIX_MAX
                        ),
                    )
                    .help("give the servers names that differ in their first 30 letters, digits, `_` and `-`, not only in case"),
                );
            }
        }
    }
    // The list a pack's chain has at `i`: its own, else its parent's.
    fn effective(repo: &Repo, i: usize) -> Option<(&[String], usize)> {
        let p = &repo.packs[i];
        if let Some(l) = &p.pack.mcp_servers {
            return Some((l, i));
        }
        crate::policy::parents(repo, p)
            .first()
            .and_then(|pi| effective(repo, *pi))
    }
    for p in &repo.packs {
        // What the layers above allow: the parent's list, and for a tenant
        // or personal user each domain it runs (chains go global -> domain
        // -> tenant -> user).
        let mut above: Vec<(&[String], usize)> = crate::policy::parents(repo, p)
            .first()
            .and_then(|&up| effective(repo, up))
            .into_iter()
            .collect();
        if matches!(
            p.location,
            crate::pack::Location::Tenant(_) | crate::pack::Location::PersonalUser(_)
        ) {
            let domains: Vec<&String> = match &p.pack.domains {
                Some(ds) => ds.iter().collect(),
                None => repo.domains.keys().collect(),
            };
            for d in domains {
                if let Some(e) = repo.domains.get(d).and_then(|&di| effective(repo, di)) {
                    above.push(e);
                }
            }
        }
        for (i, name) in p.pack.mcp_servers.iter().flatten().enumerate() {
            if let Some(&(_, set_in)) = above.iter().find(|(list, _)| !list.contains(name)) {
                let src = &repo.packs[set_in];
                out.push(
                    Diagnostic::error(
                        Code::OpenClawMcpUnknown,
                        &p.file,
                        p.node.pos_at(&format!("/mcp_servers/{i}")),
                        format!(
                            "MCP server `{name}` is not in the {} scope's `mcp_servers`; a child may only narrow its parent's servers",
                            src.location.scope_type()
                        ),
                    )
                    .related(&src.file, src.node.key_pos_at("/mcp_servers"), "the parent's list")
                    .help(format!("remove `{name}`, or add it to the parent's mcp_servers through review by its owners")),
                );
                continue;
            }
            if settings.mcp_servers.contains_key(name) {
                continue;
            }
            let known: Vec<&str> = settings.mcp_servers.keys().map(String::as_str).collect();
            out.push(
                Diagnostic::error(
                    Code::OpenClawMcpUnknown,
                    &p.file,
                    p.node.pos_at(&format!("/mcp_servers/{i}")),
                    format!("MCP server `{name}` is not defined in mission.yaml's `openclaw.mcp_servers`"),
                )
                .help(if known.is_empty() {
                    "the policy owner defines MCP servers in mission.yaml (`openclaw.mcp_servers.<name>`: OpenClaw's server definition); a pack only names them".to_string()
                } else {
                    format!("use one of: {} (or have the policy owner define it in mission.yaml)", known.join(", "))
                }),
            );
        }
    }
    out
}

/// A skill a layer adds that an ancestor on one of its chains already adds:
/// the ancestor's definition is the one served (a child narrows skills with
/// `deny`; it cannot replace one), so the child's is dead text. A warning
/// at the child's `skills.add` entry, once per entry.
pub(crate) fn check_skills_shadowed(repo: &Repo) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut reported = std::collections::BTreeSet::new();
    for key in crate::resolve::all_chains(repo) {
        let Ok(idx) = crate::resolve::chain(repo, &key) else {
            continue;
        };
        let mut added: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
        for i in idx {
            let p = &repo.packs[i];
            for s in &p.skills {
                match added.get(s.name.as_str()) {
                    Some(first) if *first != p.file => {
                        if reported.insert((p.file.clone(), s.pos.line, s.pos.col)) {
                            out.push(
                                Diagnostic::warning(
                                    Code::SkillShadowed,
                                    &p.file,
                                    s.pos,
                                    format!(
                                        "skill `{}` is already added by {first} on `{key}`; that one is served and this one never is",
                                        s.name
                                    ),
                                )
                                .help("remove it here, give it another name, or change the ancestor's"),
                            );
                        }
                    }
                    Some(_) => {}
                    None => {
                        added.insert(s.name.as_str(), p.file.as_str());
                    }
                }
            }
        }
    }
    out
}

/// Any pack whose own content (pack file plus referenced files) changed since
/// `base` must carry a higher semver `version`.
pub(crate) fn check_versions(head: &Repo, base: &Repo) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for p in &head.packs {
        let Some(b) = base.pack(&p.pack.id) else {
            continue;
        };
        if b.own_digest == p.own_digest {
            continue;
        }
        let (Some(hv), Some(bv)) = (p.version(), b.version()) else {
            continue;
        };
        if hv <= bv {
            let mut next = bv.clone();
            next.patch += 1;
            next.pre = semver::Prerelease::EMPTY;
            out.push(
                Diagnostic::error(
                    Code::VersionNotBumped,
                    &p.file,
                    p.node.pos_at("/version"),
                    format!(
                        "pack `{}` changed since {} but its version {hv} is not higher than {bv}",
                        p.pack.id, base.label
                    ),
                )
                .help(format!(
                    "set `version: {next}` (or a higher minor/major for larger changes)"
                )),
            );
        }
    }
    out
}

/// Every chain rendered as an OpenClaw workspace must fit OpenClaw's
/// bootstrap limits (`openclaw.bootstrap_max_chars`, per file, and
/// `bootstrap_total_max_chars`, in all; 20,000 and 60,000 by default):
/// OpenClaw would silently truncate a longer file. Reported once per leaf
/// pack and limit, at its `prompt` key.
pub(crate) fn check_openclaw(repo: &Repo) -> Vec<Diagnostic> {
    use crate::openclaw::render::{self, AgentBinding};
    let settings = repo.openclaw();
    let mut out = Vec::new();
    let mut reported = std::collections::BTreeSet::new();
    // Rendering is per chain and independent: measured in parallel,
    // reported in chain order.
    use rayon::prelude::*;
    let measured: Vec<_> = crate::resolve::all_chains(repo)
        .into_par_iter()
        .filter_map(|key| {
            let idx = crate::resolve::chain(repo, &key).ok()?;
            let leaf = *idx.last()?;
            let docs: Vec<_> = idx.iter().map(|i| &repo.packs[*i]).collect();
            let r =
                crate::resolve::resolve_docs_with(repo, &docs, crate::resolve::Detail::Rendering);
            let agent = AgentBinding {
                id: "agent".into(),
                domain: key.domain.clone(),
                tenant: key.tenant.clone(),
                user: key.user.clone(),
            };
            let (allow, deny) = render::tool_policy(&r, &settings);
            let (files, total) = render::over_limits(&render::files(&r, &agent, &allow), &settings);
            // OpenClaw lists skills only to an agent that may `read` them.
            let may_read = |list: &[String]| {
                list.iter()
                    .any(|t| t == "read" || t == "group:fs" || t == "*")
            };
            let has_skills = r
                .content
                .get("skills")
                .and_then(|s| s.as_array())
                .is_some_and(|a| !a.is_empty());
            let unread =
                has_skills && (allow.as_deref().is_some_and(|a| !may_read(a)) || may_read(&deny));
            (!files.is_empty() || total.is_some() || unread)
                .then_some((key, leaf, files, total, unread))
        })
        .collect();
    for (key, leaf, files, total, unread) in measured {
        let p = &repo.packs[leaf];
        if unread && reported.insert((leaf, "(skills)")) {
            out.push(
                Diagnostic::error(
                    Code::OpenClawSkillsUnread,
                    &p.file,
                    p.node.key_pos_at("/id"),
                    format!(
                        "`{key}` gives its agents skills but not the `read` tool: OpenClaw lists skills only to an agent that may read their SKILL.md, so these would never be used"
                    ),
                )
                .help("allow `read` in `tools.allow` on this chain (and do not deny it), or remove the skills"),
            );
        }
        let at = p.node.key_pos_at("/prompt");
        for (name, n) in files {
            if reported.insert((leaf, name)) {
                out.push(
                    Diagnostic::error(
                        Code::OpenClawFile,
                        &p.file,
                        at,
                        format!(
                            "rendered for OpenClaw, `{key}` has a {name} of {n} characters; OpenClaw injects at most {} per file and would truncate the rest",
                            settings.bootstrap_max_chars
                        ),
                    )
                    .help("shorten this chain's prompt sections (AGENTS.md), voice profile (SOUL.md) or description (IDENTITY.md), or raise `openclaw.bootstrap_max_chars` in mission.yaml to match the Gateway's `bootstrapMaxChars`"),
                );
            }
        }
        if let Some(n) = total
            && reported.insert((leaf, "(total)"))
        {
            out.push(
                Diagnostic::error(
                    Code::OpenClawTotal,
                    &p.file,
                    at,
                    format!(
                        "rendered for OpenClaw, `{key}` has {n} characters of bootstrap files; OpenClaw injects at most {} in all and would truncate the rest",
                        settings.bootstrap_total_max_chars
                    ),
                )
                .help("shorten this chain's prompt sections or voice profile, or raise `openclaw.bootstrap_total_max_chars` in mission.yaml to match the Gateway's `bootstrapTotalMaxChars`"),
            );
        }
    }
    out
}
