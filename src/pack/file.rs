//! Loading one pack file: where it lives, what it declares there, and every
//! file it references (prompt sections, eval cases), each read through the
//! reference rules so nothing outside the pack's zone enters it.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::*;
use crate::diagnostic::{Code, Diagnostic};
use crate::git::{self as gitrepo, Tree};
use crate::schema::Kind;
use crate::tokens;
use crate::yaml::{Node, Pos};

pub(super) struct PackLoad {
    pub(super) doc: Option<PackDoc>,
    pub(super) diags: Vec<Diagnostic>,
    pub(super) sources: Vec<(String, Arc<str>)>,
}

/// Follow a file reference from a pack, applying escape and isolation rules.
fn follow_ref(
    tree: &Tree,
    loc: &Location,
    bounds: &DataBoundaries,
    pack_file: &str,
    reference: &str,
    pos: Pos,
    diags: &mut Vec<Diagnostic>,
) -> Option<String> {
    let base = gitrepo::parent_dir(pack_file);
    match gitrepo::resolve_ref(tree, base, reference) {
        Ok(path) => {
            if let Err(code) = may_read(loc, &zone_of(&path), bounds) {
                let whose = match zone_of(&path) {
                    Zone::Tenant(t) => format!("tenant `{t}`"),
                    Zone::TenantUser(t, u) => format!("user `{u}` of tenant `{t}`"),
                    Zone::PersonalUser(u) => format!("personal user `{u}`"),
                    Zone::Shared => "shared content".into(),
                };
                diags.push(
                    Diagnostic::error(
                        code,
                        pack_file,
                        pos,
                        format!(
                            "`{reference}` resolves to `{path}`, which belongs to {whose}; a {} pack may not read it",
                            loc.scope_type()
                        ),
                    )
                    .help("keep each tenant's and user's files under its own directory; put shared text under packs/global or packs/domains"),
                );
                return None;
            }
            Some(path)
        }
        Err(RefProblem::Escape(why)) => {
            diags.push(
                Diagnostic::error(Code::RefEscape, pack_file, pos, why)
                    .help("reference a file inside the repository with a relative path"),
            );
            None
        }
        Err(RefProblem::Missing) => {
            diags.push(
                Diagnostic::error(
                    Code::RefMissing,
                    pack_file,
                    pos,
                    format!("`{reference}` does not exist (looked for it relative to `{base}`)"),
                )
                .help("check the spelling, or add the file"),
            );
            None
        }
        Err(RefProblem::NotFile) => {
            diags.push(Diagnostic::error(
                Code::RefNotFile,
                pack_file,
                pos,
                format!("`{reference}` is a directory, not a file"),
            ));
            None
        }
        Err(RefProblem::Loop) => {
            diags.push(Diagnostic::error(
                Code::RefEscape,
                pack_file,
                pos,
                format!("`{reference}` goes through a symlink loop"),
            ));
            None
        }
    }
}

/// Reads the files a pack references: escape and isolation rules, size caps,
/// and every byte read goes into the pack's content digest.
pub(super) struct Referenced<'a> {
    tree: &'a Tree,
    repo: Option<&'a crate::git::Repo>,
    loc: &'a Location,
    bounds: &'a DataBoundaries,
    file: &'a str,
    hasher: &'a mut Sha256,
    sources: &'a mut Vec<(String, Arc<str>)>,
    pub(super) diags: &'a mut Vec<Diagnostic>,
}

