//! `--scenario cluster`: the stages as a cluster behind HAProxy, on hosts
//! made of network namespaces, and what a client sees of it.
//!
//! [`run`] is the lab, one phase a paragraph:
//!
//! 1. **Build.** [`netns::Lab`] makes the hosts (a balancer, a client,
//!    N backends) and the bridge between them; each backend host runs the
//!    chosen stage with its status page open to the balancer and the
//!    client host (`--status-allow`), the balancer host runs HAProxy with
//!    the configuration of [`haproxy::config`].
//! 2. **Scaling.** With 1, 2, … N backends in service (the others set to
//!    `maint` through the runtime API), the bench's own load generator, in
//!    the client host, runs closed-loop keep-alive load through the
//!    balancer: throughput, p99, the CPU of the balancer and of the
//!    backends, and each backend's share, read from its status page. With
//!    one backend it also runs the same load straight at that backend:
//!    the cost of the extra hop. With N it runs through `leastconn` and
//!    through a proxy that opens a new connection to the backend for
//!    every request (no keep-alive to the backends).
//! 3. **Rolling restart.** Under load, each backend in turn is drained
//!    (`set server … state drain`), the lab waits until HAProxy holds no
//!    session on it (`scur` 0 in `show stat`), sends it SIGTERM, starts it
//!    again, waits for the health check, and sets it `ready`. The target
//!    is no failed request: `cluster drain: N failed of M`.
//! 4. **Crash.** Under open-loop load through two proxies (one with
//!    retries and redispatch, one without), every process of one backend
//!    host is killed with SIGKILL; the lab times how long the health
//!    checks take to mark it down and when the clients' failures start
//!    and stop.
//!
//! Everything is torn down when [`run`] returns, whatever happened:
//! processes first (each is killed when its handle drops), then the
//! namespaces (the [`netns::Lab`] drop). A run killed before that is
//! cleaned up by the next one.

pub mod haproxy;
pub mod netns;
pub mod report;

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::loadgen::{self, Control, Mode, Outcome, Spec};
use crate::procfs;
use crate::stats::Spread;
use crate::targets::{SMALL_PATH, parse_listening_line};
pub use report::{ClusterResults, DrainResult, KillResult, ScalePoint};

/// The port every backend listens on, on its own host.
pub const BACKEND_PORT: u16 = 8080;

/// The status page's path: the health checks fetch it, and the lab reads
/// each backend's request count from it.
pub const STATUS_PATH: &str = "/server-status";

/// The stage a cluster runs when `--stage` names none.
pub const DEFAULT_STAGE: &str = "stage4-epoll";

/// How long any one wait of the lab may take (a server starting, a health
/// check turning, a drain emptying).
const WAIT: Duration = Duration::from_secs(20);

/// What a cluster run is given.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The stage package the backends run.
    pub stage: String,
    /// Its binary.
    pub bin: PathBuf,
    /// Backend hosts (default 3).
    pub backends: usize,
    /// Rounds of the scaling measurements (the median is reported).
    pub rounds: usize,
    /// Warm-up before each measured window.
    pub warmup: Duration,
    /// Each measured window.
    pub duration: Duration,
    /// Connections of the scaling load.
    pub conns: usize,
    /// Open-loop rate of each client during the crash, requests/s.
    pub kill_rate: f64,
    /// The document root (absolute).
    pub site: PathBuf,
    /// Where the configuration and the logs go (absolute).
    pub logs: PathBuf,
    /// A short scratch folder for HAProxy's stats socket (absolute).
    pub scratch: PathBuf,
    /// Threads HAProxy runs.
    pub lb_threads: usize,
}

/// The flags a stage is given as a backend on top of the common ones: one
/// event loop or worker, so that one backend is about one core's worth of
/// server and adding backends is what adds capacity.
fn stage_flags(stage: &str) -> &'static [&'static str] {
    match stage {
        "stage4-epoll" => &["--loops", "1"],
        "stage5-prefork" => &["--workers", "1"],
        _ => &[],
    }
}

