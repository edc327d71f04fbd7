//! The runs page and its CSV and NDJSON exports: the same query as
//! `GET /v1/runs`, scoped to the signed-in tenant.

use super::*;

/// A runs query from the console's form: empty fields are no filter; a
/// query that does not parse is what the parser said of it.
pub(super) fn runs_query(
    q: Result<Query<crate::run_query::RunQuery>, QueryRejection>,
) -> Result<crate::run_query::RunQuery, String> {
    let Query(mut q) = q.map_err(|e| e.body_text())?;
    for f in [
        &mut q.tenant,
        &mut q.pack,
        &mut q.version,
        &mut q.arm,
        &mut q.task_type,
        &mut q.error_code,
        &mut q.since,
        &mut q.until,
        &mut q.after,
        &mut q.format,
    ] {
        if f.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *f = None;
        }
    }
    Ok(q)
}

/// The runs query a page or export may answer for `v`: a bad parameter is
/// a 400 naming `what`, another tenant's runs a 404 (naming nothing).
pub(super) fn scoped_runs_query(
    v: &Viewer,
    q: Result<Query<crate::run_query::RunQuery>, QueryRejection>,
    what: &str,
) -> Result<crate::run_query::RunQuery, Box<Response>> {
    let q = match runs_query(q) {
        Ok(q) => q,
        Err(why) => {
            return Err(Box::new(html(
                StatusCode::BAD_REQUEST,
                pages::message(
                    Some(v),
                    "Bad filter",
                    &format!(
                        "The {what} cannot read this filter ({why}). The parameters are tenant, pack, version, arm, task_type, error_code, since, until, limit (1 to 1000) and after."
                    ),
                ),
            )));
        }
    };
    if let (Some(mine), Some(asked)) = (v.tenant(), q.tenant.as_deref())
        && mine != asked
    {
        return Err(Box::new(not_found(Some(v))));
    }
    Ok(q)
}

pub(super) async fn runs(
    State(c): State<Console>,
    headers: HeaderMap,
    q: Result<Query<crate::run_query::RunQuery>, QueryRejection>,
) -> Response {
    let v = signed_in!(c, headers);
    let mut q = match scoped_runs_query(&v, q, "runs page") {
        Ok(q) => q,
        Err(r) => return *r,
    };
    q.format = None;
    let (mut filter, _) = match q.filter(time::OffsetDateTime::now_utc()) {
        Ok(f) => f,
        Err(e) => {
            return html(
                StatusCode::BAD_REQUEST,
                pages::runs(&v, &q, &[], None, Some(&e.to_string())),
            );
        }
    };
    if let Some(t) = v.tenant() {
        filter.tenant = Some(t.to_string());
    }
    match c.reg.store.query_runs(&filter).await {
        Ok(rows) => {
            let next = match filter.limit {
                Some(n) if rows.len() == n as usize => rows.last().map(crate::run_query::cursor),
                _ => None,
            };
            html(
                StatusCode::OK,
                pages::runs(&v, &q, &rows, next.as_deref(), None),
            )
        }
        Err(_) => unavailable(&v),
    }
}

pub(super) async fn export(
    c: Console,
    headers: HeaderMap,
    q: Result<Query<crate::run_query::RunQuery>, QueryRejection>,
    format: &str,
) -> Response {
    let v = signed_in!(c, headers);
    let mut q = match scoped_runs_query(&v, q, "runs export") {
        Ok(q) => q,
        Err(r) => return *r,
    };
    // `after` is checked as on the runs page and `GET /v1/runs` (a bad
    // cursor is a 400 naming it), and a good one is honoured as there.
    q.format = Some(format.to_string());
    let (mut filter, format) = match q.filter(time::OffsetDateTime::now_utc()) {
        Ok(f) => f,
        Err(e) => {
            return html(
                StatusCode::BAD_REQUEST,
                pages::message(Some(&v), "Bad filter", &e.to_string()),
            );
        }
    };
    if let Some(t) = v.tenant() {
        filter.tenant = Some(t.to_string());
    }
    crate::registry::api::runs_response(&c.reg, filter, format, "/ui/runs/export").await
}

pub(super) async fn export_csv(
    State(c): State<Console>,
    headers: HeaderMap,
    q: Result<Query<crate::run_query::RunQuery>, QueryRejection>,
) -> Response {
    export(c, headers, q, "csv").await
}

pub(super) async fn export_ndjson(
    State(c): State<Console>,
    headers: HeaderMap,
    q: Result<Query<crate::run_query::RunQuery>, QueryRejection>,
) -> Response {
    export(c, headers, q, "ndjson").await
}
