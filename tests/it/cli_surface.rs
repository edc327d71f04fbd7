//! Issue 26: the command line's own surface: tokens files `token new`
//! writes, `--version`, shell completions, `doctor`.

use std::path::Path;

use crate::util::{assert_success, missionctl};

fn token_new(file: Option<&Path>, name: &str, tenant: Option<&str>) -> std::process::Output {
    let mut c = missionctl();
    c.args(["token", "new", "--name", name, "--role", "harness"]);
    if let Some(f) = file {
        c.arg("--tokens-file").arg(f);
    }
    if let Some(t) = tenant {
        c.args(["--tenant", t]);
    }
    c.output().expect("run token new")
}

/// The tokens a file accepts, checked by the library that `serve` loads it with.
fn accepts(file: &Path, token: &str) -> Option<String> {
    let tokens = missionctl::registry::auth::Tokens::load(file)
        .unwrap_or_else(|e| panic!("{} does not load: {e}", file.display()));
    tokens
        .check(Some(&format!("Bearer {token}")))
        .map(|t| t.name.clone())
}

#[test]
fn token_new_without_a_file_prints_a_complete_tokens_file() {
    let out = token_new(None, "harness-acme", Some("acme"));
    assert_success(&out);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let start = stderr
        .find("tokens:\n")
        .unwrap_or_else(|| panic!("no `tokens:` key in what was printed: {stderr}"));
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("tokens.yaml");
    std::fs::write(&file, &stderr[start..]).expect("write");
    assert_eq!(accepts(&file, &token).as_deref(), Some("harness-acme"));
    // All of stderr is the file (its prose is YAML comments): `2>tokens.yaml` works.
    std::fs::write(&file, stderr.as_bytes()).expect("write");
    assert_eq!(accepts(&file, &token).as_deref(), Some("harness-acme"));
}

/// Hostile review (issue 26): a name or tenant a tokens file would not
/// hold as given (YAML syntax, a comment, an empty value, quotes, a space)
/// is refused before anything is written, for a new file and an existing
/// one alike; a tenant is never silently cut short (`acme #prod`).
#[test]
fn token_new_refuses_names_and_tenants_a_file_would_not_hold() {
    let dir = tempfile::tempdir().expect("tmp");
    for (i, (name, tenant)) in [
        ("a: b", None),
        ("#x", None),
        ("", None),
        ("x'", None),
        ("x ", None),
        ("\"x\"", None),
        ("ok", Some("acme #prod")),
        ("ok", Some("")),
        ("ok", Some("user:")),
    ]
    .into_iter()
    .enumerate()
    {
        let file = dir.path().join(format!("t{i}.yaml"));
        let out = token_new(Some(&file), name, tenant);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name:?} {tenant:?}: {err}");
        assert!(
            err.contains("--name") || err.contains("--tenant"),
            "{name:?} {tenant:?}: {err}"
        );
        assert!(!file.exists(), "{name:?} {tenant:?}: a file was written");
        let out = token_new(None, name, tenant);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name:?} {tenant:?}: printed anyway"
        );
    }
    // A personal user's tenant is fine.
    let file = dir.path().join("user.yaml");
    let out = token_new(Some(&file), "sam", Some("user:sam"));
    assert_success(&out);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(accepts(&file, &token).as_deref(), Some("sam"));
}

#[test]
fn token_new_with_a_tokens_file_creates_then_appends_and_refuses_a_duplicate_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("tokens.yaml");
    let first = token_new(Some(&file), "one", Some("acme"));
    assert_success(&first);
    let one = String::from_utf8_lossy(&first.stdout).trim().to_string();
    let second = token_new(Some(&file), "two", None);
    assert_success(&second);
    let two = String::from_utf8_lossy(&second.stdout).trim().to_string();
    assert_ne!(one, two);
    assert_eq!(accepts(&file, &one).as_deref(), Some("one"));
    assert_eq!(accepts(&file, &two).as_deref(), Some("two"));
    assert!(!std::fs::read_to_string(&file).expect("read").contains(&one));

    let before = std::fs::read_to_string(&file).expect("read");
    let dup = token_new(Some(&file), "one", None);
    assert_eq!(dup.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&dup.stderr);
    assert!(
        stderr.contains("already has a token named `one`") && stderr.contains("--name"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&file).expect("read"), before);

    // A hand-written file with items flush left is appended in its style.
    let flush = dir.path().join("flush.yaml");
    let first = token_new(None, "x", None);
    let x = String::from_utf8_lossy(&first.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&first.stderr);
    let body = &stderr[stderr.find("tokens:\n").expect("file")..];
    let flush_left: String = body
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    std::fs::write(&flush, flush_left).expect("write");
    let added = token_new(Some(&flush), "y", None);
    assert_success(&added);
    let y = String::from_utf8_lossy(&added.stdout).trim().to_string();
    assert_eq!(accepts(&flush, &x).as_deref(), Some("x"));
    assert_eq!(accepts(&flush, &y).as_deref(), Some("y"));

    // A file that does not load is left alone, and the error names it.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "- name: pasted-alone\n").expect("write");
    let out = token_new(Some(&bad), "z", None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(bad.to_str().expect("p")), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&bad).expect("read"),
        "- name: pasted-alone\n"
    );
}

