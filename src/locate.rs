//! Where a command's pack repository and state store are, found the same way
//! by every command.
//!
//! The repository is found as git finds its own: from the current directory
//! upwards, the first directory holding `mission.yaml` (without leaving the
//! git repository it is in), else the top of the git work tree.
//!
//! The state store, in this order: the `--db` flag, the environment
//! (`MISSIONCTL_DATABASE_URL`), `store.url` in the pack repository's
//! `mission.yaml` (a relative SQLite path is relative to the repository's
//! root), then one default: `$XDG_DATA_HOME/missionctl/state.db`
//! (`~/.local/share/missionctl/state.db`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::pack::MISSION_FILE;

/// The environment variable naming the state store.
pub const DATABASE_ENV: &str = "MISSIONCTL_DATABASE_URL";

/// The pack repository's root for a command run in `start`: the nearest
/// directory at or above it holding `mission.yaml` (not looking past the
/// top of the git repository `start` is in), else the top of that git work
/// tree; None outside both.
pub fn discover(start: &Path) -> Option<PathBuf> {
    let start = std::fs::canonicalize(start).ok()?;
    for dir in start.ancestors() {
        if dir.join(MISSION_FILE).is_file() {
            return Some(dir.to_path_buf());
        }
        // `.git` is a directory in a clone and a file in a linked work tree.
        if dir.join(".git").exists() {
            break;
        }
    }
    let repo = git2::Repository::discover(&start).ok()?;
    let top = repo.workdir().or_else(|| Some(repo.path()))?;
    std::fs::canonicalize(top).ok()
}

/// Where the state store's URL came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOrigin {
    /// The `--db` flag.
    Flag,
    /// `MISSIONCTL_DATABASE_URL`.
    Env,
    /// `store.url` in this `mission.yaml`.
    Mission(PathBuf),
    /// The per-user default.
    Default,
}

impl fmt::Display for StoreOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreOrigin::Flag => f.write_str("the --db flag"),
            StoreOrigin::Env => write!(f, "{DATABASE_ENV}"),
            StoreOrigin::Mission(p) => write!(f, "store.url in {}", p.display()),
            StoreOrigin::Default => f.write_str(
                "the default (no --db, no MISSIONCTL_DATABASE_URL, no store.url in a mission.yaml)",
            ),
        }
    }
}

/// The state store a command uses, and where that choice came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreChoice {
    pub url: String,
    pub origin: StoreOrigin,
}

/// A `mission.yaml` whose `store.url` cannot be read: a command must not
/// fall back to another store (its history would silently be elsewhere).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct StoreUrlError {
    pub path: String,
    pub why: String,
}

/// Resolve the state store: `flag`, else `env` (the value of
/// `MISSIONCTL_DATABASE_URL`), else `store.url` of the `mission.yaml` in the
/// work tree at `repo` (else in the pack repository the current directory
/// is in, when `repo` is a bare repository or a URL), else
/// [`crate::store::default_url`]. Empty values count as unset. A relative
/// SQLite path in the flag or the environment is made absolute from the
/// current directory, so `-v` shows the file that is opened.
pub fn store(
    flag: Option<&str>,
    env: Option<&str>,
    repo: Option<&Path>,
) -> Result<StoreChoice, StoreUrlError> {
    let absolute = |u: &str| match u.strip_prefix("sqlite://") {
        Some(p) if !p.is_empty() && !p.starts_with('/') && !p.starts_with(':') => {
            std::path::absolute(p)
                .map_or_else(|_| u.to_string(), |a| format!("sqlite://{}", a.display()))
        }
        _ => u.to_string(),
    };
    if let Some(u) = flag.filter(|u| !u.trim().is_empty()) {
        return Ok(StoreChoice {
            url: absolute(u),
            origin: StoreOrigin::Flag,
        });
    }
    if let Some(u) = env.filter(|u| !u.trim().is_empty()) {
        return Ok(StoreChoice {
            url: absolute(u),
            origin: StoreOrigin::Env,
        });
    }
    let root = repo
        .filter(|r| r.join(MISSION_FILE).symlink_metadata().is_ok())
        .map(Path::to_path_buf)
        .or_else(|| discover(Path::new(".")));
    if let Some(choice) = root.as_deref().map(from_mission).transpose()?.flatten() {
        return Ok(choice);
    }
    Ok(StoreChoice {
        url: crate::store::default_url(),
        origin: StoreOrigin::Default,
    })
}

/// Before one store, `serve`, `reconcile`, `decisions`, `status` and
/// `telemetry ingest` ignored mission.yaml and used the default. When
/// `choice` is mission.yaml's SQLite file, that file does not exist yet and
/// the default store does, the history is likely in the default: its URL.
pub fn earlier_default(choice: &StoreChoice) -> Option<String> {
    if !matches!(choice.origin, StoreOrigin::Mission(_)) {
        return None;
    }
    let sqlite_file = |u: &str| u.strip_prefix("sqlite://").map(PathBuf::from);
    let default = crate::store::default_url();
    let (chosen, old) = (sqlite_file(&choice.url)?, sqlite_file(&default)?);
    (!chosen.exists() && old.is_file() && chosen != old).then_some(default)
}

