//! Static files: directories, validators, ranges and precompressed siblings.

use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::fs::{File, Metadata};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

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
pub fn serve(req: &Request<'_>, site: &Site, persist: Persist, out: &mut Vec<u8>) -> Reply {
    let head_only = req.method == Method::Head;
    let fail = |e: PathError, out: &mut Vec<u8>| error(site, e.status(), persist, head_only, out);
    let path = match path::resolve(&site.root, req.path) {
        Ok(p) => p,
        Err(e) => return fail(e, out),
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) => return fail(path::io_to_path_error(&e), out),
    };
    if meta.is_dir() {
        if !req.path.ends_with('/') {
            return redirect_to_slash(req, site, persist, head_only, out);
        }
        if let Ok(index) = path::contain(&site.root, &path.join(INDEX_FILE)) {
            if index.is_file() {
                return serve_file(req, site, &index, persist, out);
            }
        }
        if site.autoindex {
            return listing(req, site, &path, persist, head_only, out);
        }
        return fail(PathError::Forbidden, out);
    }
    if !meta.is_file() {
        // FIFOs, sockets and devices are never opened: a FIFO would block.
        return fail(PathError::NotFound, out);
    }
    serve_file(req, site, &path, persist, out)
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
    let mut location = String::with_capacity(req.path.len() + 2);
    location.push_str(req.path);
    location.push('/');
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
/// sibling (`.br`, `.gz`) the client accepts. Returns the path, the
/// `Content-Encoding`, and whether any sibling exists (then the response
/// varies by `Accept-Encoding`, whichever representation is sent).
fn choose_representation(
    req: &Request<'_>,
    site: &Site,
    path: &Path,
) -> (PathBuf, Option<&'static str>, bool) {
    if !site.precompressed {
        return (path.to_path_buf(), None, false);
    }
    let mut chosen = None;
    let mut any = false;
    for (coding, ext) in [("br", "br"), ("gzip", "gz")] {
        let mut sibling = OsString::from(path.as_os_str());
        sibling.push(".");
        sibling.push(ext);
        // One stat first: most files have no sibling, and canonicalizing a
        // path that does not exist costs a readlink per component.
        if !Path::new(&sibling).is_file() {
            continue;
        }
        let Ok(sibling) = path::contain(&site.root, Path::new(&sibling)) else {
            continue;
        };
        any = true;
        if chosen.is_none() && req.accept_encoding.is_some_and(|ae| accepts(ae, coding)) {
            chosen = Some((sibling, coding));
        }
    }
    match chosen {
        Some((p, coding)) => (p, Some(coding), true),
        None => (path.to_path_buf(), None, any),
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

fn serve_file(
    req: &Request<'_>,
    site: &Site,
    path: &Path,
    persist: Persist,
    out: &mut Vec<u8>,
) -> Reply {
    let head_only = req.method == Method::Head;
    // The MIME type is the original file's, also for a .gz sibling.
    let mime = mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let (file_path, coding, vary) = choose_representation(req, site, path);
    let opened = File::open(&file_path).and_then(|f| f.metadata().map(|m| (f, m)));
    let (file, meta) = match opened {
        Ok(fm) => fm,
        Err(e) => {
            return error(
                site,
                path::io_to_path_error(&e).status(),
                persist,
                head_only,
                out,
            );
        }
    };
    let v = Validators::of(&meta);
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
            .header("ETag", v.etag())
            .header("Accept-Ranges", "bytes");
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
            h.finish(persist);
            file_reply(206, file, first, part_len, persist)
        }
        Ranges::Parts(parts) => {
            let total: u64 = parts.iter().map(|(a, b)| b - a + 1).sum();
            if parts.len() > MAX_RANGES || total > MAX_MULTIPART_BYTES {
                return whole_file(
                    site,
                    mime,
                    file,
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
                &file,
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
            file,
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
    file: File,
    v: Validators,
    persist: Persist,
    head_only: bool,
    common_headers: AddHeaders<'_>,
    tail_headers: AddHeaders<'_>,
    out: &mut Vec<u8>,
) -> Reply {
    let mut h = HeadWriter::new(out, 200, &site.server);
    h.content_type(mime).header("Content-Length", v.len);
    common_headers(&mut h);
    tail_headers(&mut h);
    h.finish(persist);
    if head_only {
        return file_reply(200, file, 0, 0, persist);
    }
    file_reply(200, file, 0, v.len, persist)
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
fn multipart(
    site: &Site,
    mime: &str,
    file: &File,
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
        let start = body.len();
        body.resize(start + (last - first + 1) as usize, 0);
        if let Err(e) = file.read_exact_at(&mut body[start..], first) {
            log::error!("reading a range: {e}");
            return error(site, 500, persist, head_only, out);
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
