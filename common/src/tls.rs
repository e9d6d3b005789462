//! TLS with rustls: one adapter between a socket and the sans-IO HTTP core.
//!
//! rustls is sans-IO in the same way as [`crate::http`]: a
//! [`ServerConnection`] is fed the bytes that came off the socket
//! (`read_tls`, then `process_new_packets`), hands out the plaintext they
//! carried (`reader()`), takes the plaintext to send (`writer()`) and
//! gives back the bytes to put on the wire (`write_tls`). It never waits
//! and never touches a descriptor. So TLS is one more layer of "bytes in,
//! bytes out", and [`Session`] is that layer, written once: every stage
//! keeps its own way of *waiting* (a blocking read with a deadline, a mio
//! readiness flag) and calls the same four methods.
//!
//! ```text
//! socket ──read──► Session::read_from ──plaintext──► input ──► http::Conn
//! socket ◄─write── Session::write_to  ◄──ciphertext── Session::push ◄── out
//! ```
//!
//! What cannot go through: `sendfile(2)` copies file pages straight into
//! the socket, and the socket now needs ciphertext. With TLS the file is
//! read into memory in chunks and pushed through [`Session::push`] like any
//! other bytes ([`Session::send_region`] for a blocking stage; stage 4
//! does the same step by step).
//!
//! The handshake is counted on the status page
//! (`http_tls_handshakes_total{result="ok|failed|timeout"}`): completed,
//! refused (a bad handshake, plaintext on the TLS port), or cut off by the
//! header timeout while still handshaking.

use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

pub use rustls::ServerConfig;
use rustls::ServerConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::http::FileRegion;
use crate::stats::Counters;

/// The ALPN protocol the HTTP stages offer: HTTP/1.1 only.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Plaintext bytes read from a file per step when a file region is sent
/// through TLS (one TLS record holds at most 16 KiB).
pub const FILE_CHUNK: usize = 16 * 1024;

