//! The fleet console at `/ui/`: server-rendered pages over the same store
//! and registry snapshot `serve` answers the API from, read through the
//! library (never the CLI).
//!
//! Sign-in is with a registry token (viewer or admin, scoped to a tenant
//! or not) posted to `/ui/login`, with OpenID Connect single sign-on when
//! configured (see [`sso`]), or with the one-time link a loopback `serve`
//! prints (see [`signin`]); the session is a signed, HttpOnly,
//! SameSite=Strict cookie that expires (see [`session`]). Every page
//! applies the token's tenant as the API does, and more strictly: what a
//! tenant-scoped sign-in may not see is answered 404 with a page that
//! names nothing, never 403 with the name. State changes (roll back, sign
//! out) are POSTs carrying the session's CSRF token, and a rollback also a
//! ticked confirmation; they are recorded as decisions and audit rows by
//! the same code as `POST /v1/rollback`, under the signed-in token's name.
//! The market pages (`console/market.rs`) list the configured catalogs' domain
//! packs with their compatibility reports, and let an unscoped admin
//! propose an install or upgrade as a branch (and pull request), audited.
//! Every answer carries a strict Content-Security-Policy (one first-party
//! script for live updates, nothing inline, styles from this server only)
//! and the usual security headers.

mod pages;
pub mod session;
pub mod sso;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::registry::Registry;
use crate::registry::auth::{Action, Role, Scope, Token};
use session::{Keys, Session};

/// How people sign in: the session key, single sign-on if configured, and
/// the one-time link of a loopback `serve`.
pub struct Settings {
    pub keys: Keys,
    pub sso: Option<sso::Sso>,
    pub link: Option<signin::OneTimeLink>,
}

/// The console's state: the registry and the sign-in settings.
#[derive(Clone)]
pub struct Console {
    pub reg: Arc<Registry>,
    pub keys: Keys,
    sso: Option<Arc<sso::Sso>>,
    /// The one-time link, until it is used.
    link: Arc<std::sync::Mutex<Option<signin::OneTimeLink>>>,
    /// Sessions known to be signed out (nonce → expiry), refused until
    /// they would have expired anyway: a fast path in front of the state
    /// store's `console_sign_outs`, which every replica reads (see
    /// [`signed_in_viewer`]).
    signed_out: Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
    /// The fleet page's KPI health per tenant scope (see [`fleet::HEALTH_TTL`]).
    health: Arc<fleet::HealthCache>,
    /// The marketplace's catalogs as last fetched (see [`market::TTL`]).
    market: Arc<market::Cache>,
}

/// The Content-Security-Policy of every console answer: no inline script
/// or style, no frames; scripts, styles, images and event streams from
/// this origin only, forms post here only.
pub const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = include_str!("style.css");

/// Who is signed in, with the CSRF token of the session.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub token: Token,
    pub session: Session,
    pub csrf: String,
}

impl Viewer {
    pub fn tenant(&self) -> Option<&str> {
        self.token.tenant.as_deref()
    }
    pub fn is_admin(&self) -> bool {
        self.token.role == Role::Admin
    }
    /// What the header shows: the token's name, role and tenant.
    pub fn label(&self) -> String {
        let role = if self.is_admin() { "admin" } else { "viewer" };
        match self.tenant() {
            Some(t) => format!("{} ({role}, tenant {t})", self.token.name),
            None => format!("{} ({role}, every tenant)", self.token.name),
        }
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Write an audit entry, as the API does: an entry that cannot be written
/// is never skipped silently; the answer is then a 503 page saying so
/// (refusals included, so a denial is never left unrecorded unnoticed).
async fn audit(
    c: &Console,
    who: &str,
    route: &str,
    outcome: &str,
    detail: &str,
) -> Result<(), Response> {
    c.reg
        .store
        .audit(who, route, outcome, detail)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, route, "the audit log could not be written");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::message(
                    None,
                    "Unavailable",
                    "The audit log could not be written; retry later.",
                ),
            )
        })
}

fn html(status: StatusCode, body: maud::Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body.into_string(),
    )
        .into_response()
}

fn to_login() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/login")]).into_response()
}

/// The page for anything missing or out of the viewer's tenant: one text,
/// whatever was asked, so a 404 never confirms that a name exists.
fn not_found(v: Option<&Viewer>) -> Response {
    html(StatusCode::NOT_FOUND, pages::not_found(v))
}

