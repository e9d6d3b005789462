//! Logging: an error log behind the `log` facade and an access log in the
//! Combined Log Format, both to stderr or to files with size-based rotation
//! and reopen-on-SIGUSR1.
//!
//! The access log is written on every request, so request handling must
//! never wait for the disk: a handler formats its line into a shared
//! in-memory buffer (a short critical section, no allocation once the buffer
//! has grown), and a background thread swaps the buffer out and writes it,
//! several times a second. If the disk stalls and the buffer passes
//! [`MAX_PENDING`], new lines are dropped and counted rather than letting
//! memory grow or requests block. The error log is rare and written
//! synchronously, so that nothing is lost when a process dies.
//!
//! A forking server (stage 5) must start the writer thread in each worker,
//! after `fork`: threads do not survive it.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Access-log bytes buffered before new lines are dropped.
pub const MAX_PENDING: usize = 4 * 1024 * 1024;
/// How often the writer thread flushes the access log and checks for reopen.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// The writer flushes early once this much is buffered.
const FLUSH_EARLY: usize = 64 * 1024;

/// Where log lines go, with rotation.
#[derive(Debug)]
pub struct LogFile {
    /// `None` for stderr.
    path: Option<PathBuf>,
    /// The open file (`None` for stderr, or after a failed reopen).
    file: Option<File>,
    /// Bytes in the current file, to decide rotation.
    size: u64,
    /// Rotate when the file would pass this size; 0 disables rotation.
    max_bytes: u64,
    /// Rotated files to keep (`log.1` … `log.N`).
    keep: u32,
}

impl LogFile {
    /// Opens (appending) `path`, or stderr for `None`.
    pub fn open(path: Option<&Path>, max_bytes: u64, keep: u32) -> io::Result<LogFile> {
        let mut f = LogFile {
            path: path.map(Path::to_path_buf),
            file: None,
            size: 0,
            max_bytes,
            keep,
        };
        f.reopen()?;
        Ok(f)
    }

    /// Closes and reopens the file at its path (after an external rotation).
    pub fn reopen(&mut self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        self.file = None;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("log file {}: {e}", path.display())))?;
        self.size = file.metadata().map_or(0, |m| m.len());
        self.file = Some(file);
        Ok(())
    }

    /// Renames `log` → `log.1` → `log.2` …, dropping the oldest, and opens
    /// a fresh `log`.
    fn rotate(&mut self) -> io::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let numbered = |n: u32| {
            let mut s = path.clone().into_os_string();
            s.push(format!(".{n}"));
            PathBuf::from(s)
        };
        if self.keep == 0 {
            let _ = std::fs::remove_file(&path);
        } else {
            let _ = std::fs::remove_file(numbered(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&path, numbered(1))?;
        }
        self.reopen()
    }

    /// Writes whole lines, rotating first if they would overflow the file.
    pub fn write_lines(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.path.is_none() {
            return io::stderr().lock().write_all(bytes);
        }
        if self.max_bytes > 0 && self.size > 0 && self.size + bytes.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        match &mut self.file {
            Some(f) => {
                f.write_all(bytes)?;
                self.size += bytes.len() as u64;
                Ok(())
            }
            None => self.reopen(),
        }
    }
}

/// Lines waiting for the writer thread.
#[derive(Debug, Default)]
struct Pending {
    buf: Vec<u8>,
    dropped: u64,
    stop: bool,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Whether handlers write access-log lines (`--access-log off`: no).
    on: AtomicBool,
    /// A new access-log file from a reload, for the writer to take.
    switch: Mutex<Option<Option<LogFile>>>,
}

fn lock(m: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    // A panic while holding this lock can only come from a bug in a format
    // call; the buffer is still a valid Vec, so keep logging.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A handle for writing access-log lines; cheap to clone, possibly disabled.
#[derive(Debug, Clone, Default)]
pub struct AccessLog {
    shared: Option<Arc<Shared>>,
}

/// One access-log entry.
#[derive(Debug, Clone, Copy)]
pub struct AccessEntry<'a> {
    /// The client's address.
    pub peer: IpAddr,
    /// The request line as received, or empty if none was parsed.
    pub request_line: &'a [u8],
    /// The status sent.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// The `Referer` header.
    pub referer: Option<&'a [u8]>,
    /// The `User-Agent` header.
    pub user_agent: Option<&'a [u8]>,
}

