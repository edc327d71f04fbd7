//! The registry's HTTP API (axum). Every endpoint but health and metrics
//! needs a bearer token; a token scoped to a tenant sees and writes only that
//! tenant's data (and the shared global and domain packs), and every refusal
//! is written to the audit log.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use serde_json::json;

use super::Registry;
use super::auth::{Action, Scope, Token};
use crate::resolve::{ChainKey, ResolveError};
use crate::telemetry::TenantScope;

/// Telemetry batches larger than this are refused (413); send smaller batches.
pub const RUNS_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// A rollback request is a pack id, a reason and a version.
pub const ROLLBACK_BODY_LIMIT: usize = 64 * 1024;
/// The header naming the commit whose content this replica serves.
mod hold;
mod read_runs;
mod resolve;
use read_runs::read_runs;
pub(crate) use read_runs::runs_response;

pub const COMMIT_HEADER: &str = "x-missionctl-commit";
/// The longest a watch (long-poll) waits for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status: String,
}

/// Prometheus metrics, with an explicit registry (no global state).
pub struct Metrics {
    registry: prometheus_client::registry::Registry,
    pub requests: Family<RouteLabels, Counter>,
    pub runs_ingested: Counter,
    pub denied: Counter,
    pub generation: Gauge,
    pub rollouts: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        let requests = Family::<RouteLabels, Counter>::default();
        let runs_ingested = Counter::default();
        let denied = Counter::default();
        let generation = Gauge::default();
        let rollouts = Gauge::default();
        registry.register(
            "missionctl_http_requests",
            "Registry requests by route and status",
            requests.clone(),
        );
        registry.register(
            "missionctl_runs_ingested",
            "Run telemetry rows stored",
            runs_ingested.clone(),
        );
        registry.register(
            "missionctl_requests_denied",
            "Requests refused for authentication or tenant scope",
            denied.clone(),
        );
        registry.register(
            "missionctl_snapshot_generation",
            "Generation of the served snapshot",
            generation.clone(),
        );
        registry.register(
            "missionctl_rollouts_active",
            "Rollouts in progress",
            rollouts.clone(),
        );
        Metrics {
            registry,
            requests,
            runs_ingested,
            denied,
            generation,
            rollouts,
        }
    }
}

/// Bounds how many refusals of unauthenticated requests are written to the
/// audit log: at most [`Self::PER_MINUTE`] rows a minute, the first after a
/// quiet spell naming how many were left out.
#[derive(Debug, Default)]
pub struct RefusalLimiter {
    state: std::sync::Mutex<Option<(std::time::Instant, u32, u64)>>,
}

impl RefusalLimiter {
    pub const PER_MINUTE: u32 = 10;

    /// `Some(n)`: write an entry, mentioning `n` refusals not written before
    /// it; `None`: leave this one out (it is counted).
    pub fn admit(&self, now: std::time::Instant) -> Option<u64> {
        let mut st = self.state.lock().ok()?;
        let (start, written, suppressed) = st.get_or_insert((now, 0, 0));
        if now.duration_since(*start) >= Duration::from_secs(60) {
            *start = now;
            *written = 0;
        }
        if *written < Self::PER_MINUTE {
            *written += 1;
            Some(std::mem::take(suppressed))
        } else {
            *suppressed += 1;
            None
        }
    }
}

fn count(reg: &Registry, route: &str, status: StatusCode) {
    reg.metrics
        .requests
        .get_or_create(&RouteLabels {
            route: route_label(route),
            status: status.as_u16().to_string(),
        })
        .inc();
}

/// The metrics label of `route`: a route with a rollout id in its path is
/// counted under its template, so the labels stay few whatever ids are
/// asked for, and no rollout id (of any tenant) reaches `/metrics`.
fn route_label(route: &str) -> String {
    match route
        .strip_prefix("/v1/rollouts/")
        .and_then(|rest| rest.rsplit_once('/'))
    {
        Some((_, action)) => format!("/v1/rollouts/{{id}}/{action}"),
        None => route.into(),
    }
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Write an audit entry. An entry that cannot be written is never skipped
/// silently: the request is answered 503 (with `Retry-After`) so the caller
/// knows the server is not in a state to vouch for what it did.
async fn audit(
    reg: &Registry,
    token: &str,
    route: &str,
    outcome: &str,
    detail: &str,
) -> Result<(), Response> {
    match reg.store.audit(token, route, outcome, detail).await {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::error!(error = %e, route, "the audit log could not be written");
            Err(unavailable(
                reg,
                route,
                &format!("the audit log could not be written ({e}); retry later"),
            ))
        }
    }
}

