//! Malformed repositories: each must exit 1 with the exact file, line, code
//! and message, and never panic.

use crate::util::{TestRepo, expect_diag};

const HR: &str = "packs/domains/hr-ops/pack.yaml";

/// A small valid hr-ops pack whose line numbers the cases below rely on.
fn hr_pack(version: &str, extra_tools: &str, section_file: &str) -> String {
    format!(
        "id: hr-ops-pack\n\
         version: {version}\n\
         scope: {{ type: domain, id: hr-ops }}\n\
         prompt:\n  \
           sections:\n    \
             - id: hr-role\n      \
               file: {section_file}\n\
         tools:\n  \
           autonomy: A2\n  \
           allow: [hris.lookup_employee, ticket.create{extra_tools}]\n"
    )
}

macro_rules! bad {
    ($name:ident, |$r:ident| $setup:block, $code:expr, $file:expr, $line:expr, $msg:expr) => {
        #[test]
        fn $name() {
            let $r = TestRepo::new();
            $setup
            let (exit, diags) = $r.validate(&[]);
            let d = expect_diag(&diags, $code, $file, $line, $msg);
            assert_eq!(exit, 1, "invalid repositories exit 1: {d}");
        }
    };
}

bad!(
    yaml_syntax_unclosed_flow,
    |r| {
        r.write(
            HR,
            "id: hr-ops-pack\nversion: 1.0.0\nscope: { type: domain, id: hr-ops\nprompt: {}\n",
        );
    },
    "yaml/syntax",
    HR,
    4,
    ""
);

bad!(
    yaml_duplicate_key,
    |r| {
        r.write(
            HR,
            "id: hr-ops-pack\nversion: 1.0.0\nid: again\nscope: { type: domain, id: hr-ops }\n",
        );
    },
    "yaml/syntax",
    HR,
    3,
    "duplicate"
);

bad!(
    yaml_bad_indentation,
    |r| {
        r.write(
            HR,
            "id: hr-ops-pack\nversion: 1.0.0\nscope:\n  type: domain\n id: hr-ops\n",
        );
    },
    "yaml/syntax",
    HR,
    5,
    ""
);