/// A process the lab started; killed when dropped.
#[derive(Debug)]
struct Proc {
    /// What it is, for messages (`s1 (stage4-epoll)`, `haproxy`).
    name: String,
    /// `ip netns exec …`, which became the program itself (it `exec`s
    /// without forking), so its pid is the server's or HAProxy's.
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `sig` and waits until the process exits; false if it did not
    /// within [`WAIT`].
    fn signal_and_wait(&mut self, sig: Signal) -> bool {
        let _ = kill(Pid::from_raw(self.pid() as i32), sig);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if !self.alive() {
                return true;
            }
            thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A running backend.
#[derive(Debug)]
struct Backend {
    /// `s1`, `s2`… as HAProxy names it.
    name: String,
    /// Its namespace.
    ns: String,
    /// Where it listens.
    addr: SocketAddr,
    /// The running process; `None` between a stop and the restart, and
    /// after the crash.
    proc: Option<Proc>,
}

/// The lab with its processes: dropped in field order, so the processes
/// are killed before the namespaces are deleted.
struct Cluster<'a> {
    /// What the run was given.
    settings: &'a Settings,
    /// The backends, `s1` first.
    backends: Vec<Backend>,
    /// HAProxy, in the balancer's host.
    balancer: Proc,
    /// HAProxy's stats socket: the runtime API.
    socket: PathBuf,
    /// Set by SIGINT or SIGTERM: every wait of the lab looks at it and
    /// ends the run, so that an interrupted run still tears down.
    interrupted: Arc<AtomicBool>,
    /// The hosts; last, so that it is dropped after every process.
    lab: netns::Lab,
}

/// Builds the cluster, runs every phase, tears it all down.
pub fn run(settings: &Settings) -> io::Result<ClusterResults> {
    preflight()?;
    // Ctrl-C (or SIGTERM) sets a flag instead of killing the bench, so the
    // lab is torn down; a second one exits at once (the next run cleans up).
    let signals = common::signals::Signals::install()?;
    fs::create_dir_all(&settings.logs)?;
    let lab = netns::Lab::create(settings.backends)?;
    eprintln!(
        "bench: cluster lab up: balancer {}, client {}, {} backend(s) running {}",
        lab.lb.addr,
        lab.client.addr,
        lab.backends.len(),
        settings.stage
    );
    let mut backends = Vec::new();
    for (i, host) in lab.backends.iter().enumerate() {
        let mut b = Backend {
            name: format!("s{}", i + 1),
            ns: host.ns.clone(),
            addr: SocketAddr::V4(SocketAddrV4::new(host.addr, BACKEND_PORT)),
            proc: None,
        };
        b.proc = Some(start_backend(settings, &b)?);
        backends.push(b);
    }
    // A Unix socket's path has at most 107 bytes, so the runtime API's
    // socket goes in the short scratch folder, not next to the logs.
    let socket = settings.scratch.join("haproxy.sock");
    let _ = fs::remove_file(&socket);
    eprintln!("bench: HAProxy's runtime API: {}", socket.display());
    let balancer = start_balancer(settings, &lab, &backends, &socket)?;
    let mut cluster = Cluster {
        settings,
        backends,
        balancer,
        socket,
        interrupted: signals.shutdown_flag(),
        lab,
    };
    cluster.wait_servers("every backend UP", |s| s.up())?;
    let results = cluster.phases();
    let Cluster {
        backends,
        balancer,
        lab,
        ..
    } = cluster;
    drop(backends);
    drop(balancer);
    // A failed phase's error is the one worth reporting.
    let destroyed = lab.destroy();
    let results = results?;
    destroyed?;
    Ok(results)
}

/// Root, `ip` and `haproxy`, each missing one named with its package.
fn preflight() -> io::Result<()> {
    let runs = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !runs("ip", "-V") {
        return Err(io::Error::other(
            "the cluster lab needs `ip` (Debian package iproute2: apt-get install iproute2)",
        ));
    }
    if !runs("haproxy", "-v") {
        return Err(io::Error::other(
            "the cluster lab needs HAProxy (Debian package haproxy: apt-get install haproxy)",
        ));
    }
    Ok(())
}

/// Starts backend `b` in its host: `ip netns exec NS STAGE --addr …`,
/// and waits for its `listening on` line.
fn start_backend(settings: &Settings, b: &Backend) -> io::Result<Proc> {
    let log = settings.logs.join(format!("{}.log", b.name));
    // What it prints before its error log is open (a refused flag) goes
    // next to it.
    let stderr = fs::File::create(settings.logs.join(format!("{}.stderr", b.name)))?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &b.ns])
        .arg(&settings.bin)
        .arg("--addr")
        .arg(b.addr.to_string())
        .arg("--root")
        .arg(&settings.site)
        .args(["--access-log", "off", "--log-level", "warn"])
        .arg("--error-log")
        .arg(&log)
        .args(["--grace-period", "2"])
        // The page goes to the balancer's health checks and to the client
        // host, which reads the request counts; to no one else.
        .arg("--status-allow")
        .arg(format!("{},{}", netns::LB_ADDR, netns::CLIENT_ADDR))
        .args(stage_flags(&settings.stage))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut child = cmd.spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let proc = Proc {
        name: format!("{} ({})", b.name, settings.stage),
        child,
    };
    // The line is read on a thread so that a backend that never prints it
    // cannot hang the lab.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    let line = rx.recv_timeout(WAIT).unwrap_or_default();
    match parse_listening_line(&line) {
        Some(addr) if addr == b.addr => Ok(proc),
        _ => Err(io::Error::other(format!(
            "{} did not start in {} (first line {:?}; see {})",
            proc.name,
            b.ns,
            line.trim(),
            log.display()
        ))),
    }
}

