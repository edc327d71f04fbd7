//! Skills on a chain: added by any layer (an ancestor's name wins over a
//! child's), removed by any layer's `deny`, served as `content.skills`.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::Origin;
use crate::pack::PackDoc;

#[derive(Default)]
pub(super) struct Skills<'a> {
    added: Vec<(Json, Origin)>,
    denied: Vec<&'a str>,
}

impl<'a> Skills<'a> {
    /// What layer `p` (in scope `scope`) adds and denies.
    pub(super) fn add(&mut self, p: &'a PackDoc, scope: &str) {
        for s in &p.skills {
            if self.added.iter().any(|(k, _)| k["name"] == s.name.as_str()) {
                continue;
            }
            let mut skill = serde_json::json!({
                "name": s.name,
                "description": s.description,
                "file": s.file,
                "scope": scope,
                "text": &*s.text,
            });
            if !s.files.is_empty() {
                // The folder's other files, by path within the folder.
                skill["files"] = Json::Object(
                    s.files
                        .iter()
                        .map(|(rel, t)| (rel.clone(), Json::String(t.to_string())))
                        .collect(),
                );
            }
            self.added.push((
                skill,
                Origin {
                    file: p.file.clone(),
                    line: s.pos.line,
                    col: s.pos.col,
                    scope: scope.to_string(),
                },
            ));
        }
        self.denied
            .extend(p.pack.skills.deny.iter().map(String::as_str));
    }

    /// `content.skills` (absent when none is left), with provenance when kept.
    pub(super) fn finish(self, body: &mut Json, prov: Option<&mut BTreeMap<String, Origin>>) {
        let denied = self.denied;
        let kept: Vec<(Json, Origin)> = self
            .added
            .into_iter()
            .filter(|(k, _)| !k["name"].as_str().is_some_and(|n| denied.contains(&n)))
            .collect();
        let Json::Object(o) = body else { return };
        if kept.is_empty() {
            return;
        }
        let mut list = Vec::with_capacity(kept.len());
        let mut prov = prov;
        for (i, (k, origin)) in kept.into_iter().enumerate() {
            if let Some(p) = prov.as_deref_mut() {
                p.insert(format!("/skills/{i}"), origin);
            }
            list.push(k);
        }
        o.insert("skills".into(), Json::Array(list));
    }
}
