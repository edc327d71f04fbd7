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

use crate::git::Tree;
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

/// Resolve the state store: `flag`, else `env` (the value of
/// `MISSIONCTL_DATABASE_URL`), else `store.url` of the `mission.yaml` in the
/// work tree at `repo`, else [`crate::store::default_url`]. Empty values
/// count as unset.
pub fn store(flag: Option<&str>, env: Option<&str>, repo: Option<&Path>) -> StoreChoice {
    if let Some(u) = flag.filter(|u| !u.trim().is_empty()) {
        return StoreChoice {
            url: u.to_string(),
            origin: StoreOrigin::Flag,
        };
    }
    if let Some(u) = env.filter(|u| !u.trim().is_empty()) {
        return StoreChoice {
            url: u.to_string(),
            origin: StoreOrigin::Env,
        };
    }
    if let Some(choice) = repo.and_then(from_mission) {
        return choice;
    }
    StoreChoice {
        url: crate::store::default_url(),
        origin: StoreOrigin::Default,
    }
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

/// `store.url` of the `mission.yaml` in the work tree at `repo`.
fn from_mission(repo: &Path) -> Option<StoreChoice> {
    if !repo.join(MISSION_FILE).is_file() {
        return None;
    }
    let u = crate::pack::mission(&Tree::work_tree_lazy(repo))?
        .store_url()?
        .to_string();
    if u.trim().is_empty() {
        return None;
    }
    let root = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf());
    let url = match u.strip_prefix("sqlite://") {
        Some(p) if !p.starts_with('/') => format!("sqlite://{}", root.join(p).display()),
        _ => u,
    };
    Some(StoreChoice {
        url,
        origin: StoreOrigin::Mission(root.join(MISSION_FILE)),
    })
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
        let s = store(Some("sqlite:///f.db"), Some("sqlite:///e.db"), Some(&root));
        assert_eq!(s.origin, StoreOrigin::Flag);
        assert_eq!(s.url, "sqlite:///f.db");
        let s = store(Some(""), Some("sqlite:///e.db"), Some(&root));
        assert_eq!(s.origin, StoreOrigin::Env);
        let s = store(None, Some(""), Some(&root));
        assert_eq!(
            s.url,
            format!("sqlite://{}", root.join(".missionctl/state.db").display())
        );
        assert_eq!(s.origin, StoreOrigin::Mission(root.join(MISSION_FILE)));
        let s = store(None, None, Some(&root.join("packs")));
        assert_eq!(s.origin, StoreOrigin::Default);
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