bad!(
    yaml_alias_bomb,
    |r| {
        let mut s = String::from(
            "id: hr-ops-pack\nversion: 1.0.0\nscope: { type: domain, id: hr-ops }\nx0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
        );
        for i in 1..10 {
            let p = i - 1;
            s.push_str(&format!("x{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        r.write(HR, &s);
    },
    "yaml/budget",
    HR,
    8,
    "alias replay limit exceeded"
);

bad!(
    version_wrong_type,
    |r| {
        r.write(HR, &hr_pack("1", "", "prompts/role.md"));
    },
    "schema/type",
    HR,
    2,
    "version must be a string, found a number"
);

bad!(
    version_not_semver,
    |r| {
        r.write(HR, &hr_pack("v1.0", "", "prompts/role.md"));
    },
    "schema/pattern",
    HR,
    2,
    "is not a semantic version"
);

bad!(
    unknown_top_level_key,
    |r| {
        r.write(
            HR,
            &format!(
                "{}descripton: HR\n",
                hr_pack("1.0.0", "", "prompts/role.md")
            ),
        );
    },
    "schema/unknown-key",
    HR,
    11,
    "unknown field `descripton`"
);

bad!(
    unknown_nested_key_suggests,
    |r| {
        r.edit(HR, "  allow:\n", "  alow:\n");
    },
    "schema/unknown-key",
    HR,
    21,
    "unknown field `alow` in tools"
);

bad!(
    missing_required_id,
    |r| {
        r.write(HR, "version: 1.0.0\nscope: { type: domain, id: hr-ops }\n");
    },
    "schema/required",
    HR,
    1,
    "missing required field `id`"
);

bad!(
    autonomy_not_a_level,
    |r| {
        r.edit(HR, "autonomy: A2", "autonomy: A5");
    },
    "schema/enum",
    HR,
    20,
    "must be one of A0, A1, A2, A3"
);

bad!(
    id_bad_pattern,
    |r| {
        r.edit(HR, "id: hr-ops-pack", "id: HR_Ops");
    },
    "schema/pattern",
    HR,
    1,
    "is not an id"
);

bad!(
    tools_allow_wrong_type,
    |r| {
        r.write(HR, "id: hr-ops-pack\nversion: 1.0.0\nscope: { type: domain, id: hr-ops }\ntools:\n  allow: hris.lookup_employee\n");
    },
    "schema/type",
    HR,
    5,
    "tools.allow must be a list"
);

bad!(
    mission_tier_unknown,
    |r| {
        r.edit("mission.yaml", "tier: team", "tier: gold");
    },
    "schema/enum",
    "mission.yaml",
    5,
    "tier must be one of"
);

bad!(
    mission_missing,
    |r| {
        r.remove("mission.yaml");
    },
    "file/missing",
    "mission.yaml",
    0,
    "missing"
);

bad!(
    policy_unknown_key,
    |r| {
        r.edit(
            "policies/guardrails.yaml",
            "max_candidates_per_run: 4",
            "max_candidate_per_run: 4",
        );
    },
    "schema/unknown-key",
    "policies/guardrails.yaml",
    7,
    "unknown field `max_candidate_per_run`"
);

// Issue 24: every mission.yaml key is read by code or refused. GitHub's
// API address and repository come from the workflow's environment
// (GITHUB_API_URL, GITHUB_REPOSITORY), never from the repository's files.
bad!(
    mission_github_api_url_is_refused,
    |r| {
        r.edit(
            "mission.yaml",
            "  check_name: missionctl/gate",
            "  api_url: https://evil.example\n  check_name: missionctl/gate",
        );
    },
    "schema/unknown-key",
    "mission.yaml",
    52,
    "unknown field `api_url`"
);

bad!(
    ref_missing_file,
    |r| {
        r.write(HR, &hr_pack("1.0.0", "", "prompts/nope.md"));
    },
    "ref/missing",
    HR,
    7,
    "`prompts/nope.md` does not exist"
);

bad!(
    ref_escapes_repository,
    |r| {
        r.write(HR, &hr_pack("1.0.0", "", "../../../../../etc/passwd"));
    },
    "ref/escape",
    HR,
    7,
    "leaves the repository"
);

bad!(
    ref_absolute_path,
    |r| {
        r.write(HR, &hr_pack("1.0.0", "", "/etc/passwd"));
    },
    "ref/escape",
    HR,
    7,
    "absolute path"
);

bad!(
    ref_symlink_out_of_repo,
    |r| {
        std::os::unix::fs::symlink(
            "/etc/hostname",
            r.path().join("packs/domains/hr-ops/prompts/link.md"),
        )
        .expect("symlink");
        r.write(HR, &hr_pack("1.0.0", "", "prompts/link.md"));
    },
    "ref/escape",
    HR,
    7,
    "symlink to the absolute path"
);

bad!(
    ref_relative_symlink_climbs_out,
    |r| {
        std::os::unix::fs::symlink(
            "../../../../../../outside.md",
            r.path().join("packs/domains/hr-ops/prompts/up.md"),
        )
        .expect("symlink");
        r.write(HR, &hr_pack("1.0.0", "", "prompts/up.md"));
    },
    "ref/escape",
    HR,
    7,
    "points outside the repository"
);

bad!(
    ref_is_directory,
    |r| {
        r.write(HR, &hr_pack("1.0.0", "", "prompts"));
    },
    "ref/not-file",
    HR,
    7,
    "is a directory"
);

bad!(
    prompt_file_50mb,
    |r| {
        r.write_bytes(
            "packs/domains/hr-ops/prompts/role.md",
            &vec![b'a'; 50 * 1024 * 1024],
        );
    },
    "file/too-large",
    HR,
    8,
    "52428800 bytes"
);

bad!(
    pack_file_50mb,
    |r| {
        let mut s = hr_pack("1.0.0", "", "prompts/role.md");
        s.push_str("description: \"");
        s.push_str(&"x".repeat(50 * 1024 * 1024));
        s.push_str("\"\n");
        r.write(HR, &s);
    },
    "file/too-large",
    HR,
    1,
    "limit for this kind of file"
);

bad!(
    prompt_not_utf8,
    |r| {
        r.write_bytes(
            "packs/domains/hr-ops/prompts/role.md",
            &[0xff, 0xfe, 0x00, 0x41],
        );
    },
    "file/not-text",
    "packs/domains/hr-ops/prompts/role.md",
    1,
    "not UTF-8"
);

// Issue 10, point 12 (step): a file that is not text is reported at the
// line of its first bad byte.
bad!(
    prompt_not_utf8_on_line_3,
    |r| {
        r.write_bytes(
            "packs/domains/hr-ops/prompts/role.md",
            b"# Role\nfine line\nbad \xff here\n",
        );
    },
    "file/not-text",
    "packs/domains/hr-ops/prompts/role.md",
    3,
    "not UTF-8"
);

bad!(
    tenant_reads_other_tenant,
    |r| {
        r.edit(
            "packs/tenants/acme/pack.yaml",
            "file: context.md",
            "file: ../globex/regulatory.md",
        );
    },
    "isolation/tenant",
    "packs/tenants/acme/pack.yaml",
    10,
    "belongs to tenant `globex`"
);

bad!(
    user_reads_other_user,
    |r| {
        r.edit(
            "packs/tenants/acme/users/bob/pack.yaml",
            "file: preferences.md",
            "file: ../alice/preferences.md",
        );
    },
    "isolation/user",
    "packs/tenants/acme/users/bob/pack.yaml",
    8,
    "belongs to user `alice` of tenant `acme`"
);

bad!(
    domain_reads_tenant_data,
    |r| {
        r.write(HR, &hr_pack("1.0.0", "", "../../tenants/acme/context.md"));
    },
    "isolation/tenant",
    HR,
    7,
    "belongs to tenant `acme`"
);

bad!(
    personal_user_reads_tenant_user,
    |r| {
        r.edit(
            "packs/users/sam/pack.yaml",
            "file: preferences.md",
            "file: ../../tenants/globex/users/carol/preferences.md",
        );
    },
    "isolation/tenant",
    "packs/users/sam/pack.yaml",
    10,
    "belongs to user `carol` of tenant `globex`"
);

bad!(
    forbidden_tool_names_policy_line,
    |r| {
        r.write(HR, &hr_pack("1.0.0", ", shell.exec", "prompts/role.md"));
    },
    "constraint/forbidden-tool",
    HR,
    10,
    "`shell.exec` is forbidden"
);

bad!(
    tool_not_in_parent_profile,
    |r| {
        r.write(HR, &hr_pack("1.0.0", ", rocket.launch", "prompts/role.md"));
    },
    "tools/not-narrowing",
    HR,
    10,
    "`rocket.launch` is not allowed by the global scope"
);

bad!(
    user_raises_autonomy,
    |r| {
        r.edit(
            "packs/tenants/acme/users/bob/pack.yaml",
            "autonomy: A1",
            "autonomy: A3",
        );
    },
    "tools/autonomy-escalation",
    "packs/tenants/acme/users/bob/pack.yaml",
    10,
    "above the parent's A2"
);

bad!(
    autonomy_over_global_ceiling,
    |r| {
        r.edit(
            "policies/hard-constraints.yaml",
            "max_autonomy: A3",
            "max_autonomy: A2",
        );
    },
    "constraint/autonomy-ceiling",
    "packs/global/pack.yaml",
    26,
    "exceeds the global ceiling A2"
);

bad!(
    tier_ceiling_team_runs_a3,
    |r| {
        r.edit(
            "packs/tenants/acme/pack.yaml",
            "tools:\n  autonomy: A2\n",
            "",
        );
    },
    "constraint/autonomy-ceiling",
    "packs/tenants/acme/pack.yaml",
    5,
    "team tier, whose ceiling is A2"
);

bad!(
    safety_clause_removed,
    |r| {
        r.edit("packs/global/prompts/safety.md", "Never reveal passwords, API keys, access tokens or other credentials, even if asked directly.\n", "");
    },
    "constraint/safety-clause",
    "packs/global/pack.yaml",
    7,
    "`no-credential-disclosure`"
);

bad!(
    banned_phrase_in_prompt,
    |r| {
        r.write(
            "packs/domains/hr-ops/prompts/role.md",
            "## Role\n\nBe helpful.\nAs an AI language model, you answer HR questions.\n",
        );
    },
    "constraint/banned-phrase",
    "packs/domains/hr-ops/prompts/role.md",
    4,
    "as an ai language model"
);

bad!(
    prompt_over_token_ceiling,
    |r| {
        r.edit(
            "policies/hard-constraints.yaml",
            "max_prompt_tokens: 6000",
            "max_prompt_tokens: 500",
        );
    },
    "constraint/prompt-tokens",
    "packs/domains/hr-ops/pack.yaml",
    5,
    "over the ceiling of 500"
);

bad!(
    section_shadows_parent,
    |r| {
        r.edit(
            "packs/tenants/acme/pack.yaml",
            "- id: acme-context",
            "- id: safety",
        );
    },
    "prompt/section-shadow",
    "packs/tenants/acme/pack.yaml",
    9,
    "`safety` is already defined by the global scope"
);

bad!(
    duplicate_pack_id,
    |r| {
        r.edit(
            "packs/tenants/globex/users/carol/pack.yaml",
            "id: globex-carol",
            "id: acme-alice",
        );
    },
    "id/duplicate",
    "packs/tenants/globex/users/carol/pack.yaml",
    1,
    "pack id `acme-alice` is already used"
);

bad!(
    scope_disagrees_with_path,
    |r| {
        r.edit(
            HR,
            "scope: { type: domain, id: hr-ops }",
            "scope: { type: domain, id: hr }",
        );
    },
    "scope/path-mismatch",
    HR,
    3,
    "declares scope domain `hr`"
);

bad!(
    tenant_unknown_domain,
    |r| {
        r.edit(
            "packs/tenants/acme/pack.yaml",
            "domains: [hr-ops,",
            "domains: [hr-opz,",
        );
    },
    "scope/unknown-parent",
    "packs/tenants/acme/pack.yaml",
    6,
    "unknown domain `hr-opz`"
);

bad!(
    user_of_missing_tenant,
    |r| {
        r.write(
            "packs/tenants/initech/users/dave/pack.yaml",
            "id: initech-dave\nversion: 1.0.0\nscope: { type: user, id: dave }\n",
        );
    },
    "scope/unknown-parent",
    "packs/tenants/initech/users/dave/pack.yaml",
    3,
    "no packs/tenants/initech/pack.yaml"
);

bad!(
    pack_in_place_without_scope,
    |r| {
        r.write(
            "packs/misc/pack.yaml",
            "id: misc\nversion: 1.0.0\nscope: { type: domain, id: misc }\n",
        );
    },
    "scope/path-mismatch",
    "packs/misc/pack.yaml",
    3,
    "no scope"
);

bad!(
    eval_case_vars_without_a_template,
    |r| {
        r.write(
            "packs/domains/hr-ops/evals/cases.yaml",
            "- id: one\n  vars: { question: q, context: c }\n  assert:\n    - { type: contains, value: x }\n",
        );
    },
    "eval/case",
    "packs/domains/hr-ops/evals/cases.yaml",
    1,
    "set `eval.user_template`"
);

bad!(
    eval_unknown_assertion_type,
    |r| {
        r.write("packs/domains/hr-ops/evals/cases.yaml", "- id: one\n  vars: { input: hi }\n  assert:\n    - { type: javascript, value: 'output.length > 1' }\n");
    },
    "eval/unsupported",
    "packs/domains/hr-ops/evals/cases.yaml",
    4,
    "assertion type `javascript` is not supported"
);

bad!(
    eval_unknown_contract,
    |r| {
        r.write("packs/domains/hr-ops/evals/cases.yaml", "- id: one\n  vars: { input: hi }\n  assert:\n    - { type: is-json, value: 'contract:nope', tag: format }\n");
    },
    "eval/case",
    "packs/domains/hr-ops/evals/cases.yaml",
    1,
    "contract `nope`"
);

bad!(
    eval_duplicate_case_ids,
    |r| {
        r.write(
            "packs/domains/hr-ops/evals/cases.yaml",
            "- id: one\n  vars: { input: hi }\n- id: one\n  vars: { input: again }\n",
        );
    },
    "id/duplicate",
    "packs/domains/hr-ops/evals/cases.yaml",
    3,
    "eval case id `one`"
);

#[test]
fn version_not_bumped_against_base() {
    let r = TestRepo::new();
    r.git(&["switch", "-q", "-c", "change"]);
    r.edit(
        "packs/domains/hr-ops/prompts/role.md",
        "You help employees",
        "You help staff",
    );
    r.commit_all("Reword HR role");
    let (exit, diags) = r.validate(&["--base", "main"]);
    expect_diag(
        &diags,
        "version/not-bumped",
        HR,
        2,
        "changed since main but its version 1.0.0 is not higher than 1.0.0",
    );
    assert_eq!(exit, 1);
    // Bumping fixes it.
    r.edit(HR, "version: 1.0.0", "version: 1.0.1");
    let (exit, diags) = r.validate(&["--base", "main"]);
    assert_eq!(exit, 0, "{diags:?}");
}

#[test]
fn every_error_renders_in_all_formats_without_panic() {
    let r = TestRepo::new();
    r.write(HR, &hr_pack("1", ", shell.exec", "../../../../x"));
    for fmt in ["human", "json", "github"] {
        let out = r.run(&["validate", "--format", fmt]);
        assert_eq!(out.status.code(), Some(1));
        let stdout = String::from_utf8_lossy(&out.stdout);
        match fmt {
            "github" => assert!(
                stdout.contains(
                    "::error file=packs/domains/hr-ops/pack.yaml,line=2,col=10,title=schema/type::"
                ),
                "{stdout}"
            ),
            "human" => {
                assert!(
                    stdout.contains(
                        "packs/domains/hr-ops/pack.yaml:2:10: schema/type: version must be a string"
                    ),
                    "{stdout}"
                );
                assert!(stdout.contains("^"), "caret snippet: {stdout}");
            }
            _ => {}
        }
    }
}

/// Issue 10 point 5: a tenant directory that is a symlink out of the
/// repository is refused by `validate` (work tree and `--rev`), and
/// `resolve` refuses the chain instead of reading the outside `pack.yaml`.
#[test]
fn symlinked_tenant_dir_out_of_the_repository_is_refused_everywhere() {
    let outside = tempfile::tempdir().expect("tmp");
    let r = TestRepo::new();
    // A copy of a real tenant outside the repository, linked in.
    let evil = outside.path().join("evil");
    std::fs::create_dir_all(&evil).expect("dir");
    std::fs::write(
        evil.join("pack.yaml"),
        r.read("packs/tenants/globex/pack.yaml")
            .replace("id: globex-tenant", "id: evil-tenant")
            .replace("id: globex }", "id: evil }"),
    )
    .expect("write");
    for f in ["context.md", "regulatory.md"] {
        std::fs::write(evil.join(f), "outside text\n").expect("write");
    }
    std::os::unix::fs::symlink(&evil, r.path().join("packs/tenants/evil")).expect("symlink");
    r.commit_all("link a tenant from outside");
    for rev in [None, Some("HEAD")] {
        let extra: Vec<&str> = rev.map(|h| vec!["--rev", h]).unwrap_or_default();
        let (exit, diags) = r.validate(&extra);
        let d = expect_diag(
            &diags,
            "ref/escape",
            "packs/tenants/evil",
            0,
            "follows symlinks only within the repository",
        );
        assert_eq!(exit, 1, "{d}");
        let mut args = vec!["resolve", "--domain", "hr-ops", "--tenant", "evil"];
        args.extend(&extra);
        let out = r.run(&args);
        assert_ne!(out.status.code(), Some(0), "resolve read the outside pack");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("outside text"),
            "outside content was served"
        );
    }
}

/// Issue 10 point 5: a symlinked directory inside the repository is
/// followed, and `validate` and `resolve` agree on it (work tree and `--rev`).
#[test]
fn symlinked_dir_within_the_repository_is_followed_by_validate_and_resolve() {
    let r = TestRepo::new();
    let real = r.path().join("shared/hr-prompts");
    std::fs::create_dir_all(real.parent().expect("parent")).expect("dir");
    std::fs::rename(r.path().join("packs/domains/hr-ops/prompts"), &real).expect("move");
    std::os::unix::fs::symlink(
        "../../../shared/hr-prompts",
        r.path().join("packs/domains/hr-ops/prompts"),
    )
    .expect("symlink");
    r.commit_all("share the hr prompts through a symlink");
    let role = std::fs::read_dir(&real)
        .expect("prompts")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".md"))
        .map(|e| std::fs::read_to_string(e.path()).expect("read"))
        .expect("a prompt file");
    let line = role
        .lines()
        .find(|l| l.len() > 20)
        .expect("a line")
        .to_string();
    for rev in [None, Some("HEAD")] {
        let extra: Vec<&str> = rev.map(|h| vec!["--rev", h]).unwrap_or_default();
        let (exit, diags) = r.validate(&extra);
        assert_eq!(exit, 0, "{diags:?}");
        let mut args = vec!["resolve", "--domain", "hr-ops", "--tenant", "acme"];
        args.extend(&extra);
        let out = r.run(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&line),
            "the linked prompt is missing from the resolution ({rev:?})"
        );
    }
}

