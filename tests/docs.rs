//! The documentation is tested.
//!
//! - `cli_reference_is_current`: `docs/src/reference/cli.md` is what
//!   `missionctl __cli-reference` prints. Regenerate it with
//!   `MISSIONCTL_BLESS=1 cargo test --test docs cli_reference`.
//! - `readme_examples`, `book_examples`: every ```` ```console ```` block in
//!   README.md and docs/src/ runs, and its output is checked. Blocks marked
//!   `sh`, `text` or anything else are not run.
//! - `relative_links_resolve`: relative links in README.md, ARCHITECTURE.md
//!   and docs/src point at files that exist.
//!
//! A console block is a session: `$ command` lines (a line ending in `\`
//! continues on the next), each followed by the output expected from it
//! (stdout and stderr together). In expected output, a line `...` matches
//! any number of lines, `[..]` matches any text within a line, and `[TMP]`
//! stands for the session's temporary directory. A last line `[exit N]` says
//! the command exits N (otherwise it must exit 0). All the blocks of one file
//! run in order in one temporary directory, with `missionctl` (this build)
//! first on PATH; `$ cd DIR` moves the session. Each command runs in `bash`,
//! so `&&`, pipes and redirections work. A command ending in `&` (a server)
//! runs in the background until the file's session ends; `127.0.0.1:8080`
//! and `127.0.0.1:8081` stand for two free loopback ports, and
//! `postgres://missionctl@127.0.0.1:5432/missionctl` for a fresh database on
//! the test PostgreSQL server (`MISSIONCTL_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), created for the file's
//! session and dropped after it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn cli_reference_is_current() {
    let out = Command::new(env!("CARGO_BIN_EXE_missionctl"))
        .arg("__cli-reference")
        .output()
        .expect("run missionctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    let path = root().join("docs/src/reference/cli.md");
    if std::env::var_os("MISSIONCTL_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &printed).expect("write cli.md");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if on_disk != printed {
        let first = on_disk
            .lines()
            .zip(printed.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(on_disk.lines().count().min(printed.lines().count()));
        panic!(
            "docs/src/reference/cli.md is not what the binary prints (first difference at line {}).\n\
             Regenerate it: MISSIONCTL_BLESS=1 cargo test --test docs cli_reference",
            first + 1
        );
    }
}

#[test]
fn readme_examples() {
    let n = run_file(&root().join("README.md"));
    assert!(n >= 5, "README.md: only {n} command(s) checked");
}

#[test]
fn book_examples() {
    let mut files = Vec::new();
    markdown_files(&root().join("docs/src"), &mut files);
    files.sort();
    let mut total = 0;
    for f in &files {
        total += run_file(f);
    }
    assert!(total >= 10, "docs/src: only {total} command(s) checked");
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read docs/src").flatten() {
        let p = e.path();
        if p.is_dir() {
            markdown_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "md") {
            out.push(p);
        }
    }
}

/// One command of a console block and what it should print.
struct Step {
    line: usize,
    command: String,
    expected: Vec<String>,
    exit: i32,
}

/// The console blocks of a Markdown file, as steps in order.
fn parse(text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    let mut in_other = false;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let t = line.trim_start();
        if in_console || in_other {
            if t.starts_with("```") {
                in_console = false;
                in_other = false;
                continue;
            }
        } else if let Some(info) = t.strip_prefix("```") {
            in_console = info.trim() == "console";
            in_other = !in_console;
            continue;
        }
        if !in_console {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            let mut command = cmd.to_string();
            while command.ends_with('\\') {
                command.pop();
                match lines.next() {
                    Some((_, next)) => command.push_str(next),
                    None => break,
                }
            }
            steps.push(Step {
                line: i + 1,
                command,
                expected: Vec::new(),
                exit: 0,
            });
        } else if let Some(step) = steps.last_mut() {
            let exit = line
                .strip_prefix("[exit ")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse().ok());
            match exit {
                Some(n) => step.exit = n,
                None => step.expected.push(line.trim_end().to_string()),
            }
        } else {
            panic!("line {}: output before any `$ ` command", i + 1);
        }
    }
    steps
}

