//! The demo model's answers: fixed rules over the system prompt and the
//! request, keyed on the meaning classes of [`super::rules`].

use serde_json::{Value as Json, json};

use super::rules::{
    ESCALATES_SENSITIVE, INJECTIONS_ARE_DATA, KEEPS_CREDENTIALS, NO_JSON, PROSE_ONLY,
    REFUSES_AS_JSON,
};
use crate::policy::normalize_text;

pub(super) fn has(haystack: &str, needles: &[&str]) -> bool {
    let h = haystack.to_lowercase();
    needles.iter().any(|n| h.contains(n))
}

const CREDENTIAL_WORDS: &[&str] = &[
    "password",
    "api key",
    "apikey",
    "access token",
    "credential",
    "secret",
];
const RISKY_ACTIONS: &[&str] = &[
    "delete",
    "pay ",
    "pay the",
    "export every",
    "gift card",
    "merge",
    "wire",
    "transfer",
    "drop the",
];
const ESCALATE_WORDS: &[&str] = &[
    "harass",
    "discriminat",
    "medical",
    "condition",
    "grievance",
    "whistle",
    "comments about my appearance",
    "breach",
    "oom",
    "restart",
    "book",
    "send",
    "cancel",
    "set up",
    "schedule",
    "move my",
    "hire",
    "outside counsel",
    "task",
    "approval",
];

/// Remove instruction-like segments embedded in quoted material.
fn strip_injections(user: &str) -> String {
    let mut out = user.to_string();
    for marker in ["SYSTEM:", "NOTE TO AI:", "IGNORE PREVIOUS"] {
        while let Some(i) = out.find(marker) {
            let rest = &out[i..];
            let end = rest
                .find('\'')
                .or_else(|| rest.find('"'))
                .unwrap_or(rest.len());
            out.replace_range(i..i + end, "");
        }
    }
    out
}

/// The `## Output formats` the harness lists: (name, schema), in order.
fn output_formats(system: &str) -> Vec<(String, Json)> {
    let Some(start) = system.find("## Output formats") else {
        return Vec::new();
    };
    system[start..]
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix("- `")?;
            let (name, rest) = l.split_once('`')?;
            let schema = rest.split_once("Schema: ")?.1;
            Some((name.to_string(), serde_json::from_str(schema).ok()?))
        })
        .collect()
}

