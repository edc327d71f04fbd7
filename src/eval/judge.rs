//! The LLM judge, through the same OpenAI-compatible client.
//!
//! - Rubric scoring: one call per (output, repeat), every criterion scored
//!   1-5; task criteria and voice criteria are averaged separately, so voice
//!   quality never hides a correctness regression or the reverse.
//! - Pairwise: champion and challenger judged in both orders, K times; when
//!   the two orders disagree the comparison counts as a tie (position bias
//!   cancels out instead of deciding).
//! - The judge must answer strict JSON of a stated shape. A malformed answer
//!   is retried with a correction; after that it is an error, never a pass,
//!   and it is never cached.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::eval::llm::{Client, Completion, Endpoint, Message};

pub const JUDGE_SYSTEM: &str = "You are an evaluation judge for AI agent outputs. \
Follow the task in the user message exactly and reply with one JSON object in the stated answer_format and nothing else: no prose, no code fences.";

const ATTEMPTS: usize = 3;

pub use crate::resolve::Criterion;

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct RubricScore {
    /// Weighted mean of task criteria, 1-5.
    pub task: Option<f64>,
    /// Weighted mean of voice criteria, 1-5.
    pub voice: Option<f64>,
    pub per_criterion: BTreeMap<String, f64>,
    /// The judge's one-sentence reason (the last repeat's).
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, Default, PartialEq, Eq)]
pub struct Pairwise {
    pub challenger_wins: u32,
    pub champion_wins: u32,
    pub ties: u32,
    /// Comparisons where the two orders disagreed (counted as ties).
    pub order_disagreements: u32,
}

/// Where a judge's calls are paid from: the worst case of each call is
/// reserved before it is sent (refused when it would cross the cap) and
/// settled to what it cost after, as the harness's calls are.
pub trait Purse: Send + Sync {
    fn reserve(&self, usd: f64) -> bool;
    fn settle(&self, reserved: f64, actual: f64);
}

pub struct Judge<'a> {
    pub client: &'a Client,
    /// Reserves each call's worst case before it is sent; `None` spends freely.
    pub purse: Option<std::sync::Arc<dyn Purse>>,
    /// The judge's `max_tokens`, for the worst case of a call.
    pub max_out: u64,
    pub endpoint: Endpoint,
    pub repeats: u32,
    /// USD per million tokens (input, output) for this judge's model.
    pub price: (f64, f64),
    /// What this judge has spent on uncached calls, in nano-dollars (fine
    /// enough that rounding never shows in a ledger of thousands of calls).
    pub spent_nano_usd: std::sync::atomic::AtomicU64,
}

impl<'a> Judge<'a> {
    /// A judge for the configured model (the demo model's address substituted).
    pub fn new(
        client: &'a Client,
        spec: &crate::eval::ModelSpec,
        repeats: u32,
        demo_url: Option<&str>,
        cfg: &crate::eval::EvalConfig,
    ) -> Self {
        Judge {
            client,
            purse: None,
            max_out: u64::from(spec.max_tokens),
            endpoint: spec.endpoint(demo_url),
            repeats,
            price: cfg.price_of(&spec.model),
            spent_nano_usd: Default::default(),
        }
    }

    pub(crate) fn spent_usd(&self) -> f64 {
        self.spent_nano_usd
            .load(std::sync::atomic::Ordering::Relaxed) as f64
            / 1e9
    }

    /// Pay from `purse`: every call's worst case is reserved first.
    pub fn with_purse(mut self, purse: std::sync::Arc<dyn Purse>) -> Self {
        self.purse = Some(purse);
        self
    }

