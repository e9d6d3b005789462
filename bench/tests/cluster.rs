//! `--scenario cluster` end to end, short: the real bench binary builds
//! the namespaces, runs HAProxy in front of two stage 4 backends, serves
//! through the balancer, rolls the backends without losing a request,
//! kills one, and leaves no namespace, network interface or process
//! behind. It needs
//! root, `ip` and `haproxy`; under `CI` a missing one fails the test,
//! naming the package. Like every test of the bench, it asserts no speed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bench::cluster::netns;
use bench::targets::TempDir;
use common::testkit::{eventually, require_root, require_tool};

mod support;

/// The network interfaces of the machine's own namespace.
fn root_links() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
        .collect()
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!("{}: {cmdline}", name.to_string_lossy()));
            }
        }
    }
    found
}

fn explain(out: &Output, report: &Path) -> String {
    let mut s = format!(
        "bench exited with {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if let Ok(entries) = fs::read_dir(report.join("logs").join("cluster")) {
        for e in entries.flatten() {
            if let Ok(text) = fs::read_to_string(e.path()) {
                s.push_str(&format!("\n--- {}\n{text}", e.path().display()));
            }
        }
    }
    s
}

/// A process id that no process has now (for the name of a "stale" lab).
fn dead_pid() -> u32 {
    (900_000..1_000_000)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid")
}

/// A short cluster run: it prints the scaling table and the drain line
/// with 0 failed requests, every setup through the balancer answered
/// requests without failures, the crash was seen and timed, and
/// afterwards no lab namespace of the run, no new interface in the
/// machine's namespace and no process of the lab is left. A lab that a
/// killed run left behind (a namespace named after a dead bench, with a
/// process still running in it) is removed first.
#[test]
fn cluster_serves_through_haproxy_drains_without_loss_and_cleans_up() {
    let what = "the cluster scenario's test";
    if !(require_root(what)
        && require_tool(&["ip", "-V"], "iproute2", what)
        && require_tool(&["haproxy", "-v"], "haproxy", what))
    {
        return;
    }
    let bins = support::build_stages(&["stage4-epoll"]);
    let dir = TempDir::new("bench-cluster-test").expect("a temp dir");
    let target_dir = support::fake_target_dir(&dir.path, &bins);
    let report = dir.path.join("report");
    let links_before = root_links();

    // What a killed run leaves: its namespace, and a process inside it.
    let stale = format!("{}{}-b1", netns::PREFIX, dead_pid());
    netns::ip(&["netns", "add", &stale]).expect("create a stale namespace");
    let mut orphan = Command::new("ip")
        .args(["netns", "exec", &stale, "sleep", "600"])
        .spawn()
        .expect("start a process in the stale namespace");
    eventually(
        "the process runs in the stale namespace",
        Duration::from_secs(10),
        || {
            Command::new("ip")
                .args(["netns", "pids", &stale])
                .output()
                .is_ok_and(|o| !o.stdout.trim_ascii().is_empty())
        },
    );

    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--scenario", "cluster", "--backends", "2", "--quick"])
        .args(["--rounds", "1", "--duration", "0.3", "--warmup", "0.1"])
        .arg("--no-build")
        .arg("--out")
        .arg(&report)
        .env("CARGO_TARGET_DIR", &target_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the bench binary runs");
    let pid = child.id();
    let out = child.wait_with_output().expect("the bench binary runs");
    eprintln!("the cluster run took {:.1?}", started.elapsed());
    assert!(out.status.success(), "{}", explain(&out, &report));
    let stdout = String::from_utf8_lossy(&out.stdout);

    // The drain line, with no failure and some requests.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("cluster drain: "))
        .unwrap_or_else(|| panic!("no drain line\n{}", explain(&out, &report)));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words.get(2),
        Some(&"0"),
        "{line}\n{}",
        explain(&out, &report)
    );
    let total: u64 = words.get(5).and_then(|w| w.parse().ok()).unwrap_or(0);
    assert!(total > 0, "the roll sent no request: {line}");

    // Every setup through the balancer served, without a failure; the
    // balance across two backends gave each some requests.
    let results: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(report.join("cluster.json")).expect("cluster.json is written"),
    )
    .expect("cluster.json is JSON");
    let points = results["scaling"].as_array().expect("scaling points");
    assert_eq!(
        points.len(),
        4,
        "1, 2 backends, leastconn, http-server-close"
    );
    for p in points.iter().chain(results["hop"].as_array().expect("hop")) {
        let rps = p["rps"]["median"].as_f64().unwrap_or(0.0);
        assert!(rps > 0.0, "{} served nothing: {p}", p["label"]);
        assert_eq!(
            p["failed"].as_f64(),
            Some(0.0),
            "{} failed: {p}",
            p["label"]
        );
    }
    let shares = points[1]["share_pct"].as_array().expect("shares");
    assert!(
        shares.iter().all(|s| s.as_f64().unwrap_or(0.0) > 0.0),
        "a backend got no request with two in service: {shares:?}"
    );
    // The crash was noticed by both proxies' health checks, and the
    // clients of the proxy without retries saw it (a third or a half of
    // their requests fail for at least one check interval): the kill is
    // real and the load generator counts failures as they happen.
    let kills = results["kill"].as_array().expect("kill results");
    for k in kills {
        assert!(k["down_ms"].as_f64().is_some(), "not marked down: {k}");
    }
    let noretry = kills
        .iter()
        .find(|k| k["proxy"] == "noretry")
        .expect("a noretry row");
    assert!(
        noretry["failed_after_kill"].as_u64().unwrap_or(0) > 0
            && noretry["first_failure_ms"].as_f64().is_some(),
        "no client of the proxy without retries failed after the kill: {noretry}"
    );
    for chart in ["cluster-throughput.svg", "cluster-balance.svg"] {
        let svg = fs::read_to_string(report.join(chart)).unwrap_or_default();
        assert!(svg.contains("<svg"), "{chart} is missing");
    }
    let summary = fs::read_to_string(report.join("summary.md")).expect("summary.md");
    assert!(summary.contains("## Cluster behind HAProxy"), "{summary}");

    // The stale lab is gone, and so is the process that ran in it.
    assert!(
        !netns::lab_namespaces().contains(&stale),
        "the stale namespace {stale} is still there"
    );
    let status = orphan.try_wait().expect("wait for the orphan");
    let _ = orphan.kill();
    let _ = orphan.wait();
    assert!(
        status.is_some(),
        "the process in the stale namespace was not killed"
    );

    // Nothing is left behind.
    let ours = format!("{}{pid}-", netns::PREFIX);
    let left: Vec<String> = netns::lab_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&ours))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let new_links: Vec<String> = root_links()
        .into_iter()
        .filter(|l| !links_before.contains(l))
        .collect();
    assert!(new_links.is_empty(), "interfaces left: {new_links:?}");
    let procs = processes_mentioning(&report.to_string_lossy());
    assert!(procs.is_empty(), "processes left: {procs:?}");
}

