//! `missionctl validate`: load, check every rule, and (with a base revision)
//! require a higher version for every pack whose content changed.

use crate::diagnostic::{self, Code, Diagnostic};
use crate::pack::Repo;
use crate::policy;

/// Everything validation found, sorted by file and position.
pub fn validate(repo: &Repo, base: Option<&Repo>) -> Vec<Diagnostic> {
    let mut d = repo.diagnostics.clone();
    d.extend(policy::check(repo));
    if let Some(base) = base {
        d.extend(check_versions(repo, base));
    }
    diagnostic::sort(&mut d);
    d.dedup();
    d
}

/// Any pack whose own content (pack file plus referenced files) changed since
/// `base` must carry a higher semver `version`.
pub(crate) fn check_versions(head: &Repo, base: &Repo) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for p in &head.packs {
        let Some(b) = base.pack(&p.pack.id) else {
            continue;
        };
        if b.own_digest == p.own_digest {
            continue;
        }
        let (Some(hv), Some(bv)) = (p.version(), b.version()) else {
            continue;
        };
        if hv <= bv {
            let mut next = bv.clone();
            next.patch += 1;
            next.pre = semver::Prerelease::EMPTY;
            out.push(
                Diagnostic::error(
                    Code::VersionNotBumped,
                    &p.file,
                    p.node.pos_at("/version"),
                    format!(
                        "pack `{}` changed since {} but its version {hv} is not higher than {bv}",
                        p.pack.id, base.label
                    ),
                )
                .help(format!(
                    "set `version: {next}` (or a higher minor/major for larger changes)"
                )),
            );
        }
    }
    out
}
