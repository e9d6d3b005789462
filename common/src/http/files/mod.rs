//! Static files, the plain way: every request asks the file system.
//!
//! A `GET` or `HEAD` for a file takes these steps, one module each, and
//! [`serve`] reads as the list:
//!
//! 1. [`resolve`]: the request path → a file under the root, a directory
//!    (then its `index.html`), a redirect that adds the slash, or a
//!    refusal. The rules that keep the path inside the root are in
//!    [`path`].
//! 2. [`precompressed`]: a `.br` or `.gz` sibling the client accepts.
//! 3. Open the chosen file (`resolve::open_regular`); its `fstat` gives
//!    the validators (`ETag`, `Last-Modified`).
//! 4. [`conditional`]: `If-None-Match`, `If-Modified-Since` → `304`.
//! 5. [`range`]: `Range`, `If-Range` → `206`, `multipart/byteranges`, `416`.
//! 6. The head, then the body: a [`FileRegion`] the stage sends after the
//!    head (with `sendfile`), or bytes already in the buffer.
//!
//! [`listing`] answers for a directory without an index file.
//!
//! Nothing here knows about the open-file [`cache`](super::cache). The
//! cache is a layer over these steps: on a miss it runs the same
//! [`resolve`] (with a `stat` before it, to notice later changes), keeps
//! what it found and the bytes of small files, and answers through the
//! same steps 4–6 with a body from memory. [`respond`](super::respond)
//! picks the layer when `Site::open_file_cache` is on
//! (`--open-file-cache`, the default) and this module when it is off.

use std::fs::File;
use std::os::unix::ffi::OsStrExt;

use super::parse::{Method, Request};
use super::path;
use super::response::{HeadWriter, Persist};
use super::site::{FileRegion, Reply, Site, error, write_error};

pub mod conditional;
pub mod listing;
pub mod precompressed;
pub mod range;
pub mod resolve;

pub use listing::html_escape;

use conditional::Validators;
use range::Ranges;
use resolve::Resolved;

/// Serves a GET or HEAD for a path under the root, asking the file system
/// every time.
pub fn serve(req: &Request<'_>, site: &Site, persist: Persist, out: &mut Vec<u8>) -> Reply {
    let head_only = req.method == Method::Head;
    // 1. Which file the path names.
    let file = match resolve::resolve(site, req.path) {
        Resolved::File(file) => file,
        Resolved::Directory(dir) => match resolve::index(site, &dir) {
            Some(index) => index,
            None => return listing::without_index(req, site, &dir, persist, out),
        },
        Resolved::Redirect => return redirect_to_slash(req, site, persist, head_only, out),
        Resolved::Refused(e) => return error(site, e.status(), persist, head_only, out),
    };
    // 2. The file itself, or a sibling the client accepts.
    let siblings = precompressed::siblings(site, &file.path);
    let available = siblings
        .iter()
        .filter_map(|(coding, found)| Some((*coding, found.as_ref()?)));
    let choice = precompressed::choose(req.accept_encoding, &file, available);
    // 3. Open it: the validators are those of the file opened.
    let (opened, meta) = match resolve::open_regular(&choice.rep.path) {
        Ok(opened) => opened,
        Err(e) => return open_failed(req, site, &e, persist, out),
    };
    let rep = Representation {
        mime: resolve::mime_type(&file.path),
        coding: choice.coding,
        vary: choice.vary,
        validators: Validators::of(&meta),
    };
    // 4 to 6. A 304, a range, or the whole file.
    answer(req, site, &rep, Body::File(opened), persist, out)
}

/// The representation chosen to send, as the response head describes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Representation {
    /// The MIME type, from the name of the file itself (also for a sibling).
    pub(crate) mime: &'static str,
    /// `Content-Encoding`, when a precompressed sibling is sent.
    pub(crate) coding: Option<&'static str>,
    /// Whether the file has a sibling: `Vary: Accept-Encoding`.
    pub(crate) vary: bool,
    /// The version sent: `ETag`, `Last-Modified`, the length.
    pub(crate) validators: Validators,
}

/// Where the body of the chosen representation comes from.
#[derive(Debug)]
pub(crate) enum Body<'a> {
    /// An open file: the stage sends it as a [`FileRegion`].
    File(File),
    /// Contents already in memory (the open-file cache's): copied into the
    /// output buffer after the head.
    Bytes(&'a [u8]),
}

