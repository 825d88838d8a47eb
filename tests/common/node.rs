//! Running node scripts and headless Chromium from tests (`tests/browser/*.mjs`): `node` and
//! Chromium come from `scripts/install-deps.sh`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The browser the scripts launch: `$CHROMIUM`, else Debian's.
pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Runs `command` in the repository root to completion within `limit`; returns (success,
/// stdout, stderr).
pub async fn run(command: &mut Command, limit: Duration) -> (bool, String, String) {
    let child = command
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => {
            return (
                false,
                String::new(),
                format!("cannot start {command:?}: {e}"),
            );
        }
    };
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Ok(Err(e)) => (false, String::new(), format!("{command:?} failed: {e}")),
        Err(_) => (
            false,
            String::new(),
            format!("{command:?} did not finish in {limit:?}"),
        ),
    }
}

/// Fails with a pointer to `scripts/install-deps.sh` unless node is installed.
pub async fn require_node() {
    let (ok, _, err) = run(
        Command::new("node").arg("--version"),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        ok,
        "node is needed for the browser and client tests: run scripts/install-deps.sh ({err})"
    );
}

/// Fails with a pointer to `scripts/install-deps.sh` unless node and Chromium are installed.
pub async fn require_node_and_chromium() {
    require_node().await;
    let browser = chromium();
    assert!(
        browser.is_file(),
        "Chromium ({}) is needed for the browser tests: run scripts/install-deps.sh \
         (or set CHROMIUM)",
        browser.display()
    );
}
