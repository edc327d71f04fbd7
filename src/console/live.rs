//! Live updates, as progressive enhancement: `/ui/events` is a stream of
//! server-sent events for the signed-in session, and `/ui/live.js` (served
//! from the binary, loaded with `script-src 'self'`, nothing inline) reloads
//! the page's main section when one arrives. Every page works without it.
//!
//! The stream looks at the store when this process commits a decision or
//! a rollout transition, and at least once a second (another replica's
//! changes), and sends `change` when what
//! the session may see has changed: a visible rollout (its state, step or
//! row version, whether its champion is pinned), or one of the newest
//! decisions on a visible pack (a merge that changes a visible pack records
//! one). A tenant-scoped session is never told about another
//! tenant's rollouts or decisions (not even that something happened). It
//! starts with `ready` (the baseline is taken) and ends when the session
//! does (expired, signed out, or its token removed).

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use sha2::{Digest, Sha256};

use super::*;

/// How often a stream looks for changes.
pub const POLL: Duration = Duration::from_secs(1);

const SCRIPT: &str = include_str!("live.js");

pub(super) async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// A digest of what `tenant` may see that live pages show; None when the
/// store did not answer.
async fn fingerprint(c: &Console, tenant: Option<&str>) -> Option<String> {
    let snap = c.reg.snapshot.load_full();
    // Every entry is collected and sorted before hashing: the snapshot's
    // rollouts are a hash map whose order differs from one publication to
    // the next, and a publication caused by another tenant's change must
    // not look like a change here.
    let mut seen: Vec<String> = Vec::new();
    for r in c.reg.store.rollouts(false).await.ok()? {
        if !snap.visible(&r.pack_id, tenant) {
            continue;
        }
        if snap.withholds(&r.pack_id, tenant) {
            // A shared pack's row version also moves with other tenants'
            // runs ("collecting: N runs"), which this session may not see.
            seen.push(format!("r{}:{}:{}", r.rollout_id, r.state, r.step));
        } else {
            seen.push(format!(
                "r{}:{}:{}:{}",
                r.rollout_id, r.state, r.step, r.row_version
            ));
        }
    }
    // The newest decision on a visible pack (not a window of the newest
    // decisions overall, which other tenants' decisions would slide).
    let visible: Option<Vec<&str>> = tenant.map(|_| {
        snap.repo
            .packs
            .iter()
            .map(|p| p.pack.id.as_str())
            .filter(|p| snap.visible(p, tenant))
            .collect()
    });
    let newest = c.reg.store.newest_decision(visible.as_deref()).await.ok()?;
    seen.push(format!("d{newest:?}"));
    for (pack, v) in &snap.rollouts {
        if snap.visible(pack, tenant) {
            seen.push(format!("p{pack}:{}:{}", v.percent, v.pinned));
        }
    }
    seen.sort_unstable();
    let mut h = Sha256::new();
    for e in &seen {
        h.update(e.as_bytes());
        h.update(b"\0");
    }
    Some(hex::encode(h.finalize()))
}

struct Watch {
    c: Console,
    headers: HeaderMap,
    last: Option<String>,
    /// `ready` was sent (the baseline is taken).
    started: bool,
    /// The store was asked at least once (every later look waits [`POLL`]
    /// or a change this process committed).
    polled: bool,
    changes: tokio::sync::watch::Receiver<u64>,
}

pub(super) async fn events(State(c): State<Console>, headers: HeaderMap) -> Response {
    let v = signed_in!(c, headers);
    let tenant = v.tenant().map(String::from);
    let w = Watch {
        changes: c.reg.store.watch_changes(),
        c,
        headers,
        last: None,
        started: false,
        polled: false,
    };
    let stream = futures_util::stream::unfold(w, move |mut w| {
        let tenant = tenant.clone();
        async move {
            loop {
                if w.polled {
                    // A change this process commits wakes the stream at
                    // once; another replica's is seen within POLL.
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = w.changes.changed() => {}
                    }
                }
                w.polled = true;
                // The session still holds (not expired, signed out or revoked).
                signed_in_viewer(&w.c, &w.headers).await.ok()??;
                let Some(now) = fingerprint(&w.c, tenant.as_deref()).await else {
                    continue;
                };
                if !w.started {
                    w.started = true;
                    w.last = Some(now);
                    let e = Event::default().event("ready").data("{}");
                    return Some((Ok::<Event, Infallible>(e), w));
                }
                if w.last.as_deref() != Some(now.as_str()) {
                    w.last = Some(now);
                    let e = Event::default().event("change").data("{}");
                    return Some((Ok(e), w));
                }
            }
        }
    });
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}
