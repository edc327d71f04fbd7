//! Where the pack repository comes from, and fetching it with credentials.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{GitError, Repo, open};

/// Where the pack repository comes from.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// A repository on this machine (bare or not), read in place.
    Local(PathBuf),
    /// A remote URL, fetched into a mirror under `mirror`.
    Remote { url: String, mirror: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Source {
    /// Stable identity used as the key in the state store.
    pub key: String,
    pub kind: SourceKind,
    pub branch: String,
}

fn is_url(s: &str) -> bool {
    s.contains("://") || (s.contains('@') && s.contains(':') && !Path::new(s).exists())
}

/// Credentials for fetch and push: an SSH agent, or a token in
/// `MISSIONCTL_GIT_TOKEN` for HTTPS. Never logged.
pub(super) fn credentials() -> git2::RemoteCallbacks<'static> {
    credentials_with(None)
}

/// As [`credentials`], with `token` (a GitHub App's installation token)
/// used for HTTPS before `MISSIONCTL_GIT_TOKEN`.
pub(super) fn credentials_with(token: Option<String>) -> git2::RemoteCallbacks<'static> {
    let mut cb = git2::RemoteCallbacks::new();
    cb.credentials(move |url, user, allowed| {
        if allowed.contains(git2::CredentialType::SSH_KEY) {
            return git2::Cred::ssh_key_from_agent(user.unwrap_or("git"));
        }
        if let Some(token) = token
            .clone()
            .or_else(|| std::env::var("MISSIONCTL_GIT_TOKEN").ok())
            && may_send_token(url)
        {
            return git2::Cred::userpass_plaintext("x-access-token", &token);
        }
        git2::Cred::default()
    });
    cb
}

/// The git token goes only over TLS: never to a plain `http://` remote,
/// where anyone on the path reads it.
fn may_send_token(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
}

/// Push `refspecs` to `url` with the configured credentials. A ref the
/// remote refuses to update (not a fast-forward: someone pushed first) is
/// an error, as `git push` reports it; libgit2 only says so through a
/// callback, and a push that "succeeds" with a rejected ref would let a
/// writer believe git agrees when it does not.
pub(super) fn push(repo: &git2::Repository, url: &str, refspecs: &[&str]) -> Result<(), GitError> {
    push_with(repo, url, refspecs, None)
}

pub(super) fn push_with(
    repo: &git2::Repository,
    url: &str,
    refspecs: &[&str],
    token: Option<String>,
) -> Result<(), GitError> {
    let mut remote = repo.remote_anonymous(url)?;
    let rejected: std::cell::RefCell<Vec<String>> = std::cell::RefCell::default();
    {
        let mut cb = credentials_with(token);
        cb.push_update_reference(|name, status| {
            if let Some(why) = status {
                rejected.borrow_mut().push(format!("{name}: {why}"));
            }
            Ok(())
        });
        let mut po = git2::PushOptions::new();
        po.remote_callbacks(cb);
        remote.push(refspecs, Some(&mut po))?;
    }
    let rejected = rejected.into_inner();
    if rejected.is_empty() {
        Ok(())
    } else {
        Err(GitError::Rejected(rejected.join("; ")))
    }
}

/// Fetch `refs/heads/<branch>` of `url` into `repo`; false when the remote
/// has no such branch.
pub(super) fn fetch_branch(repo: &git2::Repository, url: &str, branch: &str) -> bool {
    let Ok(mut remote) = repo.remote_anonymous(url) else {
        return false;
    };
    let spec = format!("+refs/heads/{branch}:refs/heads/{branch}");
    let mut fo = git2::FetchOptions::new();
    fo.remote_callbacks(credentials());
    remote.fetch(&[spec.as_str()], Some(&mut fo), None).is_ok()
        && repo.find_reference(&format!("refs/heads/{branch}")).is_ok()
}

impl Source {
    /// `repo` is a local path or a URL (https://, ssh://, git@host:path, file://).
    pub fn new(repo: &str, branch: &str, cache_dir: &Path) -> Source {
        if is_url(repo) {
            let hash = hex::encode(&Sha256::digest(repo.as_bytes())[..8]);
            Source {
                key: repo.to_string(),
                kind: SourceKind::Remote {
                    url: repo.to_string(),
                    mirror: cache_dir.join(format!("mirror-{hash}.git")),
                },
                branch: branch.to_string(),
            }
        } else {
            let path = std::fs::canonicalize(repo).unwrap_or_else(|_| PathBuf::from(repo));
            Source {
                key: path.display().to_string(),
                kind: SourceKind::Local(path),
                branch: branch.to_string(),
            }
        }
    }

