//! The rollout page's actions: roll back, hold, resume. Each is a POST
//! carrying the session's CSRF token and a ticked confirmation, allowed to
//! an admin of the rollout's pack (a tenant admin for its tenant's packs,
//! an unscoped admin for shared ones), and runs the same transition as the
//! API (`POST /v1/rollback`, `POST /v1/rollouts/<id>/hold|resume`): the
//! decision and the audit row under the signed-in token's name. A refused
//! attempt is audited as `denied`.

use super::*;
use crate::registry::controller::RolloutStatus;
use crate::registry::hold::{self, Pause, PauseError};

#[derive(Deserialize)]
pub(super) struct ActionForm {
    /// Missing: empty, refused (403) as a wrong one is.
    #[serde(default)]
    csrf: String,
    reason: Option<String>,
    confirm: Option<String>,
}

/// Which action a form asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Act {
    Rollback,
    Pause(Pause),
}

impl Act {
    fn word(self) -> &'static str {
        match self {
            Act::Rollback => "rollback",
            Act::Pause(Pause::Hold) => "hold",
            Act::Pause(Pause::Resume) => "resume",
        }
    }

    fn unconfirmed(self) -> &'static str {
        match self {
            Act::Rollback => {
                "Tick the confirmation box to roll back: it serves the champion to everyone at once and writes a revert commit."
            }
            Act::Pause(Pause::Hold) => {
                "Tick the confirmation box to hold: the rollout stays at its share and does not advance until resumed."
            }
            Act::Pause(Pause::Resume) => {
                "Tick the confirmation box to resume: the rollout advances again on its figures."
            }
        }
    }
}

/// The checks every action makes, in order: signed in (else to the sign-in
/// page), the rollout visible (else 404), a form carrying the session's
/// CSRF token (403: a wrong, empty or missing one, or no form at all), an
/// admin of the pack (403, audited), confirmed (400).
/// Gives the rollout, the route (as audited) and the form.
async fn checked(
    c: &Console,
    v: &Viewer,
    id: &str,
    act: Act,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<(RolloutStatus, String, ActionForm), Response> {
    let snap = c.reg.snapshot.load_full();
    let Ok(list) = crate::registry::controller::status(&c.reg.store, true).await else {
        return Err(unavailable(v));
    };
    let Some(r) = list
        .into_iter()
        .find(|r| r.rollout_id == id && snap.visible(&r.pack_id, v.tenant()))
    else {
        return Err(not_found(Some(v)));
    };
    let f = match form {
        Ok(Form(f)) if c.keys.csrf_ok(&v.session, &f.csrf) => f,
        _ => {
            return Err(html(
                StatusCode::FORBIDDEN,
                pages::message(
                    Some(v),
                    "Refused",
                    "That form is stale or did not come from this console (CSRF check): reload the page and try again.",
                ),
            ));
        }
    };
    let route = format!("/ui/rollouts/{id}/{}", act.word());
    let scope = pack_scope(&snap, &r.pack_id);
    if !(v.token.may(Action::Rollback) && v.token.covers(scope.as_scope())) {
        let why = format!(
            "token `{}` may not {} {}",
            v.token.name,
            act.word(),
            r.pack_id
        );
        audit(c, &v.token.name, &route, "denied", &why).await?;
        return Err(html(
            StatusCode::FORBIDDEN,
            pages::message(
                Some(v),
                "Refused",
                "Your sign-in may not act on this pack's rollout: it takes an admin token of the pack's tenant, or an unscoped admin token for a shared pack.",
            ),
        ));
    }
    if f.confirm.as_deref() != Some("yes") {
        return Err(html(
            StatusCode::BAD_REQUEST,
            pages::message(Some(v), "Not confirmed", act.unconfirmed()),
        ));
    }
    Ok((r, route, f))
}

fn back_to(id: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/ui/rollouts/{}", pages::enc(id)))],
    )
        .into_response()
}

/// Roll back the rollout's pack to the version before it, as `POST
/// /v1/rollback` does (one transition: the decision, the audit row, the
/// hold and the revert), by the signed-in admin.
pub(super) async fn rollback(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let v = signed_in!(c, headers);
    let (r, route, f) = match checked(&c, &v, &id, Act::Rollback, form).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let reason = f
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| format!("rollback requested by {} from the console", v.token.name));
    match crate::registry::controller::manual_rollback(
        &c.reg,
        &r.pack_id,
        None,
        &reason,
        &v.token.name,
        &route,
    )
    .await
    {
        Ok(_) => back_to(&id),
        Err(crate::registry::controller::ManualError::Store(_)) => unavailable(&v),
        Err(e @ crate::registry::controller::ManualError::BadReason(_)) => html(
            StatusCode::BAD_REQUEST,
            pages::message(Some(&v), "Not rolled back", &e.to_string()),
        ),
        Err(e) => html(
            StatusCode::CONFLICT,
            pages::message(Some(&v), "Not rolled back", &e.to_string()),
        ),
    }
}

async fn pause(
    c: Console,
    headers: HeaderMap,
    id: String,
    form: Result<Form<ActionForm>, FormRejection>,
    what: Pause,
) -> Response {
    let v = signed_in!(c, headers);
    let act = Act::Pause(what);
    let (_, route, f) = match checked(&c, &v, &id, act, form).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let reason = f
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| {
            // The transition adds "(requested by NAME)".
            format!("no reason given ({} from the console)", act.word())
        });
    match hold::pause(&c.reg.store, what, &id, &reason, &v.token.name, &route).await {
        Ok(_) => back_to(&id),
        Err(PauseError::Store(_)) => unavailable(&v),
        Err(e @ PauseError::BadReason(_)) => html(
            StatusCode::BAD_REQUEST,
            pages::message(Some(&v), "Not changed", &e.to_string()),
        ),
        Err(e) => html(
            StatusCode::CONFLICT,
            pages::message(Some(&v), "Not changed", &e.to_string()),
        ),
    }
}

/// Hold the rollout at its share, as `POST /v1/rollouts/<id>/hold` does.
pub(super) async fn hold_rollout(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    pause(c, headers, id, form, Pause::Hold).await
}

/// Resume a held rollout, as `POST /v1/rollouts/<id>/resume` does.
pub(super) async fn resume_rollout(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    pause(c, headers, id, form, Pause::Resume).await
}
