//! An OpenAI-compatible chat-completions client for harnesses and judges.
//!
//! - Responses are cached in the state store under a key made of everything
//!   that determines them (base URL, model, parameters, full messages, tools
//!   and a caller tag such as the rubric version). Only answers the caller
//!   accepts are cached: errors and malformed judge answers never are.
//! - Concurrency adapts (AIMD): the window halves on HTTP 429 or 5xx and
//!   climbs back by one request per window of successes; a `Retry-After`
//!   pauses every request until it has passed.
//! - API keys come from the environment, are never logged, and `Debug`
//!   redacts them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Notify};

use crate::store::Store;

#[derive(Clone)]
pub struct Endpoint {
    /// Base URL ending before `/v1/chat/completions` (e.g. `http://127.0.0.1:8080`).
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub temperature: f64,
    /// Nucleus sampling (`top_p`), sent only when set.
    pub top_p: Option<f64>,
    pub max_tokens: u32,
    /// The request field that carries `max_tokens`.
    pub token_field: TokenField,
    pub timeout: Duration,
    /// What identifies this endpoint in cache keys: the configured base URL
    /// (`demo` for the built-in model, whose port changes every run).
    pub cache_id: String,
    /// OpenClaw's `x-openclaw-session-key`: one session per eval case, so no
    /// history leaks between cases. Not part of the cache key.
    pub session: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn system(s: impl Into<String>) -> Self {
        Message {
            role: "system".into(),
            content: s.into(),
        }
    }
    pub fn user(s: impl Into<String>) -> Self {
        Message {
            role: "user".into(),
            content: s.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Completion {
    pub content: String,
    #[serde(default)]
    pub tool_calls: Vec<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Wall time of the request that produced this answer (also when served
    /// from cache, so latency comparisons stay meaningful).
    pub latency_ms: f64,
    #[serde(default)]
    pub cached: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    #[error("{url} answered HTTP {status}: {body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url} answered something that is not a chat completion: {message}")]
    Malformed { url: String, message: String },
    #[error("the answer was rejected: {0}")]
    Rejected(String),
}

/// The first 300 characters of an error body with the API key removed: some
/// endpoints echo the request's credentials, and this text is printed.
fn scrub_key(body: &str, key: Option<&str>) -> String {
    let body = match key.filter(|k| !k.is_empty()) {
        Some(k) => body.replace(k, "***"),
        None => body.to_string(),
    };
    body.chars().take(300).collect()
}

/// Counters for the evidence (cache hit rate, throttling).
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub cache_hits: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
}

struct LimiterState {
    limit: f64,
    in_flight: usize,
    paused_until: Option<Instant>,
}

/// AIMD concurrency window shared by every request of a run.
pub struct Limiter {
    state: Mutex<LimiterState>,
    notify: Notify,
    max: usize,
}

impl Limiter {
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Limiter {
            state: Mutex::new(LimiterState {
                limit: max as f64,
                in_flight: 0,
                paused_until: None,
            }),
            notify: Notify::new(),
            max,
        }
    }

    pub async fn current(&self) -> f64 {
        self.state.lock().await.limit
    }

    async fn acquire(&self) {
        loop {
            let wait = {
                let mut s = self.state.lock().await;
                let now = Instant::now();
                match s.paused_until {
                    Some(t) if t > now => Some(t - now),
                    _ => {
                        if (s.in_flight as f64) < s.limit.floor().max(1.0) {
                            s.in_flight += 1;
                            return;
                        }
                        None
                    }
                }
            };
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => {
                    // Re-check periodically in case a pause ended without a release.
                    let _ = tokio::time::timeout(Duration::from_millis(50), self.notify.notified())
                        .await;
                }
            }
        }
    }

    async fn release(&self, outcome: Outcome) {
        let mut s = self.state.lock().await;
        s.in_flight = s.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Ok => {
                s.limit = (s.limit + 1.0 / s.limit.max(1.0)).min(self.max as f64);
            }
            Outcome::Throttled(retry_after) => {
                s.limit = (s.limit / 2.0).max(1.0);
                if let Some(d) = retry_after {
                    let until = Instant::now() + d;
                    if s.paused_until.is_none_or(|t| t < until) {
                        s.paused_until = Some(until);
                    }
                }
            }
            Outcome::Other => {}
        }
        drop(s);
        self.notify.notify_waiters();
    }
}