/// Steps 4 to 6 for an opened representation: a `304`, a range, or the
/// whole file, head and body.
pub(crate) fn answer(
    req: &Request<'_>,
    site: &Site,
    rep: &Representation,
    body: Body<'_>,
    persist: Persist,
    out: &mut Vec<u8>,
) -> Reply {
    let answer = FileAnswer {
        site,
        rep,
        persist,
        head_only: req.method == Method::Head,
    };
    if conditional::not_modified(req, rep.validators) {
        return answer.not_modified(out);
    }
    match range::requested(req, rep.validators) {
        Ranges::Whole => answer.whole(body, out),
        Ranges::Unsatisfiable => answer.unsatisfiable(out),
        Ranges::Parts(parts) if parts.len() == 1 => answer.single_part(body, parts[0], out),
        Ranges::Parts(parts) if range::too_many(&parts) => answer.whole(body, out),
        Ranges::Parts(parts) => answer.multipart(&body, &parts, out),
    }
}

/// The answer when the chosen file cannot be opened (it went away, or may
/// not be read, since it was resolved): `404` or `403`.
pub(crate) fn open_failed(
    req: &Request<'_>,
    site: &Site,
    e: &std::io::Error,
    persist: Persist,
    out: &mut Vec<u8>,
) -> Reply {
    let status = path::io_to_path_error(e).status();
    error(site, status, persist, req.method == Method::Head, out)
}

/// One file answer being written: what every kind of it (`200`, `206`,
/// `304`, `416`) needs besides the body.
#[derive(Debug)]
pub(crate) struct FileAnswer<'a> {
    /// The `Server` name, the caching headers, the error pages.
    site: &'a Site,
    /// What the head says about the file.
    rep: &'a Representation,
    /// The connection's decision, for the head and the [`Reply`].
    persist: Persist,
    /// A `HEAD` request: the same head, no body.
    head_only: bool,
}

impl FileAnswer<'_> {
    /// `200` with the whole file.
    fn whole(&self, body: Body<'_>, out: &mut Vec<u8>) -> Reply {
        let v = self.rep.validators;
        let start = out.len();
        let mut h = HeadWriter::new(out, 200, &self.site.server);
        h.content_type(self.rep.mime)
            .header("Content-Length", v.len);
        self.validator_headers(&mut h);
        self.tail_headers(&mut h);
        let out = h.finish(self.persist);
        let len = if self.head_only { 0 } else { v.len };
        self.body(body, 200, 0, len, start, out)
    }

    /// The headers after the length: validators, caching, ranges.
    fn validator_headers(&self, h: &mut HeadWriter<'_>) {
        let v = self.rep.validators;
        h.header("Last-Modified", v.last_modified())
            .header("ETag", v.etag());
        self.site.freshness.write(h);
        h.header("Accept-Ranges", "bytes");
    }

    /// The last headers: coding, `Vary`, no sniffing.
    fn tail_headers(&self, h: &mut HeadWriter<'_>) {
        if let Some(c) = self.rep.coding {
            h.header("Content-Encoding", c);
        }
        if self.rep.vary {
            h.header("Vary", "Accept-Encoding");
        }
        h.header("X-Content-Type-Options", "nosniff");
    }

    /// The reply for `len` body bytes from `offset`, once the head is in
    /// `out`. `start` is where the head began: if contents in memory do
    /// not cover the region (they always do: the offsets come from the
    /// same length), the head is taken back and a `500` written instead.
    fn body(
        &self,
        body: Body<'_>,
        status: u16,
        offset: u64,
        len: u64,
        start: usize,
        out: &mut Vec<u8>,
    ) -> Reply {
        let keep_alive = self.persist.keep_alive();
        match body {
            Body::File(file) => Reply {
                status,
                body_len: len,
                file: (len > 0).then_some(FileRegion { file, offset, len }),
                keep_alive,
            },
            Body::Bytes(bytes) => match slice(bytes, offset, len) {
                Some(part) => {
                    out.extend_from_slice(part);
                    Reply {
                        status,
                        body_len: len,
                        file: None,
                        keep_alive,
                    }
                }
                None => {
                    log::error!("cached contents shorter than their length");
                    out.truncate(start);
                    error(self.site, 500, self.persist, self.head_only, out)
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

/// `301` to the same path with a trailing slash, so that relative links in
/// the directory's page resolve against the directory.
pub(crate) fn redirect_to_slash(
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
        location.extend(percent_encoding::percent_encode(bytes, listing::HREF));
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
