//! Property tests: the parsers that take untrusted input never panic, on
//! mutations of real files and on arbitrary text, and everything they report
//! renders (human, JSON lines, GitHub commands). Case counts are bounded so
//! the suite stays fast; `PROPTEST_CASES=100000 cargo test --lib fuzz` runs
//! a longer campaign.

use std::collections::HashMap;

use proptest::prelude::*;

use crate::diagnostic::render;
use crate::schema::Kind;
use crate::telemetry::{TenantScope, parse_batch};

const PACK: &str = include_str!("../../packs-template/packs/tenants/globex/pack.yaml");
const FILE: &str = "packs/tenants/globex/pack.yaml";
const ROW: &str = r#"{"run_id":"r1","tenant_id":"acme","user_id":"u","agent_id":"a","pack_id":"acme-tenant","pack_version":"1.0.0+sha256.abcd1234","task_type":"qa","latency_ms":120,"cost_usd":0.001,"success_bool":true,"error_code":null,"created_at":"2026-11-26T10:00:00Z"}"#;

/// Text a hostile or careless author might write: wide characters,
/// combining marks, emoji, control characters, YAML syntax.
fn nasty() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("🚀".to_string()),
            Just("漢字".to_string()),
            Just("e\u{301}\u{301}".to_string()),
            Just("\u{0}".to_string()),
            Just("\t".to_string()),
            Just("\r\n".to_string()),
            Just("\n  ".to_string()),
            Just(": ".to_string()),
            Just("- ".to_string()),
            Just("&a *a ".to_string()),
            Just("{[".to_string()),
            Just("]}".to_string()),
            Just("\"".to_string()),
            Just("'".to_string()),
            Just("#".to_string()),
            Just("!!binary ".to_string()),
            Just("<<: ".to_string()),
            "[a-z0-9._-]{1,12}",
            any::<char>().prop_map(String::from),
        ],
        0..24,
    )
    .prop_map(|v| v.concat())
}

/// `base` with `insert` put at the char boundary nearest `at` (a fraction),
/// after removing up to `cut` characters there.
fn mutate(base: &str, at: f64, cut: usize, insert: &str) -> String {
    let chars: Vec<char> = base.chars().collect();
    let i = ((chars.len() as f64) * at) as usize;
    let i = i.min(chars.len());
    let j = (i + cut).min(chars.len());
    let mut s: String = chars[..i].iter().collect();
    s.push_str(insert);
    s.extend(&chars[j..]);
    s
}

/// Parse, check and render one pack file: everything `validate` does to a
/// single file's text.
fn check_pack_text(text: &str) {
    let mut diags = Vec::new();
    if let Some((node, json)) = super::parse_checked(Kind::Pack, FILE, text, &mut diags) {
        let _ = super::typed::<super::Pack>(FILE, &node, json, &mut diags);
    }
    let mut sources = HashMap::new();
    sources.insert(FILE.to_string(), text.to_string());
    let _ = render::human(&diags, &sources, false);
    let _ = render::human(&diags, &sources, true);
    let _ = render::json_lines(&diags);
    let _ = render::github(&diags);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(384),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_mutated_pack_file_never_panics(at in 0.0f64..1.0, cut in 0usize..40, insert in nasty()) {
        check_pack_text(&mutate(PACK, at, cut, &insert));
    }

    #[test]
    fn arbitrary_text_as_a_pack_file_never_panics(text in nasty()) {
        check_pack_text(&text);
    }

    #[test]
    fn a_mutated_telemetry_batch_never_panics(
        at in 0.0f64..1.0,
        cut in 0usize..30,
        insert in nasty(),
        copies in 1usize..4,
        array in any::<bool>(),
    ) {
        let row = mutate(ROW, at, cut, &insert);
        let body = if array {
            format!("[{}]", vec![row; copies].join(","))
        } else {
            vec![row; copies].join("\n")
        };
        if let Ok(parsed) = parse_batch(&body, &TenantScope(Some("acme".into())), &|_| Ok(Vec::new())) {
            // Every item is accounted for, once.
            prop_assert!(parsed.rows.len() + parsed.errors.len() <= copies.max(body.lines().count()));
            prop_assert_eq!(parsed.rows.len(), parsed.lines.len());
        }
    }

    #[test]
    fn arbitrary_text_as_a_telemetry_batch_never_panics(text in nasty()) {
        let _ = parse_batch(&text, &TenantScope(None), &|_| Ok(Vec::new()));
    }
}
