//! Issue 26: every command finds the pack repository from any subfolder and
//! resolves the state store the same way (flag, environment, mission.yaml,
//! default), and nothing is written under $HOME.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::reconcile::{Served, free_port, wait_http};
use crate::util::{TestRepo, assert_success, git, missionctl};

/// `missionctl ARGS` in `cwd` with HOME (and the XDG directories) pointed
/// at `home`, so that anything written there is seen.
fn run_in(cwd: &Path, home: &Path, args: &[&str]) -> Output {
    missionctl()
        .current_dir(cwd)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .args(args)
        .output()
        .expect("run missionctl")
}

/// The `store: …` line `-v` printed.
fn store_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.starts_with("store: "))
        .unwrap_or_else(|| {
            panic!(
                "no `store:` line under -v: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

fn decisions_from(cwd: &Path, home: &Path) -> Vec<Value> {
    let out = run_in(cwd, home, &["decisions", "--format", "json"]);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).expect("decisions prints JSON")
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            found.push(p);
        }
    }
    found
}

/// The "done when": in an `init` repository, `reconcile --once`,
/// then `decisions` from `packs/` shows the decisions; a gate, improve and
/// serve in it share that one store (mission.yaml's
/// `.missionctl/state.db`); nothing appears under $HOME.
#[test]
fn an_init_repository_has_one_store_for_every_command_and_nothing_under_home() {
    let r = TestRepo::new();
    let home = tempfile::tempdir().expect("home");
    let home = home.path();
    let root = std::fs::canonicalize(&r.work).expect("canon");
    let packs = root.join("packs");
    let expected = format!(
        "store: sqlite://{} (from store.url in {})",
        root.join(".missionctl/state.db").display(),
        root.join("mission.yaml").display()
    );

    let out = run_in(
        &root,
        home,
        &["reconcile", "--once", "--format", "json", "-v"],
    );
    assert_success(&out);
    assert_eq!(store_line(&out), expected);
    let reconciled: Value = serde_json::from_slice(&out.stdout).expect("json");
    let made = reconciled["decisions"].as_array().expect("decisions").len();
    assert!(
        made > 0,
        "the initial import decides every pack: {reconciled}"
    );
    let seen = decisions_from(&packs, home);
    assert_eq!(seen.len(), made, "decisions from packs/ shows reconcile's");
    assert_eq!(seen[0]["commit"], reconciled["tip"]);

    // A gate from a subfolder, on a challenger branch.
    r.git(&["switch", "-q", "-c", "tone"]);
    r.edit(
        "packs/domains/hr-ops/prompts/role.md",
        "workplace\npolicies",
        "workplace\nPolicies",
    );
    crate::reconcile::bump(&r, "packs/domains/hr-ops/pack.yaml", "1.1.0");
    r.commit_all("tone");
    r.git(&["switch", "-q", "main"]);
    let evidence = r.dir.path().join("evidence");
    let out = run_in(
        &packs.join("domains"),
        home,
        &[
            "gate",
            "--base",
            "main",
            "--head",
            "tone",
            "--out",
            evidence.to_str().expect("p"),
            "-v",
        ],
    );
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "the gate ran: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(evidence.join("evidence.json").is_file());
    assert_eq!(store_line(&out), expected);

    // improve records its run in the same store.
    let out = run_in(
        &packs,
        home,
        &[
            "improve",
            "--pack",
            "legal-intake-pack",
            "--format",
            "json",
            "-v",
        ],
    );
    assert_success(&out);
    assert_eq!(store_line(&out), expected);
    let listed = run_in(&root, home, &["improve", "--list", "--format", "json"]);
    assert_success(&listed);
    let runs: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(runs.as_array().expect("runs").len(), 1, "{runs}");
    assert_eq!(runs[0]["pack_id"], "legal-intake-pack");

    // serve (of a bare clone, as serve requires) run inside the repository
    // reconciles into the same store: its decisions show up in `decisions`.
    let bare = r.dir.path().join("fleet.git");
    git(
        r.dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            root.to_str().expect("p"),
            bare.to_str().expect("p"),
        ],
    );
    let port = free_port();
    let log = r.dir.path().join("serve.log");
    let _served = Served(
        std::process::Command::new(env!("CARGO_BIN_EXE_missionctl"))
            .current_dir(&packs)
            .env("HOME", home)
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("MISSIONCTL_DATABASE_URL")
            .args([
                "serve",
                "-v",
                "--repo",
                bare.to_str().expect("p"),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("serve"),
    );
    wait_http(port);
    // A merged pull request pushed to what serve watches.
    r.git(&[
        "merge",
        "-q",
        "--no-ff",
        "tone",
        "-m",
        "Merge pull request #7 from acme/tone",
    ]);
    let merge = r.git(&["rev-parse", "HEAD"]);
    r.git(&["push", "-q", bare.to_str().expect("p"), "main"]);
    let start = Instant::now();
    while !decisions_from(&root, home)
        .iter()
        .any(|d| d["commit"] == merge.as_str())
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "serve's decisions never reached the repository's store: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let served_log = std::fs::read_to_string(&log).expect("log");
    assert!(served_log.contains(&expected), "{served_log}");

    assert_eq!(
        files_under(home),
        Vec::<PathBuf>::new(),
        "written under $HOME"
    );
    assert!(root.join(".missionctl/state.db").is_file());
}

/// `init` points at `doctor`, which runs from the new repository.
#[test]
fn init_suggests_doctor() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = dir.path().join("fleet");
    let out = missionctl().arg("init").arg(&repo).output().expect("init");
    assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("missionctl doctor"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let home = tempfile::tempdir().expect("home");
    let out = run_in(&repo, home.path(), &["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let root = std::fs::canonicalize(&repo).expect("canon");
    assert!(
        text.contains(&format!("ok    repository  {}", root.display())),
        "{text}"
    );
}

/// Commands run in a subfolder find the repository's root; `--repo`
/// overrides; outside any repository the messages still say what to pass.
#[test]
fn commands_in_a_subfolder_find_the_repository_root() {
    let r = TestRepo::new();
    let home = tempfile::tempdir().expect("home");
    let sub = r.work.join("packs/domains/hr-ops");
    let out = run_in(&sub, home.path(), &["validate", "-v"]);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let root = std::fs::canonicalize(&r.work).expect("canon");
    assert!(
        stderr.contains(&format!("repository: {}", root.display())),
        "{stderr}"
    );
    assert!(stderr.contains("valid:"), "{stderr}");

    let out = run_in(
        &sub,
        home.path(),
        &["resolve", "--domain", "hr-ops", "--tenant", "acme"],
    );
    assert_success(&out);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["pack_id"], "acme-tenant", "{v}");

    // `--repo` wins over the directory the command runs in.
    let other = TestRepo::new();
    other.remove("packs/global/pack.yaml");
    let out = run_in(
        &sub,
        home.path(),
        &["validate", "--repo", other.work.to_str().expect("p")],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the other repository is invalid"
    );

    // Outside any repository: the current directory, and the error says so.
    let empty = tempfile::tempdir().expect("empty");
    let out = run_in(
        empty.path(),
        home.path(),
        &["gate", "--base", "main", "--head", "HEAD"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(files_under(home.path()).is_empty());
}

/// Migration: a store in the old default place (where serve, reconcile,
/// decisions, status and telemetry ingest kept it) is pointed out when
/// mission.yaml's store does not exist yet, with how to keep its history.
#[test]
fn a_store_in_the_old_default_place_is_pointed_out() {
    let r = TestRepo::new();
    let home = tempfile::tempdir().expect("home");
    let old = home.path().join(".local/share/missionctl/state.db");
    let old_url = format!("sqlite://{}", old.display());
    // History made the old way: reconciled into the default store.
    let out = run_in(
        &r.work,
        home.path(),
        &["reconcile", "--once", "--db", &old_url],
    );
    assert_success(&out);
    assert!(old.is_file());

    let out = run_in(&r.work.join("packs"), home.path(), &["decisions"]);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("pass --db {old_url}")) && stderr.contains(".missionctl/"),
        "{stderr}"
    );
    // Following the advice finds the history.
    let out = run_in(
        &r.work,
        home.path(),
        &["decisions", "--format", "json", "--db", &old_url],
    );
    assert_success(&out);
    let kept: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(!kept.as_array().expect("list").is_empty());
    // The warned command created mission.yaml's store: nothing more is said.
    let out = run_in(&r.work, home.path(), &["decisions"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{out:?}"
    );
}

/// Hostile review (issue 26): the README's commands name the bare clone
/// (`--repo ../fleet.git`); every command given it from the work tree
/// resolves the same store, the work tree's mission.yaml's, and nothing
/// lands under $HOME.
#[test]
fn a_bare_repo_flag_resolves_the_same_store_for_every_command() {
    let r = TestRepo::new();
    let home = tempfile::tempdir().expect("home");
    let home = home.path();
    let root = std::fs::canonicalize(&r.work).expect("canon");
    let bare = r.dir.path().join("fleet.git");
    git(
        r.dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            root.to_str().expect("p"),
            bare.to_str().expect("p"),
        ],
    );
    let bare = bare.to_str().expect("p");
    let expected = format!(
        "store: sqlite://{} (from store.url in {})",
        root.join(".missionctl/state.db").display(),
        root.join("mission.yaml").display()
    );
    let out = run_in(&root, home, &["reconcile", "--repo", bare, "--once", "-v"]);
    assert_success(&out);
    assert_eq!(store_line(&out), expected);
    for args in [
        vec!["decisions", "--repo", bare, "--format", "json", "-v"],
        vec!["status", "--repo", bare, "-v"],
    ] {
        let out = run_in(&root.join("packs"), home, &args);
        assert_success(&out);
        assert_eq!(store_line(&out), expected, "{args:?}");
    }
    let out = run_in(
        &root,
        home,
        &["decisions", "--repo", bare, "--format", "json"],
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(!seen.as_array().expect("decisions").is_empty(), "{seen}");
    assert!(files_under(home).is_empty(), "{:?}", files_under(home));
}

/// Hostile review (issue 26): a schema error elsewhere in mission.yaml
/// does not move the store to $HOME (validate reports it; the store stays
/// where store.url says), and a store.url that is no store URL, or a
/// mission.yaml that is not a file, is an error naming the file, never a
/// silent fallback; doctor fails on it.
#[test]
fn a_broken_mission_yaml_never_moves_the_store() {
    let r = TestRepo::new();
    let home = tempfile::tempdir().expect("home");
    let home = home.path();
    let root = std::fs::canonicalize(&r.work).expect("canon");
    let mission = r.read("mission.yaml");
    r.write("mission.yaml", &format!("{mission}\nbogus_key: 1\n"));
    let out = run_in(&root.join("packs"), home, &["decisions", "-v"]);
    assert_success(&out);
    assert!(
        store_line(&out).contains(".missionctl/state.db (from store.url in"),
        "{}",
        store_line(&out)
    );
    for bad in ["mysql://x", "sqlite:rel.db", "sqlite://~/x.db"] {
        r.write(
            "mission.yaml",
            &mission.replace("url: sqlite://.missionctl/state.db", &format!("url: {bad}")),
        );
        let out = run_in(&root, home, &["status"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains("mission.yaml") && err.contains("store.url"),
            "{bad}: {err}"
        );
        let out = run_in(&root, home, &["doctor", "--format", "json"]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let checks: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert!(
            checks
                .as_array()
                .expect("checks")
                .iter()
                .any(|c| c["name"] == "store" && c["status"] == "fail"),
            "{bad}: {checks}"
        );
    }
    std::fs::remove_file(root.join("mission.yaml")).expect("rm");
    std::fs::create_dir(root.join("mission.yaml")).expect("dir");
    let out = run_in(&root, home, &["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    assert!(files_under(home).is_empty(), "{:?}", files_under(home));
}
