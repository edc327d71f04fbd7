//! The `openclaw` harness: each pack variant the gate evaluates becomes an
//! OpenClaw agent (its workspace rendered as `openclaw render` renders it,
//! its tool policy in the agent's config), served by one Gateway; every
//! case runs as its own session through the Gateway's OpenAI-compatible
//! endpoint (`model: openclaw/<agent>`), so the evidence is what an OpenClaw
//! agent does with each version, with OpenClaw's own system prompt, tool
//! policy and bootstrap limits in the loop.
//!
//! Agents are keyed by the resolved pack's digest (`mc-<12 hex>`): a
//! champion and a challenger that resolve to the same content share one.
//! Responses are cached as for the other harnesses, keyed by the agent (so
//! by the pack content), the OpenClaw release and the model behind it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::ModelSpec;
use super::llm::{Endpoint, TokenField};
use crate::model::Arm;
use crate::openclaw::gateway::{self, Gateway, GatewayError};
use crate::openclaw::render::{self, AgentBinding};
use crate::openclaw::{Settings, workspace};
use crate::resolve::Resolved;

/// `eval.harness` with `type: openclaw`.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenClawSpec {
    /// The model behind the agents (`demo` or an OpenAI-compatible URL).
    pub model: ModelSpec,
    /// A running Gateway to use instead of starting one.
    pub gateway_url: Option<String>,
    pub gateway_token_env: Option<String>,
    /// Concurrent turns through the Gateway (default: `eval.concurrency`,
    /// at most [`DEFAULT_CONCURRENCY`]).
    pub concurrency: Option<usize>,
}

/// OpenClaw 2026.9.6's Gateway answered some turns with HTTP 500
/// (`StateDatabaseCoordinatorContentionError` in its log) at 8 concurrent
/// turns on a 2-core machine, and none at 4: the default cap.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Tokens OpenClaw's own system prompt and tool schemas add to a turn
/// (about 11,000 characters with skills off and a narrow tool list), for
/// worst-case budget reservations.
pub const PROMPT_OVERHEAD_TOKENS: u64 = 4_000;

/// The Gateway and the agents prepared for one run.
pub struct Target {
    url: String,
    token: String,
    agents: HashMap<String, String>,
    cache_id: String,
    run_id: String,
    gateway: tokio::sync::Mutex<Option<Gateway>>,
}

fn agent_id(r: &Resolved) -> String {
    let hex = r.digest.trim_start_matches("sha256:");
    format!("mc-{}", &hex[..hex.len().min(12)])
}

impl Target {
    /// Render every variant as an agent under `dir` and start a Gateway
    /// serving them (or check the configured one answers).
    pub async fn prepare(
        spec: &OpenClawSpec,
        demo_url: Option<&str>,
        packs: &[Arc<Resolved>],
        settings: &Settings,
        dir: &Path,
        run_id: &str,
    ) -> Result<Target, GatewayError> {
        let mut entries = BTreeMap::new();
        let mut agents = HashMap::new();
        let mut models = vec![spec.model.model.clone()];
        for r in packs {
            let id = agent_id(r);
            if agents.insert(r.digest.clone(), id.clone()).is_some() {
                continue;
            }
            let binding = AgentBinding {
                id: id.clone(),
                domain: r
                    .scope_chain
                    .get(1)
                    .map(|l| l.scope_id.clone())
                    .unwrap_or_default(),
                tenant: None,
                user: None,
            };
            let ws = render::render(r, &binding, Arm::Champion, None, settings);
            let wdir = dir.join("agents").join(&id);
            workspace::write(&wdir, &ws).map_err(|e| GatewayError::Start(e.to_string()))?;
            // The pack's model, served by the harness's endpoint under
            // its name there (the part after the provider).
            let model = r.model_name().map(|m| format!("mc/{m}"));
            if let Some(m) = r.model_name()
                && !models.iter().any(|x| x == m)
            {
                models.push(m.to_string());
            }
            let mut entry = render::agent_entry(&ws, &wdir.display().to_string(), None, settings);
            if let Some(m) = model {
                entry["model"] = serde_json::json!(m);
            }
            entries.insert(id.clone(), entry);
        }
        let model_ref = format!("mc/{}", spec.model.model);
        let settings_tag =
            &render::sha256(&serde_json::to_string(settings).unwrap_or_default())[7..15];
        let cache_id = format!(
            "openclaw@{}:{}:{}:{settings_tag}",
            gateway::OPENCLAW_VERSION,
            spec.model.base_url,
            spec.model.model
        );
        if let Some(url) = &spec.gateway_url {
            let token = spec
                .gateway_token_env
                .as_ref()
                .and_then(|v| std::env::var(v).ok())
                .unwrap_or_default();
            let t = Target {
                url: url.trim_end_matches('/').to_string(),
                token,
                agents,
                cache_id,
                run_id: run_id.to_string(),
                gateway: tokio::sync::Mutex::new(None),
            };
            t.check_reachable().await?;
            return Ok(t);
        }
        let install = gateway::find()?;
        let base = match (spec.model.is_demo(), demo_url) {
            (true, Some(u)) => u.to_string(),
            _ => spec.model.base_url.clone(),
        };
        let providers = gateway::provider(
            "mc",
            &base,
            &models.iter().map(String::as_str).collect::<Vec<_>>(),
            "${MISSIONCTL_MODEL_API_KEY}",
        );
        let config = gateway::config(
            providers,
            &model_ref,
            render::agents_fragment(&entries),
            None,
        );
        let key = spec
            .model
            .endpoint(None)
            .api_key
            .unwrap_or_else(|| "none".into());
        let gw = Gateway::start_with_env(
            &install,
            &dir.join("gateway"),
            config,
            Duration::from_secs(120),
            &[("MISSIONCTL_MODEL_API_KEY", key)],
        )
        .await?;
        Ok(Target {
            url: gw.url.clone(),
            token: gw.token.clone(),
            agents,
            cache_id,
            run_id: run_id.to_string(),
            gateway: tokio::sync::Mutex::new(Some(gw)),
        })
    }