/// Writes the configuration, checks it with `haproxy -c`, and starts
/// HAProxy in the balancer's host, in the foreground (`-db`); waits until
/// its runtime API answers.
fn start_balancer(
    settings: &Settings,
    lab: &netns::Lab,
    backends: &[Backend],
    socket: &Path,
) -> io::Result<Proc> {
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let text = haproxy::config(&haproxy::Config {
        bind: lab.lb.addr,
        backends: &addrs,
        check_path: STATUS_PATH,
        socket,
        threads: settings.lb_threads,
    });
    let cfg = settings.logs.join("haproxy.cfg");
    fs::write(&cfg, text)?;
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()?;
    if !check.status.success() {
        return Err(io::Error::other(format!(
            "haproxy -c refused {}: {}",
            cfg.display(),
            String::from_utf8_lossy(&check.stdout).trim()
        )));
    }
    let log = fs::File::create(settings.logs.join("haproxy.log"))?;
    let child = Command::new("ip")
        .args(["netns", "exec", &lab.lb.ns, "haproxy", "-db", "-f"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let mut proc = Proc {
        name: "haproxy".into(),
        child,
    };
    let deadline = Instant::now() + WAIT;
    while haproxy::command(socket, "show info").is_err() {
        if !proc.alive() || Instant::now() >= deadline {
            return Err(io::Error::other(format!(
                "HAProxy did not start (see {})",
                settings.logs.join("haproxy.log").display()
            )));
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(proc)
}

/// What one measured window through (or around) the balancer gave.
#[derive(Debug, Clone, Default)]
struct Window {
    rps: f64,
    p50: u64,
    p99: u64,
    failed: u64,
    lb_cpu: f64,
    backends_cpu: f64,
    /// Requests each backend answered in the window (from its status page).
    per_backend: Vec<u64>,
}

impl Cluster<'_> {
    /// Runs the phases in order; the first error ends the run.
    fn phases(&mut self) -> io::Result<ClusterResults> {
        let s = self.settings;
        let n = self.backends.len();
        let mut scale: Vec<Vec<Window>> = vec![Vec::new(); n];
        let (mut direct, mut direct1, mut via1) = (Vec::new(), Vec::new(), Vec::new());
        let (mut lc, mut close) = (Vec::new(), Vec::new());
        let lb = SocketAddr::from((self.lab.lb.addr, haproxy::port("rr")));
        let at = |proxy: &str| SocketAddr::from((self.lab.lb.addr, haproxy::port(proxy)));
        for round in 0..s.rounds {
            eprintln!("bench: cluster scaling, round {}/{}", round + 1, s.rounds);
            for k in 1..=n {
                self.in_service(k)?;
                scale[k - 1].push(self.window(lb, s.conns)?);
                if k == 1 {
                    let b1 = self.backends[0].addr;
                    direct.push(self.window(b1, s.conns)?);
                    direct1.push(self.window(b1, 1)?);
                    via1.push(self.window(lb, 1)?);
                }
                if k == n {
                    lc.push(self.window(at("lc"), s.conns)?);
                    close.push(self.window(at("close"), s.conns)?);
                }
            }
        }
        let point = |label: &str, proxy: &str, backends: usize, conns: usize, ws: &[Window]| {
            ScalePoint::of(label, proxy, backends, conns, ws)
        };
        let mut scaling: Vec<ScalePoint> = scale
            .iter()
            .enumerate()
            .map(|(i, ws)| {
                let label = format!("{} backend{}", i + 1, if i == 0 { "" } else { "s" });
                point(&label, "rr", i + 1, s.conns, ws)
            })
            .collect();
        scaling.push(point(
            &format!("{n} backends, leastconn"),
            "lc",
            n,
            s.conns,
            &lc,
        ));
        scaling.push(point(
            &format!("{n} backends, http-server-close"),
            "close",
            n,
            s.conns,
            &close,
        ));
        let hop = vec![
            point("direct to s1", "direct", 1, s.conns, &direct),
            point("via balancer, 1 backend", "rr", 1, s.conns, &scale[0]),
            point("direct to s1", "direct", 1, 1, &direct1),
            point("via balancer, 1 backend", "rr", 1, 1, &via1),
        ];
        self.in_service(n)?;
        eprintln!("bench: cluster rolling restart of {n} backend(s) under load");
        let drain = self.rolling_restart()?;
        eprintln!("bench: cluster crash of s{n} under load");
        let kill = self.crash(n - 1)?;
        Ok(ClusterResults {
            stage: s.stage.clone(),
            backends: n,
            lb_threads: s.lb_threads,
            conns: s.conns,
            rounds: s.rounds,
            duration_secs: s.duration.as_secs_f64(),
            check_inter_ms: haproxy::CHECK_INTER_MS,
            scaling,
            hop,
            drain,
            kill,
        })
    }

    /// Puts backends 1..=k in service and the others in maintenance, and
    /// waits until every proxy sees exactly that.
    fn in_service(&self, k: usize) -> io::Result<()> {
        for (i, b) in self.backends.iter().enumerate() {
            let state = if i < k { "ready" } else { "maint" };
            haproxy::set_state(&self.socket, &b.name, state)?;
        }
        let names: Vec<String> = self.backends.iter().map(|b| b.name.clone()).collect();
        self.wait_servers(&format!("{k} backend(s) in service"), |st| {
            let i = names.iter().position(|n| *n == st.server).unwrap_or(0);
            if i < k {
                st.up()
            } else {
                st.status.starts_with("MAINT")
            }
        })
    }

    /// An error once SIGINT or SIGTERM arrived.
    fn check_interrupted(&self) -> io::Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "interrupted; the cluster lab was torn down",
            ));
        }
        Ok(())
    }

    /// Waits until `ok` holds for every server line of `show stat`.
    fn wait_servers(
        &self,
        what: &str,
        ok: impl Fn(&haproxy::ServerStat) -> bool,
    ) -> io::Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            self.check_interrupted()?;
            let stat = haproxy::stat(&self.socket)?;
            if !stat.is_empty() && stat.iter().all(&ok) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = stat
                    .iter()
                    .map(|s| format!("{}/{} {}", s.proxy, s.server, s.status))
                    .collect();
                return Err(io::Error::other(format!(
                    "waited {WAIT:?} for {what}, in vain; show stat: {}",
                    seen.join(", ")
                )));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The backends' request counts, from their status pages, read from
    /// the client host.
    fn requests_per_backend(&self) -> io::Result<Vec<u64>> {
        let addrs: Vec<SocketAddr> = self.backends.iter().map(|b| b.addr).collect();
        netns::run_in(&self.lab.client.ns, move || {
            addrs
                .iter()
                .map(|&a| {
                    let page = common::testkit::status::scrape(a)
                        .map_err(|e| io::Error::other(format!("status page of {a}: {e}")))?;
                    Ok(common::testkit::status::value(&page, "http_requests_total").unwrap_or(0))
                })
                .collect()
        })
    }

    /// CPU seconds so far of the balancer and of all the backends.
    fn cpu(&self) -> (f64, f64) {
        let lb = procfs::sample_tree(self.balancer.pid()).total().cpu_secs;
        let be = self
            .backends
            .iter()
            .filter_map(|b| b.proc.as_ref())
            .map(|p| procfs::sample_tree(p.pid()).total().cpu_secs)
            .sum();
        (lb, be)
    }

    /// One closed-loop keep-alive window of `conns` connections from the
    /// client host to `addr`.
    fn window(&self, addr: SocketAddr, conns: usize) -> io::Result<Window> {
        self.check_interrupted()?;
        let s = self.settings;
        let spec = Spec {
            threads: 1,
            warmup: s.warmup,
            ..Spec::get(addr, SMALL_PATH, conns, s.duration)
        };
        let control = Arc::new(Control::default());
        let c = Arc::clone(&control);
        let before = self.requests_per_backend()?;
        let handle = netns::spawn_in(&self.lab.client.ns, move || loadgen::run(&spec, &c))?;
        thread::sleep(s.warmup);
        let (lb0, be0) = self.cpu();
        let t0 = Instant::now();
        let outcome = join(handle)?;
        let wall = t0.elapsed().as_secs_f64().max(1e-6);
        let (lb1, be1) = self.cpu();
        let after = self.requests_per_backend()?;
        let lat = outcome.latency_summary();
        Ok(Window {
            rps: outcome.rps(),
            p50: lat.p50,
            p99: lat.p99,
            failed: failures(&outcome),
            lb_cpu: (lb1 - lb0) / wall,
            backends_cpu: (be1 - be0) / wall,
            per_backend: after
                .iter()
                .zip(&before)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        })
    }

    /// Restarts every backend in turn under load through `rr` and through
    /// `noretry`, draining each through the runtime API first.
    fn rolling_restart(&mut self) -> io::Result<DrainResult> {
        let mut loads = Vec::new();
        for proxy in ["rr", "noretry"] {
            let addr = SocketAddr::from((self.lab.lb.addr, haproxy::port(proxy)));
            let spec = Spec {
                threads: 1,
                ..Spec::get(addr, SMALL_PATH, 16, Duration::from_secs(600))
            };
            let control = Arc::new(Control::default());
            let c = Arc::clone(&control);
            let handle = netns::spawn_in(&self.lab.client.ns, move || loadgen::run(&spec, &c))?;
            loads.push((control, handle));
        }
        let started = Instant::now();
        let rolled = self.roll_all();
        let mut outcomes = Vec::new();
        for (control, handle) in loads {
            control.stop.store(true, Ordering::Relaxed);
            outcomes.push(join(handle)?);
        }
        let steps = rolled?;
        let sent = |o: &Outcome| o.requests + o.errors.total();
        Ok(DrainResult {
            failed: failures(&outcomes[0]),
            requests: sent(&outcomes[0]),
            noretry_failed: failures(&outcomes[1]),
            noretry_requests: sent(&outcomes[1]),
            secs: started.elapsed().as_secs_f64(),
            steps,
        })
    }

    /// Drains, stops, restarts and readmits each backend; returns how long
    /// each drain took to empty, ms.
    fn roll_all(&mut self) -> io::Result<Vec<f64>> {
        // Let the load reach every backend first.
        thread::sleep(self.settings.warmup);
        let mut steps = Vec::new();
        for i in 0..self.backends.len() {
            let name = self.backends[i].name.clone();
            haproxy::set_state(&self.socket, &name, "drain")?;
            let t = Instant::now();
            self.wait_servers(&format!("{name} drained (scur 0)"), |st| {
                st.server != name || st.scur == 0
            })?;
            steps.push(t.elapsed().as_secs_f64() * 1000.0);
            let stopped = self.backends[i]
                .proc
                .as_mut()
                .is_some_and(|p| p.signal_and_wait(Signal::SIGTERM));
            if !stopped {
                return Err(io::Error::other(format!(
                    "{name} did not exit within {WAIT:?} of SIGTERM"
                )));
            }
            self.backends[i].proc = None;
            let fresh = start_backend(self.settings, &self.backends[i])?;
            self.backends[i].proc = Some(fresh);
            // Still drained, but its health check passes again.
            self.wait_servers(&format!("{name} back (DRAIN)"), |st| {
                st.server != name || st.status == "DRAIN"
            })?;
            haproxy::set_state(&self.socket, &name, "ready")?;
            self.wait_servers(&format!("{name} UP"), |st| st.up())?;
        }
        Ok(steps)
    }

    /// Kills every process of backend `i`'s host under open-loop load
    /// through `rr` (retries) and `noretry`, and times what follows.
    fn crash(&mut self, i: usize) -> io::Result<Vec<KillResult>> {
        let s = self.settings;
        let proxies = ["rr", "noretry"];
        let mut loads = Vec::new();
        for proxy in proxies {
            let addr = SocketAddr::from((self.lab.lb.addr, haproxy::port(proxy)));
            let spec = Spec {
                threads: 1,
                mode: Mode::Open { rate: s.kill_rate },
                ..Spec::get(addr, SMALL_PATH, 16, Duration::from_secs(600))
            };
            let control = Arc::new(Control::default());
            let c = Arc::clone(&control);
            let handle = netns::spawn_in(&self.lab.client.ns, move || loadgen::run(&spec, &c))?;
            loads.push((control, handle));
        }
        thread::sleep(s.warmup.max(Duration::from_millis(200)));
        let name = self.backends[i].name.clone();
        let base: Vec<u64> = loads
            .iter()
            .map(|(c, _)| c.failed.load(Ordering::Relaxed))
            .collect();
        // The host dies: every process in its namespace, at once.
        let killed_at = Instant::now();
        netns::kill_all(&self.backends[i].ns);
        let mut down_ms: Vec<Option<f64>> = vec![None; proxies.len()];
        let mut first_ms: Vec<Option<f64>> = vec![None; proxies.len()];
        let mut last_ms: Vec<Option<f64>> = vec![None; proxies.len()];
        let mut seen = base.clone();
        let deadline = killed_at + WAIT;
        let mut all_down_at: Option<Instant> = None;
        // An error ends the watch, but the loads are stopped first.
        let mut watched = Ok(());
        loop {
            if let Err(e) = self.check_interrupted() {
                watched = Err(e);
                break;
            }
            let now = Instant::now();
            let ms = now.duration_since(killed_at).as_secs_f64() * 1000.0;
            for (k, (c, _)) in loads.iter().enumerate() {
                let f = c.failed.load(Ordering::Relaxed);
                if f > seen[k] {
                    first_ms[k].get_or_insert(ms);
                    last_ms[k] = Some(ms);
                    seen[k] = f;
                }
            }
            let stat = match haproxy::stat(&self.socket) {
                Ok(stat) => stat,
                Err(e) => {
                    watched = Err(e);
                    break;
                }
            };
            for (k, proxy) in proxies.iter().enumerate() {
                if down_ms[k].is_none()
                    && stat
                        .iter()
                        .any(|st| st.proxy == *proxy && st.server == name && st.down())
                {
                    down_ms[k] = Some(ms);
                }
            }
            if all_down_at.is_none() && down_ms.iter().all(Option::is_some) {
                all_down_at = Some(now);
            }
            // Watch the clients a while after the balancer gave up on the
            // backend: failures after that would be a defect.
            if all_down_at.is_some_and(|t| now.duration_since(t) > Duration::from_millis(500))
                || now >= deadline
            {
                break;
            }
            thread::sleep(Duration::from_millis(2));
        }
        self.backends[i].proc = None;
        let mut out = Vec::new();
        for (control, _) in &loads {
            control.stop.store(true, Ordering::Relaxed);
        }
        let outcomes: Vec<io::Result<Outcome>> =
            loads.into_iter().map(|(_, handle)| join(handle)).collect();
        watched?;
        for (k, outcome) in outcomes.into_iter().enumerate() {
            let outcome = outcome?;
            out.push(KillResult {
                proxy: proxies[k].to_string(),
                rate: s.kill_rate,
                failed: failures(&outcome),
                failed_after_kill: seen[k] - base[k],
                requests: outcome.requests + outcome.errors.total(),
                down_ms: down_ms[k],
                first_failure_ms: first_ms[k],
                last_failure_ms: last_ms[k],
            });
        }
        Ok(out)
    }
}

