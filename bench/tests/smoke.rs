//! The bench's main command end to end: the real `bench` binary with a tiny
//! profile (one round, a fraction of a second per run, two scenarios), two
//! stages and nginx, run the way a user runs it: from some working
//! directory, with a *relative* `--out`. It checks that the report is
//! written and that every row of its tables has numbers. Like every test of
//! the bench, it never asserts how fast anything was.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use bench::lineup::Help;
use bench::targets::TempDir;
use common::testkit::require_tool;

mod support;

/// The stages the smoke run measures: two that can take every point of
/// the two scenarios (stage 2 cannot take 256 keep-alive connections, by
/// design, and its cell would read `n/a`).
const STAGES: [&str; 2] = ["stage3-threadpool", "stage4-epoll"];

/// The charts that `sweep` and `large-file` give.
const CHARTS: [&str; 3] = ["throughput.svg", "latency.svg", "bandwidth.svg"];

/// The Markdown tables of `md`: each as its header and its rows, split into
/// cells (no server or point name here contains an escaped `|`).
fn tables(md: &str) -> Vec<(Vec<String>, Vec<Vec<String>>)> {
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_start_matches('|')
            .trim_end_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let mut out: Vec<(Vec<String>, Vec<Vec<String>>)> = Vec::new();
    let mut in_table = false;
    for line in md.lines() {
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table {
            out.push((cells(line), Vec::new()));
            in_table = true;
        } else if !line.starts_with("|---") {
            let table = out.last_mut().expect("a table was started");
            table.1.push(cells(line));
        }
    }
    out
}

/// Everything the run printed, and its server logs, for a failure message.
fn explain(out: &Output, report: &Path) -> String {
    let mut s = format!(
        "bench exited with {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if let Ok(entries) = fs::read_dir(report.join("logs")) {
        for e in entries.flatten() {
            if let Ok(text) = fs::read_to_string(e.path()) {
                s.push_str(&format!("\n--- {}\n{text}", e.path().display()));
            }
        }
    }
    s
}

/// `cargo run --release -p bench -- --quick` in miniature, from a fresh
/// working directory with `--out report`: `summary.md`, `results.json` and
/// the charts are written under that relative folder, nginx has its row,
/// and no cell of any table reads `failed`, `n/a` or `–`. With nginx
/// started on relative paths (the bug this test was written for), nginx
/// exits at start-up and its cells read `failed`.
#[test]
fn main_command_writes_a_full_report_with_a_relative_out() {
    let nginx = require_tool(
        &["nginx", "-v"],
        "nginx-light",
        "the bench smoke test's nginx row",
    );
    let bins = support::build_stages(&STAGES);
    let dir = TempDir::new("bench-smoke").expect("a temp dir");
    let target_dir = support::fake_target_dir(&dir.path, &bins);

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bench"));
    cmd.args(["--quick", "--rounds", "1"])
        .args(["--duration", "0.2", "--warmup", "0.1"])
        .args(["--threads", "1", "--server-workers", "1"])
        .args(["--scenario", "sweep", "--scenario", "large-file"])
        .args(["--no-build", "--out", "report"])
        .current_dir(&dir.path)
        .env("CARGO_TARGET_DIR", &target_dir);
    for stage in STAGES {
        cmd.args(["--stage", stage]);
    }
    cmd.args(["--stage", "floor"]);
    if nginx {
        cmd.args(["--stage", "nginx"]);
    } else {
        cmd.arg("--no-nginx");
    }
    let started = Instant::now();
    let out = cmd.output().expect("the bench binary runs");
    eprintln!("the bench ran for {:.1?}", started.elapsed());
    let report = dir.path.join("report");
    assert!(out.status.success(), "{}", explain(&out, &report));

    // The report is under the relative `--out`, in the working directory.
    for file in ["summary.md", "results.json"].iter().chain(&CHARTS) {
        let len = fs::metadata(report.join(file)).map_or(0, |m| m.len());
        assert!(
            len > 0,
            "report/{file} is missing or empty\n{}",
            explain(&out, &report)
        );
    }
    for chart in CHARTS {
        let svg = fs::read_to_string(report.join(chart)).expect("read a chart");
        assert!(svg.contains("<svg"), "report/{chart} is not an SVG:\n{svg}");
    }
    let summary = fs::read_to_string(report.join("summary.md")).expect("read summary.md");
    for chart in CHARTS {
        assert!(
            summary.contains(&format!("]({chart})")),
            "summary.md does not show {chart}:\n{summary}"
        );
    }

    // Every run was measured.
    let results: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(report.join("results.json")).expect("read"))
            .expect("results.json is JSON");
    let runs = results["runs"].as_array().expect("results.json has runs");
    let servers = STAGES.len() + usize::from(nginx);
    // The quick sweep has three points and large-file one, in one round;
    // the floor takes the sweep only.
    assert_eq!(
        runs.len(),
        4 * servers + 3,
        "runs in results.json:\n{summary}"
    );
    for r in runs {
        assert_eq!(
            r["status"],
            "measured",
            "{} at {} of {}: {}\n{}",
            r["target"],
            r["point"],
            r["scenario"],
            r["note"],
            explain(&out, &report)
        );
    }

    // The headline table and one table per scenario, every row with
    // numbers: each cell but the point and server names starts with a
    // digit (`12,345 ±3%`, `85µs`, `0.57`, `1.00×`).
    let tables = tables(&summary);
    assert_eq!(
        tables.len(),
        3,
        "a headline and two scenario tables:\n{summary}"
    );
    for (headers, rows) in &tables {
        assert!(!rows.is_empty(), "an empty table {headers:?}:\n{summary}");
        if nginx {
            assert!(
                rows.iter().any(|r| r.iter().any(|c| c == "nginx")),
                "no nginx row in the table {headers:?}:\n{summary}"
            );
            // A scenario table (not the headline) compares with nginx.
            if headers[0] == "point" {
                assert!(
                    headers.iter().any(|h| h == "vs nginx"),
                    "no vs nginx column in {headers:?}:\n{summary}"
                );
            }
        }
        // The sweep (the floor took it) shows every server as a fraction
        // of the floor in the same round; the large file does not.
        if headers[0] == "point" {
            let sweep = rows.iter().any(|r| r[1] == "floor");
            assert_eq!(
                headers.last().map(String::as_str) == Some("vs floor"),
                sweep,
                "the vs floor column only where the floor ran {headers:?}:\n{summary}"
            );
        }
        for row in rows {
            assert_eq!(row.len(), headers.len(), "a short row {row:?}:\n{summary}");
            for (h, c) in headers.iter().zip(row) {
                if h == "point" || h == "server" {
                    continue;
                }
                assert!(
                    c.starts_with(|ch: char| ch.is_ascii_digit()),
                    "column {h:?} of {row:?} has no number: {c:?}\n{summary}\n{}",
                    explain(&out, &report)
                );
            }
        }
    }
    // Each stage is described by its binary, not by the bench: the
    // description its `--help` gives, the flags the bench passed, and the
    // defaults of the stage's own flags as `--help` states them.
    let line = |name: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(&format!("- `{name}`: ")))
            .unwrap_or_else(|| panic!("no line for {name} under Servers:\n{summary}"))
    };
    for (stage, bin) in STAGES.iter().zip(&bins) {
        let help = Help::of(bin).expect("the stage's --help runs");
        assert!(
            line(stage).contains(help.summary()),
            "{stage} is not described as its --help says ({:?}):\n{summary}",
            help.about
        );
    }
    let stage3 = Help::of(&bins[0]).expect("stage 3's --help runs");
    let threads = stage3
        .flags
        .iter()
        .find(|f| f.long == "--threads")
        .and_then(|f| f.default.clone())
        .expect("stage 3's --help gives --threads a default");
    assert!(
        line("stage3-threadpool").contains(&format!("`--threads {threads}`")),
        "stage 3's line does not give its default thread count:\n{summary}"
    );
    assert!(
        line("stage4-epoll").contains("Run with `--loops 1`"),
        "stage 4's line does not give the flags it was run with:\n{summary}"
    );

    let headline = &tables[0];
    let names: Vec<&str> = headline.1.iter().map(|r| r[0].as_str()).collect();
    let mut expected: Vec<&str> = STAGES.to_vec();
    if nginx {
        expected.push("nginx");
    }
    assert_eq!(names, expected, "the headline table's rows:\n{summary}");
}

