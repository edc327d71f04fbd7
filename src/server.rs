//! The composition root: one place that wires the running server together —
//! the reconcile loop with its triggers (poll, watch, webhook), the registry
//! API on the same listener, and the canary controller's ticker — and stops
//! all of them on one cancellation token. `missionctl serve` and the tests
//! run exactly this.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::reconcile::Outcome;
use crate::reconcile::daemon::{self, DaemonConfig, Hooks};
use crate::registry::{Registry, api, auth::Tokens, controller};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the server stopped: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot serve this repository: {0}")]
    Refused(String),
}

pub struct ServeConfig {
    pub daemon: DaemonConfig,
    pub tokens: Tokens,
    /// Where the webhook and the registry API listen.
    pub listener: tokio::net::TcpListener,
    /// How often running canaries are evaluated.
    pub rollout_interval: Duration,
    /// How long the controller lease lasts unrenewed; it is renewed every
    /// third of it. A replica that dies is replaced as controller within it.
    pub lease_ttl: Duration,
    /// How often each replica reads the store's positions (the reconciled
    /// commit, the rollouts' change counter) to catch up with the others.
    pub follow_interval: Duration,
    /// How people sign in to the console: the session key, single sign-on,
    /// the one-time link.
    pub console: crate::console::Settings,
}

pub use crate::registry::CONTROLLER_LEASE;

/// Take and renew the controller lease until `shutdown`, then give it up.
///
/// The lease's expiry is written by the holder's clock and read by the
/// others' clocks, so clocks must agree to well within `ttl`; the holder
/// stops acting a fifth of `ttl` before its own deadline for margin.
async fn hold_lease(reg: Arc<Registry>, ttl: Duration, shutdown: CancellationToken) {
    let margin = ttl / 5;
    loop {
        let asked = tokio::time::Instant::now().into_std();
        match reg
            .store
            .try_lease(CONTROLLER_LEASE, &reg.leader.replica, ttl)
            .await
        {
            Ok(epoch) => {
                let was = reg.leader.is_leader();
                reg.leader
                    .held_until(epoch.map(|e| (asked + ttl - margin, e)));
                if epoch.is_some() != was {
                    tracing::info!(replica = %reg.leader.replica, leader = epoch.is_some(), epoch, "controller lease");
                }
            }
            // Unrenewed, the lease lapses at its local deadline on its own.
            Err(e) => tracing::warn!(error = %e, "the controller lease could not be renewed"),
        }
        // Every replica says it is alive, and what it serves (the console's
        // stale replicas).
        let commit = reg.snapshot.load().commit.clone();
        if let Err(e) = reg
            .store
            .heartbeat(
                &reg.leader.replica,
                commit.as_deref(),
                (ttl / 3).as_secs_f64(),
            )
            .await
        {
            tracing::warn!(error = %e, "the replica heartbeat could not be written");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(ttl / 3) => {}
        }
    }
    let held = reg.leader.is_leader();
    reg.leader.held_until(None);
    if let Err(e) = reg.store.forget_replica(&reg.leader.replica).await {
        tracing::warn!(error = %e, "the replica heartbeat could not be removed; it will show as stale");
    }
    if held
        && let Err(e) = reg
            .store
            .release_lease(CONTROLLER_LEASE, &reg.leader.replica)
            .await
    {
        tracing::warn!(error = %e, "the controller lease could not be released; it will expire");
    }
}

/// Rebuild what this replica serves whenever the store's positions move,
/// whoever moved them: another replica's reconcile pass or rollout step.
async fn follow(reg: Arc<Registry>, every: Duration, shutdown: CancellationToken) {
    let mut seen = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match reg.store.positions(&reg.source.key).await {
            Ok(now) if seen.as_ref() != Some(&now) => match reg.refresh().await {
                Ok(()) => seen = Some(now),
                Err(e) => {
                    tracing::warn!(error = %e, "registry refresh failed; retrying on the next pass (check the repository and the state store)");
                }
            },
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the store's positions; retrying (check the state store)");
            }
        }
    }
}

/// Evaluate running canaries every `every` until `shutdown`.
async fn tick_canaries(reg: Arc<Registry>, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match controller::tick(&reg, time::OffsetDateTime::now_utc()).await {
            Ok(events) => {
                for e in events {
                    tracing::info!(event = %e, "rollout");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "rollout tick failed; retrying on the next tick (check the state store)");
            }
        }
    }
}

/// After each pass: start, supersede or end rollouts, and refresh what the registry serves.
fn on_pass(reg: &Arc<Registry>) -> daemon::OnPass {
    let reg = reg.clone();
    Arc::new(move |out: &Outcome| {
        if out.commits > 0 || reg.snapshot.load().commit.is_none() {
            let (reg, out) = (reg.clone(), out.clone());
            tokio::spawn(async move {
                if let Err(e) = controller::on_pass(&reg, &out).await {
                    tracing::warn!(error = %e, "rollout bookkeeping failed");
                }
            });
        }
    })
}

/// Run the server until `shutdown` is cancelled.
pub async fn run(cfg: ServeConfig, shutdown: CancellationToken) -> Result<(), ServerError> {
    // An automatic rollback writes a revert commit: refuse at start what
    // could only fail silently at the worst moment.
    if let Some(why) = cfg.daemon.source.checked_out() {
        return Err(ServerError::Refused(why));
    }
    let (kicker, kicks) = daemon::kick_channel();
    let reg = Registry::with_timeouts(
        cfg.daemon.store.clone(),
        cfg.daemon.source.clone(),
        cfg.tokens,
        Some(kicker.clone()),
        cfg.daemon.timeouts,
    );
    reg.leader.require_lease();
    reg.refresh().await?;
    let lease = tokio::spawn(hold_lease(reg.clone(), cfg.lease_ttl, shutdown.clone()));
    let follower = tokio::spawn(follow(reg.clone(), cfg.follow_interval, shutdown.clone()));
    let ticker = tokio::spawn(tick_canaries(
        reg.clone(),
        cfg.rollout_interval,
        shutdown.clone(),
    ));
    let hooks = Hooks {
        listener: Some(cfg.listener),
        extra_routes: Some(
            api::router(reg.clone()).merge(crate::console::router(reg.clone(), cfg.console)),
        ),
        on_pass: Some(on_pass(&reg)),
    };
    let result = daemon::run(cfg.daemon, (kicker, kicks), hooks, shutdown.clone()).await;
    shutdown.cancel();
    let _ = ticker.await;
    let _ = follower.await;
    let _ = lease.await;
    Ok(result?)
}
