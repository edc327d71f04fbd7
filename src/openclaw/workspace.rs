//! Writing a rendered workspace to disk, and noticing hand edits.
//!
//! Every file is written in full to `.missionctl/staging/` and synced
//! before anything visible changes; then each one replaces its old version
//! with one `rename` (atomic on POSIX: a reader sees the old file or the
//! new one, never a partial one), and the sidecar is replaced last. A
//! failure while staging (a full disk, a read-only directory) leaves the
//! workspace exactly as it was. A crash between the renames leaves the old
//! sidecar, so the next write sees the mismatch and completes the swap.
//! Files outside [`MANAGED_FILES`] and `.missionctl/` are never touched.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::render::{MANAGED_FILES, SIDECAR, Sidecar, Workspace, sha256};

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error(
        "{path}: {source} (missionctl needs to create and write files in the agent's workspace; check the path and its permissions)"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WorkspaceError + '_ {
    move |source| WorkspaceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// The workspace changed (a new version, or drift repaired).
    pub changed: bool,
    /// Managed files edited by hand since missionctl wrote them; each
    /// edited copy is kept under `.missionctl/drift/` before it is replaced.
    pub drift: Vec<String>,
}

/// The sidecar a workspace holds, if any (and readable).
pub fn read_sidecar(dir: &Path) -> Option<Sidecar> {
    let text = read_regular(&dir.join(SIDECAR))?;
    serde_json::from_str(&text).ok()
}

/// Whether `name` is a path missionctl manages in a workspace: a bootstrap
/// file, or `skills/<skill>/<plain relative path>`. Names read from a
/// sidecar on disk (which anyone who can write the workspace can edit)
/// are used only when they pass this.
pub fn is_managed_name(name: &str) -> bool {
    MANAGED_FILES.contains(&name)
        || name
            .strip_prefix("skills/")
            .and_then(|r| r.split_once('/'))
            .is_some_and(|(skill, rel)| {
                crate::pack::valid_skill_name(skill) && super::render::is_skill_file(rel)
            })
}

/// A regular file's text; None for a symlink, a directory, anything else
/// or an unreadable file. Links are never followed in a workspace.
fn read_regular(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_file() {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// The managed file `name`'s text, read only when every directory on the
/// way from `dir` is a real directory (no link) and the file is regular.
fn read_managed(dir: &Path, name: &str) -> Option<String> {
    if !on_real_dirs(dir, name) {
        return None;
    }
    read_regular(&dir.join(name))
}

/// Whether `name` is a managed name whose every directory on the way from
/// `dir` is a real directory (no link).
fn on_real_dirs(dir: &Path, name: &str) -> bool {
    if !is_managed_name(name) {
        return false;
    }
    let mut at = dir.to_path_buf();
    let parts: Vec<&str> = name.split('/').collect();
    parts[..parts.len() - 1].iter().all(|part| {
        at.push(part);
        std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_dir())
    })
}

/// Make every directory on the way to managed file `name` under `dir` a
/// real directory: a symlink there (which would send the write, or a
/// removal, outside the workspace) is removed and replaced by a directory;
/// returns the links replaced.
fn real_dirs_to(dir: &Path, name: &str) -> Result<Vec<String>, WorkspaceError> {
    let mut replaced = Vec::new();
    let mut at = dir.to_path_buf();
    let parts: Vec<&str> = name.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                std::fs::remove_file(&at).map_err(io(&at))?;
                std::fs::create_dir(&at).map_err(io(&at))?;
                replaced.push(at.strip_prefix(dir).unwrap_or(&at).display().to_string());
            }
            Ok(_) => {
                // A file where a folder goes: kept aside as drift below.
                return Err(WorkspaceError::Io {
                    path: at.clone(),
                    source: std::io::Error::other(
                        "a file is where missionctl puts a folder of the pack's skills; move it away",
                    ),
                });
            }
            Err(_) => std::fs::create_dir(&at).map_err(io(&at))?,
        }
    }
    Ok(replaced)
}

