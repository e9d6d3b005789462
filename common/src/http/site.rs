//! The site being served and the handler that answers one request.
//!
//! [`respond`] is the whole application: it takes a parsed [`Request`] and
//! the [`Site`] and writes a response into the caller's buffer. It decides,
//! the stage delivers: if the body is a file, the caller gets a
//! [`FileRegion`] to send after the head (with `sendfile(2)`, or by reading
//! it into memory).

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::parse::{Limits, Method, Request};
use super::response::{HeadWriter, Persist};
use super::{api, cache, files};
use crate::logging::AccessLog;

/// A region of an open file to send as (part of) a response body.
#[derive(Debug)]
pub struct FileRegion {
    /// The open file.
    pub file: File,
    /// Where the region starts.
    pub offset: u64,
    /// How many bytes to send.
    pub len: u64,
}

/// What [`respond`] decided, beyond the bytes it wrote.
#[derive(Debug)]
pub struct Reply {
    /// The status code (for the access log and statistics).
    pub status: u16,
    /// Body bytes of the response (in the buffer or in `file`); what the
    /// access log records. 0 for HEAD and 304.
    pub body_len: u64,
    /// A file region to send after the bytes written to the buffer.
    pub file: Option<FileRegion>,
    /// Whether the connection stays open after this response.
    pub keep_alive: bool,
}

/// A stage's live figures, rendered for the status page.
pub trait StatusSource: Send + Sync + std::fmt::Debug {
    /// Appends the figures in the Prometheus text exposition format
    /// (`# HELP`, `# TYPE`, then `name{labels} value` lines).
    fn render(&self, out: &mut String);
}

/// Where the status page is served, and what fills it.
#[derive(Debug, Clone)]
pub struct StatusPage {
    /// The path it answers, e.g. `/server-status`.
    pub path: String,
    /// Also answer clients that are not on the loopback interface.
    pub allow_remote: bool,
    /// Also answer clients from these addresses or networks.
    pub allow: Vec<Net>,
    /// The figures.
    pub source: std::sync::Arc<dyn StatusSource>,
}

impl StatusPage {
    /// Whether a client at `peer` gets the page: loopback always; others
    /// when the page is open to all or `peer` is in an allowed network.
    pub fn allows(&self, peer: std::net::IpAddr) -> bool {
        peer.is_loopback() || self.allow_remote || self.allow.iter().any(|n| n.contains(peer))
    }
}

/// An address, or a network written `ADDRESS/BITS` (`198.18.0.2`,
/// `10.0.0.0/8`, `fd00::/8`): what `--status-allow` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Net {
    addr: std::net::IpAddr,
    bits: u8,
}

impl Net {
    /// Whether `ip` is in this network (an IPv4-mapped IPv6 peer counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        let ip = match ip {
            V6(v6) => v6.to_ipv4_mapped().map_or(ip, V4),
            v4 => v4,
        };
        let (a, b, width) = match (self.addr, ip) {
            (V4(a), V4(b)) => (u128::from(a.to_bits()), u128::from(b.to_bits()), 32),
            (V6(a), V6(b)) => (a.to_bits(), b.to_bits(), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.bits);
        shift >= width || (a >> shift) == (b >> shift)
    }
}

impl std::str::FromStr for Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Net, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?}: not an IP address or ADDRESS/BITS"))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits.map(str::parse::<u8>) {
            None => width,
            Some(Ok(b)) if b <= width => b,
            Some(_) => return Err(format!("{s:?}: the prefix length must be 0 to {width}")),
        };
        Ok(Net { addr, bits })
    }
}

impl TryFrom<String> for Net {
    type Error = String;
    fn try_from(s: String) -> Result<Net, String> {
        s.parse()
    }
}

impl From<Net> for String {
    fn from(n: Net) -> String {
        n.to_string()
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.bits == width {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.bits)
        }
    }
}

/// Everything the handler needs to know about the site; built once at
/// start-up and shared (read-only) by every thread or worker.
#[derive(Debug)]
pub struct Site {
    /// The document root, canonical (symlinks resolved).
    pub root: PathBuf,
    /// The `Server` header value: the stage's name.
    pub server: String,
    /// Request size limits.
    pub limits: Limits,
    /// Serve an HTML listing for directories without an index file.
    pub autoindex: bool,
    /// Serve `file.br` / `file.gz` siblings to clients that accept them.
    pub precompressed: bool,
    /// Answer static files through the per-thread open-file [`cache`]
    /// (`--open-file-cache`); off, every request takes the plain path of
    /// [`files`]. The bytes are the same either way; the cache saves
    /// system calls.
    pub open_file_cache: bool,
    /// Answer `/api/add`.
    pub api: bool,
    /// The caching headers static files get (`--expires`, `--cache-control`).
    pub freshness: Freshness,
    /// The custom error pages (status → HTML), loaded at start-up.
    error_pages: HashMap<u16, Vec<u8>>,
    /// Where access-log lines go (possibly nowhere).
    pub access_log: AccessLog,
    /// The status page, if this stage has one and it is switched on.
    pub status: Option<StatusPage>,
    /// Where responses are counted (and the stage counts connections).
    pub counters: &'static crate::stats::Counters,
    /// Requests per second per client address (`--rate-limit`), if limited.
    pub rate_limit: Option<super::ratelimit::RateLimit>,
}