// Issue 10 point 12: a whole-file problem on a file that exists is at its
// first line (GitHub drops annotations on line 0).
bad!(
    pack_file_is_a_symlink,
    |r| {
        r.remove("packs/tenants/globex/pack.yaml");
        std::os::unix::fs::symlink(
            "../acme/pack.yaml",
            r.path().join("packs/tenants/globex/pack.yaml"),
        )
        .expect("symlink");
    },
    "ref/not-file",
    "packs/tenants/globex/pack.yaml",
    1,
    "is not a regular file"
);

/// A JSON schema nested 150 levels deep in an assertion (Ajv takes it) is
/// checked without overflowing a stack: the process answers (hostile pass
/// of issue 29: `validate` aborted with a stack overflow at 120 levels).
#[test]
fn a_deeply_nested_schema_is_checked_without_a_crash() {
    let r = TestRepo::new();
    let mut schema = "{}".to_string();
    for _ in 0..150 {
        schema = format!("{{\"not\": {schema}}}");
    }
    let path = "packs/domains/hr-ops/evals/cases.yaml";
    let mut cases = r.read(path);
    cases.push_str(&format!(
        "- id: deep-schema\n  description: a deep schema\n  vars:\n    input: hello\n  assert:\n    - type: contains-json\n      value: {schema}\n"
    ));
    r.write(path, &cases);
    let (code, _) = r.validate(&[]);
    assert!(code == 0 || code == 1, "validate answered with exit {code}");
}
