//! `bench proxy` end to end: the real `bench` binary starts a stage 4
//! upstream, stage 4 with `--proxy-pass` and (when installed) nginx with
//! `proxy_pass` in front of it, loads each, and writes the table. It
//! asserts what the run shows (every server answered, no client saw an
//! error), never how fast.

use std::process::Command;

use bench::targets::TempDir;

#[allow(
    dead_code,
    reason = "the bench tests' shared helpers: these tests need build and run_bench_in"
)]
mod check_common;

#[test]
fn the_proxies_answer_without_errors_and_the_table_is_written() {
    let bin = check_common::build("stage4-epoll");
    let dir = TempDir::new("bench-proxy-test").expect("a temp dir");
    check_common::run_bench_in(
        &dir.path,
        &[
            "proxy",
            "--rounds",
            "1",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--connections",
            "4",
            "--out",
            "report",
        ],
        &bin,
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

/// The main bench's `proxy` scenario: stage 4 and nginx each take their
/// turn in front of an upstream the rounds start for it, and every run is
/// measured, with no error and no non-2xx answer (a proxy answering 502
/// would fail here).
#[test]
fn the_proxy_scenario_measures_both_proxies() {
    let bin = check_common::build("stage4-epoll");
    let dir = TempDir::new("bench-proxy-scenario").expect("a temp dir");
    // `--no-build` takes target/release/: a folder with the debug build.
    let release = dir.path.join("target").join("release");
    std::fs::create_dir_all(&release).expect("a target folder");
    std::os::unix::fs::symlink(&bin, release.join("stage4-epoll")).expect("link stage 4");
    let nginx = bench::targets::nginx_version().is_some();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bench"));
    cmd.args([
        "--quick",
        "--rounds",
        "1",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
    ])
    .args(["--threads", "1", "--server-workers", "1"])
    .args(["--scenario", "proxy", "--stage", "stage4-epoll"])
    .args(["--no-build", "--out", "report"])
    .current_dir(&dir.path)
    .env("CARGO_TARGET_DIR", dir.path.join("target"));
    if nginx {
        cmd.args(["--stage", "nginx"]);
    } else {
        cmd.arg("--no-nginx");
    }
    let out = cmd.output().expect("bench runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path.join("report/results.json")).expect("the results"),
    )
    .expect("JSON");
    let runs = results["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1 + usize::from(nginx), "{results}");
    for r in runs {
        assert_eq!(r["scenario"], "proxy");
        assert_eq!(r["status"], "measured", "{r}");
        let f = &r["figures"];
        assert!(f["requests"].as_u64().unwrap_or(0) > 0, "no answers: {r}");
        assert_eq!(f["non_2xx"], 0, "{r}");
    }
}
