//! The one test context: a pack repository made by `missionctl init` in a
//! temp dir (alone, or as a bare "remote" with a clone where authors work),
//! helpers to edit and commit as an author would (git CLI), and to run the
//! CLI. Every helper fails the test loudly when what it runs fails.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

pub struct TestContext {
    pub dir: tempfile::TempDir,
    /// The work tree authors edit (the clone, for a fleet).
    pub work: PathBuf,
    /// The bare remote the reconciler reads (a fleet), else the work tree.
    pub remote: PathBuf,
    /// The state store the commands use.
    pub db: String,
}

/// A lone pack repository (validate, resolve, gate).
pub type TestRepo = TestContext;
/// A remote and a clone with a state store (reconcile, serve, registry).
pub type Fleet = TestContext;

pub fn missionctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_missionctl"));
    c.env("NO_COLOR", "1").env_remove("MISSIONCTL_DATABASE_URL");
    c
}

/// The command exited 0; otherwise fail with what it wrote to stderr.
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl TestContext {
    /// A fresh template repository with one commit on main.
    pub fn new() -> TestContext {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("repo");
        missionctl().args(["init"]).arg(&work).assert().success();
        let db = format!("sqlite://{}", dir.path().join("state.db").display());
        TestContext {
            dir,
            remote: work.clone(),
            work,
            db,
        }
    }

    /// The template as a bare remote and a clone where authors commit, with
    /// the state store at `db`.
    pub fn fleet(db: &str) -> TestContext {
        let dir = tempfile::tempdir().expect("tempdir");
        let seed = dir.path().join("seed");
        missionctl().arg("init").arg(&seed).assert().success();
        let remote = dir.path().join("remote.git");
        let work = dir.path().join("work");
        let p = |x: &Path| x.to_str().expect("utf-8 path").to_string();
        git(
            dir.path(),
            &["clone", "-q", "--bare", &p(&seed), &p(&remote)],
        );
        git(dir.path(), &["clone", "-q", &p(&remote), &p(&work)]);
        git(&work, &["config", "user.name", "Dana Dev"]);
        git(&work, &["config", "user.email", "dana@example.com"]);
        TestContext {
            dir,
            remote,
            work,
            db: db.to_string(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.work.clone()
    }

    /// A feature branch with `edit`, merged into main with a merge commit as GitHub does.
    pub fn merge(&self, name: &str, pr: u32, edit: impl FnOnce(&TestContext)) -> String {
        self.git(&["switch", "-q", "-c", name, "main"]);
        edit(self);
        self.git(&["commit", "-qam", &format!("{name} change")]);
        self.git(&["switch", "-q", "main"]);
        self.git(&[
            "merge",
            "-q",
            "--no-ff",
            name,
            "-m",
            &format!("Merge pull request #{pr} from acme/{name}"),
        ]);
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn push(&self) {
        self.git(&["push", "-q", "origin", "main"]);
    }

    /// `reconcile --once` on the remote: (exit code, the JSON it printed).
    /// It may exit non-zero (a refusal is exit 1); it must not crash.
    pub fn reconcile(&self, extra: &[&str]) -> (i32, Value) {
        let mut c = missionctl();
        c.args(["reconcile", "--once", "--format", "json", "--repo"])
            .arg(&self.remote)
            .args(["--db", &self.db])
            .args(extra);
        let out = c.output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), v)
    }

    /// The decision history; fails the test if `decisions` fails, so an
    /// assertion that nothing happened cannot pass on a crash.
    pub fn decisions(&self) -> Vec<Value> {
        let out = missionctl()
            .args(["decisions", "--format", "json", "--db", &self.db])
            .output()
            .expect("run");
        assert_success(&out);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "decisions printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    pub fn write(&self, rel: &str, content: &str) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
        self
    }

    pub fn write_bytes(&self, rel: &str, content: &[u8]) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
        self
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).expect("read")
    }

    /// Replace `from` with `to` in a file, failing if `from` is absent.
    pub fn edit(&self, rel: &str, from: &str, to: &str) -> &Self {
        let s = self.read(rel);
        assert!(s.contains(from), "{rel} does not contain {from:?}");
        self.write(rel, &s.replacen(from, to, 1))
    }

    pub fn remove(&self, rel: &str) -> &Self {
        std::fs::remove_file(self.path().join(rel)).expect("remove");
        self
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(&self.path(), args)
    }

    pub fn commit_all(&self, msg: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", msg]);
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn run(&self, args: &[&str]) -> Output {
        missionctl()
            .current_dir(self.path())
            .args(args)
            .output()
            .expect("run missionctl")
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = missionctl();
        c.current_dir(self.path()).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run missionctl")
    }

    /// Run `validate --format json` (plus args) and return (exit code, diagnostics).
    /// `missionctl CMD --base main --head HEAD --out DIR --db …` (`eval` or
    /// `gate`) with `env`: its output and the evidence directory.
    pub fn evaluate(&self, cmd: &str, head: &str, env: &[(&str, &str)]) -> (Output, PathBuf) {
        let out = self.dir.path().join(format!("evidence-{cmd}-{head}"));
        let db = format!("sqlite://{}", self.dir.path().join("state.db").display());
        let args = [
            cmd,
            "--base",
            "main",
            "--head",
            head,
            "--out",
            out.to_str().expect("utf-8 path"),
            "--db",
            &db,
        ];
        (self.run_env(&args, env), out)
    }

    pub fn validate(&self, extra: &[&str]) -> (i32, Vec<Value>) {
        let mut args = vec!["validate", "--format", "json"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "panic: {stderr}");
        let diags = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        (out.status.code().unwrap_or(-1), diags)
    }
}

