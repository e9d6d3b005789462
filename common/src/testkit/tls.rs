//! TLS tests every HTTPS stage runs (`tls_tests!`): certificates made by
//! the test (rcgen; nothing secret is committed), a rustls client, and the
//! checks: curl fetches over HTTPS, plaintext on the TLS port is closed and
//! counted, a stalled handshake times out and is counted, a client that
//! does not trust the certificate fails and the server goes on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::ServerProcess;
use super::files::TempDir;

/// A self-signed certificate for `127.0.0.1` and `localhost`, and its
/// key, as PEM files in a temporary folder.
#[derive(Debug)]
pub struct Certs {
    /// The folder holding them.
    pub dir: TempDir,
    /// The certificate (PEM): what a client must trust.
    pub cert: PathBuf,
    /// The private key (PEM).
    pub key: PathBuf,
    /// The certificate's PEM text.
    pub pem: String,
}

impl Certs {
    /// Generates a fresh pair.
    pub fn new(tag: &str) -> Certs {
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let ck = rcgen::generate_simple_self_signed(names).expect("rcgen makes a certificate");
        let dir = TempDir::new(tag);
        let pem = ck.cert.pem();
        let cert = dir.write("cert.pem", &pem);
        let key = dir.write("key.pem", ck.signing_key.serialize_pem());
        Certs {
            dir,
            cert,
            key,
            pem,
        }
    }

    /// `--tls-cert CERT --tls-key KEY` followed by `extra`.
    pub fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![
            "--tls-cert",
            self.cert.to_str().expect("temporary paths are UTF-8"),
            "--tls-key",
            self.key.to_str().expect("temporary paths are UTF-8"),
        ];
        v.extend_from_slice(extra);
        v
    }

    /// A rustls client configuration that trusts this certificate only.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        client_config(&self.pem)
    }
}

/// A rustls client configuration (ring, TLS 1.3 and 1.2, ALPN
/// `http/1.1`) trusting the certificates in `pem`.
pub fn client_config(pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots
            .add(c.expect("a PEM certificate"))
            .expect("a usable root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Sends `request` over TLS to `addr` and reads until the server closes
/// (the request should say `Connection: close`).
pub fn exchange(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    request: &[u8],
) -> std::io::Result<Vec<u8>> {
    let name = "127.0.0.1"
        .try_into()
        .expect("an IP address is a server name");
    let conn =
        rustls::ClientConnection::new(Arc::clone(config), name).map_err(std::io::Error::other)?;
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(request)?;
    let mut got = Vec::new();
    match tls.read_to_end(&mut got) {
        Ok(_) => Ok(got),
        // A server that closes without close_notify after a complete
        // response: the bytes are still the answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !got.is_empty() => Ok(got),
        Err(e) => Err(e),
    }
}

/// `GET path` over TLS with `Connection: close`; the whole answer.
pub fn get(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    path: &str,
) -> std::io::Result<Vec<u8>> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    exchange(addr, config, req.as_bytes())
}

/// The value of `http_tls_handshakes_total{result="RESULT"}` on the
/// server's status page (read over TLS).
pub fn handshakes(addr: SocketAddr, config: &Arc<rustls::ClientConfig>, result: &str) -> u64 {
    let page = get(addr, config, "/server-status").expect("the status page over TLS");
    let page = String::from_utf8_lossy(&page);
    let line = format!("http_tls_handshakes_total{{result=\"{result}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line}on the status page:\n{page}"))
}

/// Reads until the server closes; returns what came (a TLS alert, maybe)
/// or panics if the connection is still open after `limit`.
fn read_until_closed(mut sock: TcpStream, limit: Duration) -> Vec<u8> {
    sock.set_read_timeout(Some(limit))
        .expect("set a read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the server kept the connection open ({e}) after {got:?}"),
        }
    }
}

