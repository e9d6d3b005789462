//! Stage 2, built by you: a sequential HTTP/1.1 static-file server.
//!
//! One thread, blocking I/O, one connection at a time: accept a
//! connection, answer its requests until it closes, then accept the next.
//! The standard library does the sockets and files; `httparse` reads the
//! request head.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest request head we read: the request line and the headers.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may keep us waiting for its next bytes.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole request head may take: the read timeout alone bounds
/// each `read`, and a client sending a byte every few seconds would hold
/// this one-connection-at-a-time server for hours.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may keep us waiting while it does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a lingering close waits for the client to close its side.
const LINGER: Duration = Duration::from_secs(1);

/// The command line: `--addr HOST:PORT` and `--root DIR`.
struct Config {
    addr: String,
    root: PathBuf,
}

fn parse_args() -> Result<Config, String> {
    let mut config = Config {
        addr: "127.0.0.1:8080".to_string(),
        root: PathBuf::from("."),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => config.addr = value,
            "--root" => config.root = PathBuf::from(value),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(config)
}

fn main() {
    let config = parse_args().unwrap_or_else(|e| {
        eprintln!("stage2-starter: {e}\nusage: stage2-starter [--addr HOST:PORT] [--root DIR]");
        std::process::exit(2);
    });
    if let Err(e) = run(&config) {
        eprintln!("stage2-starter: {e}");
        std::process::exit(1);
    }
}

fn run(config: &Config) -> io::Result<()> {
    // The root with its symlinks resolved: every file we serve must be under it.
    let root = fs::canonicalize(&config.root)?;
    let listener = TcpListener::bind(&config.addr)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    accept_loop(&listener, &root);
    Ok(())
}

/// Accepts one connection at a time and serves it to its end; the next
/// clients wait in the kernel's accept queue meanwhile.
fn accept_loop(listener: &TcpListener, root: &Path) {
    for stream in listener.incoming() {
        // An error ends one connection, never the server.
        if let Err(e) = stream.and_then(|stream| serve_connection(stream, root)) {
            eprintln!("connection: {e}");
        }
    }
}

/// A client's connection, and the bytes read from it but not used yet.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads what the client sent next onto the end of `buf`: the count, 0
    /// when the client has closed its side.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0; 4096];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

/// Serves the requests of one connection, one after the other.
fn serve_connection(stream: TcpStream, root: &Path) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    // STEP 4: serve request after request: loop from here to the end. The
    // bytes after a head stay in `conn.buf` for the next request. Close
    // only when the request says so (see `Request`), or, until step 5
    // skips bodies, after a request that has one.
    let head_len = match read_head(&mut conn)? {
        Head::Complete(len) => len,
        // STEP 1: a head too large to read is 431 Request Header Fields Too Large.
        // STEP 5: but a request line too long to read is 414 URI Too Long.
        Head::TooLarge => return refuse(conn, 501, false),
        Head::Closed => return Ok(()),
    };
    let request = match parse_request(&conn.buf[..head_len]) {
        Ok(request) => request,
        Err(status) => return refuse(conn, status, false),
    };
    // What follows the head is its body, then the next request.
    conn.buf.drain(..head_len);
    let head_only = request.method == "HEAD";
    // A chunked body is read before the answer: only at its end do we
    // know it is well formed.
    if request.framing == Framing::Chunked
        && let Err(status) = read_chunked(&mut conn)
    {
        return refuse(conn, status, head_only);
    }
    let response = respond(&request, root);
    send_response(&mut conn.stream, response, head_only, false)?;
    // A body of known length can wait until after the answer.
    if let Framing::Length(len) = request.framing {
        skip_body(&mut conn, len)?;
    }
    linger_close(conn)
}

/// What [`read_head`] found at the front of the buffer.
enum Head {
    /// A whole head of this many bytes (its empty line included).
    Complete(usize),
    /// No end of the head within [`MAX_HEAD`] bytes.
    TooLarge,
    /// The client closed before it sent a whole head.
    Closed,
}