    async fn check_reachable(&self) -> Result<(), GatewayError> {
        let r = reqwest::Client::new()
            .get(format!("{}/v1/models", self.url))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| {
                GatewayError::Start(format!(
                    "the OpenClaw Gateway at {} is not reachable ({}); start it, or leave eval.harness.gateway_url unset to let missionctl start one",
                    self.url,
                    e.without_url()
                ))
            })?;
        if !r.status().is_success() {
            return Err(GatewayError::Start(format!(
                "the OpenClaw Gateway at {} answered {} to GET /v1/models (is gateway.http.endpoints.chatCompletions enabled, and the token in eval.harness.gateway_token_env right?)",
                self.url,
                r.status()
            )));
        }
        let listed: serde_json::Value = r.json().await.unwrap_or(json!({}));
        let ids: Vec<&str> = listed["data"]
            .as_array()
            .map(|a| a.iter().filter_map(|m| m["id"].as_str()).collect())
            .unwrap_or_default();
        let missing: Vec<&String> = self
            .agents
            .values()
            .filter(|a| !ids.contains(&format!("openclaw/{a}").as_str()))
            .collect();
        if !missing.is_empty() {
            return Err(GatewayError::Start(format!(
                "the OpenClaw Gateway at {} does not serve the agents this run needs ({}); with gateway_url, configure them from `missionctl openclaw render`, or leave gateway_url unset",
                self.url,
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }

    /// The chat endpoint for one case of `r`: its agent, its own session.
    pub fn endpoint(&self, spec: &OpenClawSpec, r: &Resolved, case_id: &str) -> Option<Endpoint> {
        let agent = self.agents.get(&r.digest)?;
        Some(Endpoint {
            base_url: self.url.clone(),
            model: format!("openclaw/{agent}"),
            api_key: Some(self.token.clone()),
            temperature: spec.model.temperature,
            top_p: spec.model.top_p,
            max_tokens: spec.model.max_tokens,
            token_field: TokenField::MaxCompletionTokens,
            timeout: spec.model.timeout,
            cache_id: self.cache_id.clone(),
            session: Some(format!(
                "agent:{agent}:missionctl-eval:{}:{case_id}",
                self.run_id
            )),
        })
    }

    /// Stop the Gateway this run started (none for a given one).
    pub async fn shutdown(&self) {
        if let Some(mut g) = self.gateway.lock().await.take() {
            g.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::eval::EvalConfig;
    use serde_json::json;

    fn cfg(harness: serde_json::Value) -> EvalConfig {
        EvalConfig::from_mission(&json!({"harness": harness, "concurrency": 8})).expect("config")
    }

    #[test]
    fn openclaw_turns_in_flight_default_to_four() {
        let oc = cfg(json!({"type": "openclaw", "base_url": "demo", "model": "demo-1"}));
        assert_eq!(oc.harness_concurrency(), 4);
        assert!(oc.uses_demo() && !oc.harness_is_paid());
        let set = cfg(
            json!({"type": "openclaw", "base_url": "demo", "model": "demo-1", "concurrency": 6}),
        );
        assert_eq!(set.harness_concurrency(), 6);
        let plain = cfg(json!({"type": "openai", "base_url": "demo", "model": "demo-1"}));
        assert_eq!(plain.harness_concurrency(), 8);
        let paid = cfg(
            json!({"type": "openclaw", "base_url": "https://api.example.com", "model": "gpt-4o-mini"}),
        );
        assert!(paid.harness_is_paid());
    }
}
