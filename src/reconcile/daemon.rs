//! `missionctl serve`: the reconciler, continuously.
//!
//! Triggers only say "something may have changed": a poll interval, a file
//! watch on a local repository's refs, and GitHub push webhooks. They are
//! coalesced into "kicks"; each kick runs one catch-up pass, which walks every
//! new commit, so a burst of pushes costs one or two passes and never skips a
//! commit's decision. The HTTP router is shared with the registry API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Options, Outcome, reconcile};
use crate::git::{Source, SourceKind};
use crate::store::Store;

/// GitHub sends push payloads up to 25 MB, but the reconciler needs only the
/// ref; larger bodies are refused (413) and the poll picks the change up.
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

#[derive(Clone)]
pub struct DaemonConfig {
    pub source: Source,
    pub store: Store,
    pub poll: Duration,
    pub webhook_secret: Option<String>,
    pub options: Options,
    /// Quiet time before a burst of file events becomes a kick.
    pub debounce: Duration,
    /// A kick is sent at the latest this long after the first event of a burst,
    /// so constant churn cannot starve the reconciler.
    pub max_wait: Duration,
    /// How long HTTP clients may take to send a request.
    pub timeouts: crate::http::Timeouts,
    /// `owner/name` whose push webhooks are acted on; default: from a
    /// GitHub remote URL. Pushes to other repositories are ignored.
    pub github_repo: Option<String>,
}

/// What the reconcile loop publishes after each pass (the registry listens).
pub type OnPass = Arc<dyn Fn(&Outcome) + Send + Sync>;

/// Asks the reconcile loop for a pass ("something may have changed").
#[derive(Clone)]
pub struct Kicker {
    tx: mpsc::Sender<&'static str>,
}

/// The receiving end of the kicks, consumed by [`run`].
pub struct Kicks(mpsc::Receiver<&'static str>);

/// A kick channel. Its capacity is one: a pending kick already means "catch
/// up to the tip", so further kicks before the pass starts add nothing.
pub(crate) fn kick_channel() -> (Kicker, Kicks) {
    let (tx, rx) = mpsc::channel(1);
    (Kicker { tx }, Kicks(rx))
}

/// How long to wait before retrying after `failures` consecutive failed
/// passes: 0.5 s doubling up to 30 s. A failure (a locked database, an
/// unreachable remote) may clear without any ref changing, and the next poll
/// can be an hour away, so the loop retries on its own.
pub fn retry_after(failures: u32) -> Duration {
    let base = Duration::from_millis(500);
    let cap = Duration::from_secs(30);
    base.checked_mul(1u32 << failures.saturating_sub(1).min(16))
        .map_or(cap, |d| d.min(cap))
}

impl Kicker {
    pub(crate) fn kick(&self, why: &'static str) {
        // A full channel already holds a pending kick: dropping this one loses nothing.
        let _ = self.tx.try_send(why);
    }
}

#[derive(Clone)]
struct WebhookState {
    secret: Option<Arc<String>>,
    branch: String,
    kicker: Kicker,
    /// Where delivery ids are recorded, so a replay is ignored across
    /// restarts and replicas.
    store: Store,
    body_timeout: Duration,
    /// `owner/name` whose pushes are reconciled, when known.
    github_repo: Option<String>,
}

/// How long a delivery id is remembered. GitHub redelivers only on request,
/// within its 3-day delivery history; a week covers that with margin.
pub const DELIVERY_MEMORY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Constant-time check of GitHub's `X-Hub-Signature-256` over the raw body.
pub(crate) fn verify_signature(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

async fn webhook(State(st): State<WebhookState>, headers: HeaderMap, body: Body) -> Response {
    let Some(secret) = &st.secret else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "webhooks are not configured: set MISSIONCTL_WEBHOOK_SECRET\n",
        )
            .into_response();
    };
    let body = match crate::http::read_body(body, WEBHOOK_BODY_LIMIT, st.body_timeout).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    webhook_event(&st, secret, &headers, &body)
        .await
        .into_response()
}

async fn webhook_event(
    st: &WebhookState,
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (StatusCode, String) {
    let sig = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !verify_signature(secret, body, sig) {
        return (
            StatusCode::UNAUTHORIZED,
            "bad or missing X-Hub-Signature-256\n".into(),
        );
    }
    let delivery = headers
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !delivery.is_empty() {
        match st.store.first_delivery(delivery, DELIVERY_MEMORY).await {
            Ok(true) => {}
            Ok(false) => return (StatusCode::OK, "duplicate delivery ignored\n".into()),
            // Unrecorded, a replay could not be told apart later: GitHub
            // retries a 5xx delivery only on request, so say so.
            Err(e) => {
                tracing::error!(error = %e, "webhook delivery id could not be recorded");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the delivery could not be recorded ({e}); redeliver it later\n"),
                );
            }
        }
    }
    match headers.get("x-github-event").and_then(|v| v.to_str().ok()) {
        Some("ping") => (StatusCode::OK, "pong\n".into()),
        Some("push") => {
            let content_type = headers
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let v = match super::webhook::payload(content_type, body) {
                Ok(v) => v,
                Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")),
            };
            match super::webhook::push_wanted(&v, &st.branch, st.github_repo.as_deref()) {
                Ok(()) => {
                    st.kicker.kick("webhook");
                    (StatusCode::ACCEPTED, "reconciling\n".into())
                }
                Err(why) => (StatusCode::ACCEPTED, format!("ignored: {why}\n")),
            }
        }
        Some(other) => (StatusCode::ACCEPTED, format!("ignored: {other} event\n")),
        None => (StatusCode::BAD_REQUEST, "missing X-GitHub-Event\n".into()),
    }
}

