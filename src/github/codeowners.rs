//! CODEOWNERS as GitHub reads it: gitignore-style patterns, the last
//! matching line wins, a line with no owners leaves its paths unowned.
//!
//! The rules (GitHub's "About code owners"), matched with globset with
//! `literal_separator` so `*` never crosses `/`:
//! - a pattern starting with `/` or with a `/` before its end is anchored at
//!   the repository root; otherwise it matches at any depth (`**/` in front);
//! - a trailing `/` names a directory: everything below it, at any level;
//! - a pattern whose last segment has no wildcard also owns everything below
//!   a directory of that name (`/build/logs`, `apps`, `**/logs`); one whose
//!   last segment has a wildcard does not (`docs/*` owns `docs/a.md`, not
//!   `docs/sub/b.md`);
//! - GitHub does not support `!` negation, `[ ]` ranges or `\` escapes: such
//!   lines are skipped, as GitHub skips invalid lines, and reported.
//!
//! Hand-written over globset rather than a CODEOWNERS crate: the crates we
//! found are new and unproven; globset is ripgrep's matcher and the
//! translation above is a handful of lines, pinned by a table of GitHub's
//! documented examples below.

use globset::{GlobBuilder, GlobMatcher};

#[derive(Debug)]
pub struct Rule {
    pub pattern: String,
    pub owners: Vec<String>,
    matchers: Vec<GlobMatcher>,
}

/// A line GitHub would skip, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLine {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct CodeOwners {
    pub rules: Vec<Rule>,
    pub invalid: Vec<InvalidLine>,
}

fn globs_for(pattern: &str) -> Vec<String> {
    let dir_only = pattern.ends_with('/');
    let trimmed = pattern.trim_end_matches('/');
    let anchored = trimmed.starts_with('/') || trimmed.contains('/');
    let p = trimmed.trim_start_matches('/');
    let base = if anchored || p.starts_with("**") {
        p.to_string()
    } else {
        format!("**/{p}")
    };
    if dir_only {
        return vec![format!("{base}/**")];
    }
    let last = p.rsplit('/').next().unwrap_or(p);
    if last.contains('*') || last.contains('?') {
        vec![base]
    } else {
        vec![base.clone(), format!("{base}/**")]
    }
}

fn problem(pattern: &str, owners: &[String]) -> Option<String> {
    if pattern.starts_with('!') {
        return Some(format!("`{pattern}`: GitHub does not support `!` negation"));
    }
    if pattern.contains('[') || pattern.contains(']') {
        return Some(format!(
            "`{pattern}`: GitHub does not support `[ ]` character ranges"
        ));
    }
    if pattern.contains('\\') {
        return Some(format!("`{pattern}`: GitHub does not support `\\` escapes"));
    }
    if let Some(o) = owners.iter().find(|o| {
        let handle = o.starts_with('@') && o.len() > 1;
        let email = !o.starts_with('@') && o.contains('@');
        !handle && !email
    }) {
        return Some(format!(
            "owner `{o}` is neither @user, @org/team nor an email address"
        ));
    }
    None
}

impl CodeOwners {
    pub fn parse(text: &str) -> CodeOwners {
        let mut out = CodeOwners::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut parts = line.split_whitespace();
            let Some(pattern) = parts.next() else {
                continue;
            };
            let owners: Vec<String> = parts.map(String::from).collect();
            let invalid = |message| InvalidLine {
                line: n + 1,
                message,
            };
            if let Some(why) = problem(pattern, &owners) {
                out.invalid.push(invalid(why));
                continue;
            }
            let built: Result<Vec<GlobMatcher>, _> = globs_for(pattern)
                .iter()
                .map(|g| {
                    GlobBuilder::new(g)
                        .literal_separator(true)
                        .build()
                        .map(|g| g.compile_matcher())
                })
                .collect();
            match built {
                Ok(matchers) => out.rules.push(Rule {
                    pattern: pattern.to_string(),
                    owners,
                    matchers,
                }),
                Err(e) => out.invalid.push(invalid(format!("`{pattern}`: {e}"))),
            }
        }
        out
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

    /// GitHub's documented example file, and what each line owns per its comments.
    const GITHUB_EXAMPLE: &str = "
# This is a comment.
*       @global-owner1 @global-owner2
*.js    @js-owner #This is an inline comment.
*.go docs@example.com
*.txt @octo-org/octocats
/build/logs/ @doctocat
docs/* docs@example.com
apps/ @octocat
/docs/ @doctocat
/scripts/ @doctocat @octocat
**/logs @octocat
/apps/ @octocat
/apps/github
";

    #[test]
    fn github_documented_examples() {
        let co = CodeOwners::parse(GITHUB_EXAMPLE);
        assert!(co.invalid.is_empty(), "{:?}", co.invalid);
        let table: &[(&str, &[&str])] = &[
            (
                "some/deeply/nested/file.rb",
                &["@global-owner1", "@global-owner2"],
            ),
            ("src/app.js", &["@js-owner"]),
            ("main.go", &["docs@example.com"]),
            ("notes/a.txt", &["@octo-org/octocats"]),
            // build/logs at the root and any of its subdirectories (then **/logs wins).
            ("build/logs/x.log", &["@octocat"]),
            ("build/logs/deep/x.log", &["@octocat"]),
            // docs/*: files directly in a docs directory, not further nested;
            // /docs/ later owns everything under the root docs directory.
            ("docs/getting-started.md", &["@doctocat"]),
            ("docs/build-app/troubleshooting.md", &["@doctocat"]),
            // apps/ anywhere, /apps/ at the root, /apps/github unowned.
            ("src/apps/x.rb", &["@octocat"]),
            ("apps/x.rb", &["@octocat"]),
            ("apps/github/x.rb", &[]),
            ("scripts/run.sh", &["@doctocat", "@octocat"]),
            ("deeply/nested/logs/x.log", &["@octocat"]),
        ];
        for (path, want) in table {
            assert_eq!(co.owners_of(path), *want, "{path}");
        }
    }

    #[test]
    fn a_star_does_not_cross_a_slash_and_wildcard_segments_do_not_recurse() {
        let co = CodeOwners::parse("docs/* @docs\n/src/*.md @md\nlib/ @lib\n");
        assert_eq!(co.owners_of("docs/a.md"), ["@docs"]);
        assert!(
            co.owners_of("docs/a/b.md").is_empty(),
            "docs/* is not recursive"
        );
        assert!(co.owners_of("x/docs/a.md").is_empty(), "docs/* is anchored");
        assert_eq!(co.owners_of("src/x.md"), ["@md"]);
        assert!(co.owners_of("src/sub/x.md").is_empty());
        assert_eq!(co.owners_of("a/b/lib/c/d.rs"), ["@lib"]);
    }

    #[test]
    fn unsupported_lines_are_skipped_and_reported() {
        let co = CodeOwners::parse("* @all\n!secret @x\nsrc/[ab].rs @y\npath\\ x @z\nbad owner\n");
        assert_eq!(co.rules.len(), 1);
        let lines: Vec<usize> = co.invalid.iter().map(|i| i.line).collect();
        assert_eq!(lines, [2, 3, 4, 5]);
        assert_eq!(co.owners_of("secret"), ["@all"]);
    }
}
