//! Links to the repository's host: when the source's remote is on GitHub,
//! a commit links to `https://github.com/<owner>/<repo>/commit/<sha>` and a
//! pull request to `…/pull/<n>`; otherwise both are plain text. Credentials
//! in a remote URL never reach a page.

use maud::{Markup, html};

/// `https://github.com/<owner>/<repo>` for a GitHub remote URL (HTTPS, SSH
/// or scp-like, with or without `.git` and credentials), else None.
pub fn github_base(remote: &str) -> Option<String> {
    let rest = remote.trim();
    let rest = rest
        .strip_prefix("https://")
        .or_else(|| rest.strip_prefix("http://"))
        .or_else(|| rest.strip_prefix("ssh://"))
        .or_else(|| rest.strip_prefix("git://"))
        .unwrap_or(rest);
    // Drop credentials (`user:token@`), then take the host and the path.
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let (host, path) = match rest.split_once(':') {
        // scp-like `github.com:owner/repo`, unless it is a port (`host:22/…`).
        Some((h, p)) if !p.starts_with(|c: char| c.is_ascii_digit()) => (h, p),
        _ => {
            let (h, p) = rest.split_once('/')?;
            (h.split(':').next().unwrap_or(h), p)
        }
    };
    if !host.eq_ignore_ascii_case("github.com") {
        return None;
    }
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let (owner, repo) = path.split_once('/')?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (ok(owner) && ok(repo) && !repo.contains('/'))
        .then(|| format!("https://github.com/{owner}/{repo}"))
}

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// A commit: its first ten characters, linked to GitHub when it is there.
pub fn commit(gh: Option<&str>, sha: &str) -> Markup {
    let short = sha.get(..10).unwrap_or(sha);
    html! {
        @match gh.filter(|_| is_sha(sha)) {
            Some(base) => { a href=(format!("{base}/commit/{sha}")) rel="noreferrer" { code { (short) } } }
            None => { code { (short) } }
        }
    }
}

/// Pull request `n`, linked to GitHub when the repository is there.
pub fn pull(gh: Option<&str>, n: i64) -> Markup {
    html! {
        @match gh {
            Some(base) => { a href=(format!("{base}/pull/{n}")) rel="noreferrer" { "#" (n) } }
            None => { "#" (n) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_remotes_are_recognised_and_credentials_dropped() {
        for url in [
            "https://github.com/acme/fleet",
            "https://github.com/acme/fleet.git",
            "https://x-access-token:ghs_secret@github.com/acme/fleet.git",
            "git@github.com:acme/fleet.git",
            "ssh://git@github.com/acme/fleet.git",
            "ssh://git@github.com:22/acme/fleet.git",
            "https://github.com/acme/fleet/",
        ] {
            assert_eq!(
                github_base(url).as_deref(),
                Some("https://github.com/acme/fleet"),
                "{url}"
            );
        }
        for url in [
            "/srv/git/fleet.git",
            "file:///srv/git/fleet.git",
            "https://gitlab.com/acme/fleet.git",
            "https://github.com.evil.example/acme/fleet",
            "https://github.com/acme",
            "https://github.com/acme/fleet/tree/x",
            "https://github.com/ac\"me/fleet",
        ] {
            assert_eq!(github_base(url), None, "{url}");
        }
    }

    #[test]
    fn only_full_shas_link_and_text_stays_plain_elsewhere() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let gh = Some("https://github.com/acme/fleet");
        assert_eq!(
            commit(gh, sha).into_string(),
            format!(
                "<a href=\"https://github.com/acme/fleet/commit/{sha}\" rel=\"noreferrer\"><code>0123456789</code></a>"
            )
        );
        assert_eq!(commit(None, sha).into_string(), "<code>0123456789</code>");
        assert_eq!(
            commit(gh, "pending:manual-1").into_string(),
            "<code>pending:ma</code>"
        );
        assert_eq!(
            pull(gh, 12).into_string(),
            "<a href=\"https://github.com/acme/fleet/pull/12\" rel=\"noreferrer\">#12</a>"
        );
        assert_eq!(pull(None, 12).into_string(), "#12");
    }
}