/// Loads a PEM certificate chain and its PEM private key and builds a
/// server configuration: TLS 1.3 and 1.2, the `ring` crypto provider, no
/// client certificates, and `alpn` as the protocols offered (empty: no
/// ALPN). The errors name the file.
pub fn server_config(cert: &Path, key: &Path, alpn: &[&[u8]]) -> io::Result<Arc<ServerConfig>> {
    let bad = |path: &Path, what: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: {what}", path.display()),
        )
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, &e))?;
    if certs.is_empty() {
        return Err(bad(cert, &"no PEM certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| io::Error::other(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            bad(
                key,
                &format_args!("does not go with {}: {e}", cert.display()),
            )
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// What one [`Session::read_from`] brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// TLS bytes were read; `n` plaintext bytes were appended (0 while the
    /// handshake goes on, or for a record that carried no data).
    Data(usize),
    /// The peer closed (a TCP FIN, or its `close_notify`).
    Eof,
}

/// One TLS connection, server side: the rustls state plus what the
/// status page counts about its handshake.
pub struct Session {
    conn: ServerConnection,
    counters: &'static Counters,
    /// Some bytes came from the peer: a connection closed before sending
    /// anything is not counted as a failed handshake (a port probe).
    received: bool,
    /// The handshake's outcome is counted (once).
    counted: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("handshaking", &self.conn.is_handshaking())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new server-side session that counts into `counters`.
    pub fn new(config: &Arc<ServerConfig>, counters: &'static Counters) -> io::Result<Session> {
        let conn = ServerConnection::new(Arc::clone(config))
            .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
        Ok(Session {
            conn,
            counters,
            received: false,
            counted: false,
        })
    }

    /// True until the handshake is complete.
    pub fn handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// True if TLS bytes wait to be written (handshake messages, records,
    /// an alert, a `close_notify`).
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    fn count(&mut self, counter: &'static std::sync::atomic::AtomicU64) {
        if !self.counted {
            self.counted = true;
            counter.fetch_add(1, Relaxed);
        }
    }

    /// One `read` from `sock` into rustls, then the records are processed
    /// and the plaintext they carried is appended to `input`. A
    /// `WouldBlock` (or a receive timeout) from the socket is returned as
    /// it is. A TLS error is returned as `InvalidData` and counted as a
    /// failed handshake if it came during one; rustls has then queued an
    /// alert, which the caller may send with [`Session::write_to`] before
    /// closing.
    pub fn read_from(&mut self, sock: &mut impl Read, input: &mut Vec<u8>) -> io::Result<Input> {
        let n = loop {
            match self.conn.read_tls(sock) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        if n == 0 {
            if self.received && self.handshaking() {
                self.count(&self.counters.tls_failed);
            }
            return Ok(Input::Eof);
        }
        self.received = true;
        let was_handshaking = self.handshaking();
        let state = match self.conn.process_new_packets() {
            Ok(state) => state,
            Err(e) => {
                if was_handshaking {
                    self.count(&self.counters.tls_failed);
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        };
        if was_handshaking && !self.handshaking() {
            self.count(&self.counters.tls_ok);
        }
        let plain = state.plaintext_bytes_to_read();
        let start = input.len();
        if plain > 0 {
            input.resize(start + plain, 0);
            let got = self.conn.reader().read(&mut input[start..]).unwrap_or(0);
            input.truncate(start + got);
        }
        if state.peer_has_closed() && input.len() == start {
            return Ok(Input::Eof);
        }
        Ok(Input::Data(input.len() - start))
    }

    /// Takes as much of `plain` as rustls will buffer (its limit is 64 KiB
    /// of unsent data) and returns how much: 0 means "write first".
    pub fn push(&mut self, plain: &[u8]) -> usize {
        self.conn.writer().write(plain).unwrap_or(0)
    }

    /// One `write` of pending TLS bytes to `sock`; returns how many went.
    pub fn write_to(&mut self, sock: &mut impl Write) -> io::Result<usize> {
        loop {
            match self.conn.write_tls(sock) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    /// Queues a `close_notify` alert: the end of the data, authenticated
    /// (a bare FIN could be an attacker's truncation).
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    /// The connection's header timeout fired: counted as a handshake
    /// timeout if the handshake was not complete. Returns true if so (the
    /// caller then closes without an HTTP answer: there is no channel to
    /// send one on).
    pub fn timed_out(&mut self) -> bool {
        if self.handshaking() {
            self.count(&self.counters.tls_timeout);
            return true;
        }
        false
    }

    // The blocking side, for stages 2 and 3: the socket is blocking with a
    // send timeout (SO_SNDTIMEO), so a write that makes no progress in time
    // returns `WouldBlock`, reported here as `TimedOut`.

    /// Writes every pending TLS byte to a blocking socket.
    pub fn flush_blocking(&mut self, sock: &mut impl Write) -> io::Result<()> {
        while self.wants_write() {
            match self.write_to(sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "send timed out"));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Encrypts all of `plain` and writes it to a blocking socket.
    pub fn send_blocking(&mut self, sock: &mut impl Write, mut plain: &[u8]) -> io::Result<()> {
        while !plain.is_empty() {
            let n = self.push(plain);
            plain = &plain[n..];
            self.flush_blocking(sock)?;
        }
        Ok(())
    }

    /// Sends a file region through TLS on a blocking socket: read a chunk,
    /// encrypt it, write it. `each` runs before every chunk (a stage's
    /// grace-period check) and stops the transfer with its error.
    pub fn send_region(
        &mut self,
        sock: &mut impl Write,
        region: &FileRegion,
        mut each: impl FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        let mut chunk = vec![0u8; FILE_CHUNK];
        let mut offset = region.offset;
        let end = region.offset + region.len;
        while offset < end {
            each()?;
            let want = ((end - offset) as usize).min(FILE_CHUNK);
            let n = region.file.read_at(&mut chunk[..want], offset)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.send_blocking(sock, &chunk[..n])?;
            offset += n as u64;
        }
        Ok(())
    }
}

/// Reads a file region's next chunk into `buf` (at most [`FILE_CHUNK`]
/// bytes) and pushes what rustls takes; returns the bytes taken, by which
/// the caller advances the region. For an event loop that sends a file
/// through TLS step by step.
pub fn push_region_chunk(
    session: &mut Session,
    region: &FileRegion,
    buf: &mut [u8],
) -> io::Result<usize> {
    let want = (region.len as usize).min(FILE_CHUNK).min(buf.len());
    let n = region.file.read_at(&mut buf[..want], region.offset)?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(session.push(&buf[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate for 127.0.0.1 and its key, written as PEM files.
    fn cert_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        (cert, key, ck.cert.pem())
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn client(cert_pem: &str) -> rustls::ClientConnection {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        let name = "127.0.0.1".try_into().unwrap();
        rustls::ClientConnection::new(Arc::new(config), name).unwrap()
    }

    /// A handshake and one request and answer, entirely in memory: the
    /// session is sans-IO, so a `Vec` can stand in for the socket.
    #[test]
    fn a_session_handshakes_and_carries_plaintext_both_ways() {
        static COUNTERS: Counters = Counters::new();
        let dir = temp_dir("mem");
        let (cert, key, pem) = cert_files(&dir);
        let config = server_config(&cert, &key, &[ALPN_HTTP1]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let mut server = Session::new(&config, &COUNTERS).unwrap();
        let mut client = client(&pem);
        client
            .writer()
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut input = Vec::new();
        for _ in 0..10 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            if !wire.is_empty() {
                server.read_from(&mut &wire[..], &mut input).unwrap();
            }
            let mut back = Vec::new();
            server.flush_blocking(&mut back).unwrap();
            if !back.is_empty() {
                client.read_tls(&mut &back[..]).unwrap();
                client.process_new_packets().unwrap();
            }
        }
        assert_eq!(input, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(client.alpn_protocol(), Some(ALPN_HTTP1));
        let mut back = Vec::new();
        server
            .send_blocking(&mut back, b"HTTP/1.1 200 OK\r\n")
            .unwrap();
        client.read_tls(&mut &back[..]).unwrap();
        let state = client.process_new_packets().unwrap();
        let mut got = vec![0; state.plaintext_bytes_to_read()];
        client.reader().read_exact(&mut got).unwrap();
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n");
        assert_eq!(COUNTERS.tls_ok.load(Relaxed), 1);
        assert_eq!(COUNTERS.tls_failed.load(Relaxed), 0);
    }

    /// Plaintext HTTP sent to a TLS session is an error and a failed
    /// handshake, and an alert is queued for the client.
    #[test]
    fn plaintext_is_a_failed_handshake() {
        static COUNTERS: Counters = Counters::new();
        let dir = temp_dir("plain");
        let (cert, key, _) = cert_files(&dir);
        let config = server_config(&cert, &key, &[ALPN_HTTP1]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let mut server = Session::new(&config, &COUNTERS).unwrap();
        let err = server
            .read_from(
                &mut &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
                &mut Vec::new(),
            )
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(COUNTERS.tls_failed.load(Relaxed), 1);
        assert!(server.timed_out(), "still handshaking");
        assert_eq!(COUNTERS.tls_timeout.load(Relaxed), 0, "counted once only");
    }

    /// A key that does not match, or a file that is no PEM, is refused
    /// with the file's name.
    #[test]
    fn bad_files_are_refused_with_their_name() {
        let dir = temp_dir("bad");
        let (cert, _key, _) = cert_files(&dir);
        let other = rcgen::KeyPair::generate().unwrap();
        let wrong = dir.join("wrong.pem");
        std::fs::write(&wrong, other.serialize_pem()).unwrap();
        let mismatch = server_config(&cert, &wrong, &[]).unwrap_err().to_string();
        let not_pem = server_config(&wrong, &wrong, &[]).unwrap_err().to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(mismatch.contains("wrong.pem"), "{mismatch}");
        assert!(not_pem.contains("no PEM certificate"), "{not_pem}");
    }
}