/// Assert a diagnostic with this code, file and line exists and its message
/// contains `msg`; return it.
pub fn expect_diag(diags: &[Value], code: &str, file: &str, line: u64, msg: &str) -> Value {
    let found = diags.iter().find(|d| {
        d["code"] == code
            && d["file"] == file
            && d["line"] == line
            && d["message"].as_str().is_some_and(|m| m.contains(msg))
    });
    match found {
        Some(d) => d.clone(),
        None => panic!(
            "expected {code} at {file}:{line} containing {msg:?}; got:\n{}",
            diags
                .iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// A minimal HTTP/1.1 client for tests (one request per connection).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    s.write_all(body).expect("body");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // De-chunk if needed.
    let body = if head.to_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut r = rest;
        while let Some((len, tail)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            r = tail[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        rest.to_string()
    };
    (code, head.to_string(), body)
}

/// The `eval_result` rows an evaluation wrote to `dir`; fails loudly, with
/// the command's stderr, when it wrote none.
pub fn eval_rows(dir: &Path, run: &Output) -> Vec<Value> {
    std::fs::read_to_string(dir.join("eval_result.jsonl"))
        .unwrap_or_else(|e| {
            panic!(
                "no eval results in {} ({e}): {}",
                dir.display(),
                String::from_utf8_lossy(&run.stderr)
            )
        })
        .lines()
        .map(|l| serde_json::from_str(l).expect("an eval_result JSON line"))
        .collect()
}

/// Note that the running test drives the real `component` (postgresql,
/// promptfoo, openclaw, node), for `.ci/test`'s closing summary.
pub fn used(component: &str) {
    let Some(dir) = std::env::var_os("MISSIONCTL_COMPONENTS_DIR") else {
        return;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_string();
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::path::Path::new(&dir).join(component))
    {
        let _ = writeln!(f, "{test}");
    }
}

/// A real component this test needs is missing: fail with how to install
/// it, unless the developer opted out with `skip_var=1` (then say so loudly
/// and return true: the caller skips).
pub fn missing(component: &str, skip_var: &str, why: &str) -> bool {
    if std::env::var_os(skip_var).is_some_and(|v| !v.is_empty()) {
        eprintln!(
            "\n*** SKIPPED ({skip_var} is set): {component} is not available here: {why} ***\n"
        );
        return true;
    }
    panic!(
        "{component} is needed by this test and is missing: {why}. `bash .ci/test` (the README's test command) installs it; set {skip_var}=1 to skip these tests knowingly"
    );
}

/// One request as [`TinyHttp`] saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// `GET /path?query HTTP/1.1`
    pub line: String,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<String>,
}

/// What [`TinyHttp`]'s handler answers: status line (`200 OK`), extra
/// header lines (each ending `\r\n`), content type and body.
pub type TinyReply = (&'static str, String, &'static str, Vec<u8>);

/// A one-thread HTTP/1.1 stand-in on 127.0.0.1 for services a test cannot
/// run (a Gateway that never reloads, ClawHub): reads the request line and
/// headers (no body), answers what `handler` says for the request target,
/// closes the connection, records every request. Stops when dropped.
pub struct TinyHttp {
    pub url: String,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<SeenRequest>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TinyHttp {
    pub fn start(handler: impl Fn(&str) -> TinyReply + Send + 'static) -> TinyHttp {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (log, halt) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                };
                stream.set_nonblocking(false).expect("blocking");
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut authorization = None;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("authorization")
                    {
                        authorization = Some(v.trim().to_string());
                    }
                    line.clear();
                }
                let target = first.split(' ').nth(1).unwrap_or_default().to_string();
                log.lock().expect("lock").push(SeenRequest {
                    line: first.trim().to_string(),
                    authorization,
                });
                let (status, extra, content_type, body) = handler(&target);
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        TinyHttp { url, seen, stop }
    }
}

impl Drop for TinyHttp {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