/// Starts `bin` with TLS on the bundled site; a short header timeout, so
/// that a stalled handshake is cut off quickly.
pub fn start(bin: &str, certs: &Certs, args: &[&str]) -> ServerProcess {
    let mut all = certs.args(&["--header-timeout", "1"]);
    all.extend_from_slice(args);
    ServerProcess::serving(bin, crate::server::DEFAULT_ROOT, &all)
}

/// `curl --cacert cert.pem https://127.0.0.1:PORT/` gets the index page
/// (TLS 1.3, and TLS 1.2 too), byte for byte.
pub fn curl_fetches_over_https(bin: &str, args: &[&str]) {
    if !super::require_tool(&["curl", "--version"], "curl", "the HTTPS test with curl") {
        return;
    }
    let certs = Certs::new("tls-curl");
    let server = start(bin, &certs, args);
    let want = std::fs::read(PathBuf::from(crate::server::DEFAULT_ROOT).join("index.html"))
        .expect("the sample site's index.html");
    let url = format!("https://127.0.0.1:{}/", server.addr.port());
    for versions in [&["--tlsv1.3"][..], &["--tlsv1.2", "--tls-max", "1.2"][..]] {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&certs.cert)
            .args(versions)
            .arg(&url)
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "curl {versions:?} {url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == want,
            "curl {versions:?}: the body differs from index.html"
        );
    }
    assert_eq!(handshakes(server.addr, &certs.client_config(), "ok"), 3);
}

/// Plaintext HTTP on the TLS port gets no HTTP answer (at most a TLS
/// alert) and the connection closes; the failed counter counts it.
pub fn plaintext_is_closed_and_counted(bin: &str, args: &[&str]) {
    let certs = Certs::new("tls-plain");
    let server = start(bin, &certs, args);
    let mut sock = TcpStream::connect(server.addr).expect("connect");
    sock.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("send plaintext");
    let got = read_until_closed(sock, Duration::from_secs(10));
    assert!(
        !got.starts_with(b"HTTP/"),
        "a plaintext HTTP answer on the TLS port: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(handshakes(server.addr, &certs.client_config(), "failed"), 1);
}

/// A client that sends the first bytes of a handshake and stalls is cut
/// off by the header timeout (1 s here) and counted as a timeout; the
/// server answers others meanwhile and after.
pub fn stalled_handshake_times_out(bin: &str, args: &[&str]) {
    let certs = Certs::new("tls-stall");
    let server = start(bin, &certs, args);
    let mut sock = TcpStream::connect(server.addr).expect("connect");
    // A TLS record header announcing a 512-byte handshake message, then
    // nothing.
    sock.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .expect("send");
    let got = read_until_closed(sock, Duration::from_secs(10));
    assert!(
        !got.starts_with(b"HTTP/"),
        "an HTTP answer to a stalled handshake"
    );
    let config = certs.client_config();
    assert_eq!(handshakes(server.addr, &config, "timeout"), 1);
    let page = get(server.addr, &config, "/").expect("a good client after the stall");
    assert!(
        page.starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&page)
    );
}

/// A client that does not trust the certificate fails its handshake (the
/// server counts it failed), and a client that does is served after it.
pub fn untrusted_client_fails(bin: &str, args: &[&str]) {
    let certs = Certs::new("tls-untrusted");
    let server = start(bin, &certs, args);
    let stranger = Certs::new("tls-stranger");
    let err = get(server.addr, &stranger.client_config(), "/")
        .expect_err("a client trusting another certificate must fail");
    assert!(
        err.to_string().contains("UnknownIssuer") || err.to_string().contains("certificate"),
        "{err}"
    );
    let config = certs.client_config();
    super::eventually(
        "the failed handshake is counted",
        Duration::from_secs(5),
        || handshakes(server.addr, &config, "failed") == 1,
    );
    let page = get(server.addr, &config, "/").expect("a trusting client");
    assert!(
        page.starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&page)
    );
}

