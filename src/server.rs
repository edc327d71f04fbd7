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
}

pub struct ServeConfig {
    pub daemon: DaemonConfig,
    pub tokens: Tokens,
    /// Where the webhook and the registry API listen.
    pub listener: tokio::net::TcpListener,
    /// How often running canaries are evaluated.
    pub rollout_interval: Duration,
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
            Err(e) => tracing::warn!(error = %e, "rollout tick failed"),
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
    let (kicker, kicks) = daemon::kick_channel();
    let reg = Registry::new(
        cfg.daemon.store.clone(),
        cfg.daemon.source.clone(),
        cfg.tokens,
        Some(kicker.clone()),
    );
    reg.refresh().await?;
    let ticker = tokio::spawn(tick_canaries(
        reg.clone(),
        cfg.rollout_interval,
        shutdown.clone(),
    ));
    let hooks = Hooks {
        listener: Some(cfg.listener),
        extra_routes: Some(api::router(reg.clone())),
        on_pass: Some(on_pass(&reg)),
    };
    let result = daemon::run(cfg.daemon, (kicker, kicks), hooks, shutdown.clone()).await;
    shutdown.cancel();
    let _ = ticker.await;
    Ok(result?)
}