impl Referenced<'_> {
    /// A file the pack file references.
    pub(super) fn fetch(
        &mut self,
        reference: &str,
        pos: Pos,
        cap: u64,
    ) -> Option<(String, Arc<str>)> {
        let file = self.file.to_string();
        self.fetch_from(&file, reference, pos, cap)
    }

    /// A file the pack file references that reaches the model exactly as
    /// written (a skill's files, which OpenClaw hands over raw): its digest
    /// is its bytes, so a comment-only edit is a new version like any other.
    pub(super) fn fetch_exact(
        &mut self,
        reference: &str,
        pos: Pos,
        cap: u64,
    ) -> Option<(String, Arc<str>)> {
        let file = self.file.to_string();
        self.fetch_inner(&file, reference, pos, cap, true)
    }

    /// A file that `from` (the pack file or one of its files) references,
    /// relative to `from`, under the same rules.
    pub(super) fn fetch_from(
        &mut self,
        from: &str,
        reference: &str,
        pos: Pos,
        cap: u64,
    ) -> Option<(String, Arc<str>)> {
        self.fetch_inner(from, reference, pos, cap, false)
    }

    fn fetch_inner(
        &mut self,
        from: &str,
        reference: &str,
        pos: Pos,
        cap: u64,
        exact: bool,
    ) -> Option<(String, Arc<str>)> {
        let path = follow_ref(
            self.tree,
            self.loc,
            self.bounds,
            from,
            reference,
            pos,
            self.diags,
        )?;
        let t = read_text(self.tree, self.repo, &path, cap, self.diags, (from, pos))?;
        self.hasher.update(path.as_bytes());
        self.hasher.update([0]);
        if exact {
            self.hasher.update(t.as_bytes());
        } else {
            self.hasher.update(digest_form(&path, &t).as_bytes());
        }
        let t: Arc<str> = Arc::from(t);
        self.sources.push((path.clone(), t.clone()));
        Some((path, t))
    }
}

/// What a file contributes to its pack's content digest: its meaning, not
/// its bytes. YAML and JSON as canonical parsed data (a comment or a
/// re-indent changes nothing), prompt text without its comments (which the
/// model never receives). A file that does not parse counts as its bytes.
fn digest_form<'t>(path: &str, text: &'t str) -> std::borrow::Cow<'t, str> {
    let ext = path.rsplit('.').next().unwrap_or_default();
    match ext {
        "yaml" | "yml" | "json" => crate::yaml::parse(text)
            .map_or(std::borrow::Cow::Borrowed(text), |n| {
                std::borrow::Cow::Owned(crate::resolve::canonical_json(&n.to_json()))
            }),
        // As the composed prompt takes it: comments removed, trimmed.
        "md" | "txt" => {
            std::borrow::Cow::Owned(crate::policy::effective_text(text).trim().to_string())
        }
        _ => std::borrow::Cow::Borrowed(text),
    }
}

/// Checks on where a pack lives and what it may declare there.
fn check_placement(
    pack: &Pack,
    loc: &Location,
    file: &str,
    node: &Node,
    diags: &mut Vec<Diagnostic>,
) {
    // The declared scope must match the file's place.
    if pack.scope.kind != loc.scope_type() || pack.scope.id != loc.scope_id() {
        diags.push(
            Diagnostic::error(
                Code::ScopeMismatch,
                file,
                node.pos_at("/scope"),
                format!(
                    "declares scope {} `{}` but lives where scope {} `{}` belongs",
                    pack.scope.kind,
                    pack.scope.id,
                    loc.scope_type(),
                    loc.scope_id()
                ),
            )
            .help(format!(
                "set `scope: {{type: {}, id: {}}}` or move the file",
                loc.scope_type(),
                loc.scope_id()
            )),
        );
    }
    if pack.domains.is_some() && !matches!(loc, Location::Tenant(_) | Location::PersonalUser(_)) {
        diags.push(
            Diagnostic::error(
                Code::ScopeConfig,
                file,
                node.key_pos_at("/domains"),
                "`domains` belongs in tenant packs and personal user packs only",
            )
            .help("remove it; a tenant's users run the tenant's domains"),
        );
    }
    if pack.tier.is_some() && matches!(loc, Location::Global | Location::Domain(_)) {
        diags.push(Diagnostic::error(
            Code::ScopeConfig,
            file,
            node.key_pos_at("/tier"),
            "`tier` belongs in tenant and user packs; the repository default is mission.yaml's `tier`",
        ));
    }
}

