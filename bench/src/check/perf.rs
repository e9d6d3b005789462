//! The performance line of the stage 3 to 5 rubrics: the server under test
//! and our reference stage, measured the same way in the same run.
//! Information only: a number is never a pass or a fail (the machine, its
//! load and the build decide too much of it).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::testkit::client::Client;

use super::Server;

/// Keep-alive connections of the measurement.
pub const CONNECTIONS: usize = 16;

/// Requests per second for `GET /index.html` on [`CONNECTIONS`] keep-alive
/// connections, each sending its next request when the answer came, for
/// `seconds`. `None` if nothing was answered.
pub fn throughput(addr: SocketAddr, seconds: f64) -> Option<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let request = b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n";
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let stop = Arc::clone(&stop);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut conn: Option<Client> = None;
                while !stop.load(Ordering::Relaxed) {
                    let mut c = match conn.take() {
                        Some(c) => c,
                        None => match Client::try_connect(addr) {
                            Ok(c) => c,
                            Err(_) => return,
                        },
                    };
                    if c.stream.write_all(request).is_err() {
                        continue;
                    }
                    if let Ok(r) = c.try_response(false) {
                        done.fetch_add(1, Ordering::Relaxed);
                        if r.header("Connection") != Some("close") {
                            conn = Some(c);
                        }
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    // The measuring window: not a wait for something to happen.
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let answered = done.load(Ordering::Relaxed);
    let took = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    (answered > 0).then(|| answered as f64 / took)
}

/// Our stage for a rubric, and the flags it gets.
fn reference(stage: u8) -> (&'static str, &'static [&'static str]) {
    match stage {
        3 => ("stage3-threadpool", &[]),
        4 => ("stage4-epoll", &[]),
        _ => ("stage5-prefork", &["--workers", "2"]),
    }
}

/// Where our stage's binary is: next to this `bench` binary (cargo puts
/// every binary of a profile in one folder).
fn reference_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.join(name);
    bin.is_file().then_some(bin)
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(
        || "no answers".to_string(),
        |r| format!("{:.0} requests/s", r),
    )
}

/// The performance line: the server at `addr`, then our reference stage
/// for `stage` started on the same `root`.
pub fn line(addr: SocketAddr, stage: u8, root: &Path, seconds: f64) -> String {
    let (name, flags) = reference(stage);
    let yours = rate(throughput(addr, seconds));
    let head = format!(
        "Performance (information, never graded): GET /index.html on {CONNECTIONS} keep-alive \
         connections for {seconds} s: this server {yours}"
    );
    let Some(bin) = reference_binary(name) else {
        return format!(
            "{head}; our {name} is not built next to this checker, so there is nothing to \
             compare with (cargo build --release -p {name})."
        );
    };
    let mut command = vec![
        bin.to_string_lossy().into_owned(),
        "--addr".into(),
        "127.0.0.1:{port}".into(),
        "--root".into(),
        "{root}".into(),
        "--access-log".into(),
        "off".into(),
    ];
    command.extend(flags.iter().map(|s| s.to_string()));
    let ours = crate::targets::free_port()
        .ok()
        .and_then(|port| Server::start(&command, port, root, Duration::from_secs(20)).ok())
        .and_then(Result::ok);
    let Some(mut ours) = ours else {
        return format!("{head}; our {name} did not start, so there is nothing to compare with.");
    };
    let theirs = rate(throughput(ours.addr, seconds));
    ours.stop();
    format!("{head}; our {name} {theirs} (same run, same machine, its access log off).")
}
