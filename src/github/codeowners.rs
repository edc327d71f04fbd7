//! CODEOWNERS: gitignore-style patterns, the last matching line wins.
//! Patterns are compiled with globset (the matcher ripgrep uses).

use globset::{Glob, GlobMatcher};

#[derive(Debug)]
pub struct Rule {
    pub pattern: String,
    pub owners: Vec<String>,
    matchers: Vec<GlobMatcher>,
}

#[derive(Debug, Default)]
pub struct CodeOwners {
    pub rules: Vec<Rule>,
}

fn globs_for(pattern: &str) -> Vec<String> {
    let anchored = pattern.starts_with('/') || pattern.trim_end_matches('/').contains('/');
    let p = pattern.trim_start_matches('/');
    let mut base = if anchored {
        p.to_string()
    } else {
        format!("**/{p}")
    };
    if base.ends_with('/') {
        base.push_str("**");
        return vec![base];
    }
    if p == "*" {
        return vec!["**".into()];
    }
    // A name may be a file or a directory: match both.
    vec![base.clone(), format!("{base}/**")]
}

impl CodeOwners {
    pub fn parse(text: &str) -> CodeOwners {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let Some(pattern) = parts.next() else {
                continue;
            };
            let owners: Vec<String> = parts.map(String::from).collect();
            let matchers = globs_for(pattern)
                .iter()
                .filter_map(|g| Glob::new(g).ok().map(|g| g.compile_matcher()))
                .collect();
            rules.push(Rule {
                pattern: pattern.to_string(),
                owners,
                matchers,
            });
        }
        CodeOwners { rules }
    }

    /// Owners of a repository path (last matching rule wins; may be empty).
    pub(crate) fn owners_of(&self, path: &str) -> Vec<String> {
        self.rules
            .iter()
            .rev()
            .find(|r| r.matchers.iter().any(|m| m.is_match(path)))
            .map(|r| r.owners.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_match_wins_and_directories_match() {
        let co = CodeOwners::parse(
            "* @org/platform\n/policies/ @org/security # comment\n/packs/domains/hr-ops/ @org/hr\n*.md @docs\n",
        );
        assert_eq!(co.owners_of("packs/domains/hr-ops/pack.yaml"), ["@org/hr"]);
        assert_eq!(
            co.owners_of("packs/domains/hr-ops/prompts/role.md"),
            ["@docs"]
        );
        assert_eq!(co.owners_of("policies/guardrails.yaml"), ["@org/security"]);
        assert_eq!(co.owners_of("mission.yaml"), ["@org/platform"]);
    }
}