/// The prompt sections, read through their references, with duplicate ids reported.
fn read_sections(
    pack: &Pack,
    node: &Node,
    r: &mut Referenced<'_>,
    family: tokens::Family,
) -> Vec<SectionText> {
    let mut sections = Vec::new();
    for (i, s) in pack.prompt.sections.iter().enumerate() {
        let pos = node.pos_at(&format!("/prompt/sections/{i}/file"));
        let Some((path, t)) = r.fetch(&s.file, pos, MAX_PROMPT_BYTES) else {
            continue;
        };
        sections.push(SectionText {
            id: s.id.clone(),
            file: path,
            family,
            counted: std::sync::OnceLock::new(),
            text: t,
            pos: node.pos_at(&format!("/prompt/sections/{i}/id")),
        });
    }
    let mut seen_sections: HashMap<&str, usize> = HashMap::new();
    for (i, s) in pack.prompt.sections.iter().enumerate() {
        if let Some(first) = seen_sections.insert(&s.id, i) {
            r.diags.push(
                Diagnostic::error(
                    Code::DuplicateId,
                    r.file,
                    node.pos_at(&format!("/prompt/sections/{i}/id")),
                    format!("prompt section `{}` is declared twice in this pack", s.id),
                )
                .related(
                    r.file,
                    node.pos_at(&format!("/prompt/sections/{first}/id")),
                    "first declared here",
                ),
            );
        }
    }
    sections
}

/// A skill name as OpenClaw names skills: lowercase letters, digits, hyphens.
pub(crate) fn valid_skill_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A SKILL.md's frontmatter (`---` YAML `---`): its `name` and
/// `description`, or what is wrong with it.
pub(crate) fn skill_frontmatter(text: &str) -> Result<(String, String), String> {
    let body = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
        .ok_or(
            "SKILL.md must start with YAML frontmatter (`---`, `name:`, `description:`, `---`)",
        )?;
    let end = body
        .find("\n---")
        .ok_or("the frontmatter is not closed by a `---` line")?;
    let node = crate::yaml::parse(&body[..end])
        .map_err(|e| format!("the frontmatter is not YAML: {e}"))?;
    let v = node.to_json();
    let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str).map(str::trim);
    let name = field("name").ok_or("the frontmatter has no `name`")?;
    if !valid_skill_name(name) {
        return Err(format!(
            "`name: {name}` is not a skill name OpenClaw accepts (lowercase letters, digits and hyphens, at most 64)"
        ));
    }
    let description = field("description").ok_or("the frontmatter has no `description`")?;
    if description.is_empty() || description.contains('\n') || description.chars().count() > 160 {
        return Err("`description` must be one line of 1 to 160 characters (OpenClaw shows it to the agent)".into());
    }
    Ok((name.to_string(), description.to_string()))
}

/// A path inside a skill's folder that missionctl will write into agents'
/// workspaces: plain components (letters, digits, `.`, `_`, `-`, `+`, `@`),
/// none empty, `.` or `..`.
fn valid_skill_file(rel: &str) -> bool {
    rel.split('/').all(|c| {
        !c.is_empty()
            && c != "."
            && c != ".."
            && c.len() <= 128
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "._-+@".contains(ch))
    })
}

