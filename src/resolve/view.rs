//! Typed views of a resolved pack. The resolved content stays one JSON
//! document (it is what the registry serves and what the digest covers);
//! every stage that needs a part of it reads it through these accessors, so
//! field names are spelled once and defaults are decided once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::Resolved;
use crate::model::{Bound, RollbackRules};

/// `promotion.canary`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CanaryThresholds {
    pub steps: Option<Vec<u32>>,
    pub min_runs_per_arm: Option<usize>,
    pub step_deadline_minutes: Option<f64>,
    pub max_false_rollback_rate: Option<f64>,
}

/// `promotion:` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Promotion {
    pub min_pass_rate: Option<f64>,
    pub max_pass_rate_drop: Option<f64>,
    pub min_judge_score: Option<f64>,
    pub max_judge_score_drop: Option<f64>,
    pub judge_repeats: Option<u32>,
    pub alpha: Option<f64>,
    pub canary: Option<CanaryThresholds>,
}

/// The gate's thresholds with their documented defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub min_pass_rate: f64,
    pub max_pass_rate_drop: f64,
    pub min_judge_score: Option<f64>,
    pub max_judge_score_drop: f64,
    pub alpha: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Promotion::default().thresholds()
    }
}

impl Promotion {
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            min_pass_rate: self.min_pass_rate.unwrap_or(0.0),
            max_pass_rate_drop: self.max_pass_rate_drop.unwrap_or(0.05),
            min_judge_score: self.min_judge_score,
            max_judge_score_drop: self.max_judge_score_drop.unwrap_or(0.5),
            alpha: self.alpha.unwrap_or(0.05),
        }
    }
}

/// One output contract (`eval.contracts.<name>`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Contract {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub schema: Option<Json>,
}

/// The voice profile.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct VoiceProfile {
    pub persona: Option<String>,
    #[serde(default)]
    pub tone: Vec<String>,
    #[serde(default)]
    pub style_rules: Vec<String>,
    #[serde(default)]
    pub banned_phrases: Vec<String>,
    pub max_sentence_words: Option<u64>,
}

/// One rubric criterion (`eval.rubric.criteria[]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Criterion {
    pub id: String,
    /// `task` or `voice`.
    #[serde(default = "task")]
    pub kind: String,
    #[serde(default = "one")]
    pub weight: f64,
    #[serde(default)]
    pub description: String,
}

fn task() -> String {
    "task".into()
}
fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Rubric {
    version: Option<u64>,
    #[serde(default)]
    criteria: Vec<Json>,
}

/// A part of the content as `T`, or `T::default()` when absent or not of
/// that shape (the content was schema-checked when loaded).
fn part<T: serde::de::DeserializeOwned + Default>(v: Option<&Json>) -> T {
    v.and_then(|v| T::deserialize(v).ok()).unwrap_or_default()
}

impl Resolved {
    fn section(&self, a: &str, b: Option<&str>) -> Option<&Json> {
        let v = self.content.get(a)?;
        match b {
            Some(b) => v.get(b),
            None => Some(v),
        }
    }

    /// The chain's model as OpenClaw names it (`provider/model`), if a
    /// layer sets one.
    pub fn model(&self) -> Option<&str> {
        self.content.get("model").and_then(Json::as_str)
    }

    /// The model's name at an OpenAI-compatible endpoint: the part after
    /// the provider (`openai/gpt-5.4-mini` -> `gpt-5.4-mini`).
    pub fn model_name(&self) -> Option<&str> {
        self.model()
            .map(|m| m.split_once('/').map_or(m, |(_, n)| n))
    }

    pub fn promotion(&self) -> Promotion {
        part(self.section("promotion", None))
    }

    pub(crate) fn rollback_rules(&self) -> Option<RollbackRules> {
        self.section("rollback", None)
            .and_then(|v| RollbackRules::deserialize(v).ok())
    }

    pub(crate) fn kpi_targets(&self) -> Option<BTreeMap<String, Bound>> {
        self.section("kpis", None)
            .and_then(|v| BTreeMap::deserialize(v).ok())
    }

    /// The output contracts by name.
    pub fn contracts(&self) -> BTreeMap<String, Contract> {
        part(self.section("eval", Some("contracts")))
    }

    pub fn voice(&self) -> Option<VoiceProfile> {
        self.section("voice", None)
            .map(|v| VoiceProfile::deserialize(v).unwrap_or_default())
    }

    /// The composed prompt (every section in scope order).
    pub(crate) fn prompt_text(&self) -> &str {
        self.section("prompt", Some("text"))
            .and_then(Json::as_str)
            .unwrap_or_default()
    }

    /// The effective tool allow list.
    pub(crate) fn allowed_tools(&self) -> Vec<String> {
        part(self.section("tools", Some("allow")))
    }

    /// The rubric's criteria (those with an id) and its version.
    pub fn rubric(&self) -> (Vec<Criterion>, u64) {
        let r: Rubric = part(self.section("eval", Some("rubric")));
        let criteria = r
            .criteria
            .iter()
            .filter_map(|c| Criterion::deserialize(c).ok())
            .collect();
        (criteria, r.version.unwrap_or(1))
    }

    /// The voice profile as instructions (empty without one). OpenClaw's
    /// `SOUL.md` carries the same lines.
    pub fn voice_text(&self) -> String {
        let r = self;
        let mut s = String::new();
        if let Some(v) = r.voice() {
            if let Some(p) = &v.persona {
                s.push_str(&format!("Persona: {p}\n"));
            }
            if !v.tone.is_empty() {
                s.push_str(&format!("Tone: {}\n", v.tone.join(", ")));
            }
            for r in &v.style_rules {
                s.push_str(&format!("- {r}\n"));
            }
            if !v.banned_phrases.is_empty() {
                s.push_str(&format!(
                    "Never use these phrases: {}\n",
                    v.banned_phrases
                        .iter()
                        .map(|b| format!("\"{b}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some(n) = v.max_sentence_words {
                s.push_str(&format!("Keep sentences under {n} words.\n"));
            }
        }
        s
    }

    /// The output contracts as a `## Output formats` section (empty without
    /// any): they are part of the task, so the agent must see them.
    pub fn contracts_text(&self) -> String {
        let r = self;
        let contracts = r.contracts();
        let mut s = String::new();
        if !contracts.is_empty() {
            s.push_str("\n## Output formats\nWhen a task calls for one of these formats, reply with one JSON object that matches its schema and nothing else.\n");
            for (name, def) in contracts {
                let desc = def.description.as_deref().unwrap_or("");
                let schema = def.schema.map(|x| x.to_string()).unwrap_or_default();
                s.push_str(&format!("- `{name}`: {desc} Schema: {schema}\n"));
            }
        }
        s
    }
}
