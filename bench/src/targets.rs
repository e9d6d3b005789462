//! The servers under test: finding and building the stages, generating an
//! nginx configuration, starting and stopping each server.
//!
//! Every server is started the same way the tests start them (the contract
//! every binary keeps): `--addr 127.0.0.1:0`, then the one
//! `listening on http://HOST:PORT/` line gives the real port. nginx and
//! `--peer` commands cannot print that line, so the bench picks a free
//! port for them and waits until it accepts connections.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::machine::Pinning;

/// The HTTP stages, in course order, with the binary each package builds.
pub const STAGES: [&str; 4] = [
    "stage2-http-seq",
    "stage3-threadpool",
    "stage4-epoll",
    "stage5-prefork",
];

/// How long a server may take to start accepting.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The workspace this bench was built from.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `cargo` to call: the one running us when started by `cargo run`.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// The packages of the workspace at `root`, from `cargo metadata --no-deps`.
pub fn workspace_packages(root: &Path) -> io::Result<Vec<String>> {
    let out = Command::new(cargo())
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root)
        .stderr(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other("cargo metadata failed"));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(io::Error::other)?;
    Ok(v["packages"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// Builds `package` in release mode and returns its binary's path.
pub fn build_release(root: &Path, package: &str) -> Result<PathBuf, String> {
    let out = Command::new(cargo())
        .args([
            "build",
            "--release",
            "--bins",
            "-p",
            package,
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(root)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| l.contains("error"))
            .unwrap_or("build failed");
        return Err(format!("build failed: {}", last.trim()));
    }
    for line in out.stdout.split(|&b| b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == package
            && let Some(exe) = msg["executable"].as_str()
        {
            return Ok(PathBuf::from(exe));
        }
    }
    Err(format!("cargo built no binary named {package}"))
}

/// The release binary of `package` as an earlier build left it
/// (`--no-build`): under `$CARGO_TARGET_DIR/release/` when that is set,
/// else the workspace's `target/release/`.
pub fn release_binary(root: &Path, package: &str) -> Result<PathBuf, String> {
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or(root.join("target"), PathBuf::from);
    let bin = target_dir.join("release").join(package);
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("not built ({} missing)", bin.display()))
    }
}

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir {
    /// Its path.
    pub path: PathBuf,
}

