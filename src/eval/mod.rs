//! Running packs on eval cases: harness adapters, deterministic assertions,
//! the LLM judge and paired statistics.
//!
//! The configuration is read from `mission.yaml` at the *base* revision by
//! the gate, so a pull request can change neither the harness command nor
//! the judge that evaluates it.

pub mod assertions;
pub mod demo_model;
pub mod judge;
pub mod llm;
pub mod openclaw;
pub mod stats;

/// JavaScript's semantics, shared with the pack format (see [`crate::js`]).
pub use crate::js::{self, nunjucks, transform};

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::eval::llm::{Client, Endpoint, LlmError, Message};
use crate::pack::EvalCase;
use crate::resolve::Resolved;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("mission.yaml: {field}: {message}")]
    Field { field: String, message: String },
}

fn field_err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Where a model lives, before the demo model's address is known.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// `demo` for the built-in stand-in, else an OpenAI-compatible base URL.
    pub base_url: String,
    pub model: String,
    pub api_key_env: Option<String>,
    pub temperature: f64,
    /// `top_p`, sent only when set.
    pub top_p: Option<f64>,
    pub max_tokens: u32,
    pub token_field: crate::eval::llm::TokenField,
    pub timeout: Duration,
}

impl ModelSpec {
    pub(crate) fn is_demo(&self) -> bool {
        self.base_url == "demo"
    }

