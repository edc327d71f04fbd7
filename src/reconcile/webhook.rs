//! What a GitHub webhook delivery asks of the reconciler, decided apart from
//! HTTP: the payload in either content type GitHub sends, and whether a push
//! is one this server reconciles.

use serde_json::Value as Json;

/// The JSON payload of a delivery. GitHub sends `application/json`, or (the
/// default when a webhook is created in the UI) `application/x-www-form-urlencoded`
/// with the JSON in the `payload` field. The signature covers the raw body in
/// both cases, so this runs after it is checked.
pub fn payload(content_type: Option<&str>, body: &[u8]) -> Result<Json, String> {
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("application/x-www-form-urlencoded") => {
            let json = form_urlencoded::parse(body)
                .find(|(k, _)| k == "payload")
                .map(|(_, v)| v.into_owned())
                .ok_or("a form-encoded delivery without a `payload` field")?;
            serde_json::from_str(&json)
                .map_err(|e| format!("the form-encoded `payload` is not JSON: {e}"))
        }
        Some("application/json") | None => {
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))
        }
        Some(other) => Err(format!(
            "content type `{other}` is not one GitHub sends; use application/json or application/x-www-form-urlencoded"
        )),
    }
}

/// `owner/name` of a GitHub remote URL (https, ssh or scp-like), lowercased.
pub fn github_repo(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://github.com/")
        .or_else(|| url.strip_prefix("http://github.com/"))
        .or_else(|| url.strip_prefix("ssh://git@github.com/"))
        .or_else(|| url.strip_prefix("git@github.com:"))?;
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    let (owner, name) = rest.split_once('/')?;
    (!owner.is_empty() && !name.is_empty() && !name.contains('/'))
        .then(|| format!("{owner}/{name}").to_ascii_lowercase())
}

/// Whether a push event is one to reconcile: Ok, or the reason it is not.
/// `repo` is the `owner/name` this server reconciles, when known.
pub fn push_wanted(payload: &Json, branch: &str, repo: Option<&str>) -> Result<(), String> {
    let full_name = payload
        .pointer("/repository/full_name")
        .and_then(Json::as_str);
    if let Some(want) = repo {
        match full_name {
            Some(got) if got.eq_ignore_ascii_case(want) => {}
            Some(got) => {
                return Err(format!("push to {got}; this server reconciles {want}"));
            }
            None => return Err("a push without a repository".into()),
        }
    }
    let r = payload.get("ref").and_then(Json::as_str).unwrap_or("");
    if r != format!("refs/heads/{branch}") {
        return Err(format!("push to {r}"));
    }
    if payload.get("deleted").and_then(Json::as_bool) == Some(true) {
        return Err(format!("{r} was deleted; nothing to reconcile"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_content_types_give_the_payload() {
        let p = json!({"ref": "refs/heads/main"});
        assert_eq!(
            payload(Some("application/json"), p.to_string().as_bytes()),
            Ok(p.clone())
        );
        let form = format!(
            "payload={}",
            form_urlencoded::byte_serialize(p.to_string().as_bytes()).collect::<String>()
        );
        assert_eq!(
            payload(Some("application/x-www-form-urlencoded"), form.as_bytes()),
            Ok(p)
        );
        assert!(payload(Some("text/plain"), b"{}").is_err());
        assert!(payload(Some("application/x-www-form-urlencoded"), b"x=1").is_err());
    }

    #[test]
    fn repository_urls() {
        for u in [
            "https://github.com/Acme/Packs.git",
            "git@github.com:acme/packs.git",
            "ssh://git@github.com/acme/packs",
            "https://github.com/acme/packs/",
        ] {
            assert_eq!(github_repo(u).as_deref(), Some("acme/packs"), "{u}");
        }
        assert_eq!(github_repo("https://gitlab.com/a/b"), None);
        assert_eq!(github_repo("/srv/packs.git"), None);
    }

    #[test]
    fn pushes_to_other_branches_repositories_and_deletions_are_ignored() {
        let push = |r: &str, repo: Json, deleted: bool| json!({"ref": r, "deleted": deleted, "repository": repo});
        let ours = json!({"full_name": "acme/packs"});
        assert_eq!(
            push_wanted(
                &push("refs/heads/main", ours.clone(), false),
                "main",
                Some("acme/packs")
            ),
            Ok(())
        );
        assert_eq!(
            push_wanted(&push("refs/heads/main", ours.clone(), false), "main", None),
            Ok(())
        );
        assert!(push_wanted(&push("refs/heads/dev", ours.clone(), false), "main", None).is_err());
        let del = push_wanted(&push("refs/heads/main", ours, true), "main", None);
        assert!(del.is_err_and(|e| e.contains("deleted")));
        let other = push_wanted(
            &push("refs/heads/main", json!({"full_name": "evil/packs"}), false),
            "main",
            Some("acme/packs"),
        );
        assert!(other.is_err_and(|e| e.contains("evil/packs")));
        assert!(
            push_wanted(
                &push("refs/heads/main", Json::Null, false),
                "main",
                Some("acme/packs")
            )
            .is_err()
        );
    }
}
