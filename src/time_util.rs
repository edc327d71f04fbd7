//! Timestamps in one format everywhere: RFC 3339 in UTC with exactly nine
//! fractional digits (`2026-11-26T11:00:00.000000000Z`). One fixed width is
//! what lets the store compare timestamps as text and get the order of the
//! times: `…06:00-05:00` is stored as `…11:00:00.000000000Z`, and `…:00.5Z`
//! no longer sorts before `…:00Z`.

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

const CANONICAL: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

/// `t` in the canonical form.
pub fn canonical(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(CANONICAL)
        .unwrap_or_default()
}

/// Any RFC 3339 timestamp in the canonical form, or None if it is not one.
pub fn normalize(s: &str) -> Option<String> {
    OffsetDateTime::parse(s, &Rfc3339).ok().map(canonical)
}

pub fn now_rfc3339() -> String {
    canonical(OffsetDateTime::now_utc())
}

/// Today's UTC date as YYYY-MM-DD (the spend ledger's day).
pub fn today() -> String {
    let d = OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The instant `days` days ago, in the canonical form.
pub fn days_ago_rfc3339(days: u32) -> String {
    canonical(OffsetDateTime::now_utc() - time::Duration::days(i64::from(days)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_fractions_normalise_to_one_sortable_form() {
        assert_eq!(
            normalize("2026-11-26T06:00:00-05:00").as_deref(),
            Some("2026-11-26T11:00:00.000000000Z")
        );
        let a = normalize("2026-11-26T10:30:00Z").expect("a");
        let b = normalize("2026-11-26T10:30:00.5Z").expect("b");
        let c = normalize("2026-11-26T06:00:00-05:00").expect("c");
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(normalize("yesterday"), None);
        let now = now_rfc3339();
        assert_eq!(normalize(&now), Some(now));
    }
}
