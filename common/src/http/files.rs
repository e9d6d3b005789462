//! Static files: directories, validators, ranges and precompressed siblings.
//!
//! [`serve`] answers from this thread's [`cache`] when it can: a repeated
//! request for a small file then costs no system call and no allocation
//! here, and the bytes it produces are the same as when the path is
//! resolved from scratch (both go through the same `serve_file`).

use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use super::cache::{self, Contents, FileEntry, Fresh, Outcome, Probe, Rep, Sibling};
use super::parse::{Method, Request};
use super::path::{self, PathError};
use super::response::{HeadWriter, Persist};
use super::site::{FileRegion, INDEX_FILE, Reply, Site, error, write_error};
use crate::time::{listing_date, parse_http_date, unix_secs};

/// At most this many ranges in one `multipart/byteranges` answer; more, and
/// the whole file is sent instead (a defence against range amplification).
const MAX_RANGES: usize = 16;
/// At most this many bytes are read into memory for a multipart answer.
const MAX_MULTIPART_BYTES: u64 = 1024 * 1024;

/// Serves a GET or HEAD for a path under the root.
///
/// The path is looked up in this thread's [`cache`] first; only a miss
/// (or an entry whose window is over and whose file changed) goes to the
/// file system, where every rule of [`path`] applies.
pub fn serve(req: &Request<'_>, site: &Site, persist: Persist, out: &mut Vec<u8>) -> Reply {
    let head_only = req.method == Method::Head;
    let fail = |e: PathError, out: &mut Vec<u8>| error(site, e.status(), persist, head_only, out);
    let outcome = match cache::lookup(&site.root, site.precompressed, req.path) {
        Some(outcome) => outcome,
        None => match resolve(site, req.path) {
            Resolved::Cache(fresh) => {
                cache::insert(&site.root, site.precompressed, req.path, fresh)
            }
            Resolved::Once(outcome) => outcome,
            Resolved::Listing(dir) => return listing(req, site, &dir, persist, head_only, out),
            Resolved::Refused(e) => return fail(e, out),
        },
    };
    match outcome {
        Outcome::File(entry) => serve_file(req, site, &entry, persist, out),
        Outcome::Redirect => redirect_to_slash(req, site, persist, head_only, out),
        Outcome::NotFound => fail(PathError::NotFound, out),
    }
}

/// What resolving a request path on the file system found.
#[derive(Debug)]
enum Resolved {
    /// An outcome to remember, with the probe that guards it.
    Cache(Fresh),
    /// An outcome to answer with but not to remember: the file system
    /// changed while it was being resolved.
    Once(Outcome),
    /// A directory without an index file, to be listed (never cached: the
    /// listing depends on every entry of the directory).
    Listing(PathBuf),
    /// `400` or `403` (never cached: rare, and a `400` costs no system call).
    Refused(PathError),
}

/// Resolves a raw request path from scratch: what [`serve`] did before
/// there was a cache, step for step, plus one `stat` of the path (the
/// probe) taken *first*, so that any change racing with the resolution
/// makes the entry's next revalidation fail.
fn resolve(site: &Site, raw: &str) -> Resolved {
    let rel = match path::normalize(raw) {
        Ok(rel) => rel,
        Err(e) => return Resolved::Refused(e),
    };
    let joined = site.root.join(rel);
    let probe = Probe::take(&joined);
    let canonical = match path::contain(&site.root, &joined) {
        Ok(p) => p,
        Err(e) => return refused(e, joined, probe),
    };
    let meta = match std::fs::metadata(&canonical) {
        Ok(m) => m,
        Err(e) => return refused(path::io_to_path_error(&e), joined, probe),
    };
    if meta.is_dir() {
        if !raw.ends_with('/') {
            return Resolved::Cache(Fresh {
                outcome: Outcome::Redirect,
                probe_path: joined,
                probe,
            });
        }
        let index_joined = joined.join(INDEX_FILE);
        let index_probe = Probe::take(&index_joined);
        if let Ok(index) = path::contain(&site.root, &canonical.join(INDEX_FILE)) {
            match std::fs::metadata(&index) {
                Ok(index_meta) if index_meta.is_file() => {
                    let outcome = Outcome::File(Arc::new(file_entry(site, index, &index_meta)));
                    // The index was probed after the directory was
                    // canonicalized: if the directory changed meanwhile
                    // (a swapped symlink), the probe may describe another
                    // directory's index than the one resolved.
                    if Probe::take(&joined) != probe {
                        return Resolved::Once(outcome);
                    }
                    return Resolved::Cache(Fresh {
                        outcome,
                        probe_path: index_joined,
                        probe: index_probe,
                    });
                }
                _ => {}
            }
        }
        if site.autoindex {
            return Resolved::Listing(canonical);
        }
        return Resolved::Refused(PathError::Forbidden);
    }
    if !meta.is_file() || path::names_directory(raw) {
        // FIFOs, sockets and devices are never opened: a FIFO would block.
        // A file is not a directory: `/page.html/` is not found.
        return refused(PathError::NotFound, joined, probe);
    }
    let entry = file_entry(site, canonical, &meta);
    Resolved::Cache(Fresh {
        outcome: Outcome::File(Arc::new(entry)),
        probe_path: joined,
        probe,
    })
}

