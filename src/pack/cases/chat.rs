//! Chat-format prompts: a prompt whose text is JSON, as promptfoo renders it
//! (`renderPrompt`: every string inside rendered with the vars, the rest
//! kept) and as its OpenAI provider reads the result (`parseChatPrompt`: a
//! list of messages). A `.json` prompt file is such a prompt
//! (`processJsonFile`: the file's text).

use serde_json::Value as Json;

use crate::js::nunjucks;
use crate::pack::ChatTurn;

/// The messages of `template` rendered with `vars`, or `Ok(None)` when it
/// is not JSON (a text prompt). What missionctl cannot send as promptfoo's
/// OpenAI provider would (not a list, content parts, other keys) is an error
/// naming it.
pub(super) fn chat_messages(template: &str, vars: &Json) -> Result<Option<Vec<ChatTurn>>, String> {
    let Some(parsed) = crate::js::json_parse(template) else {
        return Ok(None);
    };
    turns(render_strings(&parsed, vars)?, &parsed).map(Some)
}

/// Whether a prompt that is JSON has the shape of a chat missionctl sends,
/// checked once where the prompt is written (rendering only changes text).
pub(super) fn check(template: &str) -> Result<(), String> {
    match crate::js::json_parse(template) {
        Some(parsed) => turns(parsed.clone(), &parsed).map(|_| ()),
        None => Ok(()),
    }
}

/// The messages of a rendered chat prompt.
fn turns(rendered: Json, parsed: &Json) -> Result<Vec<ChatTurn>, String> {
    let Json::Array(items) = rendered else {
        return Err(format!(
            "a prompt that is JSON is a chat-format prompt, and promptfoo's OpenAI provider sends it as the list of messages; this one is {} (missionctl sends a list of `{{role, content}}` messages only)",
            kind(parsed)
        ));
    };
    if items.is_empty() {
        return Err("a chat-format prompt with no messages".into());
    }
    let mut out = Vec::new();
    for (i, m) in items.iter().enumerate() {
        let Json::Object(o) = m else {
            return Err(format!(
                "chat-format prompt, message {i}: {} where a `{{role, content}}` object belongs",
                kind(m)
            ));
        };
        if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "role" | "content")) {
            return Err(format!(
                "chat-format prompt, message {i}: `{k}` is a provider-specific message field missionctl does not send (it sends `role` and `content`)"
            ));
        }
        let role = match o.get("role") {
            Some(Json::String(r)) if matches!(r.as_str(), "system" | "user" | "assistant") => r,
            other => {
                return Err(format!(
                    "chat-format prompt, message {i}: role {} (missionctl sends `system`, `user` and `assistant` messages)",
                    other.map_or("missing".into(), crate::js::stringify)
                ));
            }
        };
        let Some(Json::String(content)) = o.get("content") else {
            return Err(format!(
                "chat-format prompt, message {i}: `content` must be text (content parts, such as images or cache control, are provider features missionctl does not send)"
            ));
        };
        out.push(ChatTurn {
            role: role.clone(),
            content: content.clone(),
        });
    }
    Ok(out)
}

/// The user text of a chat: its last `user` message.
pub(super) fn last_user(turns: &[ChatTurn]) -> String {
    turns
        .iter()
        .rev()
        .find(|t| t.role == "user")
        .map(|t| t.content.clone())
        .unwrap_or_default()
}

/// promptfoo's `renderVarsInObject`: each string rendered, keys kept.
fn render_strings(v: &Json, vars: &Json) -> Result<Json, String> {
    Ok(match v {
        Json::String(s) => Json::String(nunjucks::render(s, vars)?),
        Json::Array(a) => Json::Array(
            a.iter()
                .map(|x| render_strings(x, vars))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, x)| render_strings(x, vars).map(|y| (k.clone(), y)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Object(_) => "an object",
        Json::Array(_) => "a list",
        Json::String(_) => "a string",
        Json::Number(_) => "a number",
        Json::Bool(_) => "a boolean",
        Json::Null => "null",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// promptfoo's llama-gpt-comparison prompt: each string rendered, a
    /// quote in a var kept inside the message (the JSON is not re-parsed
    /// from text), the last user message the case's user text.
    #[test]
    fn a_json_prompt_is_a_list_of_rendered_messages() {
        let t = r#"[{"role": "system", "content": "You are a pirate"}, {"role": "user", "content": "{{message}}"}]"#;
        let turns = chat_messages(t, &json!({"message": "say \"hi\""}))
            .expect("ok")
            .expect("chat");
        assert_eq!(
            turns,
            vec![
                ChatTurn {
                    role: "system".into(),
                    content: "You are a pirate".into()
                },
                ChatTurn {
                    role: "user".into(),
                    content: "say \"hi\"".into()
                }
            ]
        );
        assert_eq!(last_user(&turns), "say \"hi\"");
        // Text is not a chat.
        assert_eq!(
            chat_messages("Hello {{message}}", &json!({})).expect("ok"),
            None
        );
        // Refused: not a list, content parts, provider fields.
        assert!(check(t).is_ok() && check("Hello {{x}}").is_ok());
        for bad in [
            r#"{"messages": []}"#,
            r#"[]"#,
            r#"[{"role": "user", "content": [{"type": "text", "text": "x"}]}]"#,
            r#"[{"role": "user", "content": "x", "cache_control": {}}]"#,
            r#"[{"role": "tool", "content": "x"}]"#,
        ] {
            assert!(chat_messages(bad, &json!({})).is_err(), "{bad}");
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
