//! Prometheus's `promtool`, for tests that check an exposition or rules
//! with the operators' own tool.
//!
//! ```no_run
//! let out = std::process::Command::new(guardrails_testkit::promtool::path())
//!     .arg("--version")
//!     .output()
//!     .unwrap();
//! assert!(out.status.success());
//! ```

use std::{
    io::Write as _,
    process::{Command, Output, Stdio},
};

/// The path of `promtool`: `PROMTOOL` (scripts/test.sh sets it), else
/// the one `scripts/promtool.sh` finds on PATH or unpacks from Debian's
/// `prometheus` package (no server installed or started). Panics when
/// there is none: these tests are never skipped.
pub fn path() -> String {
    if let Ok(path) = std::env::var("PROMTOOL") {
        return path;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/promtool.sh");
    let out = Command::new("bash")
        .arg(script)
        .output()
        .expect("run scripts/promtool.sh");
    assert!(
        out.status.success(),
        "scripts/promtool.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Runs `promtool args…` with `stdin` as its input.
pub fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