/// The signed-in viewer, or None (no cookie, a bad or expired one, a token
/// since removed or rotated, a harness token, or a session this replica
/// knows is signed out). Memory only: a request is let in by
/// [`signed_in_viewer`], which also asks the state store.
fn viewer(c: &Console, headers: &HeaderMap) -> Option<Viewer> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let value = session::cookie(cookies, session::COOKIE)?;
    let s = c.keys.check(value, now())?;
    if c.signed_out.lock().ok()?.contains_key(&s.nonce) {
        return None;
    }
    let token = signin::token_for(c, &s)?;
    if !token.may(Action::Read) {
        return None;
    }
    let csrf = c.keys.csrf(&s);
    Some(Viewer {
        token,
        session: s,
        csrf,
    })
}

/// Remember that session `nonce` is signed out until `expires`.
fn remember_sign_out(c: &Console, nonce: &str, expires: i64) {
    if let Ok(mut out) = c.signed_out.lock() {
        let t = now();
        out.retain(|_, e| *e > t);
        out.insert(nonce.to_string(), expires);
    }
}

/// The signed-in viewer, as [`viewer`], and not signed out on any replica
/// or before a restart (the state store's sign-outs): Ok(None) when not
/// signed in; a 503 page when the store did not answer (a session that
/// cannot be checked is not let in).
async fn signed_in_viewer(c: &Console, headers: &HeaderMap) -> Result<Option<Viewer>, Response> {
    let Some(v) = viewer(c, headers) else {
        return Ok(None);
    };
    match c.reg.store.signed_out_until(&v.session.nonce).await {
        Ok(None) => Ok(Some(v)),
        Ok(Some(expires)) => {
            remember_sign_out(c, &v.session.nonce, expires);
            Ok(None)
        }
        Err(e) => {
            tracing::error!(error = %e, "a console session could not be checked against the sign-outs");
            Err(html(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::message(
                    None,
                    "Unavailable",
                    "The state store did not answer, so your session could not be checked; retry in a moment.",
                ),
            ))
        }
    }
}

/// Signed in, or the redirect to the sign-in page (a 503 page when the
/// sign-outs could not be read).
macro_rules! signed_in {
    ($c:expr, $headers:expr) => {
        match signed_in_viewer(&$c, &$headers).await {
            Ok(Some(v)) => v,
            Ok(None) => return to_login(),
            Err(unavailable) => return unavailable,
        }
    };
}

// After `signed_in!`, which they use.
mod actions;
mod fleet;
pub mod links;
mod live;
mod market;
mod pack_page;
mod run_pages;
mod same_origin;
pub mod signin;
use run_pages::{export_csv, export_ndjson, runs};

/// The security headers every console answer carries.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (k, v) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        (
            "permissions-policy",
            "camera=(), microphone=(), geolocation=()",
        ),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