/// A refusal: `404` is remembered (the common miss), `400`/`403` are not.
fn refused(e: PathError, joined: PathBuf, probe: Probe) -> Resolved {
    match e {
        PathError::NotFound => Resolved::Cache(Fresh {
            outcome: Outcome::NotFound,
            probe_path: joined,
            probe,
        }),
        e => Resolved::Refused(e),
    }
}

/// Gathers what answering for the file at canonical `path` needs: its MIME
/// type, its precompressed siblings, and the contents of small
/// representations.
fn file_entry(site: &Site, path: PathBuf, meta: &Metadata) -> FileEntry {
    // The MIME type is the original file's, also for a .gz sibling.
    let mime = mime_guess::from_path(&path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let (plain, mut unsettled) = representation(path, meta);
    let mut siblings = Vec::new();
    if site.precompressed {
        for (coding, ext) in [("br", "br"), ("gzip", "gz")] {
            let mut name = OsString::from(plain.path.as_os_str());
            name.push(".");
            name.push(ext);
            let probe_path = PathBuf::from(name);
            // One stat first: most files have no sibling, and canonicalizing
            // a path that does not exist costs a readlink per component.
            let found = std::fs::metadata(&probe_path);
            let probe = Probe::of(&found);
            let rep = match found {
                Ok(m) if m.is_file() => path::contain(&site.root, &probe_path).ok().map(|real| {
                    let (rep, recent) = representation(real, &m);
                    unsettled |= recent;
                    rep
                }),
                _ => None,
            };
            siblings.push(Sibling {
                coding,
                probe_path,
                probe,
                rep,
            });
        }
    }
    FileEntry {
        mime,
        plain,
        siblings,
        unsettled,
    }
}

/// One representation; a small, settled file is read into memory now.
/// Also says whether it is small but changed too recently to be read.
fn representation(path: PathBuf, meta: &Metadata) -> (Rep, bool) {
    if meta.len() > cache::SMALL_FILE {
        return (
            Rep {
                path,
                contents: None,
            },
            false,
        );
    }
    let (contents, unsettled) = match read_small(&path) {
        Ok(contents) => (contents, false),
        Err(Unsettled) => (None, true),
    };
    (Rep { path, contents }, unsettled)
}

/// The file changed a moment ago: its contents are not cached yet.
#[derive(Debug)]
struct Unsettled;

/// Reads a small file whole, with the validators of the same open file.
/// `Ok(None)` (the file is then opened per request) if it cannot be read or
/// grew.
fn read_small(path: &Path) -> Result<Option<Contents>, Unsettled> {
    let Ok((file, meta)) = open_regular(path) else {
        return Ok(None);
    };
    if !cache::settled(&meta) {
        return Err(Unsettled);
    }
    let Ok(len) = usize::try_from(meta.len()) else {
        return Ok(None);
    };
    if meta.len() > cache::SMALL_FILE {
        return Ok(None);
    }
    let mut bytes = vec![0; len];
    if file.read_exact_at(&mut bytes, 0).is_err() {
        return Ok(None);
    }
    Ok(Some(Contents {
        mtime: Validators::of(&meta).mtime,
        bytes: bytes.into(),
    }))
}

/// Opens a file for reading and checks that it still is a regular file.
/// `O_NONBLOCK` makes opening a FIFO swapped in since the path was resolved
/// return at once instead of blocking the thread (it changes nothing for a
/// regular file).
fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    Ok((file, meta))
}

