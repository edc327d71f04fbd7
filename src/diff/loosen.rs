//! What a change loosens, read from the schemas: every numeric, list and
//! boolean setting of the policies, tiers, guardrails and packs carries
//! `x-missionctl-safer` (its safe direction), and base and head are
//! compared as parsed data for every annotated path, at any depth. A
//! loosened value is never a PASS on its own: the gate waits for a policy
//! owner, with the values listed. A setting without an annotation fails the
//! schema lint in this module's tests.
//!
//! The directions:
//! - `lower` / `higher`: the lower (higher) number is safer; for an `enum`,
//!   the earlier (later) entry in the schema's order;
//! - `true` / `false`: that value is the safe one;
//! - `superset`: a list of restrictions (removing a member loosens);
//! - `subset`: a list of permissions (adding a member loosens);
//! - `neutral`: no safe direction (content the gate evaluates, identities).

use serde_json::Value as Json;

use crate::pack::Repo;
use crate::schema::Kind;

/// The annotation keyword.
pub const SAFER: &str = "x-missionctl-safer";

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

fn show(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `node` with a local `$ref` (`#/$defs/…`) followed; the annotation at the
/// reference site wins over the definition's.
fn resolve<'a>(root: &'a Json, node: &'a Json) -> (&'a Json, Option<&'a str>) {
    let here = node.get(SAFER).and_then(Json::as_str);
    match node
        .get("$ref")
        .and_then(Json::as_str)
        .and_then(|r| r.strip_prefix("#/"))
    {
        Some(path) => {
            let target = path
                .split('/')
                .try_fold(root, |n, k| n.get(k))
                .unwrap_or(node);
            (
                target,
                here.or_else(|| target.get(SAFER).and_then(Json::as_str)),
            )
        }
        None => (node, here),
    }
}

