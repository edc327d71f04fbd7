//! GitHub: the events Actions hands us, CODEOWNERS and reviews for
//! approvals, and the evidence posted back (sticky comment, check run,
//! commit status, job summary).
//!
//! Requests go through octocrab's raw methods and we read only the fields we
//! need from the JSON: octocrab's typed models are stricter than GitHub's
//! real responses in places, and a write that GitHub accepted must never
//! fail the run because a response did not deserialize.

pub mod approvals;
pub mod codeowners;
pub mod event;
pub mod report;
pub mod retry;
pub mod trusted;

use octocrab::Octocrab;
use serde_json::Value as Json;

#[derive(Debug, thiserror::Error)]
pub enum GhError {
    #[error("GitHub is not configured: {0}")]
    Config(String),
    #[error("GitHub API {method} {path}: {message}")]
    Api {
        method: String,
        path: String,
        message: String,
    },
    #[error(
        "GitHub API {method} {path}: rate limited; GitHub asks to wait {wait_secs} s more, past the {} s this command waits in total; run it again later",
        retry::MAX_TOTAL_WAIT.as_secs()
    )]
    RateLimited {
        method: String,
        path: String,
        wait_secs: u64,
    },
    #[error("GitHub API {method} {path} answered HTTP {status}: {body}")]
    Status {
        method: String,
        path: String,
        status: u16,
        body: String,
    },
}

/// An authenticated client for one repository.
#[derive(Clone)]
pub struct Gh {
    crab: Octocrab,
    pub owner: String,
    pub repo: String,
    /// The API's base URL (`GITHUB_API_URL`), to follow pagination links.
    pub api: String,
    /// The login comments are posted as (`github-actions[bot]`, an App's
    /// `<slug>[bot]`, a user), when it could be told.
    pub login: Option<String>,
    /// A GitHub App's installation token, for git pushes over HTTPS: a
    /// branch pushed with it starts workflows (the gate) on its pull
    /// request, which a push with the workflow's own token does not.
    /// `None` for a plain `GITHUB_TOKEN`. Never printed (`Debug` omits it).
    pub git_token: Option<String>,
}

impl std::fmt::Debug for Gh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gh({}/{})", self.owner, self.repo)
    }
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

