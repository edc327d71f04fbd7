//! The reconciler: commits on the main branch in, promotion decisions out.
//!
//! Every pass walks the first-parent commits since the last reconciled one,
//! oldest first, so each merged pull request gets its own decision even when
//! several land at once. For each commit:
//!
//! - a pack whose content changed becomes a `promote` decision (challenger
//!   against the champion it replaces) with the rollout plan from its
//!   promotion thresholds;
//! - a revert (git's "This reverts commit …", missionctl's rollback trailer,
//!   or a pack returning to content reconciled earlier) becomes a `rollback`,
//!   applied at once to 100%;
//! - content that fails validation is refused (`reject`): the last good
//!   version keeps serving and the errors are recorded;
//! - history rewritten under the reconciler (a force-push dropping reconciled
//!   commits) halts it until an operator acknowledges.
//!
//! Each commit's decisions, serving changes and the new position are written
//! in one transaction that only succeeds if the position is unchanged, so a
//! crash, a restart or a second replica never loses or duplicates a decision.
//! The trigger (CLI, poll, file watch, webhook) is invisible here: a pass is
//! always "catch up to the tip", which makes every trigger safe to repeat.

pub mod daemon;
pub mod rollback;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::gitrepo::{self, GitError, Tree};
use crate::pack::{self, Location, PackDoc, Repo};

use crate::store::{CommitApply, Decision, Serving, Store, StoreError};
use crate::validate;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("git: {0}")]
    Git2(#[from] git2::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("branch `{branch}` does not exist in {repo}")]
    NoBranch { repo: String, branch: String },
    #[error("cannot prepare a mirror of {url} in {dir}: {message}")]
    Mirror {
        url: String,
        dir: String,
        message: String,
    },
    #[error("the reconcile task failed: {0}")]
    Task(String),
}

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
    pub fn sync(&self) -> Result<Repository, ReconcileError> {
        match &self.kind {
            SourceKind::Local(p) => Ok(gitrepo::open(p)?),
            SourceKind::Remote { url, mirror } => {
                let mirror_err = |m: String| ReconcileError::Mirror {
                    url: url.clone(),
                    dir: mirror.display().to_string(),
                    message: m,
                };
                let repo = match Repository::open_bare(mirror) {
                    Ok(r) => r,
                    Err(_) => {
                        std::fs::create_dir_all(mirror).map_err(|e| mirror_err(e.to_string()))?;
                        Repository::init_bare(mirror)
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
                Ok(repo)
            }
        }
    }

    /// The repository as last fetched, without fetching (for readers such as the registry).
    pub fn open_local(&self) -> Result<Repository, ReconcileError> {
        match &self.kind {
            SourceKind::Local(p) => Ok(gitrepo::open(p)?),
            SourceKind::Remote { mirror, .. } => Ok(Repository::open_bare(mirror)?),
        }
    }

    pub fn remote_url(&self) -> Option<&str> {
        match &self.kind {
            SourceKind::Remote { url, .. } => Some(url),
            SourceKind::Local(_) => None,
        }
    }
}

/// Credentials for fetch and push: an SSH agent, or a token in
/// `MISSIONCTL_GIT_TOKEN` for HTTPS. Never logged.
pub fn credentials() -> git2::RemoteCallbacks<'static> {
    let mut cb = git2::RemoteCallbacks::new();
    cb.credentials(|_url, user, allowed| {
        if allowed.contains(git2::CredentialType::SSH_KEY) {
            return git2::Cred::ssh_key_from_agent(user.unwrap_or("git"));
        }
        if let Ok(token) = std::env::var("MISSIONCTL_GIT_TOKEN") {
            return git2::Cred::userpass_plaintext("x-access-token", &token);
        }
        git2::Cred::default()
    });
    cb
}

