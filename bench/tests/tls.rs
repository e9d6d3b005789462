//! `--scenario tls` end to end: the real `bench` binary, one short round,
//! stages 4 and 5 and nginx serving HTTPS with the run's certificate, wrk
//! as the client. The report's TLS table has a row per server whose every
//! figure is a number, wrk counted no error, and `results.json` holds one
//! value per round and way. Like every test of the bench, it never asserts
//! how fast anything was.

use std::fs;
use std::process::Command;

use bench::targets::TempDir;
use common::testkit::require_tool;

mod support;

const STAGES: [&str; 2] = ["stage4-epoll", "stage5-prefork"];

#[test]
fn tls_scenario_measures_the_stages_and_nginx_over_https() {
    // `wrk --version` exits 1, so ask the shell whether it is there.
    let wrk = require_tool(&["sh", "-c", "command -v wrk"], "wrk", "the TLS comparison");
    let nginx = require_tool(&["nginx", "-v"], "nginx-light", "the TLS comparison");
    if !(wrk && nginx) {
        return;
    }
    let bins = support::build_stages(&STAGES);
    let dir = TempDir::new("bench-tls").expect("a temp dir");
    let target_dir = support::fake_target_dir(&dir.path, &bins);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bench"));
    cmd.args([
        "--quick",
        "--rounds",
        "1",
        "--duration",
        "1",
        "--warmup",
        "0",
    ])
    .args(["--threads", "1", "--server-workers", "1"])
    .args(["--scenario", "tls", "--no-build", "--out", "report"])
    .args(["--stage", "stage4-epoll", "--stage", "stage5-prefork"])
    .args(["--stage", "nginx"])
    .current_dir(&dir.path)
    .env("CARGO_TARGET_DIR", &target_dir);
    let out = cmd.output().expect("the bench binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stderr}");
    let summary = fs::read_to_string(dir.path.join("report/summary.md")).expect("summary.md");
    let section = summary
        .split("\n## TLS (`tls`)\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no TLS section in summary.md:\n{summary}"));
    let rows: Vec<Vec<&str>> = section
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    let (headers, rows) = rows.split_first().expect("a TLS table");
    assert_eq!(headers[0], "server", "{section}");
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(
        names,
        ["stage4-epoll", "stage5-prefork", "nginx"],
        "{section}"
    );
    for row in rows {
        for (h, cell) in headers.iter().zip(row).skip(1) {
            let versus_itself = row[0] == "nginx" && h.contains("vs nginx");
            if versus_itself {
                assert_eq!(*cell, "–", "nginx against itself: {section}");
            } else {
                assert!(
                    cell.starts_with(|c: char| c.is_ascii_digit()),
                    "{} / {h}: {cell:?} is not a number:\n{section}\n{stderr}",
                    row[0]
                );
            }
        }
        assert_eq!(
            row.last(),
            Some(&"0"),
            "wrk counted errors:\n{section}\n{stderr}"
        );
    }
    let results: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(dir.path.join("report/results.json")).expect("results.json"),
    )
    .expect("results.json is JSON");
    let table = results["tls"]["rows"].as_array().expect("tls rows");
    for row in table {
        for way in ["plain_rps", "tls_rps", "handshakes"] {
            let values = row[way].as_array().expect("one value per round");
            assert_eq!(values.len(), 1, "{row}");
            assert!(values[0].as_f64().is_some_and(|v| v > 0.0), "{row}");
        }
    }
}
