//! `missionctl demo-model`: a small deterministic stand-in for an
//! OpenAI-compatible model, so the whole loop runs on a fresh machine with no
//! API key. It is not a language model. Its answers are derived from the
//! system prompt and the case by fixed rules, chosen so that pack changes
//! have visible effects:
//!
//! - a credential request is refused (as the refusal JSON) only if the
//!   system prompt says, in any wording, never to reveal credentials;
//!   without it the stand-in "leaks" a fake secret;
//! - instructions embedded in quoted material are ignored only if the prompt
//!   says such instructions are data (in any wording); otherwise the
//!   stand-in follows them;
//! - when the prompt shows a JSON answer format, the answer uses the last
//!   such example, filled from the request; otherwise it answers in prose;
//! - phrases the prompt bans are never produced, and every answer says it
//!   comes from the demo model.
//!
//! The rules key on meaning classes ([`Rule`]: a sentence with a negation,
//! a disclosure verb and a credential noun, whatever the wording), so a
//! same-meaning rewording is not a regression. As a judge it scores how much
//! of what the rubric asks for an output covers, minus leaked secrets,
//! followed injections, banned phrases and excess length; its reasons say it
//! is a stand-in. Every response is a pure function of the request, so runs
//! are reproducible and cacheable.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json as AxJson, Router};
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;

mod answer;
mod judge;
mod rules;

use answer::answer;
use judge::judge_answer;

#[derive(Clone)]
pub struct DemoConfig {
    pub latency: Duration,
}

/// A running demo model; dropping the handle does not stop it, `shutdown` does.
pub struct DemoServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl DemoServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
}

pub(crate) fn router(cfg: DemoConfig) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(cfg)
}

/// Serve on `addr` (use port 0 for an ephemeral port) until shut down.
pub async fn start(addr: SocketAddr, cfg: DemoConfig) -> std::io::Result<DemoServer> {
    // A stand-in that answers anyone is a stand-in someone mistakes for a
    // service: it listens on this machine only.
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "the demo model listens on loopback only (127.0.0.1 or [::1]), not {addr}; use --listen 127.0.0.1:PORT"
            ),
        ));
    }
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(cfg);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(DemoServer {
        addr,
        stop: Some(tx),
        task,
    })
}

async fn models() -> AxJson<Json> {
    AxJson(json!({"object": "list", "data": [
        {"id": "demo-1", "object": "model", "owned_by": "missionctl-demo"},
        {"id": "demo-judge", "object": "model", "owned_by": "missionctl-demo"}
    ]}))
}

async fn chat(
    State(cfg): State<DemoConfig>,
    body: Option<AxJson<Json>>,
) -> (StatusCode, AxJson<Json>) {
    let Some(AxJson(body)) = body else {
        return (
            StatusCode::BAD_REQUEST,
            AxJson(
                json!({"error": {"message": "expected a JSON chat completion request", "type": "invalid_request_error"}}),
            ),
        );
    };
    if !cfg.latency.is_zero() {
        tokio::time::sleep(cfg.latency).await;
    }
    (StatusCode::OK, AxJson(respond(&body)))
}

/// The demo model's answer to a chat-completions request body, as the JSON
/// response body. Public so test servers can script around it.
pub fn respond(body: &Json) -> Json {
    let messages = body
        .get("messages")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let system = messages
        .iter()
        .filter(|m| m.get("role").and_then(Json::as_str) == Some("system"))
        .filter_map(|m| m.get("content").and_then(Json::as_str))
        .collect::<Vec<_>>()
        .join("\n");
    let user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Json::as_str) == Some("user"))
        .and_then(|m| m.get("content").and_then(Json::as_str))
        .unwrap_or_default()
        .to_string();
    let content = if system.starts_with("You are an evaluation judge") {
        judge_answer(&messages)
    } else {
        answer(&system, &user)
    };
    completion_body(
        body.get("model").and_then(Json::as_str).unwrap_or("demo-1"),
        &system,
        &user,
        &content,
    )
}

/// An OpenAI chat-completion response body carrying `content`.
pub fn completion_body(model: &str, system: &str, user: &str, content: &str) -> Json {
    let o200k = crate::tokens::Family::O200k;
    let prompt_tokens = crate::tokens::count(system, o200k) + crate::tokens::count(user, o200k);
    let completion_tokens = crate::tokens::count(content, o200k);
    json!({
        "id": format!("demo-{:016x}", fxhash(&format!("{system}\u{0}{user}"))),
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    })
}

/// A small stable hash (FNV-1a) for ids and tie-breaking; not for security.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests;