/// The other files of the skill whose SKILL.md is at `skill_md`: every file
/// under its folder except hidden ones (a component starting with `.`),
/// read through the same reference rules as the SKILL.md (no escape, no
/// other tenant's files), as UTF-8 text, within the caps. None (with the
/// error reported) when the folder breaks a rule: a skill is delivered
/// whole or not at all.
fn read_skill_folder(
    name: &str,
    add: &str,
    skill_md: &str,
    skill_md_len: usize,
    pos: Pos,
    r: &mut Referenced<'_>,
) -> Option<Vec<(String, Arc<str>)>> {
    use super::{MAX_SKILL_FILE_BYTES, MAX_SKILL_FILES, MAX_SKILL_TOTAL_BYTES};
    let folder = gitrepo::parent_dir(skill_md).to_string();
    // Files are read by the reference the pack wrote (so errors are the
    // pack file's, at the line that adds the skill).
    let add_dir = gitrepo::parent_dir(add).to_string();
    let file = r.file.to_string();
    let bad = |message: String| {
        Diagnostic::error(
            Code::SkillInvalid,
            &file,
            pos,
            format!("skill `{name}`: {message}"),
        )
    };
    // A skill lives in `skills/<name>/`: any other folder (the pack's own,
    // its eval cases') would deliver what is not the skill's to every agent.
    if gitrepo::parent_dir(&folder).rsplit('/').next() != Some("skills") {
        let d = bad(format!(
            "its folder is `{folder}`; a skill's folder is `skills/{name}/`, beside or below the pack file"
        ))
        .help(format!("move it to skills/{name}/SKILL.md"));
        r.diags.push(d);
        return None;
    }
    let (paths, truncated) = r.tree.list_dir(&folder, 4 * MAX_SKILL_FILES);
    let paths: Vec<String> = paths
        .into_iter()
        .filter(|p| p.as_str() != skill_md)
        .filter_map(|p| p.strip_prefix(&format!("{folder}/")).map(str::to_string))
        .filter(|rel| !rel.split('/').any(|c| c.starts_with('.')))
        .collect();
    if truncated || paths.len() > MAX_SKILL_FILES {
        let d = bad(format!(
            "its folder `{folder}` holds more than {MAX_SKILL_FILES} files besides SKILL.md"
        ))
        .help("keep a skill to its instructions, scripts and references; move bulk data out of the pack");
        r.diags.push(d);
        return None;
    }
    // A folder holding a pack file or another skill is not one skill's
    // folder (a SKILL.md beside pack.yaml would deliver the whole pack).
    if let Some(other) = paths.iter().find(|rel| {
        let base = rel.rsplit('/').next().unwrap_or_default();
        base == "SKILL.md" || base == "pack.yaml" || base == "pack.yml"
    }) {
        let d = bad(format!(
            "its folder `{folder}` also holds `{other}`: a skill's folder holds that skill alone"
        ))
        .help("give the skill its own folder, `skills/<name>/SKILL.md`, with only its scripts and references");
        r.diags.push(d);
        return None;
    }
    let mut files = Vec::with_capacity(paths.len());
    let mut total = skill_md_len;
    let mut ok = true;
    for rel in paths {
        // A name missionctl cannot write, or a link: refused by name.
        let refusal = if !valid_skill_file(&rel) {
            Some((
                format!(
                    "`{folder}/{rel}`: file names in a skill may hold only letters, digits, `.`, `_`, `-`, `+` and `@`"
                ),
                "rename the file; missionctl writes each file of the folder into the agents' workspaces",
            ))
        } else if matches!(
            r.tree.entry(&format!("{folder}/{rel}")),
            Some(crate::git::EntryKind::Symlink { .. })
        ) {
            Some((
                format!(
                    "`{folder}/{rel}` is a link; a skill's files are plain files (a link can lead to what git does not hold, such as an ignored `.env`)"
                ),
                "copy the file into the skill's folder instead of linking it",
            ))
        } else {
            None
        };
        if let Some((message, help)) = refusal {
            r.diags.push(bad(message).help(help));
            ok = false;
            continue;
        }
        let before = r.diags.len();
        let reference = if add_dir.is_empty() {
            rel.clone()
        } else {
            format!("{add_dir}/{rel}")
        };
        let Some((_, text)) = r.fetch_exact(&reference, pos, MAX_SKILL_FILE_BYTES) else {
            // The reason is reported (too large, not text, a symlink out
            // of bounds); say which skill it belongs to.
            if r.diags.len() > before {
                let d = bad(format!(
                    "`{folder}/{rel}` cannot be delivered (see the error above); a skill's folder is delivered whole: scripts and references as UTF-8 text, no binary assets"
                ));
                r.diags.push(d);
            }
            ok = false;
            continue;
        };
        if text.contains('\0') {
            let d = bad(format!(
                "`{folder}/{rel}` holds NUL bytes: it is not text; a skill's folder holds scripts and references as UTF-8 text"
            ));
            r.diags.push(d);
            ok = false;
            continue;
        }
        total += text.len();
        files.push((rel, text));
    }
    if total > MAX_SKILL_TOTAL_BYTES {
        let d = bad(format!(
            "its folder `{folder}` holds {total} bytes; a skill may hold at most {MAX_SKILL_TOTAL_BYTES}"
        ))
        .help("move large reference material out of the pack");
        r.diags.push(d);
        return None;
    }
    ok.then_some(files)
}

