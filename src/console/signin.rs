//! Signing in and out of the console: a registry token posted to
//! `/ui/login`; OpenID Connect single sign-on (`/ui/login/sso` to the
//! provider and back to `/ui/auth/callback`); and, for the personal tier,
//! the one-time link a `serve` bound to loopback prints at start.
//!
//! Every sign-in, refusal and sign-out is an audit row under the identity
//! that signed in: the token's name, `sso:<subject> <email>` for single
//! sign-on, `local:one-time-link` for the link.

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::session::{self, Session, Who};
use super::sso::{Grant, Pending};
use super::{
    Console, CsrfForm, audit, html, now, pages, remember_sign_out, signed_in_viewer, to_login,
};
use crate::registry::auth::{Action, Role, Token};

/// The cookie carrying a single sign-on under way (state, nonce, PKCE
/// verifier), signed; `SameSite=Lax` so that the provider's redirect back
/// (a cross-site top-level GET) carries it.
const SSO_COOKIE: &str = "mc_sso";
/// How long a single sign-on may take, provider's login form included.
const SSO_TTL_SECONDS: i64 = 600;
/// How long the one-time link lasts after `serve` starts.
pub const LINK_TTL_SECONDS: i64 = 900;
/// The identity a one-time link signs in as.
pub const LINK_NAME: &str = "local:one-time-link";

/// The token (role and tenant) a session stands for now, or None when it
/// no longer may sign in: a token removed or rotated, single sign-on no
/// longer configured or its groups no longer mapped.
pub(super) fn token_for(c: &Console, s: &Session) -> Option<Token> {
    match &s.who {
        Who::Token { .. } => session::token_of(s, &c.reg.tokens),
        Who::Sso {
            subject,
            email,
            groups,
        } => match c.sso.as_ref()?.grant(groups) {
            Grant::Role(role, tenant) => Some(Token {
                name: sso_name(subject, email.as_deref()),
                role,
                tenant,
            }),
            Grant::Nothing | Grant::Several(_) => None,
        },
        Who::Link => Some(Token {
            name: LINK_NAME.into(),
            role: Role::Admin,
            tenant: None,
        }),
    }
}

/// How a single sign-on identity is named in the header, decisions and
/// the audit log.
fn sso_name(subject: &str, email: Option<&str>) -> String {
    match email {
        Some(e) => format!("sso:{subject} <{e}>"),
        None => format!("sso:{subject}"),
    }
}

/// Whether the request reached us over HTTPS through a proxy (then cookies
/// are `Secure`; a loopback console over plain HTTP must still sign in).
pub(super) fn secure(headers: &HeaderMap) -> &'static str {
    if headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
    {
        "; Secure"
    } else {
        ""
    }
}

/// Signed in: on to the fleet page with the session cookie (or the refusal).
fn to_fleet(started: Result<String, Response>) -> Response {
    match started {
        Ok(set) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/ui/".to_string()),
                (header::SET_COOKIE, set),
            ],
        )
            .into_response(),
        Err(r) => r,
    }
}

/// Audit a sign-in by `name` and give the session cookie's `Set-Cookie`
/// value; or the answer when the audit log cannot be written.
async fn start_session(
    c: &Console,
    headers: &HeaderMap,
    cookie: String,
    name: &str,
    route: &str,
    detail: &str,
) -> Result<String, Response> {
    audit(c, name, route, "ok", detail).await?;
    Ok(format!(
        "{}={cookie}; Path=/ui; Max-Age={}; HttpOnly; SameSite=Strict{}",
        session::COOKIE,
        session::TTL_SECONDS,
        secure(headers)
    ))
}

/// A page that sends the browser on to the fleet. After single sign-on the
/// browser arrives from the provider's site, and a `SameSite=Strict`
/// cookie is not sent along a redirect chain that started cross-site: this
/// page (ours) starts a same-site navigation instead.
fn continue_to_fleet(set_cookie: String, name: &str) -> Response {
    let mut r = html(
        StatusCode::OK,
        pages::message(
            None,
            "Signed in",
            &format!("Signed in as {name}. Opening the fleet console…"),
        ),
    );
    let h = r.headers_mut();
    if let Ok(v) = set_cookie.parse() {
        h.insert(header::SET_COOKIE, v);
    }
    h.insert("refresh", header::HeaderValue::from_static("0; url=/ui/"));
    r
}