enum Outcome {
    Ok,
    Throttled(Option<Duration>),
    Other,
}

type Shared = Arc<tokio::sync::OnceCell<Result<Completion, LlmError>>>;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub limiter: Arc<Limiter>,
    store: Option<Store>,
    pub stats: Arc<Stats>,
    max_attempts: u32,
    /// Identical requests in flight share one answer (and one bill).
    inflight: Arc<std::sync::Mutex<std::collections::HashMap<String, Shared>>>,
    /// Tests only: after a cache miss, say so (`.0`) and wait (`.1`), to
    /// place another caller's whole request inside that window.
    #[cfg(test)]
    after_miss: Option<Arc<(tokio::sync::Notify, tokio::sync::Notify)>>,
}

/// Parse `Retry-After` given in seconds (the HTTP-date form falls back to 1 s).
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    match v.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_secs_f64(s.min(120.0))),
        _ => Some(Duration::from_secs(1)),
    }
}

/// Which request field limits the completion: OpenAI's newer models
/// (o-series, gpt-5) refuse `max_tokens` and want `max_completion_tokens`;
/// most other OpenAI-compatible servers know only `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenField {
    MaxTokens,
    MaxCompletionTokens,
}

impl TokenField {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenField::MaxTokens => "max_tokens",
            TokenField::MaxCompletionTokens => "max_completion_tokens",
        }
    }

    /// The field a model expects when `mission.yaml` does not say: the one
    /// OpenAI documents for the model family.
    pub fn for_model(model: &str) -> TokenField {
        let m = model.rsplit('/').next().unwrap_or(model);
        let newer = ["o1", "o3", "o4", "gpt-5"]
            .iter()
            .any(|p| m == *p || m.starts_with(&format!("{p}-")));
        if newer {
            TokenField::MaxCompletionTokens
        } else {
            TokenField::MaxTokens
        }
    }
}

pub(crate) fn cache_key(
    ep: &Endpoint,
    messages: &[Message],
    tools: &[String],
    tag: &str,
) -> String {
    let mut v = json!({
        "endpoint": ep.cache_id,
        "model": ep.model,
        "temperature": ep.temperature,
        "max_tokens": ep.max_tokens,
        "token_field": ep.token_field.as_str(),
        "messages": messages,
        "tools": tools,
        "tag": tag,
    });
    if let Some(p) = ep.top_p {
        v["top_p"] = json!(p);
    }
    hex::encode(Sha256::digest(
        crate::resolve::canonical_json(&v).as_bytes(),
    ))
}