/// The skills a pack adds, read through their references and checked:
/// frontmatter, the name matching the folder, no name twice.
fn read_skills(pack: &Pack, node: &Node, r: &mut Referenced<'_>) -> Vec<SkillText> {
    let mut skills: Vec<SkillText> = Vec::new();
    for (i, add) in pack.skills.add.iter().enumerate() {
        let pos = node.pos_at(&format!("/skills/add/{i}"));
        let Some((path, t)) = r.fetch_exact(add, pos, super::MAX_SKILL_BYTES) else {
            continue;
        };
        let bad = |message: String| {
            Diagnostic::error(Code::SkillInvalid, r.file, pos, format!("skill `{add}`: {message}"))
                .help("a skill is a folder holding SKILL.md that starts with `---`, `name: <folder name>`, `description: <one line>`, `---`")
        };
        let (name, description) = match skill_frontmatter(&t) {
            Ok(nd) => nd,
            Err(m) => {
                let d = bad(m);
                r.diags.push(d);
                continue;
            }
        };
        let folder = path.rsplit('/').nth(1).unwrap_or_default();
        if folder != name {
            let d = bad(format!(
                "its folder is `{folder}` but its name is `{name}`; OpenClaw expects them to match"
            ));
            r.diags.push(d);
            continue;
        }
        if skills.iter().any(|s| s.name == name) {
            let d = Diagnostic::error(
                Code::DuplicateId,
                r.file,
                pos,
                format!("skill `{name}` is added twice in this pack"),
            );
            r.diags.push(d);
            continue;
        }
        let Some(files) = read_skill_folder(&name, add, &path, t.len(), pos, r) else {
            continue;
        };
        skills.push(SkillText {
            name,
            description,
            file: path,
            text: t,
            files,
            pos,
        });
    }
    skills
}

pub(super) fn load_pack(
    tree: &Tree,
    repo: Option<&crate::git::Repo>,
    file: &str,
    bounds: &DataBoundaries,
    family: tokens::Family,
) -> PackLoad {
    let mut diags = Vec::new();
    let mut sources = Vec::new();
    let out = |doc, diags, sources| PackLoad {
        doc,
        diags,
        sources,
    };
    let Some(text) = read_text(
        tree,
        repo,
        file,
        MAX_YAML_BYTES,
        &mut diags,
        (file, Pos::UNKNOWN),
    ) else {
        return out(None, diags, sources);
    };
    let mut hasher = Sha256::new();
    hasher.update(file.as_bytes());
    hasher.update([0]);
    hasher.update(digest_form(file, &text).as_bytes());
    let text: Arc<str> = Arc::from(text);
    sources.push((file.to_string(), text.clone()));
    let parsed = parse_checked(Kind::Pack, file, &text, &mut diags);
    let Some(loc) = Location::from_path(file) else {
        // Pointed at the scope the file declares, when it parses.
        let at = parsed
            .as_ref()
            .map_or(Pos::WHOLE_FILE, |(node, _)| node.key_pos_at("/scope"));
        diags.push(
            Diagnostic::error(
                Code::ScopeMismatch,
                file,
                at,
                "a pack file in a place that has no scope",
            )
            .help("packs live at packs/global/, packs/domains/<id>/, packs/tenants/<id>/, packs/tenants/<id>/users/<id>/ or packs/users/<id>/"),
        );
        return out(None, diags, sources);
    };
    let Some((node, json)) = parsed else {
        return out(None, diags, sources);
    };
    let Some(pack) = typed::<Pack>(file, &node, json, &mut diags) else {
        return out(None, diags, sources);
    };
    check_placement(&pack, &loc, file, &node, &mut diags);
    let mut r = Referenced {
        tree,
        repo,
        loc: &loc,
        bounds,
        file,
        hasher: &mut hasher,
        sources: &mut sources,
        diags: &mut diags,
    };
    let sections = read_sections(&pack, &node, &mut r, family);
    let cases = super::cases::read_cases(&pack, &node, &mut r);
    let skills = read_skills(&pack, &node, &mut r);
    let own_digest = hex::encode(hasher.finalize());
    out(
        Some(PackDoc {
            file: file.to_string(),
            node,
            pack,
            location: loc,
            sections,
            cases,
            skills,
            own_digest,
        }),
        diags,
        sources,
    )
}