pub(super) async fn login_page(State(c): State<Console>, headers: HeaderMap) -> Response {
    if matches!(signed_in_viewer(&c, &headers).await, Ok(Some(_))) {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/")]).into_response();
    }
    html(StatusCode::OK, pages::login(None, c.sso.is_some()))
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: String,
}

/// Sign in with a registry token: a viewer or admin token starts a session
/// (audited by the token's name); a bad token is refused and audited at
/// the API's bounded rate; a harness token may not sign in; a form posted
/// from another site is refused and audited (see
/// [`super::same_origin::cross_site`]).
pub(super) async fn login(
    State(c): State<Console>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let route = "/ui/login";
    if let Some(why) = super::same_origin::cross_site(&headers) {
        if let Err(unavailable) = audit(
            &c,
            "(unauthenticated)",
            route,
            "denied",
            &format!("console sign-in posted from another site ({why}; login CSRF?)"),
        )
        .await
        {
            return unavailable;
        }
        return html(
            StatusCode::FORBIDDEN,
            pages::login(
                Some(
                    "That sign-in was sent from another site, so nobody was signed in. Sign in on this page.",
                ),
                c.sso.is_some(),
            ),
        );
    }
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
            if let Err(unavailable) =
                audit(&c, "(unauthenticated)", route, "unauthenticated", &detail).await
            {
                return unavailable;
            }
        }
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(
                Some(
                    "That is not a valid registry token. Paste a viewer or admin token (missionctl token new --role viewer).",
                ),
                c.sso.is_some(),
            ),
        );
    };
    if !tok.may(Action::Read) {
        if let Err(unavailable) = audit(
            &c,
            &tok.name,
            route,
            "denied",
            "a harness token may not sign in to the console",
        )
        .await
        {
            return unavailable;
        }
        return html(
            StatusCode::FORBIDDEN,
            pages::login(
                Some("A harness token cannot sign in to the console: use a viewer or admin token."),
                c.sso.is_some(),
            ),
        );
    }
    let Some(cookie) = c.keys.issue(&tok, &c.reg.tokens, now()) else {
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(Some("That token cannot sign in."), c.sso.is_some()),
        );
    };
    to_fleet(
        start_session(
            &c,
            &headers,
            cookie,
            &tok.name,
            route,
            "signed in to the console",
        )
        .await,
    )
}

/// After a single sign-on session signs out of the console: a page that
/// says so and links to the provider's own sign-out (RP-initiated logout),
/// which comes back to `/ui/login`; without it the provider's session
/// would sign the next "Sign in with SSO" straight back in. A link, not a
/// redirect: the console's CSP (`form-action 'self'`) forbids a sign-out
/// form from landing on another origin, and the person may want to stay
/// signed in to other applications. None (straight to the sign-in page)
/// for other sessions or a provider without an `end_session_endpoint`.
async fn provider_sign_out(c: &Console, s: &Session) -> Option<Response> {
    let (Who::Sso { .. }, Some(sso)) = (&s.who, c.sso.as_ref()) else {
        return None;
    };
    let body = match sso.logout_url().await {
        Ok(Some(url)) => maud::html! {
            h1 { "Signed out" }
            p role="status" { "You are signed out of the console. Your identity provider may still have you signed in, and would sign the next single sign-on straight back in." }
            p { a.button.primary href=(url) rel="noreferrer" { "Also sign out at the identity provider" } }
            p { a href="/ui/login" { "Back to sign-in" } }
        },
        Ok(None) => return None,
        Err(e) => maud::html! {
            h1 { "Signed out" }
            p role="status" { "You are signed out of the console. The identity provider could not be asked how to sign out there too (" (e) "); sign out on its own pages if you need to." }
            p { a href="/ui/login" { "Back to sign-in" } }
        },
    };
    Some(html(
        StatusCode::OK,
        pages::page(None, "Signed out", "", body),
    ))
}