/// Authenticate and authorise; on refusal, audit and answer.
async fn authorize(
    reg: &Registry,
    headers: &HeaderMap,
    action: Action,
    scope: Scope<'_>,
    route: &str,
) -> Result<Token, Response> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(tok) = reg.tokens.check(auth).cloned() else {
        reg.metrics.denied.inc();
        // Audited, but at most a few rows a minute: a flood of bad tokens
        // must not become a flood of writes. The token is never recorded.
        if let Some(suppressed) = reg.unauthenticated.admit(std::time::Instant::now()) {
            let what = if auth.is_some() {
                "an unknown or malformed bearer token"
            } else {
                "no bearer token"
            };
            let detail = if suppressed > 0 {
                format!("{what} ({suppressed} more refusals since the last entry were not written)")
            } else {
                what.to_string()
            };
            audit(reg, "(unauthenticated)", route, "unauthenticated", &detail).await?;
        }
        count(reg, route, StatusCode::UNAUTHORIZED);
        return Err(json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": "a valid bearer token is required (Authorization: Bearer …)"}),
        ));
    };
    let name = tok.name.clone();
    let deny = |why: String| async move {
        reg.metrics.denied.inc();
        if let Err(unavailable) = audit(reg, &name, route, "denied", &why).await {
            return unavailable;
        }
        count(reg, route, StatusCode::FORBIDDEN);
        json_response(StatusCode::FORBIDDEN, json!({"error": why}))
    };
    if !tok.may(action) {
        return Err(deny(format!("token `{}` may not {action:?}", tok.name)).await);
    }
    if !tok.covers(scope) {
        return Err(deny(format!(
            "token `{}` is scoped to {}, not {scope}",
            tok.name,
            tok.tenant.as_deref().unwrap_or("every tenant")
        ))
        .await);
    }
    Ok(tok)
}

/// The server cannot do its part now (no snapshot yet, the store or the
/// audit log failing); the request may succeed later: 503 with
/// `Retry-After`, which clients following HTTP retry.
fn unavailable(reg: &Registry, route: &str, why: &str) -> Response {
    count(reg, route, StatusCode::SERVICE_UNAVAILABLE);
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::RETRY_AFTER, "2"),
        ],
        json!({ "error": why }).to_string(),
    )
        .into_response()
}

/// A state store failure, logged, as [`unavailable`].
fn store_failed(reg: &Registry, route: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, route, "state store failure");
    unavailable(
        reg,
        route,
        &format!("the state store is unavailable ({e}); retry later"),
    )
}

