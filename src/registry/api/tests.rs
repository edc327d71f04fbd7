use super::RefusalLimiter;
use super::resolve::{accepts_gzip, none_match, query_id};

#[test]
fn unauthenticated_refusals_are_audited_at_a_bounded_rate() {
    let l = RefusalLimiter::default();
    let t0 = std::time::Instant::now();
    let admitted: Vec<Option<u64>> = (0..25).map(|_| l.admit(t0)).collect();
    assert_eq!(admitted.iter().filter(|a| a.is_some()).count(), 10);
    assert!(admitted[10..].iter().all(Option::is_none));
    // A minute on, the first entry names the 15 left out.
    let t1 = t0 + std::time::Duration::from_secs(61);
    assert_eq!(l.admit(t1), Some(15));
    assert_eq!(l.admit(t1), Some(0));
}

#[test]
fn query_ids_refuse_anything_path_like() {
    for ok in [
        "acme",
        "hr-ops",
        "alice",
        "user_1",
        "a.b",
        "sam@example.com",
        "x+y",
        "U2",
    ] {
        assert!(query_id(ok), "{ok}");
    }
    for bad in [
        "",
        "../../globex/users/carol",
        "acme/users",
        "a..b",
        ".hidden",
        "-x",
        "a b",
        "a\\b",
        "tab\t",
        "é",
        &"x".repeat(129),
    ] {
        assert!(!query_id(bad), "{bad:?}");
    }
}

#[test]
fn accept_encoding_follows_rfc_9110() {
    assert!(accepts_gzip("gzip"));
    assert!(accepts_gzip("br, GZIP;q=0.5"));
    assert!(accepts_gzip("deflate, *"));
    assert!(!accepts_gzip("gzip;q=0"));
    assert!(!accepts_gzip("gzip;q=0, *"), "gzip refused by name");
    assert!(!accepts_gzip("identity"));
    assert!(!accepts_gzip(""));
    assert!(!accepts_gzip("gzip;q=bogus"));
}

#[test]
fn if_none_match_follows_rfc_9110() {
    let etag = "\"abc\"";
    assert!(none_match("\"abc\"", etag));
    assert!(none_match("W/\"abc\"", etag), "weak comparison");
    assert!(none_match("\"x\", W/\"abc\"", etag), "a list");
    assert!(none_match("*", etag));
    assert!(!none_match("\"abd\"", etag));
    assert!(!none_match("abc", etag), "an unquoted tag is not the tag");
}

#[test]
fn metrics_count_rollout_routes_under_their_template() {
    use super::route_label;
    assert_eq!(
        route_label("/v1/rollouts/3f8f10c3-globex/hold"),
        "/v1/rollouts/{id}/hold"
    );
    assert_eq!(
        route_label("/v1/rollouts/zzzRANDOMzzz/resume"),
        "/v1/rollouts/{id}/resume"
    );
    assert_eq!(route_label("/v1/rollouts"), "/v1/rollouts");
    assert_eq!(route_label("/v1/resolve"), "/v1/resolve");
}