impl AccessLog {
    /// An access log that writes nothing (`--access-log off`).
    pub fn disabled() -> AccessLog {
        AccessLog { shared: None }
    }

    /// Whether lines are written at all.
    pub fn enabled(&self) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|s| s.on.load(Ordering::Relaxed))
    }

    /// Appends one line in the Combined Log Format:
    /// `127.0.0.1 - - [22/Nov/2026:01:49:35 +0000] "GET / HTTP/1.1" 200 512 "-" "curl/8.14.1"`.
    pub fn log(&self, e: &AccessEntry<'_>) {
        let Some(shared) = &self.shared else {
            return;
        };
        if !shared.on.load(Ordering::Relaxed) {
            return;
        }
        let mut p = lock(&shared.pending);
        if p.buf.len() >= MAX_PENDING {
            p.dropped += 1;
            return;
        }
        let buf = &mut p.buf;
        crate::time::with_log_date(|date| {
            let _ = write!(buf, "{} - - [{date}] \"", e.peer);
        });
        if e.request_line.is_empty() {
            buf.push(b'-');
        } else {
            escape_into(buf, e.request_line);
        }
        let _ = write!(buf, "\" {} ", e.status);
        if e.bytes == 0 {
            buf.push(b'-');
        } else {
            let _ = write!(buf, "{}", e.bytes);
        }
        for field in [e.referer, e.user_agent] {
            buf.extend_from_slice(b" \"");
            match field {
                Some(v) if !v.is_empty() => escape_into(buf, v),
                _ => buf.push(b'-'),
            }
            buf.push(b'"');
        }
        buf.push(b'\n');
        if buf.len() >= FLUSH_EARLY {
            shared.wake.notify_one();
        }
    }
}

/// Escapes a header value for a quoted log field the way nginx does:
/// `"` and `\` get a backslash, other non-printable bytes become `\xHH`.
fn escape_into(buf: &mut Vec<u8>, value: &[u8]) {
    for &b in value {
        match b {
            b'"' | b'\\' => buf.extend_from_slice(&[b'\\', b]),
            0x20..=0x7e => buf.push(b),
            _ => {
                let _ = write!(buf, "\\x{b:02X}");
            }
        }
    }
}

/// The error log: a `log::Log` implementation writing
/// `2026-11-22T01:49:35Z WARN  message` lines.
struct ErrorLogger {
    file: Arc<Mutex<LogFile>>,
}

impl log::Log for ErrorLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        // The facade's maximum, which a reload may change.
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let c = crate::time::Civil::from_unix(crate::time::unix_now());
        let mut line = String::with_capacity(128);
        let _ = writeln!(
            line,
            "{}-{:02}-{:02}T{:02}:{:02}:{:02}Z {:<5} [{}] {}",
            c.year,
            c.month,
            c.day,
            c.hour,
            c.min,
            c.sec,
            record.level(),
            std::process::id(),
            record.args()
        );
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.write_lines(line.as_bytes());
    }

    fn flush(&self) {}
}

/// The error log of this process, once installed. A forked child inherits
/// it (and its descriptor), so parent and child log through the same code.
static ERROR_LOG: OnceLock<Arc<Mutex<LogFile>>> = OnceLock::new();

/// Opens the error log and installs it as the `log` facade's logger, once
/// per process; later calls return the first one. A process that must not
/// start threads (stage 5's master, which forks) calls this instead of
/// [`Logs::start`].
pub fn init_error_log(s: &LogSettings) -> io::Result<Arc<Mutex<LogFile>>> {
    if let Some(f) = ERROR_LOG.get() {
        return Ok(Arc::clone(f));
    }
    let file = Arc::new(Mutex::new(LogFile::open(
        s.error_log.as_deref(),
        s.max_bytes,
        s.keep,
    )?));
    let file = Arc::clone(ERROR_LOG.get_or_init(|| file));
    let logger = ErrorLogger {
        file: Arc::clone(&file),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(s.level);
    }
    Ok(file)
}

