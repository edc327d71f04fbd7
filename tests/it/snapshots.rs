//! Snapshots of what a person reads: `evidence.md` of a gate run here, and
//! the `status` and `decisions` output after the quickstart's loop (in
//! `registry::quickstart_runs_the_whole_loop`). Commit ids,
//! digests, timestamps and temp paths are filtered; everything else is the
//! deterministic output of the real binary with the built-in demo model.

use crate::util::TestRepo;

pub fn settings(tmp: &std::path::Path) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(&regex_escape(&tmp.display().to_string()), "[tmp]");
    s.add_filter(r"\b[0-9a-f]{40}\b", "[commit]");
    s.add_filter(r"sha256[.:][0-9a-f]{8,64}", "sha256.[digest]");
    s.add_filter(r"\b[0-9a-f]{7,8}\b", "[short]");
    // Which tenant pays for an answer that two chains share depends on which
    // asks first (the second is served from the cache): amounts and request
    // counts are filtered, the rows and caps are not.
    s.add_filter(r"\$\d+\.\d{4}", "$[usd]");
    s.add_filter(
        r"Model requests: \d+ sent, \d+ served from cache \(\d+% hit rate\); \d+ retried, \d+ throttled",
        "Model requests: [counts]",
    );
    s.add_filter(
        r"\d+ model request\(s\), \d+ from cache",
        "[counts] model request(s)",
    );
    s.add_filter(
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?",
        "[time]",
    );
    s
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// The README's "Try the gate": one safety sentence removed from the global prompt.
#[test]
fn evidence_md_of_a_removed_safety_sentence() {
    let r = TestRepo::new();
    r.git(&["switch", "-q", "-c", "shorter-safety"]);
    let safety = r.read("packs/global/prompts/safety.md");
    let kept: Vec<&str> = safety
        .lines()
        .filter(|l| !l.contains("Never reveal passwords"))
        .collect();
    assert!(
        kept.len() < safety.lines().count(),
        "the template has the sentence"
    );
    r.write("packs/global/prompts/safety.md", &(kept.join("\n") + "\n"));
    r.edit("packs/global/pack.yaml", "version: 1.0.0", "version: 1.0.1");
    r.commit_all("Trim safety");
    let out_dir = r.dir.path().join("evidence");
    let db = format!("sqlite://{}", r.dir.path().join("gate.db").display());
    let out = r.run(&[
        "gate",
        "--base",
        "main",
        "--head",
        "shorter-safety",
        "--out",
        out_dir.to_str().expect("utf-8"),
        "--db",
        &db,
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(out_dir.join("evidence.md")).expect("evidence.md");
    // Three renderings of the same grouped regressions: the terminal (a
    // screenful), evidence.md (the pull-request comment's body) and the
    // check run's annotations (one per case line, not per chain).
    let terminal = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(terminal.lines().count() <= 40, "{terminal}");
    let (evidence, _) = missionctl::github::report::load(&out_dir).expect("evidence");
    assert!(evidence.regressions.len() > evidence.regression_groups.len());
    let annotations =
        serde_json::to_string_pretty(&missionctl::github::report::annotations(&evidence))
            .expect("json");
    settings(r.dir.path()).bind(|| {
        insta::assert_snapshot!("evidence_md_removed_safety", md);
        insta::assert_snapshot!("terminal_removed_safety", terminal);
        insta::assert_snapshot!("annotations_removed_safety", annotations);
    });
}
