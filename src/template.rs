//! The pack repository `missionctl init` creates, embedded in the binary from
//! `packs-template/` so a fresh machine needs nothing else.

use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

static TEMPLATE: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/packs-template");

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{path} is not empty; pass --force to write the template into it anyway")]
    NotEmpty { path: String },
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
}

/// Every template file as (relative path, bytes), sorted.
pub fn files() -> Vec<(PathBuf, &'static [u8])> {
    fn walk(d: &'static Dir<'static>, out: &mut Vec<(PathBuf, &'static [u8])>) {
        for f in d.files() {
            out.push((f.path().to_path_buf(), f.contents()));
        }
        for sub in d.dirs() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&TEMPLATE, &mut out);
    out.sort();
    out
}

/// What the template workflows' `uses:` says until `init` writes where this
/// project's action lives and the commit to pin.
pub const ACTION_PLACEHOLDER: &str =
    "missionctl-init-placeholder/missionctl@0000000000000000000000000000000000000000";

/// The action reference this build knows: `MISSIONCTL_ACTION_REPO`
/// (`owner/repo`, set when building) at the commit the binary was built
/// from. None when either is unknown.
pub fn built_action() -> Option<String> {
    let repo = option_env!("MISSIONCTL_ACTION_REPO").filter(|r| !r.is_empty())?;
    let commit = env!("MISSIONCTL_BUILD_COMMIT");
    (!commit.is_empty()).then(|| format!("{repo}@{commit}"))
}

/// Check an action reference: `owner/repo@<40-hex commit>` (a tag or branch
/// can move under the workflow; a commit cannot).
pub fn check_action(action: &str) -> Result<(), String> {
    let (repo, rev) = action
        .split_once('@')
        .ok_or_else(|| format!("`{action}` is not owner/repo@commit"))?;
    let ok_name = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match repo.split_once('/') {
        Some((o, r)) if ok_name(o) && ok_name(r) => {}
        _ => return Err(format!("`{repo}` is not owner/repo")),
    }
    if rev.len() != 40 || !rev.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "`{rev}` is not a full commit id; pin a 40-character commit, not a tag or branch that can move"
        ));
    }
    Ok(())
}

/// Write the template into `dir`, make it a git repository with one commit on
/// `main`, and return the commit id. `action` (`owner/repo@commit`) replaces
/// the workflows' placeholder action reference.
pub fn init(dir: &Path, force: bool) -> Result<crate::git::CommitId, InitError> {
    init_with(dir, force, None)
}

pub fn init_with(
    dir: &Path,
    force: bool,
    action: Option<&str>,
) -> Result<crate::git::CommitId, InitError> {
    let io = |path: &Path, source| InitError::Io {
        path: path.display().to_string(),
        source,
    };
    if dir.exists() {
        let mut rd = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
        if rd.next().is_some() && !force {
            return Err(InitError::NotEmpty {
                path: dir.display().to_string(),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    for (rel, bytes) in files() {
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let is_workflow = rel.starts_with(".github");
        match (is_workflow, action, std::str::from_utf8(bytes)) {
            (true, Some(a), Ok(text)) => std::fs::write(&path, text.replace(ACTION_PLACEHOLDER, a)),
            _ => std::fs::write(&path, bytes),
        }
        .map_err(|e| io(&path, e))?;
    }
    Ok(crate::git::init_with_commit(
        dir,
        "Initial pack repository from missionctl init",
    )?)
}

#[cfg(test)]
mod tests {
    use super::check_action;

    #[test]
    fn action_references_pin_a_commit() {
        assert!(check_action("acme/missionctl@0123456789abcdef0123456789abcdef01234567").is_ok());
        assert!(check_action("acme/missionctl@v1").is_err());
        assert!(check_action("acme/missionctl@main").is_err());
        assert!(check_action("missionctl@0123456789abcdef0123456789abcdef01234567").is_err());
        assert!(check_action("a/b c@0123456789abcdef0123456789abcdef01234567").is_err());
    }
}
