//! The settings every HTTP stage shares, and the start-up they share.
//!
//! Each stage's `Args` flattens [`HttpConfig`] and adds its own flags (the
//! thread count, the number of event loops, ...), so `--help`, the TOML
//! keys and the defaults are the same everywhere.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::ArgAction;
use serde::{Deserialize, Serialize};

use crate::http::parse::{Limits, MAX_HEADERS};
use crate::http::{Conn, Freshness, Site, StatusPage, StatusSource};
use crate::logging::{AccessLog, LogSettings, Logs};
use crate::signals::Signals;
use crate::stats::Counters;

/// The bundled sample site, found from the source checkout whatever the
/// working directory is.
pub const DEFAULT_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../www");

/// Settings shared by the HTTP stages (2–5).
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone)]
pub struct HttpConfig {
    /// Read settings from this TOML file; its keys are the flag names with
    /// `_` for `-` (e.g. `header_timeout = 5.0`). Flags override the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on; port 0 picks a free port (printed at start-up).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Document root to serve.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT)]
    pub root: PathBuf,

    /// Folder of custom error pages (`404.html`, `500.html`, ...); a relative
    /// path is taken from the root. Missing pages fall back to built-in ones.
    #[arg(long, value_name = "DIR", default_value = "errors")]
    pub error_pages: PathBuf,

    /// List the contents of directories that have no index.html.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub autoindex: bool,

    /// Serve `file.br` / `file.gz` next to `file` to clients that accept them.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub precompressed: bool,

    /// Answer static files through the per-thread open-file cache (as
    /// nginx's `open_file_cache`): a repeated request costs no file-system
    /// call, and a change on disk shows within a second. `false`: every
    /// request asks the file system (the plain path, the same answers).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub open_file_cache: bool,

    /// Answer the `/api/add?a=..&b=..` route.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub api: bool,

    /// Let clients reuse a static file for SECS seconds without asking
    /// again: `Cache-Control: max-age=SECS` and `Expires` (Date + SECS) on
    /// its 200, 206 and 304 answers, as nginx's `expires`. Default: neither.
    #[arg(long, value_name = "SECS")]
    pub expires: Option<u32>,

    /// Send `Cache-Control: VALUE` verbatim on static files' 200, 206 and
    /// 304 answers (e.g. `"public, max-age=60, immutable"`); with
    /// --expires it replaces the `max-age` header, and `Expires` stays.
    #[arg(long, value_name = "VALUE")]
    pub cache_control: Option<String>,

    /// Requests per second each client address may make (a token bucket,
    /// as nginx's `limit_req ... nodelay`); beyond it, `429 Too Many
    /// Requests` with `Retry-After`. 0: no limit. (Per process: stage 5's
    /// workers each keep their own table.)
    #[arg(long, value_name = "R", default_value_t = 0.0)]
    pub rate_limit: f64,

    /// Requests a client may make at once before --rate-limit applies
    /// (the bucket's size); 0 means one second's worth of the rate.
    #[arg(long, value_name = "B", default_value_t = 0)]
    pub rate_burst: u32,

    /// Seconds a client has to send a complete request head (then 408).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub header_timeout: f64,

    /// Seconds an idle keep-alive connection is kept open.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub keepalive_timeout: f64,

    /// Seconds a send may make no progress before the connection is dropped.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub send_timeout: f64,

    /// Seconds allowed for in-flight responses after SIGTERM/SIGINT.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub grace_period: f64,

    /// Seconds an idle keep-alive connection stays open, once the server
    /// is shutting down (or, in stage 5, a worker is retired by a reload),
    /// for one last request, answered with `Connection: close`: a request
    /// already on its way is answered instead of reset. 0 closes idle
    /// connections at once.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub last_request: f64,

    /// Longest request line in bytes (longer: 414).
    #[arg(long, value_name = "BYTES", default_value_t = 8192)]
    pub max_request_line: usize,

    /// Largest request head in bytes (larger: 431).
    #[arg(long, value_name = "BYTES", default_value_t = 16384)]
    pub max_header_bytes: usize,

    /// Most header fields in a request (more: 431; at most 128).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_headers: usize,