/// `301` to the same path with a trailing slash, so that relative links in
/// the directory's page resolve against the directory.
fn redirect_to_slash(
    req: &Request<'_>,
    site: &Site,
    persist: Persist,
    head_only: bool,
    out: &mut Vec<u8>,
) -> Reply {
    // Built from the normalized segments, not from the raw request path:
    // `GET //evil.example` must never become `Location: //evil.example/`,
    // which a browser reads as another host (an open redirect; found by
    // the fuzzer).
    let mut location = String::with_capacity(req.path.len() + 2);
    location.push('/');
    for segment in path::normalize(req.path).unwrap_or_default().components() {
        let bytes = segment.as_os_str().as_bytes();
        location.extend(percent_encoding::percent_encode(bytes, HREF));
        location.push('/');
    }
    if let Some(q) = req.query {
        location.push('?');
        location.push_str(q);
    }
    write_error(
        site,
        301,
        persist,
        head_only,
        &[("Location", &location)],
        out,
    )
}

/// The validators of one file version, formatted without allocating.
#[derive(Debug, Clone, Copy)]
struct Validators {
    mtime: u64,
    len: u64,
}

impl Validators {
    fn of(meta: &Metadata) -> Validators {
        let mtime = meta.modified().map_or(0, unix_secs);
        Validators {
            mtime,
            len: meta.len(),
        }
    }

    /// The opaque part of our strong ETag, as nginx forms it.
    fn etag(self) -> ETag {
        ETag(self)
    }

    fn last_modified(self) -> httpdate::HttpDate {
        httpdate::HttpDate::from(UNIX_EPOCH + Duration::from_secs(self.mtime))
    }
}

/// Displays as `"<mtime hex>-<len hex>"`, quotes included.
#[derive(Debug, Clone, Copy)]
struct ETag(Validators);

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{:x}-{:x}\"", self.0.mtime, self.0.len)
    }
}

impl ETag {
    /// Compares with an entity-tag from a request. `weak` allows a `W/`
    /// prefix on theirs (If-None-Match); strong comparison (If-Range) does not.
    fn matches(self, theirs: &str, weak: bool) -> bool {
        let theirs = theirs.trim();
        let theirs = match theirs.strip_prefix("W/") {
            Some(t) if weak => t,
            Some(_) => return false,
            None => theirs,
        };
        let mut buf = [0u8; 48];
        let mut cursor = &mut buf[..];
        if write!(cursor, "{self}").is_err() {
            return false;
        }
        let written = 48 - cursor.len();
        theirs.as_bytes() == &buf[..written]
    }

    /// `If-None-Match: *` or a list with a weakly matching tag.
    fn matches_list(self, list: &str) -> bool {
        list.trim() == "*" || list.split(',').any(|t| self.matches(t, true))
    }
}

/// Picks the representation to send: the file itself, or a precompressed
/// sibling (`.br`, `.gz`) the client accepts. Returns it, the
/// `Content-Encoding`, and whether any sibling exists (then the response
/// varies by `Accept-Encoding`, whichever representation is sent).
fn choose_representation<'e>(
    req: &Request<'_>,
    entry: &'e FileEntry,
) -> (&'e Rep, Option<&'static str>, bool) {
    let mut chosen = None;
    let mut any = false;
    for sibling in &entry.siblings {
        let Some(rep) = &sibling.rep else {
            continue;
        };
        any = true;
        if chosen.is_none()
            && req
                .accept_encoding
                .is_some_and(|ae| accepts(ae, sibling.coding))
        {
            chosen = Some((rep, sibling.coding));
        }
    }
    match chosen {
        Some((rep, coding)) => (rep, Some(coding), true),
        None => (&entry.plain, None, any),
    }
}

