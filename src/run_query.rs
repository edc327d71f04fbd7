//! Reading runs back: one query for `GET /v1/runs`, `missionctl runs` and
//! the console's runs page, with the same filters, the same order (newest
//! first) and the same cursor, and the CSV and NDJSON export formats.

use serde::Deserialize;
use time::OffsetDateTime;

use crate::model::{Arm, RunRow, Word};

/// The most rows one page holds (`limit`); exports are not bounded by it.
pub const MAX_PAGE: u32 = 1000;
/// Rows a page holds when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 100;
/// The longest filter value accepted (ids, versions, codes).
const MAX_VALUE: usize = 256;

/// The query as given (URL query string or CLI flags): every field text.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    pub tenant: Option<String>,
    pub pack: Option<String>,
    /// A pack version: `1.2.0` matches `1.2.0` and `1.2.0+<digest>`.
    pub version: Option<String>,
    /// `champion`, `canary`, `none` (run in no rollout), or `<rollout_id>:<arm>`.
    pub arm: Option<String>,
    pub task_type: Option<String>,
    /// An error code, or `none` for runs without one.
    pub error_code: Option<String>,
    /// From this time (RFC 3339, or a duration back from now such as `24h`).
    pub since: Option<String>,
    /// Before this time (RFC 3339, or a duration back from now).
    pub until: Option<String>,
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
    /// `json` (default), `csv` or `ndjson` (the last two export every
    /// matching row, unless `limit` is given).
    pub format: Option<String>,
}

/// Which rollout arm a run must have run in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArmFilter {
    /// Any rollout's champion (or canary) arm, as the run's `arm` shows it
    /// (the most specific rollout on its chain).
    Any(Arm),
    /// Runs counted in no rollout.
    None,
    /// One rollout's arm (`<rollout_id>:<arm>`): every run that is evidence
    /// for it, also those whose `arm` shows a more specific rollout's.
    Exact(String),
}

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Ndjson,
}

/// A checked query: every value bounded, times canonical.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub tenant: Option<String>,
    pub pack: Option<String>,
    pub version: Option<String>,
    pub arm: Option<ArmFilter>,
    pub task_type: Option<String>,
    /// `Some(None)`: runs without an error code.
    pub error_code: Option<Option<String>>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// `None`: every row (an export).
    pub limit: Option<u32>,
    /// Keyset position: (created_at, tenant_id, run_id) of the last row seen.
    pub after: Option<(String, String, String)>,
}

/// Why a query was refused; each names the parameter and what it takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error(
        "`{field}` is empty or longer than {MAX_VALUE} characters; give a value, or leave `{field}` out"
    )]
    Value { field: &'static str },
    #[error(
        "`{field}` is `{value}`: expected an RFC 3339 time (2026-12-07T10:00:00Z) or a duration back from now (30m, 24h, 7d)"
    )]
    Time { field: &'static str, value: String },
    #[error("`arm` is `{0}`: expected champion, canary, none, or <rollout_id>:champion|canary")]
    Arm(String),
    #[error("`limit` is {0}: expected 1 to {MAX_PAGE}")]
    Limit(u32),
    #[error(
        "`after` is not a cursor this server wrote; pass the `next` value of the previous page unchanged"
    )]
    Cursor,
    #[error("`format` is `{0}`: expected json, csv or ndjson")]
    Format(String),
}

fn value(field: &'static str, v: Option<&String>) -> Result<Option<String>, QueryError> {
    match v {
        None => Ok(None),
        Some(s) if s.is_empty() || s.len() > MAX_VALUE || s.chars().any(char::is_control) => {
            Err(QueryError::Value { field })
        }
        Some(s) => Ok(Some(s.clone())),
    }
}

/// An RFC 3339 time, or a duration back from `now`, in the canonical form.
fn when(
    field: &'static str,
    v: Option<&String>,
    now: OffsetDateTime,
) -> Result<Option<String>, QueryError> {
    let Some(s) = v else { return Ok(None) };
    if let Some(t) = crate::time_util::normalize(s) {
        return Ok(Some(t));
    }
    let bad = || QueryError::Time {
        field,
        value: s.chars().take(64).collect(),
    };
    let d = humantime::parse_duration(s).map_err(|_| bad())?;
    let d = time::Duration::try_from(d).map_err(|_| bad())?;
    let t = now.checked_sub(d).ok_or_else(bad)?;
    Ok(Some(crate::time_util::canonical(t)))
}

