//! The improvement worker's audit table and the telemetry signal it reads.

use std::collections::BTreeMap;

use super::{Store, StoreError};
use crate::model::{StopReason, TelemetrySignal, Word};

/// One improvement run, as `missionctl improve --list` shows it. `report`
/// is the run's whole report as JSON (candidates, scores, reasons).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImproveRow {
    pub run_id: String,
    pub pack_id: String,
    pub tenant: String,
    pub champion_version: String,
    pub base_commit: String,
    pub started_at: String,
    pub finished_at: String,
    pub stop: StopReason,
    pub candidates: i64,
    pub spend_usd: f64,
    pub branch: Option<String>,
    pub pull_request: Option<String>,
    #[serde(skip)]
    pub report: String,
}

type Raw = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    f64,
    Option<String>,
    Option<String>,
    String,
);

impl Store {
    /// Record one improvement run. An error here is the run's error: an
    /// unrecorded run is not allowed to pass silently.
    pub async fn improve_record(&self, r: &ImproveRow) -> Result<(), StoreError> {
        execute!(
            self,
            "INSERT INTO improve_runs (run_id, pack_id, tenant, champion_version, base_commit, started_at, finished_at, stop, candidates, spend_usd, branch, pull_request, report) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            &r.run_id,
            &r.pack_id,
            &r.tenant,
            &r.champion_version,
            &r.base_commit,
            &r.started_at,
            &r.finished_at,
            r.stop.as_str(),
            r.candidates,
            r.spend_usd,
            &r.branch,
            &r.pull_request,
            &r.report
        )?;
        Ok(())
    }

    /// Improvement runs, newest first, of one pack or all.
    pub async fn improve_runs(
        &self,
        pack: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ImproveRow>, StoreError> {
        let rows: Vec<Raw> = fetch_all!(
            self,
            "SELECT run_id, pack_id, tenant, champion_version, base_commit, started_at, finished_at, stop, candidates, spend_usd, branch, pull_request, report FROM improve_runs WHERE ($1 = '' OR pack_id = $1) ORDER BY started_at DESC, run_id DESC LIMIT $2",
            pack.unwrap_or(""),
            limit
        )?;
        rows.into_iter()
            .map(|r| {
                Ok(ImproveRow {
                    stop: StopReason::parse(&r.7).map_err(super::row_error("improve_runs"))?,
                    run_id: r.0,
                    pack_id: r.1,
                    tenant: r.2,
                    champion_version: r.3,
                    base_commit: r.4,
                    started_at: r.5,
                    finished_at: r.6,
                    candidates: r.8,
                    spend_usd: r.9,
                    branch: r.10,
                    pull_request: r.11,
                    report: r.12,
                })
            })
            .collect()
    }

    /// What the runs of `pack_id` at `version` since `since` (RFC 3339) say:
    /// the success rate, the task types that fail most, the error codes.
    pub async fn telemetry_signal(
        &self,
        pack_id: &str,
        version: &str,
        since: &str,
        window_days: u32,
    ) -> Result<TelemetrySignal, StoreError> {
        type Row = (String, i64, Option<String>);
        // Harnesses report the version `/v1/resolve` returned, with its
        // content digest (`1.2.0+sha256.<digest>`): every digest of the
        // version counts, as `GET /v1/runs?version=1.2.0` counts them.
        let like = super::version_like(version);
        let rows: Vec<Row> = fetch_all!(
            self,
            "SELECT task_type, success_bool, error_code FROM runs WHERE pack_id = $1 AND (pack_version = $2 OR pack_version LIKE $3 ESCAPE '\\') AND created_at >= $4",
            pack_id,
            version,
            like,
            since
        )?;
        let mut by_task: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut codes: BTreeMap<String, u64> = BTreeMap::new();
        let mut ok_total = 0u64;
        for (task, ok, code) in &rows {
            let e = by_task.entry(task.clone()).or_default();
            e.0 += 1;
            if *ok != 0 {
                e.1 += 1;
                ok_total += 1;
            } else {
                *codes
                    .entry(code.clone().unwrap_or_else(|| "unknown".into()))
                    .or_default() += 1;
            }
        }
        let mut worst: Vec<(String, u64, f64)> = by_task
            .into_iter()
            .filter(|(_, (n, ok))| ok < n)
            .map(|(t, (n, ok))| (t, n, ok as f64 / n as f64))
            .collect();
        worst.sort_by(|a, b| a.2.total_cmp(&b.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0)));
        worst.truncate(5);
        let mut error_codes: Vec<(String, u64)> = codes.into_iter().collect();
        error_codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        error_codes.truncate(5);
        let runs = rows.len() as u64;
        Ok(TelemetrySignal {
            window_days,
            runs,
            success_rate: (runs > 0).then(|| ok_total as f64 / runs as f64),
            worst_task_types: worst,
            error_codes,
        })
    }
}
