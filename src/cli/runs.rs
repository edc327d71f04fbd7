//! `missionctl runs`: read run telemetry back from the state store, with the
//! query `GET /v1/runs` takes (the same filters, order, cursor and export
//! formats; see `missionctl::run_query`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use missionctl::run_query::{self, Format, RunQuery};
use missionctl::store::Store;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunsFormat {
    /// A table.
    Human,
    /// `{"runs": [...], "next": cursor}`, as `GET /v1/runs` answers.
    Json,
    /// Every matching run as CSV (a header line, RFC 4180).
    Csv,
    /// Every matching run as one JSON record a line.
    Ndjson,
}

#[derive(clap::Args, Debug)]
pub struct RunsArgs {
    /// State store: sqlite://PATH or postgres://USER@HOST/DB; see --help for the default.
    #[arg(long, long_help = super::DB_HELP)]
    pub db: Option<String>,
    /// The pack repository whose mission.yaml names the store (default: the one the
    /// current directory is in, found upwards as git does).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Only this tenant's runs (a tenant id, or user:<id> for a personal user).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this pack's runs (its id).
    #[arg(long)]
    pub pack: Option<String>,
    /// Only runs of this pack version (1.2.0 also matches 1.2.0+<digest>).
    #[arg(long)]
    pub version: Option<String>,
    /// champion, canary, none (in no rollout), or <rollout_id>:champion|canary.
    #[arg(long)]
    pub arm: Option<String>,
    /// Only runs of this task type.
    #[arg(long)]
    pub task_type: Option<String>,
    /// Only runs with this error code (`none`: runs without one).
    #[arg(long)]
    pub error_code: Option<String>,
    /// From this time: RFC 3339, or a duration back from now (30m, 24h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Before this time: RFC 3339, or a duration back from now.
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many runs (1 to 1000; default 100 for human and json, every run for csv and ndjson).
    #[arg(long)]
    pub limit: Option<u32>,
    /// The `next` cursor a previous json page printed.
    #[arg(long)]
    pub after: Option<String>,
    /// How to print the runs: a table (human), one JSON page with its `next`
    /// cursor (json), or every matching run as CSV or NDJSON.
    #[arg(long, value_enum, default_value = "human")]
    pub format: RunsFormat,
}

pub fn run(a: RunsArgs) -> anyhow::Result<ExitCode> {
    let root = super::repo_root(a.repo.as_deref());
    let url = super::db_url_was_default(a.db.as_deref(), Some(&root))?;
    let q = RunQuery {
        tenant: a.tenant,
        pack: a.pack,
        version: a.version,
        arm: a.arm,
        task_type: a.task_type,
        error_code: a.error_code,
        since: a.since,
        until: a.until,
        limit: a.limit,
        after: a.after,
        format: Some(
            match a.format {
                RunsFormat::Human | RunsFormat::Json => "json",
                RunsFormat::Csv => "csv",
                RunsFormat::Ndjson => "ndjson",
            }
            .into(),
        ),
    };
    let (mut filter, format) = q.filter(time::OffsetDateTime::now_utc()).map_err(|e| {
        anyhow::anyhow!("{e} (each parameter is the flag of its name: `task_type` is --task-type)")
    })?;
    let rt = missionctl::runtime()?;
    let store = rt.block_on(Store::connect(&url))?;
    if format != Format::Json {
        // Page by page, as the API streams, so memory stays flat.
        if format == Format::Csv {
            out!("{}", run_query::csv_header());
        }
        let total = filter.limit;
        let mut sent = 0u64;
        loop {
            let left = total.map_or(u64::MAX, |t| u64::from(t) - sent);
            if left == 0 {
                break;
            }
            let page = u32::try_from(left.min(2_000)).unwrap_or(2_000);
            filter.limit = Some(page);
            let rows = rt.block_on(store.query_runs(&filter))?;
            for r in &rows {
                match format {
                    Format::Csv => out!("{}", run_query::csv_line(r)),
                    _ => out!("{}", run_query::ndjson_line(r)),
                }
            }
            sent += rows.len() as u64;
            match rows.last() {
                Some(last) if rows.len() == page as usize => {
                    filter.after = Some((
                        last.created_at.clone(),
                        last.tenant_id.clone(),
                        last.run_id.clone(),
                    ));
                }
                _ => break,
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows = rt.block_on(store.query_runs(&filter))?;
    let next = match filter.limit {
        Some(n) if rows.len() == n as usize => rows.last().map(run_query::cursor),
        _ => None,
    };
    if a.format == RunsFormat::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"runs": rows, "next": next}))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<20} {:<12} {:<24} {:<16} {:<8} {:<7} {:>9} {:<16} {:<10} RUN",
        "WHEN",
        "TENANT",
        "PACK",
        "VERSION",
        "TASK",
        "OK",
        "LATENCY",
        "ERROR",
        "ARM"
    );
    for r in &rows {
        outln!(
            "{:<20} {:<12} {:<24} {:<16} {:<8} {:<7} {:>9.0} {:<16} {:<10} {}",
            r.created_at.get(..19).unwrap_or(&r.created_at),
            r.tenant_id,
            r.pack_id,
            r.pack_version.split('+').next().unwrap_or_default(),
            r.task_type,
            if r.success_bool { "ok" } else { "FAILED" },
            r.latency_ms,
            r.error_code.as_deref().unwrap_or("-"),
            r.arm
                .as_ref()
                .map_or("-".to_string(), |a| a.arm.to_string()),
            r.run_id
        );
    }
    if let Some(n) = next {
        outln!("more: missionctl runs --after {n} (with the same filters)");
    }
    Ok(ExitCode::SUCCESS)
}
