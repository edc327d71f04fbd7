//! The telemetry plugin (`openclaw-plugin/` in this repository), embedded
//! so an installed missionctl can write it where a Gateway loads it
//! (`missionctl openclaw plugin --out DIR`, the OpenClaw quickstart).

use std::path::Path;

/// The plugin's id in OpenClaw's `plugins.entries`.
pub const PLUGIN_ID: &str = "missionctl-telemetry";

const FILES: [(&str, &str); 4] = [
    (
        "package.json",
        include_str!("../../openclaw-plugin/package.json"),
    ),
    (
        "openclaw.plugin.json",
        include_str!("../../openclaw-plugin/openclaw.plugin.json"),
    ),
    ("index.js", include_str!("../../openclaw-plugin/index.js")),
    (
        "collector.js",
        include_str!("../../openclaw-plugin/collector.js"),
    ),
];

/// Write the plugin's files into `dir` (created if needed).
pub fn write(dir: &Path) -> Result<(), super::workspace::WorkspaceError> {
    for (name, text) in FILES {
        super::workspace::replace_file(&dir.join(name), text)?;
    }
    Ok(())
}
