use super::*;
use crate::git::Tree;

/// The template repository with `max_prompt_tokens` set to `ceiling`.
fn template(ceiling: u64) -> Repo {
    let dir = tempfile::tempdir().expect("tempdir");
    for (rel, bytes) in crate::template::files() {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
    }
    let hard = dir.path().join("policies/hard-constraints.yaml");
    let text = std::fs::read_to_string(&hard).expect("read");
    assert!(text.contains("max_prompt_tokens: 6000"));
    let text = text.replace(
        "max_prompt_tokens: 6000",
        &format!("max_prompt_tokens: {ceiling}"),
    );
    std::fs::write(&hard, text).expect("write");
    crate::pack::load(&Tree::work_tree(dir.path()).expect("tree"))
}

fn counted(repo: &Repo) -> usize {
    repo.packs
        .iter()
        .flat_map(|p| &p.sections)
        .filter(|s| s.counted.get().is_some())
        .count()
}

/// Issue 30: a chain whose prompt bytes are under the ceiling is under
/// it in tokens, and nothing is tokenized; near the ceiling the exact
/// count decides, and is taken once per section.
#[test]
fn token_ceiling_tokenizes_only_near_it() {
    let far = template(1_000_000);
    let mut out = Vec::new();
    check_chains(&far, &mut out);
    assert!(out.iter().all(|d| d.code != Code::PromptTokens), "{out:?}");
    assert_eq!(counted(&far), 0);

    // Just under the largest chain's bytes: that chain is over in bytes
    // but not in tokens (English is about 4 bytes a token).
    let bytes = resolve::all_chains(&far)
        .iter()
        .filter_map(|k| resolve::chain(&far, k).ok())
        .map(|idx| {
            idx.iter()
                .map(|&i| far.packs[i].prompt_tokens_upper_bound())
                .sum::<u64>()
        })
        .max()
        .expect("chains");
    let near = template(bytes - 1);
    let mut out = Vec::new();
    check_chains(&near, &mut out);
    assert!(out.iter().all(|d| d.code != Code::PromptTokens), "{out:?}");
    assert!(counted(&near) > 0);
    for s in near.packs.iter().flat_map(|p| &p.sections) {
        if let Some(&n) = s.counted.get() {
            assert_eq!(n, crate::tokens::count(&s.text, s.family));
            // Once counted, the bound is the exact figure.
            assert_eq!(s.tokens_upper_bound(), n);
            assert!(n < crate::tokens::upper_bound(&s.text));
        }
    }

    let over = template(500);
    let mut out = Vec::new();
    check_chains(&over, &mut out);
    assert!(
        out.iter()
            .any(|d| d.code == Code::PromptTokens && d.message.contains("over the ceiling of 500")),
        "{out:?}"
    );
}
