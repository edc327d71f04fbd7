//! Approval through code review: whether a pull request's reviews satisfy
//! the tier preset for the autonomy level of every changed pack.
//!
//! - A0 (observe) packs cannot be promoted at all;
//! - A1 (low-risk auto) needs the preset's A1 count (zero on personal and team);
//! - A2 (approval-needed) needs approvals from an owner of the pack's path;
//! - A3 (explicit approval path) needs the preset's A3 count from owners, one
//!   of them from the role the preset names (`a3_approver`);
//! - a change under `policies/` needs a policy owner.
//!
//! CODEOWNERS and the presets are read from the base revision, so a pull
//! request cannot make its author an owner of what it changes. When the
//! preset says so, approvals given before the latest push do not count.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value as Json;

use super::codeowners::CodeOwners;
use super::{Gh, GhError};
use crate::diff::{PackChange, Status};
use crate::pack::{Autonomy, Location, Repo, Tier};

pub use crate::model::{ApprovalReport, Requirement};

/// The latest review state per reviewer.
#[derive(Debug, Clone)]
pub struct Review {
    pub user: String,
    pub state: String,
    pub commit_id: String,
}

pub(crate) fn latest_reviews(reviews: &[Json]) -> Vec<Review> {
    let mut by_user: BTreeMap<String, Review> = BTreeMap::new();
    for r in reviews {
        let user = r
            .pointer("/user/login")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        let state = r
            .get("state")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_uppercase();
        // Comments do not change an earlier approval or change request.
        if user.is_empty() || state == "COMMENTED" || state == "PENDING" {
            continue;
        }
        by_user.insert(
            user.clone(),
            Review {
                user,
                state,
                commit_id: r
                    .get("commit_id")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string(),
            },
        );
    }
    by_user.into_values().collect()
}

/// Whether `user` has write access (write, maintain or admin) to the
/// repository, from the collaborator permission API; an error says what
/// the token lacks.
async fn write_access(gh: &Gh, user: &str) -> Result<bool, String> {
    match gh
        .get(&gh.repo_path(&format!("/collaborators/{user}/permission")))
        .await
    {
        Ok(v) => Ok(matches!(
            v.get("permission").and_then(Json::as_str),
            Some("admin" | "maintain" | "write")
        )),
        // Not a collaborator at all.
        Err(GhError::Status { status: 404, .. }) => Ok(false),
        Err(e) => Err(format!(
            "write access could not be read ({e}); the token needs `metadata: read` on the repository (a GitHub App installation token or the Actions GITHUB_TOKEN)"
        )),
    }
}

/// Resolves whether a GitHub user is one of the owners (`@user` or `@org/team`).
pub struct Membership<'a> {
    gh: &'a Gh,
    cache: HashMap<(String, String), bool>,
    /// Teams that could not be read, with why and how to fix it.
    pub unreadable: std::collections::BTreeMap<String, String>,
}

impl<'a> Membership<'a> {
    pub fn new(gh: &'a Gh) -> Self {
        Membership {
            gh,
            cache: HashMap::new(),
            unreadable: std::collections::BTreeMap::new(),
        }
    }

    pub async fn is(&mut self, user: &str, owner: &str) -> bool {
        let owner = owner.trim_start_matches('@');
        match owner.split_once('/') {
            None => owner.eq_ignore_ascii_case(user),
            Some((org, team)) => {
                let key = (owner.to_string(), user.to_lowercase());
                if let Some(v) = self.cache.get(&key) {
                    return *v;
                }
                let path = format!("/orgs/{org}/teams/{team}/memberships/{user}");
                let fix = "team membership needs a token with the organization's `members: read` permission: a GitHub App installation token (set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY); the Actions GITHUB_TOKEN cannot read teams";
                let member = match self.gh.get(&path).await {
                    Ok(v) => v.get("state").and_then(Json::as_str) == Some("active"),
                    // GitHub answers 404 both for "not a member" and for "you
                    // may not see this team": the team itself tells them apart.
                    Err(GhError::Status { status: 404, .. }) => {
                        if let Err(e) = self.gh.get(&format!("/orgs/{org}/teams/{team}")).await {
                            self.unreadable.insert(
                                format!("@{owner}"),
                                format!("@{owner} cannot be read by this token ({e}); {fix}"),
                            );
                        }
                        false
                    }
                    Err(e) => {
                        self.unreadable.insert(
                            format!("@{owner}"),
                            format!("@{owner} membership cannot be read ({e}); {fix}"),
                        );
                        false
                    }
                };
                self.cache.insert(key, member);
                member
            }
        }
    }
}

fn tier_of(repo: &Repo, loc: &Location, pack_tier: Option<Tier>) -> Tier {
    match loc {
        Location::PersonalUser(_) => pack_tier.unwrap_or(Tier::Personal),
        Location::TenantUser { tenant, .. } => pack_tier
            .or_else(|| {
                repo.tenants
                    .get(tenant)
                    .and_then(|i| repo.packs[*i].pack.tier)
            })
            .unwrap_or_else(|| repo.default_tier()),
        _ => pack_tier.unwrap_or_else(|| repo.default_tier()),
    }
}