pub(super) async fn logout(
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
    // Recorded in the state store, so that every replica, and this one
    // after a restart, refuses the session; not recorded, not signed out
    // (the cookie stays, and the page says to retry).
    if let Err(e) = c
        .reg
        .store
        .sign_out_session(&v.session.nonce, v.session.expires, now())
        .await
    {
        tracing::error!(error = %e, "a console sign-out could not be recorded");
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::message(
                Some(&v),
                "Not signed out",
                "The sign-out could not be recorded in the state store, so you are still signed in; retry in a moment.",
            ),
        );
    }
    remember_sign_out(&c, &v.session.nonce, v.session.expires);
    // Signed out whatever happens next: the cookie goes in either answer.
    let clear = format!(
        "{}=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict",
        session::COOKIE
    );
    let mut r = match audit(
        &c,
        &v.token.name,
        "/ui/logout",
        "ok",
        "signed out of the console",
    )
    .await
    {
        Ok(()) => match provider_sign_out(&c, &v.session).await {
            Some(page) => page,
            None => (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, "/ui/login".to_string())],
            )
                .into_response(),
        },
        Err(unavailable) => unavailable,
    };
    if let Ok(v) = clear.parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Start single sign-on: to the provider, with the state, nonce and PKCE
/// verifier kept in a signed cookie for the callback.
pub(super) async fn sso_start(State(c): State<Console>, headers: HeaderMap) -> Response {
    let Some(sso) = c.sso.clone() else {
        return super::not_found(None);
    };
    match sso.start(now(), SSO_TTL_SECONDS).await {
        Ok((url, pending)) => {
            let value = c.keys.seal(
                "sso-login",
                &serde_json::to_vec(&pending).expect("a pending sign-in serialises"),
            );
            let set = format!(
                "{SSO_COOKIE}={value}; Path=/ui/auth; Max-Age={SSO_TTL_SECONDS}; HttpOnly; SameSite=Lax{}",
                secure(&headers)
            );
            (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, url), (header::SET_COOKIE, set)],
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on could not start");
            html(
                StatusCode::BAD_GATEWAY,
                pages::message(
                    None,
                    "Single sign-on is unavailable",
                    "The identity provider did not answer as expected; retry in a moment, or sign in with a registry token. The server log says why.",
                ),
            )
        }
    }
}

