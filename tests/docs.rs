//! The documentation is tested.
//!
//! - `cli_reference_is_current`: `docs/src/reference/cli.md` is what
//!   `missionctl __cli-reference` prints. Regenerate it with
//!   `MISSIONCTL_BLESS=1 cargo test --test docs cli_reference`.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn cli_reference_is_current() {
    let out = Command::new(env!("CARGO_BIN_EXE_missionctl"))
        .arg("__cli-reference")
        .output()
        .expect("run missionctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    let path = root().join("docs/src/reference/cli.md");
    if std::env::var_os("MISSIONCTL_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &printed).expect("write cli.md");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if on_disk != printed {
        let first = on_disk
            .lines()
            .zip(printed.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(on_disk.lines().count().min(printed.lines().count()));
        panic!(
            "docs/src/reference/cli.md is not what the binary prints (first difference at line {}).\n\
             Regenerate it: MISSIONCTL_BLESS=1 cargo test --test docs cli_reference",
            first + 1
        );
    }
}