/// Failed requests of a run: errors of every kind and non-2xx answers.
fn failures(o: &Outcome) -> u64 {
    o.errors.total() + o.non_2xx
}

fn join<T>(h: thread::JoinHandle<io::Result<T>>) -> io::Result<T> {
    h.join()
        .map_err(|_| io::Error::other("the load generator panicked"))?
}

impl ScalePoint {
    fn of(label: &str, proxy: &str, backends: usize, conns: usize, ws: &[Window]) -> ScalePoint {
        let med = |f: &dyn Fn(&Window) -> f64| {
            crate::stats::median(&ws.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
        };
        let n = ws.iter().map(|w| w.per_backend.len()).max().unwrap_or(0);
        let share = (0..n)
            .map(|i| {
                med(&|w: &Window| {
                    let total: u64 = w.per_backend.iter().sum();
                    if total == 0 {
                        0.0
                    } else {
                        w.per_backend.get(i).copied().unwrap_or(0) as f64 * 100.0 / total as f64
                    }
                })
            })
            .collect();
        ScalePoint {
            label: label.to_string(),
            proxy: proxy.to_string(),
            backends,
            conns,
            rps: Spread::of(&ws.iter().map(|w| w.rps).collect::<Vec<_>>()),
            p50_us: med(&|w| w.p50 as f64),
            p99_us: med(&|w| w.p99 as f64),
            failed: med(&|w| w.failed as f64),
            lb_cpu: med(&|w| w.lb_cpu),
            backends_cpu: med(&|w| w.backends_cpu),
            share_pct: share,
        }
    }
}