/// Issue 26, small items: `file/unexpected` points at line 1, column 1.
#[test]
fn an_unexpected_policy_file_is_reported_with_line_and_column() {
    let r = crate::util::TestRepo::new();
    r.write("policies/extra.yaml", "a: 1\n");
    let (_, diags) = r.validate(&[]);
    let d = crate::util::expect_diag(
        &diags,
        "file/unexpected",
        "policies/extra.yaml",
        1,
        "does not read this policy file",
    );
    assert_eq!(d["col"], 1, "{d}");
    let out = r.run(&["validate"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("policies/extra.yaml:1:1"), "{text}");
}

/// Issue 26, small items: a directory or a FIFO where the global pack
/// belongs is reported as what it is, not as a missing file.
#[test]
fn a_directory_or_fifo_in_place_of_the_global_pack_is_named() {
    const GLOBAL: &str = "packs/global/pack.yaml";
    let r = crate::util::TestRepo::new();
    r.remove(GLOBAL);
    std::fs::create_dir(r.work.join(GLOBAL)).expect("mkdir");
    let (code, diags) = r.validate(&[]);
    assert_eq!(code, 1);
    crate::util::expect_diag(
        &diags,
        "ref/not-file",
        GLOBAL,
        0,
        "is a directory, not a file",
    );
    assert!(
        !diags
            .iter()
            .any(|d| d["message"] == "the global pack is missing"),
        "{diags:?}"
    );

    std::fs::remove_dir(r.work.join(GLOBAL)).expect("rmdir");
    let made = std::process::Command::new("mkfifo")
        .arg(r.work.join(GLOBAL))
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let (code, diags) = r.validate(&[]);
    assert_eq!(code, 1);
    crate::util::expect_diag(&diags, "ref/not-file", GLOBAL, 0, "is a FIFO (named pipe)");
}

/// Issue 26, small items: a version-only bump runs no eval case (every
/// chain resolves to what it did), and the verdict says so instead of
/// "1 pack(s) evaluated".
#[test]
fn a_version_only_bump_says_no_eval_case_ran() {
    let r = crate::util::TestRepo::new();
    r.git(&["switch", "-q", "-c", "bump"]);
    crate::reconcile::bump(&r, "packs/domains/hr-ops/pack.yaml", "1.0.1");
    r.commit_all("bump only");
    let (out, dir) = r.evaluate("gate", "bump", &[]);
    assert_success(&out);
    let ev: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("evidence.json")).expect("ev"))
            .expect("json");
    let packs = ev["packs"].as_array().expect("packs");
    assert_eq!(packs.len(), 1, "{ev:#}");
    assert_eq!(packs[0]["pairs"], 0, "{ev:#}");
    let md = std::fs::read_to_string(dir.join("evidence.md")).expect("md");
    assert!(
        md.starts_with("PASS: 1 pack(s) changed, no eval case ran"),
        "{md}"
    );
    assert!(!md.contains("pack(s) evaluated"), "{md}");

    // A content change does run cases, and the line counts them.
    r.git(&["switch", "-q", "-c", "tone", "main"]);
    r.edit(
        "packs/domains/hr-ops/prompts/role.md",
        "workplace\npolicies",
        "workplace\nPolicies",
    );
    crate::reconcile::bump(&r, "packs/domains/hr-ops/pack.yaml", "1.1.0");
    r.commit_all("tone");
    let (out, dir) = r.evaluate("gate", "tone", &[]);
    assert_success(&out);
    let ev: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("evidence.json")).expect("ev"))
            .expect("json");
    let pairs = ev["packs"][0]["pairs"].as_u64().expect("pairs");
    assert!(pairs > 0, "{ev:#}");
    let md = std::fs::read_to_string(dir.join("evidence.md")).expect("md");
    assert!(
        md.starts_with(&format!(
            "PASS: 1 pack(s) changed, {pairs} case pair(s) compared"
        )),
        "{md}"
    );
}

