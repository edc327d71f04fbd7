//! Writes a large, valid, committed pack repository for benchmarks:
//! `cargo run --release --example synth_repo -- --packs 10000 --out DIR`.
//!
//! Shape: 1 global pack, 20 domains, 500 tenants (each running 3 domains), and
//! the rest users spread over the tenants. Prompt sizes follow the template:
//! about 2 KiB per global and domain section, 600 bytes of tenant context and
//! 300 bytes of user preferences. Policies and mission.yaml come from the
//! embedded template so the repository validates clean.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Domains unless `--domains N` says otherwise (a marketplace catalog of
/// 1,000 domain packs: `--domains 1000 --packs 1501`).
const DEFAULT_DOMAINS: usize = 20;
const TENANTS: usize = 500;

fn paragraph(seed: usize, bytes: usize) -> String {
    const WORDS: &[&str] = &[
        "confirm",
        "the",
        "request",
        "before",
        "acting",
        "and",
        "cite",
        "the",
        "policy",
        "section",
        "you",
        "rely",
        "on",
        "escalate",
        "sensitive",
        "matters",
        "to",
        "a",
        "human",
        "owner",
        "keep",
        "answers",
        "short",
        "with",
        "clear",
        "next",
        "steps",
        "for",
        "the",
        "customer",
        "record",
        "every",
        "decision",
        "in",
        "the",
        "ticket",
        "with",
        "timestamps",
        "in",
        "UTC",
    ];
    let mut s = String::new();
    let mut i = seed;
    while s.len() < bytes {
        s.push_str(WORDS[i % WORDS.len()]);
        i = i.wrapping_mul(31).wrapping_add(7);
        s.push(if s.len() % 97 < 8 { '\n' } else { ' ' });
    }
    s.push('\n');
    s
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("create directory");
    }
    std::fs::write(p, content).expect("write file");
}