    /// Largest request body in bytes the server reads and discards (larger: 413).
    #[arg(long, value_name = "BYTES", default_value_t = 1_048_576)]
    pub max_body: u64,

    /// Access log (Combined Log Format): a file, `-` for stderr, or `off`.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub access_log: String,

    /// Error log: a file, or `-` for stderr.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub error_log: String,

    /// Error log level: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,

    /// Rotate a log file once it passes this many bytes; 0 never rotates
    /// (use logrotate and SIGUSR1 instead).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub log_max_bytes: u64,

    /// Rotated log files to keep (`access.log.1` ... `access.log.N`).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub log_keep: u32,

    /// Path of the status page (Prometheus text), for stages that have one;
    /// `off` disables it. Only loopback clients get it unless --status-remote
    /// or --status-allow.
    #[arg(long, value_name = "PATH", default_value = "/server-status")]
    pub status_path: String,

    /// Length of the kernel's accept queue (listen backlog) in front of the
    /// server; Linux caps it at net.core.somaxconn.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub backlog: i32,

    /// Serve as this user: the server starts as root, binds (a port below
    /// 1024 works) and opens its logs, then drops to NAME for good (stage
    /// 5: in each worker; the master stays root).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// With --user: this group instead of the user's primary group.
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,

    /// chroot(2) into DIR before dropping privileges; --root and
    /// --error-pages are then paths inside it (the logs are opened before,
    /// outside).
    #[arg(long, value_name = "DIR")]
    pub chroot: Option<PathBuf>,

    /// Lower the soft open-files limit to N at start-up (0: raise it to the
    /// hard limit). For tests that provoke EMFILE.
    #[arg(long, value_name = "N", default_value_t = 0, hide = true)]
    pub max_fds: u64,

    /// Answer the status page to clients that are not on loopback too.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = ArgAction::Set)]
    pub status_remote: bool,

    /// Answer the status page to these addresses or networks too
    /// (comma-separated, `198.18.0.2,10.0.0.0/8`): a balancer's health
    /// checks, a monitoring host; everyone else gets 404.
    #[arg(long, value_name = "NETS", value_delimiter = ',')]
    #[serde(default)]
    pub status_allow: Vec<crate::http::site::Net>,

    /// Serve HTTPS: the certificate chain (PEM) to present; needs
    /// --tls-key. TLS 1.3 and 1.2, ALPN `http/1.1`. Files are then read
    /// and encrypted in chunks instead of sent with sendfile(2).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// With --tls-cert: also listen for plain HTTP on PORT (at --addr's
    /// IP) and answer every request there with a 301 to the same path on
    /// https (0 picks a free port; the port is announced on stdout).
    #[arg(long, value_name = "PORT", requires = "tls_cert")]
    pub tls_redirect: Option<u16>,
}

/// The timeouts, checked and converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To receive a complete head once a request has begun or a connection opened.
    pub header: Duration,
    /// To keep an idle keep-alive connection.
    pub keepalive: Duration,
    /// For a send to make progress.
    pub send: Duration,
    /// To finish in-flight work at shutdown.
    pub grace: Duration,
    /// At shutdown, for an idle keep-alive connection's last request.
    pub last_request: Duration,
}

/// What every HTTP stage has running once it has started.
#[derive(Debug)]
pub struct Server {
    /// The site, shared by every thread.
    pub site: Arc<Site>,
    /// The signal flags and the self-pipe.
    pub signals: Signals,
    /// The log writer (flushes on drop).
    pub logs: Logs,
    /// The timeouts.
    pub timeouts: Timeouts,
    /// The TLS configuration, with --tls-cert and --tls-key: every
    /// accepted connection then starts a [`crate::tls::Session`].
    pub tls: Option<Arc<crate::tls::ServerConfig>>,
}

// ANCHOR: reload
/// Settings a running server holds in a way a reload cannot change: the
/// socket it listens on, and who it runs as. Everything else of
/// [`HttpConfig`] applies to the next request (the log files to the next
/// line); a stage's own flags (pool sizes, loops) need a restart too.
/// The certificate and key are loaded once, before the privileges are
/// dropped (a key file is readable by root only).
pub const RESTART_ONLY: [&str; 9] = [
    "addr",
    "backlog",
    "user",
    "group",
    "chroot",
    "max_fds",
    "tls_cert",
    "tls_key",
    "tls_redirect",
];