/// Issue 26, small items: `/healthz` carries the commit header like every
/// other answer, and a run naming the tenant's own pack at a version it was
/// never served is audited as that, not as crossing tenants.
#[test]
fn healthz_names_the_commit_and_an_unserved_version_is_audited_as_such() {
    use crate::registry::{get, post_runs, serving_fleet_on};
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let (_dir, f, t, port, _s) = serving_fleet_on(dir, &db);
    let main = crate::util::git(&f.remote, &["rev-parse", "main"]);
    let (code, head, _) = crate::util::http(port, "GET", "/healthz", &[], b"");
    assert_eq!(code, 200);
    assert!(
        head.to_lowercase()
            .contains(&format!("x-missionctl-commit: {main}")),
        "{head}"
    );
    // doctor reaches the registry and names the commit it serves; an
    // address without its scheme (as `--listen` takes it) or a closed port
    // is a failure that says what to write.
    let home = tempfile::tempdir().expect("home");
    let url = format!("http://127.0.0.1:{port}");
    let (_, c) = doctor(&f.remote, home.path(), &["--registry", &url]);
    assert_eq!(c["registry"]["status"], "ok", "{c:#}");
    assert!(
        c["registry"]["value"]
            .as_str()
            .is_some_and(|v| v.contains(&format!("serving commit {}", &main.trim()[..8]))),
        "{c:#}"
    );
    let bare = format!("127.0.0.1:{port}");
    let (code, c) = doctor(&f.remote, home.path(), &["--registry", &bare]);
    assert_eq!(code, 1, "{c:#}");
    assert_eq!(c["registry"]["status"], "fail", "{c:#}");
    assert!(
        c["registry"]["fix"]
            .as_str()
            .is_some_and(|v| v.contains("http://HOST:PORT")),
        "{c:#}"
    );
    let closed = format!("http://127.0.0.1:{}", crate::reconcile::free_port());
    let (code, c) = doctor(&f.remote, home.path(), &["--registry", &closed]);
    assert_eq!(code, 1, "{c:#}");
    assert_eq!(c["registry"]["status"], "fail", "{c:#}");

    let (code, acme) = get(
        port,
        "/v1/resolve?domain=hr-ops&tenant=acme",
        &t.acme_harness,
    );
    assert_eq!(code, 200, "{acme}");
    let row = serde_json::json!({"run_id": "made-up", "tenant_id": "acme", "user_id": "u", "agent_id": "a", "pack_id": acme["pack_id"], "pack_version": "7.7.7+sha256.deadbeef", "task_type": "qa", "latency_ms": 100.0, "cost_usd": 0.001, "success_bool": false, "error_code": "tool_error", "created_at": missionctl::time_util::now_rfc3339()});
    let (code, resp) = post_runs(port, &t.acme_harness, format!("{row}\n").as_bytes());
    assert_eq!(code, 400, "{resp}");
    assert!(resp.contains("is neither what tenant `acme`"), "{resp}");
    let entry = crate::registry::until(
        "the audit entry",
        std::time::Duration::from_secs(10),
        || {
            let log = tokio::runtime::Runtime::new().expect("rt").block_on(async {
                let s = missionctl::store::Store::connect(&db).await.expect("db");
                s.audit_log(100).await.expect("audit")
            });
            log.into_iter().find(|e| {
                e.token == "acme-harness" && e.action == "/v1/runs" && e.outcome == "denied"
            })
        },
    );
    assert!(
        entry
            .detail
            .contains("1 row(s) naming a pack version the tenant was not served"),
        "{entry:?}"
    );
    assert!(
        !entry.detail.contains("outside the token's tenant"),
        "{entry:?}"
    );
}

#[test]
fn version_names_the_commit_and_the_build_date() {
    let out = missionctl().arg("--version").output().expect("run");
    assert_success(&out);
    let v = String::from_utf8_lossy(&out.stdout);
    let re = regex::Regex::new(&format!(
        r"^missionctl {} \((commit [0-9a-f]{{40}}|unknown commit), built \d{{4}}-\d{{2}}-\d{{2}}\)\n$",
        regex::escape(env!("CARGO_PKG_VERSION"))
    ))
    .expect("regex");
    assert!(re.is_match(&v), "{v:?}");
}