/// A file too large for one read, sent through TLS in chunks (no
/// `sendfile`), arrives whole, twice on one connection.
pub fn large_file_arrives_whole(bin: &str, args: &[&str]) {
    const BIG: usize = 3 << 20;
    let certs = Certs::new("tls-big");
    let root = TempDir::site("tls-big-root", BIG);
    let mut all = certs.args(&[]);
    all.extend_from_slice(args);
    let server = ServerProcess::serving(bin, &root.path, &all);
    let req = b"GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let got = exchange(server.addr, &certs.client_config(), req).expect("two large answers");
    let want = super::files::big_bytes(BIG);
    let mut rest = &got[..];
    for i in 0..2 {
        let head_end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("answer {i}: no head"))
            + 4;
        assert!(rest.starts_with(b"HTTP/1.1 200 "), "answer {i}");
        let body = &rest[head_end..];
        assert!(
            body.len() >= BIG,
            "answer {i}: {} of {BIG} bytes",
            body.len()
        );
        assert!(body[..BIG] == want[..], "answer {i}: the bytes differ");
        rest = &body[BIG..];
    }
    assert!(rest.is_empty(), "{} bytes after the answers", rest.len());
}

/// `--tls-redirect 0`: the announced plain-HTTP port answers every request
/// with a `301` to the same path and query on the HTTPS port, and closes;
/// curl follows it to the page; a client that sends nothing there is cut
/// off (408) without holding up the next one; a target that is not a path
/// gets `400`.
pub fn redirect_sends_plain_http_to_https(bin: &str, args: &[&str]) {
    let certs = Certs::new("tls-redirect");
    let mut all = vec!["--tls-redirect", "0"];
    all.extend_from_slice(args);
    let mut server = start(bin, &certs, &all);
    let line = server
        .next_line(Duration::from_secs(10))
        .expect("a `redirecting http://ADDR/ to https` line after `listening on`");
    let plain: SocketAddr = line
        .strip_prefix("redirecting http://")
        .and_then(|rest| rest.strip_suffix("/ to https"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected second line: {line:?}"));
    let https = server.addr.port();
    let ask = |request: &str| -> String {
        let mut sock = TcpStream::connect(plain).expect("connect to the redirect port");
        sock.write_all(request.as_bytes()).expect("send");
        String::from_utf8_lossy(&read_until_closed(sock, Duration::from_secs(10))).into_owned()
    };
    let got = ask(&format!(
        "GET /index.html?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        plain.port()
    ));
    assert!(
        got.starts_with("HTTP/1.1 301 Moved Permanently\r\n"),
        "{got:?}"
    );
    assert!(
        got.contains(&format!(
            "\r\nLocation: https://127.0.0.1:{https}/index.html?x=1\r\n"
        )),
        "{got:?}"
    );
    assert!(got.contains("\r\nConnection: close\r\n"), "{got:?}");
    // A silent client is cut off by the header timeout (1 s here); the
    // next client is answered meanwhile.
    let silent = TcpStream::connect(plain).expect("connect");
    let got = ask("GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(
        got.contains(&format!("\r\nLocation: https://localhost:{https}/a\r\n")),
        "{got:?}"
    );
    let cut =
        String::from_utf8_lossy(&read_until_closed(silent, Duration::from_secs(10))).into_owned();
    assert!(cut.starts_with("HTTP/1.1 408 "), "{cut:?}");
    let got = ask("GET http://elsewhere.example/ HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(got.starts_with("HTTP/1.1 400 "), "{got:?}");
    if !super::require_tool(
        &["curl", "--version"],
        "curl",
        "curl following the redirect",
    ) {
        return;
    }
    let want = std::fs::read(PathBuf::from(crate::server::DEFAULT_ROOT).join("index.html"))
        .expect("the sample site's index.html");
    let out = std::process::Command::new("curl")
        .args(["-sS", "-L", "--max-time", "10", "--cacert"])
        .arg(&certs.cert)
        .arg(format!("http://127.0.0.1:{}/", plain.port()))
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl -L: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == want,
        "curl -L: the body differs from index.html"
    );
}

/// A server with no room left (its `args` leave room for a connection or
/// two: stage 3's one worker and one queue slot, stage 5's one worker of
/// one connection) turns a newcomer away on a TLS port by closing it,
/// never with a plaintext `503` (which a TLS client would read as a
/// protocol error), counts it rejected, and serves again once room is
/// made. The room is filled with silent connections (a handshake that
/// never starts holds a worker until the 10 s header timeout).
pub fn full_server_closes_without_a_plaintext_503(bin: &str, args: &[&str]) {
    let certs = Certs::new("tls-full");
    let mut all = certs.args(&["--header-timeout", "10"]);
    all.extend_from_slice(args);
    let server = ServerProcess::serving(bin, crate::server::DEFAULT_ROOT, &all);
    let config = certs.client_config();
    // Open silent connections until the server closes one at once: the
    // others hold the room.
    let mut held = Vec::new();
    let mut turned_away = None;
    for _ in 0..50 {
        let mut sock = TcpStream::connect(server.addr).expect("connect");
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("set a read timeout");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let closed = loop {
            match sock.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        if closed || !got.is_empty() {
            turned_away = Some(got);
            break;
        }
        held.push(sock);
    }
    let got = turned_away.expect("the server turned no connection away with its room full");
    assert!(
        !got.starts_with(b"HTTP/"),
        "a plaintext answer on the TLS port: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(!held.is_empty(), "the first connection was turned away");
    // Room again: the held connections close, and a trusting client is
    // served; the turned-away one was counted.
    drop(held);
    // (With one connection of room, the previous client may still hold it
    // for its lingering close: ask again until the answer comes.)
    let mut page = Vec::new();
    super::eventually(
        "a TLS client is served once the room is free",
        Duration::from_secs(10),
        || {
            page = get(server.addr, &config, "/server-status").unwrap_or_default();
            page.starts_with(b"HTTP/1.1 200 ")
        },
    );
    let page = String::from_utf8_lossy(&page);
    let rejected: u64 = page
        .lines()
        .find_map(|l| l.strip_prefix("http_connections_rejected_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no http_connections_rejected_total:\n{page}"));
    assert!(
        rejected >= 1,
        "the turned-away connection is not counted:\n{page}"
    );
}

/// The TLS tests for an HTTPS stage: `common::tls_tests!(BIN, ARGS)`
/// expands to one `#[test]` per check.
#[macro_export]
macro_rules! tls_tests {
    ($bin:expr, $args:expr) => {
        /// `curl --cacert cert.pem https://127.0.0.1:PORT/` works.
        #[test]
        fn curl_fetches_over_https() {
            $crate::testkit::tls::curl_fetches_over_https($bin, $args);
        }

        /// Plaintext on the TLS port: a clean close, counted failed.
        #[test]
        fn plaintext_is_closed_and_counted() {
            $crate::testkit::tls::plaintext_is_closed_and_counted($bin, $args);
        }

        /// A stalled handshake times out and is counted.
        #[test]
        fn stalled_handshake_times_out() {
            $crate::testkit::tls::stalled_handshake_times_out($bin, $args);
        }

        /// A large file through TLS arrives whole.
        #[test]
        fn large_file_arrives_whole() {
            $crate::testkit::tls::large_file_arrives_whole($bin, $args);
        }

        /// `--tls-redirect`: plain HTTP gets a 301 to https.
        #[test]
        fn redirect_sends_plain_http_to_https() {
            $crate::testkit::tls::redirect_sends_plain_http_to_https($bin, $args);
        }

        /// A client that does not trust the certificate fails.
        #[test]
        fn untrusted_client_fails() {
            $crate::testkit::tls::untrusted_client_fails($bin, $args);
        }
    };
}
