//! A fake GitHub REST v3 server on 127.0.0.1: GitHub's paths and JSON for
//! the endpoints missionctl uses, with state (comments, check runs,
//! statuses) and a log of every request for assertions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
    pub authorization: Option<String>,
}

/// A canned failure for the next request matching `method` and a path
/// ending in `path_suffix`: GitHub at its worst. With `after_write`, the
/// request is carried out first and the failure returned after (a 502 once
/// the comment exists).
#[derive(Clone, Debug, Default)]
pub struct Injection {
    pub method: &'static str,
    pub path_suffix: String,
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
    pub after_write: bool,
}

/// A GitHub App installed on the repository: its id, the public half of
/// its key (PEM file) to verify the JWTs it signs as GitHub does, its
/// installation and the installation token GitHub issues.
#[derive(Clone, Debug)]
pub struct App {
    pub id: u64,
    pub public_key_pem: std::path::PathBuf,
    pub installation: u64,
    pub token: String,
}

fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        })
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// GitHub's check of an App's JWT (`Authorization: Bearer <jwt>`): RS256,
/// signed by the App's key (verified with `openssl dgst`), `iss` the App's
/// id, issued no later than now (60 s clock drift allowed) and expiring
/// within 10 minutes of issue and not yet. `Err` is GitHub's message.
pub fn verify_app_jwt(app: &App, authorization: Option<&str>) -> Result<(), String> {
    let jwt = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .ok_or("no Bearer JWT")?;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, p, sig] = parts.as_slice() else {
        return Err("A JSON web token could not be decoded".into());
    };
    let header: Value = b64url_decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("A JSON web token could not be decoded")?;
    if header["alg"] != "RS256" {
        return Err(format!("'alg' must be RS256, not {}", header["alg"]));
    }
    let claims: Value = b64url_decode(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("A JSON web token could not be decoded")?;
    let iss = match &claims["iss"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if iss != app.id.to_string() {
        return Err(format!(
            "'Issuer' claim ('iss') must be the App's id, not {iss}"
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (iat, exp) = (
        claims["iat"].as_i64().ok_or("no 'iat'")?,
        claims["exp"].as_i64().ok_or("no 'exp'")?,
    );
    if iat > now + 60 || exp <= now || exp - iat > 600 {
        return Err(
            "'Expiration time' claim ('exp') is too far in the future, or the JWT expired".into(),
        );
    }
    let sig = b64url_decode(sig).ok_or("A JSON web token could not be decoded")?;
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("fake-gh-jwt-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("data"), format!("{h}.{p}")).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("sig"), &sig).map_err(|e| e.to_string())?;
    let ok = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&app.public_key_pem)
        .arg("-signature")
        .arg(dir.join("sig"))
        .arg(dir.join("data"))
        .output()
        .is_ok_and(|o| o.status.success());
    let _ = std::fs::remove_dir_all(&dir);
    if ok {
        Ok(())
    } else {
        Err("A JSON web token could not be decoded: the signature does not verify with the App's key".into())
    }
}

#[derive(Default)]
pub struct GhState {
    /// Failures to answer with, first match first, each used once.
    pub inject: Vec<Injection>,
    pub log: Vec<Req>,
    pub comments: Vec<Value>,
    pub check_runs: Vec<Value>,
    pub statuses: Vec<Value>,
    /// Reviews returned for every pull request.
    pub reviews: Vec<Value>,
    /// team slug "org/team" -> members
    pub teams: HashMap<String, Vec<String>>,
    /// Teams cannot be read, as with the Actions GITHUB_TOKEN (403).
    pub hide_teams: bool,
    /// Pull request number -> head sha, for `GET /repos/{o}/{r}/pulls/{n}`.
    pub pulls: HashMap<u64, String>,
    /// Pull request number -> base sha (else none is reported).
    pub pull_base: HashMap<u64, String>,
    /// Pull request number -> base branch (default `main`, the default branch).
    pub pull_base_ref: HashMap<u64, String>,
    /// Pull requests that are closed (the others are open).
    pub closed_pulls: std::collections::HashSet<u64>,
    /// Pull request number -> its author's login (default `pr-author`).
    pub pull_author: HashMap<u64, String>,
    /// Login -> collaborator permission (`admin`, `maintain`, `write`,
    /// `triage`, `read`; `none` answers 404 as GitHub does for
    /// non-collaborators). Unlisted logins have `write`.
    pub permissions: HashMap<String, String>,
    /// Pull requests whose head is in a fork.
    pub fork_pulls: std::collections::HashSet<u64>,
    /// Pull request number -> label names.
    pub pull_labels: HashMap<u64, Vec<String>>,
    /// Answer check-run creation with 403 (as for a token that may not create them).
    pub forbid_check_runs: bool,
    /// Pull requests as `GET /repos/{o}/{r}/pulls` lists them (created by
    /// `POST /repos/{o}/{r}/pulls`, or seeded: e.g. a fork's).
    pub open_pulls: Vec<Value>,
    /// A pull request another client opens just before the next
    /// `POST /repos/{o}/{r}/pulls` is handled (a race between two runs).
    pub racing_pull: Option<Value>,
    /// The repository's git remote: as GitHub does, a pull request whose
    /// head branch is not on it is refused (422).
    pub remote: Option<std::path::PathBuf>,
    /// The GitHub App installed on the repository, if any.
    pub app: Option<App>,
    /// Each App JWT checked: `Ok` or GitHub's refusal.
    pub jwt_checks: Vec<Result<(), String>>,
    next_id: u64,
}

pub struct GithubServer {
    pub url: String,
    pub state: Arc<Mutex<GhState>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn user(login: &str) -> Value {
    json!({"login": login, "id": 1, "type": "User", "site_admin": false})
}

async fn handle(
    State(st): State<Arc<Mutex<GhState>>>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut s = st.lock().expect("state");
    s.log.push(Req {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        body: body.clone(),
        authorization: headers
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .map(String::from),
    });
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let page: usize = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("page="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let per_page: usize = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("per_page="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let paged = |items: &[Value]| -> Value {
        Value::Array(
            items
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .cloned()
                .collect(),
        )
    };
    let injected = s
        .inject
        .iter()
        .position(|i| i.method == method.as_str() && path.ends_with(i.path_suffix.as_str()))
        .map(|n| s.inject.remove(n));
    let fail = |i: &Injection| {
        let mut r = (
            StatusCode::from_u16(i.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(i.body.clone()),
        )
            .into_response();
        for (k, v) in &i.headers {
            if let Ok(v) = axum::http::HeaderValue::from_str(v) {
                r.headers_mut().insert(*k, v);
            }
        }
        r
    };
    if let Some(i) = &injected
        && !i.after_write
    {
        return fail(i);
    }
    s.next_id += 1;
    let id = 1000 + s.next_id;
    // Lists are paginated as GitHub does it: a `Link` header names the next
    // page (with the `page` parameter, which clients must not construct).
    let mut total: Option<usize> = None;
    let authorization = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .map(String::from);
    // The App's endpoints, authenticated with its JWT.
    let app_call = matches!(
        (method.as_str(), parts.as_slice()),
        ("GET", ["app"] | ["repos", _, _, "installation"])
            | ("POST", ["app", "installations", _, "access_tokens"])
    );
    let app_check = match (&s.app, app_call) {
        (Some(app), true) => Some(verify_app_jwt(app, authorization.as_deref())),
        _ => None,
    };
    if let Some(c) = &app_check {
        s.jwt_checks.push(c.clone());
    }
    let (status, out) = match (method.as_str(), parts.as_slice()) {
        _ if matches!(app_check, Some(Err(_))) => (
            StatusCode::UNAUTHORIZED,
            json!({"message": app_check.clone().and_then(Result::err).unwrap_or_default(), "documentation_url": "https://docs.github.com/rest"}),
        ),
        ("GET", ["app"]) if s.app.is_some() => (
            StatusCode::OK,
            json!({"id": s.app.as_ref().map(|a| a.id), "slug": "missionctl-test", "name": "missionctl test"}),
        ),
        ("GET", ["repos", _, _, "installation"]) if s.app.is_some() => (
            StatusCode::OK,
            json!({"id": s.app.as_ref().map(|a| a.installation), "app_id": s.app.as_ref().map(|a| a.id)}),
        ),
        ("POST", ["app", "installations", inst, "access_tokens"]) if s.app.is_some() => {
            let app = s.app.clone().expect("app");
            if inst.parse::<u64>().ok() == Some(app.installation) {
                (
                    StatusCode::CREATED,
                    json!({"token": app.token, "expires_at": "2099-01-01T00:00:00Z", "permissions": {"contents": "write", "pull_requests": "write"}, "repository_selection": "all"}),
                )
            } else {
                (StatusCode::NOT_FOUND, json!({"message": "Not Found"}))
            }
        }
        ("GET", ["repos", _, _, "issues", n, "comments"]) => {
            let n: u64 = n.parse().unwrap_or(0);
            let mine: Vec<Value> = s
                .comments
                .iter()
                .filter(|c| c["issue"] == n)
                .cloned()
                .collect();
            total = Some(mine.len());
            (StatusCode::OK, paged(&mine))
        }
        ("POST", ["repos", _, _, "issues", n, "comments"]) => {
            let c = json!({"id": id, "issue": n.parse::<u64>().unwrap_or(0), "body": body["body"], "user": user("github-actions[bot]"), "created_at": "2026-11-26T00:00:00Z"});
            s.comments.push(c.clone());
            (StatusCode::CREATED, c)
        }
        ("PATCH", ["repos", _, _, "issues", "comments", cid]) => {
            let cid: u64 = cid.parse().unwrap_or(0);
            match s.comments.iter_mut().find(|c| c["id"] == cid) {
                Some(c) => {
                    c["body"] = body["body"].clone();
                    (StatusCode::OK, c.clone())
                }
                None => (StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
            }
        }
        ("POST", ["repos", _, _, "check-runs"]) => {
            if s.forbid_check_runs {
                (
                    StatusCode::FORBIDDEN,
                    json!({"message": "Resource not accessible by integration", "documentation_url": "https://docs.github.com/rest/checks/runs#create-a-check-run"}),
                )
            } else {
                // Deliberately partial: GitHub's real object has many more fields,
                // and a client that insisted on them would fail here.
                let c = json!({"id": id, "name": body["name"], "head_sha": body["head_sha"], "status": body["status"], "conclusion": body["conclusion"], "output": body["output"]});
                s.check_runs.push(c.clone());
                (
                    StatusCode::CREATED,
                    json!({"id": id, "status": body["status"]}),
                )
            }
        }
        ("PATCH", ["repos", _, _, "check-runs", rid]) => {
            let rid: u64 = rid.parse().unwrap_or(0);
            match s.check_runs.iter_mut().find(|c| c["id"] == rid) {
                Some(c) => {
                    let mut notes = c["output"]["annotations"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    notes.extend(
                        body["output"]["annotations"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default(),
                    );
                    c["output"]["annotations"] = Value::Array(notes);
                    (StatusCode::OK, json!({"id": rid}))
                }
                None => (StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
            }
        }
        ("POST", ["repos", _, _, "statuses", sha]) => {
            let st = json!({"id": id, "sha": sha, "state": body["state"], "context": body["context"], "description": body["description"]});
            s.statuses.push(st.clone());
            (StatusCode::CREATED, st)
        }
        ("GET", ["repos", o, r, "pulls", n]) => {
            let n: u64 = n.parse().unwrap_or(0);
            match s.pulls.get(&n) {
                Some(sha) => {
                    let head_repo = if s.fork_pulls.contains(&n) {
                        json!({"full_name": format!("someone-else/{r}")})
                    } else {
                        json!({"full_name": format!("{o}/{r}")})
                    };
                    let labels: Vec<Value> = s
                        .pull_labels
                        .get(&n)
                        .into_iter()
                        .flatten()
                        .map(|l| json!({"name": l}))
                        .collect();
                    (
                        StatusCode::OK,
                        json!({"number": n, "user": {"login": s.pull_author.get(&n).map_or("pr-author", String::as_str)}, "state": if s.closed_pulls.contains(&n) { "closed" } else { "open" }, "labels": labels, "head": {"sha": sha, "ref": "topic", "repo": head_repo}, "base": {"ref": s.pull_base_ref.get(&n).map_or("main", String::as_str), "sha": s.pull_base.get(&n), "repo": {"full_name": format!("{o}/{r}"), "default_branch": "main"}}}),
                    )
                }
                None => (StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
            }
        }
        ("GET", ["repos", _, _, "pulls"]) => {
            // As GitHub: `state` open (the default), closed or all, and
            // `head=owner:branch`.
            let param = |k: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_string))
            };
            let state = param("state").unwrap_or_else(|| "open".into());
            let head =
                param("head").map(|h| h.split_once(':').map_or(h.clone(), |(_, b)| b.to_string()));
            let open: Vec<Value> = s
                .open_pulls
                .iter()
                .filter(|p| state == "all" || p["state"] == state.as_str())
                .filter(|p| head.as_ref().is_none_or(|h| p["head"]["ref"] == h.as_str()))
                .cloned()
                .collect();
            total = Some(open.len());
            (StatusCode::OK, paged(&open))
        }
        ("POST", ["repos", o, r, "pulls"]) => {
            if let Some(p) = s.racing_pull.take() {
                s.open_pulls.push(p);
            }
            let head = body["head"].as_str().unwrap_or_default().to_string();
            let full = format!("{o}/{r}");
            // As GitHub: one open pull request per head branch.
            let dup = s.open_pulls.iter().any(|p| {
                p["state"] == "open"
                    && p["head"]["ref"] == head.as_str()
                    && p["head"]["repo"]["full_name"] == full.as_str()
            });
            let head_missing = s.remote.as_ref().is_some_and(|r| {
                !std::process::Command::new("git")
                    .arg("--git-dir")
                    .arg(r)
                    .args([
                        "rev-parse",
                        "--verify",
                        "--quiet",
                        &format!("refs/heads/{head}"),
                    ])
                    .output()
                    .is_ok_and(|o| o.status.success())
            });
            if head_missing {
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}]}),
                )
            } else if dup {
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": format!("A pull request already exists for {o}:{head}.")}]}),
                )
            } else {
                let n = 100 + s.open_pulls.len() as u64 + 1;
                let p = json!({
                    "id": id, "number": n, "state": "open", "title": body["title"], "body": body["body"],
                    "html_url": format!("https://github.com/{full}/pull/{n}"),
                    "user": user("missionctl-bot[bot]"),
                    "head": {"ref": head, "sha": "0".repeat(40), "repo": {"full_name": full}},
                    "base": {"ref": body["base"], "repo": {"full_name": full}},
                });
                s.open_pulls.push(p.clone());
                (StatusCode::CREATED, p)
            }
        }
        ("POST", ["repos", _, _, "issues", n, "labels"]) => {
            let n: u64 = n.parse().unwrap_or(0);
            let names: Vec<String> = body["labels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str().map(String::from))
                .collect();
            let have = s.pull_labels.entry(n).or_default();
            for l in names {
                if !have.contains(&l) {
                    have.push(l);
                }
            }
            let out: Vec<Value> = have.iter().map(|l| json!({"name": l})).collect();
            (StatusCode::OK, Value::Array(out))
        }
        ("PATCH", ["repos", _, _, "pulls", n]) => {
            let n: u64 = n.parse().unwrap_or(0);
            match s.open_pulls.iter_mut().find(|p| p["number"] == n) {
                Some(p) => {
                    for k in ["title", "body", "state"] {
                        if !body[k].is_null() {
                            p[k] = body[k].clone();
                        }
                    }
                    (StatusCode::OK, p.clone())
                }
                None => (StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
            }
        }
        ("GET", ["repos", _, _, "collaborators", user, "permission"]) => {
            match s.permissions.get(*user).map_or("write", String::as_str) {
                "none" => (StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
                p => (
                    StatusCode::OK,
                    json!({"permission": match p { "maintain" => "write", "triage" => "read", other => other }, "role_name": p, "user": {"login": user}}),
                ),
            }
        }
        ("GET", ["repos", _, _, "pulls", _, "reviews"]) => {
            total = Some(s.reviews.len());
            (StatusCode::OK, paged(&s.reviews.clone()))
        }
        // An installation token (the Actions GITHUB_TOKEN) may not read /user.
        ("GET", ["user"]) => (
            StatusCode::FORBIDDEN,
            json!({"message": "Resource not accessible by integration", "documentation_url": "https://docs.github.com/rest/users/users#get-the-authenticated-user"}),
        ),
        ("GET", ["orgs", _, "teams", ..]) if s.hide_teams => (
            StatusCode::FORBIDDEN,
            json!({"message": "Resource not accessible by integration", "documentation_url": "https://docs.github.com/rest/teams/members#get-team-membership-for-a-user"}),
        ),
        ("GET", ["orgs", org, "teams", team]) => {
            if s.teams.contains_key(&format!("{org}/{team}")) {
                (StatusCode::OK, json!({"slug": team, "name": team}))
            } else {
                (StatusCode::NOT_FOUND, json!({"message": "Not Found"}))
            }
        }
        ("GET", ["orgs", org, "teams", team, "memberships", login]) => {
            let key = format!("{org}/{team}");
            if s.teams
                .get(&key)
                .is_some_and(|m| m.iter().any(|u| u.eq_ignore_ascii_case(login)))
            {
                (
                    StatusCode::OK,
                    json!({"url": "", "role": "member", "state": "active"}),
                )
            } else {
                (StatusCode::NOT_FOUND, json!({"message": "Not Found"}))
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
        ),
    };
    if let Some(i) = &injected {
        return fail(i);
    }
    let mut resp = (status, axum::Json(out)).into_response();
    if let Some(n) = total
        && page * per_page < n
    {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        let link = format!(
            "<http://{host}{path}?per_page={per_page}&page={}>; rel=\"next\"",
            page + 1
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&link) {
            resp.headers_mut().insert("link", v);
        }
    }
    resp
}

impl GithubServer {
    pub fn start() -> GithubServer {
        let state = Arc::new(Mutex::new(GhState::default()));
        let st = state.clone();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx.send(l.local_addr().expect("addr")).expect("send");
                let app = Router::new().fallback(handle).with_state(st);
                let _ = axum::serve(l, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let addr: std::net::SocketAddr = addr_rx.recv().expect("addr");
        GithubServer {
            url: format!("http://{addr}"),
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut GhState) -> R) -> R {
        f(&mut self.state.lock().expect("state"))
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GITHUB_API_URL", self.url.clone()),
            ("GITHUB_TOKEN", "ghs_test_token".to_string()),
            ("GITHUB_REPOSITORY", "acme-fleet/packs".to_string()),
        ]
    }
}

impl Drop for GithubServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