/// The settings of the log files: a reload that changes one of them moves
/// the logs ([`Logs::switch`]).
const LOG_KEYS: [&str; 5] = [
    "access_log",
    "error_log",
    "log_level",
    "log_max_bytes",
    "log_keep",
];

/// SIGHUP in a one-process stage (2–4): re-reads `argv` — the command line
/// and its `--config` file — as the stage's configuration `C`, and builds
/// the site it describes next to the running one's access log, status page
/// and counters. Returns the new configuration, site and timeouts to serve
/// the next requests with; `None` (logged) if the file does not parse or
/// the site cannot be built, and the running configuration stays. The log
/// says what changed, and what would need a restart (kept as it runs).
pub fn reload<C>(
    argv: &[std::ffi::OsString],
    running: &C,
    http: fn(&C) -> &HttpConfig,
    site: &Site,
    logs: &crate::logging::LogControl,
) -> Option<(C, Site, Timeouts)>
where
    C: clap::Parser + Serialize + serde::de::DeserializeOwned,
{
    let keep = |e: &dyn std::fmt::Display| -> Option<(C, Site, Timeouts)> {
        log::error!("reload: {e}; keeping the running configuration");
        site.counters.reloads_failed.fetch_add(1, Ordering::Relaxed);
        None
    };
    let new: C = match crate::config::load_from(argv.iter().cloned()) {
        Ok(c) => c,
        Err(e) => return keep(&e),
    };
    let shared = table_keys(http(running));
    let applies = |key: &str| shared.iter().any(|k| k == key) && !RESTART_ONLY.contains(&key);
    let Reloaded {
        config: new,
        changed,
        restart,
    } = match compare(running, new, applies) {
        Ok(r) => r,
        Err(e) => return keep(&e),
    };
    let config = http(&new);
    let timeouts = match config.timeouts() {
        Ok(t) => t,
        Err(e) => return keep(&e),
    };
    let status = site.status.as_ref().map(|p| Arc::clone(&p.source));
    let mut fresh = match config.site(&site.server, logs.access(), status) {
        Ok(s) => s,
        Err(e) => return keep(&e),
    };
    fresh.counters = site.counters;
    // Last, because it cannot be undone: the log files move.
    if changed.iter().any(|k| LOG_KEYS.contains(&k.as_str())) {
        if let Err(e) = config.log_settings().and_then(|s| logs.switch(&s)) {
            return keep(&e);
        }
    }
    log_reload(&changed, &restart, "");
    site.counters
        .reloads_applied
        .fetch_add(1, Ordering::Relaxed);
    Some((new, fresh, timeouts))
}

/// A re-read configuration compared with the running one
/// ([`compare`]).
#[derive(Debug)]
pub struct Reloaded<C> {
    /// The configuration to run: the new one, with every setting that
    /// cannot change without a restart copied back from the running one.
    pub config: C,
    /// The settings (their TOML keys) that change, in order.
    pub changed: Vec<String>,
    /// The settings that were changed in the file but need a restart:
    /// they keep their running values.
    pub restart: Vec<String>,
}

/// Compares `new` with `running` setting by setting (their TOML keys):
/// a changed key for which `applies` says yes is taken; any other changed
/// key keeps its running value and is listed as needing a restart. Every
/// stage's reload uses it, so every stage's log says the same things.
pub fn compare<C>(
    running: &C,
    new: C,
    applies: impl Fn(&str) -> bool,
) -> Result<Reloaded<C>, toml::de::Error>
where
    C: Serialize + serde::de::DeserializeOwned,
{
    let table = |c: &C| toml::Table::try_from(c).unwrap_or_default();
    let (old_t, mut new_t) = (table(running), table(&new));
    let mut changed = Vec::new();
    let mut restart = Vec::new();
    let keys: std::collections::BTreeSet<String> =
        old_t.keys().chain(new_t.keys()).cloned().collect();
    for key in keys {
        if old_t.get(&key) == new_t.get(&key) {
            continue;
        }
        if applies(&key) {
            changed.push(key);
            continue;
        }
        // Keep what runs: copy the running value (or its absence) back.
        match old_t.get(&key) {
            Some(v) => new_t.insert(key.clone(), v.clone()),
            None => new_t.remove(&key),
        };
        restart.push(key);
    }
    let config = toml::Value::Table(new_t).try_into()?;
    Ok(Reloaded {
        config,
        changed,
        restart,
    })
}

