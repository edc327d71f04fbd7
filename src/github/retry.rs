//! When to try a GitHub request again, by GitHub's documented rules
//! (docs.github.com, "Rate limits for the REST API"): a `Retry-After` header
//! is obeyed; `x-ratelimit-remaining: 0` means the primary limit, reset at
//! `x-ratelimit-reset` (epoch seconds); a 403 or 429 that names a secondary
//! rate limit without a header waits at least a minute; any other 403 is a
//! permission refusal, final. Server errors are retried with backoff only for
//! requests that are safe to repeat (GET, PATCH, PUT): a POST that failed
//! after GitHub acted on it must not act twice, so its caller decides.
//! Pure: the caller sleeps and counts.

use std::time::Duration;

/// The most a command waits on GitHub in total before giving up.
pub const MAX_TOTAL_WAIT: Duration = Duration::from_secs(300);
/// The most attempts of one request.
pub const MAX_ATTEMPTS: u32 = 6;

/// What came back, as far as retrying is concerned.
#[derive(Debug, Clone, Default)]
pub struct Answer<'a> {
    pub status: u16,
    pub retry_after: Option<&'a str>,
    pub remaining: Option<&'a str>,
    pub reset: Option<&'a str>,
    pub body: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Not an error, or one that retrying cannot fix.
    Done,
    /// Try again after this long.
    RetryAfter(Duration),
    /// Rate limited for longer than the remaining budget allows.
    GiveUp(Duration),
}

/// The decision after attempt number `attempt` (1-based), with `waited`
/// already spent, at `now` (Unix seconds).
pub fn next(method: &str, a: &Answer<'_>, attempt: u32, waited: Duration, now: u64) -> Next {
    if attempt >= MAX_ATTEMPTS {
        return Next::Done;
    }
    let secs = |v: Option<&str>| v.and_then(|s| s.trim().parse::<u64>().ok());
    let secondary = a.body.to_ascii_lowercase().contains("secondary rate limit");
    let wait = match a.status {
        403 | 429 => {
            if let Some(s) = secs(a.retry_after) {
                Duration::from_secs(s)
            } else if secs(a.remaining) == Some(0) {
                let reset = secs(a.reset).unwrap_or(now + 60);
                Duration::from_secs(reset.saturating_sub(now).max(1))
            } else if a.status == 429 || secondary {
                Duration::from_secs(60)
            } else {
                // A 403 without any rate-limit sign: a permission refusal.
                return Next::Done;
            }
        }
        500 | 502 | 503 | 504 if matches!(method, "GET" | "PATCH" | "PUT") => {
            Duration::from_secs(1 << attempt.saturating_sub(1).min(4))
        }
        _ => return Next::Done,
    };
    if waited + wait > MAX_TOTAL_WAIT {
        Next::GiveUp(wait)
    } else {
        Next::RetryAfter(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(status: u16) -> Answer<'static> {
        Answer {
            status,
            ..Answer::default()
        }
    }

    #[test]
    fn github_rate_limit_rules() {
        let z = Duration::ZERO;
        // Retry-After wins.
        let r = Answer {
            retry_after: Some("7"),
            ..a(429)
        };
        assert_eq!(
            next("GET", &r, 1, z, 0),
            Next::RetryAfter(Duration::from_secs(7))
        );
        // Primary limit: wait until the reset.
        let p = Answer {
            remaining: Some("0"),
            reset: Some("1030"),
            ..a(403)
        };
        assert_eq!(
            next("POST", &p, 1, z, 1000),
            Next::RetryAfter(Duration::from_secs(30))
        );
        // Secondary limit named in the body, no header: a minute.
        let s = Answer {
            body: "You have exceeded a secondary rate limit",
            ..a(403)
        };
        assert_eq!(
            next("POST", &s, 1, z, 0),
            Next::RetryAfter(Duration::from_secs(60))
        );
        // A plain 403 is a permission refusal.
        assert_eq!(next("POST", &a(403), 1, z, 0), Next::Done);
        // Server errors: GET and PATCH back off; POST does not repeat itself.
        assert_eq!(
            next("GET", &a(502), 1, z, 0),
            Next::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(
            next("PATCH", &a(503), 3, z, 0),
            Next::RetryAfter(Duration::from_secs(4))
        );
        assert_eq!(next("POST", &a(502), 1, z, 0), Next::Done);
        // Bounded: a reset an hour away is given up on, with the wait named.
        let far = Answer {
            remaining: Some("0"),
            reset: Some("4600"),
            ..a(403)
        };
        assert_eq!(
            next("GET", &far, 1, z, 1000),
            Next::GiveUp(Duration::from_secs(3600))
        );
        assert_eq!(next("GET", &r, MAX_ATTEMPTS, z, 0), Next::Done);
    }
}
