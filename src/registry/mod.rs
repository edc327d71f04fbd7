//! The registry: what harnesses ask for before every run, and where they
//! report back.
//!
//! Resolution is served from an in-memory [`Snapshot`]: the packs of the last
//! accepted commit, the running rollouts with each one's champion content,
//! and a cache of rendered answers. A new snapshot is built off to the side
//! and swapped in atomically (`ArcSwap`), so a reader sees the old snapshot
//! or the new one, never half of a change. Pinning a champion after a
//! regression swaps only the rollout table, which takes microseconds.

pub mod api;
mod attribution;
pub mod auth;
pub mod controller;
pub mod effects;
pub mod hold;
pub mod ingest;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde_json::{Value as Json, json};

use crate::git::Source;
use crate::model::{Arm, RolloutState};
use crate::pack::{Location, PackDoc, Repo};
use crate::reconcile::daemon::Kicker;
use crate::resolve::{self, ChainKey, ResolveError};
use crate::rollout;

use crate::store::Store;
use attribution::Force;

/// A rollout as the registry serves it.
#[derive(Debug, Clone)]
pub struct RolloutView {
    pub rollout_id: String,
    pub pack_id: String,
    pub percent: u32,
    /// After a regression: everyone gets the champion.
    pub pinned: bool,
    pub from_version: Option<String>,
    pub to_version: String,
    /// The champion's pack document (from the commit it was serving at).
    pub champion: Option<Arc<PackDoc>>,
    /// When the rollout started (RFC 3339): runs before it are not its.
    pub started_at: String,
}

/// A rendered resolution: the response body and its entity tag.
#[derive(Debug)]
pub struct Rendered {
    pub body: axum::body::Bytes,
    /// The body gzip-compressed, made on the first request that accepts
    /// gzip and shared by every later one (the rendering is cached per
    /// snapshot, so this is once per version of the chain).
    gzip: std::sync::OnceLock<axum::body::Bytes>,
    pub etag: String,
    pub pack_version: String,
}

impl Rendered {
    /// [`Rendered::body`], gzip-compressed once.
    pub fn gzip(&self) -> &axum::body::Bytes {
        self.gzip.get_or_init(|| {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(self.body.len() / 4),
                flate2::Compression::default(),
            );
            // Writing into a Vec cannot fail.
            let _ = enc.write_all(&self.body);
            axum::body::Bytes::from(enc.finish().unwrap_or_default())
        })
    }
}

/// A chain (pack indices) with which of its rolling packs are in the canary arm.
type RenderKey = (Vec<usize>, u64, u64);

pub struct Snapshot {
    pub generation: u64,
    pub commit: Option<String>,
    pub repo: Arc<Repo>,
    pub rollouts: HashMap<String, RolloutView>,
    /// Every version (the semver part) each pack has had on the branch.
    pub history: Arc<HashMap<String, HashSet<String>>>,
    cache: Mutex<HashMap<RenderKey, Arc<Rendered>>>,
}

