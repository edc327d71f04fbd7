//! `GET /v1/runs`: runs read back, filtered, paged or exported as CSV and
//! NDJSON, scoped to the token's tenant.

use super::*;

/// `GET /v1/runs`: runs read back, newest first, filtered (see
/// [`crate::run_query`]); a page of JSON with the cursor of the next, or
/// every matching row streamed as CSV or NDJSON. A token scoped to a tenant
/// reads that tenant's runs only: naming another tenant is refused (403,
/// audited) like every other endpoint.
pub(super) async fn read_runs(
    State(reg): State<Arc<Registry>>,
    headers: HeaderMap,
    q: Result<Query<crate::run_query::RunQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let route = "/v1/runs";
    let scope_tenant = q.as_ref().ok().and_then(|Query(q)| q.tenant.clone());
    let tok = match authorize(
        &reg,
        &headers,
        Action::Read,
        scope_tenant.as_deref().map_or(Scope::Any, Scope::Tenant),
        route,
    )
    .await
    {
        Ok(t) => t,
        Err(r) => return r,
    };
    let bad = |reg: &Registry, why: String| {
        count(reg, route, StatusCode::BAD_REQUEST);
        json_response(StatusCode::BAD_REQUEST, json!({ "error": why }))
    };
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => {
            return bad(
                &reg,
                format!(
                    "{}; the parameters are tenant, pack, version, arm, task_type, error_code, since, until, limit, after, format",
                    e.body_text()
                ),
            );
        }
    };
    let (mut filter, format) = match q.filter(time::OffsetDateTime::now_utc()) {
        Ok(f) => f,
        Err(e) => return bad(&reg, e.to_string()),
    };
    if let Some(t) = &tok.tenant {
        filter.tenant = Some(t.clone());
    }
    runs_response(&reg, filter, format, route).await
}

/// The answer to a runs query whose tenant scope is already applied: a
/// JSON page, or a streamed CSV or NDJSON export (the console's export
/// links answer with this too).
pub(crate) async fn runs_response(
    reg: &Arc<Registry>,
    filter: crate::run_query::RunFilter,
    format: crate::run_query::Format,
    route: &str,
) -> Response {
    let (content_type, header_line, line): (_, String, fn(&mut String, &crate::model::RunRow)) =
        match format {
            crate::run_query::Format::Json => {
                return match reg.store.query_runs(&filter).await {
                    Ok(rows) => {
                        let next = match filter.limit {
                            Some(n) if rows.len() == n as usize => {
                                rows.last().map(crate::run_query::cursor)
                            }
                            _ => None,
                        };
                        count(reg, route, StatusCode::OK);
                        json_response(StatusCode::OK, json!({"runs": rows, "next": next}))
                    }
                    Err(e) => store_failed(reg, route, &e),
                };
            }
            crate::run_query::Format::Csv => (
                "text/csv; charset=utf-8",
                crate::run_query::csv_header(),
                crate::run_query::csv_into,
            ),
            crate::run_query::Format::Ndjson => (
                "application/x-ndjson",
                String::new(),
                crate::run_query::ndjson_into,
            ),
        };
    // The first page is read before answering, so a failing store is a 503
    // and not a cut-off 200; later pages stream by keyset as the client reads.
    let total = filter.limit;
    let page = total.map_or(EXPORT_PAGE, |t| t.min(EXPORT_PAGE));
    let rows = match reg
        .store
        .query_runs(&crate::run_query::RunFilter {
            limit: Some(page),
            ..filter.clone()
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return store_failed(reg, route, &e),
    };
    count(reg, route, StatusCode::OK);
    let ext = if format == crate::run_query::Format::Csv {
        "csv"
    } else {
        "ndjson"
    };
    let export = Export {
        header: Some(header_line).filter(|h| !h.is_empty()),
        last_full: rows.len() == page as usize,
        pending: rows,
        filter,
        total,
        sent: 0,
        reg: reg.clone(),
        line,
        ahead: None,
    };
    let stream = futures_util::stream::unfold(export, Export::next);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"runs.{ext}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Rows an export reads per page.
const EXPORT_PAGE: u32 = 5_000;

type Page = Result<Vec<crate::model::RunRow>, crate::store::StoreError>;

/// A runs export in progress: what is still to send, and where to read next.
struct Export {
    header: Option<String>,
    pending: Vec<crate::model::RunRow>,
    /// The last page read was full: there may be more.
    last_full: bool,
    filter: crate::run_query::RunFilter,
    /// The most rows to send (`limit`), or every one.
    total: Option<u32>,
    sent: u64,
    reg: Arc<Registry>,
    line: fn(&mut String, &crate::model::RunRow),
    /// The next page, read while this one is written out and sent.
    ahead: Option<tokio::task::JoinHandle<Page>>,
}

impl Export {
    /// Rows still wanted after what is sent and pending.
    fn left(&self) -> u64 {
        self.total.map_or(u64::MAX, |t| {
            u64::from(t).saturating_sub(self.sent + self.pending.len() as u64)
        })
    }

    async fn next(mut self) -> Option<(Result<axum::body::Bytes, std::io::Error>, Export)> {
        if let Some(h) = self.header.take() {
            return Some((Ok(h.into()), self));
        }
        if self.pending.is_empty() {
            let ahead = self.ahead.take()?;
            let read = ahead
                .await
                .map_err(|e| format!("the export's read stopped: {e}"))
                .and_then(|r| r.map_err(|e| e.to_string()));
            match read {
                Ok(rows) => {
                    self.last_full = self.filter.limit.is_some_and(|n| rows.len() == n as usize);
                    self.pending = rows;
                }
                Err(e) => {
                    // The headers are sent: a cut body is what tells the client.
                    tracing::error!(error = %e, "a runs export was cut short: the state store failed");
                    return Some((Err(std::io::Error::other(e)), self));
                }
            }
            if self.pending.is_empty() {
                return None;
            }
        }
        let rows = std::mem::take(&mut self.pending);
        if let Some(last) = rows.last() {
            self.filter.after = Some((
                last.created_at.clone(),
                last.tenant_id.clone(),
                last.run_id.clone(),
            ));
        }
        self.sent += rows.len() as u64;
        // Read the next page while this one is written and sent.
        let left = self.left();
        if self.last_full && left > 0 {
            let page = u32::try_from(left.min(u64::from(EXPORT_PAGE))).unwrap_or(EXPORT_PAGE);
            self.filter.limit = Some(page);
            let (store, filter) = (self.reg.store.clone(), self.filter.clone());
            self.ahead = Some(tokio::spawn(async move { store.query_runs(&filter).await }));
        }
        let mut chunk = String::with_capacity(rows.len() * 200);
        for r in &rows {
            (self.line)(&mut chunk, r);
        }
        Some((Ok(chunk.into()), self))
    }
}
