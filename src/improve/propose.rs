//! Propose: ask the optimiser model for one improved version, and turn its
//! answer into the files of a candidate pack (its sections, its voice, a
//! bumped version). What the answer may touch is checked by [`super::scope`].

use std::collections::BTreeMap;

use serde_json::json;

use crate::eval::llm::{Client, Completion, Message};
use crate::eval::{EvalConfig, ModelSpec};
use crate::model::{
    CaseFeedback, OPTIMISER_SYSTEM, OptimiserAnswer, OptimiserRequest, PassingExample,
    ResolvedPrompt, TelemetrySignal, TriedCandidate, VoiceProfile,
};
use crate::pack::PackDoc;

/// The most text an answer may give one section (a larger answer is unusable).
pub const MAX_SECTION_BYTES: usize = 64 * 1024;

/// The rules the optimiser is given with every request.
fn rules() -> Vec<String> {
    [
        "Edit only the files listed in `sections` (reply with their full new text) and, if it helps, the voice profile (reply with the whole profile).",
        "Never change policies, hard constraints, tool permissions, thresholds, KPIs, eval cases or output contracts: people review those.",
        "voice.banned_phrases may gain phrases but never lose one; voice.max_sentence_words may only go down.",
        "Fix the failures shown without breaking what passes (the `passing` cases); keep the prompt as short as the fix allows.",
        "`resolved_prompt` is the whole prompt the agent receives on a failing chain (every scope layer merged): text outside `sections` is context you cannot edit; `contracts` are the JSON schemas answers are checked against.",
        "Fix the errors in `validation` that are in your sections (a banned phrase: rephrase or drop the sentence).",
        "Write general instructions, not answers to the cases shown: other cases, which you do not see, decide whether the edit is kept.",
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

/// What the optimiser is shown besides the pack's own texts: only
/// feedback-set cases (see [`super::split`]), never a held-out one.
#[derive(Debug, Clone, Default)]
pub struct Shown {
    pub failures: Vec<CaseFeedback>,
    pub passing: Vec<PassingExample>,
    pub prompt: ResolvedPrompt,
    pub contracts: BTreeMap<String, serde_json::Value>,
    pub validation: Vec<String>,
    pub telemetry: Option<TelemetrySignal>,
    pub history: Vec<TriedCandidate>,
}

/// The optimiser's task for one step.
pub fn request(
    champion: &PackDoc,
    files: &BTreeMap<String, String>,
    voice: &VoiceProfile,
    shown: Shown,
) -> OptimiserRequest {
    let sections = champion
        .own_sections()
        .map(|s| {
            let text = files
                .get(&s.file)
                .cloned()
                .unwrap_or_else(|| s.text.to_string());
            (s.file.clone(), text)
        })
        .collect();
    OptimiserRequest {
        task: "improve-pack".into(),
        pack_id: champion.pack.id.clone(),
        version: champion.pack.version.clone(),
        sections,
        voice: voice.clone(),
        resolved_prompt: shown.prompt,
        contracts: shown.contracts,
        failures: shown.failures,
        passing: shown.passing,
        validation: shown.validation,
        telemetry: shown.telemetry,
        history: shown.history,
        rules: rules(),
        answer_format: json!({
            "rationale": "why these edits fix the failures, in a few sentences",
            "sections": {"<path from sections>": "the section's full new text (only sections you change)"},
            "voice": "optional: the whole new voice profile, same fields as `voice`",
        }),
    }
}

/// An answer as JSON, tolerating one surrounding code fence.
fn parse(content: &str) -> Result<OptimiserAnswer, String> {
    let t = content.trim();
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|r| r.trim_end().strip_suffix("```"))
        .unwrap_or(t);
    let a: OptimiserAnswer =
        serde_json::from_str(t.trim()).map_err(|e| format!("not the answer format: {e}"))?;
    if let Some((p, _)) = a.sections.iter().find(|(_, s)| s.len() > MAX_SECTION_BYTES) {
        return Err(format!(
            "the text for {p} is over {MAX_SECTION_BYTES} bytes"
        ));
    }
    Ok(a)
}

/// The most one optimiser call can cost: the whole request and `max_tokens`.
pub fn worst_case(cfg: &EvalConfig, spec: &ModelSpec, req: &OptimiserRequest) -> f64 {
    let user = serde_json::to_string(req).unwrap_or_default();
    let family = crate::tokens::Family::for_model(&spec.model);
    let prompt =
        crate::tokens::count(OPTIMISER_SYSTEM, family) + crate::tokens::count(&user, family) + 16;
    cfg.cost(&spec.model, prompt, u64::from(spec.max_tokens))
}

/// Ask once. `Err` carries why there is no usable answer, and whether the
/// model answered (a paid call) or the request failed.
pub async fn ask(
    client: &Client,
    spec: &ModelSpec,
    demo_url: Option<&str>,
    req: &OptimiserRequest,
) -> Result<(OptimiserAnswer, Completion), (String, bool)> {
    let messages = [
        Message::system(OPTIMISER_SYSTEM),
        Message::user(serde_json::to_string(req).unwrap_or_default()),
    ];
    let accept = |c: &Completion| parse(&c.content).map(|_| ());
    let c = client
        .chat(
            &spec.endpoint(demo_url),
            &messages,
            &[],
            "improve:propose:v1",
            &accept,
        )
        .await
        .map_err(|e| {
            let answered = matches!(e, crate::eval::llm::LlmError::Rejected(_));
            (e.to_string(), answered)
        })?;
    let a = parse(&c.content).map_err(|e| (e, true))?;
    Ok((a, c))
}

/// The candidate version: the champion's next patch as pre-release
/// `improve.<n>` (above the champion, below a person's next patch).
pub fn bump(version: &str, n: u32) -> Option<String> {
    let v = semver::Version::parse(version).ok()?;
    let next = semver::Version {
        major: v.major,
        minor: v.minor,
        patch: v.patch + 1,
        pre: semver::Prerelease::new(&format!("improve.{n}")).ok()?,
        build: semver::BuildMetadata::EMPTY,
    };
    Some(next.to_string())
}

/// Whether `line` starts top-level key `key`.
fn is_key(line: &str, key: &str) -> bool {
    line.strip_prefix(key).is_some_and(|r| r.starts_with(':'))
}

/// The pack file with its top-level `version` replaced and, when `voice` is
/// given, its top-level `voice` block replaced (as a JSON flow mapping,
/// which is YAML). Comments and every other line are kept as they are.
pub fn edit_pack_file(text: &str, version: &str, voice: Option<&VoiceProfile>) -> String {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    let mut voice_done = false;
    while let Some(line) = lines.next() {
        if is_key(line, "version") {
            out.push(format!("version: {version}"));
        } else if let (true, Some(v)) = (is_key(line, "voice"), voice) {
            out.push(format!(
                "voice: {}",
                serde_json::to_string(v).unwrap_or_default()
            ));
            voice_done = true;
            // Skip the old block: indented or blank lines (a comment in
            // column 0 belongs to what follows).
            while lines
                .peek()
                .is_some_and(|l| l.trim().is_empty() || l.starts_with(' ') || l.starts_with('\t'))
            {
                lines.next();
            }
        } else {
            out.push(line.to_string());
        }
    }
    if let (false, Some(v)) = (voice_done, voice) {
        out.push(format!(
            "voice: {}",
            serde_json::to_string(v).unwrap_or_default()
        ));
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// The voice profile a pack file states (empty when it has none or it
/// cannot be read as one).
pub fn voice_of(doc: &PackDoc) -> VoiceProfile {
    doc.node
        .to_json()
        .get("voice")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_bump_to_a_prerelease_of_the_next_patch() {
        assert_eq!(bump("1.0.0", 1).as_deref(), Some("1.0.1-improve.1"));
        assert_eq!(bump("1.2.3-rc.1", 2).as_deref(), Some("1.2.4-improve.2"));
        assert!(
            semver::Version::parse("1.0.1-improve.1").expect("v")
                > semver::Version::parse("1.0.0").expect("v")
        );
        assert_eq!(bump("one", 1), None);
    }

    #[test]
    fn the_pack_file_keeps_every_other_line() {
        let text = "# a comment\nid: p\nversion: 1.0.0\nvoice:\n  tone: [warm]\n  # kept? no: inside the block\n  max_sentence_words: 28\ntools:\n  autonomy: A2\n";
        let v = VoiceProfile {
            tone: vec!["warm".into(), "brief".into()],
            max_sentence_words: Some(20),
            ..VoiceProfile::default()
        };
        let out = edit_pack_file(text, "1.0.1-improve.1", Some(&v));
        assert_eq!(
            out,
            "# a comment\nid: p\nversion: 1.0.1-improve.1\nvoice: {\"tone\":[\"warm\",\"brief\"],\"max_sentence_words\":20}\ntools:\n  autonomy: A2\n"
        );
        let plain = edit_pack_file(text, "1.0.1", None);
        assert_eq!(plain, text.replace("version: 1.0.0", "version: 1.0.1"));
    }

    #[test]
    fn answers_are_strict_json_with_at_most_a_fence() {
        assert!(parse("{\"rationale\": \"r\", \"sections\": {}}").is_ok());
        assert!(parse("```json\n{\"rationale\": \"r\"}\n```").is_ok());
        assert!(parse("Sure! {\"rationale\": \"r\"}").is_err());
        assert!(parse("{\"rationale\": \"r\", \"policies\": {}}").is_err());
        let big = format!(
            "{{\"rationale\": \"r\", \"sections\": {{\"a\": \"{}\"}}}}",
            "x".repeat(MAX_SECTION_BYTES + 1)
        );
        assert!(parse(&big).unwrap_err().contains("over"));
    }
}