/// How long a client may reuse a static file without asking again: what
/// nginx's `expires` and `add_header Cache-Control` do. The default is
/// neither (as in nginx): clients then revalidate with the `ETag` or
/// `Last-Modified` they were given, or guess a freshness of their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freshness {
    /// `--expires SECS`: `Expires` is the response's `Date` plus this, and
    /// `Cache-Control` is `max-age=SECS` (unless `cache_control` is set).
    pub expires: Option<u32>,
    /// `--cache-control VALUE`: the `Cache-Control` header, verbatim.
    pub cache_control: Option<String>,
}

impl Freshness {
    /// Writes `Expires` and `Cache-Control`, as configured, into a file's
    /// 200, 206 or 304 head (listings, redirects and errors never get them).
    pub fn write(&self, h: &mut HeadWriter<'_>) {
        if let Some(secs) = self.expires {
            let at = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(h.date_secs() + u64::from(secs));
            h.header("Expires", httpdate::HttpDate::from(at));
        }
        match (&self.cache_control, self.expires) {
            (Some(value), _) => {
                h.header("Cache-Control", value);
            }
            (None, Some(secs)) => {
                h.header("Cache-Control", format_args!("max-age={secs}"));
            }
            (None, None) => {}
        }
    }

    /// Checks a `--cache-control` value: printable ASCII only, so that it
    /// cannot end the header line or smuggle another header in.
    pub fn check_cache_control(value: &str) -> Result<(), String> {
        if value.is_empty()
            || !value
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return Err(format!(
                "--cache-control {value:?}: expected a non-empty header value of printable ASCII"
            ));
        }
        Ok(())
    }
}

/// The file name looked up in a directory before listing it.
pub const INDEX_FILE: &str = "index.html";

impl Site {
    /// Builds a site. `root` must exist; `error_pages`, if relative, is
    /// taken from the root, and may be missing (built-in pages are used).
    pub fn new(
        root: &Path,
        server: &str,
        error_pages: Option<&Path>,
        access_log: AccessLog,
    ) -> std::io::Result<Site> {
        let root = root.canonicalize().map_err(|e| {
            std::io::Error::new(e.kind(), format!("document root {}: {e}", root.display()))
        })?;
        let mut site = Site {
            root,
            server: server.to_string(),
            limits: Limits::default(),
            autoindex: true,
            precompressed: true,
            open_file_cache: true,
            api: true,
            freshness: Freshness::default(),
            error_pages: HashMap::new(),
            access_log,
            status: None,
            counters: &crate::stats::PROCESS,
            rate_limit: None,
        };
        if let Some(dir) = error_pages {
            site.load_error_pages(dir);
        }
        Ok(site)
    }

    // ANCHOR: error_pages
    /// Reads `NNN.html` files from `dir` (relative paths are under the root).
    pub fn load_error_pages(&mut self, dir: &Path) {
        let dir = self.root.join(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            log::debug!("no custom error pages in {}", dir.display());
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(code) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".html"))
                .and_then(|n| n.parse::<u16>().ok())
                .filter(|c| (400..600).contains(c))
            else {
                continue;
            };
            match std::fs::read(entry.path()) {
                Ok(body) => {
                    self.error_pages.insert(code, body);
                }
                Err(e) => log::warn!("error page {}: {e}", entry.path().display()),
            }
        }
    }
    // ANCHOR_END: error_pages

    /// The custom page for `status`, if there is one.
    pub fn error_page(&self, status: u16) -> Option<&[u8]> {
        self.error_pages.get(&status).map(Vec::as_slice)
    }
}

/// Answers one request: writes the head (and any in-memory body) to `out`
/// and returns what else the caller must do. `keep_alive` is the
/// connection's decision for after this response.
pub fn respond(req: &Request<'_>, site: &Site, keep_alive: bool, out: &mut Vec<u8>) -> Reply {
    let persist = Persist::new(req.version, keep_alive);
    let head_only = req.method == Method::Head;
    match req.method {
        Method::Unknown => return error(site, 501, persist, head_only, out),
        Method::Known => return method_not_allowed(site, persist, out),
        Method::Get | Method::Head => {}
    }
    if req.path == "*" {
        return error(site, 400, persist, head_only, out);
    }
    if site.api && req.path == api::ADD_PATH {
        return api::add(req, site, persist, out);
    }
    if site.open_file_cache {
        cache::serve(req, site, persist, out)
    } else {
        files::serve(req, site, persist, out)
    }
}