impl Gh {
    /// From the Actions environment: `GITHUB_API_URL` (GitHub Enterprise
    /// Server works), `GITHUB_REPOSITORY`, and `GITHUB_TOKEN`, or a GitHub App
    /// (`GITHUB_APP_ID` with `GITHUB_APP_PRIVATE_KEY` or
    /// `GITHUB_APP_PRIVATE_KEY_PATH`) exchanged for an installation token.
    pub async fn from_env(repository: Option<&str>) -> Result<Gh, GhError> {
        let api = env("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
        let full = repository
            .map(String::from)
            .or_else(|| env("GITHUB_REPOSITORY"))
            .ok_or_else(|| GhError::Config("set GITHUB_REPOSITORY (owner/name)".into()))?;
        let (owner, repo) = full.split_once('/').ok_or_else(|| {
            GhError::Config(format!("GITHUB_REPOSITORY `{full}` is not owner/name"))
        })?;
        let builder = || {
            Octocrab::builder()
                // Retries are ours (retry.rs): octocrab's default repeats
                // any request on a 5xx, POST included, and ignores Retry-After.
                .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
                .base_uri(api.as_str())
                .map_err(|e| GhError::Config(format!("GITHUB_API_URL `{api}`: {e}")))
        };
        let mut app_login = None;
        let mut app_token = None;
        let crab = if let Some(token) = env("GITHUB_TOKEN") {
            builder()?
                .personal_token(token)
                .build()
                .map_err(|e| GhError::Config(e.to_string()))?
        } else if let Some(app_id) = env("GITHUB_APP_ID") {
            let pem = match env("GITHUB_APP_PRIVATE_KEY") {
                Some(k) => k,
                None => {
                    let path = env("GITHUB_APP_PRIVATE_KEY_PATH").ok_or_else(|| {
                        GhError::Config("GITHUB_APP_ID needs GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_PATH".into())
                    })?;
                    std::fs::read_to_string(&path)
                        .map_err(|e| GhError::Config(format!("cannot read {path}: {e}")))?
                }
            };
            let key = octocrab::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
                GhError::Config(format!(
                    "the GitHub App private key is not an RSA PEM key: {e}"
                ))
            })?;
            let id: u64 = app_id.parse().map_err(|_| {
                GhError::Config(format!("GITHUB_APP_ID `{app_id}` is not a number"))
            })?;
            let app = builder()?
                .app(id.into(), key)
                .build()
                .map_err(|e| GhError::Config(e.to_string()))?;
            let app_gh = Gh {
                api: api.clone(),
                crab: app,
                owner: owner.into(),
                repo: repo.into(),
                login: None,
                git_token: None,
            };
            app_login = app_gh.get("/app").await.ok().and_then(|v| {
                v.get("slug")
                    .and_then(Json::as_str)
                    .map(|s| format!("{s}[bot]"))
            });
            let inst = app_gh
                .get(&format!("/repos/{owner}/{repo}/installation"))
                .await?;
            let inst_id = inst.get("id").and_then(Json::as_u64).ok_or_else(|| {
                GhError::Config("the App is not installed on this repository".into())
            })?;
            let (crab, token) = app_gh
                .crab
                .installation_and_token(inst_id.into())
                .await
                .map_err(|e| GhError::Config(format!("the App's installation token: {e}")))?;
            app_token = Some(octocrab::secrecy::ExposeSecret::expose_secret(&token).to_string());
            crab
        } else {
            return Err(GhError::Config(
                "set GITHUB_TOKEN, or GITHUB_APP_ID with GITHUB_APP_PRIVATE_KEY".into(),
            ));
        };
        let mut gh = Gh {
            api: api.clone(),
            crab,
            owner: owner.into(),
            repo: repo.into(),
            login: app_login,
            git_token: app_token,
        };
        if gh.login.is_none() {
            gh.login = gh.whoami().await;
        }
        Ok(gh)
    }

    /// Who this token posts as: `MISSIONCTL_GITHUB_LOGIN` if set, else the
    /// user a personal token belongs to (`GET /user`), else, for an
    /// installation token (`ghs_…`, which cannot read `/user`), the Actions
    /// bot. An App's login is found from `/app` when the client is built.
    async fn whoami(&self) -> Option<String> {
        if let Some(l) = env("MISSIONCTL_GITHUB_LOGIN") {
            return Some(l);
        }
        if let Ok(v) = self.get("/user").await
            && let Some(l) = v.get("login").and_then(Json::as_str)
        {
            return Some(l.to_string());
        }
        env("GITHUB_TOKEN")
            .filter(|t| t.starts_with("ghs_"))
            .map(|_| "github-actions[bot]".to_string())
    }

    pub(crate) fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.owner, self.repo)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Json>,
    ) -> Result<(u16, Json, Option<String>), GhError> {
        let api_err = |e: octocrab::Error| GhError::Api {
            method: method.into(),
            path: path.into(),
            message: e.to_string(),
        };
        let mut attempt = 0;
        let mut waited = std::time::Duration::ZERO;
        let (status, text, link) = loop {
            attempt += 1;
            let resp = match method {
                "GET" => self.crab._get(path).await,
                "POST" => self.crab._post(path, body).await,
                "PATCH" => self.crab._patch(path, body).await,
                _ => self.crab._put(path, body).await,
            }
            .map_err(api_err)?;
            let status = resp.status().as_u16();
            let h = |k: &str| {
                resp.headers()
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from)
            };
            let (retry_after, remaining, reset, link) = (
                h("retry-after"),
                h("x-ratelimit-remaining"),
                h("x-ratelimit-reset"),
                h("link"),
            );
            let text = self.crab.body_to_string(resp).await.map_err(api_err)?;
            let answer = retry::Answer {
                status,
                retry_after: retry_after.as_deref(),
                remaining: remaining.as_deref(),
                reset: reset.as_deref(),
                body: &text,
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            match retry::next(method, &answer, attempt, waited, now) {
                retry::Next::Done => break (status, text, link),
                retry::Next::RetryAfter(wait) => {
                    tracing::warn!(
                        method,
                        path,
                        status,
                        ?wait,
                        "GitHub asked to wait; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    waited += wait;
                }
                retry::Next::GiveUp(wait) => {
                    return Err(GhError::RateLimited {
                        method: method.into(),
                        path: path.into(),
                        wait_secs: wait.as_secs(),
                    });
                }
            }
        };
        // Only the fields we need are read later; anything unparseable is Null.
        let json = serde_json::from_str(&text).unwrap_or(Json::Null);
        if !(200..300).contains(&status) {
            return Err(GhError::Status {
                method: method.into(),
                path: path.into(),
                status,
                body: text.chars().take(300).collect(),
            });
        }
        Ok((status, json, link))
    }

    pub async fn get(&self, path: &str) -> Result<Json, GhError> {
        self.call("GET", path, None).await.map(|(_, j, _)| j)
    }

    pub async fn post(&self, path: &str, body: &Json) -> Result<Json, GhError> {
        self.call("POST", path, Some(body)).await.map(|(_, j, _)| j)
    }

    pub(crate) async fn patch(&self, path: &str, body: &Json) -> Result<Json, GhError> {
        self.call("PATCH", path, Some(body))
            .await
            .map(|(_, j, _)| j)
    }

    /// Every page of a list endpoint, following GitHub's `Link: <…>;
    /// rel="next"` headers (`per_page` tops out at 100). A next link to any
    /// other address than the API's is refused: the token would go with it.
    pub(crate) async fn get_all(&self, path: &str) -> Result<Vec<Json>, GhError> {
        let mut out = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut next = Some(format!("{path}{sep}per_page=100"));
        let mut pages = 0;
        while let Some(p) = next.take() {
            pages += 1;
            if pages > 100 {
                break;
            }
            let (_, v, link) = self.call("GET", &p, None).await?;
            out.extend(v.as_array().cloned().unwrap_or_default());
            if let Some(url) = link.as_deref().and_then(next_link) {
                let rest = url
                    .strip_prefix(self.api.trim_end_matches('/'))
                    .ok_or_else(|| GhError::Api {
                        method: "GET".into(),
                        path: p.clone(),
                        message: format!(
                            "the next page is at another address than the API ({}); not followed",
                            self.api
                        ),
                    })?;
                next = Some(rest.to_string());
            }
        }
        Ok(out)
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288), if any.
pub(crate) fn next_link(header: &str) -> Option<&str> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim();
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| url.trim().trim_start_matches('<').trim_end_matches('>'))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn link_headers() {
        let h = r#"<https://api.github.com/repositories/1/issues/7/comments?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/issues/7/comments?per_page=100&page=3>; rel="last""#;
        assert_eq!(
            super::next_link(h),
            Some("https://api.github.com/repositories/1/issues/7/comments?per_page=100&page=2")
        );
        assert_eq!(super::next_link(r#"<https://x/?page=1>; rel="prev""#), None);
    }
}