/// Evaluate the approvals a pull request has against what its changes need.
pub async fn evaluate(
    gh: &Gh,
    pr: u64,
    head_sha: &str,
    base: &Repo,
    head: &Repo,
    changed: &[PackChange],
    policies_changed: &[String],
) -> Result<ApprovalReport, GhError> {
    let reviews = gh
        .get_all(&gh.repo_path(&format!("/pulls/{pr}/reviews")))
        .await?;
    let pull = gh.get(&gh.repo_path(&format!("/pulls/{pr}"))).await?;
    let author = pull
        .pointer("/user/login")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    // Only reviewers with write access count, and never the author: an
    // approval is code review, and GitHub itself lets anyone leave one.
    let mut not_counted = Vec::new();
    let mut latest = Vec::new();
    for r in latest_reviews(&reviews) {
        if r.state != "APPROVED" {
            latest.push(r);
            continue;
        }
        if r.user.eq_ignore_ascii_case(&author) {
            not_counted.push(format!("{} (the pull request's author)", r.user));
            continue;
        }
        match write_access(gh, &r.user).await {
            Ok(true) => latest.push(r),
            Ok(false) => {
                not_counted.push(format!("{} (no write access to the repository)", r.user));
            }
            Err(why) => not_counted.push(format!("{} ({why})", r.user)),
        }
    }
    let owners_file = CodeOwners::parse(base.codeowners.as_deref().unwrap_or(""));
    let mut report = ApprovalReport {
        codeowners_invalid: owners_file
            .invalid
            .iter()
            .map(|i| format!("line {}: {}", i.line, i.message))
            .collect(),
        ..ApprovalReport::default()
    };
    report.not_counted = not_counted;
    let mut membership = Membership::new(gh);
    let default_preset_tier = base.default_tier();
    // Approvals that count, per the strictest stale rule among the presets involved.
    let approvals = |dismiss_stale: bool, stale: &mut Vec<String>| -> Vec<String> {
        latest
            .iter()
            .filter(|r| r.state == "APPROVED")
            .filter(|r| {
                let ok = !dismiss_stale || r.commit_id == head_sha;
                if !ok && !stale.contains(&r.user) {
                    stale.push(r.user.clone());
                }
                ok
            })
            .map(|r| r.user.clone())
            .collect()
    };
    let Some(tiers) = base.tiers.as_ref().map(|t| &t.value) else {
        return Err(GhError::Config(
            "the base revision has no valid policies/tiers.yaml".into(),
        ));
    };
    for pc in changed.iter().filter(|p| p.status != Status::Removed) {
        let Some(p) = head.pack(&pc.pack_id) else {
            continue;
        };
        // What the change needs is decided by the base: a pull request may
        // make its own review stricter (a higher tier or autonomy), never
        // looser, so each is the strictest of base and head.
        let head_autonomy = head
            .by_id
            .get(&pc.pack_id)
            .and_then(|i| crate::policy::effective_autonomy(head, *i))
            .map(|(a, _)| a);
        // The base's pack by id, or by place: renaming a pack in place
        // must not shed what its base version required.
        let base_idx = base
            .by_id
            .get(&pc.pack_id)
            .copied()
            .or_else(|| base.packs.iter().position(|b| b.file == p.file));
        let base_autonomy = base_idx
            .and_then(|i| crate::policy::effective_autonomy(base, i))
            .map(|(a, _)| a);
        if head_autonomy == Some(Autonomy::A0) {
            report.not_promotable.push(pc.pack_id.clone());
            continue;
        }
        let autonomy = head_autonomy.max(base_autonomy);
        let base_tier = tier_of(
            base,
            &p.location,
            base_idx.and_then(|i| base.packs[i].pack.tier),
        );
        let tier = base_tier.max(tier_of(head, &p.location, p.pack.tier));
        let preset = tiers.get(tier);
        let (needed, role) = match autonomy.unwrap_or(Autonomy::A2) {
            Autonomy::A0 => (0, None),
            Autonomy::A1 => (preset.approvals.a1, None),
            Autonomy::A2 => (preset.approvals.a2, None),
            Autonomy::A3 => (preset.approvals.a3.max(1), preset.a3_approver.clone()),
        };
        // Where CODEOWNERS names no owner, the policy's default approver
        // (the preset's policy owner) applies; with neither, anyone with
        // write access who is not the author.
        let owners = {
            let o = owners_file.owners_of(&p.file);
            if o.is_empty() {
                preset.policy_owner.clone().into_iter().collect()
            } else {
                o
            }
        };
        let mut approved_by = Vec::new();
        let mut has_role = role.is_none();
        for user in approvals(preset.dismiss_stale_approvals, &mut report.stale) {
            let mut counts = owners.is_empty();
            for o in &owners {
                if membership.is(&user, o).await {
                    counts = true;
                    break;
                }
            }
            if let Some(r) = &role
                && membership.is(&user, r).await
            {
                has_role = true;
                counts = true;
            }
            if counts {
                approved_by.push(user);
            }
        }
        let satisfied = approved_by.len() as u32 >= needed && (needed == 0 || has_role);
        report.requirements.push(Requirement {
            subject: pc.pack_id.clone(),
            path: p.file.clone(),
            autonomy,
            tier,
            needed,
            owners,
            role,
            approved_by,
            satisfied,
        });
    }
    if !policies_changed.is_empty() {
        let preset = tiers.get(default_preset_tier);
        let owners: Vec<String> = match &preset.policy_owner {
            Some(o) => vec![o.clone()],
            None => owners_file.owners_of(&policies_changed[0]),
        };
        let mut approved_by = Vec::new();
        for user in approvals(preset.dismiss_stale_approvals, &mut report.stale) {
            for o in &owners {
                if membership.is(&user, o).await {
                    approved_by.push(user.clone());
                    break;
                }
            }
        }
        report.requirements.push(Requirement {
            subject: "policies".into(),
            path: policies_changed.join(", "),
            autonomy: None,
            tier: default_preset_tier,
            needed: 1,
            satisfied: !approved_by.is_empty(),
            owners,
            role: None,
            approved_by,
        });
    }
    report.satisfied =
        report.not_promotable.is_empty() && report.requirements.iter().all(|r| r.satisfied);
    report.unreadable_teams = membership.unreadable.into_values().collect();
    Ok(report)
}
