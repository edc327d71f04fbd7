use super::*;
use serde_json::json;

#[test]
fn numbers_and_json_as_javascript() {
    let n = |v: Json| string_of(&v);
    assert_eq!(n(json!(1e21)), "1e+21");
    assert_eq!(n(json!(1e-7)), "1e-7");
    assert_eq!(n(json!(0.1)), "0.1");
    assert_eq!(n(json!(-0.0)), "0");
    assert_eq!(n(json!(9_007_199_254_740_993_u64)), "9007199254740992");
    assert_eq!(to_number(&json!(" 2 ")), 2.0);
    assert_eq!(to_number(&json!("0x10")), 16.0);
    assert!(to_number(&json!("nan")).is_nan());
    assert!(to_number(&json!("inf")).is_nan());
    assert!(less_or_equal(&json!("10"), &json!("9")));
    assert!(!less_or_equal(&json!(10), &json!("9")));
    assert_eq!(replacement("a$&b", "x{{y}}z", 1, 6), "a{{y}}b");
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    assert!(json_parse(&deep).is_some());
    assert!(json_parse("1e400").is_some());
    assert!(json_parse(r#""\ud800""#).is_some());
    assert_eq!(json_parse(r#"{"a":1,"a":2}"#), Some(json!({"a": 2})));
    assert!(json_parse("\u{a0}{}").is_none());
    assert!(json_parse("01").is_none());
    assert!(!deep_equal(
        &json!({"a": 0}),
        &json_parse(r#"{"a":-0}"#).expect("json")
    ));
}

#[test]
fn regex_over_utf16_code_units() {
    let t = |p: &str, s: &str| regex_test(&regex(p).expect("valid"), s);
    assert!(!t("^.{1,5}$", "😀😀😀"));
    assert!(!t("^.$", "😀"));
    assert!(t("^..$", "😀"));
    assert!(t("\\uD83D", "😀"));
    assert!(t("^😀$", "😀"));
    assert!(!t("^[😀]$", "😀"));
    assert!(!t("^\\u{41}$", "A"));
    assert!(t("^\\u{41}$", &"u".repeat(41)));
}

#[test]
fn comma_lists_follow_promptfoo() {
    assert_eq!(comma_separated("a, b ,c").expect("ok"), ["a", "b", "c"]);
    assert_eq!(comma_separated(r#""x, y", z"#).expect("ok"), ["x, y", "z"]);
    assert_eq!(
        comma_separated(r#""say ""hi""""#).expect("ok"),
        [r#"say "hi""#]
    );
    assert_eq!(comma_separated(",,a,,").expect("ok"), ["a"]);
    assert!(comma_separated(r#""open"#).is_none());
}

#[test]
fn javascript_values() {
    assert_eq!(string_of(&json!(5.0)), "5");
    assert_eq!(string_of(&json!(0.5)), "0.5");
    assert_eq!(string_of(&json!([1, "a", null])), "1,a,");
    assert!(deep_equal(
        &json!({"a": 1, "b": [1.0]}),
        &json!({"b": [1], "a": 1.0})
    ));
    assert!(!deep_equal(&json!({"a": 1}), &json!({"a": "1"})));
    assert_eq!(trim("\u{feff} x \u{85}"), "x \u{85}");
    assert_eq!(word_count("  one two\nthree "), 3);
    assert_eq!(levenshtein("😀", "a"), 2);
    assert_eq!(
        slash_comments_to_hash(r#"{"u": "http://x"} // c"#),
        r#"{"u": "http://x"} # c"#
    );
}