    /// The endpoint to call; `demo_url` replaces `demo`. The API key is read
    /// from the named environment variable and never from the repository.
    pub fn endpoint(&self, demo_url: Option<&str>) -> Endpoint {
        Endpoint {
            base_url: if self.is_demo() {
                demo_url.unwrap_or("http://127.0.0.1:9").to_string()
            } else {
                self.base_url.clone()
            },
            model: self.model.clone(),
            api_key: self
                .api_key_env
                .as_ref()
                .and_then(|k| std::env::var(k).ok())
                .filter(|k| !k.is_empty()),
            temperature: self.temperature,
            top_p: self.top_p,
            max_tokens: self.max_tokens,
            token_field: self.token_field,
            timeout: self.timeout,
            cache_id: self.base_url.clone(),
            session: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Harness {
    OpenAi(ModelSpec),
    Command {
        argv: Vec<String>,
        timeout: Duration,
    },
    /// Real OpenClaw agents: a Gateway serving the champion and challenger
    /// as agents, with `ModelSpec` the model behind them.
    OpenClaw(openclaw::OpenClawSpec),
}

impl Harness {
    /// The model the harness calls (for OpenClaw, the model behind it).
    pub fn model_spec(&self) -> Option<&ModelSpec> {
        match self {
            Harness::OpenAi(s) => Some(s),
            Harness::OpenClaw(o) => Some(&o.model),
            Harness::Command { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

#[derive(Debug, Clone)]
pub struct EvalConfig {
    pub harness: Harness,
    pub judge: Option<(ModelSpec, u32)>,
    pub concurrency: usize,
    pub max_chains: usize,
    pub prices: BTreeMap<String, Price>,
}

pub(crate) fn model_spec(
    v: &Json,
    field: &str,
    default_model: &str,
) -> Result<ModelSpec, ConfigError> {
    let base_url = v
        .get("base_url")
        .and_then(Json::as_str)
        .ok_or_else(|| {
            field_err(
                &format!("{field}.base_url"),
                "is required (an OpenAI-compatible URL, or `demo`)",
            )
        })?
        .to_string();
    if base_url != "demo" && !base_url.starts_with("http://") && !base_url.starts_with("https://") {
        return Err(field_err(
            &format!("{field}.base_url"),
            format!("`{base_url}` is not an http(s) URL or `demo`"),
        ));
    }
    let base_url = normalise_base_url(&base_url);
    let model = v
        .get("model")
        .and_then(Json::as_str)
        .unwrap_or(default_model)
        .to_string();
    let token_field = match v.get("max_tokens_field").and_then(Json::as_str) {
        None => crate::eval::llm::TokenField::for_model(&model),
        Some("max_tokens") => crate::eval::llm::TokenField::MaxTokens,
        Some("max_completion_tokens") => crate::eval::llm::TokenField::MaxCompletionTokens,
        Some(other) => {
            return Err(field_err(
                &format!("{field}.max_tokens_field"),
                format!("`{other}` is not `max_tokens` or `max_completion_tokens`"),
            ));
        }
    };
    Ok(ModelSpec {
        base_url,
        token_field,
        model,
        api_key_env: v
            .get("api_key_env")
            .and_then(Json::as_str)
            .map(String::from),
        temperature: v.get("temperature").and_then(Json::as_f64).unwrap_or(0.0),
        top_p: v.get("top_p").and_then(Json::as_f64),
        max_tokens: v.get("max_tokens").and_then(Json::as_u64).unwrap_or(800) as u32,
        timeout: Duration::from_secs_f64(
            v.get("timeout_seconds")
                .and_then(Json::as_f64)
                .unwrap_or(60.0),
        ),
    })
}

/// A base URL as requests use it: the address before `/v1/chat/completions`.
/// Both spellings providers document are accepted: `http://host` and
/// `http://host/v1` (with or without a trailing `/`) name the same endpoint.
pub fn normalise_base_url(url: &str) -> String {
    let t = url.trim_end_matches('/');
    t.strip_suffix("/v1").unwrap_or(t).to_string()
}

impl EvalConfig {
    /// From mission.yaml's `eval` section (already schema-checked).
    pub fn from_mission(eval: &Json) -> Result<EvalConfig, ConfigError> {
        let h = eval
            .get("harness")
            .ok_or_else(|| field_err("eval.harness", "is required to evaluate packs"))?;
        let harness = match h.get("type").and_then(Json::as_str) {
            Some("openai") => Harness::OpenAi(model_spec(h, "eval.harness", "gpt-4o-mini")?),
            Some("command") => {
                let argv = strings(h.get("command"));
                if argv.is_empty() {
                    return Err(field_err(
                        "eval.harness.command",
                        "a `command` harness needs the program and its arguments",
                    ));
                }
                Harness::Command {
                    argv,
                    timeout: Duration::from_secs_f64(
                        h.get("timeout_seconds")
                            .and_then(Json::as_f64)
                            .unwrap_or(60.0),
                    ),
                }
            }
            Some("openclaw") => Harness::OpenClaw(openclaw::OpenClawSpec {
                model: model_spec(h, "eval.harness", "gpt-4o-mini")?,
                gateway_url: h
                    .get("gateway_url")
                    .and_then(Json::as_str)
                    .map(str::to_string),
                gateway_token_env: h
                    .get("gateway_token_env")
                    .and_then(Json::as_str)
                    .map(str::to_string),
                concurrency: h
                    .get("concurrency")
                    .and_then(Json::as_u64)
                    .map(|c| c.clamp(1, 64) as usize),
            }),
            other => {
                return Err(field_err(
                    "eval.harness.type",
                    format!("{other:?} is not `openai`, `command` or `openclaw`"),
                ));
            }
        };
        let judge = match eval.get("judge") {
            Some(j) => Some((
                model_spec(j, "eval.judge", "gpt-4o-mini")?,
                j.get("repeats")
                    .and_then(Json::as_u64)
                    .unwrap_or(1)
                    .clamp(1, 10) as u32,
            )),
            None => None,
        };
        let prices = eval
            .get("prices")
            .and_then(Json::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            Price {
                                input_per_mtok: v
                                    .get("input_per_mtok")
                                    .and_then(Json::as_f64)
                                    .unwrap_or(0.0),
                                output_per_mtok: v
                                    .get("output_per_mtok")
                                    .and_then(Json::as_f64)
                                    .unwrap_or(0.0),
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(EvalConfig {
            harness,
            judge,
            concurrency: eval
                .get("concurrency")
                .and_then(Json::as_u64)
                .unwrap_or(8)
                .clamp(1, 256) as usize,
            max_chains: eval
                .get("max_chains")
                .and_then(Json::as_u64)
                .unwrap_or(50)
                .max(1) as usize,
            prices,
        })
    }

    /// Cases in flight at once through the harness.
    pub fn harness_concurrency(&self) -> usize {
        match &self.harness {
            Harness::OpenClaw(o) => o
                .concurrency
                .unwrap_or(self.concurrency.min(openclaw::DEFAULT_CONCURRENCY)),
            _ => self.concurrency,
        }
        .max(1)
    }

    pub fn cost(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        self.prices.get(model).map_or(0.0, |p| {
            (prompt_tokens as f64 * p.input_per_mtok + completion_tokens as f64 * p.output_per_mtok)
                / 1e6
        })
    }

    pub(crate) fn price_of(&self, model: &str) -> (f64, f64) {
        self.prices
            .get(model)
            .map_or((0.0, 0.0), |p| (p.input_per_mtok, p.output_per_mtok))
    }

    /// The encoding the harness model's tokens are counted with.
    pub fn token_family(&self) -> crate::tokens::Family {
        match self.harness.model_spec() {
            Some(s) => crate::tokens::Family::for_model(&s.model),
            None => crate::tokens::Family::default(),
        }
    }

    /// Whether the harness calls a paid endpoint (not the built-in demo
    /// model, not a local command).
    pub(crate) fn harness_is_paid(&self) -> bool {
        self.harness.model_spec().is_some_and(|s| !s.is_demo())
    }

    /// Whether the judge is a paid endpoint.
    pub(crate) fn judge_is_paid(&self) -> bool {
        self.judge.as_ref().is_some_and(|(s, _)| !s.is_demo())
    }

    pub(crate) fn uses_demo(&self) -> bool {
        self.harness.model_spec().is_some_and(ModelSpec::is_demo)
            || self.judge.as_ref().is_some_and(|(s, _)| s.is_demo())
    }
}

/// One harness answer for one (resolved pack, case).
#[derive(Debug, Clone, Serialize, Default)]
pub struct RunOutput {
    pub output: String,
    pub tool_calls: Vec<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub latency_ms: f64,
    pub cost_usd: f64,
    /// The harness reported a cost (or its price is known): promptfoo's
    /// `cost` assertion errors without one.
    #[serde(skip)]
    pub cost_reported: bool,
    pub cached: bool,
    pub error: Option<String>,
    /// The failure is about the setup (endpoint unreachable, credentials
    /// refused, harness missing), not this case: retrying other cases is futile.
    #[serde(skip)]
    pub fatal: bool,
}

/// The system message a harness receives: the composed prompt, then the
/// voice profile spelled out so the model can follow it, then the output
/// contracts.
pub(crate) fn system_prompt(r: &Resolved) -> String {
    let mut s = r.prompt_text().to_string();
    let voice = r.voice_text();
    if !voice.is_empty() {
        s.push_str("\n\n## Voice\n");
        s.push_str(&voice);
    }
    s.push_str(&r.contracts_text());
    s
}

/// The user message for a case, rendered when the case was loaded (see
/// `pack::cases`: the template, else `input` and the other vars as context
/// lines, else the only var).
pub(crate) fn user_message(case: &EvalCase) -> String {
    case.user.clone()
}

/// The text a case sends after the system prompt: its user message, or
/// every message of a chat-format prompt (for token estimates).
pub(crate) fn sent_text(case: &EvalCase) -> String {
    if case.messages.is_empty() {
        return case.user.clone();
    }
    let parts: Vec<&str> = case.messages.iter().map(|t| t.content.as_str()).collect();
    parts.join("\n")
}

/// The strings of a JSON array (schema-checked already), or none.
pub(crate) fn strings(v: Option<&Json>) -> Vec<String> {
    v.and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Run one case through the configured harness; `system` is
/// [`system_prompt`] of `resolved`, built once per chain by the caller.
pub(crate) async fn run_case(
    cfg: &EvalConfig,
    client: &Client,
    demo_url: Option<&str>,
    gateway: Option<&openclaw::Target>,
    resolved: &Resolved,
    system: &str,
    case: &EvalCase,
) -> RunOutput {
    match &cfg.harness {
        Harness::OpenClaw(spec) => {
            let Some(ep) = gateway.and_then(|g| g.endpoint(spec, resolved, &case.id)) else {
                return RunOutput {
                    fatal: true,
                    error: Some(format!(
                        "no OpenClaw agent was prepared for {} {}",
                        resolved.pack_id, resolved.pack_version
                    )),
                    ..RunOutput::default()
                };
            };
            let priced = resolved.model_name().unwrap_or(&spec.model.model);
            chat_case(cfg, client, &ep, priced, resolved, None, case).await
        }
        Harness::OpenAi(spec) => {
            let mut ep = spec.endpoint(demo_url);
            // The chain's own model, at the harness's endpoint: what the
            // agents will run on is what is evaluated.
            if let Some(m) = resolved.model_name() {
                ep.model = m.to_string();
            }
            let system = Some(Message::system(system.to_string()));
            let priced = ep.model.clone();
            chat_case(cfg, client, &ep, &priced, resolved, system, case).await
        }
        Harness::Command { argv, timeout } => {
            run_command(argv, *timeout, resolved, system, case).await
        }
    }
}

/// One case as a chat completion at `ep`; `priced_as` names the model in
/// `eval.prices`. OpenClaw builds its own system prompt from the agent's
/// workspace, so it is sent only the user message (`system` None).
async fn chat_case(
    cfg: &EvalConfig,
    client: &Client,
    ep: &Endpoint,
    priced_as: &str,
    resolved: &Resolved,
    system: Option<Message>,
    case: &EvalCase,
) -> RunOutput {
    // A chat-format prompt's messages follow the pack's system prompt.
    let turns: Vec<Message> = if case.messages.is_empty() {
        vec![Message::user(user_message(case))]
    } else {
        case.messages
            .iter()
            .map(|t| Message {
                role: t.role.clone(),
                content: t.content.clone(),
            })
            .collect()
    };
    let messages: Vec<Message> = system.into_iter().chain(turns).collect();
    let tools = resolved.allowed_tools();
    match client
        .chat(ep, &messages, &tools, "harness", &|_| Ok(()))
        .await
    {
        Ok(c) => RunOutput {
            cost_usd: if c.cached {
                0.0
            } else {
                cfg.cost(priced_as, c.prompt_tokens, c.completion_tokens)
            },
            cost_reported: c.cached || cfg.prices.contains_key(priced_as),
            output: c.content,
            tool_calls: c.tool_calls,
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
            latency_ms: c.latency_ms,
            cached: c.cached,
            error: None,
            fatal: false,
        },
        Err(e) => RunOutput {
            fatal: is_fatal(&e),
            error: Some(e.to_string()),
            ..RunOutput::default()
        },
    }
}

/// The `command` adapter: the resolved pack as a JSON file path argument, the
/// case as JSON on stdin, a JSON answer on stdout
/// (`{"output": "...", "tool_calls": ["x.y"], "usage": {...}}`).
async fn run_command(
    argv: &[String],
    timeout: Duration,
    resolved: &Resolved,
    system: &str,
    case: &EvalCase,
) -> RunOutput {
    let fail = |e: String| RunOutput {
        error: Some(e),
        ..RunOutput::default()
    };
    let file = match tempfile::NamedTempFile::new() {
        Ok(f) => f,
        Err(e) => return fail(format!("cannot create a temp file for the pack: {e}")),
    };
    let pack = json!({
        "pack_id": resolved.pack_id,
        "pack_version": resolved.pack_version,
        "scope_chain": resolved.scope_chain,
        "system_prompt": system,
        "content": resolved.content,
    });
    if let Err(e) = std::fs::write(file.path(), pack.to_string()) {
        return fail(format!("cannot write the pack file: {e}"));
    }
    let started = std::time::Instant::now();
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .arg(file.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // Its own process group, so a timeout ends everything it started.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return RunOutput {
                fatal: true,
                ..fail(format!("cannot start harness command `{}`: {e}", argv[0]))
            };
        }
    };
    let group = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(harness_input(case).as_bytes()).await;
    }
    let waited = tokio::time::timeout(timeout, child.wait_with_output()).await;
    // Whatever happened, nothing the harness started outlives its case.
    if let Some(pid) = group.and_then(|p| rustix::process::Pid::from_raw(p.cast_signed())) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let out = match waited {
        Err(_) => {
            return fail(format!(
                "harness command timed out after {:.0} s",
                timeout.as_secs_f64()
            ));
        }
        Ok(Err(e)) => return fail(format!("harness command failed: {e}")),
        Ok(Ok(o)) => o,
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        let err: String = String::from_utf8_lossy(&out.stderr)
            .chars()
            .take(300)
            .collect();
        return fail(format!("harness command exited with {}: {err}", out.status));
    }
    let v: Json = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => return fail(format!("harness command did not print JSON: {e}")),
    };
    let output = v
        .get("output")
        .and_then(Json::as_str)
        .map(String::from)
        .unwrap_or_else(|| v.to_string());
    RunOutput {
        completion_tokens: v
            .pointer("/usage/completion_tokens")
            .and_then(Json::as_u64)
            .unwrap_or_else(|| crate::tokens::count(&output, crate::tokens::Family::O200k)),
        prompt_tokens: v
            .pointer("/usage/prompt_tokens")
            .and_then(Json::as_u64)
            .unwrap_or(0),
        cost_usd: v
            .pointer("/usage/cost_usd")
            .and_then(Json::as_f64)
            .unwrap_or(0.0),
        cost_reported: v.pointer("/usage/cost_usd").is_some_and(Json::is_number),
        tool_calls: v
            .get("tool_calls")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().or_else(|| t.get("name").and_then(Json::as_str)))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        output,
        latency_ms,
        cached: false,
        error: None,
        fatal: false,
    }
}

/// What a command harness reads on stdin: the case, with its rendered
/// user message as `user`.
fn harness_input(case: &EvalCase) -> String {
    let mut v = serde_json::to_value(case).unwrap_or_default();
    if let Json::Object(m) = &mut v {
        m.insert("user".into(), Json::String(case.user.clone()));
    }
    v.to_string()
}

/// Errors worth stopping a whole run for (configuration, unreachable endpoint).
fn is_fatal(e: &LlmError) -> bool {
    matches!(e, LlmError::Transport { .. })
        || matches!(e, LlmError::Http { status, .. } if *status == 401 || *status == 403 || *status == 404)
}

#[cfg(test)]
mod base_url_tests {
    /// Issue 31, report 4: `/v1` is accepted with or without, as providers
    /// document either spelling.
    #[test]
    fn base_urls_are_normalised_before_v1_chat_completions() {
        for u in [
            "http://h:8080",
            "http://h:8080/",
            "http://h:8080/v1",
            "http://h:8080/v1/",
        ] {
            assert_eq!(super::normalise_base_url(u), "http://h:8080", "{u}");
        }
        assert_eq!(
            super::normalise_base_url("https://h/openai/v1"),
            "https://h/openai"
        );
        assert_eq!(super::normalise_base_url("https://h/v1x"), "https://h/v1x");
    }
}