/// The reconciler's routes: the webhook and health.
/// The webhook route, and `/healthz` unless `with_healthz` is false (the
/// registry then serves its own, with the commit header every answer has).
pub(crate) fn router(cfg: &DaemonConfig, kicker: Kicker, with_healthz: bool) -> Router {
    let st = WebhookState {
        secret: cfg.webhook_secret.clone().map(Arc::new),
        branch: cfg.source.branch.clone(),
        kicker,
        store: cfg.store.clone(),
        body_timeout: cfg.timeouts.body,
        github_repo: cfg.github_repo.clone().or_else(|| match &cfg.source.kind {
            SourceKind::Remote { url, .. } => super::webhook::github_repo(url),
            SourceKind::Local(_) => None,
        }),
    };
    let r = Router::new()
        .route("/v1/github/webhook", post(webhook))
        .with_state(st);
    if with_healthz {
        r.route("/healthz", get(healthz))
    } else {
        r
    }
}

/// `GET /healthz`: the process answers.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Watch a local repository's refs; send a kick after `debounce` of quiet or
/// `max_wait` after the first event, whichever comes first.
///
/// Written on notify directly rather than notify-debouncer-full: the
/// debouncer emits only after a quiet period per path, which continuous
/// churn can postpone forever, and the max-wait cap is the property we need.
fn watch(cfg: &DaemonConfig, kicker: Kicker) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let SourceKind::Local(path) = &cfg.source.kind else {
        return None;
    };
    let git_dir = crate::git::git_dir(path)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Reads (inotify access events) are ours; only writes mean a ref moved.
        if let Ok(ev) = res
            && matches!(
                ev.kind,
                notify::EventKind::Create(_)
                    | notify::EventKind::Modify(_)
                    | notify::EventKind::Remove(_)
            )
            && ev.paths.iter().any(|p| {
                let s = p.to_string_lossy();
                s.contains("refs/heads") || s.ends_with("packed-refs")
            })
        {
            let _ = tx.send(());
        }
    })
    .ok()?;
    watcher
        .watch(&git_dir, notify::RecursiveMode::Recursive)
        .ok()?;
    let (debounce, max_wait) = (cfg.debounce, cfg.max_wait);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            let first = Instant::now();
            loop {
                let deadline = (first + max_wait).saturating_duration_since(Instant::now());
                match tokio::time::timeout(debounce.min(deadline), rx.recv()).await {
                    Ok(Some(())) if Instant::now() < first + max_wait => continue,
                    Ok(None) => return,
                    _ => break,
                }
            }
            kicker.kick("watch");
        }
    });
    Some(watcher)
}

/// What the loop publishes and serves besides the reconciler itself.
pub struct Hooks {
    pub listener: Option<tokio::net::TcpListener>,
    pub extra_routes: Option<Router>,
    pub on_pass: Option<OnPass>,
}

fn log_outcome(out: &Outcome) {
    for d in &out.decisions {
        tracing::info!(pack = %d.pack_id, decision = %d.decision, commit = %d.commit, "decision");
    }
    if let Some(h) = &out.halted {
        tracing::error!(reason = %h, "reconciler halted");
    }
}

/// Run the reconciler until `shutdown` is cancelled. Every wait (a kick, the
/// poll, the retry backoff, the HTTP server) observes the token, so a
/// shutdown asked for during a pass ends the loop as soon as the pass does.
pub async fn run(
    cfg: DaemonConfig,
    (kicker, Kicks(mut rx)): (Kicker, Kicks),
    hooks: Hooks,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let _watcher = watch(&cfg, kicker.clone());
    let server = hooks.listener.map(|listener| {
        let mut app = router(&cfg, kicker.clone(), hooks.extra_routes.is_none());
        if let Some(extra) = hooks.extra_routes {
            app = app.merge(extra);
        }
        tokio::spawn(crate::http::serve(
            listener,
            app,
            cfg.timeouts,
            shutdown.clone(),
        ))
    });
    kicker.kick("start");
    let mut failures = 0u32;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            why = rx.recv() => { tracing::debug!(?why, "kick"); }
            () = tokio::time::sleep(cfg.poll) => { tracing::debug!("poll"); }
        }
        match reconcile(&cfg.source, &cfg.store, &cfg.options).await {
            Ok(out) => {
                failures = 0;
                log_outcome(&out);
                if let Some(f) = &hooks.on_pass {
                    f(&out);
                }
                if out.lost_race {
                    // Another replica moved first: catch up from its position at once.
                    kicker.kick("race");
                }
            }
            Err(e) => {
                failures += 1;
                let wait = retry_after(failures);
                tracing::warn!(error = %e, ?wait, "reconcile pass failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
                kicker.kick("retry");
            }
        }
    }
    if let Some(s) = server {
        let _ = s.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_on_the_raw_body() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").expect("key");
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(verify_signature("s3cret", body, &good));
        assert!(!verify_signature("other", body, &good));
        assert!(!verify_signature("s3cret", b"{}", &good));
        assert!(!verify_signature("s3cret", body, "sha1=abc"));
        assert!(!verify_signature("s3cret", body, ""));
    }

    #[test]
    fn retries_back_off_doubling_to_a_cap() {
        let ms: Vec<u128> = (1..=9).map(|n| retry_after(n).as_millis()).collect();
        assert_eq!(
            ms,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(retry_after(u32::MAX), Duration::from_secs(30));
    }
}