// ANCHOR_END: reload

/// The log lines of a reload that is applied: what needs a restart (a
/// warning), then what changed, or that nothing did; `then` ends the
/// second line (stage 5: what it does next).
pub fn log_reload(changed: &[String], restart: &[String], then: &str) {
    if !restart.is_empty() {
        log::warn!(
            "reload: a restart is needed to change {}; keeping the running values",
            restart.join(", ")
        );
    }
    if changed.is_empty() {
        log::info!("reload: configuration re-read; nothing to change{then}");
    } else {
        log::info!("reload: applied {}{then}", changed.join(", "));
    }
}

/// What a reload replaces in a stage with many threads (stage 3): the site
/// and the timeouts, behind a lock taken for an `Arc` clone when a
/// connection (or a hand-off) starts; the requests in flight finish with
/// what they started with.
#[derive(Debug)]
pub struct Live {
    now: std::sync::Mutex<(Arc<Site>, Timeouts)>,
}

impl Live {
    /// Starts with `site` and `timeouts`.
    pub fn new(site: Arc<Site>, timeouts: Timeouts) -> Live {
        Live {
            now: std::sync::Mutex::new((site, timeouts)),
        }
    }

    /// The site to serve now.
    pub fn site(&self) -> Arc<Site> {
        Arc::clone(&self.lock().0)
    }

    /// The timeouts now.
    pub fn timeouts(&self) -> Timeouts {
        self.lock().1
    }

    /// A reload's result, for the next connections.
    pub fn set(&self, site: Arc<Site>, timeouts: Timeouts) {
        *self.lock() = (site, timeouts);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Arc<Site>, Timeouts)> {
        // A panicking holder cannot leave a pair of values half-written.
        self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The keys of `config` as a TOML table (the flags [`HttpConfig`] owns).
fn table_keys(config: &HttpConfig) -> Vec<String> {
    // Options that are unset are missing from the table: list them too.
    let mut keys: Vec<String> = toml::Table::try_from(config)
        .unwrap_or_default()
        .keys()
        .cloned()
        .collect();
    let cmd = <HttpConfig as clap::Args>::augment_args(clap::Command::new(env!("CARGO_PKG_NAME")));
    keys.extend(cmd.get_arguments().map(|a| a.get_id().as_str().to_string()));
    keys
}

/// `--NAME SECS` as a duration, where 0 is allowed (it means "at once").
pub fn secs_or_zero(name: &str, v: f64) -> io::Result<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--{name} must be a number of seconds >= 0, not {v}"),
        )
    })
}

fn secs(name: &str, v: f64) -> io::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--{name} must be a positive number of seconds, not {v}"),
            )
        })
}

fn file_or_stderr(s: &str) -> Option<PathBuf> {
    (s != "-").then(|| PathBuf::from(s))
}

impl HttpConfig {
    /// The timeouts, or an error naming the bad flag.
    pub fn timeouts(&self) -> io::Result<Timeouts> {
        Ok(Timeouts {
            header: secs("header-timeout", self.header_timeout)?,
            keepalive: secs("keepalive-timeout", self.keepalive_timeout)?,
            send: secs("send-timeout", self.send_timeout)?,
            grace: secs("grace-period", self.grace_period)?,
            last_request: secs_or_zero("last-request", self.last_request)?,
        })
    }

