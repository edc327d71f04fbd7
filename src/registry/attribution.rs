//! Which rollout arms a reported run is evidence for.
//!
//! Every pack on a chain (global, domain, tenant, user) may have its own
//! canary, and a user is hashed into each one's arms independently. A run
//! reports only the `pack_version` it was served, which names the
//! combination of arms that rendered it. Attribution renders every
//! combination, keeps those whose version is the run's, and gives each
//! rollout the arm all of them agree on: a rollout whose arm the version
//! does not settle (its canary content is its champion's, or the run could
//! have come from a chain it is not on) gets no label from the run, so it
//! is never counted on the wrong side.

use super::{RolloutView, Snapshot};
use crate::model::{Arm, ArmLabel, RunRow};
use crate::pack::Location;
use crate::resolve::{self, ChainKey};
use crate::telemetry::{ArmServed, Denied, Refusal};

/// The most rolling packs on one chain whose arm combinations are
/// enumerated. A chain holds at most four packs (global, domain, tenant,
/// user), so 2^4 = 16 renderings cover every combination today; the cap
/// keeps attribution from growing as 2^k if chains ever get deeper.
/// Rolling packs past it are rendered as their champion and get no label
/// (their arm is not settled by the enumeration). Renderings are cached per
/// snapshot, and a batch attributes each distinct (tenant, pack, version)
/// once, so the cost is paid once per version served, not per run.
pub(crate) const MAX_ENUMERATED: usize = 4;

/// How [`Snapshot::render_forced`] picks the arm of each rolling pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Force {
    /// The arm the user is hashed into (a pinned rollout's champion).
    Hashed,
    /// Every rolling pack in this arm.
    All(Arm),
    /// Bit `j` set: the `j`-th rolling pack on the chain (global first) is
    /// in the canary, clear: the champion. Packs past [`MAX_ENUMERATED`]
    /// get the champion.
    Mask(u64),
}

/// The arm mask `mask` (see [`Force::Mask`]) gives the `nth` rolling pack.
pub(crate) fn mask_arm(mask: u64, nth: usize) -> Arm {
    if nth < MAX_ENUMERATED && (mask >> nth) & 1 == 1 {
        Arm::Canary
    } else {
        Arm::Champion
    }
}

/// Every combination of arms of `k` rolling packs, as [`Force::Mask`] bits.
pub(crate) fn combinations(k: usize) -> std::ops::Range<u64> {
    0..1u64 << k.min(MAX_ENUMERATED)
}

/// The arm combination `mask` gives each of `k` rolling packs, `None` for
/// those past [`MAX_ENUMERATED`] (not enumerated, so not attributable).
pub(crate) fn arms_of(k: usize, mask: u64) -> Vec<Option<Arm>> {
    (0..k)
        .map(|j| (j < MAX_ENUMERATED).then(|| mask_arm(mask, j)))
        .collect()
}

