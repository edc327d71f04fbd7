//! Real git over HTTP for catalog tests: `git http-backend` (git's own
//! smart-HTTP server, run as CGI) behind a small HTTP/1.1 server on
//! 127.0.0.1. Every repository under `root` is served at `/<name>`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct GitHttp {
    pub url: String,
    /// Requests answered (a test can see the catalog was really fetched).
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl GitHttp {
    pub fn start(root: &Path) -> GitHttp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (halt, count, root) = (stop.clone(), requests.clone(), root.to_path_buf());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                stream.set_nonblocking(false).expect("blocking");
                count.fetch_add(1, Ordering::Relaxed);
                let root = root.clone();
                std::thread::spawn(move || serve(stream, &root));
            }
        });
        GitHttp {
            url,
            requests,
            stop,
        }
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One connection: as many requests as the client sends (libgit2 keeps the
/// connection alive), each handed to `git http-backend`.
fn serve(stream: std::net::TcpStream, root: &PathBuf) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut out = stream;
    loop {
        let mut first = String::new();
        if reader.read_line(&mut first).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
            line.clear();
        }
        let header = |k: &str| headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if let Some(n) = header("content-length").and_then(|n| n.parse::<usize>().ok()) {
            body.resize(n, 0);
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            loop {
                let mut size = String::new();
                if reader.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                if n == 0 {
                    let mut crlf = String::new();
                    let _ = reader.read_line(&mut crlf);
                    break;
                }
                let mut chunk = vec![0; n + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        let mut parts = first.split_whitespace();
        let method = parts.next().unwrap_or("GET").to_string();
        let target = parts.next().unwrap_or("/").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let mut child = Command::new("git")
            .arg("http-backend")
            .env("GIT_PROJECT_ROOT", root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", &method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("GIT_PROTOCOL", header("git-protocol").unwrap_or_default())
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("git http-backend runs");
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let output = child.wait_with_output().expect("http-backend output");
        let _ = writer.join();
        let raw = output.stdout;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| (i, 4))
            .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
        let Some((end, skip)) = split else {
            let _ = write!(
                out,
                "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
            );
            return;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_string();
        let payload = &raw[end + skip..];
        let mut status = "200 OK".to_string();
        let mut extra = String::new();
        for h in head.lines() {
            match h.split_once(':') {
                Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
                Some((k, v)) => extra.push_str(&format!("{k}: {}\r\n", v.trim())),
                None => {}
            }
        }
        let _ = write!(
            out,
            "HTTP/1.1 {status}\r\n{extra}content-length: {}\r\n\r\n",
            payload.len()
        );
        if out.write_all(payload).is_err() {
            return;
        }
    }
}
