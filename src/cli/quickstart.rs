//! `missionctl quickstart`: the whole loop on the embedded default, narrated.
//!
//! Everything is real: a git remote and a clone on disk, the built-in demo
//! model behind the gate, a SQLite state store, the reconciler, the registry
//! snapshot harnesses resolve against, run telemetry, the canary controller
//! and the revert commit. Only the harness traffic is simulated (users with a
//! fixed success rate per arm), and the canary is evaluated as fast as the
//! telemetry arrives instead of on a timer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::json;

use missionctl::gate::{self, GateOptions};
use missionctl::model::{Arm, RolloutState};
use missionctl::reconcile::{self, Options, Source};
use missionctl::registry::auth::Tokens;
use missionctl::registry::{Registry, controller};
use missionctl::resolve::ChainKey;
use missionctl::store::Store;
use missionctl::telemetry::TenantScope;

#[derive(Debug, thiserror::Error)]
pub enum QuickstartError {
    #[error("{0}")]
    Step(String),
}

pub(super) fn step<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> QuickstartError + '_ {
    move |e| QuickstartError::Step(format!("{what}: {e}"))
}

pub(super) fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

pub(super) fn git(dir: &Path, args: &[&str]) -> Result<String, QuickstartError> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Quinn Quickstart")
        .env("GIT_AUTHOR_EMAIL", "quinn@example.com")
        .env("GIT_COMMITTER_NAME", "Quinn Quickstart")
        .env("GIT_COMMITTER_EMAIL", "quinn@example.com")
        .output()
        .map_err(step("running git"))?;
    if !out.status.success() {
        return Err(QuickstartError::Step(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub(super) fn edit(path: &Path, from: &str, to: &str) -> Result<(), QuickstartError> {
    let s = std::fs::read_to_string(path).map_err(step("reading a pack file"))?;
    std::fs::write(path, s.replacen(from, to, 1)).map_err(step("writing a pack file"))
}

pub(super) fn say(line: &str) {
    outln!("{line}");
}

/// Simulated harness traffic for one round: `n` runs across acme's and
/// globex's users; the canary arm succeeds with `canary_ok`, the champion 97%.
/// `batch` names the round in each run id, so every round's ids are new.
fn traffic(reg: &Registry, batch: &str, n: usize, canary_ok: f64) -> (String, usize, usize) {
    let snap = reg.snapshot.load_full();
    let mut rows = String::new();
    let (mut c, mut ch) = (0usize, 0usize);
    for i in 0..n {
        let (tenant, user) = if i % 3 == 0 {
            ("globex", format!("g{}", i % 200))
        } else {
            ("acme", format!("a{}", i % 400))
        };
        let key = ChainKey::new("hr-ops", Some(tenant), Some(&user));
        let Ok(r) = snap.render(&key, &user, None) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let canary = v["arm"] == Arm::Canary.as_str();
        // Deterministic outcomes at the stated rates.
        let ok = if canary {
            c += 1;
            (c as f64 * (1.0 - canary_ok)).floor() == ((c - 1) as f64 * (1.0 - canary_ok)).floor()
        } else {
            ch += 1;
            ch % 33 != 0
        };
        let row = json!({
            "run_id": format!("qs-{batch}-{i}"), "tenant_id": tenant, "user_id": user, "agent_id": "hr-assistant",
            "pack_id": v["pack_id"], "pack_version": v["pack_version"], "task_type": "hr-question",
            "latency_ms": 900.0 + (i % 50) as f64 * 10.0, "cost_usd": 0.0012, "success_bool": ok,
            "error_code": if ok { serde_json::Value::Null } else { json!("escalation_missed") },
            "created_at": missionctl::time_util::now_rfc3339(),
        });
        rows.push_str(&row.to_string());
        rows.push('\n');
    }
    (rows, ch, c)
}

/// The example fleet: a remote, a clone, the store and the registry.
struct Fleet {
    dir: PathBuf,
    remote: PathBuf,
    work: PathBuf,
    db: String,
    store: Store,
    source: Source,
    reg: Arc<Registry>,
}

impl Fleet {
    fn hr(&self) -> PathBuf {
        self.work.join("packs/domains/hr-ops")
    }

    /// One reconcile pass and its publication (what `serve` does on every push).
    async fn publish(&self) -> Result<reconcile::Outcome, QuickstartError> {
        publish(&self.source, &self.store, &self.reg).await
    }
}

/// Step 1: the template as a bare remote and a clone, imported by the reconciler.
async fn setup(dir: PathBuf) -> Result<Fleet, QuickstartError> {
    std::fs::create_dir_all(&dir).map_err(step("making a directory"))?;
    let (seed, remote, work) = (dir.join("seed"), dir.join("fleet.git"), dir.join("work"));
    let db = format!("sqlite://{}", dir.join("state.db").display());
    say(&format!("missionctl quickstart in {}\n", dir.display()));
    say(
        "1. init: the example pack repository (global, 5 domains, 2 tenants, 4 users) as a git remote and a clone",
    );
    missionctl::template::init(&seed, true).map_err(step("init"))?;
    git(&dir, &["clone", "-q", "--bare", path(&seed), path(&remote)])?;
    git(&dir, &["clone", "-q", path(&remote), path(&work)])?;
    let store = Store::connect(&db).await.map_err(step("state store"))?;
    let source = Source::new(path(&remote), "main", &dir.join("cache"));
    let reg = Registry::new(store.clone(), source.clone(), Tokens::default(), None);
    let fleet = Fleet {
        dir,
        remote,
        work,
        db,
        store,
        source,
        reg,
    };
    let out = fleet.publish().await?;
    say(&format!(
        "   the reconciler imported main: {} packs now served\n",
        out.decisions.len()
    ));
    Ok(fleet)
}

/// The gate on `head` against main, and its verdict line.
async fn gate_against_main(
    f: &Fleet,
    head: &str,
    out: Option<PathBuf>,
) -> Result<(gate::Evidence, String), QuickstartError> {
    let ev = gate::run(GateOptions {
        repo: f.work.clone(),
        base: "main".into(),
        head: head.into(),
        out,
        db_url: f.db.clone(),
        skip_paid_calls: false,
        progress: missionctl::gate::Progress::Off,
        spend_limit_usd: None,
        store: Some(f.store.clone()),
    })
    .await
    .map_err(step("gate"))?;
    let first = gate::verdict_line(&ev);
    Ok((ev, first))
}

/// Steps 2 and 3: a challenger branch, and the gate against main.
async fn challenger_and_gate(f: &Fleet) -> Result<(), QuickstartError> {
    say(
        "2. a challenger: a pull request that sharpens the HR assistant's answers (hr-ops-pack 1.0.0 -> 1.1.0)",
    );
    git(&f.work, &["switch", "-q", "-c", "sharper-hr-answers"])?;
    edit(
        &f.hr().join("prompts/role.md"),
        "- Look up the policy before answering",
        "- Lead with the policy's answer in one sentence.\n- Look up the policy before answering",
    )?;
    edit(
        &f.hr().join("pack.yaml"),
        "version: 1.0.0",
        "version: 1.1.0",
    )?;
    git(&f.work, &["commit", "-qam", "Sharper HR answers"])?;
    say(
        "\n3. the gate: challenger (branch) against champion (main) on every affected scope chain, with the built-in demo model",
    );
    let evidence = f.dir.join("evidence");
    let (ev, first) = gate_against_main(f, "sharper-hr-answers", Some(evidence.clone())).await?;
    say(&format!("   {first}"));
    if let Some(p) = ev.packs.first() {
        say(&format!(
            "   {}: {} chains, {} paired cases, pass rate {:.0}% -> {:.0}%, model requests {} (cost ${:.4})",
            p.pack_id,
            p.chains_evaluated,
            p.pairs,
            p.champion_pass_rate.unwrap_or(0.0) * 100.0,
            p.challenger_pass_rate.unwrap_or(0.0) * 100.0,
            ev.model_requests,
            ev.cost_usd
        ));
    }
    say(&format!(
        "   evidence: {}/evidence.md\n",
        evidence.display()
    ));
    if ev.blocked {
        return Err(QuickstartError::Step(format!(
            "the gate blocked the example challenger: {first}"
        )));
    }
    Ok(())
}

/// Step 4: the merge is a promotion.
async fn merge(f: &Fleet) -> Result<(), QuickstartError> {
    say("4. merge: the pull request lands on main; the merge is a promotion");
    git(&f.work, &["switch", "-q", "main"])?;
    git(
        &f.work,
        &[
            "merge",
            "-q",
            "--no-ff",
            "sharper-hr-answers",
            "-m",
            "Merge pull request #1 from acme/sharper-hr-answers",
        ],
    )?;
    git(&f.work, &["push", "-q", "origin", "main"])?;
    for d in &f.publish().await?.decisions {
        say(&format!(
            "   decision: {} {} {} -> {} (PR #{})",
            d.decision,
            d.pack_id,
            d.champion_pack_version.as_deref().unwrap_or("-"),
            d.challenger_pack_version,
            d.pull_request.unwrap_or(0)
        ));
    }
    Ok(())
}

/// Step 6: a bad version merged, canaried, rolled back by missionctl's own revert.
async fn bad_version(f: &Fleet) -> Result<(), QuickstartError> {
    say(
        "\n6. a bad version: a later change drops the escalation rule, passes review, and is merged (hr-ops-pack 1.2.0)",
    );
    edit(
        &f.hr().join("prompts/procedures.md"),
        "are never handled by you: set `\"escalate\": true`,",
        "are handled by you when you can;",
    )?;
    edit(
        &f.hr().join("pack.yaml"),
        "version: 1.1.0",
        "version: 1.2.0",
    )?;
    git(
        &f.work,
        &[
            "commit",
            "-qam",
            "Let the assistant handle sensitive matters",
        ],
    )?;
    git(&f.work, &["push", "-q", "origin", "main"])?;
    f.publish().await?;
    canary(&f.reg, &f.store, 0.80, "1.2.0").await?;
    // The revert lands on main: the reconciler sees it like any revert.
    f.publish().await?;
    let head = git(&f.remote, &["log", "-1", "--format=%h %s", "main"])?;
    say(&format!(
        "   git agrees: main is now at `{head}` in {}",
        f.remote.display()
    ));
    Ok(())
}

/// Step 7: the worker proposes a fix for the rolled-back change, and the
/// gate passes it. Nothing is merged: that stays with reviewers.
async fn improve(f: &Fleet) -> Result<(), QuickstartError> {
    say(
        "\n7. the improvement worker: the author re-proposes the rolled-back change on a branch; `missionctl improve` reads what it gets wrong and proposes a fix",
    );
    git(&f.work, &["pull", "-q", "--ff-only", "origin", "main"])?;
    git(&f.work, &["switch", "-q", "-c", "sensitive-matters"])?;
    git(&f.work, &["revert", "--no-edit", "HEAD"])?;
    let report = missionctl::improve::run(&missionctl::improve::ImproveOptions {
        repo: f.work.clone(),
        pack_id: "hr-ops-pack".into(),
        base: "sensitive-matters".into(),
        db_url: f.db.clone(),
        store: Some(f.store.clone()),
        budget_usd: None,
        max_candidates: None,
        publish: missionctl::improve::Publish::Branch,
        on_step: None,
    })
    .await
    .map_err(step("improve"))?;
    say(&format!(
        "   signal: {} failing case(s): {}",
        report.failures.len(),
        report
            .failures
            .iter()
            .map(|c| c.case_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let (Some(w), Some(branch)) = (report.winner(), report.branch.as_deref()) else {
        return Err(QuickstartError::Step(format!(
            "the worker proposed nothing: {}",
            report.no_winner.as_deref().unwrap_or(&report.stop_detail)
        )));
    };
    say(&format!(
        "   the worker proposes {} on branch {branch} ({} candidate(s), ${:.4}): fixes {}",
        w.version,
        report.candidates.len(),
        report.spend_usd,
        w.fixed.join(", ")
    ));
    let (ev, first) = gate_against_main(f, branch, None).await?;
    say(&format!(
        "   the gate on the proposal against main: {first}\n   it waits for review like any pull request (missionctl improve --open-pr opens one)"
    ));
    if ev.blocked {
        return Err(QuickstartError::Step(format!(
            "the gate blocked the worker's proposal: {first}"
        )));
    }
    Ok(())
}

/// Step 8: the decision history.
async fn history(f: &Fleet) -> Result<(), QuickstartError> {
    say("\n8. the decision history (missionctl decisions):");
    let decisions = f
        .store
        .decisions(Some("hr-ops-pack"))
        .await
        .map_err(step("decisions"))?;
    for d in decisions {
        say(&format!(
            "   {:<8} {} -> {}  [{:.8}] {}",
            d.decision.as_str(),
            d.champion_pack_version.as_deref().unwrap_or("-"),
            d.challenger_pack_version,
            d.commit,
            clip(&d.reason, 110)
        ));
    }
    say(&format!(
        "\nDone. Everything is in {}: the remote fleet.git, the clone work/, the evidence, and state.db.\nTry: missionctl decisions --db {db}\n     missionctl status --all --db {db}",
        f.dir.display(),
        db = shell_word(&f.db)
    ));
    say(&format!(
        "\nSee it in the fleet console (packs, rollouts, runs, decisions, the improve run):\n     {}\n     then open the one-time sign-in link it prints (loopback only, single use).",
        serve_command(&f.dir)
    ));
    Ok(())
}

/// The `serve` command that shows the quickstart's fleet in the console.
pub(super) fn serve_command(dir: &Path) -> String {
    let db = format!("sqlite://{}", dir.join("state.db").display());
    format!(
        "missionctl serve --repo {} --db {} --listen 127.0.0.1:8080",
        shell_word(path(&dir.join("fleet.git"))),
        shell_word(&db)
    )
}

/// `s` as one POSIX shell word, quoted only when it needs to be (a path
/// printed for copying into a terminal). Written by hand: four lines, not
/// worth a crate.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-:+=,@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `s` in at most `max` characters, cut at a word boundary with `…` when
/// it is longer.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let head: String = s.chars().take(max.saturating_sub(1)).collect();
    let cut = head
        .rfind(char::is_whitespace)
        .map_or(head.as_str(), |i| &head[..i]);
    format!("{}…", cut.trim_end_matches([',', ';', ':', ' ']))
}

/// Run the loop in `dir` (a new temporary directory if None).
pub async fn run(dir: Option<PathBuf>) -> Result<(), QuickstartError> {
    let dir = match dir {
        Some(d) => d,
        None => tempfile::Builder::new()
            .prefix("missionctl-quickstart-")
            .tempdir()
            .map_err(step("making a directory"))?
            .keep(),
    };
    let f = setup(dir).await?;
    challenger_and_gate(&f).await?;
    merge(&f).await?;
    say(
        "\n5. canary: harnesses resolve through the registry; users are split by a stable hash and report every run",
    );
    canary(&f.reg, &f.store, 0.97, "1.1.0").await?;
    bad_version(&f).await?;
    improve(&f).await?;
    history(&f).await
}

async fn publish(
    source: &Source,
    store: &Store,
    reg: &Arc<Registry>,
) -> Result<reconcile::Outcome, QuickstartError> {
    let out = reconcile::reconcile(source, store, &Options::default())
        .await
        .map_err(step("reconcile"))?;
    controller::on_pass(reg, &out)
        .await
        .map_err(step("registry"))?;
    Ok(out)
}

async fn canary(
    reg: &Arc<Registry>,
    store: &Store,
    canary_ok: f64,
    version: &str,
) -> Result<(), QuickstartError> {
    for round in 0..40 {
        // The share this round's traffic runs at (the tick below may move it).
        let ran_at = controller::status(store, true)
            .await
            .map_err(step("status"))?
            .iter()
            .find(|r| r.canary_version.starts_with(version))
            .map_or(0, |r| r.percent);
        let (rows, champion, canary) = traffic(reg, &format!("{version}-{round}"), 600, canary_ok);
        let snap = reg.snapshot.load_full();
        let rep = missionctl::registry::ingest::ingest(store, &rows, &TenantScope(None), &|row| {
            snap.attribute(row)
        })
        .await
        .map_err(step("telemetry"))?;
        let events = controller::tick(reg, time::OffsetDateTime::now_utc())
            .await
            .map_err(step("canary"))?;
        let st = controller::status(store, true)
            .await
            .map_err(step("status"))?;
        let r = st.iter().find(|r| r.canary_version.starts_with(version));
        say(&format!(
            "   round {round}: {} runs stored ({champion} champion, {canary} canary) at {ran_at}% canary",
            rep.accepted
        ));
        for e in events {
            say(&format!("   -> {e}"));
        }
        if let Some(r) = r
            && r.state != RolloutState::Running
        {
            say(&format!(
                "   rollout {}: {}",
                r.state,
                r.detail.as_ref().map_or("", |d| d.why.as_str())
            ));
            return Ok(());
        }
    }
    Err(QuickstartError::Step("the canary did not conclude".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_paths_are_one_shell_word() {
        assert_eq!(
            shell_word("/tmp/missionctl-quickstart-x1/fleet.git"),
            "/tmp/missionctl-quickstart-x1/fleet.git"
        );
        assert_eq!(shell_word("/tmp/my fleet/it's"), "'/tmp/my fleet/it'\\''s'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(
            serve_command(Path::new("/tmp/q")),
            "missionctl serve --repo /tmp/q/fleet.git --db sqlite:///tmp/q/state.db --listen 127.0.0.1:8080"
        );
    }

    #[test]
    fn clip_cuts_at_a_word_boundary() {
        let reason = "canary success rate 62.0% is below the champion's 97.0% by more than the allowed regression";
        let c = super::clip(reason, 40);
        assert!(c.chars().count() <= 40, "{c}");
        assert!(c.ends_with('…'), "{c}");
        let kept = c.trim_end_matches('…');
        assert!(reason.starts_with(kept), "{c}");
        assert_eq!(
            reason[kept.len()..].chars().next(),
            Some(' '),
            "cut mid-word: {c}"
        );
        assert_eq!(super::clip("short", 40), "short");
    }
}
