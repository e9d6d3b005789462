//! What the checker's tests share: building a stage of ours and running
//! the real `bench check` command line.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace the test was built from.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the bench crate lives in the workspace")
        .to_path_buf()
}

/// Builds `stage` (debug; quick when `cargo test --workspace` already
/// built it) and returns its binary, from cargo's JSON messages.
#[allow(dead_code, reason = "the starters' test builds starters, not stages")]
pub fn build(stage: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let out = Command::new(cargo)
        .args(["build", "--bins", "--message-format=json", "-p", stage])
        .current_dir(workspace_root())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build -p {stage} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .find(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == stage)
        .and_then(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no binary for {stage}"))
}

/// Runs `bench check` with `args`; returns the exit code and stdout.
pub fn bench_check(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("check")
        .args(args)
        .output()
        .expect("run bench check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), stdout)
}

/// Runs `bench ARGS --bin BIN` in `dir` (so that a relative `--out` lands
/// there) and returns its stdout; fails the test, with both outputs, if
/// it does not exit 0.
#[allow(
    dead_code,
    reason = "the load-step and proxy tests use it, the checker's tests do not"
)]
pub fn run_bench_in(dir: &Path, args: &[&str], bin: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .arg("--bin")
        .arg(bin)
        .current_dir(dir)
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