    /// What a call costs (nothing when it came from the cache), recorded.
    fn charge(&self, c: &Completion) -> f64 {
        if c.cached {
            return 0.0;
        }
        let usd = (c.prompt_tokens as f64 * self.price.0
            + c.completion_tokens as f64 * self.price.1)
            / 1e6;
        self.spent_nano_usd.fetch_add(
            (usd * 1e9).round() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        usd
    }

    /// The most a request with these messages can cost: every prompt token
    /// (counted with o200k, plus a margin per message) and `max_out`.
    fn worst_case(&self, messages: &[Message]) -> f64 {
        let prompt: u64 = messages
            .iter()
            .map(|m| crate::tokens::count(&m.content, crate::tokens::Family::O200k) + 8)
            .sum();
        (prompt as f64 * self.price.0 + self.max_out as f64 * self.price.1) / 1e6
    }
}

/// Ask, check the answer's shape, retry with a correction, then give up.
async fn ask(
    judge: &Judge<'_>,
    payload: &Json,
    tag: &str,
    validate: &(dyn Fn(&Json) -> Result<(), String> + Sync),
) -> Result<Json, String> {
    let (client, ep) = (judge.client, &judge.endpoint);
    let mut messages = vec![
        Message::system(JUDGE_SYSTEM),
        Message::user(payload.to_string()),
    ];
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let accept = |c: &Completion| -> Result<(), String> {
            let v: Json =
                serde_json::from_str(c.content.trim()).map_err(|e| format!("not JSON: {e}"))?;
            validate(&v)
        };
        let reserved = judge.worst_case(&messages);
        if let Some(p) = &judge.purse
            && !p.reserve(reserved)
        {
            return Err(
                "not judged: the tenant's daily spend cap or the run's spend limit would be exceeded"
                    .into(),
            );
        }
        let answer = client.chat(ep, &messages, &[], tag, &accept).await;
        let actual = match &answer {
            Ok(c) => judge.charge(c),
            // Answered (and paid) but unusable; its usage is not known, so
            // the reservation stands as its cost.
            Err(crate::eval::llm::LlmError::Rejected(_)) => {
                judge.spent_nano_usd.fetch_add(
                    (reserved * 1e9).round() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                reserved
            }
            Err(_) => 0.0,
        };
        if let Some(p) = &judge.purse {
            p.settle(reserved, actual);
        }
        match answer {
            Ok(c) => {
                return serde_json::from_str(c.content.trim()).map_err(|e| e.to_string());
            }
            Err(crate::eval::llm::LlmError::Rejected(why)) => {
                last = why.clone();
                messages.push(Message::user(format!(
                    "Your previous answer was rejected ({why}). Reply again with only the JSON object in answer_format."
                )));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!(
        "judge gave no valid answer after {ATTEMPTS} attempts: {last}"
    ))
}

fn score_of(v: &Json) -> Option<f64> {
    v.as_f64().filter(|s| (1.0..=5.0).contains(s))
}

impl Judge<'_> {
    /// Score one output on every criterion, averaged over the repeats.
    pub async fn rubric(
        &self,
        criteria: &[Criterion],
        rubric_version: u64,
        input: &str,
        output: &str,
    ) -> Result<RubricScore, String> {
        if criteria.is_empty() {
            return Ok(RubricScore::default());
        }
        let ids: Vec<String> = criteria.iter().map(|c| c.id.clone()).collect();
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        let mut reason = String::new();
        for k in 0..self.repeats {
            let payload = json!({
                "task": "rubric",
                "scale": "integer 1 (poor) to 5 (excellent)",
                "criteria": criteria,
                "input": input,
                "output": output,
                "repeat": k,
                "answer_format": {"scores": {"<criterion id>": "integer 1-5"}, "reason": "one sentence"},
            });
            let ids2 = ids.clone();
            let v = ask(
                self,
                &payload,
                &format!("judge:rubric:v{rubric_version}"),
                &move |v: &Json| {
                    let scores = v
                        .get("scores")
                        .and_then(Json::as_object)
                        .ok_or("missing `scores` object")?;
                    for id in &ids2 {
                        scores
                            .get(id)
                            .and_then(score_of)
                            .ok_or_else(|| format!("missing or out-of-range score for `{id}`"))?;
                    }
                    Ok(())
                },
            )
            .await?;
            reason = v
                .get("reason")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            for id in &ids {
                *sums.entry(id.clone()).or_default() += v
                    .pointer(&format!("/scores/{id}"))
                    .and_then(score_of)
                    .unwrap_or(0.0);
            }
        }
        let per: BTreeMap<String, f64> = sums
            .into_iter()
            .map(|(k, v)| (k, v / self.repeats as f64))
            .collect();
        let avg = |kind: &str| -> Option<f64> {
            let (num, den) = criteria
                .iter()
                .filter(|c| c.kind == kind)
                .fold((0.0, 0.0), |(n, d), c| {
                    (n + per[&c.id] * c.weight, d + c.weight)
                });
            (den > 0.0).then(|| num / den)
        };
        Ok(RubricScore {
            task: avg("task"),
            voice: avg("voice"),
            per_criterion: per,
            reason,
        })
    }

    /// A case-level rubric assertion (`llm-rubric`, `voice-rubric`): pass/fail with a 0-1 score.
    pub async fn assertion(
        &self,
        rubric: &str,
        input: &str,
        output: &str,
    ) -> Result<(bool, f64, String), String> {
        let mut passes = 0u32;
        let mut score = 0.0;
        let mut reason = String::new();
        for k in 0..self.repeats {
            let payload = json!({
                "task": "assertion",
                "rubric": rubric,
                "input": input,
                "output": output,
                "repeat": k,
                "answer_format": {"pass": "boolean", "score": "number 0-1", "reason": "one sentence"},
            });
            let v = ask(self, &payload, "judge:assertion:v1", &|v: &Json| {
                v.get("pass")
                    .and_then(Json::as_bool)
                    .ok_or("missing boolean `pass`")?;
                v.get("score")
                    .and_then(Json::as_f64)
                    .filter(|s| (0.0..=1.0).contains(s))
                    .ok_or("missing `score` in 0-1")?;
                Ok(())
            })
            .await?;
            if v.get("pass").and_then(Json::as_bool) == Some(true) {
                passes += 1;
            }
            score += v.get("score").and_then(Json::as_f64).unwrap_or(0.0);
            reason = v
                .get("reason")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
        }
        // Majority of repeats must pass.
        Ok((
            passes * 2 > self.repeats,
            score / self.repeats as f64,
            reason,
        ))
    }

    /// Champion against challenger, both orders, K repeats.
    pub async fn pairwise(
        &self,
        criteria: &[Criterion],
        input: &str,
        champion: &str,
        challenger: &str,
    ) -> Result<Pairwise, String> {
        let mut p = Pairwise::default();
        for k in 0..self.repeats {
            let mut verdicts = Vec::new();
            for (a, b, challenger_is) in [(champion, challenger, "B"), (challenger, champion, "A")]
            {
                let payload = json!({
                    "task": "pairwise",
                    "criteria": criteria,
                    "input": input,
                    "output_a": a,
                    "output_b": b,
                    "repeat": k,
                    "answer_format": {"winner": "\"A\", \"B\" or \"tie\"", "reason": "one sentence"},
                });
                let v = ask(self, &payload, "judge:pairwise:v1", &|v: &Json| match v
                    .get("winner")
                    .and_then(Json::as_str)
                {
                    Some("A" | "B" | "tie") => Ok(()),
                    _ => Err("`winner` must be \"A\", \"B\" or \"tie\"".into()),
                })
                .await?;
                let w = v.get("winner").and_then(Json::as_str).unwrap_or("tie");
                verdicts.push(if w == "tie" {
                    0
                } else if w == challenger_is {
                    1
                } else {
                    -1
                });
            }
            match (verdicts[0], verdicts[1]) {
                (1, 1) => p.challenger_wins += 1,
                (-1, -1) => p.champion_wins += 1,
                (a, b) if a == b => p.ties += 1,
                _ => {
                    p.ties += 1;
                    p.order_disagreements += 1;
                }
            }
        }
        Ok(p)
    }
}

/// The rubrics the judge scores a judge-backed assertion with (one per
/// criterion), and the threshold promptfoo applies by default. `g-eval` is
/// promptfoo's `handleGEval`: its threshold is `assertion.threshold || 0.7`
/// (so 0 stands for 0.7), and a list of criteria is scored one by one, the
/// assertion's score their mean and its verdict `mean >= threshold`.
pub(crate) fn rubric_for(spec: &crate::pack::AssertSpec) -> (Vec<String>, Option<f64>) {
    let text = |v: &Json| crate::eval::js::string_of(v);
    let value = spec.value.as_ref().map(text).unwrap_or_default();
    match spec.kind.trim_start_matches("not-") {
        "g-eval" => {
            let criteria: Vec<String> = match spec.value.as_ref() {
                Some(Json::Array(a)) => a.iter().map(text).collect(),
                _ => vec![value],
            };
            let threshold = spec.threshold.filter(|t| *t != 0.0 && !t.is_nan());
            (
                criteria
                    .iter()
                    .map(|c| format!("Score how well the output meets these criteria: {c}"))
                    .collect(),
                Some(threshold.unwrap_or(0.7)),
            )
        }
        "factuality" => (
            vec![format!("The output must be factually consistent with this reference answer and contradict none of it: {value}")],
            None,
        ),
        "answer-relevance" => (
            vec!["The output must answer the user's question directly; content unrelated to the question lowers the score.".to_string()],
            None,
        ),
        _ => (vec![value], None),
    }
}

#[cfg(test)]
mod rubric_tests {
    use serde_json::json;

    use crate::pack::AssertSpec;

    /// promptfoo's `handleGEval`: one rubric per criterion of a list, the
    /// threshold `assertion.threshold || 0.7` (0 stands for 0.7); a list is
    /// accepted at `validate` when every criterion is non-empty text.
    #[test]
    fn g_eval_lists_are_one_rubric_per_criterion() {
        let spec = |v: serde_json::Value| AssertSpec::new(v);
        let (r, t) = super::rubric_for(&spec(
            json!({"type": "g-eval", "value": ["Coherence", "Fluency"]}),
        ));
        assert_eq!(r.len(), 2);
        assert!(r[0].ends_with("Coherence") && r[1].ends_with("Fluency"));
        assert_eq!(t, Some(0.7));
        let (r, t) = super::rubric_for(&spec(
            json!({"type": "g-eval", "value": "Coherence", "threshold": 0}),
        ));
        assert_eq!((r.len(), t), (1, Some(0.7)));
        let (_, t) = super::rubric_for(&spec(
            json!({"type": "g-eval", "value": "C", "threshold": 0.4}),
        ));
        assert_eq!(t, Some(0.4));
        let (_, t) = super::rubric_for(&spec(json!({"type": "llm-rubric", "value": "C"})));
        assert_eq!(t, None);
        let problem = |v| crate::pack::assertion::problem(&spec(v));
        assert_eq!(
            problem(json!({"type": "g-eval", "value": ["a", "b"]})),
            None
        );
        for bad in [json!([]), json!(["a", ""]), json!(["a", 1]), json!("")] {
            assert!(
                problem(json!({"type": "g-eval", "value": bad})).is_some(),
                "{bad}"
            );
        }
        assert!(problem(json!({"type": "llm-rubric", "value": ["a"]})).is_some());
    }
}
