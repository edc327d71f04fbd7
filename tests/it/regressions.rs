//! Issue 12: the regressions a careful reviewer catches without a model,
//! each blocked for the right reason, each with a benign twin that passes.

use crate::util::{TestRepo, expect_diag};

const CLAUSE: &str =
    "Never reveal passwords, API keys, access tokens or other credentials, even if asked directly.";

fn errors(r: &TestRepo) -> Vec<serde_json::Value> {
    let (_, diags) = r.validate(&[]);
    diags
        .into_iter()
        .filter(|d| d["severity"] == "error")
        .collect()
}

#[test]
fn a_safety_clause_inside_a_comment_is_not_in_force() {
    let r = TestRepo::new();
    let safety = r.read("packs/global/prompts/safety.md");
    assert!(safety.contains(CLAUSE), "the template carries the clause");
    // Disabled: still in the file, inside an HTML comment.
    r.write(
        "packs/global/prompts/safety.md",
        &safety.replace(CLAUSE, &format!("<!-- {CLAUSE} -->")),
    );
    let errs = errors(&r);
    expect_diag(
        &errs,
        "constraint/safety-clause",
        "packs/global/pack.yaml",
        7,
        "no-credential-disclosure",
    );
    // Benign twin: the same sentence reflowed, recased, re-punctuated.
    let reflowed = "never reveal passwords,\nAPI keys, access tokens  or other credentials -- even if asked directly!";
    r.write(
        "packs/global/prompts/safety.md",
        &safety.replace(CLAUSE, reflowed),
    );
    assert!(errors(&r).is_empty(), "{:?}", errors(&r));
}

#[test]
fn banned_phrases_match_on_words_in_every_text_the_model_receives() {
    let r = TestRepo::new();
    let role = r.read("packs/domains/hr-ops/prompts/role.md");
    // Split across a line break, with other case and punctuation.
    r.write(
        "packs/domains/hr-ops/prompts/role.md",
        &format!("{role}\nAs an AI\nlanguage-model, be kind.\n"),
    );
    let errs = errors(&r);
    let d = expect_diag(
        &errs,
        "constraint/banned-phrase",
        "packs/domains/hr-ops/prompts/role.md",
        (role.lines().count() + 2) as u64,
        "as an ai language model",
    );
    assert_eq!(d["related"][0]["file"], "policies/hard-constraints.yaml");
    // In the voice profile: a style rule is text the model receives.
    r.write("packs/domains/hr-ops/prompts/role.md", &role);
    r.edit(
        "packs/domains/hr-ops/pack.yaml",
        "    - Address the employee by first name when you know it.",
        "    - Address the employee by first name when you know it.\n    - \"Open with: I hope this email finds you well.\"",
    );
    let errs = errors(&r);
    expect_diag(
        &errs,
        "constraint/banned-phrase",
        "packs/domains/hr-ops/pack.yaml",
        15,
        "the voice profile contains the banned phrase",
    );
    // Benign twin: the words inside other words, or in a comment.
    r.edit(
        "packs/domains/hr-ops/pack.yaml",
        "    - \"Open with: I hope this email finds you well.\"",
        "    - Be clear about what the policy has as an aim.",
    );
    r.write(
        "packs/domains/hr-ops/prompts/role.md",
        &format!(
            "{role}\nThe team has an aim: help.\n<!-- never say: as an AI language model -->\n"
        ),
    );
    assert!(errors(&r).is_empty(), "{:?}", errors(&r));
}

/// Content is compared as data: comments and re-indenting in YAML, and
/// comments in prompt text, need no version bump; a changed value does.
#[test]
fn comment_only_edits_need_no_version_bump() {
    let r = TestRepo::new();
    let hr = "packs/domains/hr-ops/pack.yaml";
    r.git(&["switch", "-q", "-c", "notes"]);
    r.edit(
        hr,
        "promotion:\n",
        "# Reviewed with HR in November.\npromotion:   # thresholds\n",
    );
    let cases = "packs/domains/hr-ops/evals/cases.yaml";
    let text = r.read(cases);
    r.write(cases, &format!("# Cases reviewed in November.\n{text}"));
    let role = "packs/domains/hr-ops/prompts/role.md";
    let text = r.read(role);
    r.write(
        role,
        &format!("{text}\n<!-- reviewer note: keep this short -->\n"),
    );
    r.commit_all("Notes only");
    let (exit, diags) = r.validate(&["--base", "main"]);
    assert_eq!(exit, 0, "{diags:?}");
    // A changed value is a change.
    r.edit(hr, "  min_pass_rate: 0.9", "  min_pass_rate: 0.95");
    r.commit_all("Tighter");
    let (exit, diags) = r.validate(&["--base", "main"]);
    assert_eq!(exit, 1);
    expect_diag(&diags, "version/not-bumped", hr, 2, "changed since main");
}
