//! `POST /v1/rollouts/<id>/hold` and `/resume`: an admin of the rollout's
//! pack (a tenant admin for its tenant's packs, an unscoped admin for
//! shared ones, as `POST /v1/rollback`) holds a rollout at its share or
//! resumes it; recorded as a decision and an audit row in one transaction
//! (see [`crate::registry::hold`]).

use axum::extract::Path;

use super::*;
use crate::registry::hold::{self, Pause, PauseError};

#[derive(Deserialize, Default)]
struct PauseBody {
    reason: Option<String>,
}

pub(super) async fn hold_rollout(
    State(reg): State<Arc<Registry>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    pause(reg, headers, id, body, Pause::Hold).await
}

pub(super) async fn resume_rollout(
    State(reg): State<Arc<Registry>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    pause(reg, headers, id, body, Pause::Resume).await
}

/// The tenant whose admin may act on `pack` (None: a shared pack).
pub(crate) fn tenant_of_pack(snap: &super::super::Snapshot, pack: &str) -> Option<String> {
    snap.repo.pack(pack).and_then(|p| match &p.location {
        crate::pack::Location::Tenant(t) | crate::pack::Location::TenantUser { tenant: t, .. } => {
            Some(t.clone())
        }
        crate::pack::Location::PersonalUser(u) => Some(format!("user:{u}")),
        _ => None,
    })
}

async fn pause(
    reg: Arc<Registry>,
    headers: HeaderMap,
    id: String,
    body: Body,
    what: Pause,
) -> Response {
    let word = match what {
        Pause::Hold => "hold",
        Pause::Resume => "resume",
    };
    let route = format!("/v1/rollouts/{id}/{word}");
    // Who is asking comes first: a caller without an admin token is
    // refused (and audited) whatever it asks about.
    if let Err(refused) = authorize(&reg, &headers, Action::Rollback, Scope::Any, &route).await {
        return refused;
    }
    let body = match crate::http::read_body(body, ROLLBACK_BODY_LIMIT, reg.body_timeout).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        PauseBody::default()
    } else {
        match serde_json::from_slice::<PauseBody>(&body) {
            Ok(b) => b,
            Err(_) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "expected an empty body or {\"reason\": \"…\"}"}),
                );
            }
        }
    };
    let found = match hold::find(&reg.store, &id).await {
        Ok(r) => r.filter(|r| r.source == reg.source.key),
        Err(e) => return store_failed(&reg, &route, &e),
    };
    let Some(r) = found else {
        count(&reg, &route, StatusCode::NOT_FOUND);
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no rollout `{id}` (GET /v1/rollouts lists those in progress)")}),
        );
    };
    let snap = reg.snapshot.load_full();
    let tenant = tenant_of_pack(&snap, &r.pack_id);
    let tok = match authorize(
        &reg,
        &headers,
        Action::Rollback,
        // A shared pack serves every tenant: only an unscoped admin may hold it.
        tenant.as_deref().map_or(Scope::Shared, Scope::Tenant),
        &route,
    )
    .await
    {
        Ok(t) => t,
        Err(r) => return r,
    };
    let reason = req
        .reason
        .filter(|r| !r.trim().is_empty())
        // The transition adds "(requested by NAME)".
        .unwrap_or_else(|| "no reason given".to_string());
    match hold::pause(&reg.store, what, &id, &reason, &tok.name, &route).await {
        Ok(out) => {
            count(&reg, &route, StatusCode::OK);
            json_response(StatusCode::OK, json!(out))
        }
        Err(PauseError::Store(e)) => store_failed(&reg, &route, &e),
        Err(e @ PauseError::BadReason(_)) => {
            count(&reg, &route, StatusCode::BAD_REQUEST);
            json_response(StatusCode::BAD_REQUEST, json!({"error": e.to_string()}))
        }
        Err(e) => {
            count(&reg, &route, StatusCode::CONFLICT);
            json_response(StatusCode::CONFLICT, json!({"error": e.to_string()}))
        }
    }
}