async fn runs(State(reg): State<Arc<Registry>>, headers: HeaderMap, body: Body) -> Response {
    let route = "/v1/runs";
    // The token before the body: a request without one is answered without
    // reading what it sent.
    let tok = match authorize(&reg, &headers, Action::WriteRuns, Scope::Any, route).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let body = match crate::http::read_body(body, RUNS_BODY_LIMIT, reg.body_timeout).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        count(&reg, route, StatusCode::BAD_REQUEST);
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "the body is not UTF-8"}),
        );
    };
    let snap = reg.snapshot.load_full();
    if snap.commit.is_none() {
        return unavailable(
            &reg,
            route,
            "no snapshot yet: the reconciler has not completed a pass, so no run can be checked against what was served",
        );
    }
    let Some(_slot) = reg.ingest.admit().await else {
        count(&reg, route, StatusCode::TOO_MANY_REQUESTS);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::RETRY_AFTER, "1"),
            ],
            json!({"error": "telemetry ingest is at capacity; nothing of this batch was stored: send it again after Retry-After seconds"}).to_string(),
        )
            .into_response();
    };
    let scope = TenantScope(tok.tenant.clone());
    match super::ingest::ingest_owned(&reg.store, text.to_string(), scope, snap).await {
        Ok(rep) => {
            reg.metrics.runs_ingested.inc_by(rep.accepted);
            let denied: Vec<String> = rep
                .errors
                .iter()
                .filter(|e| e.denied.is_some())
                .map(|e| format!("line {}: {}", e.line, e.error))
                .collect();
            if !denied.is_empty() {
                reg.metrics.denied.inc();
                let of = |kind| rep.errors.iter().filter(|e| e.denied == Some(kind)).count();
                let mut parts = Vec::new();
                let outside = of(crate::telemetry::Denied::OutsideTenant);
                if outside > 0 {
                    parts.push(format!("{outside} row(s) outside the token's tenant"));
                }
                let unserved = of(crate::telemetry::Denied::Unserved);
                if unserved > 0 {
                    parts.push(format!(
                        "{unserved} row(s) naming a pack version the tenant was not served"
                    ));
                }
                let mut why = parts.join(", ");
                for d in denied.iter().take(5) {
                    why.push_str("; ");
                    why.push_str(d);
                }
                if let Err(unavailable) = audit(&reg, &tok.name, route, "denied", &why).await {
                    return unavailable;
                }
            }
            let status = if rep.errors.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            count(&reg, route, status);
            json_response(status, serde_json::to_value(&rep).unwrap_or_default())
        }
        Err(super::ingest::IngestError::Store(e)) => store_failed(&reg, route, &e),
        Err(e) => {
            count(&reg, route, StatusCode::BAD_REQUEST);
            json_response(StatusCode::BAD_REQUEST, json!({"error": e.to_string()}))
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    pub pack: Option<String>,
}

async fn packs(State(reg): State<Arc<Registry>>, headers: HeaderMap) -> Response {
    let route = "/v1/packs";
    let tok = match authorize(&reg, &headers, Action::Read, Scope::Any, route).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let snap = reg.snapshot.load();
    let list: Vec<_> = snap
        .repo
        .packs
        .iter()
        .filter(|p| snap.visible(&p.pack.id, tok.tenant.as_deref()))
        .map(|p| {
            let rollout = snap.rollouts.get(&p.pack.id);
            // A pinned rollout serves its champion to everyone: that is the
            // version listed, and the rolled-back one is named as such.
            let (version, rolled_back) = match rollout {
                Some(r) if r.pinned => (
                    r.champion
                        .as_deref()
                        .map(crate::reconcile::pack_version)
                        .or_else(|| r.from_version.clone())
                        .unwrap_or_default(),
                    Some(r.to_version.clone()),
                ),
                _ => (crate::reconcile::pack_version(p), None),
            };
            json!({
                "id": p.pack.id,
                "scope_type": p.location.scope_type(),
                "scope_id": p.location.scope_id(),
                "version": version,
                "status": "champion",
                "rolled_back": rolled_back,
                "path": p.file,
                "rollout": rollout.map(|r| json!({"rollout_id": r.rollout_id, "percent": r.percent, "pinned": r.pinned, "champion": r.from_version})),
            })
        })
        .collect();
    count(&reg, route, StatusCode::OK);
    json_response(
        StatusCode::OK,
        json!({"commit": snap.commit, "packs": list}),
    )
}

async fn rollouts(State(reg): State<Arc<Registry>>, headers: HeaderMap) -> Response {
    let route = "/v1/rollouts";
    let tok = match authorize(&reg, &headers, Action::Read, Scope::Any, route).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let snap = reg.snapshot.load();
    match super::controller::status(&reg.store, true).await {
        Ok(list) => {
            let list: Vec<_> = list
                .into_iter()
                .filter(|r| snap.visible(&r.pack_id, tok.tenant.as_deref()))
                .map(|r| snap.rollout_for(r, tok.tenant.as_deref()))
                .collect();
            count(&reg, route, StatusCode::OK);
            json_response(StatusCode::OK, json!({"rollouts": list}))
        }
        Err(e) => store_failed(&reg, route, &e),
    }
}

async fn decisions(
    State(reg): State<Arc<Registry>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let route = "/v1/decisions";
    let tok = match authorize(&reg, &headers, Action::Read, Scope::Any, route).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let snap = reg.snapshot.load();
    match reg.store.decisions(q.pack.as_deref()).await {
        Ok(list) => {
            let list: Vec<_> = list
                .into_iter()
                .filter(|d| snap.visible(&d.pack_id, tok.tenant.as_deref()))
                .map(|d| snap.decision_for(d, tok.tenant.as_deref()))
                .collect();
            count(&reg, route, StatusCode::OK);
            json_response(StatusCode::OK, json!({"decisions": list}))
        }
        Err(e) => store_failed(&reg, route, &e),
    }
}

#[derive(Deserialize)]
pub struct RollbackBody {
    pub pack_id: String,
    pub reason: Option<String>,
    pub to: Option<String>,
}

async fn rollback(State(reg): State<Arc<Registry>>, headers: HeaderMap, body: Body) -> Response {
    let route = "/v1/rollback";
    // Who is asking comes before what they ask: a caller without a valid
    // admin token is refused (and audited) whatever the body holds, and
    // the body is not read.
    if let Err(refused) = authorize(&reg, &headers, Action::Rollback, Scope::Any, route).await {
        return refused;
    }
    let body = match crate::http::read_body(body, ROLLBACK_BODY_LIMIT, reg.body_timeout).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(req) = serde_json::from_slice::<RollbackBody>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "expected {\"pack_id\": \"…\", \"reason\": \"…\", \"to\": \"1.2.0\"}"}),
        );
    };
    let snap = reg.snapshot.load_full();
    let tenant_of_pack = snap
        .repo
        .pack(&req.pack_id)
        .and_then(|p| match &p.location {
            crate::pack::Location::Tenant(t)
            | crate::pack::Location::TenantUser { tenant: t, .. } => Some(t.clone()),
            crate::pack::Location::PersonalUser(u) => Some(format!("user:{u}")),
            _ => None,
        });
    let tok = match authorize(
        &reg,
        &headers,
        Action::Rollback,
        // Shared packs affect every tenant: only an unscoped admin may roll them back.
        tenant_of_pack
            .as_deref()
            .map_or(Scope::Shared, Scope::Tenant),
        route,
    )
    .await
    {
        Ok(t) => t,
        Err(r) => return r,
    };
    let reason = req
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| format!("rollback requested by {}", tok.name));
    match super::controller::manual_rollback(
        &reg,
        &req.pack_id,
        req.to.as_deref(),
        &reason,
        &tok.name,
        route,
    )
    .await
    {
        // Written with its audit row; the revert is done, or pending (202)
        // and retried by the executor.
        Ok(v) => {
            let status = if v["git"]["revert_pending"] == true {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            count(&reg, route, status);
            json_response(status, v)
        }
        Err(super::controller::ManualError::Store(e)) => store_failed(&reg, route, &e),
        Err(e @ super::controller::ManualError::BadReason(_)) => {
            count(&reg, route, StatusCode::BAD_REQUEST);
            json_response(StatusCode::BAD_REQUEST, json!({"error": e.to_string()}))
        }
        Err(e) => {
            count(&reg, route, StatusCode::CONFLICT);
            json_response(StatusCode::CONFLICT, json!({"error": e.to_string()}))
        }
    }
}