/// A reload: the error log moves to `s.error_log` (with its rotation
/// settings) and logs at `s.level` from the next line on. The new file is
/// opened first: if it cannot be, nothing changes.
pub fn switch_error_log(s: &LogSettings) -> io::Result<()> {
    let Some(current) = ERROR_LOG.get() else {
        return Ok(());
    };
    let fresh = LogFile::open(s.error_log.as_deref(), s.max_bytes, s.keep)?;
    *current.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
    log::set_max_level(s.level);
    Ok(())
}

/// Reopens the error log file (SIGUSR1), for a process without a
/// [`Logs`] writer thread.
pub fn reopen_error_log() {
    if let Some(f) = ERROR_LOG.get() {
        let reopened = f.lock().unwrap_or_else(|e| e.into_inner()).reopen();
        if let Err(e) = reopened {
            eprintln!("reopening the error log: {e}");
        }
    }
}

/// What [`Logs::start`] needs to know.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Access log file; `None` for stderr. Ignored when `access_off`.
    pub access_log: Option<PathBuf>,
    /// No access log at all.
    pub access_off: bool,
    /// Error log file; `None` for stderr.
    pub error_log: Option<PathBuf>,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: log::LevelFilter,
    /// Rotate a log file when it passes this many bytes (0: never).
    pub max_bytes: u64,
    /// Rotated files to keep.
    pub keep: u32,
}