/// Managed files whose content differs from what the sidecar says was
/// written (edited, deleted or replaced by a link, by hand).
pub fn drift(dir: &Path, sidecar: &Sidecar) -> Vec<String> {
    sidecar
        .files
        .iter()
        .filter(|(name, _)| is_managed_name(name))
        .filter(|(name, digest)| read_managed(dir, name).is_none_or(|t| &sha256(&t) != *digest))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Files below `dir/skills/<skill>/` (no link followed), relative to `dir`.
fn skill_folder_files(dir: &Path, skill: &str) -> Vec<String> {
    let mut out = Vec::new();
    let root = dir.join("skills").join(skill);
    if !std::fs::symlink_metadata(&root).is_ok_and(|m| m.file_type().is_dir()) {
        return out;
    }
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(_) => {
                    if let Ok(rel) = p.strip_prefix(dir) {
                        out.push(rel.to_string_lossy().into_owned());
                    }
                }
                Err(_) => {}
            }
        }
    }
    out
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), WorkspaceError> {
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Make `dir` hold `ws`. Idempotent: a workspace already holding this
/// version, untouched, is left alone. Nothing outside `dir` is read,
/// written or removed: names from the sidecar on disk are used only when
/// they are managed names, and no link in the workspace is followed.
pub fn write(dir: &Path, ws: &Workspace) -> Result<Written, WorkspaceError> {
    let meta = dir.join(".missionctl");
    if std::fs::symlink_metadata(&meta).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&meta).map_err(io(&meta))?;
    }
    std::fs::create_dir_all(&meta).map_err(io(&meta))?;
    let old = read_sidecar(dir);
    let old_names: Vec<String> = old
        .as_ref()
        .map(|o| {
            o.files
                .keys()
                .filter(|k| is_managed_name(k))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let files = ws.all_files();
    // Drift: a managed file that holds neither what missionctl last wrote
    // there (per the sidecar) nor this version's text. A file already
    // holding this version's text is none (an earlier write was interrupted
    // after renaming it into place). With no sidecar, or one naming this
    // very version (a sidecar deleted or rewritten by hand cannot vouch for
    // the files), any file that differs from this version's text is drift.
    let vouches = old
        .as_ref()
        .filter(|o| o.pack_version != ws.sidecar.pack_version || o.digest != ws.sidecar.digest);
    let mut names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    for n in &old_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    // Files in a skill's folder that this version does not have (put there
    // by hand, or left by a write whose sidecar is gone): the folder is
    // missionctl's while the chain has the skill.
    let mut strays = Vec::new();
    for k in &ws.skills {
        for f in skill_folder_files(dir, &k.name) {
            if is_managed_name(&f) && !names.contains(&f) {
                strays.push(f.clone());
                names.push(f);
            }
        }
    }
    let drifted: Vec<String> = names
        .into_iter()
        .filter(|name| {
            let Some(disk) = read_managed(dir, name) else {
                // Deleted, or not a regular file: drift when missionctl had
                // written it or this version writes it.
                return old_names.contains(name)
                    || (files.iter().any(|(n, _)| n == name)
                        && std::fs::symlink_metadata(dir.join(name)).is_ok());
            };
            if strays.contains(name) {
                return true;
            }
            let new = files.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
            if new == Some(disk.as_str()) {
                return false;
            }
            match vouches {
                Some(o) => o.files.get(name) != Some(&sha256(&disk)),
                None => new.is_some() || old.is_some(),
            }
        })
        .collect();
    let current = old.as_ref().is_some_and(|s| s == &ws.sidecar)
        && drifted.is_empty()
        && files
            .iter()
            .all(|(n, t)| read_managed(dir, n).is_some_and(|x| x == *t));
    if current {
        return Ok(Written::default());
    }
    // Keep what a person wrote before replacing it (regular files only:
    // a link's target is not the workspace's to copy).
    if !drifted.is_empty() {
        let keep = meta.join("drift");
        std::fs::create_dir_all(&keep).map_err(io(&keep))?;
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        for name in &drifted {
            if let Some(text) = read_managed(dir, name) {
                let to = keep.join(format!("{}.{stamp}", name.replace('/', "__")));
                std::fs::write(&to, text).map_err(io(&to))?;
            }
        }
    }
    let staging = meta.join("staging");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let staged = (|| {
        for (name, text) in &files {
            let to = staging.join(name);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            write_synced(&to, text.as_bytes())?;
        }
        let side = serde_json::to_vec_pretty(&ws.sidecar).unwrap_or_default();
        write_synced(&staging.join("pack.json"), &side)
    })();
    if let Err(e) = staged {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let mut replaced_links = Vec::new();
    for (name, _) in &files {
        replaced_links.extend(real_dirs_to(dir, name)?);
        let to = dir.join(name);
        // A directory where a file goes cannot be renamed over.
        if std::fs::symlink_metadata(&to).is_ok_and(|m| m.file_type().is_dir()) {
            return Err(WorkspaceError::Io {
                path: to.clone(),
                source: std::io::Error::other(
                    "a folder is where missionctl writes a file of the pack; move it away",
                ),
            });
        }
        std::fs::rename(staging.join(name), &to).map_err(io(&to))?;
    }
    let side = dir.join(SIDECAR);
    std::fs::rename(staging.join("pack.json"), &side).map_err(io(&side))?;
    // Skill files an earlier version had (per the sidecar) and this one
    // does not, and strays in this version's skill folders; then folders
    // left empty, up to `skills/` (not included). Only regular files and
    // symlinks themselves are removed, on a path of real directories.
    let gone = old_names
        .iter()
        .chain(&strays)
        .filter(|n| n.starts_with("skills/") && !files.iter().any(|(f, _)| f == *n));
    for name in gone {
        if !on_real_dirs(dir, name) {
            continue;
        }
        let f = dir.join(name);
        let _ = std::fs::remove_file(&f);
        let stop = dir.join("skills");
        let mut folder = f.parent();
        while let Some(d) = folder {
            if d == stop || !d.starts_with(&stop) || std::fs::remove_dir(d).is_err() {
                break;
            }
            folder = d.parent();
        }
    }
    // The renames are durable once the directories are synced.
    for d in [dir, meta.as_path()] {
        if let Ok(f) = std::fs::File::open(d) {
            let _ = f.sync_all();
        }
    }
    let _ = std::fs::remove_dir_all(&staging);
    debug_assert!(ws.files.iter().all(|(n, _)| MANAGED_FILES.contains(n)));
    let mut drift = drifted;
    drift.extend(
        replaced_links
            .into_iter()
            .map(|l| format!("{l} (a link, replaced by a folder)")),
    );
    Ok(Written {
        changed: true,
        drift,
    })
}

/// Write `text` to `path` atomically (temp file beside it, synced, renamed).
pub fn replace_file(path: &Path, text: &str) -> Result<(), WorkspaceError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(io(parent))?;
    tmp.write_all(text.as_bytes()).map_err(io(path))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    // NamedTempFile is created 0600; these files hold no secret and the
    // Gateway may run as another user.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path).map_err(|e| WorkspaceError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Hold `dir` for this process: one `openclaw sync` per workspace (two
/// would race each other's staged files). The lock is `.missionctl/lock`,
/// released when the returned file is dropped or the process dies.
pub fn lock(dir: &Path) -> Result<std::fs::File, String> {
    let meta = dir.join(".missionctl");
    std::fs::create_dir_all(&meta).map_err(|e| {
        format!(
            "{}: {e} (missionctl needs to create and write files in the agent's workspace; check the path and its permissions)",
            meta.display()
        )
    })?;
    let path = meta.join("lock");
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(format!(
            "{} is managed by another running `missionctl openclaw sync`; run one sync per workspace (stop the other, or give this agent its own workspace)",
            dir.display()
        )),
        Err(e) => Err(format!("locking {}: {e}", path.display())),
    }
}

/// Give `path` a new modification time (the file's content is unchanged);
/// nothing when there is no such file (yet).
pub fn touch(path: &Path) -> Result<(), WorkspaceError> {
    match std::fs::File::options().append(true).open(path) {
        Ok(f) => f
            .set_modified(std::time::SystemTime::now())
            .map_err(io(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openclaw::render::{SIDECAR, Sidecar, Workspace, sha256};

    fn ws(version: &str, agents: &str) -> Workspace {
        let files = vec![
            ("AGENTS.md", agents.to_string()),
            ("SOUL.md", "# Voice\n".to_string()),
            ("IDENTITY.md", "# Identity\n".to_string()),
        ];
        Workspace {
            sidecar: Sidecar {
                managed_by: "test".into(),
                pack_id: "p".into(),
                pack_version: version.into(),
                digest: format!("sha256:{version}"),
                arm: crate::model::Arm::Champion,
                agent_id: "a".into(),
                tenant_id: "t".into(),
                user_id: String::new(),
                domain: "d".into(),
                task_type: "d".into(),
                chain: vec![],
                commit: None,
                files: files
                    .iter()
                    .map(|(n, t)| (n.to_string(), sha256(t)))
                    .collect(),
                tools: None,
                autonomy: None,
            },
            files,
            skills: vec![],
            allow: None,
            deny: vec![],
            model: None,
        }
    }

    #[test]
    fn an_interrupted_swap_is_finished_without_calling_it_drift() {
        let dir = tempfile::tempdir().expect("tmp");
        let (v1, v2) = (ws("1", "one\n"), ws("2", "two\n"));
        assert!(write(dir.path(), &v1).expect("v1").changed);
        // A crash after AGENTS.md was renamed into place, before the sidecar.
        std::fs::write(dir.path().join("AGENTS.md"), "two\n").expect("w");
        let w = write(dir.path(), &v2).expect("v2");
        assert!(w.changed && w.drift.is_empty(), "{w:?}");
        assert_eq!(read_sidecar(dir.path()).expect("sidecar").pack_version, "2");
        // Again: nothing to do.
        assert_eq!(write(dir.path(), &v2).expect("again"), Written::default());
        assert!(dir.path().join(SIDECAR).is_file());
    }

    #[test]
    fn a_hand_edit_is_kept_and_replaced() {
        let dir = tempfile::tempdir().expect("tmp");
        let v1 = ws("1", "one\n");
        write(dir.path(), &v1).expect("v1");
        std::fs::write(dir.path().join("SOUL.md"), "mine\n").expect("w");
        let w = write(dir.path(), &v1).expect("again");
        assert_eq!(w.drift, vec!["SOUL.md".to_string()]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("SOUL.md")).expect("r"),
            "# Voice\n"
        );
    }

    #[test]
    fn a_failed_staging_changes_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").expect("w");
        let e = write(&file.join("ws"), &ws("1", "one\n")).expect_err("a file is in the way");
        assert!(e.to_string().contains("not-a-dir/ws"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).expect("r"), "x");
    }
}
