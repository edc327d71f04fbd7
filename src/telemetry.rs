//! Run telemetry: harnesses report every run with the pack version it used,
//! so every production run is traceable to pack version and scope.
//!
//! A batch is one JSON object, a JSON array, or NDJSON. Every row is checked
//! against the `run_telemetry` contract and the caller's tenant scope; bad
//! rows are reported by line while the good rows of the same batch are
//! stored; a `run_id` already stored is ignored, so retries are safe.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value as Json;

pub use crate::model::Kpis;
use crate::model::{ArmLabel, RunRow, RunSample};
use crate::schema::{self, Kind};

/// The most rows one batch may carry; larger batches are refused whole.
pub const MAX_ROWS: usize = 100_000;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RowError {
    /// 1-based line (NDJSON) or index + 1 (array).
    pub line: usize,
    pub error: String,
    /// Why the row was refused when it is not malformed input: the
    /// registry audits these as denied access.
    #[serde(skip)]
    pub denied: Option<Denied>,
}

/// Why a well-formed row was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Another tenant's id or pack.
    OutsideTenant,
    /// The tenant's own pack, at a version it was never served (or before
    /// the registry could tell what it serves).
    Unserved,
}

/// A row attribution refused: what to tell the client, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub why: Denied,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct IngestReport {
    pub received: usize,
    pub accepted: u64,
    pub duplicates: u64,
    pub errors: Vec<RowError>,
}

/// Which tenant's runs a caller may write (`None`: any tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope(pub Option<String>);

impl TenantScope {
    pub(crate) fn allows(&self, tenant: &str) -> bool {
        self.0.as_deref().is_none_or(|t| t == tenant)
    }
}

/// One item of a batch: its line (or position) and its text.
type Item<'a> = (usize, &'a str);

/// Split a body into items: one record, a JSON array, or NDJSON (one record
/// per line). Only the split is serial; each item is parsed on the pool.
fn items(body: &str) -> Result<Vec<Item<'_>>, String> {
    let t = body.trim_start();
    // One record, pretty-printed or not, is a batch of one.
    if t.starts_with('{')
        && let Ok(Json::Object(_)) = serde_json::from_str::<Json>(t)
    {
        return Ok(vec![(1, t)]);
    }
    if t.starts_with('[') {
        let v: Vec<&serde_json::value::RawValue> = serde_json::from_str(t)
            .map_err(|e| format!("the batch is not a JSON array of records: {e}"))?;
        return Ok(v
            .into_iter()
            .enumerate()
            .map(|(i, x)| (i + 1, x.get()))
            .collect());
    }
    Ok(body
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l))
        .collect())
}

/// A checked batch: the rows to store (with the line each came from) and
/// the rows refused.
#[derive(Debug, Default)]
pub struct Parsed {
    pub rows: Vec<RunRow>,
    pub lines: Vec<usize>,
    pub errors: Vec<RowError>,
}

/// Decides, for a well-formed row of the caller's tenant, which rollout arms
/// produced it (one per rollout on its chain whose arm its version settles,
/// global first, the most specific last), or refuses it (a pack or version
/// outside the tenant's chains).
pub type Attribute<'a> = dyn Fn(&RunRow) -> Result<Vec<ArmServed>, Refusal> + Sync + 'a;

/// `run_telemetry.error_code` for a turn whose workspace files did not match
/// the pack version's digests when its prompt was built (a hand edit).
pub const DRIFTED: &str = "drifted";

/// The rollout arm that serves a row's pack version, and since when: a run
/// from before the rollout started (one delivered late, after an outage)
/// is stored without an arm, so it is no evidence for that rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmServed {
    pub label: ArmLabel,
    /// The rollout's start, RFC 3339.
    pub since: String,
}

/// The first field of `row` holding a control character, and that
/// character. A NUL no text column of PostgreSQL can store; the others
/// (escape sequences, line breaks) would reach the terminals, pages and pull
/// request bodies these identifiers are printed in. Refused on every
/// backend, so both answer alike.
fn control_field(row: &RunRow) -> Option<(&'static str, char)> {
    [
        ("run_id", &row.run_id),
        ("tenant_id", &row.tenant_id),
        ("user_id", &row.user_id),
        ("agent_id", &row.agent_id),
        ("pack_id", &row.pack_id),
        ("pack_version", &row.pack_version),
        ("task_type", &row.task_type),
        ("created_at", &row.created_at),
    ]
    .into_iter()
    .chain(row.error_code.as_ref().map(|c| ("error_code", c)))
    .find_map(|(k, v)| {
        v.chars()
            .find(|c| c.is_control() || crate::model::is_bidi_control(*c))
            .map(|c| (k, c))
    })
}