/// The running logs: the access-log handle and the writer thread. Dropping
/// it flushes what is buffered and stops the thread.
#[derive(Debug)]
pub struct Logs {
    access: AccessLog,
    /// Shared with the writer thread (also when the access log is off: the
    /// thread still reopens the error log and must be told to stop).
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Logs {
    /// Opens the files, installs the error logger (once per process; later
    /// calls keep the first logger) and starts the writer thread, which also
    /// reopens both files whenever `reopen` is set (SIGUSR1).
    pub fn start(s: &LogSettings, reopen: Arc<AtomicBool>) -> io::Result<Logs> {
        let error_file = init_error_log(s)?;
        let access_file = if s.access_off {
            None
        } else {
            Some(LogFile::open(s.access_log.as_deref(), s.max_bytes, s.keep)?)
        };
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            on: AtomicBool::new(access_file.is_some()),
            switch: Mutex::new(None),
        });
        let access = AccessLog {
            shared: Some(Arc::clone(&shared)),
        };
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer_thread(&thread_shared, access_file, &error_file, &reopen))?;
        Ok(Logs {
            access,
            shared,
            thread: Some(thread),
        })
    }

    /// A handle for request handlers.
    pub fn access(&self) -> AccessLog {
        self.access.clone()
    }

    /// What a reload needs of the logs, for another thread to keep.
    pub fn control(&self) -> LogControl {
        LogControl {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A handle on the running [`Logs`] for a reload: the access-log handle,
/// and moving the files. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LogControl {
    shared: Arc<Shared>,
}

impl LogControl {
    /// A handle for request handlers (as [`Logs::access`]).
    pub fn access(&self) -> AccessLog {
        AccessLog {
            shared: Some(Arc::clone(&self.shared)),
        }
    }

    /// A reload: the access log moves to `s.access_log` (or stops, or
    /// starts), the error log to `s.error_log`, at `s.level`. The files are
    /// opened here, first: if one cannot be, nothing changes. Lines
    /// already buffered go to the old access-log file.
    pub fn switch(&self, s: &LogSettings) -> io::Result<()> {
        let access = if s.access_off {
            None
        } else {
            Some(LogFile::open(s.access_log.as_deref(), s.max_bytes, s.keep)?)
        };
        switch_error_log(s)?;
        *self.shared.switch.lock().unwrap_or_else(|e| e.into_inner()) = Some(access);
        self.shared.on.store(!s.access_off, Ordering::Relaxed);
        self.shared.wake.notify_one();
        Ok(())
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        lock(&self.shared.pending).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn writer_thread(
    shared: &Shared,
    mut access: Option<LogFile>,
    error: &Mutex<LogFile>,
    reopen: &AtomicBool,
) {
    let mut spare = Vec::new();
    loop {
        let (stop, dropped) = {
            let mut p = lock(&shared.pending);
            if p.buf.len() < FLUSH_EARLY && !p.stop {
                p = shared
                    .wake
                    .wait_timeout(p, FLUSH_INTERVAL)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            // Swap buffers: the handlers get an empty one with capacity,
            // and the disk write happens outside the lock.
            std::mem::swap(&mut p.buf, &mut spare);
            (p.stop, std::mem::take(&mut p.dropped))
        };
        if let Some(file) = &mut access {
            if let Err(e) = file.write_lines(&spare) {
                log::error!("access log: {e}");
            }
        }
        spare.clear();
        if let Some(next) = shared
            .switch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            access = next;
        }
        if dropped > 0 {
            log::warn!("access log: dropped {dropped} lines (the disk is not keeping up)");
        }
        if reopen.swap(false, Ordering::SeqCst) {
            if let Some(file) = &mut access {
                if let Err(e) = file.reopen() {
                    log::error!("reopening the access log: {e}");
                }
            }
            // The guard must be gone before `log::info!` below, which takes
            // the same lock.
            let reopened = error.lock().unwrap_or_else(|e| e.into_inner()).reopen();
            if let Err(e) = reopened {
                eprintln!("reopening the error log: {e}");
            }
            log::info!("log files reopened");
        }
        if stop {
            return;
        }
    }
}

/// Parses a log level name.
pub fn parse_level(s: &str) -> Option<log::LevelFilter> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("logtest-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn combined_log_format_with_escapes() {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            on: AtomicBool::new(true),
            switch: Mutex::new(None),
        });
        let log = AccessLog {
            shared: Some(Arc::clone(&shared)),
        };
        log.log(&AccessEntry {
            peer: "127.0.0.1".parse().unwrap(),
            request_line: b"GET /a\"b HTTP/1.1",
            status: 200,
            bytes: 512,
            referer: None,
            user_agent: Some(b"curl/8 \x01"),
        });
        log.log(&AccessEntry {
            peer: "::1".parse().unwrap(),
            request_line: b"",
            status: 400,
            bytes: 0,
            referer: Some(b"http://x/"),
            user_agent: None,
        });
        let text = String::from_utf8(lock(&shared.pending).buf.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("127.0.0.1 - - ["), "{text}");
        assert!(
            lines[0].ends_with("+0000] \"GET /a\\\"b HTTP/1.1\" 200 512 \"-\" \"curl/8 \\x01\""),
            "{text}"
        );
        assert!(
            lines[1].ends_with("] \"-\" 400 - \"http://x/\" \"-\""),
            "{text}"
        );
    }

    #[test]
    fn rotation_keeps_n_files() {
        let dir = temp("rotate");
        let path = dir.join("access.log");
        let mut f = LogFile::open(Some(&path), 10, 2).unwrap();
        for line in ["aaaaaaa\n", "bbbbbbb\n", "ccccccc\n", "ddddddd\n"] {
            f.write_lines(line.as_bytes()).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "ddddddd\n");
        assert_eq!(read(&dir.join("access.log.1")), "ccccccc\n");
        assert_eq!(read(&dir.join("access.log.2")), "bbbbbbb\n");
        assert!(!dir.join("access.log.3").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reopen_follows_a_moved_file() {
        let dir = temp("reopen");
        let path = dir.join("a.log");
        let mut f = LogFile::open(Some(&path), 0, 0).unwrap();
        f.write_lines(b"one\n").unwrap();
        std::fs::rename(&path, dir.join("a.log.old")).unwrap();
        f.write_lines(b"two\n").unwrap(); // still the moved file
        f.reopen().unwrap();
        f.write_lines(b"three\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("a.log.old")).unwrap(),
            "one\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