/// Run a file's console blocks; the number of commands checked.
fn run_file(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).expect("read markdown");
    let steps = parse(&text);
    if steps.is_empty() {
        return 0;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().canonicalize().expect("canonical tempdir");
    let home = base.join(".home");
    std::fs::create_dir_all(&home).expect("home");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_missionctl"));
    let path_var = format!(
        "{}:{}",
        bin.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // `127.0.0.1:8080` and `:8081` in the docs are free loopback ports here.
    let free = || {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        format!("127.0.0.1:{port}")
    };
    let mut places: Vec<(String, String)> = vec![
        ("127.0.0.1:8080".into(), free()),
        ("127.0.0.1:8081".into(), free()),
    ];
    // Declared before `background`: dropped after the servers are stopped.
    let _database = if text.contains(DOC_DATABASE) {
        let Some(db) = Database::create(&path.display().to_string()) else {
            return 0;
        };
        places.push((DOC_DATABASE.into(), db.url.clone()));
        Some(db)
    } else {
        None
    };
    let mut background = Background(Vec::new());
    let mut cwd = base.clone();
    let name = path
        .strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string();
    for step in &steps {
        if let Some(dir) = step.command.strip_prefix("cd ") {
            cwd = cwd.join(dir.trim());
            assert!(
                cwd.is_dir(),
                "{name}:{}: no directory {}",
                step.line,
                cwd.display()
            );
            continue;
        }
        let command = places
            .iter()
            .fold(step.command.clone(), |c, (doc, here)| c.replace(doc, here));
        let mut cmd = Command::new("bash");
        cmd.current_dir(&cwd)
            .env("PATH", &path_var)
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "You")
            .env("GIT_AUTHOR_EMAIL", "you@example.com")
            .env("GIT_COMMITTER_NAME", "You")
            .env("GIT_COMMITTER_EMAIL", "you@example.com")
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100")
            .env_remove("MISSIONCTL_DATABASE_URL")
            .env_remove("MISSIONCTL_LOG")
            .env_remove("MISSIONCTL_ACTION_REPO")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_EVENT_PATH")
            .env_remove("GITHUB_TOKEN");
        if let Some(bg) = command.trim_end().strip_suffix('&') {
            // A server: started here, its output in a log file, stopped
            // when the file's session ends.
            let log = std::fs::File::create(base.join(format!(".bg-{}.log", step.line)))
                .expect("log file");
            let child = cmd
                .arg("-c")
                .arg(format!("exec {bg}"))
                .stdout(log.try_clone().expect("log file"))
                .stderr(log)
                .spawn()
                .expect("start a background command");
            background.0.push(child);
            continue;
        }
        let out = cmd
            .arg("-c")
            .arg(format!("exec 2>&1; {command}"))
            .output()
            .expect("run bash");
        let actual = places.iter().fold(
            String::from_utf8_lossy(&out.stdout).replace(&base.display().to_string(), "[TMP]"),
            |a, (doc, here)| a.replace(here, doc),
        );
        let actual: Vec<&str> = actual.lines().map(str::trim_end).collect();
        let code = out.status.code().unwrap_or(-1);
        let matched = matches(&step.expected, &actual);
        if !matched || code != step.exit {
            panic!(
                "{name}:{}: `{}`\nexit: expected {}, got {code}\n--- expected\n{}\n--- actual\n{}\n",
                step.line,
                step.command,
                step.exit,
                step.expected.join("\n"),
                actual.join("\n"),
            );
        }
    }
    steps
        .iter()
        .filter(|s| !s.command.starts_with("cd "))
        .count()
}

/// Expected lines (with `...` and `[..]`) against actual lines.
fn matches(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e == "..." => (0..=actual.len()).any(|k| matches(rest, &actual[k..])),
        Some((e, rest)) => match actual.split_first() {
            Some((a, arest)) => line_matches(e, a) && matches(rest, arest),
            None => false,
        },
    }
}

fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("[..]").collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || line.len() < first.len() + last.len() || !line.ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// What the docs write for "your PostgreSQL database".
const DOC_DATABASE: &str = "postgres://missionctl@127.0.0.1:5432/missionctl";

/// A fresh database on the test PostgreSQL server for one file's session,
/// dropped when it ends. A server that does not answer fails the test with
/// how to fix it (`bash .ci/test` runs where PostgreSQL runs, as CI does).
struct Database {
    url: String,
    admin: String,
    name: String,
}

impl Database {
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// None (loudly) only when MISSIONCTL_SKIP_POSTGRES=1 says to skip.
    fn create(file: &str) -> Option<Database> {
        let admin = std::env::var("MISSIONCTL_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("mc_docs_{}_{}", std::process::id(), rand::random::<u32>());
        let created = Self::runtime().block_on(async {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(std::time::Duration::from_secs(3))
                .connect(&admin)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&pool)
                .await
        });
        if let Err(e) = created {
            if std::env::var_os("MISSIONCTL_SKIP_POSTGRES").is_some_and(|v| !v.is_empty()) {
                eprintln!(
                    "\n*** SKIPPED (MISSIONCTL_SKIP_POSTGRES is set): {file} needs PostgreSQL: {e} ***\n"
                );
                return None;
            }
            panic!(
                "{file} needs PostgreSQL: no server answered at {admin} ({e}); start one, or set MISSIONCTL_TEST_DATABASE_URL"
            );
        }
        if let Some(dir) = std::env::var_os("MISSIONCTL_COMPONENTS_DIR") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(Path::new(&dir).join("postgresql"))
            {
                let _ = writeln!(f, "docs::{file}");
            }
        }
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Some(Database {
            url: format!("{base}/{name}"),
            admin,
            name,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = Self::runtime().block_on(async move {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&admin)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&pool)
            .await
        });
    }
}

/// Background commands of a session, killed when it ends (or fails).
struct Background(Vec<std::process::Child>);

impl Drop for Background {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn the_matcher_does_what_the_docs_say() {
    let e = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert!(matches(&e(&["a", "...", "z"]), &["a", "b", "c", "z"]));
    assert!(matches(&e(&["a", "...", "z"]), &["a", "z"]));
    assert!(!matches(&e(&["a", "z"]), &["a", "b", "z"]));
    assert!(matches(
        &e(&["wrote [..] files to [..]/x"]),
        &["wrote 12 files to /tmp/x"]
    ));
    assert!(!matches(&e(&["wrote [..] files"]), &["wrote 12 dirs"]));
    let steps = parse("```console\n$ a \\\n  b\nout\n[exit 1]\n```\n```sh\n$ not run\n```\n");
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].command, "a   b");
    assert_eq!(steps[0].expected, vec!["out".to_string()]);
    assert_eq!(steps[0].exit, 1);
}

/// Every relative Markdown link in README.md and docs/src points at a file
/// that exists (anchors are not checked).
#[test]
fn relative_links_resolve() {
    let mut files = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
    markdown_files(&root().join("docs/src"), &mut files);
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").expect("regex");
    let mut broken = Vec::new();
    let mut checked = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read markdown");
        for c in link.captures_iter(&text) {
            let target = c[1].split('#').next().unwrap_or_default();
            if target.is_empty() || target.contains("://") {
                continue;
            }
            checked += 1;
            let dir = f.parent().expect("parent");
            if !dir.join(target).exists() {
                broken.push(format!("{}: {target}", f.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked > 50, "only {checked} links checked");
}
