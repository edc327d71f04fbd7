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
                .base_uri(api.as_str())
                .map_err(|e| GhError::Config(format!("GITHUB_API_URL `{api}`: {e}")))
        };
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
                crab: app,
                owner: owner.into(),
                repo: repo.into(),
            };
            let inst = app_gh
                .get(&format!("/repos/{owner}/{repo}/installation"))
                .await?;
            let inst_id = inst.get("id").and_then(Json::as_u64).ok_or_else(|| {
                GhError::Config("the App is not installed on this repository".into())
            })?;
            app_gh
                .crab
                .installation(inst_id.into())
                .map_err(|e| GhError::Config(e.to_string()))?
        } else {
            return Err(GhError::Config(
                "set GITHUB_TOKEN, or GITHUB_APP_ID with GITHUB_APP_PRIVATE_KEY".into(),
            ));
        };
        Ok(Gh {
            crab,
            owner: owner.into(),
            repo: repo.into(),
        })
    }

    pub(crate) fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.owner, self.repo)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Json>,
    ) -> Result<(u16, Json), GhError> {
        let api_err = |e: octocrab::Error| GhError::Api {
            method: method.into(),
            path: path.into(),
            message: e.to_string(),
        };
        let resp = match method {
            "GET" => self.crab._get(path).await,
            "POST" => self.crab._post(path, body).await,
            "PATCH" => self.crab._patch(path, body).await,
            _ => self.crab._put(path, body).await,
        }
        .map_err(api_err)?;
        let status = resp.status().as_u16();
        let text = self.crab.body_to_string(resp).await.map_err(api_err)?;
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
        Ok((status, json))
    }

    pub async fn get(&self, path: &str) -> Result<Json, GhError> {
        self.call("GET", path, None).await.map(|(_, j)| j)
    }

    pub async fn post(&self, path: &str, body: &Json) -> Result<Json, GhError> {
        self.call("POST", path, Some(body)).await.map(|(_, j)| j)
    }

    pub(crate) async fn patch(&self, path: &str, body: &Json) -> Result<Json, GhError> {
        self.call("PATCH", path, Some(body)).await.map(|(_, j)| j)
    }

    /// Every page of a list endpoint (GitHub's `per_page` tops out at 100).
    pub(crate) async fn get_all(&self, path: &str) -> Result<Vec<Json>, GhError> {
        let mut out = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        for page in 1..=50 {
            let v = self
                .get(&format!("{path}{sep}per_page=100&page={page}"))
                .await?;
            let items = v.as_array().cloned().unwrap_or_default();
            let n = items.len();
            out.extend(items);
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }
}
