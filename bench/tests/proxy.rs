//! `bench proxy` end to end: the real `bench` binary starts a stage 4
//! upstream, stage 4 with `--proxy-pass` and (when installed) nginx with
//! `proxy_pass` in front of it, loads each, and writes the table. It
//! asserts what the run shows (every server answered, no client saw an
//! error), never how fast.

use std::process::Command;

use bench::targets::TempDir;

#[allow(
    dead_code,
    reason = "the bench tests' shared helpers: this test needs only build"
)]
mod check_common;

#[test]
fn the_proxies_answer_without_errors_and_the_table_is_written() {
    let bin = check_common::build("stage4-epoll");
    let dir = TempDir::new("bench-proxy-test").expect("a temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "proxy",
            "--rounds",
            "1",
            "--duration",
            "0.3",
            "--warmup",
            "0",
        ])
        .args(["--connections", "4", "--out", "report"])
        .arg("--bin")
        .arg(&bin)
        .current_dir(&dir.path)
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = dir.path.join("report");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report.join("proxy.json")).expect("the results"),
    )
    .expect("JSON");
    let points = json.as_array().expect("a list of points");
    let nginx = bench::targets::nginx_version().is_some();
    // Two files, one connection count, and two or three servers.
    assert_eq!(points.len(), if nginx { 6 } else { 4 }, "{json}");
    for p in points {
        assert!(p["rps"].as_f64().unwrap() > 0.0, "no answers: {p}");
        assert_eq!(p["errors"], 0, "errors: {p}");
    }
    let table = std::fs::read_to_string(report.join("proxy.md")).expect("the table");
    assert!(
        table.contains("| stage4 --proxy-pass | /index.html | 4 |"),
        "{table}"
    );
}
