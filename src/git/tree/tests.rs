use super::*;

fn tree(entries: &[(&str, EntryKind)]) -> Tree {
    Tree {
        backing: Backing::WorkTree(PathBuf::from("/nonexistent")),
        entries: Index::Full(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ),
        commit: None,
        label: "test".into(),
        escapes: Vec::new(),
        overlay: None,
    }
    .with_linked_dirs()
}

fn file() -> EntryKind {
    EntryKind::File {
        oid: None,
        size: Some(1),
    }
}

#[test]
fn refs_resolve_and_refuse_escapes() {
    let t = tree(&[
        ("packs/a/p.md", file()),
        (
            "packs/a/link.md",
            EntryKind::Symlink {
                target: "p.md".into(),
            },
        ),
        (
            "packs/a/out.md",
            EntryKind::Symlink {
                target: "../../../etc/passwd".into(),
            },
        ),
        (
            "packs/a/abs.md",
            EntryKind::Symlink {
                target: "/etc/passwd".into(),
            },
        ),
        (
            "packs/a/dirlink",
            EntryKind::Symlink {
                target: "../b".into(),
            },
        ),
        ("packs/b/q.md", file()),
    ]);
    assert_eq!(
        resolve_ref(&t, "packs/a", "p.md"),
        Ok("packs/a/p.md".into())
    );
    assert_eq!(
        resolve_ref(&t, "packs/a", "./link.md"),
        Ok("packs/a/p.md".into())
    );
    assert_eq!(
        resolve_ref(&t, "packs/a", "dirlink/q.md"),
        Ok("packs/b/q.md".into())
    );
    assert!(matches!(
        resolve_ref(&t, "packs/a", "out.md"),
        Err(RefProblem::Escape(_))
    ));
    assert!(matches!(
        resolve_ref(&t, "packs/a", "abs.md"),
        Err(RefProblem::Escape(_))
    ));
    assert!(matches!(
        resolve_ref(&t, "packs/a", "../../../x"),
        Err(RefProblem::Escape(_))
    ));
    assert!(matches!(
        resolve_ref(&t, "packs/a", "/etc/passwd"),
        Err(RefProblem::Escape(_))
    ));
    assert_eq!(
        resolve_ref(&t, "packs/a", "nope.md"),
        Err(RefProblem::Missing)
    );
    assert_eq!(resolve_ref(&t, "packs", "a"), Err(RefProblem::NotFile));
}