impl TempDir {
    /// Creates a fresh directory under the system temp dir. Its path is
    /// absolute even when `TMPDIR` is relative, because the site copied
    /// into it is handed to servers as their root.
    pub fn new(prefix: &str) -> io::Result<TempDir> {
        let base = std::env::temp_dir();
        for n in 0..1000u32 {
            let path = base.join(format!("{prefix}-{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => {
                    let mut dir = TempDir { path };
                    // If this fails, the drop still removes the directory.
                    dir.path = fs::canonicalize(&dir.path)?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("no free temp directory name"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The URL path of the small file every scenario but the bandwidth one
/// fetches (the sample site's front page, 1.5 KB).
pub const SMALL_PATH: &str = "/index.html";

/// The URL path of the 1 MiB file the bench adds to its copy of the site.
pub const LARGE_PATH: &str = "/bench/1mib.bin";

/// Size of the large file.
pub const LARGE_SIZE: usize = 1 << 20;

/// Builds the document root every server serves: a copy of `www` plus a
/// 1 MiB file for the bandwidth scenario (the bundled site has none, and
/// the bench does not write into the checkout).
pub fn make_site(www: &Path, dir: &Path) -> io::Result<PathBuf> {
    let root = dir.join("www");
    copy_dir(www, &root)?;
    fs::create_dir_all(root.join("bench"))?;
    // Deterministic, incompressible-looking bytes.
    let mut x: u32 = 0x9E37_79B9;
    let data: Vec<u8> = (0..LARGE_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    fs::write(root.join(LARGE_PATH.trim_start_matches('/')), data)?;
    Ok(root)
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if ty.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else if ty.is_file() {
            fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// How a server is started.
#[derive(Debug, Clone)]
pub enum Launch {
    /// A stage binary that keeps the contract (`--addr`, `listening on`).
    Contract {
        /// The binary.
        bin: PathBuf,
        /// Flags after the common ones.
        args: Vec<String>,
    },
    /// nginx with a generated configuration.
    Nginx {
        /// `sendfile on` or `off`.
        sendfile: bool,
        /// `worker_processes`.
        workers: usize,
    },
    /// h2o or lighttpd with a generated configuration.
    Builtin {
        /// Which.
        server: Builtin,
        /// Worker threads (h2o) or processes (lighttpd).
        workers: usize,
    },
    /// A `--peer` shell command with `{port}` and `{root}` placeholders.
    Peer {
        /// The command.
        command: String,
    },
}

/// A server as the report names it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Short name: `stage4-epoll`, `nginx`, `stage5 pass/rr`...
    pub name: String,
    /// What it is, in a few words, for the report.
    pub about: String,
    /// The stage package it comes from (`None` for peers).
    pub stage: Option<&'static str>,
    /// How to start it.
    pub launch: Launch,
}

/// Settings every started server gets.
///
/// Both paths must be absolute ([`start`] refuses relative ones): a server
/// does not resolve a relative path against the bench's working directory
/// (nginx resolves its `-p`, `-c` and configuration paths against its
/// prefix, and a `--peer` command may change directory).
#[derive(Debug, Clone)]
pub struct StartOptions<'a> {
    /// The document root, absolute.
    pub root: &'a Path,
    /// Scratch space (nginx configuration, logs), absolute.
    pub scratch: &'a Path,
    /// Extra flags for contract binaries (timeouts for one scenario).
    pub extra_args: &'a [String],
    /// Keep-alive timeout for nginx, seconds.
    pub keepalive_secs: u32,
    /// Pin the server to these CPUs (`None`: no pinning).
    pub pin: Option<&'a [usize]>,
    /// Pin the bench back to these CPUs after the server started.
    pub pin_back: Option<&'a [usize]>,
    /// Start the server as a reverse proxy to this upstream (the `proxy`
    /// scenario): stage 4 with `--proxy-pass`, nginx with `proxy_pass`.
    pub proxy_to: Option<SocketAddr>,
    /// Serve HTTPS with this certificate and key (PEM): the stages with
    /// `--tls-cert`/`--tls-key`, nginx with `listen … ssl` (the TLS
    /// comparison, [`crate::tls`]).
    pub tls: Option<(&'a Path, &'a Path)>,
}

impl<'a> StartOptions<'a> {
    /// The options the bench starts every server with: no extra flags,
    /// keep-alive connections kept 300 s (the idle ones must outlive a
    /// run), and the servers' CPUs when `pinning` says which.
    pub fn new(root: &'a Path, scratch: &'a Path, pinning: Option<&'a Pinning>) -> Self {
        StartOptions {
            root,
            scratch,
            extra_args: &[],
            keepalive_secs: 300,
            pin: pinning.map(|p| p.server.as_slice()),
            pin_back: pinning.map(|p| p.loadgen.as_slice()),
            proxy_to: None,
            tls: None,
        }
    }
}

/// A running server; killed when dropped.
#[derive(Debug)]
pub struct Running {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Running {
    /// The root process id (the master, for multi-process servers).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the server process is alive.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the server gracefully (SIGTERM), killing it if it has not
    /// exited within 5 s. Returns false if it had to be killed.
    pub fn stop(mut self) -> bool {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !self.alive() {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1 (bound, read and released: a small race that
/// a one-machine bench can live with).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `target`. Its stderr goes to `scratch/NAME.log`.
pub fn start(target: &Target, opts: &StartOptions<'_>) -> io::Result<Running> {
    for (what, path) in [("root", opts.root), ("scratch", opts.scratch)] {
        if !path.is_absolute() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the {what} given to {} must be an absolute path, not {}",
                    target.name,
                    path.display()
                ),
            ));
        }
    }
    let log_name = target.name.replace(['/', ' '], "_");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(opts.scratch.join(format!("{log_name}.log")))?;
    if let Some(cpus) = opts.pin {
        crate::machine::pin_current_thread(cpus)?;
    }
    let spawned = spawn(target, opts, log);
    if let Some(cpus) = opts.pin_back {
        crate::machine::pin_current_thread(cpus)?;
    }
    let (child, ready) = spawned?;
    let mut running = Running {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    running.addr = match ready {
        Ready::Announced(addr) => addr,
        // Not our contract: wait until the chosen port accepts.
        Ready::Port(port) => wait_listening(&mut running, target, port)?,
    };
    Ok(running)
}

/// How the bench learns that a server accepts connections.
enum Ready {
    /// It printed `listening on` with this address.
    Announced(SocketAddr),
    /// It was told to listen on this port; connect until it does.
    Port(u16),
}

fn spawn(target: &Target, opts: &StartOptions<'_>, log: fs::File) -> io::Result<(Child, Ready)> {
    match &target.launch {
        Launch::Contract { bin, args } => {
            let mut cmd = Command::new(bin);
            cmd.arg("--addr")
                .arg("127.0.0.1:0")
                .arg("--root")
                .arg(opts.root)
                .args(["--access-log", "off", "--log-level", "warn"])
                .args(["--grace-period", "1"])
                .args(args)
                .args(opts.extra_args)
                .args(
                    opts.proxy_to
                        .map(|up| vec!["--proxy-pass".to_string(), format!("http://{up}")])
                        .unwrap_or_default(),
                )
                .args(
                    opts.tls
                        .map(|(cert, key)| {
                            vec![
                                "--tls-cert".into(),
                                cert.as_os_str().to_owned(),
                                "--tls-key".into(),
                                key.as_os_str().to_owned(),
                            ]
                        })
                        .unwrap_or_default(),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log);
            let mut child = cmd.spawn()?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| io::Error::other("no stdout"))?;
            // Read the `listening on` line on a thread so that a server that
            // never prints it cannot hang the run.
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let _ = tx.send(line);
                // Keep draining, so a chatty server never blocks on stdout.
                let _ = io::copy(&mut reader, &mut io::sink());
            });
            let line = match rx.recv_timeout(STARTUP_TIMEOUT) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(io::Error::other(format!(
                        "{} printed no `listening on` line",
                        target.name
                    )));
                }
            };
            match parse_listening_line(&line) {
                Some(addr) => Ok((child, Ready::Announced(addr))),
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    Err(io::Error::other(format!(
                        "{} did not start (first line {:?}; see its log)",
                        target.name,
                        line.trim()
                    )))
                }
            }
        }
        Launch::Nginx { sendfile, workers } => {
            let port = free_port()?;
            let dir = opts
                .scratch
                .join(format!("nginx-{}", target.name.replace(['/', ' '], "_")));
            fs::create_dir_all(&dir)?;
            let conf = dir.join("nginx.conf");
            let text = match opts.proxy_to {
                Some(up) => crate::proxy::nginx_proxy_conf(&dir, port, up, 16, *workers),
                None => nginx_conf(
                    &dir,
                    opts.root,
                    port,
                    *workers,
                    *sendfile,
                    opts.keepalive_secs,
                    opts.tls,
                ),
            };
            fs::write(&conf, text)?;
            let child = spawn_nginx(&dir, &conf, log)?;
            Ok((child, Ready::Port(port)))
        }
        Launch::Builtin { .. } | Launch::Peer { .. } if opts.tls.is_some() => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "{}: the bench starts only the stages and nginx with TLS",
                target.name
            ),
        )),
        Launch::Builtin { server, workers } => {
            let port = free_port()?;
            let dir = opts.scratch.join(server.name());
            fs::create_dir_all(&dir)?;
            let conf = dir.join(server.conf_name());
            fs::write(
                &conf,
                server.config(&dir, opts.root, port, *workers, opts.keepalive_secs),
            )?;
            let mut cmd = Command::new(server.program());
            match server {
                Builtin::H2o => cmd.arg("-c").arg(&conf),
                Builtin::Lighttpd => cmd.arg("-D").arg("-f").arg(&conf),
            };
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?;
            Ok((child, Ready::Port(port)))
        }
        Launch::Peer { command } => {
            let port = free_port()?;
            let cmd = command
                .replace("{port}", &port.to_string())
                .replace("{root}", &opts.root.to_string_lossy());
            let child = Command::new("sh")
                .arg("-c")
                .arg(format!("exec {cmd}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?;
            Ok((child, Ready::Port(port)))
        }
    }
}

fn wait_listening(running: &mut Running, target: &Target, port: u16) -> io::Result<SocketAddr> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if !running.alive() {
            return Err(io::Error::other(format!(
                "{} exited at start-up (see its log)",
                target.name
            )));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(addr);
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err(io::Error::other(format!(
        "{} did not accept connections within {STARTUP_TIMEOUT:?}",
        target.name
    )))
}

/// Parses `listening on http://127.0.0.1:8080/`.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = line.trim_end().strip_prefix("listening on ")?;
    let rest = rest.strip_prefix("http://").unwrap_or(rest);
    rest.trim_end_matches('/').parse().ok()
}

/// An nginx configuration equivalent to the stages' defaults: the same
/// root, `index.html`, no access log, `workers` worker processes; with
/// `tls` (certificate, key), HTTPS with TLS 1.2 and 1.3 as the stages
/// serve it, and no session cache (every new connection a full handshake,
/// as with the stages under wrk).
pub fn nginx_conf(
    dir: &Path,
    root: &Path,
    port: u16,
    workers: usize,
    sendfile: bool,
    keepalive_secs: u32,
    tls: Option<(&Path, &Path)>,
) -> String {
    let root = root.display();
    let (ssl, tls_lines) = match tls {
        Some((cert, key)) => (
            " ssl",
            format!(
                "        ssl_certificate {};\n        ssl_certificate_key {};\n        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_session_cache off;\n        ssl_session_tickets off;\n",
                cert.display(),
                key.display()
            ),
        ),
        None => ("", String::new()),
    };
    let sendfile = if sendfile { "on" } else { "off" };
    let common = nginx_http_basics(dir);
    let main = nginx_main(dir, workers);
    format!(
        "# Generated by the bench: nginx as a reference server.
{main}http {{
    access_log off;
    sendfile {sendfile};
    keepalive_timeout {keepalive_secs}s;
    keepalive_requests 100000000;
    server_tokens off;
{common}    server {{
        listen 127.0.0.1:{port}{ssl} backlog=4096;
{tls_lines}        server_name localhost;
        root {root};
        index index.html;
    }}
}}
"
    )
}

/// Starts nginx in the foreground on configuration `conf`, with its prefix
/// and error log in `dir` and its stderr in `log`.
pub fn spawn_nginx(dir: &Path, conf: &Path, log: fs::File) -> io::Result<Child> {
    Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
}

/// The main and `events` contexts every nginx configuration here starts
/// with: `workers` worker processes in the foreground, the pid and error
/// log under `dir`, 16,384 connections a worker.
pub fn nginx_main(dir: &Path, workers: usize) -> String {
    let d = dir.display();
    format!(
        "worker_processes {workers};
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 20000;
events {{
    worker_connections 16384;
}}
"
    )
}

/// The lines of an nginx `http` block every configuration here shares
/// (indented for it): temporary folders under `dir`, so that nginx writes
/// nothing outside it, and the MIME types of the files served.
pub fn nginx_http_basics(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    types {{
        text/html html;
        text/css css;
        text/plain txt;
        application/javascript js;
        application/json json;
        image/png png;
        image/svg+xml svg;
        video/mp4 mp4;
    }}
    default_type application/octet-stream;
"
    )
}