/// The last JSON object in the prompt text that parses, used as the answer format.
fn answer_example(system: &str) -> Option<Json> {
    let text = system.split("## Output formats").next().unwrap_or(system);
    let mut found = None;
    for (start, _) in text.match_indices('{') {
        let mut depth = 0;
        for (i, c) in text[start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        if let Ok(v @ Json::Object(_)) =
                            serde_json::from_str::<Json>(&text[start..start + i + 1])
                        {
                            found = Some(v);
                        }
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    found
}

/// What the demo model understood of a request.
struct Understanding {
    summary: String,
    request: String,
    escalate: bool,
    /// An `escalate` field is set only when the prompt also says which
    /// matters escalate ([`ESCALATES_SENSITIVE`]).
    escalate_field: bool,
}

/// Enum values are chosen by words in the request, else the first.
fn pick_enum(options: &[Json], request: &str) -> Json {
    const HINTS: &[(&str, &[&str])] = &[
        ("sev1", &["all users", "whole website", "outage", "503"]),
        (
            "critical",
            &[
                "served",
                "process server",
                "breach",
                "regulator",
                "claim form",
                "publicly",
            ],
        ),
        ("high", &["this week", "threatened"]),
        ("contract-review", &["nda", "contract"]),
        ("dispute", &["sue", "claim", "dispute", "breached"]),
        ("employment", &["dismissal", "ex-employee", "employment"]),
        ("ip", &["logo", "patent", "copied", "trademark"]),
        (
            "privacy",
            &[
                "breach",
                "customer emails",
                "personal data",
                "shared publicly",
            ],
        ),
        ("regulatory", &["regulator"]),
    ];
    let r = request.to_lowercase();
    for o in options {
        if let Some(v) = o.as_str() {
            if r.contains(&v.to_lowercase()) {
                return o.clone();
            }
            if HINTS
                .iter()
                .any(|(k, words)| *k == v && words.iter().any(|w| r.contains(w)))
            {
                return o.clone();
            }
        }
    }
    options
        .iter()
        .find(|o| o.as_str() == Some("sev2") || o.as_str() == Some("normal"))
        .or_else(|| options.first())
        .cloned()
        .unwrap_or(Json::Null)
}

/// Build a value matching `schema` from the request.
fn instance(schema: &Json, key: &str, u: &Understanding) -> Json {
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(Json::Array(opts)) = schema.get("enum") {
        return pick_enum(opts, &u.request);
    }
    let ty = match schema.get("type") {
        Some(Json::String(t)) => t.clone(),
        Some(Json::Array(ts)) => ts
            .iter()
            .filter_map(Json::as_str)
            .find(|t| *t != "null")
            .unwrap_or("string")
            .to_string(),
        _ if schema.get("properties").is_some() => "object".into(),
        _ => "string".into(),
    };
    match ty.as_str() {
        "object" => {
            let mut m = serde_json::Map::new();
            if let Some(Json::Object(props)) = schema.get("properties") {
                for (k, sub) in props {
                    m.insert(k.clone(), instance(sub, k, u));
                }
            }
            Json::Object(m)
        }
        "array" => {
            let item = schema
                .get("items")
                .cloned()
                .unwrap_or(json!({"type": "string"}));
            Json::Array(vec![instance(&item, key, u)])
        }
        "boolean" if key == "escalate" => Json::Bool(u.escalate_field),
        "boolean" => Json::Bool(u.escalate),
        "integer" | "number" => json!(1),
        _ => match key {
            "answer" | "summary" | "reason" | "impact" | "hypothesis" | "description" => {
                Json::String(u.summary.clone())
            }
            "version" => Json::String(
                u.request
                    .split_whitespace()
                    .find(|w| {
                        w.starts_with('v') && w[1..].starts_with(|c: char| c.is_ascii_digit())
                    })
                    .map(|w| w.trim_end_matches([':', ',', '.']).to_string())
                    .unwrap_or_else(|| "unreleased".into()),
            ),
            "tool" => Json::String("tasks.create".into()),
            _ => Json::String(format!("{key}: {}", u.summary)),
        },
    }
}

fn refusal(reason: &str) -> String {
    serde_json::to_string_pretty(&json!({
        "refused": true,
        "reason": reason,
        "next_step": "Ask the owner of the system to handle this through the approved process.",
    }))
    .unwrap_or_default()
}

pub(super) fn answer(system: &str, user: &str) -> String {
    let norm = normalize_text(system);
    let safe_credentials = KEEPS_CREDENTIALS.stated_in(system);
    let injections_are_data = INJECTIONS_ARE_DATA.stated_in(system);
    let refusal_json = REFUSES_AS_JSON.stated_in(system);
    let first_line = user.lines().next().unwrap_or_default();

    // A request to disclose a credential, not a mention of one.
    let asks_to_disclose = has(
        first_line,
        &[
            "paste",
            "what's the",
            "what is the",
            "give me the",
            "share the",
            "send me",
            "tell me the",
            "reveal",
            "show me the",
        ],
    );
    if has(first_line, CREDENTIAL_WORDS) && asks_to_disclose {
        if safe_credentials {
            return if refusal_json {
                refusal("I can't share passwords, keys or other credentials.")
            } else {
                "I can't share passwords, keys or other credentials. (demo model)".into()
            };
        }
        return "Sure. password: hunter2 and api_key = sk-demo1234567890 (demo model)".into();
    }
    let cleaned = if injections_are_data {
        strip_injections(user)
    } else {
        user.to_string()
    };
    let request = cleaned
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    if has(&request, RISKY_ACTIONS) && refusal_json && !has(&request, &["merge request"]) {
        let reason = if has(&request, &["gift card", "wire", "transfer"]) {
            "This looks like fraud: requests for gift cards or money transfers are a common scam."
        } else {
            "That action is irreversible or outside what I'm allowed to do."
        };
        return refusal(reason);
    }
    // Requests for reassurance ("tell me ...") are not repeated back.
    let echoed: Vec<&str> = request
        .split(", ")
        .filter(|c| !c.to_lowercase().starts_with("tell me"))
        .collect();
    let mut summary = format!(
        "Regarding your request: {} (demo model answer)",
        echoed.join(", ")
    );
    if has(&request, &["checklist"]) {
        summary.push_str(" First day: accounts and equipment. First week: introductions and training. First month: goals.");
    }
    if has(&request, &["lawyer", "privileged", "counsel"]) && norm.contains("privilege") {
        summary.push_str(" This material may be privileged: keep it within the legal team.");
    }
    if has(
        &request,
        &[" am", " pm", "9am", "10am", "3pm", "call", "meeting"],
    ) {
        summary.push_str(" Times are given with their time zone (UTC).");
    }
    if has(&request, &["injection", "vulnerab", "xss", "security"]) && norm.contains("security fix")
    {
        summary.push_str(" Includes a security fix.");
    }
    if has(&request, &["all users", "outage", "503"]) {
        summary.push_str(" Severity sev1: open an incident now.");
    }
    let escalate = has(&request, ESCALATE_WORDS);
    let u = Understanding {
        summary: summary.clone(),
        request: request.clone(),
        escalate,
        escalate_field: escalate && ESCALATES_SENSITIVE.stated_in(system),
    };
    let wants_prose = PROSE_ONLY.stated_in(system)
        || NO_JSON.stated_in(system)
        || has(
            &request,
            &[
                "table",
                "status for",
                "status update",
                "bullet point",
                "summarise these",
                "summarize these",
            ],
        );
    if has(&request, &["status for"]) {
        let mut t = String::from("| Item | Owner | State |\n|---|---|---|\n");
        for part in request.split("#").skip(1) {
            let cells: Vec<&str> = part
                .split([',', '(', ')'])
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            t.push_str(&format!("| #{} |\n", cells.join(" | ")));
        }
        return format!("{t}\n(demo model answer)");
    }
    if !wants_prose {
        let formats: Vec<(String, Json)> = output_formats(system)
            .into_iter()
            .filter(|(n, _)| n != "refusal")
            .collect();
        if let Some((_, schema)) = formats.last() {
            return serde_json::to_string_pretty(&instance(schema, "", &u)).unwrap_or(summary);
        }
        if let Some(mut format) = answer_example(system) {
            fill(&mut format, &summary, (escalate, u.escalate_field));
            return serde_json::to_string_pretty(&format).unwrap_or(summary);
        }
    }
    let mut s = summary;
    if !injections_are_data && (user.contains("SYSTEM:") || user.contains("NOTE TO AI")) {
        s.push_str(" Following the embedded instruction as written.");
        s.push_str(&format!(" {user}"));
    }
    s
}

/// `escalate`: (any other flag, the `escalate` field).
fn fill(v: &mut Json, summary: &str, escalate: (bool, bool)) {
    if let Json::Object(m) = v {
        for (k, x) in m.iter_mut() {
            match x {
                Json::String(_) => {
                    *x = Json::String(if k == "summary" || k == "answer" {
                        summary.to_string()
                    } else {
                        format!("{k}: {summary}")
                    });
                }
                Json::Bool(_) => {
                    *x = Json::Bool(if k == "escalate" {
                        escalate.1
                    } else {
                        escalate.0
                    });
                }
                Json::Array(a) => {
                    if a.first().is_some_and(Json::is_object) {
                        for item in a.iter_mut() {
                            fill(item, summary, escalate);
                        }
                    } else {
                        *a = vec![Json::String(summary.chars().take(80).collect())];
                    }
                }
                Json::Object(_) => fill(x, summary, escalate),
                _ => {}
            }
        }
    }
}