    /// The repository to read, fetched first when remote.
    pub fn sync(&self) -> Result<Repo, GitError> {
        match &self.kind {
            SourceKind::Local(p) => open(p),
            SourceKind::Remote { url, mirror } => {
                let mirror_err = |m: String| GitError::Mirror {
                    url: url.clone(),
                    dir: mirror.display().to_string(),
                    message: m,
                };
                let repo = match git2::Repository::open_bare(mirror) {
                    Ok(r) => r,
                    Err(_) => {
                        std::fs::create_dir_all(mirror).map_err(|e| mirror_err(e.to_string()))?;
                        git2::Repository::init_bare(mirror)
                            .map_err(|e| mirror_err(e.message().to_string()))?
                    }
                };
                {
                    let mut remote = repo.remote_anonymous(url)?;
                    let spec = format!("+refs/heads/{0}:refs/heads/{0}", self.branch);
                    let mut fo = git2::FetchOptions::new();
                    fo.remote_callbacks(credentials());
                    remote
                        .fetch(
                            &[
                                spec.as_str(),
                                "+refs/notes/missionctl:refs/notes/missionctl",
                            ],
                            Some(&mut fo),
                            None,
                        )
                        .or_else(|_| {
                            // The notes ref may not exist yet on the remote.
                            let mut fo = git2::FetchOptions::new();
                            fo.remote_callbacks(credentials());
                            remote.fetch(&[spec.as_str()], Some(&mut fo), None)
                        })?;
                }
                Ok(Repo { inner: repo })
            }
        }
    }

    /// As [`Source::sync`], fetching every branch (a catalog's source, whose
    /// versions may sit on any of them).
    /// `anonymous`: no credential at all (a URL someone else named).
    pub(crate) fn sync_all_heads(&self, anonymous: bool) -> Result<Repo, GitError> {
        let SourceKind::Remote { url, mirror } = &self.kind else {
            return self.sync();
        };
        let repo = match git2::Repository::open_bare(mirror) {
            Ok(r) => r,
            Err(_) => {
                std::fs::create_dir_all(mirror).map_err(|e| GitError::Mirror {
                    url: url.clone(),
                    dir: mirror.display().to_string(),
                    message: e.to_string(),
                })?;
                git2::Repository::init_bare(mirror)?
            }
        };
        {
            let mut remote = repo.remote_anonymous(url)?;
            let mut fo = git2::FetchOptions::new();
            if anonymous {
                let mut cb = git2::RemoteCallbacks::new();
                cb.credentials(|_, _, _| {
                    Err(git2::Error::from_str(
                        "this repository needs credentials; catalog sources named by an index are fetched anonymously",
                    ))
                });
                fo.remote_callbacks(cb);
            } else {
                fo.remote_callbacks(credentials());
            }
            remote.fetch(&["+refs/heads/*:refs/heads/*"], Some(&mut fo), None)?;
        }
        Ok(Repo { inner: repo })
    }

    /// The repository as last fetched, without fetching (for readers such as the registry).
    pub(crate) fn open_local(&self) -> Result<Repo, GitError> {
        match &self.kind {
            SourceKind::Local(p) => open(p),
            SourceKind::Remote { mirror, .. } => Ok(Repo {
                inner: git2::Repository::open_bare(mirror)?,
            }),
        }
    }

    pub(crate) fn remote_url(&self) -> Option<&str> {
        match &self.kind {
            SourceKind::Remote { url, .. } => Some(url),
            SourceKind::Local(_) => None,
        }
    }

    /// The tip of branch `name` as the source has it now (fetched first
    /// when remote), if it exists.
    pub(crate) fn fetched_branch_tip(&self, repo: &Repo, name: &str) -> Option<super::CommitId> {
        if let SourceKind::Remote { url, .. } = &self.kind
            && !fetch_branch(&repo.inner, url, name)
        {
            return None;
        }
        repo.branch_tip(name)
    }

    /// Why missionctl cannot move this source's branch: a local repository
    /// with a work tree that has the branch checked out (moving the ref
    /// would leave the files and the index behind, and git would show the
    /// revert as an uncommitted change undoing itself).
    pub fn checked_out(&self) -> Option<String> {
        let SourceKind::Local(path) = &self.kind else {
            return None;
        };
        let repo = open(path).ok()?;
        let head = format!("refs/heads/{}", self.branch);
        let fix = format!(
            "a rollback's revert commit cannot move that branch without leaving the files behind. \
             Serve a bare clone instead (`git clone --bare {} fleet.git`, then `--repo fleet.git` and push there), serve the remote's URL, \
             or switch the work tree to another branch",
            path.display()
        );
        if !repo.inner.is_bare() && repo.head_ref().as_deref() == Some(head.as_str()) {
            return Some(format!(
                "{} has `{}` checked out in its work tree: {fix}",
                path.display(),
                self.branch
            ));
        }
        // Linked work trees (`git worktree add`) check branches out too.
        let names = repo.inner.worktrees().ok()?;
        for name in names.iter().flatten().flatten() {
            let Ok(wt) = repo.inner.find_worktree(name) else {
                continue;
            };
            let Ok(linked) = git2::Repository::open_from_worktree(&wt) else {
                continue;
            };
            if linked
                .head()
                .ok()
                .and_then(|h| h.name().ok().map(String::from))
                .as_deref()
                == Some(head.as_str())
            {
                return Some(format!(
                    "{} has `{}` checked out in its linked work tree {}: {fix}",
                    path.display(),
                    self.branch,
                    wt.path().display()
                ));
            }
        }
        None
    }