/// Reads until `conn.buf` begins with a whole request head, within
/// `HEAD_TIMEOUT`; a late head is an error, and ends the connection.
fn read_head(conn: &mut Conn) -> io::Result<Head> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let head = loop {
        match head_end(&conn.buf) {
            Some(end) if end <= MAX_HEAD => break Head::Complete(end),
            None if conn.buf.len() < MAX_HEAD => {}
            _ => break Head::TooLarge,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        conn.stream.set_read_timeout(Some(left.min(READ_TIMEOUT)))?;
        if conn.fill()? == 0 {
            break Head::Closed;
        }
    };
    // What follows the head (a body) has the usual timeout per read.
    conn.stream.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(head)
}

/// Where the head at the start of `buf` ends, just after its empty line.
/// Empty lines before the request line are skipped (RFC 9112, section 2.2).
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") {
        start += 2;
    }
    let at = buf[start..].windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(start + at + 4)
}

/// A request, as the rest of the server needs it.
#[allow(dead_code)] // STEP 1 builds it.
struct Request {
    method: String,
    /// The target's path, without its query, still percent-encoded.
    path: String,
    // STEP 4: the version, and whether the connection stays open after
    // the answer: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
    // `Connection: keep-alive`.
    /// How the body that follows the head is delimited.
    framing: Framing,
}

/// How a request body is delimited (RFC 9112, section 6.3).
#[derive(Clone, Copy, PartialEq)]
#[allow(dead_code)] // STEP 1 makes them.
enum Framing {
    /// No body.
    None,
    /// `Content-Length`: this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`: chunks up to a chunk of size 0.
    Chunked,
}

/// Parses a request head; an error is the status to answer it with.
// STEP 1: parse `head` with `httparse::Request::parse` (room for
// MAX_HEADERS headers) into a `Request`:
// - a malformed head is 400, too many headers 431; httparse's
//   `Error::Version` is 505 when the line is otherwise well formed
//   (`GET / HTTP/2.0`), else 400;
// - the target is `/path?query` or `http://host/path?query`: keep the
//   path, drop the query; any other target is 400;
// - HTTP/1.1 needs exactly one `Host`, HTTP/1.0 at most one: else 400;
// - the framing: none, one `Content-Length` of digits only, or
//   `Transfer-Encoding: chunked` alone in HTTP/1.1; anything else
//   (both, two lengths, `-5`, `0x5`, another coding) is 400.
fn parse_request(head: &[u8]) -> Result<Request, u16> {
    let _ = head;
    Err(501)
}

/// Reads a chunked body to its end and forgets it (RFC 9112, section 7.1):
/// chunks of a hex size line, CRLF, that many bytes and a CRLF, up to a
/// chunk of size 0, trailer fields and an empty line.
// STEP 5: take each line off `conn.buf` (reading more with `conn.fill()`;
// a CR or an LF alone is 400); a size is hex digits only, a `;extension`
// after it is ignored; skip the data with `skip_body`, then demand an
// empty line; after size 0, skip the trailer lines up to an empty one.
// More than 1 MiB of data in all is 413; anything malformed is 400.
fn read_chunked(conn: &mut Conn) -> Result<(), u16> {
    let _ = conn;
    Ok(())
}

/// Reads and forgets `len` bytes of body, the ones in `conn.buf` first.
// STEP 5: drop what `conn.buf` holds of the body, then `conn.fill()` and
// drop again until `len` bytes are gone (the end of input is an error).
fn skip_body(conn: &mut Conn, len: u64) -> io::Result<()> {
    let _ = (conn, len);
    Ok(())
}

/// What we answer: a status, header fields, and a body.
struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Body,
}

enum Body {
    Bytes(Vec<u8>),
    /// An open file, of this length.
    #[allow(dead_code)] // STEP 2 makes it.
    File(File, u64),
}

impl Response {
    fn html(status: u16, html: String) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", "text/html; charset=utf-8".to_string())],
            body: Body::Bytes(html.into_bytes()),
        }
    }
}

/// A small HTML page that says what went wrong.
fn error_response(status: u16) -> Response {
    let text = format!("{status} {}", reason(status));
    Response::html(
        status,
        format!("<!DOCTYPE html>\n<title>{text}</title>\n<h1>{text}</h1>\n"),
    )
}

/// The reason phrase that goes with a status code.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// The answer to a parsed request.
fn respond(request: &Request, root: &Path) -> Response {
    // STEP 1: GET and HEAD go on; the other methods HTTP defines (POST,
    // PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH) get 405 with
    // `Allow: GET, HEAD`, and any other method 501.
    match resolve(root, &request.path) {
        Ok(Resolved::File(path)) => serve_file(&path),
        Ok(Resolved::Directory(dir)) => list_directory(&dir),
        Ok(Resolved::Redirect(location)) => {
            let mut response = error_response(301);
            response.headers.push(("Location", location));
            response
        }
        Err(status) => error_response(status),
    }
}

