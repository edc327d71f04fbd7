//! What `missionctl gate` prints: the verdict and a summary that fits on a
//! screen (grouped regressions, the other reasons, one line per pack),
//! pointing to the files with the rest. Snapshot-tested.

use std::fmt::Write;

use super::evidence::Evidence;
use super::markdown::pct;

/// Groups shown before "… and N more".
const GROUPS_SHOWN: usize = 8;
/// Other reasons shown before "… and N more".
const REASONS_SHOWN: usize = 5;

/// The terminal summary; `out` is where the evidence files were written.
pub fn render(e: &Evidence, out: Option<&std::path::Path>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", super::markdown::verdict_line(e));
    let groups = &e.regression_groups;
    if !groups.is_empty() {
        let failures: usize = groups.iter().map(|g| g.chains.len()).sum();
        let _ = writeln!(
            s,
            "\nRegressions: {} (case, assertion) group(s), {failures} failure(s) across chains",
            groups.len()
        );
        for g in groups.iter().take(GROUPS_SHOWN) {
            let _ = writeln!(
                s,
                "  {:<7} {} / {}  `{}`  {}",
                g.tag.as_str(),
                g.pack_id,
                g.case_id,
                g.assertion,
                g.where_()
            );
            let reason: String = g.reason.chars().take(160).collect();
            let _ = writeln!(s, "          {reason}");
        }
        if groups.len() > GROUPS_SHOWN {
            let _ = writeln!(
                s,
                "  … and {} more group(s) in evidence.md",
                groups.len() - GROUPS_SHOWN
            );
        }
    }
    let group_lines: Vec<String> = groups
        .iter()
        .map(super::group::RegressionGroup::line)
        .collect();
    let others: Vec<&String> = e
        .reasons
        .iter()
        .filter(|r| !group_lines.contains(r))
        .collect();
    if !others.is_empty() {
        let _ = writeln!(s, "\nAlso:");
        for r in others.iter().take(REASONS_SHOWN) {
            let r: String = r.chars().take(200).collect();
            let _ = writeln!(s, "  - {r}");
        }
        if others.len() > REASONS_SHOWN {
            let _ = writeln!(s, "  … and {} more", others.len() - REASONS_SHOWN);
        }
    }
    if !e.packs.is_empty() {
        let _ = writeln!(s, "\nPacks:");
        for p in &e.packs {
            let _ = writeln!(
                s,
                "  {} {} -> {}: {}/{} chains, pass {} -> {}{}",
                p.pack_id,
                p.base_version.as_deref().unwrap_or("new"),
                p.head_version.as_deref().unwrap_or("-"),
                p.chains_evaluated,
                p.chains_total,
                pct(p.champion_pass_rate),
                pct(p.challenger_pass_rate),
                if p.blocked_by.is_empty() {
                    ""
                } else {
                    " (blocked)"
                }
            );
        }
    }
    let _ = writeln!(
        s,
        "\n{} model request(s), {} from cache, ${:.4}{}",
        e.model_requests,
        e.cache_hits,
        e.cost_usd,
        if e.partial {
            "; results are partial"
        } else {
            ""
        }
    );
    match out {
        Some(dir) => {
            let _ = writeln!(
                s,
                "Evidence: {0}/evidence.md (the tables), {0}/evidence.json (every row)",
                dir.display()
            );
        }
        None => {
            let _ = writeln!(s, "Pass --out DIR for evidence.md and evidence.json");
        }
    }
    s
}
