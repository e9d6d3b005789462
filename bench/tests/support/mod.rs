//! What the bench's end-to-end tests share: building stages in debug
//! mode and laying them out where `--no-build` looks for them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace the test was built from.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the bench crate lives in the workspace")
        .to_path_buf()
}

/// Builds `stages` with `cargo build` (debug: a smoke run measures
/// nothing, and a release build would cost a minute on two cores) and
/// returns each binary's path, from cargo's JSON messages. Under
/// `cargo test --workspace` they are already built and this takes a
/// moment; under `cargo test -p bench` it builds them.
pub fn build_stages(stages: &[&str]) -> Vec<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--bins",
        "--message-format=json-render-diagnostics",
    ])
    .current_dir(workspace_root());
    for stage in stages {
        cmd.args(["-p", stage]);
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build of {stages:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stages
        .iter()
        .map(|stage| {
            out.stdout
                .split(|&b| b == b'\n')
                .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
                .find(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == *stage)
                .and_then(|m| m["executable"].as_str().map(PathBuf::from))
                .unwrap_or_else(|| panic!("cargo reported no binary for {stage}"))
        })
        .collect()
}

/// Lays out `dir/target/release/` with links to `bins`: `--no-build` takes
/// the stages from `$CARGO_TARGET_DIR/release/`, so with `CARGO_TARGET_DIR`
/// set to `dir/target` the bench runs the binaries just built.
pub fn fake_target_dir(dir: &Path, bins: &[PathBuf]) -> PathBuf {
    let target = dir.join("target");
    let release = target.join("release");
    fs::create_dir_all(&release).expect("create the target folder");
    for bin in bins {
        let name = bin.file_name().expect("a binary has a file name");
        std::os::unix::fs::symlink(bin, release.join(name)).expect("link a stage binary");
    }
    target
}