/// The peers besides nginx the bench knows how to configure, measured
/// when installed: each gets the settings nginx gets (the same root and
/// index, no access log, the same keep-alive timeout, as many workers, and
/// `sendfile` where the server has a switch for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// h2o (Debian package `h2o`): `num-threads` event loops in one
    /// process. It has no `sendfile` setting (it reads files with
    /// `pread`).
    H2o,
    /// lighttpd (Debian package `lighttpd`): one event loop per process,
    /// `server.max-worker` processes beyond one, the `sendfile` network
    /// backend.
    Lighttpd,
}

impl Builtin {
    /// Every one, in report order.
    pub const ALL: [Builtin; 2] = [Builtin::H2o, Builtin::Lighttpd];

    /// Its name in the report (also its Debian package).
    pub fn name(self) -> &'static str {
        match self {
            Builtin::H2o => "h2o",
            Builtin::Lighttpd => "lighttpd",
        }
    }

    /// The program on the `PATH`.
    pub fn program(self) -> &'static str {
        self.name()
    }

    fn conf_name(self) -> &'static str {
        match self {
            Builtin::H2o => "h2o.conf",
            Builtin::Lighttpd => "lighttpd.conf",
        }
    }

    /// Its version line (`h2o version 2.2.5`, `lighttpd/1.4.69`), or
    /// `None` when it is not installed.
    pub fn version(self) -> Option<String> {
        let flag = match self {
            Builtin::H2o => "--version",
            Builtin::Lighttpd => "-v",
        };
        let out = Command::new(self.program())
            .arg(flag)
            .stdin(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().next()?.trim();
        // `lighttpd/1.4.69 (ssl) - a light and fast webserver`
        Some(line.split(" (").next().unwrap_or(line).to_string())
    }

    /// Its configuration: listening on `127.0.0.1:port`, serving `root`,
    /// its pid and error log files under `dir`.
    pub fn config(
        self,
        dir: &Path,
        root: &Path,
        port: u16,
        workers: usize,
        keepalive_secs: u32,
    ) -> String {
        let d = dir.display();
        let root = root.display();
        match self {
            // Run as root, h2o switches to `nobody` (so it writes no pid
            // file into the bench's folder).
            Builtin::H2o => format!(
                "# Generated by the bench: h2o as a peer.
num-threads: {workers}
error-log: {d}/error.log
http1-request-timeout: {keepalive_secs}
listen:
  host: 127.0.0.1
  port: {port}
hosts:
  default:
    paths:
      /:
        file.dir: {root}
"
            ),
            Builtin::Lighttpd => {
                let workers = if workers > 1 {
                    format!("server.max-worker = {workers}\n")
                } else {
                    String::new()
                };
                format!(
                    "# Generated by the bench: lighttpd as a peer.
server.document-root = \"{root}\"
server.bind = \"127.0.0.1\"
server.port = {port}
server.pid-file = \"{d}/lighttpd.pid\"
server.errorlog = \"{d}/error.log\"
server.network-backend = \"sendfile\"
server.max-keep-alive-requests = 100000000
server.max-keep-alive-idle = {keepalive_secs}
server.max-fds = 20000
server.tag = \"lighttpd\"
{workers}index-file.names = ( \"index.html\" )
mimetype.assign = ( \".html\" => \"text/html\", \".css\" => \"text/css\", \".txt\" => \"text/plain\", \".js\" => \"application/javascript\", \".json\" => \"application/json\", \".png\" => \"image/png\", \".svg\" => \"image/svg+xml\", \".mp4\" => \"video/mp4\", \"\" => \"application/octet-stream\" )
"
                )
            }
        }
    }
}

/// The version of the `nginx` on the `PATH` (`nginx/1.22.1`, from
/// `nginx -v`), or `None` when there is none.
pub fn nginx_version() -> Option<String> {
    let out = Command::new("nginx")
        .arg("-v")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    // `nginx version: nginx/1.22.1`, on stderr.
    let text = String::from_utf8_lossy(&out.stderr);
    Some(
        text.split_once(':')
            .map_or("nginx", |(_, v)| v.trim())
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relative root or scratch path is refused before anything starts:
    /// a server would resolve it against its own idea of the current
    /// directory (nginx: its prefix), not against ours.
    #[test]
    fn start_refuses_relative_paths() {
        let target = Target {
            name: "peer".into(),
            about: String::new(),
            stage: None,
            launch: Launch::Peer {
                command: "true".into(),
            },
        };
        let opts = StartOptions {
            root: Path::new("/"),
            scratch: Path::new("bench-report/logs"),
            extra_args: &[],
            keepalive_secs: 1,
            pin: None,
            pin_back: None,
            proxy_to: None,
            tls: None,
        };
        let err = start(&target, &opts).expect_err("a relative scratch path");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("bench-report/logs"), "{err}");
    }

    /// The scratch directory's path is absolute.
    #[test]
    fn temp_dirs_are_absolute() {
        let dir = TempDir::new("bench-unit").expect("a temp dir");
        assert!(dir.path.is_absolute(), "{}", dir.path.display());
    }
}
