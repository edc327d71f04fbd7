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
//!
//! Faults, for tests of what a harness does with a failing provider: a
//! request whose text holds `[demo:fail-once:KEY]` is answered HTTP 500
//! the first time KEY is seen (a transient error a retry gets past), and
//! one holding `[demo:fail-always]` is answered 500 every time;
//! `[demo:slow:MS]` delays the answer by MS milliseconds (at most 60 s).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json as AxJson, Router};
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;

mod answer;
mod judge;
mod optimise;
mod rules;

use answer::answer;
use judge::judge_answer;

#[derive(Clone, Default)]
pub struct DemoConfig {
    pub latency: Duration,
    /// A context window in tokens (system and user text, counted with
    /// o200k): longer requests are refused with HTTP 400
    /// `context_length_exceeded`, as OpenAI refuses them. None: no limit.
    pub context_window: Option<u64>,
    /// Append every request body here as one JSON line (what a harness
    /// really sent); a failed write answers 500, so nothing is lost silently.
    pub request_log: Option<std::sync::Arc<std::path::PathBuf>>,
    /// `[demo:fail-once:KEY]` keys already failed once.
    pub failed_once: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// The number in a `PREFIX<n>]` marker in the request, if any.
fn marker_ms(body: &Json, prefix: &str) -> Option<u64> {
    let raw = body.to_string();
    let rest = &raw[raw.find(prefix)? + prefix.len()..];
    rest[..rest.find(']')?].parse().ok()
}

/// Whether the request asks for an injected failure (see the module docs).
fn injected_failure(cfg: &DemoConfig, body: &Json) -> bool {
    let raw = body.to_string();
    if raw.contains("[demo:fail-always]") {
        return true;
    }
    const ONCE: &str = "[demo:fail-once:";
    let Some(at) = raw.find(ONCE) else {
        return false;
    };
    let rest = &raw[at + ONCE.len()..];
    let key = rest[..rest.find(']').unwrap_or(0)].to_string();
    cfg.failed_once
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key)
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
/// The demo model on an ephemeral loopback port, with the default settings
/// (what the gate and the improvement worker start for `base_url: demo`).
pub async fn start_loopback() -> std::io::Result<DemoServer> {
    start(SocketAddr::from(([127, 0, 0, 1], 0)), DemoConfig::default()).await
}

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

async fn chat(State(cfg): State<DemoConfig>, body: Option<AxJson<Json>>) -> Response {
    let Some(AxJson(body)) = body else {
        return (
            StatusCode::BAD_REQUEST,
            AxJson(
                json!({"error": {"message": "expected a JSON chat completion request", "type": "invalid_request_error"}}),
            ),
        )
            .into_response();
    };
    if !cfg.latency.is_zero() {
        tokio::time::sleep(cfg.latency).await;
    }
    if let Some(path) = &cfg.request_log
        && let Err(e) = append_line(path, &body)
    {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            AxJson(json!({"error": {"message": format!("demo model: cannot write the request log {}: {e}", path.display()), "type": "server_error"}})),
        )
            .into_response();
    }
    if let Some(ms) = marker_ms(&body, "[demo:slow:") {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    if injected_failure(&cfg, &body) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            AxJson(json!({"error": {"message": "demo model: injected failure (HTTP 500)", "type": "server_error", "code": "server_error"}})),
        )
            .into_response();
    }
    let answer = respond(&body);
    if let Some(window) = cfg.context_window {
        let used = answer["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
        if used > window {
            return (
                StatusCode::BAD_REQUEST,
                AxJson(json!({"error": {
                    "message": format!("This model's maximum context length is {window} tokens. However, your messages resulted in {used} tokens. Please reduce the length of the messages."),
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }})),
            )
                .into_response();
        }
    }
    if body.get("stream").and_then(Json::as_bool) == Some(true) {
        let usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Json::as_bool)
            == Some(true);
        return (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            sse_events(&answer, usage),
        )
            .into_response();
    }
    (StatusCode::OK, AxJson(answer)).into_response()
}

fn append_line(path: &std::path::Path, body: &Json) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut line = body.to_string();
    line.push('\n');
    f.write_all(line.as_bytes())
}