/// Whether an `Accept-Encoding` value accepts `coding` (q > 0, or `*`).
fn accepts(accept_encoding: &str, coding: &str) -> bool {
    let mut star = false;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q_zero = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        if name.eq_ignore_ascii_case(coding) {
            return !q_zero;
        }
        if name == "*" {
            star = !q_zero;
        }
    }
    star
}

/// What the `Range` header asks for, resolved against the file length.
#[derive(Debug, PartialEq, Eq)]
enum Ranges {
    /// No (usable) Range header: send the whole file.
    Whole,
    /// Every range is outside the file: 416.
    Unsatisfiable,
    /// Inclusive `(first, last)` byte positions.
    Parts(Vec<(u64, u64)>),
}

/// Parses `bytes=a-b, c-, -n` against a length. Syntax errors make the
/// header ignored (RFC 9110 14.2), not an error.
fn parse_ranges(header: &str, len: u64) -> Ranges {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ranges::Whole;
    };
    let mut parts = Vec::new();
    for item in spec.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((a, b)) = item.split_once('-') else {
            return Ranges::Whole;
        };
        let num = |s: &str| -> Option<u64> {
            (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        match (a.trim(), b.trim()) {
            ("", suffix) => {
                let Some(n) = num(suffix) else {
                    return Ranges::Whole;
                };
                if n > 0 && len > 0 {
                    parts.push((len - n.min(len), len - 1));
                }
            }
            (first, "") => {
                let Some(first) = num(first) else {
                    return Ranges::Whole;
                };
                if first < len {
                    parts.push((first, len - 1));
                }
            }
            (first, last) => {
                let (Some(first), Some(last)) = (num(first), num(last)) else {
                    return Ranges::Whole;
                };
                if first > last {
                    return Ranges::Whole;
                }
                if first < len {
                    parts.push((first, last.min(len - 1)));
                }
            }
        }
    }
    if parts.is_empty() {
        Ranges::Unsatisfiable
    } else {
        Ranges::Parts(parts)
    }
}

/// Whether an `If-Range` value still names the current representation
/// (strong ETag comparison, or the exact `Last-Modified` date).
fn if_range_holds(if_range: &str, v: Validators) -> bool {
    let if_range = if_range.trim();
    if if_range.starts_with('"') || if_range.starts_with("W/") {
        v.etag().matches(if_range, false)
    } else {
        parse_http_date(if_range) == Some(v.mtime)
    }
}

/// Where the body of the chosen representation comes from.
#[derive(Debug)]
enum Body<'a> {
    /// An open file: the stage sends it as a [`FileRegion`].
    File(File),
    /// Cached contents: copied into the output buffer after the head.
    Bytes(&'a [u8]),
}

impl Body<'_> {
    /// The reply for `len` body bytes from `offset`, once the head is in
    /// `out`. `start` is where the head began: if the cached contents do
    /// not cover the region (they always do: the offsets come from the
    /// same length), the head is taken back and a 500 written instead.
    #[allow(
        clippy::too_many_arguments,
        reason = "two call sites; a struct would only rename them"
    )]
    fn reply(
        self,
        site: &Site,
        status: u16,
        offset: u64,
        len: u64,
        persist: Persist,
        start: usize,
        out: &mut Vec<u8>,
    ) -> Reply {
        match self {
            Body::File(file) => file_reply(status, file, offset, len, persist),
            Body::Bytes(bytes) => match slice(bytes, offset, len) {
                Some(part) => {
                    out.extend_from_slice(part);
                    Reply {
                        status,
                        body_len: len,
                        file: None,
                        keep_alive: persist.keep_alive(),
                    }
                }
                None => {
                    log::error!("cached contents shorter than their length");
                    out.truncate(start);
                    error(site, 500, persist, false, out)
                }
            },
        }
    }
}

/// `len` bytes of `bytes` from `offset`, if they are there.
fn slice(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let offset = usize::try_from(offset).ok()?;
    let end = offset.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(offset..end)
}

