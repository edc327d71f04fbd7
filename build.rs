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
}