/// Bound on cached renderings; past it the cache starts over.
const CACHE_LIMIT: usize = 200_000;

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot {
            generation: 0,
            commit: None,
            repo: Arc::new(Repo::default()),
            rollouts: HashMap::new(),
            history: Arc::default(),
            cache: Mutex::default(),
        }
    }

    /// Resolve `key` for the user hashed as `who`. `force` overrides the arm
    /// of every rolling pack on the chain (the console shows each side).
    pub fn render(
        &self,
        key: &ChainKey,
        who: &str,
        force: Option<Arm>,
    ) -> Result<Arc<Rendered>, ResolveError> {
        let force = force.map_or(Force::Hashed, Force::All);
        self.render_forced(key, who, force)
    }

    /// [`Snapshot::render`], with each rolling pack's arm chosen by `force`.
    fn render_forced(
        &self,
        key: &ChainKey,
        who: &str,
        force: Force,
    ) -> Result<Arc<Rendered>, ResolveError> {
        let idx = resolve::chain(&self.repo, key)?;
        let mut docs: Vec<&PackDoc> = Vec::with_capacity(idx.len());
        let mut arms = 0u64;
        let mut rolling = 0u64;
        let mut arm_list = Vec::new();
        let mut nth = 0;
        for (n, i) in idx.iter().enumerate() {
            let p = &self.repo.packs[*i];
            match self.rollouts.get(&p.pack.id) {
                Some(rv) => {
                    rolling |= 1 << n;
                    let a = match force {
                        Force::All(f) => f,
                        Force::Mask(m) => attribution::mask_arm(m, nth),
                        Force::Hashed if rv.pinned => Arm::Champion,
                        Force::Hashed => rollout::arm(&p.pack.id, who, rv.percent),
                    };
                    nth += 1;
                    if a == Arm::Canary {
                        arms |= 1 << n;
                        docs.push(p);
                    } else {
                        docs.push(rv.champion.as_deref().unwrap_or(p));
                    }
                    arm_list
                        .push(json!({"pack_id": p.pack.id, "rollout_id": rv.rollout_id, "arm": a}));
                }
                None => docs.push(p),
            }
        }
        let cache_key = (idx, arms, rolling);
        if let Some(hit) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(&cache_key).cloned())
        {
            return Ok(hit);
        }
        let r = resolve::resolve_docs(&self.repo, &docs);
        let openclaw = self.repo.openclaw();
        let body = json!({
            "pack_id": r.pack_id,
            "pack_version": r.pack_version,
            "digest": r.digest,
            "scope_chain": r.scope_chain,
            "arm": if arms != 0 { Arm::Canary } else { Arm::Champion },
            "rollouts": arm_list,
            "tier": r.tier,
            "commit": self.commit,
            "content": r.content,
            "openclaw": openclaw,
        });
        let rendered = Arc::new(Rendered {
            body: axum::body::Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            gzip: std::sync::OnceLock::new(),
            // The OpenClaw settings shape what sync renders: a change to
            // them is a change to what this chain is served.
            etag: if openclaw == crate::openclaw::Settings::default() {
                format!("\"{}\"", r.digest.trim_start_matches("sha256:"))
            } else {
                let s = serde_json::to_string(&openclaw).unwrap_or_default();
                format!(
                    "\"{}.{}\"",
                    r.digest.trim_start_matches("sha256:"),
                    &crate::openclaw::render::sha256(&s)[7..15]
                )
            },
            pack_version: r.pack_version,
        });
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE_LIMIT {
                c.clear();
            }
            c.insert(cache_key, rendered.clone());
        }
        Ok(rendered)
    }

    /// The chains `leaf` ends: a domain pack its domain's, a tenant pack
    /// one per domain it serves, a user pack one per domain of its tenant
    /// (or, for a personal user, its own domains). The global pack ends none.
    pub fn leaf_chains(&self, leaf: &PackDoc) -> Vec<ChainKey> {
        let domains_of = |p: &PackDoc| -> Vec<String> {
            p.pack
                .domains
                .clone()
                .unwrap_or_else(|| self.repo.domains.keys().cloned().collect())
        };
        match &leaf.location {
            Location::Global => Vec::new(),
            Location::Domain(d) => vec![ChainKey::new(d, None, None)],
            Location::Tenant(t) => domains_of(leaf)
                .iter()
                .map(|d| ChainKey::new(d, Some(t), None))
                .collect(),
            Location::TenantUser { tenant: t, user } => {
                let tp = self.repo.tenants.get(t).map(|i| &self.repo.packs[*i]);
                tp.map(domains_of)
                    .unwrap_or_default()
                    .iter()
                    .map(|d| ChainKey::new(d, Some(t), Some(user)))
                    .collect()
            }
            Location::PersonalUser(u) => domains_of(leaf)
                .iter()
                .map(|d| ChainKey::new(d, None, Some(u)))
                .collect(),
        }
    }

    /// Whether a token scoped to `tenant` may see `pack`.
    /// Whether a tenant-scoped reader (`tenant` Some) reads about `pack`,
    /// a pack several tenants share (global or domain): its rollouts'
    /// figures and the decisions taken on them count every tenant's runs,
    /// so they are withheld from that reader (another tenant's numbers
    /// would follow from them and the reader's own).
    pub(crate) fn withholds(&self, pack: &str, tenant: Option<&str>) -> bool {
        tenant.is_some()
            && matches!(
                self.repo.pack(pack).map(|p| &p.location),
                Some(Location::Global | Location::Domain(_))
            )
    }

    /// `r` as a tenant-scoped reader may see it (see [`Snapshot::withholds`]).
    pub(crate) fn rollout_for(
        &self,
        mut r: controller::RolloutStatus,
        tenant: Option<&str>,
    ) -> controller::RolloutStatus {
        if self.withholds(&r.pack_id, tenant) {
            r.champion = crate::model::Kpis::default();
            r.canary = crate::model::Kpis::default();
            r.figures_from = crate::model::FiguresFrom::Withheld;
            r.detail = None;
            // The revert owed to git carries the rollback's reason, which
            // quotes the same figures.
            if let Some(e) = r.revert.as_mut()
                && e.revert.reason.starts_with("automatic rollback")
            {
                e.revert.reason = "automatic rollback: decided on every tenant's runs of this shared pack (figures withheld from tenant sign-ins)".into();
            }
        }
        r
    }

    /// `d` as a tenant-scoped reader may see it: a decision the canary
    /// controller took on every tenant's runs of a shared pack keeps its
    /// kind and versions, not its figures or the reason that quotes them.
    pub(crate) fn decision_for(
        &self,
        mut d: crate::model::Decision,
        tenant: Option<&str>,
    ) -> crate::model::Decision {
        if self.withholds(&d.pack_id, tenant) && d.figures.is_some() {
            d.figures = None;
            d.reason = format!(
                "{}: decided on every tenant's runs of this shared pack (figures withheld from tenant sign-ins)",
                d.decision.as_str()
            );
        }
        d
    }

    pub(crate) fn visible(&self, pack: &str, tenant: Option<&str>) -> bool {
        let Some(t) = tenant else { return true };
        match self.repo.pack(pack).map(|p| &p.location) {
            Some(Location::Global | Location::Domain(_)) => true,
            Some(Location::Tenant(x) | Location::TenantUser { tenant: x, .. }) => x == t,
            Some(Location::PersonalUser(u)) => t == format!("user:{u}"),
            // Unknown here (e.g. removed): only unscoped tokens see it.
            None => false,
        }
    }
}