/// For each rollout that appears in `matched` (in order of first
/// appearance), the arm it had in every matching combination, when they
/// all agree. A rollout that is missing from one of the combinations (the
/// run may have been served by a chain it is not on), or whose arm differs
/// between them (canary content that renders like the champion's), or is
/// unknown in one (past the cap), is left out: the run settles nothing
/// about it.
pub(crate) fn agreed<K: PartialEq + Clone>(matched: &[Vec<(K, Option<Arm>)>]) -> Vec<(K, Arm)> {
    let mut keys: Vec<&K> = Vec::new();
    for (k, _) in matched.iter().flatten() {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .filter_map(|k| {
            let mut arms = matched
                .iter()
                .map(|combo| combo.iter().find(|(x, _)| x == k).and_then(|(_, a)| *a));
            let first = arms.next().flatten()?;
            arms.all(|a| a == Some(first)).then(|| (k.clone(), first))
        })
        .collect()
}

impl Snapshot {
    /// Check a run against what its tenant could have been served, and name
    /// the rollout arms that produced its pack version.
    ///
    /// A row's `pack_id` must be the leaf of a chain of the row's tenant
    /// (a shared domain chain, the tenant's own pack, or one of its users'
    /// packs), so no tenant can report runs into another's rollout. Its
    /// `pack_version` must be what one of those chains resolves to now
    /// under some combination of its rolling packs' arms (each rollout the
    /// combinations agree on is labelled with its arm, see [`agreed`]), or
    /// a version the pack has had on the branch (a run reported late, from
    /// before a promotion: stored, but counted in no rollout). A shared
    /// pack's rollout therefore counts a tenant's runs only through that
    /// tenant's own chains.
    ///
    /// The arms come in chain order (global first): the last is the most
    /// specific rollout's, the one `runs.arm` records.
    pub fn attribute(&self, row: &RunRow) -> Result<Vec<ArmServed>, Refusal> {
        let Some(commit) = &self.commit else {
            return Err(Refusal {
                message: "no reconciled commit yet: the registry cannot tell which packs this tenant may report; retry once /readyz answers 200".into(),
                why: Denied::Unserved,
            });
        };
        let tenant = row.tenant_id.as_str();
        let not_ours = || Refusal {
            message: format!(
                "pack `{}` is not on a chain of tenant `{tenant}` at commit {commit:.12}; report runs only for the packs /v1/resolve served this tenant",
                row.pack_id
            ),
            why: Denied::OutsideTenant,
        };
        let leaf = self.repo.pack(&row.pack_id).ok_or_else(not_ours)?;
        let keys: Vec<ChainKey> = match &leaf.location {
            Location::Domain(_) => self.leaf_chains(leaf),
            Location::Tenant(t) | Location::TenantUser { tenant: t, .. } if t == tenant => {
                self.leaf_chains(leaf)
            }
            Location::PersonalUser(u) if tenant == format!("user:{u}") => self.leaf_chains(leaf),
            // The global pack ends no chain; other tenants' packs are theirs.
            _ => return Err(not_ours()),
        };
        let mut matched: Vec<Vec<(&str, Option<Arm>)>> = Vec::new();
        for key in keys {
            let Ok(idx) = resolve::chain(&self.repo, &key) else {
                continue;
            };
            let rolling: Vec<&RolloutView> = idx
                .iter()
                .filter_map(|i| self.rollouts.get(&self.repo.packs[*i].pack.id))
                .collect();
            for mask in combinations(rolling.len()) {
                // Every arm is forced, so the user does not matter.
                if self
                    .render_forced(&key, &row.user_id, Force::Mask(mask))
                    .is_ok_and(|r| r.pack_version == row.pack_version)
                {
                    let arms = arms_of(rolling.len(), mask);
                    matched.push(
                        rolling
                            .iter()
                            .map(|rv| rv.pack_id.as_str())
                            .zip(arms)
                            .collect(),
                    );
                }
            }
        }
        if !matched.is_empty() {
            return Ok(agreed(&matched)
                .into_iter()
                .filter_map(|(pack, arm)| self.rollouts.get(pack).map(|rv| (rv, arm)))
                .map(|(rv, arm)| ArmServed {
                    label: ArmLabel::new(&rv.rollout_id, arm),
                    since: rv.started_at.clone(),
                })
                .collect());
        }
        let semver = row.pack_version.split('+').next().unwrap_or_default();
        if self
            .history
            .get(&row.pack_id)
            .is_some_and(|v| v.contains(semver))
        {
            return Ok(Vec::new());
        }
        Err(Refusal {
            message: format!(
                "pack_version `{}` is neither what tenant `{tenant}`'s chains resolve `{}` to at commit {commit:.12} nor a version that pack has had; report the pack_version /v1/resolve returned",
                row.pack_version, row.pack_id
            ),
            why: Denied::Unserved,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Arm::{Canary as Ca, Champion as Ch};

    /// The combinations `matches` (a predicate on each rolling pack's arm)
    /// accepts, as attribution collects them, for packs `names`.
    fn matching<'a>(
        names: &[&'a str],
        matches: impl Fn(&[Option<Arm>]) -> bool,
    ) -> Vec<Vec<(&'a str, Option<Arm>)>> {
        combinations(names.len())
            .map(|m| arms_of(names.len(), m))
            .filter(|arms| matches(arms))
            .map(|arms| names.iter().copied().zip(arms).collect())
            .collect()
    }

    #[test]
    fn every_combination_is_enumerated_once_up_to_the_cap() {
        assert_eq!(combinations(0).count(), 1);
        assert_eq!(combinations(2).count(), 4);
        assert_eq!(combinations(4).count(), 16);
        // Past the cap the count stops growing, and the extra packs are
        // unknown (champion when rendered).
        assert_eq!(combinations(9).count(), 16);
        let all: Vec<Vec<Option<Arm>>> = combinations(2).map(|m| arms_of(2, m)).collect();
        assert_eq!(
            all,
            [
                vec![Some(Ch), Some(Ch)],
                vec![Some(Ca), Some(Ch)],
                vec![Some(Ch), Some(Ca)],
                vec![Some(Ca), Some(Ca)],
            ]
        );
        assert_eq!(arms_of(5, 0b1111)[4], None);
        assert_eq!(mask_arm(u64::MAX, 4), Ch);
    }

    /// A domain and a tenant canary with distinct content: each of the four
    /// combinations names both arms, mixed ones included.
    #[test]
    fn each_rollout_gets_its_own_arm_from_a_mixed_combination() {
        for want in [[Ch, Ch], [Ca, Ch], [Ch, Ca], [Ca, Ca]] {
            let m = matching(&["domain", "tenant"], |a| {
                a == [Some(want[0]), Some(want[1])]
            });
            assert_eq!(m.len(), 1);
            assert_eq!(agreed(&m), [("domain", want[0]), ("tenant", want[1])]);
        }
    }

    /// The tenant's canary renders like its champion: a run's version
    /// matches both of the tenant's arms, so the tenant rollout gets no
    /// label, while the domain's arm is still settled.
    #[test]
    fn a_canary_that_renders_like_its_champion_gets_no_label() {
        let m = matching(&["domain", "tenant"], |a| a[0] == Some(Ca));
        assert_eq!(m.len(), 2);
        assert_eq!(agreed(&m), [("domain", Ca)]);
        // Alone on its chain: nothing at all.
        let m = matching(&["tenant"], |_| true);
        assert_eq!(agreed(&m), []);
    }

    /// Matches on two chains (a tenant pack in two domains): a rollout on
    /// only one of them is not settled; one on both is, when they agree.
    #[test]
    fn a_rollout_missing_from_a_matching_chain_gets_no_label() {
        let m = vec![
            vec![("global", Some(Ch)), ("domain-a", Some(Ca))],
            vec![("global", Some(Ch))],
        ];
        assert_eq!(agreed(&m), [("global", Ch)]);
        let m = vec![vec![("global", Some(Ch))], vec![("global", Some(Ca))]];
        assert_eq!(agreed(&m), []);
        // A pack past the cap is never labelled.
        let m = vec![vec![("deep", None), ("tenant", Some(Ca))]];
        assert_eq!(agreed(&m), [("tenant", Ca)]);
        assert_eq!(agreed::<&str>(&[]), []);
    }
}