#[derive(Deserialize, Default)]
pub(super) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The provider's redirect back: check the state against the signed
/// cookie, exchange the code with the PKCE verifier, verify the ID token,
/// map the groups to a role, start the session. Every refusal is audited.
pub(super) async fn sso_callback(
    State(c): State<Console>,
    headers: HeaderMap,
    q: Result<Query<Callback>, QueryRejection>,
) -> Response {
    let route = "/ui/auth/callback";
    let Some(sso) = c.sso.clone() else {
        return super::not_found(None);
    };
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let clear = format!("{SSO_COOKIE}=; Path=/ui/auth; Max-Age=0; HttpOnly; SameSite=Lax");
    let refuse = |status: StatusCode, who: String, why: String, shown: String| {
        let c = c.clone();
        let clear = clear.clone();
        async move {
            let mut r = match audit(&c, &who, route, "denied", &why).await {
                Ok(()) => html(status, pages::message(None, "Not signed in", &shown)),
                Err(unavailable) => unavailable,
            };
            if let Ok(v) = clear.parse() {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
    };
    let anon = || "(unauthenticated)".to_string();
    if let Some(e) = q.error {
        let e: String = e.chars().take(100).collect();
        return refuse(
            StatusCode::UNAUTHORIZED,
            anon(),
            format!("single sign-on: the provider answered `{e}`"),
            format!(
                "The identity provider did not sign you in ({e}). Try again from the sign-in page."
            ),
        )
        .await;
    }
    let pending: Option<Pending> = headers
        .get(header::COOKIE)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| session::cookie(h, SSO_COOKIE))
        .and_then(|v| c.keys.open("sso-login", v))
        .and_then(|p| serde_json::from_slice(&p).ok())
        .filter(|p: &Pending| p.expires > now());
    let Some(pending) = pending else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            anon(),
            "single sign-on: a callback without a sign-in under way in this browser (or it took over 10 minutes)".into(),
            "This sign-in did not start here, or took too long. Start again from the sign-in page.".into(),
        )
        .await;
    };
    let state_ok = q.state.as_deref().is_some_and(|s| {
        use subtle_eq::eq;
        eq(s.as_bytes(), pending.state.as_bytes())
    });
    let (true, Some(code)) = (state_ok, q.code.as_deref()) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            anon(),
            "single sign-on: the callback's state does not match the sign-in under way (login CSRF?)".into(),
            "This sign-in's state does not match the one this browser started. Start again from the sign-in page.".into(),
        )
        .await;
    };
    let id = match sso.finish(&pending, code).await {
        Ok(id) => id,
        Err(e) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                anon(),
                format!("single sign-on refused: {e}"),
                format!("Single sign-on failed and nobody is signed in: {e}."),
            )
            .await;
        }
    };
    let name = sso_name(&id.subject, id.email.as_deref());
    let groups = if id.groups.is_empty() {
        "none".to_string()
    } else {
        id.groups.join(", ")
    };
    let (role, tenant) = match sso.grant(&id.groups) {
        Grant::Role(r, t) => (r, t),
        Grant::Nothing => {
            return refuse(
                StatusCode::FORBIDDEN,
                name.clone(),
                format!("single sign-on: no console role for groups {groups}"),
                format!(
                    "You signed in as {name}, but none of your groups ({groups}) has a console role. Ask an administrator to map one of them under roles in the console's SSO configuration."
                ),
            )
            .await;
        }
        Grant::Several(scopes) => {
            let scopes = scopes.join("; ");
            return refuse(
                StatusCode::FORBIDDEN,
                name.clone(),
                format!("single sign-on: roles in several scopes ({scopes})"),
                format!(
                    "You signed in as {name}, but your groups give roles in more than one scope ({scopes}), and a console sign-in shows one tenant or the whole fleet. Ask an administrator for a fleet-wide role, or to leave you in one tenant's groups."
                ),
            )
            .await;
        }
    };
    let cookie = c.keys.issue_for(
        Who::Sso {
            subject: id.subject.clone(),
            email: id.email.clone(),
            groups: sso.mapped(&id.groups),
        },
        now(),
    );
    let role = if role == Role::Admin {
        "admin"
    } else {
        "viewer"
    };
    let scope = tenant.map_or("every tenant".to_string(), |t| format!("tenant {t}"));
    let detail = format!(
        "signed in to the console with single sign-on (subject {}, groups {groups}): {role} of {scope}",
        id.subject
    );
    match start_session(&c, &headers, cookie, &name, route, &detail).await {
        Ok(set) => {
            let mut r = continue_to_fleet(set, &name);
            if let Ok(v) = clear.parse() {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(r) => r,
    }
}

/// The one-time login link of a `serve` bound to loopback: its code's
/// hash and expiry, until it is used.
#[derive(Debug)]
pub struct OneTimeLink {
    hash: [u8; 32],
    expires: i64,
}

impl OneTimeLink {
    /// A new link's secret code, and the link that accepts it once until
    /// `now + LINK_TTL_SECONDS`.
    pub fn new(now: i64) -> (String, OneTimeLink) {
        let code = hex::encode(rand::random::<[u8; 24]>());
        let hash = Sha256::digest(code.as_bytes()).into();
        (
            code,
            OneTimeLink {
                hash,
                expires: now + LINK_TTL_SECONDS,
            },
        )
    }
}

/// Sign in with the one-time link: once, before it expires, as a
/// fleet-wide admin (the person at the terminal that started `serve`).
pub(super) async fn link(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Response {
    let route = "/ui/login/link";
    let given: [u8; 32] = Sha256::digest(code.as_bytes()).into();
    let taken = c.link.lock().ok().and_then(|mut l| {
        let ok = l
            .as_ref()
            .is_some_and(|l| l.expires > now() && subtle_eq::eq(&l.hash, &given));
        if ok { l.take() } else { None }
    });
    if taken.is_none() {
        if let Err(unavailable) = audit(
            &c,
            "(unauthenticated)",
            route,
            "denied",
            "a one-time login link that is used, expired or wrong",
        )
        .await
        {
            return unavailable;
        }
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(
                Some(
                    "That sign-in link is used, expired or wrong: each link signs in once, within 15 minutes of serve starting. Restart serve for a new one, or sign in with a token.",
                ),
                c.sso.is_some(),
            ),
        );
    }
    let cookie = c.keys.issue_for(Who::Link, now());
    to_fleet(
        start_session(
            &c,
            &headers,
            cookie,
            LINK_NAME,
            route,
            "signed in to the console with the one-time link serve printed",
        )
        .await,
    )
}

/// Constant-time comparison of two byte strings.
mod subtle_eq {
    pub fn eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}