async fn metrics(State(reg): State<Arc<Registry>>) -> Response {
    let snap = reg.snapshot.load();
    reg.metrics.generation.set(snap.generation as i64);
    reg.metrics.rollouts.set(snap.rollouts.len() as i64);
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg.metrics.registry);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Ready once a snapshot is served. `status` says `degraded` while a
/// rollback's revert could not be written to git (the registry serves the
/// champion; git does not agree yet), with how many.
async fn readyz(State(reg): State<Arc<Registry>>) -> Response {
    if reg.snapshot.load().commit.is_some() {
        let mut v = reg.status_json();
        // Unauthenticated: a count only; which packs and why is in
        // /v1/rollouts, behind a token and its tenant.
        let failing = match reg.store.pending_effects(&reg.source.key).await {
            Ok(list) => json!(list.iter().filter(|e| e.attempts > 0).count()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pending reverts for /readyz");
                json!("unknown: the state store is unavailable")
            }
        };
        v["status"] = json!(if failing == json!(0) {
            "ok"
        } else {
            "degraded"
        });
        v["failing_reverts"] = failing;
        json_response(StatusCode::OK, v)
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "why": "no snapshot yet"}),
        )
    }
}

pub(crate) fn router(reg: Arc<Registry>) -> Router {
    Router::new()
        .route("/v1/resolve", get(resolve::resolve))
        .route("/v1/runs", post(runs).get(read_runs))
        .route("/v1/packs", get(packs))
        .route("/v1/rollouts", get(rollouts))
        .route("/v1/decisions", get(decisions))
        .route("/v1/rollback", post(rollback))
        .route("/v1/rollouts/{id}/hold", post(hold::hold_rollout))
        .route("/v1/rollouts/{id}/resume", post(hold::resume_rollout))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/healthz", get(crate::reconcile::daemon::healthz))
        .layer(axum::middleware::map_response_with_state(
            reg.clone(),
            commit_header,
        ))
        .with_state(reg)
}

/// Every answer says which commit this replica serves, so a harness (or a
/// load balancer) can tell a replica that has not caught up. A handler that
/// answered from a particular snapshot has set it already.
async fn commit_header(State(reg): State<Arc<Registry>>, mut resp: Response) -> Response {
    if !resp.headers().contains_key(COMMIT_HEADER)
        && let Some(c) = &reg.snapshot.load().commit
        && let Ok(v) = HeaderValue::from_str(c)
    {
        resp.headers_mut().insert(COMMIT_HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests;