    /// The tip of the source's branch in `repo`.
    pub fn tip(&self, repo: &Repo) -> Result<super::CommitId, GitError> {
        repo.branch_tip(&self.branch)
            .ok_or_else(|| GitError::NoBranch {
                repo: self.key.clone(),
                branch: self.branch.clone(),
            })
    }
}

/// Fetch pull request `pr`'s head (`refs/pull/<pr>/head`, which GitHub keeps
/// in the base repository for forks too) from the `origin` of the repository
/// at `root`, as git objects only: nothing is checked out, so the pull
/// request's content is only ever read as data. Returns the fetched commit.
pub fn fetch_pull_head(root: &Path, pr: u64) -> Result<super::CommitId, GitError> {
    fetch_as_data(
        root,
        &format!("refs/pull/{pr}/head"),
        &format!("refs/missionctl/pull/{pr}/head"),
    )
}

/// Fetch a merge group's temporary branch (`refs/heads/gh-readonly-queue/…`)
/// from `origin` as git objects, as [`fetch_pull_head`] does for a pull
/// request: read as data, never checked out.
pub fn fetch_queue_head(root: &Path, refname: &str, pr: u64) -> Result<super::CommitId, GitError> {
    fetch_as_data(root, refname, &format!("refs/missionctl/queue/{pr}/head"))
}

/// The branches on `origin` whose names start with `prefix` (for example
/// `refs/heads/gh-readonly-queue/main/`), with the commits they point at:
/// listed only, nothing fetched.
pub fn remote_branches(
    root: &Path,
    prefix: &str,
) -> Result<Vec<(String, super::CommitId)>, GitError> {
    let repo = super::open(root)?.inner;
    let mut remote = repo.find_remote("origin")?;
    let conn = remote.connect_auth(git2::Direction::Fetch, Some(credentials()), None)?;
    Ok(conn
        .list()?
        .iter()
        .filter(|h| h.name().starts_with(prefix))
        .map(|h| (h.name().to_string(), super::CommitId(h.oid())))
        .collect())
}

/// The commit branch `branch` is at on the remote at `url` (listed only,
/// nothing fetched); `None` when the remote has no such branch.
pub fn remote_branch_at(
    repo: &super::Repo,
    url: &str,
    branch: &str,
    token: Option<&str>,
) -> Result<Option<super::CommitId>, GitError> {
    let mut remote = repo.inner.remote_anonymous(url)?;
    let conn = remote.connect_auth(
        git2::Direction::Fetch,
        Some(credentials_with(token.map(str::to_string))),
        None,
    )?;
    let want = format!("refs/heads/{branch}");
    Ok(conn
        .list()?
        .iter()
        .find(|h| h.name() == want)
        .map(|h| super::CommitId(h.oid())))
}

/// Fetch `url`'s `refs/heads/<branch>` as data, into
/// `refs/missionctl/check/<branch>` (never a branch of the repository), so
/// its commits can be compared with a proposal; None when the remote has no
/// such branch.
pub fn fetch_remote_branch(
    repo: &super::Repo,
    url: &str,
    branch: &str,
    token: Option<&str>,
) -> Result<Option<super::CommitId>, GitError> {
    if remote_branch_at(repo, url, branch, token)?.is_none() {
        return Ok(None);
    }
    let local = format!("refs/missionctl/check/{branch}");
    let mut remote = repo.inner.remote_anonymous(url)?;
    let spec = format!("+refs/heads/{branch}:{local}");
    let mut fo = git2::FetchOptions::new();
    fo.remote_callbacks(credentials_with(token.map(str::to_string)));
    remote.fetch(&[spec.as_str()], Some(&mut fo), None)?;
    let id = repo.inner.refname_to_id(&local)?;
    Ok(Some(super::CommitId(id)))
}

fn fetch_as_data(root: &Path, remote_ref: &str, local: &str) -> Result<super::CommitId, GitError> {
    let repo = super::open(root)?.inner;
    {
        let mut remote = repo.find_remote("origin")?;
        let spec = format!("+{remote_ref}:{local}");
        let mut fo = git2::FetchOptions::new();
        fo.remote_callbacks(credentials());
        remote.fetch(&[spec.as_str()], Some(&mut fo), None)?;
    }
    let id = repo.find_reference(local)?.peel_to_commit()?.id();
    Ok(super::CommitId(id))
}

#[cfg(test)]
mod tests {
    use super::may_send_token;

    /// Issue 10, point 11 (step): the token is never sent in clear text.
    #[test]
    fn the_token_goes_only_to_https_remotes() {
        assert!(may_send_token("https://github.com/o/r.git"));
        assert!(may_send_token("HTTPS://github.com/o/r.git"));
        assert!(!may_send_token("http://github.com/o/r.git"));
        assert!(!may_send_token("http://127.0.0.1:8080/r.git"));
        assert!(!may_send_token("git@github.com:o/r.git"));
    }
}