fn main() {
    let mut packs = 10_000usize;
    let mut domain_count = DEFAULT_DOMAINS;
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--packs" => packs = args.next().and_then(|v| v.parse().ok()).expect("--packs N"),
            "--domains" => {
                domain_count = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--domains N");
            }
            "--out" => out = args.next().map(PathBuf::from),
            other => panic!(
                "unknown argument {other}; usage: synth_repo --packs N [--domains N] --out DIR"
            ),
        }
    }
    let out = out.expect("--out DIR is required");
    assert!(
        packs >= 1 + domain_count + TENANTS,
        "--packs must be at least {}",
        1 + domain_count + TENANTS
    );
    if out.exists() {
        std::fs::remove_dir_all(&out).expect("clear output directory");
    }
    std::fs::create_dir_all(&out).expect("create output directory");

    // Policies, mission and the global pack from the embedded template.
    for (rel, bytes) in missionctl::template::files() {
        let rel = rel.to_string_lossy().replace('\\', "/");
        if rel.starts_with("packs/") && !rel.starts_with("packs/global/") {
            continue;
        }
        write(
            &out,
            &rel,
            std::str::from_utf8(bytes).expect("template is UTF-8"),
        );
    }
    let allow = "[hris.lookup_employee, hris.policy_search, ticket.create, ticket.update, calendar.read, email.draft, docs.search, docs.read]";
    let mut cases = String::new();
    for (n, tag) in [
        "safety", "format", "quality", "voice", "safety", "format", "quality", "quality",
    ]
    .iter()
    .enumerate()
    {
        let _ = write!(
            cases,
            "- id: case-{n}\n  description: Synthetic case {n}\n  vars:\n    input: \"Question {n} about the policy on leave and tickets\"\n  assert:\n    - {{ type: not-icontains, value: \"password:\", tag: {tag} }}\n    - {{ type: max-length, value: 2000, tag: format }}\n"
        );
    }
    let domains: Vec<String> = (0..domain_count)
        .map(|d| format!("domain-{d:02}"))
        .collect();
    for (d, name) in domains.iter().enumerate() {
        let base = format!("packs/domains/{name}");
        write(
            &out,
            &format!("{base}/prompts/role.md"),
            &format!("## Role for {name}\n\n{}", paragraph(d, 2048)),
        );
        write(
            &out,
            &format!("{base}/prompts/procedures.md"),
            &format!("## Procedures\n\n{}", paragraph(d + 100, 2048)),
        );
        write(&out, &format!("{base}/evals/cases.yaml"), &cases);
        write(
            &out,
            &format!("{base}/pack.yaml"),
            &format!(
                "id: {name}-pack\nversion: 1.0.0\nscope: {{ type: domain, id: {name} }}\ndescription: Synthetic domain {d}\nprompt:\n  sections:\n    - id: {name}-role\n      file: prompts/role.md\n    - id: {name}-procedures\n      file: prompts/procedures.md\nvoice:\n  tone: [precise]\n  style_rules: [\"Cite the policy section.\"]\n  max_sentence_words: 30\ntools:\n  autonomy: A2\n  allow: {allow}\neval:\n  rubric:\n    version: 1\n    criteria:\n      - id: accuracy\n        kind: task\n        weight: 0.6\n        description: Answers correctly from the cited policy.\n  contracts:\n    answer:\n      schema: {{ type: object, required: [answer] }}\n  cases:\n    - evals/cases.yaml\nkpis:\n  success_rate: {{ min: 0.95 }}\npromotion:\n  min_pass_rate: 0.9\n  canary:\n    steps: [5, 25, 100]\n    min_runs_per_arm: 200\nrollback:\n  max_success_rate_drop: 0.03\n"
            ),
        );
    }
    for t in 0..TENANTS {
        let name = format!("tenant-{t:03}");
        let ds: Vec<&str> = (0..3)
            .map(|k| domains[(t + k * 7) % domain_count].as_str())
            .collect();
        let base = format!("packs/tenants/{name}");
        write(
            &out,
            &format!("{base}/context.md"),
            &format!("## {name} context\n\n{}", paragraph(t + 1000, 600)),
        );
        write(
            &out,
            &format!("{base}/pack.yaml"),
            &format!(
                "id: {name}\nversion: 1.0.0\nscope: {{ type: tenant, id: {name} }}\ntier: {}\ndomains: [{}]\nprompt:\n  sections:\n    - id: {name}-context\n      file: context.md\nvoice:\n  style_rules: [\"Refer to the company as {name}.\"]\nkpis:\n  success_rate: {{ min: 0.96 }}\n",
                if t % 2 == 0 { "team" } else { "enterprise" },
                ds.join(", ")
            ),
        );
    }
    let users = packs - 1 - domain_count - TENANTS;
    for u in 0..users {
        let tenant = format!("tenant-{:03}", u % TENANTS);
        let name = format!("user-{u:05}");
        let base = format!("packs/tenants/{tenant}/users/{name}");
        write(
            &out,
            &format!("{base}/preferences.md"),
            &format!("## Working with {name}\n\n{}", paragraph(u + 5000, 300)),
        );
        write(
            &out,
            &format!("{base}/pack.yaml"),
            &format!(
                "id: {tenant}-{name}\nversion: 1.0.0\nscope: {{ type: user, id: {name} }}\nprompt:\n  sections:\n    - id: {name}-prefs\n      file: preferences.md\nvoice:\n  style_rules: [\"Bullet points, risks first.\"]\ntools:\n  allow: [hris.policy_search, ticket.create, calendar.read, docs.search]\n"
            ),
        );
    }
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .current_dir(&out)
            .args(args)
            .env("GIT_AUTHOR_NAME", "synth")
            .env("GIT_AUTHOR_EMAIL", "synth@localhost")
            .env("GIT_COMMITTER_NAME", "synth")
            .env("GIT_COMMITTER_EMAIL", "synth@localhost")
            .status()
            .expect("git runs")
            .success();
        assert!(ok, "git {args:?} failed");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&[
        "-c",
        "gc.auto=0",
        "commit",
        "-q",
        "-m",
        "Synthetic pack repository",
    ]);
    git(&["gc", "-q"]);
    println!(
        "wrote {packs} packs (1 global, {domain_count} domains, {TENANTS} tenants, {users} users) to {}",
        out.display()
    );
}