/// Members of a list, by `id` when they have one.
fn members(v: Option<&Json>) -> Vec<String> {
    v.and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .map(|m| m.get("id").map_or_else(|| show(m), show))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `head` is looser than `base` in direction `safer`; `order` is
/// the schema's `enum`, for ordered words.
fn looser(
    safer: &str,
    order: Option<&Vec<Json>>,
    base: &Json,
    head: &Json,
) -> Vec<(String, String)> {
    let rank = |v: &Json| -> Option<f64> {
        match (v, order) {
            (Json::Number(n), _) => n.as_f64(),
            (other, Some(o)) => o.iter().position(|x| x == other).map(|i| i as f64),
            _ => None,
        }
    };
    let one = || vec![(show(base), show(head))];
    match safer {
        "lower" | "higher" => match (rank(base), rank(head)) {
            (Some(b), Some(h)) if (safer == "lower" && h > b) || (safer == "higher" && h < b) => {
                one()
            }
            _ => vec![],
        },
        "true" | "false" => {
            let safe = safer == "true";
            if base.as_bool() == Some(safe) && head.as_bool() == Some(!safe) {
                one()
            } else {
                vec![]
            }
        }
        "superset" => {
            let kept = members(Some(head));
            members(Some(base))
                .into_iter()
                .filter(|m| !kept.contains(m))
                .map(|m| (format!("includes {m:?}"), "removed".to_string()))
                .collect()
        }
        "subset" => {
            let had = members(Some(base));
            members(Some(head))
                .into_iter()
                .filter(|m| !had.contains(m))
                .map(|m| ("absent".to_string(), format!("adds {m:?}")))
                .collect()
        }
        _ => vec![],
    }
}

/// Compare `base` with `head` at `field` under `schema`, pushing what loosens.
fn walk(
    root: &Json,
    schema: &Json,
    (file, field): (&str, &str),
    base: &Json,
    head: Option<&Json>,
    out: &mut Vec<Loosening>,
) {
    let (node, safer) = resolve(root, schema);
    let mut push = |before: String, after: String| {
        out.push(Loosening {
            file: file.to_string(),
            field: field.to_string(),
            before,
            after,
        });
    };
    if let Some(s) = safer.filter(|s| *s != "neutral") {
        match head {
            // Removed: whatever default applies is not the value a policy
            // owner agreed to.
            None => push(show(base), "removed (the default applies)".into()),
            Some(h) => {
                for (b, a) in looser(s, node.get("enum").and_then(Json::as_array), base, h) {
                    push(b, a);
                }
            }
        }
        return;
    }
    let (Some(b), h) = (base.as_object(), head.and_then(Json::as_object)) else {
        return;
    };
    let sub = |k: &str| {
        if field.is_empty() {
            k.to_string()
        } else {
            format!("{field}.{k}")
        }
    };
    if let Some(props) = node.get("properties").and_then(Json::as_object) {
        for (k, s) in props {
            if let Some(bv) = b.get(k) {
                walk(root, s, (file, &sub(k)), bv, h.and_then(|h| h.get(k)), out);
            }
        }
    }
    if let Some(extra) = node.get("additionalProperties").filter(|a| a.is_object()) {
        let known = node.get("properties").and_then(Json::as_object);
        for (k, bv) in b {
            if known.is_some_and(|p| p.contains_key(k)) {
                continue;
            }
            walk(
                root,
                extra,
                (file, &sub(k)),
                bv,
                h.and_then(|h| h.get(k)),
                out,
            );
        }
    }
}

/// What one chain's resolved settings loosen, base against head (`head`
/// none: the chain no longer resolves, its packs removed or broken). Only
/// the first chain a loosening is seen on is pushed.
pub(crate) fn chain_loosened(
    key: &crate::resolve::ChainKey,
    base: &Json,
    head: Option<&Json>,
    out: &mut Vec<Loosening>,
) {
    let label = format!("resolved chain {key}");
    let Some(head) = head else {
        out.push(Loosening {
            file: label,
            field: "chain".into(),
            before: "resolves".into(),
            after: "no longer resolves".into(),
        });
        return;
    };
    let root = crate::schema::schema_json(Kind::Pack);
    let mut found = Vec::new();
    walk(root, root, (&label, ""), base, Some(head), &mut found);
    for l in found {
        if !out
            .iter()
            .any(|x| x.field == l.field && x.before == l.before && x.after == l.after)
        {
            out.push(l);
        }
    }
}

fn parsed(repo: &Repo, file: &str) -> Option<Json> {
    let text = repo.sources.get(file)?;
    crate::yaml::parse(text).ok().map(|n| n.to_json())
}

/// Everything `head` loosens relative to `base`, in the policies, tiers,
/// guardrails and every pack both have.
pub fn loosened(base: &Repo, head: &Repo) -> Vec<Loosening> {
    let mut out = Vec::new();
    for (file, kind) in [
        (crate::pack::HARD_CONSTRAINTS_FILE, Kind::HardConstraints),
        (crate::pack::GUARDRAILS_FILE, Kind::Guardrails),
        (crate::pack::TIERS_FILE, Kind::Tiers),
    ] {
        if let Some(b) = parsed(base, file) {
            let root = crate::schema::schema_json(kind);
            walk(
                root,
                root,
                (file, ""),
                &b,
                parsed(head, file).as_ref(),
                &mut out,
            );
        }
    }
    let root = crate::schema::schema_json(Kind::Pack);
    for b in &base.packs {
        // By id, or by place: a pack renamed in place is the same pack.
        let Some(h) = head
            .pack(&b.pack.id)
            .or_else(|| head.packs.iter().find(|h| h.file == b.file))
        else {
            out.push(Loosening {
                file: b.file.clone(),
                field: "pack".into(),
                before: format!("{} {}", b.pack.id, b.pack.version),
                after: "removed (its restrictions no longer apply)".into(),
            });
            continue;
        };
        walk(
            root,
            root,
            (&h.file, ""),
            &b.node.to_json(),
            Some(&h.node.to_json()),
            &mut out,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An annotated setting: (path, direction, enum order).
    type Setting = (Vec<String>, String, Option<Vec<Json>>);

    /// Every annotated setting of `kind`'s schema.
    fn annotated(kind: Kind) -> Vec<Setting> {
        fn go(
            root: &Json,
            node: &Json,
            path: Vec<String>,
            out: &mut Vec<Setting>,
            missing: &mut Vec<String>,
        ) {
            let (n, safer) = resolve(root, node);
            let t = n.get("type").and_then(Json::as_str);
            let leaf = matches!(t, Some("number" | "integer" | "boolean" | "array"));
            if leaf && safer.is_none() && !path.is_empty() {
                missing.push(path.join("."));
            }
            if let Some(s) = safer {
                out.push((
                    path,
                    s.to_string(),
                    n.get("enum").and_then(Json::as_array).cloned(),
                ));
                return;
            }
            if let Some(props) = n.get("properties").and_then(Json::as_object) {
                for (k, s) in props {
                    let mut p = path.clone();
                    p.push(k.clone());
                    go(root, s, p, out, missing);
                }
            }
            if let Some(extra) = n.get("additionalProperties").filter(|a| a.is_object()) {
                let mut p = path.clone();
                p.push("x".into());
                go(root, extra, p, out, missing);
            }
        }
        let root = crate::schema::schema_json(kind);
        let (mut out, mut missing) = (Vec::new(), Vec::new());
        go(root, root, vec![], &mut out, &mut missing);
        assert!(
            missing.is_empty(),
            "{}: settings without `{SAFER}`: {missing:?}",
            kind.file_name()
        );
        out
    }

    fn nest(path: &[String], v: Json) -> Json {
        path.iter()
            .rev()
            .fold(v, |acc, k| json!({ k.as_str(): acc }))
    }

    /// (base, looser head, tighter head) for one direction.
    fn values(safer: &str, order: Option<&Vec<Json>>) -> Option<(Json, Json, Json)> {
        Some(match (safer, order) {
            ("lower", Some(o)) if o.len() >= 3 => (o[1].clone(), o[2].clone(), o[0].clone()),
            ("higher", Some(o)) if o.len() >= 3 => (o[1].clone(), o[0].clone(), o[2].clone()),
            ("lower", None) => (json!(2), json!(3), json!(1)),
            ("higher", None) => (json!(2), json!(1), json!(3)),
            ("true", _) => (json!(true), json!(false), json!(true)),
            ("false", _) => (json!(false), json!(true), json!(false)),
            ("superset", _) => (json!(["a", "b"]), json!(["a"]), json!(["a", "b", "c"])),
            ("subset", _) => (json!(["a", "b"]), json!(["a", "b", "c"]), json!(["a"])),
            ("neutral", _) => return None,
            (other, _) => panic!("unknown direction {other}"),
        })
    }

    /// Generated from the schemas: every annotated setting, loosened once,
    /// is listed; tightened once, is not. Fails on a setting without an
    /// annotation (the lint).
    #[test]
    fn every_annotated_setting_loosens_and_tightens_as_annotated() {
        let mut checked = 0;
        for kind in [
            Kind::Pack,
            Kind::HardConstraints,
            Kind::Guardrails,
            Kind::Tiers,
        ] {
            let root = crate::schema::schema_json(kind);
            for (path, safer, order) in annotated(kind) {
                let Some((b, loose, tight)) = values(&safer, order.as_ref()) else {
                    continue;
                };
                let (base, looser_head, tighter_head) =
                    (nest(&path, b), nest(&path, loose), nest(&path, tight));
                let mut out = Vec::new();
                walk(root, root, ("f", ""), &base, Some(&looser_head), &mut out);
                assert!(
                    out.iter().any(|l| l.field == path.join(".")),
                    "{}: loosening `{}` ({safer}) was not seen: {out:?}",
                    kind.file_name(),
                    path.join(".")
                );
                let mut out = Vec::new();
                walk(root, root, ("f", ""), &base, Some(&tighter_head), &mut out);
                assert!(
                    out.is_empty(),
                    "{}: tightening `{}` ({safer}) was taken for loosening: {out:?}",
                    kind.file_name(),
                    path.join(".")
                );
                checked += 1;
            }
        }
        // The count the closing note gives; a schema change moves it.
        assert_eq!(checked, 71, "annotated settings checked");
    }

    #[test]
    fn the_reported_loosenings_are_seen() {
        let root = crate::schema::schema_json(Kind::Pack);
        let base = json!({"promotion": {"canary": {"steps": [10, 50, 100]}}, "rollback": {"max_success_rate_drop": 0.03}});
        let head = json!({"promotion": {"canary": {"steps": [100]}}, "rollback": {"max_success_rate_drop": 0.9}});
        let mut out = Vec::new();
        walk(root, root, ("p", ""), &base, Some(&head), &mut out);
        let got: Vec<String> = out.iter().map(ToString::to_string).collect();
        assert!(
            got.iter().any(|l| l.contains("promotion.canary.steps")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|l| l.contains("rollback.max_success_rate_drop`: 0.03 → 0.9")),
            "{got:?}"
        );
        let root = crate::schema::schema_json(Kind::Guardrails);
        let base =
            json!({"max_optimization_spend_per_day": {"default": 5, "tenants": {"acme": 5}}});
        let head =
            json!({"max_optimization_spend_per_day": {"default": 5, "tenants": {"acme": 500}}});
        let mut out = Vec::new();
        walk(root, root, ("g", ""), &base, Some(&head), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].field, "max_optimization_spend_per_day.tenants.acme");
        let root = crate::schema::schema_json(Kind::Tiers);
        let base = json!({"enterprise": {"approvals": {"A1": 1, "A2": 1, "A3": 2}, "canary_steps": [5, 25, 100]}});
        let head = json!({"enterprise": {"approvals": {"A1": 0, "A2": 0, "A3": 0}, "canary_steps": [100]}});
        let mut out = Vec::new();
        walk(root, root, ("t", ""), &base, Some(&head), &mut out);
        assert_eq!(out.len(), 5, "{out:?}");
    }
}
