//! `bench load-step` end to end: the real `bench` binary drives stage 5's
//! self-sizing pool through idle, full load and idle again, and writes the
//! samples and the chart. It asserts what the run shows (the pool grew
//! under the load, and the clients saw no error), never how fast.

use bench::targets::TempDir;

#[allow(
    dead_code,
    reason = "the bench tests' shared helpers: these tests need build and run_bench_in"
)]
mod check_common;

/// A load step of 9 seconds (1 idle, 4 of 16 connections, 4 idle) on a
/// pool of at most three, with `bin` as stage `stage`, written to
/// `dir/report`; its stdout.
fn short_step(dir: &TempDir, stage: &str, bin: &std::path::Path) -> String {
    check_common::run_bench_in(
        &dir.path,
        &[
            "load-step",
            "--stage",
            stage,
            "--idle",
            "1",
            "--load",
            "4",
            "--after",
            "4",
            "--max-workers",
            "3",
            "--connections",
            "16",
            "--out",
            "report",
        ],
        bin,
    )
}

#[test]
fn a_load_step_grows_the_pool_and_writes_the_chart() {
    let bin = check_common::build("stage5-prefork");
    let dir = TempDir::new("bench-load-step-test").expect("a temp dir");
    let stdout = short_step(&dir, "5", &bin);
    let report = dir.path.join("report");
    let svg = std::fs::read_to_string(report.join("load-step.svg")).expect("the chart");
    assert!(
        svg.contains("<svg") && svg.contains("worker processes"),
        "{svg:.300}"
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report.join("load-step.json")).expect("the samples"),
    )
    .expect("JSON");
    let samples = json["samples"].as_array().expect("samples");
    assert!(samples.len() > 10, "{json}");
    let during = &json["workers"][1];
    assert!(
        during[1].as_u64().unwrap() > 1,
        "the pool never grew under the load: {json}"
    );
    assert_eq!(
        json["workers"][0][0], 1,
        "it starts with one worker: {json}"
    );
    assert!(json["requests"].as_u64().unwrap() > 0, "{json}");
    let errors = &json["errors"];
    for kind in ["connect", "read", "write", "timeout", "parse", "closed"] {
        assert_eq!(errors[kind], 0, "{kind} errors: {json}");
    }
    assert!(stdout.contains("| full load |"), "{stdout}");
}

/// The same with stage 3's thread pool (`--stage 3`): one thread while
/// idle, more under the load, one again after it (the threads above the
/// minimum retire after `--thread-idle`), no client error; the files are
/// named for the stage.
#[test]
fn a_load_step_grows_and_shrinks_stage3s_thread_pool() {
    let bin = check_common::build("stage3-threadpool");
    let dir = TempDir::new("bench-load-step-stage3").expect("a temp dir");
    short_step(&dir, "3", &bin);
    let report = dir.path.join("report");
    let svg = std::fs::read_to_string(report.join("load-step-stage3.svg")).expect("the chart");
    assert!(svg.contains("worker threads"), "{svg:.300}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report.join("load-step-stage3.json")).expect("the samples"),
    )
    .expect("JSON");
    let [before, during, after] = [0, 1, 2].map(|i| {
        let p = &json["workers"][i];
        (p[0].as_u64().unwrap(), p[1].as_u64().unwrap())
    });
    assert_eq!(before, (1, 1), "one thread while idle: {json}");
    assert!(during.1 > 1, "the pool never grew under the load: {json}");
    assert_eq!(after.0, 1, "the pool never shrank back to one: {json}");
    for kind in ["connect", "read", "write", "timeout", "parse", "closed"] {
        assert_eq!(json["errors"][kind], 0, "{kind} errors: {json}");
    }
}