fn serve_file(
    req: &Request<'_>,
    site: &Site,
    entry: &FileEntry,
    persist: Persist,
    out: &mut Vec<u8>,
) -> Reply {
    let head_only = req.method == Method::Head;
    let start = out.len();
    let mime = entry.mime;
    let (rep, coding, vary) = choose_representation(req, entry);
    let (v, body) = match &rep.contents {
        Some(c) => (
            Validators {
                mtime: c.mtime,
                len: c.bytes.len() as u64,
            },
            Body::Bytes(&c.bytes),
        ),
        None => match open_regular(&rep.path) {
            Ok((file, meta)) => (Validators::of(&meta), Body::File(file)),
            Err(e) => {
                return error(
                    site,
                    path::io_to_path_error(&e).status(),
                    persist,
                    head_only,
                    out,
                );
            }
        },
    };
    let len = v.len;

    // Conditional requests (RFC 9110 13.2.2): If-None-Match wins over
    // If-Modified-Since when both are present.
    let not_modified = match (req.if_none_match, req.if_modified_since) {
        (Some(inm), _) => v.etag().matches_list(inm),
        (None, Some(ims)) => parse_http_date(ims).is_some_and(|ims| v.mtime <= ims),
        (None, None) => false,
    };
    if not_modified {
        let mut h = HeadWriter::new(out, 304, &site.server);
        h.header("Last-Modified", v.last_modified())
            .header("ETag", v.etag());
        site.freshness.write(&mut h);
        if vary {
            h.header("Vary", "Accept-Encoding");
        }
        h.finish(persist);
        return Reply {
            status: 304,
            body_len: 0,
            file: None,
            keep_alive: persist.keep_alive(),
        };
    }

    let ranges = match req.range {
        Some(r)
            if req.method == Method::Get && req.if_range.is_none_or(|ir| if_range_holds(ir, v)) =>
        {
            parse_ranges(r, len)
        }
        _ => Ranges::Whole,
    };
    let common_headers = |h: &mut HeadWriter<'_>| {
        h.header("Last-Modified", v.last_modified())
            .header("ETag", v.etag());
        site.freshness.write(h);
        h.header("Accept-Ranges", "bytes");
    };
    let tail_headers = |h: &mut HeadWriter<'_>| {
        if let Some(c) = coding {
            h.header("Content-Encoding", c);
        }
        if vary {
            h.header("Vary", "Accept-Encoding");
        }
        h.header("X-Content-Type-Options", "nosniff");
    };

    match ranges {
        Ranges::Unsatisfiable => {
            let cr = format!("bytes */{len}");
            write_error(
                site,
                416,
                persist,
                head_only,
                &[("Content-Range", &cr)],
                out,
            )
        }
        Ranges::Parts(parts) if parts.len() == 1 => {
            let (first, last) = parts[0];
            let part_len = last - first + 1;
            let mut h = HeadWriter::new(out, 206, &site.server);
            h.content_type(mime).header("Content-Length", part_len);
            common_headers(&mut h);
            h.header("Content-Range", format_args!("bytes {first}-{last}/{len}"));
            tail_headers(&mut h);
            let out = h.finish(persist);
            body.reply(site, 206, first, part_len, persist, start, out)
        }
        Ranges::Parts(parts) => {
            let total: u64 = parts.iter().map(|(a, b)| b - a + 1).sum();
            if parts.len() > MAX_RANGES || total > MAX_MULTIPART_BYTES {
                return whole_file(
                    site,
                    mime,
                    body,
                    v,
                    persist,
                    head_only,
                    &common_headers,
                    &tail_headers,
                    out,
                );
            }
            multipart(
                site,
                mime,
                &body,
                v,
                &parts,
                persist,
                head_only,
                &common_headers,
                &tail_headers,
                out,
            )
        }
        Ranges::Whole => whole_file(
            site,
            mime,
            body,
            v,
            persist,
            head_only,
            &common_headers,
            &tail_headers,
            out,
        ),
    }
}

fn file_reply(status: u16, file: File, offset: u64, len: u64, persist: Persist) -> Reply {
    Reply {
        status,
        body_len: len,
        file: (len > 0).then_some(FileRegion { file, offset, len }),
        keep_alive: persist.keep_alive(),
    }
}

