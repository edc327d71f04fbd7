//! What an improvement proposal may change. The worker may rewrite the
//! pack's own prompt sections and voice profile, and must bump its version;
//! everything reviewed by people (policies, hard constraints, tool profiles,
//! thresholds, KPIs, eval cases and contracts) and every other scope's files
//! are out of its reach. A proposal that reaches further is refused here,
//! before any model call is spent evaluating it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use crate::pack::PackDoc;

/// One reason a proposal is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{path}: not one of pack `{pack}`'s own prompt section files (in its directory) or its pack file"
    )]
    OutsidePack { path: String, pack: String },
    #[error("{path}: `{field}` may not be changed by a proposal (reviewed by people)")]
    Field { path: String, field: String },
    #[error(
        "{path}: voice.banned_phrases loses \"{phrase}\"; a proposal may add banned phrases, never remove one"
    )]
    BannedPhraseRemoved { path: String, phrase: String },
    #[error(
        "{path}: voice.max_sentence_words rises from {from} to {to}; a proposal may only lower it"
    )]
    SentenceLimitRaised { path: String, from: u64, to: u64 },
    #[error("{path}: version `{to}` is not higher than the champion's `{from}`")]
    VersionNotBumped {
        path: String,
        from: String,
        to: String,
    },
    #[error("{path}: not a YAML mapping ({why})")]
    Unreadable { path: String, why: String },
}

/// Check proposed file contents (repository path → new text) against the
/// champion pack they would change. Empty when the proposal stays in scope.
pub fn check(champion: &PackDoc, edits: &BTreeMap<String, String>) -> Vec<Refusal> {
    let sections: BTreeSet<&str> = champion.own_sections().map(|s| s.file.as_str()).collect();
    let mut out = Vec::new();
    for (path, text) in edits {
        if path == &champion.file {
            out.extend(check_pack_file(champion, path, text));
        } else if !sections.contains(path.as_str()) {
            out.push(Refusal::OutsidePack {
                path: path.clone(),
                pack: champion.pack.id.clone(),
            });
        }
    }
    out
}

fn check_pack_file(champion: &PackDoc, path: &str, text: &str) -> Vec<Refusal> {
    let new = match crate::yaml::parse(text) {
        Ok(n) => n.to_json(),
        Err(e) => {
            return vec![Refusal::Unreadable {
                path: path.into(),
                why: e.to_string(),
            }];
        }
    };
    let old = champion.node.to_json();
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return vec![Refusal::Unreadable {
            path: path.into(),
            why: "the pack file is not a mapping".into(),
        }];
    };
    let mut out = Vec::new();
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for k in keys {
        match k.as_str() {
            "voice" => out.extend(check_voice(path, old.get(k), new.get(k))),
            "version" => {
                let from = champion.version();
                let to = new
                    .get(k)
                    .and_then(Json::as_str)
                    .and_then(|v| semver::Version::parse(v).ok());
                if !matches!((&from, &to), (Some(f), Some(t)) if t > f) {
                    out.push(Refusal::VersionNotBumped {
                        path: path.into(),
                        from: champion.pack.version.clone(),
                        to: new
                            .get(k)
                            .map(|v| v.as_str().map_or(v.to_string(), str::to_string))
                            .unwrap_or_default(),
                    });
                }
            }
            // Everything else (scope, prompt section list, tools, eval,
            // kpis, promotion, rollback, tier, domains, …) stays as it is.
            _ if old.get(k) != new.get(k) => out.push(Refusal::Field {
                path: path.into(),
                field: k.clone(),
            }),
            _ => {}
        }
    }
    out
}