/// The fixed-rate scenario end to end, without nginx: the calibration run
/// (the first server takes nginx's place) sets the rates, and each server
/// is measured at 25%, 50% and 75% of it, with the latency columns and
/// the latency-vs-rate chart. Were the calibration lost, the rates would
/// be zero and every rate row would read `failed`.
#[test]
fn fixed_rate_runs_at_fractions_of_a_calibrated_maximum() {
    let bins = support::build_stages(&STAGES);
    let dir = TempDir::new("bench-fixed-rate").expect("a temp dir");
    let target_dir = support::fake_target_dir(&dir.path, &bins);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bench"));
    cmd.args(["--quick", "--rounds", "1"])
        .args(["--duration", "0.3", "--warmup", "0.1"])
        .args(["--threads", "1", "--server-workers", "1"])
        .args(["--scenario", "fixed-rate", "--no-nginx", "--no-build"])
        .args(["--out", "report"])
        .current_dir(&dir.path)
        .env("CARGO_TARGET_DIR", &target_dir);
    for stage in STAGES {
        cmd.args(["--stage", stage]);
    }
    let out = cmd.output().expect("the bench binary runs");
    let report = dir.path.join("report");
    assert!(out.status.success(), "{}", explain(&out, &report));
    let summary = fs::read_to_string(report.join("summary.md")).expect("read summary.md");
    let tables = tables(&summary);
    let (headers, rows) = tables
        .iter()
        .find(|(h, _)| h[0] == "point")
        .unwrap_or_else(|| panic!("no fixed-rate table:\n{summary}"));
    for h in ["p50", "p99", "p99.9", "max"] {
        assert!(headers.iter().any(|x| x == h), "no {h} column: {headers:?}");
    }
    assert!(!headers.iter().any(|h| h.starts_with("vs ")), "{headers:?}");
    let points: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    let mut expected = vec![("max (closed loop)", STAGES[0])];
    for pct in ["25% of max", "50% of max", "75% of max"] {
        for stage in STAGES {
            expected.push((pct, stage));
        }
    }
    assert_eq!(points, expected, "the table's rows:\n{summary}");
    for row in rows {
        for (h, c) in headers.iter().zip(row).skip(2) {
            assert!(
                c.starts_with(|ch: char| ch.is_ascii_digit()),
                "column {h:?} of {row:?} has no number: {c:?}\n{}",
                explain(&out, &report)
            );
        }
    }
    let svg = fs::read_to_string(report.join("latency-vs-rate.svg")).expect("the chart");
    assert!(svg.contains("<svg"));
}
