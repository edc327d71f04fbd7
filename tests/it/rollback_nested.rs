//! A tenant pack's folder holds its users' packs: rolling the tenant pack
//! back restores the tenant pack's own files and leaves every user pack as
//! the branch has it (found by the hostile pass of issue 27: the revert
//! rewrote alice's pack and deleted users added since).

use crate::reconcile::bump;
use crate::util::{Fleet, assert_success, git};

#[test]
fn rolling_a_tenant_pack_back_leaves_its_users_packs_alone() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let f = Fleet::fleet(&db);
    assert_eq!(f.reconcile(&[]).0, 0);
    // acme 1.1.0, and alice's pack changed in the same merge.
    f.merge("acme-tone", 51, |f| {
        f.edit(
            "packs/tenants/acme/pack.yaml",
            "never \"Acme Robotics Inc.\" in conversation.",
            "never \"Acme Robotics Inc.\" in any conversation.",
        );
        bump(f, "packs/tenants/acme/pack.yaml", "1.1.0");
        bump(f, "packs/tenants/acme/users/alice/pack.yaml", "1.1.0");
    });
    // Then a new user of acme.
    f.write(
        "packs/tenants/acme/users/zed/pack.yaml",
        "id: acme-zed\nversion: 1.0.0\nscope: { type: user, id: zed }\ndescription: Zed.\ntools:\n  autonomy: A1\n",
    );
    f.git(&["add", "-A"]);
    f.git(&["commit", "-qm", "acme: zed"]);
    f.push();
    assert_eq!(f.reconcile(&[]).0, 0);
    let out = f.run(&[
        "rollback",
        "--repo",
        f.remote.to_str().expect("p"),
        "--pack",
        "acme-tenant",
        "--to",
        "1.0.0",
        "--reason",
        "tone regression",
        "--push",
    ]);
    assert_success(&out);
    let show = |path: &str| git(&f.remote, &["show", &format!("main:{path}")]);
    assert!(show("packs/tenants/acme/pack.yaml").contains("version: 1.0.0"));
    assert!(
        show("packs/tenants/acme/users/alice/pack.yaml").contains("version: 1.1.0"),
        "alice's pack is not acme-tenant's to roll back"
    );
    assert!(
        show("packs/tenants/acme/users/zed/pack.yaml").contains("id: acme-zed"),
        "a user added since stays"
    );
    let changed = git(&f.remote, &["diff", "--name-only", "main~1", "main"]);
    assert!(changed.lines().all(|l| !l.contains("/users/")), "{changed}");
    // The reconciler sees acme-tenant's content back at 1.0.0: a rollback,
    // and nothing for alice or zed.
    let (code, v) = f.reconcile(&[]);
    assert_eq!(code, 0, "{v}");
    let decisions = f.decisions();
    let last: Vec<_> = decisions
        .iter()
        .filter(|d| d["commit"].as_str() == Some(git(&f.remote, &["rev-parse", "main"]).trim()))
        .collect();
    assert!(
        last.iter()
            .any(|d| d["decision"] == "rollback" && d["pack_id"] == "acme-tenant"),
        "{last:?}"
    );
    assert!(
        last.iter().all(|d| d["pack_id"] == "acme-tenant"),
        "{last:?}"
    );
}