impl RunQuery {
    /// Check the query at `now` (durations count back from it).
    pub fn filter(&self, now: OffsetDateTime) -> Result<(RunFilter, Format), QueryError> {
        let format = match self.format.as_deref() {
            None | Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            Some("ndjson") => Format::Ndjson,
            Some(other) => return Err(QueryError::Format(other.chars().take(32).collect())),
        };
        let limit = match self.limit {
            Some(n) if n == 0 || n > MAX_PAGE => return Err(QueryError::Limit(n)),
            Some(n) => Some(n),
            None if format == Format::Json => Some(DEFAULT_PAGE),
            None => None,
        };
        let arm = match value("arm", self.arm.as_ref())?.as_deref() {
            None => None,
            Some("none") => Some(ArmFilter::None),
            Some(a) => match Arm::parse(a) {
                Ok(arm) => Some(ArmFilter::Any(arm)),
                Err(_) => match a.parse::<crate::model::ArmLabel>() {
                    Ok(l) if !l.rollout_id.is_empty() => Some(ArmFilter::Exact(l.to_string())),
                    _ => return Err(QueryError::Arm(a.chars().take(64).collect())),
                },
            },
        };
        let after = match &self.after {
            None => None,
            Some(c) => Some(decode_cursor(c).ok_or(QueryError::Cursor)?),
        };
        Ok((
            RunFilter {
                tenant: value("tenant", self.tenant.as_ref())?,
                pack: value("pack", self.pack.as_ref())?,
                version: value("version", self.version.as_ref())?,
                arm,
                task_type: value("task_type", self.task_type.as_ref())?,
                error_code: value("error_code", self.error_code.as_ref())?
                    .map(|c| (c != "none").then_some(c)),
                since: when("since", self.since.as_ref(), now)?,
                until: when("until", self.until.as_ref(), now)?,
                limit,
                after,
            },
            format,
        ))
    }
}

/// The cursor after `row` (opaque to clients: hex of a JSON array).
pub fn cursor(row: &RunRow) -> String {
    hex::encode(
        serde_json::json!([row.created_at, row.tenant_id, row.run_id])
            .to_string()
            .as_bytes(),
    )
}

fn decode_cursor(c: &str) -> Option<(String, String, String)> {
    let bytes = hex::decode(c).ok()?;
    let (a, b, c): (String, String, String) = serde_json::from_slice(&bytes).ok()?;
    Some((a, b, c))
}

/// The CSV columns, in order (the `run_telemetry` fields, then the arm and attempts).
pub const CSV_COLUMNS: [&str; 14] = [
    "run_id",
    "tenant_id",
    "user_id",
    "agent_id",
    "pack_id",
    "pack_version",
    "task_type",
    "latency_ms",
    "cost_usd",
    "success_bool",
    "error_code",
    "created_at",
    "arm",
    "attempts",
];

/// The CSV header line (CRLF-terminated, as RFC 4180 says).
pub fn csv_header() -> String {
    format!("{}\r\n", CSV_COLUMNS.join(","))
}

/// One run as a CSV line. Written by hand (RFC 4180 quoting is a few lines,
/// not worth a dependency): a field with a comma, quote, CR or LF is quoted,
/// quotes doubled; and a field a spreadsheet would run as a formula is
/// prefixed with `'` (OWASP's CSV injection advice), since run ids and codes
/// come from harnesses: one whose first character other than white space is
/// `=`, `+`, `-`, `@` or `|`, or that starts with a tab or carriage return.
pub fn csv_line(r: &RunRow) -> String {
    let mut out = String::with_capacity(200);
    csv_into(&mut out, r);
    out
}

/// [`csv_line`] appended to `out` (an export writes thousands of lines
/// into one buffer).
pub fn csv_into(out: &mut String, r: &RunRow) {
    use std::fmt::Write as _;
    fn field(out: &mut String, s: &str) {
        let formula =
            s.starts_with(['\t', '\r']) || s.trim_start().starts_with(['=', '+', '-', '@', '|']);
        if s.contains([',', '"', '\r', '\n']) {
            out.push('"');
            if formula {
                out.push('\'');
            }
            out.push_str(&s.replace('"', "\"\""));
            out.push('"');
        } else {
            if formula {
                out.push('\'');
            }
            out.push_str(s);
        }
    }
    for s in [
        &r.run_id,
        &r.tenant_id,
        &r.user_id,
        &r.agent_id,
        &r.pack_id,
        &r.pack_version,
        &r.task_type,
    ] {
        field(out, s);
        out.push(',');
    }
    // Writing to a String cannot fail.
    let _ = write!(out, "{},{},{},", r.latency_ms, r.cost_usd, r.success_bool);
    field(out, r.error_code.as_deref().unwrap_or(""));
    out.push(',');
    field(out, &r.created_at);
    out.push(',');
    if let Some(a) = &r.arm {
        field(out, &a.to_string());
    }
    out.push(',');
    if let Some(a) = r.attempts {
        let _ = write!(out, "{a}");
    }
    out.push_str("\r\n");
}

