//! The fleet console at `/ui/`: server-rendered pages over the same store
//! and registry snapshot `serve` answers the API from, read through the
//! library (never the CLI).
//!
//! Sign-in is with a registry token (viewer or admin, scoped to a tenant
//! or not) posted to `/ui/login`; the session is a signed, HttpOnly,
//! SameSite=Strict cookie that expires (see [`session`]). Every page
//! applies the token's tenant as the API does, and more strictly: what a
//! tenant-scoped sign-in may not see is answered 404 with a page that
//! names nothing, never 403 with the name. State changes (roll back, sign
//! out) are POSTs carrying the session's CSRF token, and a rollback also a
//! ticked confirmation; they are recorded as decisions and audit rows by
//! the same code as `POST /v1/rollback`, under the signed-in token's name.
//! Every answer carries a strict Content-Security-Policy (one first-party
//! script for live updates, nothing inline, styles from this server only)
//! and the usual security headers.

mod pages;
pub mod session;

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

/// The console's state: the registry and the session key.
#[derive(Clone)]
pub struct Console {
    pub reg: Arc<Registry>,
    pub keys: Keys,
    /// Sessions signed out on this replica (nonce → expiry), refused until
    /// they would have expired anyway.
    signed_out: Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
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
/// since removed or rotated, or a harness token).
fn viewer(c: &Console, headers: &HeaderMap) -> Option<Viewer> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let value = session::cookie(cookies, session::COOKIE)?;
    let s = c.keys.check(value, now())?;
    if c.signed_out.lock().ok()?.contains_key(&s.nonce) {
        return None;
    }
    let token = session::token_of(&s, &c.reg.tokens)?;
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

/// Signed in, or the redirect to the sign-in page.
macro_rules! signed_in {
    ($c:expr, $headers:expr) => {
        match viewer(&$c, &$headers) {
            Some(v) => v,
            None => return to_login(),
        }
    };
}

// After `signed_in!`, which they use.
mod actions;
mod fleet;
pub mod links;
mod live;
mod pack_page;
mod run_pages;
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

pub fn router(reg: Arc<Registry>, keys: Keys) -> Router {
    let c = Console {
        reg,
        keys,
        signed_out: Arc::default(),
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
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
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

async fn login_page(State(c): State<Console>, headers: HeaderMap) -> Response {
    if viewer(&c, &headers).is_some() {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/")]).into_response();
    }
    html(StatusCode::OK, pages::login(None))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// Sign in with a registry token: a viewer or admin token starts a session
/// (audited by the token's name); a bad token is refused and audited at
/// the API's bounded rate; a harness token may not sign in.
async fn login(
    State(c): State<Console>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let route = "/ui/login";
    let given = form.map(|Form(f)| f.token).unwrap_or_default();
    let tok = c
        .reg
        .tokens
        .check(Some(&format!("Bearer {}", given.trim())))
        .cloned();
    let Some(tok) = tok.filter(|_| !given.trim().is_empty()) else {
        c.reg.metrics.denied.inc();
        if let Some(suppressed) = c.reg.unauthenticated.admit(std::time::Instant::now()) {
            let detail = if suppressed > 0 {
                format!(
                    "console sign-in with an unknown token ({suppressed} more refusals since the last entry were not written)"
                )
            } else {
                "console sign-in with an unknown token".to_string()
            };
            if let Err(e) = c
                .reg
                .store
                .audit("(unauthenticated)", route, "unauthenticated", &detail)
                .await
            {
                tracing::error!(error = %e, "the audit log could not be written");
                return html(
                    StatusCode::SERVICE_UNAVAILABLE,
                    pages::message(
                        None,
                        "Unavailable",
                        "The audit log could not be written; retry later.",
                    ),
                );
            }
        }
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(Some(
                "That is not a valid registry token. Paste a viewer or admin token (missionctl token new --role viewer).",
            )),
        );
    };
    if !tok.may(Action::Read) {
        let _ = c
            .reg
            .store
            .audit(
                &tok.name,
                route,
                "denied",
                "a harness token may not sign in to the console",
            )
            .await;
        return html(
            StatusCode::FORBIDDEN,
            pages::login(Some(
                "A harness token cannot sign in to the console: use a viewer or admin token.",
            )),
        );
    }
    let Some(cookie) = c.keys.issue(&tok, &c.reg.tokens, now()) else {
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(Some("That token cannot sign in.")),
        );
    };
    if let Err(e) = c
        .reg
        .store
        .audit(&tok.name, route, "ok", "signed in to the console")
        .await
    {
        tracing::error!(error = %e, "the audit log could not be written");
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::message(
                None,
                "Unavailable",
                "The audit log could not be written; retry later.",
            ),
        );
    }
    // `Secure` when the request reached us over HTTPS through a proxy; a
    // loopback console over plain HTTP must still be able to sign in.
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let set = format!(
        "{}={cookie}; Path=/ui; Max-Age={}; HttpOnly; SameSite=Strict{}",
        session::COOKIE,
        session::TTL_SECONDS,
        if secure { "; Secure" } else { "" }
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/ui/".to_string()),
            (header::SET_COOKIE, set),
        ],
    )
        .into_response()
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(c): State<Console>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let v = signed_in!(c, headers);
    if !form.is_ok_and(|Form(f)| c.keys.csrf_ok(&v.session, &f.csrf)) {
        return html(
            StatusCode::FORBIDDEN,
            pages::message(
                Some(&v),
                "Refused",
                "That form is stale or did not come from this console (CSRF check): reload the page and try again.",
            ),
        );
    }
    if let Ok(mut out) = c.signed_out.lock() {
        let t = now();
        out.retain(|_, expires| *expires > t);
        out.insert(v.session.nonce.clone(), v.session.expires);
    }
    let _ = c
        .reg
        .store
        .audit(
            &v.token.name,
            "/ui/logout",
            "ok",
            "signed out of the console",
        )
        .await;
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/ui/login".to_string()),
            (
                header::SET_COOKIE,
                format!(
                    "{}=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict",
                    session::COOKIE
                ),
            ),
        ],
    )
        .into_response()
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
    let Ok(decisions) = c.reg.store.decisions(Some(&r.pack_id)).await else {
        return unavailable(&v);
    };
    let decisions: Vec<_> = decisions
        .into_iter()
        .filter(|d| {
            d.rollout.as_ref().and_then(|p| p.rollout_id.as_deref()) == Some(r.rollout_id.as_str())
                || d.challenger_pack_version == r.canary_version
        })
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
