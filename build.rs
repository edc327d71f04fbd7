// `sqlx::migrate!` embeds the migration files at compile time; without this
// a new migration is not picked up until some source file changes.
//
// The commit this binary is built from (empty outside a git checkout) is
// what `missionctl init` pins the workflows' action to.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-env-changed=MISSIONCTL_ACTION_REPO");
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_default();
    println!("cargo:rustc-env=MISSIONCTL_BUILD_COMMIT={commit}");
    // `--version`: the package version, the commit and the build date (UTC;
    // SOURCE_DATE_EPOCH when set, for reproducible builds).
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let commit = if commit.is_empty() {
        "unknown commit".to_string()
    } else {
        format!("commit {commit}")
    };
    println!(
        "cargo:rustc-env=MISSIONCTL_VERSION_LONG={} ({commit}, built {})",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
        civil_date(secs / 86_400)
    );
}

/// `YYYY-MM-DD` for a count of days since 1970-01-01 (Howard Hinnant's
/// civil_from_days).
fn civil_date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