type AddHeaders<'a> = &'a dyn Fn(&mut HeadWriter<'_>);

#[allow(
    clippy::too_many_arguments,
    reason = "one call site each; a struct would only rename them"
)]
fn whole_file(
    site: &Site,
    mime: &str,
    body: Body<'_>,
    v: Validators,
    persist: Persist,
    head_only: bool,
    common_headers: AddHeaders<'_>,
    tail_headers: AddHeaders<'_>,
    out: &mut Vec<u8>,
) -> Reply {
    let start = out.len();
    let mut h = HeadWriter::new(out, 200, &site.server);
    h.content_type(mime).header("Content-Length", v.len);
    common_headers(&mut h);
    tail_headers(&mut h);
    let out = h.finish(persist);
    let len = if head_only { 0 } else { v.len };
    body.reply(site, 200, 0, len, persist, start, out)
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
fn multipart(
    site: &Site,
    mime: &str,
    body_source: &Body<'_>,
    v: Validators,
    parts: &[(u64, u64)],
    persist: Persist,
    head_only: bool,
    common_headers: AddHeaders<'_>,
    tail_headers: AddHeaders<'_>,
    out: &mut Vec<u8>,
) -> Reply {
    // The boundary is derived from the validators, so every stage sends the
    // same bytes for the same request.
    let boundary = format!("{:x}{:x}byteranges", v.mtime, v.len);
    let content_type = if super::response::needs_charset(mime) {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    let mut body = Vec::new();
    for &(first, last) in parts {
        let _ = write!(
            body,
            "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {first}-{last}/{}\r\n\r\n",
            v.len
        );
        let part_len = last - first + 1;
        match body_source {
            Body::File(file) => {
                let start = body.len();
                body.resize(start + part_len as usize, 0);
                if let Err(e) = file.read_exact_at(&mut body[start..], first) {
                    log::error!("reading a range: {e}");
                    return error(site, 500, persist, head_only, out);
                }
            }
            Body::Bytes(bytes) => {
                let Some(part) = slice(bytes, first, part_len) else {
                    log::error!("cached contents shorter than their length");
                    return error(site, 500, persist, head_only, out);
                };
                body.extend_from_slice(part);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    let _ = write!(body, "--{boundary}--\r\n");
    let mut h = HeadWriter::new(out, 206, &site.server);
    h.header(
        "Content-Type",
        format_args!("multipart/byteranges; boundary={boundary}"),
    )
    .header("Content-Length", body.len());
    common_headers(&mut h);
    tail_headers(&mut h);
    let out = h.finish(persist);
    let body_len = if head_only { 0 } else { body.len() as u64 };
    if !head_only {
        out.extend_from_slice(&body);
    }
    Reply {
        status: 206,
        body_len,
        file: None,
        keep_alive: persist.keep_alive(),
    }
}

/// Characters left as they are in listing links: RFC 3986's unreserved set.
const HREF: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> impl fmt::Display + '_ {
    struct Esc<'a>(&'a str);
    impl fmt::Display for Esc<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for c in self.0.chars() {
                match c {
                    '&' => f.write_str("&amp;")?,
                    '<' => f.write_str("&lt;")?,
                    '>' => f.write_str("&gt;")?,
                    '"' => f.write_str("&quot;")?,
                    '\'' => f.write_str("&#39;")?,
                    c => f.write_char(c)?,
                }
            }
            Ok(())
        }
    }
    Esc(s)
}

/// One row of a directory listing.
struct Entry {
    name: OsString,
    is_dir: bool,
    size: u64,
    mtime: u64,
}

/// An HTML listing of a directory: directories first, then files, each in
/// byte order of their names.
fn listing(
    req: &Request<'_>,
    site: &Site,
    dir: &Path,
    persist: Persist,
    head_only: bool,
    out: &mut Vec<u8>,
) -> Reply {
    let Ok(read) = std::fs::read_dir(dir) else {
        return error(site, 403, persist, head_only, out);
    };
    let mut entries: Vec<Entry> = Vec::new();
    for entry in read.flatten() {
        let p = entry.path();
        // Follow symlinks for the size and type, but leave out those that
        // dangle or lead out of the root: they would not be served anyway.
        if entry.file_type().is_ok_and(|t| t.is_symlink()) && path::contain(&site.root, &p).is_err()
        {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        entries.push(Entry {
            name: entry.file_name(),
            is_dir: meta.is_dir(),
            size: meta.len(),
            mtime: meta.modified().map_or(0, unix_secs),
        });
    }
    entries.sort_by(|a, b| {
        b.is_dir
            .cmp(&a.is_dir)
            .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
    });

    let shown = percent_encoding::percent_decode_str(req.path).decode_utf8_lossy();
    let title = html_escape(&shown);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title>\n\
         <style>body{{font-family:sans-serif}}td{{padding:0 1em}}td.s{{text-align:right}}</style></head>\n\
         <body><h1>Index of {title}</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified</th></tr>\n"
    );
    if req.path != "/" {
        html.push_str("<tr><td><a href=\"../\">../</a></td><td class=\"s\">-</td><td></td></tr>\n");
    }
    for e in &entries {
        let href = percent_encoding::percent_encode(e.name.as_bytes(), HREF);
        let name = e.name.to_string_lossy();
        let slash = if e.is_dir { "/" } else { "" };
        let size = if e.is_dir {
            "-".to_string()
        } else {
            e.size.to_string()
        };
        let _ = writeln!(
            html,
            "<tr><td><a href=\"{href}{slash}\">{}{slash}</a></td><td class=\"s\">{size}</td><td>{}</td></tr>",
            html_escape(&name),
            listing_date(e.mtime)
        );
    }
    html.push_str("</table>\n</body></html>\n");

    let mut h = HeadWriter::new(out, 200, &site.server);
    h.content_type("text/html")
        .header("Content-Length", html.len())
        .header("X-Content-Type-Options", "nosniff");
    let out = h.finish(persist);
    if !head_only {
        out.extend_from_slice(html.as_bytes());
    }
    Reply {
        status: 200,
        body_len: if head_only { 0 } else { html.len() as u64 },
        file: None,
        keep_alive: persist.keep_alive(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_table() {
        use Ranges::*;
        let cases: &[(&str, u64, Ranges)] = &[
            ("bytes=0-0", 10, Parts(vec![(0, 0)])),
            ("bytes=2-5", 10, Parts(vec![(2, 5)])),
            ("bytes=2-", 10, Parts(vec![(2, 9)])),
            ("bytes=-3", 10, Parts(vec![(7, 9)])),
            ("bytes=-30", 10, Parts(vec![(0, 9)])),
            ("bytes=5-100", 10, Parts(vec![(5, 9)])),
            ("bytes=0-1, 4-5", 10, Parts(vec![(0, 1), (4, 5)])),
            ("bytes=10-", 10, Unsatisfiable),
            ("bytes=-0", 10, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=5-2", 10, Whole),
            ("bytes=a-b", 10, Whole),
            ("items=0-1", 10, Whole),
            ("bytes=1", 10, Whole),
            ("bytes=+1-2", 10, Whole),
        ];
        for (header, len, expect) in cases {
            assert_eq!(&parse_ranges(header, *len), expect, "{header} / {len}");
        }
    }

    #[test]
    fn accept_encoding_table() {
        assert!(accepts("gzip, deflate, br", "br"));
        assert!(accepts("gzip;q=0.5", "gzip"));
        assert!(!accepts("gzip;q=0", "gzip"));
        assert!(!accepts("br;q=0, *", "br"));
        assert!(accepts("*", "gzip"));
        assert!(!accepts("identity", "gzip"));
    }

    #[test]
    fn etag_comparison() {
        let e = ETag(Validators {
            mtime: 0x10,
            len: 0x20,
        });
        assert_eq!(e.to_string(), "\"10-20\"");
        assert!(e.matches("\"10-20\"", false));
        assert!(e.matches("W/\"10-20\"", true));
        assert!(!e.matches("W/\"10-20\"", false));
        assert!(e.matches_list("\"x\", W/\"10-20\""));
        assert!(e.matches_list(" * "));
        assert!(!e.matches_list("\"10-21\""));
    }

    #[test]
    fn escaping() {
        assert_eq!(
            html_escape("<a href='x'>&\"").to_string(),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
        assert_eq!(
            percent_encoding::percent_encode("a b#?.txt".as_bytes(), HREF).to_string(),
            "a%20b%23%3F.txt"
        );
    }
}
