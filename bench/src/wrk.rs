//! The wrk agreement check (`--wrk-check`): wrk and this load generator
//! take turns against the same server, with the same connections, threads
//! and duration, so the report can say how far our numbers are from the
//! tool everyone knows.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::loadgen::{self, Control, Mode, Spec};
use crate::machine::Pinning;
use crate::report::WrkCheck;
use crate::stats::paired_ratio;
use crate::targets::{self, StartOptions, Target};

/// True if `wrk` can be run (`wrk --version` exits 1, so only whether it
/// starts counts).
pub fn installed() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Runs the check against nginx if it is among `targets`, else the last
/// stage (not a variant); `None` when wrk is not installed or there is no
/// such server.
pub fn check(
    targets: &[Target],
    site: &Path,
    logs: &Path,
    pinning: Option<&Pinning>,
    threads: usize,
    quick: bool,
) -> io::Result<Option<WrkCheck>> {
    if !installed() {
        eprintln!("bench: wrk is not installed; skipping the wrk check");
        return Ok(None);
    }
    let Some(target) = targets.iter().find(|t| t.name == "nginx").or_else(|| {
        targets
            .iter()
            .rfind(|t| t.stage.is_some() && !t.name.contains('/'))
    }) else {
        return Ok(None);
    };
    let (conns, secs, rounds) = if quick { (64, 3, 3) } else { (64, 5, 5) };
    let server = targets::start(target, &StartOptions::new(site, logs, pinning))?;
    let url = format!("http://{}{}", server.addr, targets::SMALL_PATH);
    let wrk_args = [
        "-t".to_string(),
        threads.to_string(),
        "-c".into(),
        conns.to_string(),
        "-d".into(),
        format!("{secs}s"),
        url.clone(),
    ];
    let mut wrk_rps = Vec::new();
    let mut bench_rps = Vec::new();
    for _ in 0..rounds {
        eprintln!("bench: wrk {}", wrk_args.join(" "));
        let out = Command::new("wrk").args(&wrk_args).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let rps = text
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .ok_or_else(|| io::Error::other(format!("unexpected wrk output:\n{text}")))?;
        wrk_rps.push(rps);
        let mut spec = Spec::get(
            server.addr,
            targets::SMALL_PATH,
            conns,
            Duration::from_secs(secs),
        );
        spec.threads = threads;
        spec.mode = Mode::Closed { pipeline: 1 };
        let o = loadgen::run(&spec, &Arc::new(Control::default()))?;
        eprintln!(
            "bench: wrk {:.0} req/s, bench {:.0} req/s ({} errors)",
            rps,
            o.rps(),
            o.errors.total()
        );
        bench_rps.push(o.rps());
    }
    server.stop();
    let ratio = paired_ratio(
        &bench_rps.iter().map(|&v| Some(v)).collect::<Vec<_>>(),
        &wrk_rps.iter().map(|&v| Some(v)).collect::<Vec<_>>(),
    );
    Ok(Some(WrkCheck {
        server: target.name.clone(),
        wrk_command: format!("wrk {}", wrk_args.join(" ")),
        connections: conns,
        threads,
        duration_secs: secs as f64,
        wrk_rps,
        bench_rps,
        ratio,
    }))
}