/// Parse and check a batch. `attribute(row)` labels rows with the rollout
/// arms whose content produced the row's pack version, or refuses them: the
/// most specific rollout's label goes in `arm`, the others in `other_arms`.
pub(crate) fn parse_batch(
    body: &str,
    scope: &TenantScope,
    attribute: &Attribute<'_>,
) -> Result<Parsed, String> {
    let items = items(body)?;
    if items.len() > MAX_ROWS {
        return Err(format!(
            "{} rows in one batch; send at most {MAX_ROWS}",
            items.len()
        ));
    }
    let ahead =
        crate::time_util::canonical(time::OffsetDateTime::now_utc() + time::Duration::hours(1));
    let results: Vec<(usize, Result<RunRow, RowError>)> = items
        .into_par_iter()
        .map(|(line, text)| (line, check_row(line, text, scope, &ahead)))
        .collect();
    // Attribution depends only on (tenant, pack, version), which a batch
    // repeats: decided once per distinct triple, serially.
    let mut decided: HashMap<(String, String, String), Result<Vec<ArmServed>, Refusal>> =
        HashMap::new();
    let mut out = Parsed::default();
    for (line, r) in results {
        match r {
            Ok(mut row) => {
                let key = (
                    row.tenant_id.clone(),
                    row.pack_id.clone(),
                    row.pack_version.clone(),
                );
                let verdict = decided.entry(key).or_insert_with(|| attribute(&row));
                match verdict {
                    Ok(arms) => {
                        // A turn that ran on hand-edited workspace files
                        // (`drifted`) ran on no version missionctl served: it
                        // is kept, but is no evidence for any arm. A run from
                        // before a rollout started is no evidence for that
                        // rollout (it may be for another on its chain).
                        let drifted = row.error_code.as_deref() == Some(DRIFTED);
                        let mut labels: Vec<ArmLabel> = arms
                            .iter()
                            .filter(|a| {
                                // Canonical timestamps compare as text.
                                !drifted && row.created_at >= a.since
                            })
                            .map(|a| a.label.clone())
                            .collect();
                        // The most specific rollout's label is the run's
                        // `arm` (what readers of runs show); see `RunRow`.
                        row.arm = labels.pop();
                        row.other_arms = labels;
                        out.rows.push(row);
                        out.lines.push(line);
                    }
                    Err(why) => out.errors.push(RowError {
                        line,
                        error: why.message.clone(),
                        denied: Some(why.why),
                    }),
                }
            }
            Err(e) => out.errors.push(e),
        }
    }
    Ok(out)
}

/// `ahead`: the latest `created_at` accepted (canonical form), an hour from
/// now, computed once per batch.
fn check_row(
    line: usize,
    text: &str,
    scope: &TenantScope,
    ahead: &str,
) -> Result<RunRow, RowError> {
    let err = |e: String| RowError {
        line,
        error: e,
        denied: None,
    };
    let denied = |e: String| RowError {
        denied: Some(Denied::OutsideTenant),
        ..err(e)
    };
    let v: Json = serde_json::from_str(text).map_err(|e| err(format!("not JSON: {e}")))?;
    let problems = schema::check_json(Kind::RunTelemetry, &v);
    if !problems.is_empty() {
        let all: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
        return Err(err(all.join("; ")));
    }
    let mut row: RunRow = serde_json::from_value(v).map_err(|e| err(e.to_string()))?;
    match control_field(&row) {
        Some((field, '\0')) => {
            return Err(err(format!(
                "{field} contains a NUL character, which cannot be stored; remove it"
            )));
        }
        Some((field, c)) => {
            return Err(err(format!(
                "{field} contains the control character U+{:04X}; identifiers are shown in terminals, pages and pull requests, so remove it",
                u32::from(c)
            )));
        }
        None => {}
    }
    if !scope.allows(&row.tenant_id) {
        return Err(denied(format!(
            "tenant_id `{}` is outside this token's tenant; a token may only write its own tenant's runs",
            row.tenant_id
        )));
    }
    // Stored in UTC in one fixed form, so windows compare times.
    row.created_at = crate::time_util::normalize(&row.created_at).ok_or_else(|| {
        err(format!(
            "created_at `{}` is not an RFC 3339 timestamp",
            row.created_at
        ))
    })?;
    // A time far ahead would sort first in every "newest runs" window.
    // Canonical timestamps are fixed-width: text order is time order.
    if row.created_at.as_str() > ahead {
        return Err(err(format!(
            "created_at `{}` is more than an hour in the future; report when the run happened (check the harness's clock)",
            row.created_at
        )));
    }
    Ok(row)
}

/// Nearest-rank percentile of unsorted values.
pub(crate) fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

