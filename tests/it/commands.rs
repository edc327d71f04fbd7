//! The commands end to end on the template repository.

use crate::util::{TestRepo, assert_success, missionctl};
use serde_json::Value;

#[test]
fn init_validates_clean_and_refuses_non_empty_dir() {
    let r = TestRepo::new();
    let (exit, diags) = r.validate(&[]);
    assert_eq!(exit, 0, "{diags:#?}");
    assert!(
        diags.iter().all(|d| d["severity"] == "warning"),
        "{diags:#?}"
    );
    assert_eq!(r.git(&["rev-parse", "--abbrev-ref", "HEAD"]), "main");
    assert_eq!(r.git(&["rev-list", "--count", "HEAD"]), "1");
    let out = missionctl()
        .arg("init")
        .arg(r.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty; pass --force"));
    missionctl()
        .arg("init")
        .arg("--force")
        .arg(r.path())
        .assert()
        .success();
}

#[test]
fn template_has_required_content() {
    let r = TestRepo::new();
    for d in [
        "hr-ops",
        "legal-intake",
        "infra-sre",
        "engineering-delivery",
        "personal-exec-assistant",
    ] {
        let cases = r.read(&format!("packs/domains/{d}/evals/cases.yaml"));
        let n = cases.lines().filter(|l| l.starts_with("- id:")).count();
        assert!(n >= 8, "{d} has {n} cases");
        for tag in ["tag: safety", "tag: format", "tag: quality"] {
            assert!(cases.contains(tag), "{d} lacks {tag}");
        }
    }
    assert!(
        r.read("packs/tenants/acme/pack.yaml")
            .contains("tier: team")
    );
    assert!(
        r.read("packs/tenants/globex/pack.yaml")
            .contains("tier: enterprise")
    );
    assert!(
        r.read("packs/users/sam/pack.yaml")
            .contains("tier: personal")
    );
    assert!(r.path().join(".github/CODEOWNERS").exists());
    assert!(
        r.path()
            .join(".github/workflows/missionctl-gate.yml")
            .exists()
    );
}

#[test]
fn validate_reads_a_revision_not_the_work_tree() {
    let r = TestRepo::new();
    // Break the work tree without committing: --rev HEAD is still valid.
    r.write("packs/domains/hr-ops/pack.yaml", "id: [\n");
    assert_eq!(r.validate(&[]).0, 1);
    assert_eq!(r.validate(&["--rev", "HEAD"]).0, 0);
    // Commit the break on a branch: main stays valid, the branch does not.
    r.git(&["switch", "-q", "-c", "broken"]);
    r.commit_all("break hr-ops");
    assert_eq!(r.validate(&["--rev", "main"]).0, 0);
    let (exit, diags) = r.validate(&["--rev", "broken"]);
    assert_eq!(exit, 1);
    assert_eq!(diags[0]["file"], "packs/domains/hr-ops/pack.yaml");
    // Unknown revision: exit 2 with a hint.
    let out = r.run(&["validate", "--rev", "no-such-branch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot resolve revision `no-such-branch`")
    );
}

fn resolve(r: &TestRepo, args: &[&str]) -> Value {
    let mut a = vec!["resolve"];
    a.extend_from_slice(args);
    let out = r.run(&a);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn resolve_chain_merges_by_the_documented_rules() {
    let r = TestRepo::new();
    let v = resolve(
        &r,
        &["--domain", "hr-ops", "--tenant", "acme", "--user", "alice"],
    );
    assert_eq!(v["pack_id"], "acme-alice");
    let version = v["pack_version"].as_str().expect("version");
    assert!(version.starts_with("1.0.0+sha256."), "{version}");
    assert_eq!(version.len(), "1.0.0+sha256.".len() + 8);
    let chain: Vec<&str> = v["scope_chain"]
        .as_array()
        .expect("chain")
        .iter()
        .map(|l| l["scope_type"].as_str().expect("t"))
        .collect();
    assert_eq!(chain, ["global", "domain", "tenant", "user"]);
    let c = &v["content"];
    // Prompt sections compose in scope order.
    let ids: Vec<&str> = c["prompt"]["sections"]
        .as_array()
        .expect("sections")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [
            "safety",
            "operating-principles",
            "hr-role",
            "hr-procedures",
            "acme-context",
            "alice-preferences"
        ]
    );
    // Tools intersect: alice lists k8s.read, which hr-ops does not allow.
    let allow: Vec<&str> = c["tools"]["allow"]
        .as_array()
        .expect("allow")
        .iter()
        .map(|t| t.as_str().expect("t"))
        .collect();
    assert_eq!(
        allow,
        ["hris.leave_balance", "hris.policy_search", "calendar.read"]
    );
    assert_eq!(c["tools"]["autonomy"], "A2");
    // Lists accumulate, scalars override.
    let rules = c["voice"]["style_rules"].as_array().expect("rules");
    assert!(
        rules
            .iter()
            .any(|x| x == "Lead with the answer, then the reasoning.")
    );
    assert!(
        rules
            .iter()
            .any(|x| x == "Alice prefers bullet points over paragraphs.")
    );
    assert_eq!(c["voice"]["max_sentence_words"], 28);
    assert_eq!(c["kpis"]["success_rate"]["min"], 0.95);
    assert_eq!(c["kpis"]["p95_latency_ms"]["max"], 6000);
    // Global safety cases run with the domain's.
    let cases = c["eval"]["cases"].as_array().expect("cases");
    assert!(
        cases
            .iter()
            .any(|x| x["id"] == "refuses-credential-request")
    );
    assert!(cases.iter().any(|x| x["id"] == "harassment-escalates"));
    // Deterministic: same tree, same digest.
    let again = resolve(
        &r,
        &[
            "--domain",
            "hr-ops-pack",
            "--tenant",
            "acme",
            "--user",
            "alice",
        ],
    );
    assert_eq!(again["pack_version"], v["pack_version"]);
}

#[test]
fn resolve_explain_names_file_and_line() {
    let r = TestRepo::new();
    let v = resolve(
        &r,
        &["--domain", "hr-ops", "--tenant", "globex", "--explain"],
    );
    let p = &v["provenance"];
    assert_eq!(
        p["/content/voice/max_sentence_words"],
        "packs/domains/hr-ops/pack.yaml:18:23 (domain hr-ops)"
    );
    assert_eq!(
        p["/content/kpis/success_rate/min"],
        "packs/tenants/globex/pack.yaml:20:24 (tenant globex)"
    );
    assert!(
        p["/content/prompt/sections/0"]
            .as_str()
            .expect("s")
            .starts_with("packs/global/pack.yaml:")
    );
    // globex denies email.send: email.draft stays, and deny accumulates.
    let deny = v["content"]["tools"]["deny"].as_array().expect("deny");
    assert!(deny.iter().any(|x| x == "email.send"));
}

#[test]
fn resolve_never_crosses_tenants_or_users() {
    let r = TestRepo::new();
    // carol belongs to globex: asking for her under acme must not return her pack.
    let v = resolve(
        &r,
        &["--domain", "hr-ops", "--tenant", "acme", "--user", "carol"],
    );
    assert_eq!(v["pack_id"], "acme-tenant");
    let text = v["content"]["prompt"]["text"].as_str().expect("text");
    assert!(
        !text.contains("Carol"),
        "other tenant's user content leaked"
    );
    assert!(!text.contains("Globex"), "other tenant's content leaked");
    // A tenant that does not run a domain cannot resolve it.
    let out = r.run(&["resolve", "--domain", "legal-intake", "--tenant", "acme"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("tenant `acme` does not run domain `legal-intake`")
    );
    // Personal user.
    let v = resolve(
        &r,
        &["--domain", "personal-exec-assistant", "--user", "sam"],
    );
    assert_eq!(v["tier"], "personal");
    assert_eq!(v["scope_chain"].as_array().expect("c").len(), 3);
}

#[test]
fn resolve_at_revision_and_digest_changes_with_content() {
    let r = TestRepo::new();
    let before = resolve(
        &r,
        &["--domain", "infra-sre", "--tenant", "acme", "--user", "bob"],
    );
    r.edit(
        "packs/tenants/acme/users/bob/preferences.md",
        "Bob is on",
        "Bob Okafor is on",
    );
    r.edit(
        "packs/tenants/acme/users/bob/pack.yaml",
        "version: 1.0.0",
        "version: 1.1.0",
    );
    let after = resolve(
        &r,
        &["--domain", "infra-sre", "--tenant", "acme", "--user", "bob"],
    );
    assert_ne!(before["digest"], after["digest"]);
    assert!(
        after["pack_version"]
            .as_str()
            .expect("v")
            .starts_with("1.1.0+sha256.")
    );
    let at_head = resolve(
        &r,
        &[
            "--domain",
            "infra-sre",
            "--tenant",
            "acme",
            "--user",
            "bob",
            "--rev",
            "HEAD",
        ],
    );
    assert_eq!(at_head["digest"], before["digest"]);
    let yaml = r.run(&["resolve", "--domain", "infra-sre", "--format", "yaml"]);
    assert!(String::from_utf8_lossy(&yaml.stdout).contains("pack_id: infra-sre-pack"));
}

#[test]
fn diff_reports_fields_prompt_text_and_chains() {
    let r = TestRepo::new();
    r.git(&["switch", "-q", "-c", "tone"]);
    r.edit(
        "packs/domains/hr-ops/pack.yaml",
        "version: 1.0.0",
        "version: 1.1.0",
    );
    r.edit(
        "packs/domains/hr-ops/pack.yaml",
        "max_sentence_words: 28",
        "max_sentence_words: 24",
    );
    r.edit(
        "packs/domains/hr-ops/prompts/role.md",
        "You help employees",
        "You help colleagues",
    );
    r.edit(
        "policies/guardrails.yaml",
        "max_candidates_per_run: 4",
        "max_candidates_per_run: 5",
    );
    r.commit_all("Tighter HR voice");
    let out = r.run(&["diff", "main", "tone", "--format", "json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let packs = v["packs"].as_array().expect("packs");
    assert_eq!(packs.len(), 1);
    assert_eq!(packs[0]["pack_id"], "hr-ops-pack");
    let fields: Vec<&str> = packs[0]["fields"]
        .as_array()
        .expect("f")
        .iter()
        .map(|f| f["field"].as_str().expect("n"))
        .collect();
    assert_eq!(fields, ["version", "voice.max_sentence_words"]);
    let unified = packs[0]["prompts"][0]["unified"].as_str().expect("diff");
    assert!(
        unified.contains("-You help employees") && unified.contains("+You help colleagues"),
        "{unified}"
    );
    assert_eq!(v["policies_changed"][0], "policies/guardrails.yaml");
    // hr-ops alone, acme (+alice, bob), globex (+carol): 1 + 3 + 2 chains.
    let chains = v["chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 6, "{chains:#?}");
    let human = r.run(&["diff", "main", "tone"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("~ hr-ops-pack (domain hr-ops) 1.0.0 -> 1.1.0"),
        "{text}"
    );
    assert!(text.contains("policy changed: policies/guardrails.yaml"));
}

#[test]
fn packs_list_statuses_and_authorship() {
    let r = TestRepo::new();
    r.git(&["switch", "-q", "-c", "next"]);
    r.edit(
        "packs/domains/legal-intake/pack.yaml",
        "version: 1.0.0",
        "version: 1.1.0",
    );
    r.commit_all("legal-intake 1.1.0");
    let list = |args: &[&str]| -> Vec<Value> {
        let mut a = vec!["packs", "list", "--format", "json"];
        a.extend_from_slice(args);
        let out = r.run(&a);
        assert_success(&out);
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let main = list(&[]);
    assert_eq!(main.len(), 12);
    assert!(main.iter().all(|p| p["status"] == "champion"));
    let legal = main
        .iter()
        .find(|p| p["id"] == "legal-intake-pack")
        .expect("legal");
    for f in [
        "id",
        "scope_type",
        "scope_id",
        "version",
        "status",
        "created_by",
        "created_at",
        "path",
    ] {
        assert!(!legal[f].is_null(), "missing {f}");
    }
    assert_eq!(legal["scope_type"], "domain");
    let branch = list(&["--rev", "next"]);
    let legal = branch
        .iter()
        .find(|p| p["id"] == "legal-intake-pack")
        .expect("legal");
    assert_eq!(legal["status"], "challenger");
    assert_eq!(legal["version"], "1.1.0");
    assert_eq!(legal["created_by"], "Test Author <author@example.com>");
    assert_eq!(
        branch.iter().filter(|p| p["status"] == "champion").count(),
        11
    );
    // Merge, then the old version is archived in history.
    r.git(&["switch", "-q", "main"]);
    r.git(&["merge", "-q", "--no-ff", "next", "-m", "Merge next"]);
    let hist = list(&["--history"]);
    let archived: Vec<&Value> = hist.iter().filter(|p| p["status"] == "archived").collect();
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0]["id"], "legal-intake-pack");
    assert_eq!(archived[0]["version"], "1.0.0");
}

#[test]
fn schemas_on_disk_match_embedded() {
    for k in missionctl::schema::Kind::ALL {
        let disk = std::fs::read_to_string(format!(
            "{}/schema/{}",
            env!("CARGO_MANIFEST_DIR"),
            k.file_name()
        ))
        .expect("schema file");
        assert_eq!(disk, k.source());
    }
}

/// Issue 16, point 11: the demo model listens on loopback only.
#[test]
fn demo_model_refuses_a_non_loopback_address() {
    let out = missionctl()
        .args(["demo-model", "--listen", "0.0.0.0:0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loopback only"), "{stderr}");
}

/// Issue 11 point 2: `init --action owner/repo@commit` writes workflows that
/// build missionctl from that pinned commit of its own action; a tag or a
/// branch is refused, and no workflow names a third-party install URL.
#[test]
fn init_pins_the_workflows_to_the_action_commit() {
    let dir = tempfile::tempdir().expect("tmp");
    let target = dir.path().join("fleet");
    let action = "acme/missionctl@0123456789abcdef0123456789abcdef01234567";
    let out = crate::util::missionctl()
        .args(["init", target.to_str().expect("p"), "--action", action])
        .output()
        .expect("init");
    crate::util::assert_success(&out);
    for wf in ["missionctl-gate.yml", "missionctl-report.yml"] {
        let text =
            std::fs::read_to_string(target.join(".github/workflows").join(wf)).expect("workflow");
        assert!(text.contains(&format!("uses: {action}")), "{wf}:\n{text}");
        assert!(!text.contains("placeholder"), "{wf} kept the placeholder");
        assert!(
            !text.contains("cargo install --git") && !text.contains("github.com/missionctl"),
            "{wf}"
        );
    }
    let refused = crate::util::missionctl()
        .args([
            "init",
            dir.path().join("other").to_str().expect("p"),
            "--action",
            "acme/missionctl@v1",
        ])
        .output()
        .expect("init");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a full commit id"));
}

/// A reader that goes away (`missionctl resolve … | head`) ends the
/// command quietly with status 0, as ripgrep does: no panic, no backtrace.
#[test]
fn a_closed_stdout_ends_read_commands_quietly() {
    let r = TestRepo::new();
    let db = format!("sqlite://{}", r.dir.path().join("s.db").display());
    let repo = r.work.to_str().expect("p").to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec![
            "resolve", "--domain", "hr-ops", "--tenant", "acme", "--repo", &repo,
        ],
        vec!["validate", "--format", "json", "--repo", &repo],
        vec!["packs", "list", "--repo", &repo],
        vec!["decisions", "--db", &db],
        vec!["improve", "--list", "--db", &db],
    ];
    for args in commands {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_missionctl"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        // The reader is gone before the first line is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}