fn check_voice(path: &str, old: Option<&Json>, new: Option<&Json>) -> Vec<Refusal> {
    let phrases = |v: Option<&Json>| -> Vec<String> {
        v.and_then(|v| v.get("banned_phrases"))
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let kept = phrases(new);
    let mut out: Vec<Refusal> = phrases(old)
        .into_iter()
        .filter(|p| !kept.contains(p))
        .map(|phrase| Refusal::BannedPhraseRemoved {
            path: path.into(),
            phrase,
        })
        .collect();
    let limit = |v: Option<&Json>| {
        v.and_then(|v| v.get("max_sentence_words"))
            .and_then(Json::as_u64)
    };
    if let Some(from) = limit(old) {
        match limit(new) {
            Some(to) if to <= from => {}
            to => out.push(Refusal::SentenceLimitRaised {
                path: path.into(),
                from,
                to: to.unwrap_or(u64::MAX),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hr() -> (crate::pack::Repo, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tmp");
        crate::template::init(dir.path(), false).expect("init");
        let tree = crate::git::Tree::work_tree(dir.path()).expect("tree");
        (crate::pack::load(&tree), dir)
    }

    fn edits(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(p, t)| (p.to_string(), t.clone()))
            .collect()
    }

    #[test]
    fn prompt_sections_voice_and_a_bump_are_in_scope() {
        let (repo, dir) = hr();
        let p = repo.pack("hr-ops-pack").expect("pack");
        let role = &p.sections[0].file;
        let yaml = std::fs::read_to_string(dir.path().join(&p.file)).expect("read");
        let new = yaml
            .replace("version: 1.0.0", "version: 1.0.1-improve.1")
            .replace(
                "Address the employee by first name",
                "Greet the employee by first name",
            );
        let e = edits(&[
            (role, "Escalate harassment to HR.\n".into()),
            (&p.file, new),
        ]);
        assert_eq!(check(p, &e), vec![]);
    }

    /// A section may reference shared text outside the pack's directory
    /// (here the global safety clause, and a control file): the pack reads
    /// it, but a proposal may not rewrite it, and the optimiser is not shown
    /// it as the pack's own.
    #[test]
    fn a_section_outside_the_packs_directory_is_not_its_own() {
        let dir = tempfile::tempdir().expect("tmp");
        crate::template::init(dir.path(), false).expect("init");
        let pack = dir.path().join("packs/domains/hr-ops/pack.yaml");
        let yaml = std::fs::read_to_string(&pack).expect("read");
        std::fs::write(
            &pack,
            yaml.replace(
                "      file: prompts/procedures.md\n",
                "      file: prompts/procedures.md\n    - id: shared-safety\n      file: ../../global/prompts/safety.md\n    - id: owners\n      file: ../../../.github/CODEOWNERS\n",
            ),
        )
        .expect("write");
        let tree = crate::git::Tree::work_tree(dir.path()).expect("tree");
        let repo = crate::pack::load(&tree);
        let p = repo.pack("hr-ops-pack").expect("pack");
        let all: Vec<&str> = p.sections.iter().map(|s| s.file.as_str()).collect();
        assert!(
            all.contains(&"packs/global/prompts/safety.md") && all.contains(&".github/CODEOWNERS"),
            "{all:?}"
        );
        let own: Vec<&str> = p.own_sections().map(|s| s.file.as_str()).collect();
        assert_eq!(
            own,
            [
                "packs/domains/hr-ops/prompts/role.md",
                "packs/domains/hr-ops/prompts/procedures.md"
            ]
        );
        for path in ["packs/global/prompts/safety.md", ".github/CODEOWNERS"] {
            let r = check(p, &edits(&[(path, "* @evil\n".into())]));
            assert!(
                matches!(&r[..], [Refusal::OutsidePack { .. }]),
                "{path}: {r:?}"
            );
        }
    }

    #[test]
    fn anything_else_is_refused_before_evaluation() {
        let (repo, dir) = hr();
        let p = repo.pack("hr-ops-pack").expect("pack");
        let yaml = std::fs::read_to_string(dir.path().join(&p.file)).expect("read");
        let bumped = yaml.replace("version: 1.0.0", "version: 1.0.1");
        let cases = [
            (
                "policies/hard-constraints.yaml",
                "max_prompt_tokens: 1\n".to_string(),
                "not one of pack",
            ),
            (
                "packs/domains/hr-ops/evals/cases.yaml",
                "[]\n".to_string(),
                "not one of pack",
            ),
            (
                "packs/global/prompts/safety.md",
                "be nice\n".to_string(),
                "not one of pack",
            ),
            (
                "packs/domains/hr-ops/prompts/../../../global/prompts/safety.md",
                "x".into(),
                "not one of pack",
            ),
            (
                p.file.as_str(),
                bumped.replace(
                    "    - email.draft\n",
                    "    - email.draft\n    - email.send\n",
                ),
                "`tools`",
            ),
            (
                p.file.as_str(),
                bumped.replace("min_pass_rate: 0.9", "min_pass_rate: 0.1"),
                "`promotion`",
            ),
            (
                p.file.as_str(),
                bumped.replace("    - \"that's above my pay grade\"\n", ""),
                "loses",
            ),
            (
                p.file.as_str(),
                bumped.replace("max_sentence_words: 28", "max_sentence_words: 60"),
                "rises from 28 to 60",
            ),
            (p.file.as_str(), yaml.clone(), "is not higher"),
        ];
        for (path, text, why) in cases {
            let r = check(p, &edits(&[(path, text)]));
            assert_eq!(r.len(), 1, "{path}: {r:?}");
            assert!(r[0].to_string().contains(why), "{path}: {}", r[0]);
        }
    }
}
