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

/// Write the template into `dir`, make it a git repository with one commit on
/// `main`, and return the commit id.
pub fn init(dir: &Path, force: bool) -> Result<crate::git::CommitId, InitError> {
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
        std::fs::write(&path, bytes).map_err(|e| io(&path, e))?;
    }
    Ok(crate::git::init_with_commit(
        dir,
        "Initial pack repository from missionctl init",
    )?)
}