pub fn kpis(s: &RunSample) -> Kpis {
    let n = s.success.len();
    let ok = s.success.iter().filter(|x| **x).count();
    Kpis {
        runs: n,
        success_rate: (n > 0).then(|| ok as f64 / n as f64),
        error_rate: (n > 0).then(|| (n - ok) as f64 / n as f64),
        errors_by_code: s.errors.clone(),
        latency_p50_ms: percentile(&s.latency_ms, 50.0),
        latency_p95_ms: percentile(&s.latency_ms, 95.0),
        cost_per_run_usd: (n > 0).then(|| s.cost_usd / n as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, tenant: &str) -> String {
        format!(
            r#"{{"run_id":"{id}","tenant_id":"{tenant}","user_id":"u","agent_id":"a","pack_id":"hr-ops-pack","pack_version":"1.0.0+sha256.abcd1234","task_type":"qa","latency_ms":120,"cost_usd":0.001,"success_bool":true,"error_code":null,"created_at":"2026-11-26T10:00:00Z"}}"#
        )
    }

    #[test]
    fn bad_rows_are_reported_by_line_and_good_rows_kept() {
        let body = format!(
            "{}\n{{\"run_id\": 5}}\nnot json\n{}\n{}\n",
            row("r1", "acme"),
            row("r2", "globex"),
            row("r3", "acme")
        );
        let Parsed { rows, errors, .. } = parse_batch(
            &body,
            &TenantScope(Some("acme".into())),
            &|_| Ok(Vec::new()),
        )
        .expect("batch");
        assert_eq!(
            rows.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
            ["r1", "r3"]
        );
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 3, 4]);
        assert!(
            errors[0]
                .error
                .contains("missing required field `tenant_id`"),
            "{errors:?}"
        );
        assert!(errors[2].error.contains("outside this token's tenant"));
        assert!(errors[2].denied.is_some() && errors[0].denied.is_none());
    }

    /// An escape sequence or a line break in an identifier would reach the
    /// operator's terminal and the improvement pull request's body: the row
    /// is refused, naming the field and the character; its neighbours stay.
    #[test]
    fn control_characters_in_identifiers_are_refused() {
        let body = format!(
            "{}\n{}\n{}\n",
            row("r1", "acme").replace(r#""qa""#, r#""q\u001b[2J""#),
            row("r2", "acme"),
            row("r3", "acme").replace(r#""error_code":null"#, r#""error_code":"a\nb""#)
        );
        let Parsed { rows, errors, .. } = parse_batch(
            &body,
            &TenantScope(Some("acme".into())),
            &|_| Ok(Vec::new()),
        )
        .expect("batch");
        assert_eq!(rows.len(), 1, "{errors:?}");
        assert_eq!(rows[0].run_id, "r2");
        assert!(
            errors[0]
                .error
                .contains("task_type contains the control character U+001B"),
            "{errors:?}"
        );
        assert!(
            errors[1]
                .error
                .contains("error_code contains the control character U+000A"),
            "{errors:?}"
        );
    }

    /// Several rollouts on a run's chain: the most specific label (the
    /// last) is the run's `arm`, the others its `other_arms`; each is
    /// dropped on its own when its rollout started after the run, and all
    /// of them when the run drifted.
    #[test]
    fn each_label_is_kept_or_dropped_on_its_own() {
        let at = |h: u8| format!("2026-11-26T{h:02}:00:00.000000000Z");
        let served = |label: &str, since: String| ArmServed {
            label: label.parse().expect("label"),
            since,
        };
        let attribute = |r: &RunRow| -> Result<Vec<ArmServed>, Refusal> {
            // The run is at 10:00; the tenant rollout of pack `late` began at 11:00.
            let tenant_since = if r.pack_id == "late" { at(11) } else { at(9) };
            Ok(vec![
                served("dom:canary", at(9)),
                served("ten:champion", tenant_since),
            ])
        };
        let body = format!(
            "{}\n{}\n{}\n",
            row("both", "acme"),
            row("late", "acme").replace("hr-ops-pack", "late"),
            row("drift", "acme").replace(r#""error_code":null"#, r#""error_code":"drifted""#)
        );
        let Parsed { rows, errors, .. } =
            parse_batch(&body, &TenantScope(None), &attribute).expect("batch");
        assert!(errors.is_empty(), "{errors:?}");
        let labels: Vec<(Option<String>, Vec<String>)> = rows
            .iter()
            .map(|r| {
                (
                    r.arm.as_ref().map(ToString::to_string),
                    r.other_arms.iter().map(ToString::to_string).collect(),
                )
            })
            .collect();
        assert_eq!(
            labels,
            [
                (Some("ten:champion".into()), vec!["dom:canary".into()]),
                (Some("dom:canary".into()), vec![]),
                (None, vec![]),
            ]
        );
    }

    #[test]
    fn percentiles_and_kpis() {
        let s = RunSample {
            success: vec![true, true, false, true],
            latency_ms: vec![10.0, 20.0, 30.0, 40.0],
            cost_usd: 0.4,
            errors: [("timeout".to_string(), 1)].into_iter().collect(),
        };
        let k = kpis(&s);
        assert_eq!(k.success_rate, Some(0.75));
        assert_eq!(k.latency_p50_ms, Some(20.0));
        assert_eq!(k.latency_p95_ms, Some(40.0));
        assert_eq!(k.cost_per_run_usd, Some(0.1));
    }
}