impl Client {
    pub fn new(max_concurrency: usize, store: Option<Store>) -> Self {
        Client {
            http: reqwest::Client::builder()
                .user_agent(concat!("missionctl/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
            limiter: Arc::new(Limiter::new(max_concurrency)),
            store,
            stats: Arc::new(Stats::default()),
            max_attempts: 6,
            inflight: Arc::default(),
            #[cfg(test)]
            after_miss: None,
        }
    }

    /// One chat completion. `accept` decides whether an answer is usable
    /// (e.g. strict JSON from a judge); only accepted answers are cached.
    pub async fn chat(
        &self,
        ep: &Endpoint,
        messages: &[Message],
        tools: &[String],
        tag: &str,
        accept: &(dyn Fn(&Completion) -> Result<(), String> + Sync),
    ) -> Result<Completion, LlmError> {
        let key = cache_key(ep, messages, tools, tag);
        if let Some(c) = self.cached(&key).await {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(c);
        }
        #[cfg(test)]
        if let Some(p) = &self.after_miss {
            p.0.notify_one();
            p.1.notified().await;
        }
        let cell: Shared = {
            let mut map = self
                .inflight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(key.clone()).or_default().clone()
        };
        let mut first = false;
        let result = cell
            .get_or_init(|| async {
                first = true;
                // Looked up again: the same request may have finished (and
                // been cached) between the lookup above and this cell's
                // creation, and asking twice would pay twice.
                if let Some(c) = self.cached(&key).await {
                    return Ok(c);
                }
                let c = self.request(ep, messages, tools).await?;
                accept(&c).map_err(LlmError::Rejected)?;
                if let Some(store) = &self.store
                    && let Ok(s) = serde_json::to_string(&c)
                {
                    // A cache write failure costs a future request, not this answer.
                    // The cache only saves money: a failed write is reported, and the answer stands.
                    if let Err(e) = store.cache_put(&key, &s).await {
                        tracing::warn!(error = %e, "could not cache a model response; the answer stands, and a rerun asks the model again");
                    }
                }
                Ok(c)
            })
            .await
            .clone();
        if first {
            self.inflight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&key);
            if result.as_ref().is_ok_and(|c| c.cached) {
                self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            }
        } else if let Ok(c) = &result {
            // Served by another caller's request: free, like a cache hit.
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            let mut c = c.clone();
            c.cached = true;
            return Ok(c);
        }
        result
    }

    /// A cached answer for `key` (queued or committed), marked as cached.
    async fn cached(&self, key: &str) -> Option<Completion> {
        let hit = self.store.as_ref()?.cache_get(key).await.ok()??;
        let mut c = serde_json::from_str::<Completion>(&hit).ok()?;
        c.cached = true;
        Some(c)
    }

    async fn request(
        &self,
        ep: &Endpoint,
        messages: &[Message],
        tools: &[String],
    ) -> Result<Completion, LlmError> {
        let url = format!("{}/v1/chat/completions", ep.base_url.trim_end_matches('/'));
        let mut body = json!({
            "model": ep.model,
            "messages": messages,
            "temperature": ep.temperature,
        });
        if let Some(p) = ep.top_p {
            body["top_p"] = json!(p);
        }
        body[ep.token_field.as_str()] = json!(ep.max_tokens);
        if !tools.is_empty() {
            body["tools"] = Json::Array(
                tools
                    .iter()
                    .map(|t| {
                        json!({"type": "function", "function": {
                            "name": t.replace('.', "__"),
                            "description": format!("The `{t}` tool."),
                            "parameters": {"type": "object", "properties": {}}
                        }})
                    })
                    .collect(),
            );
        }
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.limiter.acquire().await;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let mut req = self.http.post(&url).timeout(ep.timeout).json(&body);
            if let Some(k) = &ep.api_key {
                req = req.bearer_auth(k);
            }
            if let Some(sk) = &ep.session {
                req = req.header("x-openclaw-session-key", sk);
            }
            let result = req.send().await;
            let (outcome, res) = match result {
                Err(e) => {
                    let transient = e.is_timeout() || e.is_connect() || e.is_request();
                    (
                        Outcome::Other,
                        Err((
                            transient,
                            None,
                            LlmError::Transport {
                                url: url.clone(),
                                message: e.to_string(),
                            },
                        )),
                    )
                }
                Ok(resp) => {
                    let status = resp.status();
                    let ra = retry_after(resp.headers());
                    if status.as_u16() == 429 || status.is_server_error() {
                        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                        let text = resp.text().await.unwrap_or_default();
                        (
                            Outcome::Throttled(ra),
                            Err((
                                true,
                                ra,
                                LlmError::Http {
                                    url: url.clone(),
                                    status: status.as_u16(),
                                    body: scrub_key(&text, ep.api_key.as_deref()),
                                },
                            )),
                        )
                    } else if !status.is_success() {
                        let text = resp.text().await.unwrap_or_default();
                        (
                            Outcome::Other,
                            Err((
                                false,
                                None,
                                LlmError::Http {
                                    url: url.clone(),
                                    status: status.as_u16(),
                                    body: scrub_key(&text, ep.api_key.as_deref()),
                                },
                            )),
                        )
                    } else {
                        match resp.json::<Json>().await {
                            Ok(v) => (
                                Outcome::Ok,
                                parse_completion(&url, &v, started.elapsed())
                                    .map_err(|e| (false, None, e)),
                            ),
                            Err(e) => (
                                Outcome::Other,
                                Err((
                                    false,
                                    None,
                                    LlmError::Malformed {
                                        url: url.clone(),
                                        message: e.to_string(),
                                    },
                                )),
                            ),
                        }
                    }
                }
            };
            self.limiter.release(outcome).await;
            match res {
                Ok(c) => return Ok(c),
                Err((true, ra, e)) if attempt < self.max_attempts => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let backoff = ra.unwrap_or_else(|| {
                        let base = 250u64 * 2u64.pow(attempt.min(5));
                        let jitter = rand::random_range(0..=base / 4);
                        Duration::from_millis((base + jitter).min(8_000))
                    });
                    tracing::debug!(attempt, ?backoff, error = %e, "retrying model request");
                    tokio::time::sleep(backoff).await;
                }
                Err((_, _, e)) => return Err(e),
            }
        }
    }
}

