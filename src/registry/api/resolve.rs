//! `GET /v1/resolve`: the pack a harness uses now, from the served
//! snapshot; ids checked first, the token's scope next, then an answer (or
//! 304, or a long-poll until the chain's version changes).

use super::*;

/// Whether `If-None-Match: header` matches `etag` (RFC 9110 §13.1.2): `*`
/// matches any current representation, otherwise a comma-separated list of
/// entity tags compared weakly (a `W/` prefix on either side is ignored).
pub(super) fn none_match(header: &str, etag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let ours = opaque(etag);
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || opaque(t) == ours)
}

#[derive(Deserialize)]
pub struct ResolveQuery {
    pub domain: String,
    pub tenant: Option<String>,
    pub user: Option<String>,
    /// The agent asking (`openclaw sync` sends it): the canary splits by
    /// agent when given, else by user, else by tenant.
    pub agent: Option<String>,
    /// Long-poll: with If-None-Match, wait up to this many seconds for a change.
    pub wait: Option<u64>,
}

/// Whether `Accept-Encoding: header` accepts gzip (RFC 9110 §12.5.3): gzip
/// named with a quality above zero, or, when gzip is not named, `*` so.
pub(super) fn accepts_gzip(header: &str) -> bool {
    let mut gzip = None;
    let mut any = None;
    for coding in header.split(',') {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let q = parts
            .find_map(|p| {
                p.strip_prefix("q=")
                    .or_else(|| p.strip_prefix("Q="))
                    .map(|v| v.trim().parse::<f32>().unwrap_or(0.0))
            })
            .unwrap_or(1.0);
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(q);
        } else if name == "*" {
            any = Some(q);
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

/// The grammar of ids in registry queries (domain, tenant, user, agent):
/// nothing path-like (`/`, `\\`, `..`) or invisible is ever taken for an id.
pub(crate) fn query_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.len() <= 128
        && !s.contains("..")
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-'))
}

pub(super) async fn resolve(
    State(reg): State<Arc<Registry>>,
    headers: HeaderMap,
    Query(q): Query<ResolveQuery>,
) -> Response {
    let route = "/v1/resolve";
    for (name, value) in [
        ("domain", Some(&q.domain)),
        ("tenant", q.tenant.as_ref()),
        ("user", q.user.as_ref()),
        ("agent", q.agent.as_ref()),
    ] {
        if let Some(v) = value
            && !query_id(v)
        {
            count(&reg, route, StatusCode::BAD_REQUEST);
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": format!(
                    "`{name}` is not an id: use 1 to 128 letters, digits, `.`, `_`, `@`, `+` or `-`, starting with a letter or digit, without `..` (got {} characters)",
                    v.chars().count()
                )}),
            );
        }
    }
    // The scope a personal user's request belongs to is the user.
    let scope = q
        .tenant
        .clone()
        .or_else(|| q.user.as_ref().map(|u| format!("user:{u}")));
    if let Err(r) = authorize(
        &reg,
        &headers,
        Action::Resolve,
        // A chain without tenant or user is shared content.
        scope.as_deref().map_or(Scope::Shared, Scope::Tenant),
        route,
    )
    .await
    {
        return r;
    }
    let key = ChainKey::new(&q.domain, q.tenant.as_deref(), q.user.as_deref());
    let who = q
        .agent
        .as_ref()
        .map(|a| format!("agent:{a}"))
        .or(q.user.clone())
        .or(q.tenant.clone())
        .unwrap_or_else(|| "anonymous".into());
    // Every If-None-Match header, joined: a client may send several.
    let inm: Option<String> = {
        let all: Vec<&str> = headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!all.is_empty()).then(|| all.join(","))
    };
    let mut rx = reg.changed.subscribe();
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(q.wait.unwrap_or(0)).min(MAX_WAIT);
    loop {
        let snap = reg.snapshot.load();
        if snap.commit.is_none() {
            return unavailable(
                &reg,
                route,
                "no snapshot yet: the reconciler has not completed a pass",
            );
        }
        let r = match snap.render(&key, &who, None) {
            Ok(r) => r,
            Err(e) => {
                let status = match e {
                    ResolveError::BrokenLayer { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::NOT_FOUND,
                };
                count(&reg, route, status);
                return json_response(status, json!({"error": e.to_string()}));
            }
        };
        let unchanged = inm.as_deref().is_some_and(|h| none_match(h, &r.etag));
        if unchanged && tokio::time::Instant::now() < deadline {
            // Wait for a new snapshot or the deadline, whichever comes
            // first, then look again.
            drop(snap);
            let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
            continue;
        }
        let etag = HeaderValue::from_str(&r.etag).unwrap_or(HeaderValue::from_static("\"\""));
        let commit = snap
            .commit
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
            .unwrap_or(HeaderValue::from_static(""));
        if unchanged {
            count(&reg, route, StatusCode::NOT_MODIFIED);
            return (
                StatusCode::NOT_MODIFIED,
                [
                    (header::ETAG, etag),
                    (header::HeaderName::from_static(COMMIT_HEADER), commit),
                ],
            )
                .into_response();
        }
        count(&reg, route, StatusCode::OK);
        let gzip = headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(accepts_gzip);
        // The compressed body is made once per rendering and shared; its
        // entity tag is the same one, weak (as for any content coding), so
        // If-None-Match matches either representation.
        let mut resp = if gzip {
            let mut resp = Response::new(Body::from(r.gzip().clone()));
            resp.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            let weak = HeaderValue::from_str(&format!("W/{}", r.etag)).unwrap_or(etag);
            resp.headers_mut().insert(header::ETAG, weak);
            resp
        } else {
            let mut resp = Response::new(Body::from(r.body.clone()));
            resp.headers_mut().insert(header::ETAG, etag);
            resp
        };
        resp.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        resp.headers_mut().insert(COMMIT_HEADER, commit);
        return resp;
    }
}