/// The most a `mission.yaml` read for its store may hold.
const MISSION_LIMIT: u64 = 1024 * 1024;

/// `store.url` of the `mission.yaml` in the work tree at `repo`. Read on its
/// own, so a schema error elsewhere in the file (which `validate` reports)
/// does not move the store; a file that cannot be read or a `store.url`
/// that is no store URL is an error, never a silent fallback.
fn from_mission(repo: &Path) -> Result<Option<StoreChoice>, StoreUrlError> {
    let path = repo.join(MISSION_FILE);
    let err = |why: String| StoreUrlError {
        path: path.display().to_string(),
        why,
    };
    let Ok(meta) = std::fs::metadata(&path) else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Err(err(
            "is not a regular file (a directory or a FIFO?); it must be the repository's mission.yaml"
                .into(),
        ));
    }
    if meta.len() > MISSION_LIMIT {
        return Err(err(format!("is over {MISSION_LIMIT} bytes")));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| err(format!("cannot be read: {e}")))?;
    let doc: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| {
        err(format!(
            "is not valid YAML ({e}); fix it (`missionctl validate` shows where) so the state store in its store.url can be found"
        ))
    })?;
    let u = match doc.pointer("/store/url") {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::String(u)) if u.trim().is_empty() => return Ok(None),
        Some(serde_json::Value::String(u)) => u.trim().to_string(),
        Some(other) => {
            return Err(err(format!(
                "store.url must be a string (sqlite://PATH or postgres://…), found {other}"
            )));
        }
    };
    let root = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf());
    let url = if let Some(p) = u.strip_prefix("sqlite://") {
        if p.is_empty() || p.starts_with('~') {
            return Err(err(format!(
                "store.url `{u}`: write the SQLite file's path, absolute or relative to the repository (`~` is not expanded)"
            )));
        }
        if p.starts_with('/') || p.starts_with(':') {
            u.clone()
        } else {
            format!("sqlite://{}", root.join(p).display())
        }
    } else if u.starts_with("postgres://") || u.starts_with("postgresql://") {
        u.clone()
    } else {
        return Err(err(format!(
            "store.url `{}` is not a state store URL: write sqlite://PATH or postgres://USER@HOST/DB",
            crate::store::redact(&u)
        )));
    };
    Ok(Some(StoreChoice {
        url,
        origin: StoreOrigin::Mission(root.join(MISSION_FILE)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_then_env_then_mission_then_default() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join(MISSION_FILE),
            include_str!("../packs-template/mission.yaml"),
        )
        .expect("write");
        let root = std::fs::canonicalize(dir.path()).expect("canon");
        let s = store(Some("sqlite:///f.db"), Some("sqlite:///e.db"), Some(&root)).expect("s");
        assert_eq!(s.origin, StoreOrigin::Flag);
        assert_eq!(s.url, "sqlite:///f.db");
        let s = store(Some(""), Some("sqlite:///e.db"), Some(&root)).expect("s");
        assert_eq!(s.origin, StoreOrigin::Env);
        let s = store(None, Some(""), Some(&root)).expect("s");
        assert_eq!(
            s.url,
            format!("sqlite://{}", root.join(".missionctl/state.db").display())
        );
        assert_eq!(s.origin, StoreOrigin::Mission(root.join(MISSION_FILE)));
        // A schema error elsewhere does not move the store; a bad store.url
        // is an error, never the default.
        let mission = std::fs::read_to_string(root.join(MISSION_FILE)).expect("read");
        std::fs::write(
            root.join(MISSION_FILE),
            format!("{mission}\nbogus_key: 1\n"),
        )
        .expect("w");
        let s = store(None, None, Some(&root)).expect("s");
        assert_eq!(s.origin, StoreOrigin::Mission(root.join(MISSION_FILE)));
        for bad in ["sqlite:rel.db", "mysql://x", "sqlite://~/x.db", "[1, 2]"] {
            let m = mission.replace("url: sqlite://.missionctl/state.db", &format!("url: {bad}"));
            assert_ne!(m, mission);
            std::fs::write(root.join(MISSION_FILE), m).expect("w");
            let e = store(None, None, Some(&root)).expect_err(bad);
            assert!(e.to_string().contains("mission.yaml"), "{e}");
        }
    }

    #[test]
    fn discovery_finds_the_nearest_mission_yaml_upwards() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = std::fs::canonicalize(dir.path()).expect("canon");
        std::fs::create_dir_all(root.join("packs/global")).expect("mkdir");
        std::fs::write(root.join(MISSION_FILE), "missionctl: 1\n").expect("write");
        assert_eq!(discover(&root.join("packs/global")), Some(root.clone()));
        assert_eq!(discover(&root), Some(root));
    }
}