    /// The request limits.
    pub fn limits(&self) -> io::Result<Limits> {
        if self.max_headers == 0 || self.max_headers > MAX_HEADERS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--max-headers must be between 1 and {MAX_HEADERS}"),
            ));
        }
        Ok(Limits {
            max_request_line: self.max_request_line,
            max_head: self.max_header_bytes,
            max_headers: self.max_headers,
            max_body: self.max_body,
        })
    }

    /// The TLS configuration of --tls-cert and --tls-key (ALPN
    /// `http/1.1`), or `None` without them.
    pub fn tls(&self) -> io::Result<Option<Arc<crate::tls::ServerConfig>>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                crate::tls::server_config(cert, key, &[crate::tls::ALPN_HTTP1]).map(Some)
            }
            (None, None) => Ok(None),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--tls-cert and --tls-key go together",
            )),
        }
    }

    /// The log settings.
    pub fn log_settings(&self) -> io::Result<LogSettings> {
        let level = crate::logging::parse_level(&self.log_level).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown --log-level {}", self.log_level),
            )
        })?;
        Ok(LogSettings {
            access_off: self.access_log == "off",
            access_log: file_or_stderr(&self.access_log),
            error_log: file_or_stderr(&self.error_log),
            level,
            max_bytes: self.log_max_bytes,
            keep: self.log_keep,
        })
    }

    /// What a stage's `main` calls first: installs signal handlers, starts
    /// the logs and loads the site, with a status page filled by `status`
    /// and the process's own counters; on an error, prints it and exits.
    /// Call it from the main thread before starting any other thread.
    /// `server` is the `Server` header value (the stage's name).
    pub fn start_or_exit(&self, server: &str, status: Arc<dyn StatusSource>) -> Server {
        self.start_with_status(server, Some(status), &crate::stats::PROCESS)
            .unwrap_or_else(|e| fatal(&e))
    }

    /// Installs signal handlers, starts the logs and loads the site, for a
    /// stage that serves a status page filled by `status` (at
    /// `--status-path`, unless that is `off`) and counts into `counters`
    /// (stage 5: its scoreboard slot). `server` is the `Server` header value.
    pub fn start_with_status(
        &self,
        server: &str,
        status: Option<Arc<dyn StatusSource>>,
        counters: &'static Counters,
    ) -> io::Result<Server> {
        let timeouts = self.timeouts()?;
        let signals = Signals::install()?;
        let logs = Logs::start(&self.log_settings()?, signals.reopen_flag())?;
        if let Ok((soft, _)) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        {
            log::debug!("open files limit: {soft}");
        }
        // The key is read while the process may still read it.
        let tls = self.tls()?;
        if tls.is_some() {
            counters.tls_enabled.store(1, Ordering::Relaxed);
        }
        // ANCHOR: drop_privileges
        // Bound already (the caller did), logs open: now become --user,
        // inside --chroot, before anything a client sends is read.
        let target = crate::privs::resolve(self.user.as_deref(), self.group.as_deref())?;
        crate::privs::drop_to(target.as_ref(), self.chroot.as_deref())?;
        if let Some(t) = &target {
            log::info!("running as {} (uid {}, gid {})", t.name, t.uid, t.gid);
        }
        // ANCHOR_END: drop_privileges
        let mut site = self.site(server, logs.access(), status)?;
        site.counters = counters;
        counters.mark_started();
        log::info!("{server} serving {}", site.root.display());
        Ok(Server {
            site: Arc::new(site),
            signals,
            logs,
            timeouts,
            tls,
        })
    }

    /// Builds the [`Site`] these settings describe (also used to re-read a
    /// configuration on reload).
    pub fn site(
        &self,
        server: &str,
        access_log: AccessLog,
        status: Option<Arc<dyn StatusSource>>,
    ) -> io::Result<Site> {
        let limits = self.limits()?;
        let mut site = Site::new(&self.root, server, Some(&self.error_pages), access_log)?;
        site.limits = limits;
        site.autoindex = self.autoindex;
        site.precompressed = self.precompressed;
        site.open_file_cache = self.open_file_cache;
        site.api = self.api;
        if let Some(value) = &self.cache_control {
            Freshness::check_cache_control(value)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        site.freshness = Freshness {
            expires: self.expires,
            cache_control: self.cache_control.clone(),
        };
        if !(self.rate_limit.is_finite() && self.rate_limit >= 0.0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--rate-limit {}: not a rate", self.rate_limit),
            ));
        }
        site.rate_limit = (self.rate_limit > 0.0)
            .then(|| crate::http::ratelimit::RateLimit::new(self.rate_limit, self.rate_burst));
        site.status = match status {
            Some(source) if self.status_path != "off" && self.status_path.starts_with('/') => {
                Some(StatusPage {
                    path: self.status_path.clone(),
                    allow_remote: self.status_remote,
                    allow: self.status_allow.clone(),
                    source,
                })
            }
            _ => None,
        };
        Ok(site)
    }
}