/// What one pass did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    pub tip: String,
    pub commits: usize,
    pub decisions: Vec<Decision>,
    pub halted: Option<String>,
    /// Another replica reconciled first; this pass stopped without writing.
    pub lost_race: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Write each decision as a git note under `refs/notes/missionctl` (and push it for remotes).
    pub notes: bool,
    /// Accept rewritten history and resume from the current tip.
    pub acknowledge: bool,
}

struct CommitInfo {
    sha: String,
    message: String,
    committer: String,
    time: String,
}

fn commit_info(repo: &Repository, oid: Oid) -> Result<CommitInfo, ReconcileError> {
    let c = repo.find_commit(oid)?;
    let (who, when) = gitrepo::commit_meta(repo, oid).unwrap_or_default();
    let committer = {
        let s = c.committer();
        match (s.name().ok(), s.email().ok()) {
            (Some(n), Some(e)) => format!("{n} <{e}>"),
            _ => who,
        }
    };
    Ok(CommitInfo {
        sha: oid.to_string(),
        message: c.message().unwrap_or_default().to_string(),
        committer,
        time: when,
    })
}

/// "Merge pull request #12 from …" or a squash merge's "… (#12)".
pub fn pull_request_of(message: &str) -> Option<i64> {
    let first = message.lines().next().unwrap_or_default();
    if let Some(rest) = first.strip_prefix("Merge pull request #") {
        return rest.split_whitespace().next()?.parse().ok();
    }
    let open = first.rfind("(#")?;
    first[open + 2..].trim_end().strip_suffix(')')?.parse().ok()
}

fn trailer<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
}

fn is_revert(message: &str) -> bool {
    message.contains("This reverts commit ") || trailer(message, "Missionctl-Rollback").is_some()
}

pub fn pack_version(p: &PackDoc) -> String {
    format!(
        "{}+sha256.{}",
        p.pack.version,
        &p.own_digest[..8.min(p.own_digest.len())]
    )
}