pub fn router(reg: Arc<Registry>, settings: Settings) -> Router {
    let c = Console {
        reg,
        keys: settings.keys,
        sso: settings.sso.map(Arc::new),
        link: Arc::new(std::sync::Mutex::new(settings.link)),
        signed_out: Arc::default(),
        health: Arc::default(),
        market: Arc::default(),
    };
    Router::new()
        .route(
            "/ui",
            get(|| async { (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/")]) }),
        )
        .route("/ui/", get(fleet::fleet))
        .route("/ui/style.css", get(style))
        .route("/ui/live.js", get(live::script))
        .route("/ui/events", get(live::events))
        .route("/ui/login", get(signin::login_page).post(signin::login))
        .route("/ui/login/sso", get(signin::sso_start))
        .route("/ui/auth/callback", get(signin::sso_callback))
        .route("/ui/login/link/{code}", get(signin::link))
        .route("/ui/logout", post(signin::logout))
        .route("/ui/rollouts", get(rollouts))
        .route("/ui/rollouts/{id}", get(rollout))
        .route("/ui/rollouts/{id}/rollback", post(actions::rollback))
        .route("/ui/rollouts/{id}/hold", post(actions::hold_rollout))
        .route("/ui/rollouts/{id}/resume", post(actions::resume_rollout))
        .route("/ui/runs", get(runs))
        .route("/ui/runs/export.csv", get(export_csv))
        .route("/ui/runs/export.ndjson", get(export_ndjson))
        .route("/ui/decisions", get(decisions))
        .route("/ui/packs/{id}", get(pack_page::pack))
        .route("/ui/improve", get(improve))
        .route("/ui/market", get(market::list))
        .route("/ui/market/{catalog}/{id}", get(market::pack))
        .route("/ui/market/{catalog}/{id}/propose", post(market::propose))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(c)
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// A form carrying the session's CSRF token; a form without the field
/// gets an empty one, refused (403) as a wrong one is.
#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The repository on GitHub (`https://github.com/<owner>/<repo>`), when
/// the source's remote is there: commits and pull requests link to it.
fn github(c: &Console) -> Option<String> {
    c.reg.source.remote_url().and_then(links::github_base)
}

fn unavailable(v: &Viewer) -> Response {
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::message(
            Some(v),
            "Unavailable",
            "The state store did not answer; retry in a moment.",
        ),
    )
}

async fn rollouts(State(c): State<Console>, headers: HeaderMap) -> Response {
    let v = signed_in!(c, headers);
    let snap = c.reg.snapshot.load_full();
    let Ok(list) = crate::registry::controller::status(&c.reg.store, true).await else {
        return unavailable(&v);
    };
    let list: Vec<_> = list
        .into_iter()
        .filter(|r| snap.visible(&r.pack_id, v.tenant()))
        .map(|r| snap.rollout_for(r, v.tenant()))
        .collect();
    html(StatusCode::OK, pages::rollouts(&v, &list))
}

async fn rollout(State(c): State<Console>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let v = signed_in!(c, headers);
    let snap = c.reg.snapshot.load_full();
    let Ok(list) = crate::registry::controller::status(&c.reg.store, true).await else {
        return unavailable(&v);
    };
    let Some(r) = list
        .into_iter()
        .find(|r| r.rollout_id == id && snap.visible(&r.pack_id, v.tenant()))
    else {
        return not_found(Some(&v));
    };
    let r = snap.rollout_for(r, v.tenant());
    let Ok(decisions) = c.reg.store.decisions(Some(&r.pack_id)).await else {
        return unavailable(&v);
    };
    let decisions: Vec<_> = decisions
        .into_iter()
        .filter(|d| {
            d.rollout.as_ref().and_then(|p| p.rollout_id.as_deref()) == Some(r.rollout_id.as_str())
                || d.challenger_pack_version == r.canary_version
        })
        .map(|d| snap.decision_for(d, v.tenant()))
        .collect();
    let may_act =
        v.token.may(Action::Rollback) && v.token.covers(pack_scope(&snap, &r.pack_id).as_scope());
    html(
        StatusCode::OK,
        pages::rollout(&v, &r, &decisions, may_act, github(&c).as_deref()),
    )
}

/// The tenant a pack belongs to (None: shared), for the admin check.
enum PackScope {
    Tenant(String),
    Shared,
}

impl PackScope {
    fn as_scope(&self) -> Scope<'_> {
        match self {
            PackScope::Tenant(t) => Scope::Tenant(t),
            PackScope::Shared => Scope::Shared,
        }
    }
}

fn pack_scope(snap: &crate::registry::Snapshot, pack: &str) -> PackScope {
    match snap.repo.pack(pack).map(|p| &p.location) {
        Some(
            crate::pack::Location::Tenant(t) | crate::pack::Location::TenantUser { tenant: t, .. },
        ) => PackScope::Tenant(t.clone()),
        Some(crate::pack::Location::PersonalUser(u)) => PackScope::Tenant(format!("user:{u}")),
        _ => PackScope::Shared,
    }
}

#[derive(Deserialize, Default)]
struct PackFilter {
    pack: Option<String>,
}

async fn decisions(
    State(c): State<Console>,
    headers: HeaderMap,
    q: Result<Query<PackFilter>, QueryRejection>,
) -> Response {
    let v = signed_in!(c, headers);
    let pack = q.ok().and_then(|Query(q)| q.pack).filter(|p| !p.is_empty());
    let snap = c.reg.snapshot.load_full();
    if let Some(p) = &pack
        && !snap.visible(p, v.tenant())
    {
        return not_found(Some(&v));
    }
    let Ok(list) = c.reg.store.decisions(pack.as_deref()).await else {
        return unavailable(&v);
    };
    let mut list: Vec<_> = list
        .into_iter()
        .filter(|d| snap.visible(&d.pack_id, v.tenant()))
        .map(|d| snap.decision_for(d, v.tenant()))
        .collect();
    list.reverse();
    // The audit log names tokens of every tenant: unscoped sign-ins only.
    let audit = if v.tenant().is_none() {
        match c.reg.store.audit_log(200).await {
            Ok(a) => Some(a),
            Err(_) => return unavailable(&v),
        }
    } else {
        None
    };
    html(
        StatusCode::OK,
        pages::decisions(
            &v,
            pack.as_deref(),
            &list,
            audit.as_deref(),
            github(&c).as_deref(),
        ),
    )
}

async fn improve(State(c): State<Console>, headers: HeaderMap) -> Response {
    let v = signed_in!(c, headers);
    let snap = c.reg.snapshot.load_full();
    let Ok(list) = c.reg.store.improve_runs(None, 200).await else {
        return unavailable(&v);
    };
    let list: Vec<_> = list
        .into_iter()
        .filter(|r| match v.tenant() {
            None => true,
            Some(t) => r.tenant == t && snap.visible(&r.pack_id, Some(t)),
        })
        .collect();
    html(StatusCode::OK, pages::improve(&v, &list))
}