/// The lease that makes one replica the canary controller.
pub const CONTROLLER_LEASE: &str = "canary-controller";

/// What this replica may do to rollouts now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// A registry on its own (no lease required): it acts, unfenced.
    Alone,
    /// This replica holds the controller lease: it acts, fenced by the epoch.
    Leader(crate::store::Fence),
    /// Another replica holds the lease, or this one's has lapsed.
    Follower,
}

/// Whether this replica may act on rollouts (advance, roll back). A
/// registry on its own always may; under `serve`, only while it holds the
/// store's controller lease, and it stops at once when the lease's local
/// deadline passes, renewed or not. The local deadline is only a courtesy:
/// what a lapsed leader writes is refused by the store's fence (the epoch
/// it was granted is checked in the transition's own transaction).
#[derive(Debug)]
pub struct Leader {
    /// This replica's name in the lease table.
    pub replica: String,
    leased: std::sync::atomic::AtomicBool,
    until: Mutex<Option<(std::time::Instant, i64)>>,
}

impl Leader {
    fn new() -> Leader {
        Leader {
            replica: format!(
                "{}-{}-{:08x}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "replica".into()),
                std::process::id(),
                rand::random::<u32>()
            ),
            leased: false.into(),
            until: Mutex::default(),
        }
    }

    /// From now on, act only while holding the lease.
    pub fn require_lease(&self) {
        self.leased.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Record the lease held until `until` at `epoch` (None: not held).
    pub fn held_until(&self, held: Option<(std::time::Instant, i64)>) {
        if let Ok(mut u) = self.until.lock() {
            *u = held;
        }
    }

    pub fn authority(&self) -> Authority {
        if !self.leased.load(std::sync::atomic::Ordering::SeqCst) {
            return Authority::Alone;
        }
        match self.until.lock().ok().and_then(|u| *u) {
            Some((until, epoch)) if std::time::Instant::now() < until => {
                Authority::Leader(crate::store::Fence {
                    lease: CONTROLLER_LEASE.to_string(),
                    holder: self.replica.clone(),
                    epoch,
                })
            }
            _ => Authority::Follower,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.authority() != Authority::Follower
    }
}

/// Shared state of the registry.
pub struct Registry {
    pub snapshot: ArcSwap<Snapshot>,
    pub changed: tokio::sync::watch::Sender<u64>,
    pub store: Store,
    pub source: Source,
    pub tokens: auth::Tokens,
    pub metrics: api::Metrics,
    /// Asks the reconciler for a pass (after a revert is written); none when
    /// the registry runs without a reconcile loop.
    pub kicker: Option<Kicker>,
    pub leader: Leader,
    /// How long a client may take to send a request body.
    pub body_timeout: std::time::Duration,
    /// Bounds the audit rows written for requests without a valid token.
    pub unauthenticated: api::RefusalLimiter,
    /// Bounds telemetry ingest (429 past it).
    pub ingest: ingest::IngestGate,
    repos: Mutex<HashMap<String, Arc<Repo>>>,
    refresh_lock: tokio::sync::Mutex<()>,
}

impl Registry {
    pub fn new(
        store: Store,
        source: Source,
        tokens: auth::Tokens,
        kicker: Option<Kicker>,
    ) -> Arc<Registry> {
        Registry::with_timeouts(
            store,
            source,
            tokens,
            kicker,
            crate::http::Timeouts::default(),
        )
    }

    pub fn with_timeouts(
        store: Store,
        source: Source,
        tokens: auth::Tokens,
        kicker: Option<Kicker>,
        timeouts: crate::http::Timeouts,
    ) -> Arc<Registry> {
        let (changed, _) = tokio::sync::watch::channel(0);
        Arc::new(Registry {
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            changed,
            store,
            source,
            tokens,
            metrics: api::Metrics::default(),
            kicker,
            leader: Leader::new(),
            body_timeout: timeouts.body,
            unauthenticated: api::RefusalLimiter::default(),
            ingest: ingest::IngestGate::default(),
            repos: Mutex::default(),
            refresh_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn kick_reconciler(&self) {
        if let Some(k) = &self.kicker {
            k.kick("registry");
        }
    }

    pub(crate) fn repo_at(&self, repo: &crate::git::Repo, commit: &str) -> Option<Arc<Repo>> {
        if let Some(r) = self.repos.lock().ok().and_then(|m| m.get(commit).cloned()) {
            return Some(r);
        }
        let tree = repo.tree(commit.parse().ok()?, commit).ok()?;
        let loaded = Arc::new(crate::pack::load(&tree));
        if let Ok(mut m) = self.repos.lock() {
            // Keep only a handful of revisions: the current one and rollout champions.
            if m.len() > 8 {
                m.clear();
            }
            m.insert(commit.to_string(), loaded.clone());
        }
        Some(loaded)
    }

    /// Rebuild the snapshot from the store and git, and swap it in.
    pub async fn refresh(self: &Arc<Self>) -> Result<(), crate::store::StoreError> {
        let _guard = self.refresh_lock.lock().await;
        let state = self.store.source_state(&self.source.key).await?;
        // Every rollout, newest first: those in progress, and a rolled-back
        // one whose bad version is still what the branch holds (its revert
        // is on a review branch, or not reconciled yet) stays pinned to the
        // champion, so a rollback never hands the bad version to anyone.
        let rollouts = self.store.rollouts(false).await?;
        let mut history: HashMap<String, HashSet<String>> = HashMap::new();
        for h in self.store.history(&self.source.key).await? {
            let semver = h.version.split('+').next().unwrap_or_default().to_string();
            history.entry(h.pack_id).or_default().insert(semver);
        }
        let history = Arc::new(history);
        let good = state.and_then(|s| s.good_commit);
        let me = self.clone();
        let built = tokio::task::spawn_blocking(move || -> Option<Snapshot> {
            let repo = me.source.open_local().ok()?;
            let current = match &good {
                Some(c) => me.repo_at(&repo, c)?,
                None => Arc::new(Repo::default()),
            };
            let mut views = HashMap::new();
            for r in rollouts.iter().filter(|r| r.source == me.source.key) {
                if views.contains_key(&r.pack_id) {
                    continue; // an older rollout of a pack with a newer one
                }
                let still_bad = current
                    .pack(&r.pack_id)
                    .is_some_and(|p| crate::reconcile::pack_version(p) == r.to_version);
                let pinned = match r.state {
                    s if s.in_progress() => false,
                    RolloutState::RolledBack if still_bad => true,
                    _ => continue,
                };
                let champion = r
                    .from_commit
                    .as_deref()
                    .and_then(|c| me.repo_at(&repo, c))
                    .and_then(|old| old.pack(&r.pack_id).cloned())
                    .map(Arc::new);
                let percent = r.steps.get(r.step).copied().unwrap_or(100);
                views.insert(
                    r.pack_id.clone(),
                    RolloutView {
                        rollout_id: r.rollout_id.clone(),
                        pack_id: r.pack_id.clone(),
                        percent,
                        pinned,
                        from_version: r.from_version.clone(),
                        to_version: r.to_version.clone(),
                        champion,
                        started_at: r.started_at.clone(),
                    },
                );
            }
            let generation = me.snapshot.load().generation + 1;
            Some(Snapshot {
                generation,
                commit: good,
                repo: current,
                rollouts: views,
                history,
                cache: Mutex::default(),
            })
        })
        .await
        .ok()
        .flatten();
        if let Some(s) = built {
            let g = s.generation;
            self.snapshot.store(Arc::new(s));
            let _ = self.changed.send(g);
        }
        Ok(())
    }

    /// Pin the champion of `pack` at once, without reloading anything.
    pub(crate) fn pin(&self, pack: &str) {
        let cur = self.snapshot.load_full();
        let mut rollouts = cur.rollouts.clone();
        if let Some(r) = rollouts.get_mut(pack) {
            r.pinned = true;
        }
        let next = Snapshot {
            generation: cur.generation + 1,
            commit: cur.commit.clone(),
            repo: cur.repo.clone(),
            rollouts,
            history: cur.history.clone(),
            cache: Mutex::default(),
        };
        let g = next.generation;
        self.snapshot.store(Arc::new(next));
        let _ = self.changed.send(g);
    }

    pub(crate) fn status_json(&self) -> Json {
        let s = self.snapshot.load();
        json!({"generation": s.generation, "commit": s.commit, "packs": s.repo.packs.len(), "rollouts": s.rollouts.len(), "replica": self.leader.replica, "leader": self.leader.is_leader()})
    }
}
