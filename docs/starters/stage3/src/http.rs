//! The HTTP part, given: a small sans-IO answerer for GET and HEAD of
//! static files. It takes the bytes a connection has received so far and
//! returns a decision; it never touches a socket, so the same file serves
//! a blocking thread (stage 3), an event loop (stage 4) and a worker
//! process (stage 5). This stage is about the waiting, not about HTTP:
//! swap in your own stage 2 here if you like (the stage 2 rubric grades
//! it, `bench check --stage 2`). It keeps only what the concurrency
//! checks need: no ranges, no listings, no request bodies.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The longest request head accepted; longer gets 431.
pub const MAX_HEAD: usize = 8 * 1024;

/// What to do with the bytes received so far.
#[derive(Debug)]
pub enum Decision {
    /// No whole request head yet: read more, then ask again.
    NeedMore,
    /// A whole request: its head was the first `consumed` bytes of the
    /// input (drop them); write `response`, then close if `close`.
    Respond {
        consumed: usize,
        response: Vec<u8>,
        close: bool,
    },
}

/// Decides what the bytes at the start of `input` ask for, serving files
/// from under `root`.
pub fn decide(input: &[u8], root: &Path) -> Decision {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if input.len() <= MAX_HEAD => return Decision::NeedMore,
        Ok(httparse::Status::Partial) => return error(431, input.len()),
        Err(_) => return error(400, input.len()),
    };
    if consumed > MAX_HEAD {
        return error(431, consumed);
    }
    // A request with a body is more than this answerer reads: refuse it
    // and close, so that the body is never taken for the next request.
    // Every field counts, not only the first: `Content-Length: 0` and then
    // `Content-Length: 40` would otherwise smuggle a request in the body.
    let has_body = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value.trim_ascii() != b"0")
    });
    if has_body {
        return error(413, consumed);
    }
    // `Connection` is a comma-separated list, possibly over several fields.
    let says = |token: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    };
    let close = if req.version == Some(0) {
        !says("keep-alive")
    } else {
        says("close")
    };
    let method = req.method.unwrap_or("");
    let (status, body, mime) = match method {
        "GET" | "HEAD" => {
            match resolve(root, req.path.unwrap_or("")).and_then(|p| read_file(root, p)) {
                Some((body, path)) => (200, body, mime_type(&path)),
                None => (404, b"not found\n".to_vec(), "text/plain; charset=utf-8"),
            }
        }
        _ => (
            405,
            b"method not allowed\n".to_vec(),
            "text/plain; charset=utf-8",
        ),
    };
    let mut response = head(status, mime, body.len(), close);
    if method != "HEAD" {
        response.extend_from_slice(&body);
    }
    Decision::Respond {
        consumed,
        response,
        close,
    }
}

/// A whole error answer that closes the connection: for a server to send
/// on its own (408 when a head stalls, 503 when it is too busy).
pub fn error_response(status: u16) -> Vec<u8> {
    let body = format!("{status} {}\n", reason(status));
    let mut out = head(status, "text/plain; charset=utf-8", body.len(), true);
    out.extend_from_slice(body.as_bytes());
    out
}

fn error(status: u16, consumed: usize) -> Decision {
    Decision::Respond {
        consumed,
        response: error_response(status),
        close: true,
    }
}

fn head(status: u16, mime: &str, len: usize, close: bool) -> Vec<u8> {
    let connection = if close { "close" } else { "keep-alive" };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {mime}\r\nContent-Length: {len}\r\nConnection: {connection}\r\n",
        reason(status)
    );
    if status == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    if status == 503 {
        head.push_str("Retry-After: 1\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The file a target names under `root`, or `None`: only plain path
/// segments (no `..`, no percent-escapes), and a directory means its
/// `index.html`.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next()?;
    if !path.starts_with('/') || path.contains('%') {
        return None;
    }
    let mut file = root.to_path_buf();
    for part in Path::new(path).components() {
        match part {
            Component::RootDir => {}
            Component::Normal(name) => file.push(name),
            _ => return None,
        }
    }
    if path.ends_with('/') {
        file.push("index.html");
    }
    Some(file)
}

/// A regular file's bytes, if it is inside `root` once symlinks are
/// resolved (a link in the root that leads out is not followed out); a
/// FIFO or a folder is `None`: never opened for reading, which could block.
fn read_file(root: &Path, path: PathBuf) -> Option<(Vec<u8>, PathBuf)> {
    let real = path.canonicalize().ok()?;
    if !real.starts_with(root.canonicalize().ok()?) || !std::fs::metadata(&real).ok()?.is_file() {
        return None;
    }
    let mut body = Vec::new();
    File::open(&real).ok()?.read_to_end(&mut body).ok()?;
    // The type is the requested name's, as nginx does, not the link's target's.
    Some((body, path))
}

fn mime_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}
