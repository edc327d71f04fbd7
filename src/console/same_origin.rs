//! Login CSRF: whether a token sign-in was posted from another site (a
//! page elsewhere posting its own token, to sign the browser in as it).

use axum::http::{HeaderMap, header};

/// Why a token sign-in posted with `headers` came from another site (login
/// CSRF: a page elsewhere posting its own token to sign this browser in as
/// it), or None. Refused: `Sec-Fetch-Site: cross-site`, or an `Origin`
/// other than this console's own: the scheme (https when the request came
/// through a proxy that sets `X-Forwarded-Proto: https`, else http) and
/// the `Host` (or a proxy's `X-Forwarded-Host`), default ports aside.
/// `Origin: null` is what a browser sends for the console's own form (its
/// pages say `Referrer-Policy: no-referrer`, under which a POST's origin
/// is withheld), and also what a sandboxed page elsewhere can send: it is
/// accepted only with `Sec-Fetch-Site: same-origin`. A request without
/// either header (an older browser, a script) is not refused for it.
pub(super) fn cross_site(headers: &HeaderMap) -> Option<String> {
    let fetch_site = headers
        .get("sec-fetch-site")
        .map(axum::http::HeaderValue::as_bytes);
    if fetch_site.is_some_and(|v| v.eq_ignore_ascii_case(b"cross-site")) {
        return Some("Sec-Fetch-Site: cross-site".into());
    }
    let given = headers.get(header::ORIGIN)?;
    if given.as_bytes() == b"null" {
        return (!fetch_site.is_some_and(|v| v.eq_ignore_ascii_case(b"same-origin")))
            .then(|| "Origin `null` without Sec-Fetch-Site: same-origin".into());
    }
    let shown: String = String::from_utf8_lossy(given.as_bytes())
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    let scheme = if super::signin::secure(headers).is_empty() {
        "http"
    } else {
        "https"
    };
    let given = given.to_str().ok().and_then(origin);
    let mut ours = [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|h| headers.get(h)?.to_str().ok())
        .filter_map(|h| origin(&format!("{scheme}://{}", h.split(',').next()?.trim())));
    let same = given.is_some_and(|g| ours.any(|o| o == g));
    (!same).then(|| format!("Origin `{shown}`"))
}

/// `scheme://host[:port]` in one form: lower case, the scheme's default
/// port left out; None when it is not an http(s) origin.
fn origin(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let (scheme, host) = s.split_once("://")?;
    let default = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    if host.is_empty() || host.contains(['/', '?', '#', '@']) {
        return None;
    }
    let host = host.strip_suffix(default).unwrap_or(host);
    Some(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn a_sign_in_from_another_origin_is_cross_site() {
        let host = ("host", "console.example:8080");
        for ok in [
            vec![host],
            vec![host, ("origin", "http://console.example:8080")],
            vec![host, ("origin", "HTTP://Console.Example:8080")],
            vec![("host", "c.example"), ("origin", "http://c.example:80")],
            vec![
                ("host", "c.example"),
                ("x-forwarded-proto", "https"),
                ("origin", "https://c.example:443"),
            ],
            vec![
                ("host", "10.0.0.5:8080"),
                ("x-forwarded-host", "c.example, proxy.internal"),
                ("x-forwarded-proto", "https"),
                ("origin", "https://c.example"),
            ],
            vec![host, ("sec-fetch-site", "same-origin")],
            // A browser posting the console's own form under its
            // `Referrer-Policy: no-referrer`.
            vec![host, ("origin", "null"), ("sec-fetch-site", "same-origin")],
        ] {
            assert_eq!(cross_site(&headers(&ok)), None, "{ok:?}");
        }
        for bad in [
            vec![host, ("origin", "https://console.example:8080")],
            vec![host, ("origin", "http://console.example")],
            vec![host, ("origin", "null")],
            vec![host, ("origin", "null"), ("sec-fetch-site", "same-site")],
            vec![host, ("origin", "http://evil.example")],
            vec![host, ("origin", "http://user@console.example:8080")],
            vec![("origin", "http://console.example:8080")],
            vec![host, ("sec-fetch-site", "cross-site")],
        ] {
            assert!(cross_site(&headers(&bad)).is_some(), "{bad:?}");
        }
    }
}