#[test]
fn completions_cover_every_command_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().expect("tmp");
    for shell in ["bash", "zsh", "fish"] {
        let out = missionctl()
            .args(["completions", shell])
            .output()
            .expect("run");
        assert_success(&out);
        let script = String::from_utf8_lossy(&out.stdout);
        for word in ["doctor", "reconcile", "tokens-file", "completions"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
        if shell == "bash" {
            let file = dir.path().join("missionctl.bash");
            std::fs::write(&file, script.as_bytes()).expect("write");
            let check = std::process::Command::new("bash")
                .arg("-n")
                .arg(&file)
                .output()
                .expect("bash runs");
            assert!(
                check.status.success(),
                "{}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
    let bad = missionctl()
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
}

/// `doctor --format json`: the checks by name.
fn doctor(cwd: &Path, home: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = missionctl()
        .current_dir(cwd)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("MISSIONCTL_TOKENS")
        .args(["doctor", "--format", "json"])
        .args(extra)
        .output()
        .expect("run doctor");
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let by_name = checks
        .as_array()
        .expect("array")
        .iter()
        .map(|c| (c["name"].as_str().expect("name").to_string(), c.clone()))
        .collect::<serde_json::Map<_, _>>();
    (out.status.code().unwrap_or(-1), by_name.into())
}

#[test]
fn doctor_reports_each_piece_and_what_to_do_when_it_is_wrong() {
    let r = crate::util::TestRepo::new();
    let home = tempfile::tempdir().expect("home");
    let root = std::fs::canonicalize(&r.work).expect("canon");
    let packs = root.join("packs");

    // From a subfolder: the repository's root; the store mission.yaml names,
    // not created yet; no tokens; the placeholder action pin (a warning:
    // everything local works, so a new `init` repository passes doctor).
    let (code, c) = doctor(&packs, home.path(), &[]);
    assert_eq!(code, 0, "{c:#}");
    assert_eq!(c["repository"]["status"], "ok");
    assert_eq!(c["repository"]["value"], root.display().to_string());
    let store = c["store"]["value"].as_str().expect("store");
    assert!(
        store.starts_with(&format!(
            "sqlite://{} (from store.url in {})",
            root.join(".missionctl/state.db").display(),
            root.join("mission.yaml").display()
        )) && store.ends_with("not created yet"),
        "{store}"
    );
    assert_eq!(c["tokens"]["status"], "warn");
    assert!(
        c["tokens"]["fix"]
            .as_str()
            .expect("fix")
            .contains("--tokens-file")
    );
    assert_eq!(c["action"]["status"], "warn");
    assert!(
        c["action"]["fix"]
            .as_str()
            .expect("fix")
            .contains("--action")
    );
    assert!(c.get("openclaw").is_some(), "{c:#}");

    // After a reconcile the store is reachable and migrated; a tokens file
    // `token new` wrote is counted.
    assert_success(
        &missionctl()
            .current_dir(&root)
            .env("HOME", home.path())
            .args(["reconcile", "--once"])
            .output()
            .expect("reconcile"),
    );
    let tokens = r.dir.path().join("tokens.yaml");
    assert_success(&token_new(Some(&tokens), "h", Some("acme")));
    let (_, c) = doctor(
        &root,
        home.path(),
        &["--tokens", tokens.to_str().expect("p")],
    );
    assert_eq!(c["store"]["status"], "ok", "{c:#}");
    assert!(
        c["store"]["value"]
            .as_str()
            .is_some_and(|v| v.contains("reachable") && v.contains("migrations applied")),
        "{c:#}"
    );
    assert_eq!(c["tokens"]["status"], "ok");
    assert!(
        c["tokens"]["value"]
            .as_str()
            .expect("v")
            .ends_with("1 token(s)")
    );

    // A store that does not answer, and a broken tokens file: failures that
    // say what to do.
    let bad = r.dir.path().join("bad.yaml");
    std::fs::write(&bad, "- name: pasted-alone\n").expect("write");
    let (code, c) = doctor(
        &root,
        home.path(),
        &[
            "--db",
            "postgres://nobody@127.0.0.1:1/none",
            "--tokens",
            bad.to_str().expect("p"),
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(c["store"]["status"], "fail");
    assert!(
        c["store"]["value"]
            .as_str()
            .expect("v")
            .contains("(from the --db flag)")
    );
    assert!(
        c["store"]["fix"]
            .as_str()
            .expect("fix")
            .contains("MISSIONCTL_DATABASE_URL")
    );
    assert_eq!(c["tokens"]["status"], "fail");
    assert!(
        c["tokens"]["value"]
            .as_str()
            .expect("v")
            .contains("bad.yaml")
    );
    let leftovers: Vec<_> = std::fs::read_dir(home.path()).expect("home").collect();
    assert!(leftovers.is_empty(), "written under $HOME: {leftovers:?}");
}

/// Every `MISSIONCTL_*` variable the source reads is in `--help`; the only
/// ones left out are those missionctl sets itself (for the processes it
/// starts, or at build time).
#[test]
fn help_documents_every_environment_variable() {
    // Set by missionctl for its children or at build time, or named only in
    // text it writes (the CLI reference's regeneration hint for the docs test).
    const SET_BY_MISSIONCTL: [&str; 5] = [
        "MISSIONCTL_GATEWAY_TOKEN",
        "MISSIONCTL_MODEL_API_KEY",
        "MISSIONCTL_BUILD_COMMIT",
        "MISSIONCTL_VERSION_LONG",
        "MISSIONCTL_BLESS",
    ];
    let out = missionctl().arg("--help").output().expect("run");
    assert_success(&out);
    let help = String::from_utf8_lossy(&out.stdout);
    let re = regex::Regex::new(r"MISSIONCTL_[A-Z_]+[A-Z]").expect("regex");
    let mut read = std::collections::BTreeSet::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("src").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).expect("read");
                read.extend(re.find_iter(&text).map(|m| m.as_str().to_string()));
            }
        }
    }
    assert!(read.contains("MISSIONCTL_DATABASE_URL"), "{read:?}");
    let missing: Vec<_> = read
        .iter()
        .filter(|v| !SET_BY_MISSIONCTL.contains(&v.as_str()) && !help.contains(v.as_str()))
        .collect();
    assert!(missing.is_empty(), "not in --help: {missing:?}");
}

/// Hostile review (issue 26): what is not what it seems is named, and
/// nothing hangs: a FIFO as the tokens file, a file that is not a
/// database as the store, and a pack repository below the top of another
/// git repository (whose commits missionctl cannot read packs from).
#[test]
fn doctor_and_token_new_name_what_is_not_what_it_seems() {
    let r = crate::util::TestRepo::new();
    let home = tempfile::tempdir().expect("home");
    let root = std::fs::canonicalize(&r.work).expect("canon");
    let fifo = r.dir.path().join("fifo.yaml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    for args in [
        vec![
            "token",
            "new",
            "--name",
            "f",
            "--role",
            "viewer",
            "--tokens-file",
        ],
        vec!["doctor", "--tokens"],
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_missionctl"))
            .current_dir(&root)
            .env("HOME", home.path())
            .args(&args)
            .arg(&fifo)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if start.elapsed() > std::time::Duration::from_secs(20) {
                let _ = child.kill();
                panic!("{args:?} hangs on a FIFO");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(!status.success() || args[0] == "doctor", "{args:?}");
    }
    let notdb = r.dir.path().join("not.db");
    std::fs::write(&notdb, "not sqlite at all\n").expect("write");
    let (code, c) = doctor(
        &root,
        home.path(),
        &["--db", &format!("sqlite://{}", notdb.display())],
    );
    assert_eq!(code, 1, "{c:#}");
    assert_eq!(c["store"]["status"], "fail", "{c:#}");
    // A pack repository copied below the top of another git repository.
    let mono = r.dir.path().join("mono");
    std::fs::create_dir_all(mono.join("ops")).expect("mkdir");
    crate::util::git(&mono, &["init", "-q"]);
    std::fs::copy(root.join("mission.yaml"), mono.join("ops/mission.yaml")).expect("copy");
    let (code, c) = doctor(&mono.join("ops"), home.path(), &[]);
    assert_eq!(code, 1, "{c:#}");
    assert_eq!(c["repository"]["status"], "fail", "{c:#}");
    assert!(
        c["repository"]["value"]
            .as_str()
            .is_some_and(|v| v.contains("not its top")),
        "{c:#}"
    );
}