pub fn decision_id(commit: &str, pack: &str) -> String {
    let h = hex::encode(Sha256::digest(format!("{commit}\u{0}{pack}").as_bytes()));
    // UUID-shaped for readability; derived, so every replica computes the same id.
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The rollout plan for promoting `p`: its canary steps, else its tier's, else a default.
fn rollout_plan(repo: &Repo, p: &PackDoc) -> Json {
    let mut idx: Vec<usize> = repo.global.into_iter().collect();
    if let Location::TenantUser { tenant, .. } = &p.location
        && let Some(t) = repo.tenants.get(tenant)
    {
        idx.push(*t);
    }
    if let Some(i) = repo.by_id.get(&p.pack.id)
        && !idx.contains(i)
    {
        idx.push(*i);
    }
    let resolved = crate::resolve::resolve_indices(repo, &idx);
    let canary = resolved
        .content
        .pointer("/promotion/canary")
        .cloned()
        .unwrap_or(Json::Null);
    let tier_steps = repo
        .tiers
        .as_ref()
        .and_then(|t| t.value.get(resolved.tier).canary_steps.clone());
    let steps = canary
        .get("steps")
        .cloned()
        .or_else(|| tier_steps.map(|s| json!(s)))
        .unwrap_or(json!([10, 50, 100]));
    json!({
        "steps": steps,
        "min_runs_per_arm": canary.get("min_runs_per_arm").cloned().unwrap_or(json!(200)),
        "step_deadline_minutes": canary.get("step_deadline_minutes").cloned().unwrap_or(json!(240)),
        "max_false_rollback_rate": canary.get("max_false_rollback_rate").cloned().unwrap_or(json!(0.05)),
        "rollback": resolved.content.get("rollback").cloned().unwrap_or(Json::Null),
        "kpis": resolved.content.get("kpis").cloned().unwrap_or(Json::Null),
    })
}

type History = HashMap<(String, String), (String, String)>;

/// What serves now, per pack: the baseline every commit is compared with
/// (after a refused commit it is still the last good content).
type ServingMap = HashMap<String, Serving>;

/// Decide what one commit means against what serves now.
fn plan_commit(
    source: &Source,
    serving: &ServingMap,
    holds: &HashMap<String, String>,
    initial: bool,
    cur: &Repo,
    info: &CommitInfo,
    history: &History,
) -> CommitApply {
    let mut apply = CommitApply {
        source: source.key.clone(),
        branch: source.branch.clone(),
        new_last: info.sha.clone(),
        ..CommitApply::default()
    };
    let pr = pull_request_of(&info.message);
    let evidence = trailer(&info.message, "Missionctl-Evidence").map(String::from);
    let mk = |p: &PackDoc,
              champion: Option<String>,
              decision: &str,
              reason: String,
              by: String,
              rollout: Option<Json>| Decision {
        decision_id: decision_id(&info.sha, &p.pack.id),
        scope_type: p.location.scope_type().as_str().into(),
        scope_id: p.location.scope_id().into(),
        champion_pack_version: champion,
        challenger_pack_version: pack_version(p),
        decision: decision.into(),
        reason,
        decided_by: by,
        created_at: info.time.clone(),
        pack_id: p.pack.id.clone(),
        commit: info.sha.clone(),
        pull_request: pr,
        evidence_url: evidence.clone(),
        rollout,
        figures: None,
    };
    let errors: Vec<_> = validate::validate(cur, None)
        .into_iter()
        .filter(|d| d.is_error())
        .collect();
    let changed: Vec<&PackDoc> = cur
        .packs
        .iter()
        .filter(|p| {
            serving
                .get(&p.pack.id)
                .is_none_or(|old| old.digest != p.own_digest)
        })
        .collect();
    if !errors.is_empty() {
        let summary = errors
            .iter()
            .take(3)
            .map(|d| format!("{}:{}:{}: {}: {}", d.file, d.line, d.col, d.code, d.message))
            .collect::<Vec<_>>()
            .join("; ");
        let reason = format!(
            "refused: the content on {} fails validation ({} error(s)): {summary}; the last good version keeps serving",
            source.branch,
            errors.len()
        );
        let mut packs: Vec<(String, String, String, String)> = changed
            .iter()
            .map(|p| {
                (
                    p.pack.id.clone(),
                    p.location.scope_type().as_str().into(),
                    p.location.scope_id().into(),
                    pack_version(p),
                )
            })
            .collect();
        // Packs that no longer load at all are broken, not removed.
        for f in &cur.failed_packs {
            let old = Location::from_path(f).and_then(|loc| {
                serving.values().find(|s| {
                    s.scope_type == loc.scope_type().as_str() && s.scope_id == loc.scope_id()
                })
            });
            if let Some(old) = old {
                packs.push((
                    old.pack_id.clone(),
                    old.scope_type.clone(),
                    old.scope_id.clone(),
                    format!("unparseable at {}", &info.sha[..8]),
                ));
            }
        }
        if packs.is_empty() {
            packs.push((
                "policies".into(),
                "global".into(),
                "policies".into(),
                format!("invalid at {}", &info.sha[..8]),
            ));
        }
        for (id, st, sid, ver) in packs {
            apply.decisions.push(Decision {
                decision_id: decision_id(&info.sha, &id),
                scope_type: st,
                scope_id: sid,
                champion_pack_version: serving.get(&id).map(|s| s.version.clone()),
                challenger_pack_version: ver,
                decision: "reject".into(),
                reason: reason.clone(),
                decided_by: "missionctl reconciler".into(),
                created_at: info.time.clone(),
                pack_id: id,
                commit: info.sha.clone(),
                pull_request: pr,
                evidence_url: evidence.clone(),
                rollout: None,
                figures: None,
            });
        }
        return apply;
    }
    apply.good = true;
    let revert_commit = is_revert(&info.message);
    for p in changed {
        // After an automatic rollback the pack is held: only a newer version is promoted.
        if let Some(held) = holds.get(&p.pack.id) {
            let newer = match (
                semver::Version::parse(&p.pack.version),
                semver::Version::parse(held),
            ) {
                (Ok(a), Ok(b)) => a > b,
                _ => false,
            };
            if newer {
                apply.release_holds.push(p.pack.id.clone());
            } else if p.pack.version == *held {
                // The rolled-back version itself, even by reverting the revert.
                apply.decisions.push(mk(
                    p,
                    serving.get(&p.pack.id).map(|s| s.version.clone()),
                    "reject",
                    format!("held: {} was rolled back automatically at version {held}; merge a version newer than {held} to promote again", p.pack.id),
                    "missionctl reconciler".into(),
                    None,
                ));
                continue;
            }
        }
        let champion = serving.get(&p.pack.id).map(|s| s.version.clone());
        // `p` changed, so its digest is not the serving one: a hit here is
        // content from earlier on main, i.e. a return to an older version.
        let earlier = history.get(&(p.pack.id.clone(), p.own_digest.clone()));
        let by = format!("merged by {}", info.committer);
        let d = match (initial, revert_commit, earlier) {
            (true, _, _) => mk(
                p,
                None,
                "promote",
                "initial reconcile: first version seen on main".into(),
                "missionctl reconciler".into(),
                Some(json!({"steps": [100], "immediate": true})),
            ),
            (_, true, _) | (_, _, Some(_)) => {
                let why = match earlier {
                    Some((v, c)) => format!(
                        "rollback: content returns to version {v} reconciled at {:.8}",
                        c
                    ),
                    None => "rollback: revert commit".to_string(),
                };
                mk(
                    p,
                    champion,
                    "rollback",
                    why,
                    by,
                    Some(json!({"steps": [100], "immediate": true})),
                )
            }
            _ => {
                let mut plan = rollout_plan(cur, p);
                // Where the champion's content lives, for serving it during the canary.
                if let (Json::Object(o), Some(sv)) = (&mut plan, serving.get(&p.pack.id)) {
                    o.insert("from_commit".into(), Json::String(sv.commit.clone()));
                }
                let why = match &champion {
                    Some(c) => format!(
                        "promote: content changed on {} ({c} -> {})",
                        source.branch,
                        pack_version(p)
                    ),
                    None => format!("promote: new pack on {}", source.branch),
                };
                mk(p, champion, "promote", why, by, Some(plan))
            }
        };
        apply.decisions.push(d);
        apply.serving.push(Serving {
            pack_id: p.pack.id.clone(),
            scope_type: p.location.scope_type().as_str().into(),
            scope_id: p.location.scope_id().into(),
            version: pack_version(p),
            digest: p.own_digest.clone(),
            commit: info.sha.clone(),
        });
    }
    for id in serving.keys() {
        if cur.pack(id).is_none() {
            apply.removed.push(id.clone());
        }
    }
    apply.removed.sort();
    apply
}

fn write_notes(
    repo: &Repository,
    source: &Source,
    apply: &CommitApply,
) -> Result<(), ReconcileError> {
    if apply.decisions.is_empty() {
        return Ok(());
    }
    let oid = Oid::from_str(&apply.new_last)?;
    let body: String = apply
        .decisions
        .iter()
        .filter_map(|d| serde_json::to_string(d).ok())
        .collect::<Vec<_>>()
        .join("\n");
    let sig = git2::Signature::now("missionctl", "missionctl@localhost")?;
    repo.note(&sig, &sig, Some("refs/notes/missionctl"), oid, &body, true)?;
    if let Some(url) = source.remote_url() {
        let mut remote = repo.remote_anonymous(url)?;
        let mut po = git2::PushOptions::new();
        po.remote_callbacks(credentials());
        remote.push(
            &["+refs/notes/missionctl:refs/notes/missionctl"],
            Some(&mut po),
        )?;
    }
    Ok(())
}

/// One pass: catch up from the last reconciled commit to the branch tip.
/// Blocking (libgit2); call from a blocking context.
pub fn reconcile_blocking(
    source: &Source,
    store: &Store,
    opts: &Options,
    rt: &tokio::runtime::Handle,
) -> Result<Outcome, ReconcileError> {
    let repo = source.sync()?;
    let tip = repo
        .find_reference(&format!("refs/heads/{}", source.branch))
        .ok()
        .and_then(|r| r.target())
        .ok_or_else(|| ReconcileError::NoBranch {
            repo: source.key.clone(),
            branch: source.branch.clone(),
        })?;
    let mut out = Outcome {
        tip: tip.to_string(),
        ..Outcome::default()
    };
    let state = rt.block_on(store.source_state(&source.key))?;
    if opts.acknowledge {
        rt.block_on(store.acknowledge(&source.key, &source.branch, &tip.to_string()))?;
        return Ok(out);
    }
    if let Some(s) = &state
        && let Some(h) = &s.halted
    {
        out.halted = Some(h.clone());
        return Ok(out);
    }
    let last = state.as_ref().and_then(|s| s.last_commit.clone());
    let commits: Vec<Oid> = match &last {
        None => vec![tip],
        Some(l) if *l == tip.to_string() => return Ok(out),
        Some(l) => {
            let last_oid = Oid::from_str(l)?;
            let known = repo.find_commit(last_oid).is_ok();
            if !known || !repo.graph_descendant_of(tip, last_oid)? {
                let reason = format!(
                    "history rewritten: the last reconciled commit {:.8} is no longer on {} (now at {:.8}); \
                     check the branch, then run `missionctl reconcile --acknowledge-rewrite` to resume from the new tip",
                    l, source.branch, tip
                );
                rt.block_on(store.halt(&source.key, &source.branch, &reason))?;
                out.halted = Some(reason);
                return Ok(out);
            }
            let mut walk = repo.revwalk()?;
            walk.push(tip)?;
            walk.hide(last_oid)?;
            walk.simplify_first_parent()?;
            walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
            walk.collect::<Result<Vec<_>, _>>()?
        }
    };
    // Everything reconciled before, to recognise returns to earlier content.
    let mut history: History = rt
        .block_on(store.history(&source.key))?
        .into_iter()
        .map(|(pack, digest, version, commit)| ((pack, digest), (version, commit)))
        .collect();
    let mut serving: ServingMap = rt
        .block_on(store.serving(&source.key))?
        .into_iter()
        .map(|s| (s.pack_id.clone(), s))
        .collect();
    let holds: HashMap<String, String> =
        rt.block_on(store.holds(&source.key))?.into_iter().collect();
    let mut initial = last.is_none();
    let mut expected = last.clone();
    for oid in commits {
        let info = commit_info(&repo, oid)?;
        let cur = pack::load(&Tree::at_commit(&repo, oid, &info.sha)?);
        let mut apply = plan_commit(source, &serving, &holds, initial, &cur, &info, &history);
        apply.expected_last = expected.clone();
        if !rt.block_on(store.apply_commit(&apply))? {
            out.lost_race = true;
            return Ok(out);
        }
        if opts.notes
            && let Err(e) = write_notes(&repo, source, &apply)
        {
            tracing::warn!(error = %e, commit = %info.sha, "could not write the decision note");
        }
        for s in &apply.serving {
            history.insert(
                (s.pack_id.clone(), s.digest.clone()),
                (s.version.clone(), s.commit.clone()),
            );
            serving.insert(s.pack_id.clone(), s.clone());
        }
        for r in &apply.removed {
            serving.remove(r);
        }
        initial = false;
        out.commits += 1;
        out.decisions.extend(apply.decisions);
        expected = Some(info.sha.clone());
    }
    Ok(out)
}

/// Async wrapper: runs the pass on the blocking pool.
pub async fn reconcile(
    source: &Source,
    store: &Store,
    opts: &Options,
) -> Result<Outcome, ReconcileError> {
    let (source, store, opts) = (source.clone(), store.clone(), opts.clone());
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || reconcile_blocking(&source, &store, &opts, &rt))
        .await
        .map_err(|e| ReconcileError::Task(e.to_string()))?
}
