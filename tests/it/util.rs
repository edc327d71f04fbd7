//! Test context: a pack repository made by `missionctl init` in a temp dir,
//! helpers to edit and commit as an author would (git CLI), and to run the CLI.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

pub struct TestRepo {
    pub dir: tempfile::TempDir,
}

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

impl TestRepo {
    /// A fresh template repository with one commit on main.
    pub fn new() -> TestRepo {
        let dir = tempfile::tempdir().expect("tempdir");
        missionctl()
            .args(["init"])
            .arg(dir.path().join("repo"))
            .assert()
            .success();
        TestRepo { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
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
                .map(|d| d.to_string())
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