/// One run as an NDJSON line.
pub fn ndjson_line(r: &RunRow) -> String {
    let mut out = String::with_capacity(300);
    ndjson_into(&mut out, r);
    out
}

/// [`ndjson_line`] appended to `out`.
pub fn ndjson_into(out: &mut String, r: &RunRow) {
    // A RunRow (strings, finite numbers) always serialises.
    if let Ok(line) = serde_json::to_string(r) {
        out.push_str(&line);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<(RunFilter, Format), QueryError> {
        let s: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let q: RunQuery = serde_json::from_value(serde_json::Value::Object(
            form_urlencoded::parse(s.as_bytes())
                .map(|(k, v)| {
                    let v = if k == "limit" {
                        serde_json::json!(v.parse::<u32>().unwrap_or(0))
                    } else {
                        serde_json::json!(v)
                    };
                    (k.into_owned(), v)
                })
                .collect(),
        ))
        .expect("query");
        q.filter(time::macros::datetime!(2026-12-07 12:00 UTC))
    }

    #[test]
    fn filters_are_checked_and_times_made_canonical() {
        let (f, fmt) = q(&[
            ("tenant", "acme"),
            ("since", "24h"),
            ("until", "2026-12-07T06:00:00-05:00"),
        ])
        .expect("ok");
        assert_eq!(fmt, Format::Json);
        assert_eq!(f.limit, Some(DEFAULT_PAGE));
        assert_eq!(f.since.as_deref(), Some("2026-12-06T12:00:00.000000000Z"));
        assert_eq!(f.until.as_deref(), Some("2026-12-07T11:00:00.000000000Z"));
        let (f, fmt) =
            q(&[("format", "csv"), ("arm", "canary"), ("error_code", "none")]).expect("ok");
        assert_eq!(
            (fmt, f.limit),
            (Format::Csv, None),
            "an export is unbounded"
        );
        assert_eq!(f.arm, Some(ArmFilter::Any(Arm::Canary)));
        assert_eq!(f.error_code, Some(None));
        let (f, _) = q(&[("arm", "r-1:champion")]).expect("ok");
        assert_eq!(f.arm, Some(ArmFilter::Exact("r-1:champion".into())));
        for (pairs, want) in [
            (vec![("since", "yesterday")], "`since` is `yesterday`"),
            (vec![("arm", "blue")], "`arm` is `blue`"),
            (vec![("limit", "0")], "`limit` is 0"),
            (vec![("limit", "5000")], "`limit` is 5000"),
            (vec![("after", "zz")], "`after` is not a cursor"),
            (vec![("format", "xml")], "`format` is `xml`"),
            (vec![("tenant", "")], "`tenant` is empty"),
        ] {
            let e = q(&pairs).expect_err("refused").to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let r = RunRow {
            run_id: "=HYPERLINK(\"x\")".into(),
            tenant_id: "acme".into(),
            user_id: "a,b".into(),
            agent_id: "line\nbreak".into(),
            pack_id: "p".into(),
            pack_version: "1.0.0".into(),
            task_type: "qa".into(),
            latency_ms: 1.5,
            cost_usd: 0.0,
            success_bool: false,
            error_code: Some("tool_error".into()),
            created_at: "2026-12-07T00:00:00.000000000Z".into(),
            arm: None,
            attempts: Some(2),
            other_arms: Vec::new(),
        };
        assert_eq!(
            csv_line(&r),
            "\"'=HYPERLINK(\"\"x\"\")\",acme,\"a,b\",\"line\nbreak\",p,1.0.0,qa,1.5,0,false,tool_error,2026-12-07T00:00:00.000000000Z,,2\r\n"
        );
        // A formula behind white space, or starting with `|`, a tab or a
        // CR, is defused too; `-` or `=` later in a field is not a formula.
        for (given, want) in [
            (" =1+1", "' =1+1"),
            ("\t\n =cmd", "\"'\t\n =cmd\""),
            ("\u{a0}@SUM(A1)", "'\u{a0}@SUM(A1)"),
            ("|calc", "'|calc"),
            ("  +1", "'  +1"),
            ("\t1", "'\t1"),
            ("\rx", "\"'\rx\""),
            (" -2", "' -2"),
            ("a-b=c", "a-b=c"),
            (" plain", " plain"),
        ] {
            let mut x = r.clone();
            x.run_id = given.into();
            let line = csv_line(&x);
            assert!(
                line.starts_with(&format!("{want},acme,")),
                "{given:?}: {line:?}"
            );
        }
        let c = cursor(&r);
        assert_eq!(
            decode_cursor(&c),
            Some((r.created_at.clone(), "acme".into(), r.run_id.clone()))
        );
    }
}