fn parse_completion(url: &str, v: &Json, elapsed: Duration) -> Result<Completion, LlmError> {
    let malformed = |m: &str| LlmError::Malformed {
        url: url.to_string(),
        message: m.to_string(),
    };
    let msg = v
        .pointer("/choices/0/message")
        .ok_or_else(|| malformed("no choices[0].message"))?;
    let content = msg
        .get("content")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    let tool_calls = msg
        .get("tool_calls")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.pointer("/function/name").and_then(Json::as_str))
                .map(|n| n.replace("__", "."))
                .collect()
        })
        .unwrap_or_default();
    let usage = v.get("usage");
    let tok = |k: &str| usage.and_then(|u| u.get(k)).and_then(Json::as_u64);
    Ok(Completion {
        prompt_tokens: tok("prompt_tokens").unwrap_or(0),
        completion_tokens: tok("completion_tokens")
            .unwrap_or_else(|| crate::tokens::count(&content, crate::tokens::Family::default())),
        content,
        tool_calls,
        latency_ms: elapsed.as_secs_f64() * 1000.0,
        cached: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10, point 11 (step): an endpoint that echoes the key in its
    /// error body does not get it printed.
    #[test]
    fn error_bodies_are_scrubbed_of_the_key() {
        let body = r#"{"error": "invalid key sk-test-123 for org"}"#;
        let shown = scrub_key(body, Some("sk-test-123"));
        assert!(!shown.contains("sk-test-123"), "{shown}");
        assert!(shown.contains("***"));
        assert_eq!(scrub_key(&"x".repeat(500), None).len(), 300);
    }

    /// An identical request that finishes while a caller is between its
    /// cache lookup and the single-flight map is not sent again: the caller
    /// finds its answer in the cache (a race that paid twice under load).
    #[tokio::test]
    async fn a_request_finished_during_a_lookup_is_not_sent_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::connect(&db).await.expect("store");
        let demo = crate::eval::demo_model::start_loopback()
            .await
            .expect("demo model");
        let ep = Endpoint {
            base_url: demo.url(),
            model: "demo".into(),
            api_key: None,
            temperature: 0.0,
            top_p: None,
            max_tokens: 200,
            token_field: TokenField::MaxTokens,
            timeout: Duration::from_secs(30),
            cache_id: "demo".into(),
            session: None,
        };
        let messages = [
            Message::system("Be brief."),
            Message::user("How much leave do I have?"),
        ];
        let a = Client::new(4, Some(store));
        let mut b = a.clone();
        let gate = Arc::new((tokio::sync::Notify::new(), tokio::sync::Notify::new()));
        b.after_miss = Some(gate.clone());
        let (ep_b, msgs_b) = (ep.clone(), messages.to_vec());
        let late =
            tokio::spawn(async move { b.chat(&ep_b, &msgs_b, &[], "harness", &|_| Ok(())).await });
        // B has missed the cache; A's whole request happens now.
        gate.0.notified().await;
        let first = a
            .chat(&ep, &messages, &[], "harness", &|_| Ok(()))
            .await
            .expect("answer");
        assert!(!first.cached);
        gate.1.notify_one();
        let second = late.await.expect("join").expect("answer");
        assert!(second.cached, "the late caller asked the model again");
        assert_eq!(second.content, first.content);
        assert_eq!(a.stats.requests.load(Ordering::Relaxed), 1);
        assert_eq!(a.stats.cache_hits.load(Ordering::Relaxed), 1);
        demo.shutdown().await;
    }

    /// Issue 12: OpenAI's newer models want `max_completion_tokens`; others
    /// keep `max_tokens`; a provider prefix does not hide the model.
    #[test]
    fn the_token_limit_field_follows_the_model_family() {
        for m in [
            "o1",
            "o3-mini",
            "o4-mini",
            "gpt-5",
            "gpt-5-mini",
            "openai/gpt-5-nano",
        ] {
            assert_eq!(
                TokenField::for_model(m),
                TokenField::MaxCompletionTokens,
                "{m}"
            );
        }
        for m in [
            "gpt-4o-mini",
            "gpt-4.1",
            "llama3",
            "o1x",
            "mistral-large",
            "demo",
        ] {
            assert_eq!(TokenField::for_model(m), TokenField::MaxTokens, "{m}");
        }
    }
}
