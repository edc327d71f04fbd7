//! The event that triggered a workflow (`GITHUB_EVENT_PATH`), reduced to what
//! the gate and the reporter need, for the shapes GitHub sends:
//! `pull_request`, `pull_request_review`, `merge_group` and `workflow_run`.

use serde_json::Value as Json;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub name: String,
    pub pr: Option<u64>,
    pub head_sha: Option<String>,
    pub base_sha: Option<String>,
    pub base_ref: Option<String>,
    /// The pull request comes from a fork: its workflow has no secrets and a read-only token.
    pub from_fork: bool,
    pub labels: Vec<String>,
    pub repository: Option<String>,
    /// A merge group's temporary branch (`gh-readonly-queue/...`): from a
    /// `merge_group` event's `head_ref`, or from a `workflow_run` that a
    /// merge group started (its `head_branch`).
    pub queue_ref: Option<String>,
}

/// The names of a pull request object's `labels`.
pub(crate) fn label_names(pr: &Json) -> Vec<String> {
    pr.get("labels")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|l| l.get("name").and_then(Json::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn s(v: &Json, p: &str) -> Option<String> {
    v.pointer(p).and_then(Json::as_str).map(String::from)
}

/// Parse an event payload. `name` is `GITHUB_EVENT_NAME`; when absent it is
/// inferred from the payload's shape.
pub fn parse(name: Option<&str>, payload: &Json) -> Event {
    let name = name.map(String::from).unwrap_or_else(|| {
        if payload.get("merge_group").is_some() {
            "merge_group".into()
        } else if payload.get("workflow_run").is_some() {
            "workflow_run".into()
        } else if payload.get("review").is_some() {
            "pull_request_review".into()
        } else if payload.get("pull_request").is_some() {
            "pull_request".into()
        } else {
            "unknown".into()
        }
    });
    let repository = s(payload, "/repository/full_name");
    match name.as_str() {
        "pull_request" | "pull_request_review" | "pull_request_target" => {
            let pr = payload.get("pull_request").cloned().unwrap_or(Json::Null);
            let head_repo = s(&pr, "/head/repo/full_name");
            let base_repo = s(&pr, "/base/repo/full_name");
            Event {
                pr: pr.get("number").and_then(Json::as_u64),
                head_sha: s(&pr, "/head/sha"),
                base_sha: s(&pr, "/base/sha"),
                base_ref: s(&pr, "/base/ref"),
                // A deleted fork has `head.repo: null`: still a fork.
                from_fork: head_repo != base_repo,
                labels: label_names(&pr),
                repository,
                queue_ref: None,
                name,
            }
        }
        "merge_group" => Event {
            pr: None,
            head_sha: s(payload, "/merge_group/head_sha"),
            base_sha: s(payload, "/merge_group/base_sha"),
            base_ref: s(payload, "/merge_group/base_ref")
                .map(|r| r.trim_start_matches("refs/heads/").to_string()),
            from_fork: false,
            labels: vec![],
            repository,
            queue_ref: s(payload, "/merge_group/head_ref"),
            name,
        },
        "workflow_run" => {
            let wr = payload.get("workflow_run").cloned().unwrap_or(Json::Null);
            let first = wr
                .pointer("/pull_requests/0")
                .cloned()
                .unwrap_or(Json::Null);
            let head_repo = s(&wr, "/head_repository/full_name");
            Event {
                pr: first.get("number").and_then(Json::as_u64),
                head_sha: s(&wr, "/head_sha"),
                base_sha: s(&first, "/base/sha"),
                base_ref: s(&first, "/base/ref"),
                from_fork: head_repo != repository,
                labels: vec![],
                repository,
                queue_ref: (s(&wr, "/event").as_deref() == Some("merge_group"))
                    .then(|| s(&wr, "/head_branch"))
                    .flatten(),
                name,
            }
        }
        _ => Event {
            repository,
            name,
            ..Event::default()
        },
    }
}

/// Read `GITHUB_EVENT_PATH` / `GITHUB_EVENT_NAME` when running in Actions:
/// `Ok(None)` outside Actions (no event path), an error naming the file when
/// it cannot be read or is not a JSON object (never silently no event).
pub fn from_env() -> Result<Option<Event>, String> {
    let Some(path) = std::env::var_os("GITHUB_EVENT_PATH") else {
        return Ok(None);
    };
    let shown = std::path::Path::new(&path).display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!("cannot read the GitHub event file {shown} (GITHUB_EVENT_PATH): {e}")
    })?;
    let payload: Json = serde_json::from_str(&text).map_err(|e| {
        format!("the GitHub event file {shown} (GITHUB_EVENT_PATH) is not JSON: {e}; unset GITHUB_EVENT_PATH or pass --base and --head")
    })?;
    if !payload.is_object() {
        return Err(format!(
            "the GitHub event file {shown} (GITHUB_EVENT_PATH) is not a JSON object"
        ));
    }
    Ok(Some(parse(
        std::env::var("GITHUB_EVENT_NAME").ok().as_deref(),
        &payload,
    )))
}