/// A completion body as the server-sent events a streaming OpenAI endpoint
/// sends: a role delta, the content, the finish reason, the usage chunk when
/// asked for (`stream_options.include_usage`), then `[DONE]`.
pub fn sse_events(completion: &Json, include_usage: bool) -> String {
    let id = completion["id"].clone();
    let model = completion["model"].clone();
    let content = completion
        .pointer("/choices/0/message/content")
        .and_then(Json::as_str)
        .unwrap_or_default();
    let chunk = |delta: Json, finish: Json| {
        json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![
        chunk(json!({"role": "assistant", "content": ""}), Json::Null),
        chunk(json!({"content": content}), Json::Null),
        chunk(json!({}), json!("stop")),
    ];
    if include_usage {
        events.push(
            json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
                           "choices": [], "usage": completion["usage"]}),
        );
    }
    let mut out = String::new();
    for e in events {
        out.push_str("data: ");
        out.push_str(&e.to_string());
        out.push_str("\n\n");
    }
    out.push_str("data: [DONE]\n\n");
    out
}

/// A message's text: a string, or the text parts of an array of parts.
fn text_of(m: &Json) -> String {
    match m.get("content") {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Json::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

const INTERNAL_BEGIN: &str = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>";
const INTERNAL_END: &str = "<<<END_OPENCLAW_INTERNAL_CONTEXT>>>";

/// The user's own words in a message OpenClaw sent: its internal-context
/// blocks removed, the `[Fri 2026-11-27 00:15 UTC] ` timestamp prefix and
/// the trailing `Runtime: agent=…` line dropped. Other text is unchanged.
pub(crate) fn user_text(raw: &str) -> String {
    let mut s = raw.to_string();
    while let Some(b) = s.find(INTERNAL_BEGIN) {
        let end = s[b..]
            .find(INTERNAL_END)
            .map_or(s.len(), |e| b + e + INTERNAL_END.len());
        s.replace_range(b..end, "");
    }
    if let Some(r) = s.find("\n\nRuntime: agent=") {
        s.truncate(r);
    } else if s.starts_with("Runtime: agent=") {
        s.clear();
    }
    let t = s.trim();
    // A timestamp envelope: `[` … a YYYY-MM-DD date … `] `.
    if let Some(rest) = t.strip_prefix('[')
        && let Some(close) = rest.find(']')
        && is_timestamp(&rest[..close])
    {
        return rest[close + 1..].trim().to_string();
    }
    t.to_string()
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() < 80
        && b.windows(10).any(|w| {
            w.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                _ => c.is_ascii_digit(),
            })
        })
}

/// The part of an OpenClaw system prompt the workspace files make up (its
/// `# Project Context`); OpenClaw's own instructions around it are the same
/// for every pack and are not what the stand-in should follow. Any other
/// system prompt is used whole.
pub(crate) fn pack_prompt(system: &str) -> &str {
    match system.find("\n# Project Context\n") {
        Some(start) => {
            let rest = &system[start..];
            let end = rest.find("<!-- /openclaw:attempt").unwrap_or(rest.len());
            &rest[..end]
        }
        None => system,
    }
}

/// The demo model's answer to a chat-completions request body, as the JSON
/// response body. Public so test servers can script around it. It reads
/// what OpenClaw sends as well as plain requests: content as arrays of
/// parts, internal-context messages, timestamp prefixes.
pub fn respond(body: &Json) -> Json {
    let messages = body
        .get("messages")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let system = messages
        .iter()
        .filter(|m| m.get("role").and_then(Json::as_str) == Some("system"))
        .map(text_of)
        .collect::<Vec<_>>()
        .join("\n");
    let user = messages
        .iter()
        .rev()
        .filter(|m| m.get("role").and_then(Json::as_str) == Some("user"))
        .map(|m| user_text(&text_of(m)))
        .find(|t| !t.is_empty())
        .unwrap_or_default();
    let content = if system.starts_with("You are an evaluation judge") {
        judge_answer(&messages)
    } else if system.starts_with(crate::model::OPTIMISER_SYSTEM) {
        optimise::answer(&user)
    } else {
        answer(pack_prompt(&system), &user)
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