/// Binds the listening socket for `config`, with its `--backlog`, and
/// raises the open-files limit (every connection is a descriptor): the
/// start-up every stage with one listener shares. Errors are fatal.
pub fn listen(config: &HttpConfig) -> io::Result<std::net::TcpListener> {
    let want = (config.max_fds > 0).then_some(config.max_fds);
    // Called before the logs start (binding comes first, as root): the
    // limit is logged once they have ([`HttpConfig::start_with_status`]).
    if let Err(e) = crate::limits::set_fd_limit(want) {
        eprintln!("warning: cannot set the open files limit: {e}");
    }
    let listener = std::net::TcpListener::bind(config.addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.addr)))?;
    crate::limits::set_backlog(&listener, config.backlog)
        .map_err(|e| io::Error::other(format!("--backlog {}: {e}", config.backlog)))?;
    Ok(listener)
}

/// Prints the one line the contract promises once the server accepts
/// connections, and flushes it: tests and scripts read the port from it.
pub fn announce(addr: SocketAddr) {
    let mut out = io::stdout().lock();
    // If stdout is gone there is nobody to tell; keep serving.
    let _ = writeln!(out, "listening on http://{addr}/");
    let _ = out.flush();
}

/// Logs a fatal start-up error and exits with status 1.
pub fn fatal(e: &dyn std::fmt::Display) -> ! {
    eprintln!("error: {e}");
    std::process::exit(1);
}

// ANCHOR: reject_busy
/// Answers a connection the server has no room for: `503` with
/// `Retry-After`, then close (stage 3's acceptor when its queue is full,
/// stage 5's master when every worker is). Runs on the accepting thread, so it must never
/// block: the socket is made non-blocking, the response (a few hundred
/// bytes, which a new socket's empty send buffer always takes) is written
/// once, and request bytes that already arrived are read and thrown away,
/// so that closing sends a FIN rather than a RST that could destroy the
/// response in flight.
pub fn reject_busy(mut stream: TcpStream, peer: SocketAddr, site: &Site, retry_after: u32) {
    let mut out = Vec::with_capacity(1024);
    Conn::new(peer.ip()).reject_busy(site, retry_after, &mut out);
    let result = stream.set_nonblocking(true).and_then(|()| {
        discard_pending(&mut stream);
        stream.write_all(&out)?;
        stream.shutdown(Shutdown::Write)
    });
    match result {
        Ok(()) => log::debug!("{peer}: no room, answered 503"),
        Err(e) => log::debug!("{peer}: no room, 503 not sent: {e}"),
    }
}
// ANCHOR_END: reject_busy

/// Reads and drops whatever a non-blocking socket has received (at most
/// 64 KiB), until it would block.
fn discard_pending(stream: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary's arguments: the shared flags and nothing else.
    #[derive(clap::Parser, Serialize, Deserialize, Debug)]
    struct Args {
        #[command(flatten)]
        #[serde(flatten)]
        http: HttpConfig,
    }

    fn site_from(args: &[&str]) -> Site {
        let argv = std::iter::once("test").chain(args.iter().copied());
        let args: Args = crate::config::load_from(argv).unwrap();
        args.http.site("test", AccessLog::disabled(), None).unwrap()
    }

    /// `--open-file-cache` and its TOML key reach the site, the flag over
    /// the file; the cache is on by default.
    #[test]
    fn the_open_file_cache_switch_reaches_the_site() {
        assert!(site_from(&[]).open_file_cache);
        assert!(!site_from(&["--open-file-cache", "false"]).open_file_cache);
        let file =
            std::env::temp_dir().join(format!("open-file-cache-{}.toml", std::process::id()));
        std::fs::write(&file, "open_file_cache = false\n").unwrap();
        let path = file.to_str().unwrap();
        let from_file = site_from(&["--config", path]).open_file_cache;
        let flag_wins = site_from(&["--config", path, "--open-file-cache", "true"]).open_file_cache;
        let _ = std::fs::remove_file(&file);
        assert!(!from_file);
        assert!(flag_wins);
    }
}