/// What a request path names under the root.
#[allow(dead_code)] // STEP 2 and STEP 3 make them.
enum Resolved {
    /// A regular file.
    File(PathBuf),
    /// A directory without an `index.html`, asked for with a final `/`.
    Directory(PathBuf),
    /// A directory asked for without the final `/`: go here instead.
    Redirect(String),
}

/// Maps a request path to what it names under `root` (a canonical path),
/// never to anything outside it.
// STEP 2: split `path` at `/` and percent-decode each segment once; skip
// empty and `.` segments; refuse (400) a bad `%` escape, `..`, and a
// segment that decodes to a `/`, `\` or NUL; push the others onto `root`.
// Resolve the symlinks (`fs::canonicalize`): a path that is not under
// `root` then is 404. A regular file is `Resolved::File`, unless the path
// ends in `/` (or `/.`); a directory asked for with the final `/` serves
// its `index.html`; everything else (a FIFO, a socket...) is 404.
// STEP 3: a directory asked for without the final `/` is
// `Resolved::Redirect` to the cleaned path with it, built from the decoded
// segments (never `//host/`); with it but without an `index.html`,
// `Resolved::Directory`.
fn resolve(root: &Path, path: &str) -> Result<Resolved, u16> {
    let _ = (root, path);
    // Until step 2, nothing is served.
    Err(501)
}

/// Opens a regular file (checked again once open) and answers with it.
// STEP 2: open `path`, check with `File::metadata` that it is a regular
// file, and answer 200 with `Body::File` and a `Content-Type` from the
// extension: html, css, js, json, txt, svg, png, jpg, gif, ico, wasm,
// pdf, and `application/octet-stream` for the rest.
fn serve_file(path: &Path) -> Response {
    let _ = path;
    error_response(501)
}

/// An HTML page with a link to each entry of `dir`, by name; a directory's
/// name ends in `/`.
// STEP 3: read `dir` (`fs::read_dir`), sort the names, and link each one:
// the `href` percent-encoded, the text HTML-escaped (`&`, `<`, `>`, `"`,
// `'`), since a name may be `a&b <c>.txt`.
fn list_directory(dir: &Path) -> Response {
    let _ = dir;
    error_response(501)
}

/// Sends the status line, the header fields, and the body unless the
/// request was a HEAD. A body always has a `Content-Length`.
fn send_response(
    stream: &mut TcpStream,
    response: Response,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let length = match &response.body {
        Body::Bytes(bytes) => bytes.len() as u64,
        Body::File(_, len) => *len,
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {length}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    match response.body {
        _ if head_only => Ok(()),
        Body::Bytes(bytes) => stream.write_all(&bytes),
        Body::File(file, len) => send_file(stream, file, len),
    }
}

/// Streams `len` bytes of `file` to the client, a piece at a time, never
/// the whole file in memory.
// STEP 2: `io::copy` from `file.take(len)` (8 KiB at a time); fewer
// than `len` bytes is an error, since the client waits for all that
// `Content-Length` promised.
fn send_file(stream: &mut TcpStream, file: File, len: u64) -> io::Result<()> {
    let _ = (stream, file, len);
    Err(io::Error::other("sending a file is step 2"))
}

/// Answers `status` and closes: after an error we no longer know where
/// the next request would begin.
fn refuse(mut conn: Conn, status: u16, head_only: bool) -> io::Result<()> {
    send_response(&mut conn.stream, error_response(status), head_only, false)?;
    linger_close(conn)
}

/// Closes without losing the last answer. Closing a socket with unread
/// bytes in it makes the kernel send a reset, which can destroy the answer
/// before the client reads it; so we send our FIN first, then read and
/// drop what the client still sends until it closes (or [`LINGER`] ends).
fn linger_close(mut conn: Conn) -> io::Result<()> {
    conn.stream.shutdown(Shutdown::Write)?;
    let deadline = Instant::now() + LINGER;
    let mut sink = [0; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        conn.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        if !matches!(conn.stream.read(&mut sink), Ok(1..)) {
            break;
        }
    }
    Ok(())
}