/// `405 Method Not Allowed` with `Allow: GET, HEAD`.
pub fn method_not_allowed(site: &Site, persist: Persist, out: &mut Vec<u8>) -> Reply {
    write_error(site, 405, persist, false, &[("Allow", "GET, HEAD")], out)
}

/// An error response with the site's custom page or the built-in one.
pub fn error(
    site: &Site,
    status: u16,
    persist: Persist,
    head_only: bool,
    out: &mut Vec<u8>,
) -> Reply {
    write_error(site, status, persist, head_only, &[], out)
}

/// An error response with extra headers (`Allow`, `Retry-After`, ...).
pub fn write_error(
    site: &Site,
    status: u16,
    persist: Persist,
    head_only: bool,
    extra: &[(&str, &str)],
    out: &mut Vec<u8>,
) -> Reply {
    let custom = site.error_page(status);
    let reason = super::response::reason(status);
    let builtin_len = builtin_error_len(reason);
    let len = custom.map_or(builtin_len, <[u8]>::len);
    let mut h = HeadWriter::new(out, status, &site.server);
    h.content_type("text/html").header("Content-Length", len);
    for (name, value) in extra {
        h.header(name, value);
    }
    h.header("X-Content-Type-Options", "nosniff");
    let out = h.finish(persist);
    if !head_only {
        match custom {
            Some(page) => out.extend_from_slice(page),
            None => write_builtin_error(out, status, reason),
        }
    }
    Reply {
        status,
        body_len: if head_only { 0 } else { len as u64 },
        file: None,
        keep_alive: persist.keep_alive(),
    }
}

const BUILTIN_A: &str = "<!DOCTYPE html>\n<html><head><title>";
const BUILTIN_B: &str = "</title></head>\n<body><h1>";
const BUILTIN_C: &str = "</h1></body></html>\n";

fn builtin_error_len(reason: &str) -> usize {
    // "NNN reason" appears twice; status codes have three digits.
    BUILTIN_A.len() + BUILTIN_B.len() + BUILTIN_C.len() + 2 * (4 + reason.len())
}

fn write_builtin_error(out: &mut Vec<u8>, status: u16, reason: &str) {
    let _ = write!(
        out,
        "{BUILTIN_A}{status} {reason}{BUILTIN_B}{status} {reason}{BUILTIN_C}"
    );
}

/// Answers the status page: `200` with the source's figures as
/// `text/plain; version=0.0.4` (what Prometheus scrapes), `405` for methods
/// other than GET and HEAD.
pub fn status_page(
    req: &Request<'_>,
    site: &Site,
    page: &StatusPage,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> Reply {
    let persist = Persist::new(req.version, keep_alive);
    let head_only = req.method == Method::Head;
    if !matches!(req.method, Method::Get | Method::Head) {
        return method_not_allowed(site, persist, out);
    }
    let mut body = String::with_capacity(2048);
    page.source.render(&mut body);
    let mut h = HeadWriter::new(out, 200, &site.server);
    h.header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        .header("Content-Length", body.len())
        .header("Cache-Control", "no-store")
        .header("X-Content-Type-Options", "nosniff");
    let out = h.finish(persist);
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    Reply {
        status: 200,
        body_len: if head_only { 0 } else { body.len() as u64 },
        file: None,
        keep_alive: persist.keep_alive(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_with(f: &Freshness) -> String {
        let mut out = Vec::new();
        let mut h = HeadWriter::new(&mut out, 200, "t");
        f.write(&mut h);
        h.finish(Persist::KeepAlive11);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn freshness_headers() {
        assert!(!head_with(&Freshness::default()).contains("Cache-Control"));
        let text = head_with(&Freshness {
            expires: Some(3600),
            cache_control: None,
        });
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::to_string)
        };
        let date = crate::time::parse_http_date(&field("Date: ").unwrap()).unwrap();
        let expires = crate::time::parse_http_date(&field("Expires: ").unwrap()).unwrap();
        assert_eq!(expires, date + 3600);
        assert_eq!(field("Cache-Control: ").as_deref(), Some("max-age=3600"));
        let text = head_with(&Freshness {
            expires: None,
            cache_control: Some("no-store".into()),
        });
        assert!(text.contains("\r\nCache-Control: no-store\r\n") && !text.contains("Expires"));
    }

    #[test]
    fn a_cache_control_value_cannot_inject_a_header() {
        assert!(Freshness::check_cache_control("public, max-age=60").is_ok());
        for bad in ["", "a\r\nSet-Cookie: x", "a\nb", "caf\u{e9}"] {
            assert!(Freshness::check_cache_control(bad).is_err(), "{bad:?}");
        }
    }
}