/// Without root (here: inside a user namespace, where the bench's user
/// is `nobody`) the lab stops at once with a message that says it needs
/// root, and creates nothing.
#[test]
fn cluster_without_root_says_so_at_once() {
    let what = "the cluster scenario's refusal without root";
    if !(require_root(what)
        && require_tool(&["unshare", "--version"], "util-linux", what)
        && require_tool(&["ip", "-V"], "iproute2", what)
        && require_tool(&["haproxy", "-v"], "haproxy", what))
    {
        return;
    }
    let bins = support::build_stages(&["stage4-epoll"]);
    let dir = TempDir::new("bench-cluster-noroot").expect("a temp dir");
    let target_dir = support::fake_target_dir(&dir.path, &bins);
    // Writable by the unprivileged user the bench runs as.
    let report = dir.path.join("report");
    fs::create_dir_all(&report).expect("create the report folder");
    fs::set_permissions(&report, fs::Permissions::from_mode(0o777)).expect("chmod");
    let mut child = Command::new("unshare")
        .arg("--user")
        .arg(env!("CARGO_BIN_EXE_bench"))
        .args(["--scenario", "cluster", "--no-build", "--out"])
        .arg(&report)
        .env("CARGO_TARGET_DIR", &target_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("unshare runs");
    let pid = child.id();
    eventually(
        "the bench without root exits",
        Duration::from_secs(30),
        || matches!(child.try_wait(), Ok(Some(_))),
    );
    let out = child.wait_with_output().expect("its output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it succeeded without root: {stderr}");
    assert!(
        stderr.contains("needs root"),
        "the message does not say it needs root: {stderr}"
    );
    let ours = format!("{}{pid}-", netns::PREFIX);
    assert!(
        !netns::lab_namespaces().iter().any(|n| n.starts_with(&ours)),
        "it created namespaces"
    );
}

/// Ctrl-C in the middle of a run (SIGINT, once the lab's namespaces
/// exist) ends the run with an error that says so, and still tears the
/// lab down: no namespace of the run is left.
#[test]
fn an_interrupted_cluster_run_tears_its_lab_down() {
    let what = "the cluster scenario's interruption";
    if !(require_root(what)
        && require_tool(&["ip", "-V"], "iproute2", what)
        && require_tool(&["haproxy", "-v"], "haproxy", what))
    {
        return;
    }
    let bins = support::build_stages(&["stage4-epoll"]);
    let dir = TempDir::new("bench-cluster-sigint").expect("a temp dir");
    let target_dir = support::fake_target_dir(&dir.path, &bins);
    let mut child = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--scenario", "cluster", "--backends", "1", "--no-build"])
        .arg("--out")
        .arg(dir.path.join("report"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the bench binary runs");
    let pid = child.id();
    let ours = format!("{}{pid}-", netns::PREFIX);
    let mine = || {
        netns::lab_namespaces()
            .into_iter()
            .filter(|n| n.starts_with(&ours))
            .collect::<Vec<_>>()
    };
    // Interrupt it while it builds the lab or runs it: once the
    // client's host exists.
    let client = format!("{ours}client");
    eventually("the lab is being built", Duration::from_secs(60), || {
        mine().contains(&client)
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("send SIGINT");
    eventually(
        "the interrupted bench exits",
        Duration::from_secs(60),
        || matches!(child.try_wait(), Ok(Some(_))),
    );
    let out = child.wait_with_output().expect("its output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it succeeded though interrupted");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(mine().is_empty(), "namespaces left: {:?}", mine());
}
