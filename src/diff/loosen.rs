//! What a change loosens: policies, guardrails, tiers and a pack's
//! promotion thresholds compared as parsed data, base against head. A
//! loosened value is never a PASS on its own: the gate waits for a policy
//! owner, with the values listed.

use serde_json::Value as Json;

use crate::pack::Repo;

/// One loosened value: the file, the field, and base → head.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Loosening {
    pub file: String,
    pub field: String,
    pub before: String,
    pub after: String,
}

impl std::fmt::Display for Loosening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} `{}`: {} → {}",
            self.file, self.field, self.before, self.after
        )
    }
}

/// Lists whose members are restrictions: removing one loosens.
const RESTRICTING_LISTS: &[&str] = &[
    "forbidden_tools",
    "banned_phrases",
    "required_safety_clauses",
    "deny",
];

fn show(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Compare `base` with `head` under `field`, pushing what loosens.
fn walk(file: &str, field: &str, base: &Json, head: Option<&Json>, out: &mut Vec<Loosening>) {
    let key = field.rsplit('.').next().unwrap_or(field);
    let mut push = |before: String, after: String| {
        out.push(Loosening {
            file: file.to_string(),
            field: field.to_string(),
            before,
            after,
        });
    };
    match (base, head) {
        (Json::Object(b), Some(Json::Object(h))) => {
            for (k, v) in b {
                let f = if field.is_empty() {
                    k.clone()
                } else {
                    format!("{field}.{k}")
                };
                walk(file, &f, v, h.get(k), out);
            }
        }
        (Json::Object(_), None) => push("set".into(), "removed".into()),
        (Json::Number(b), Some(h)) => {
            let (x, y) = (b.as_f64().unwrap_or(0.0), h.as_f64().unwrap_or(f64::NAN));
            let looser = if key.starts_with("min_") {
                y < x || y.is_nan()
            } else if key.starts_with("max_") || key == "alpha" {
                y > x || y.is_nan()
            } else {
                false
            };
            if looser {
                push(show(base), show(h));
            }
        }
        (Json::Number(_) | Json::Bool(true), None)
            if key.starts_with("min_")
                || key.starts_with("max_")
                || key == "alpha"
                || matches!(base, Json::Bool(true)) =>
        {
            push(show(base), "removed (the default applies)".into());
        }
        (Json::Bool(true), Some(Json::Bool(false))) => push("true".into(), "false".into()),
        (Json::String(b), Some(Json::String(h))) if key == "max_autonomy" && h > b => {
            push(b.clone(), h.clone());
        }
        (Json::Array(b), h) if RESTRICTING_LISTS.contains(&key) => {
            let id = |v: &Json| v.get("id").map_or_else(|| show(v), show);
            let kept: Vec<String> = h
                .and_then(Json::as_array)
                .map(|a| a.iter().map(id).collect())
                .unwrap_or_default();
            for v in b {
                let i = id(v);
                if !kept.contains(&i) {
                    push(format!("includes {i:?}"), "removed".into());
                }
            }
        }
        _ => {}
    }
}

fn parsed(repo: &Repo, file: &str) -> Option<Json> {
    let text = repo.sources.get(file)?;
    crate::yaml::parse(text).ok().map(|n| n.to_json())
}

/// Everything `head` loosens relative to `base`.
pub fn loosened(base: &Repo, head: &Repo) -> Vec<Loosening> {
    let mut out = Vec::new();
    for file in [
        crate::pack::HARD_CONSTRAINTS_FILE,
        crate::pack::GUARDRAILS_FILE,
        crate::pack::TIERS_FILE,
    ] {
        if let Some(b) = parsed(base, file) {
            walk(file, "", &b, parsed(head, file).as_ref(), &mut out);
        }
    }
    for b in &base.packs {
        let Some(h) = head.pack(&b.pack.id) else {
            continue;
        };
        if let Some(bp) = b.node.get("promotion").map(crate::yaml::Node::to_json) {
            let hp = h.node.get("promotion").map(crate::yaml::Node::to_json);
            walk(
                &h.file,
                "promotion",
                &bp,
                Some(&hp.unwrap_or(Json::Object(Default::default()))),
                &mut out,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn diff(b: Json, h: Json) -> Vec<String> {
        let mut out = Vec::new();
        walk("f", "", &b, Some(&h), &mut out);
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn looser_values_are_listed_tighter_ones_are_not() {
        let base = json!({"promotion": {"min_pass_rate": 0.9, "max_pass_rate_drop": 0.05, "alpha": 0.05},
            "forbidden_tools": ["shell.exec", "iam.grant_admin"], "max_autonomy": "A2",
            "data_boundaries": {"tenant_isolation": true}});
        let looser = json!({"promotion": {"min_pass_rate": 0.8, "max_pass_rate_drop": 0.1, "alpha": 0.1},
            "forbidden_tools": ["shell.exec"], "max_autonomy": "A3",
            "data_boundaries": {"tenant_isolation": false}});
        let got = diff(base.clone(), looser);
        assert_eq!(got.len(), 6, "{got:?}");
        assert!(
            got.iter()
                .any(|l| l.contains("promotion.min_pass_rate`: 0.9 → 0.8")),
            "{got:?}"
        );
        assert!(
            got.iter().any(|l| l.contains("\"iam.grant_admin\"")),
            "{got:?}"
        );
        let tighter = json!({"promotion": {"min_pass_rate": 0.95, "max_pass_rate_drop": 0.01, "alpha": 0.01},
            "forbidden_tools": ["shell.exec", "iam.grant_admin", "x"], "max_autonomy": "A1",
            "data_boundaries": {"tenant_isolation": true}});
        assert!(diff(base.clone(), tighter).is_empty());
        assert!(diff(base.clone(), base).is_empty());
    }
}
