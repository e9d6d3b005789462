//! `--tls-redirect PORT`: a plain-HTTP port beside the HTTPS one that
//! answers every request with a `301` to the same path on `https://`, as an
//! nginx `server { listen 80; return 301 https://$host$request_uri; }`
//! block does.
//!
//! It is deliberately small and the same in every stage: a thread that
//! accepts, and a thread per connection (at most [`MAX_CONNECTIONS`] at a
//! time; past that a newcomer is closed) that reads one request head under
//! the header timeout, answers and closes. The redirect port carries one
//! short exchange per visitor, so its architecture is not what the stage
//! teaches; the HTTPS port is. Stages 2–4 run it in the one process; stage
//! 5's master binds it (as root, before anything drops privileges) and
//! every worker runs the accepting thread on the inherited listener, so
//! the master stays single-threaded for `fork`.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::server::HttpConfig;

/// Connections served at once on the redirect port.
pub const MAX_CONNECTIONS: usize = 64;

/// The largest request head read before answering `431`.
const MAX_HEAD: usize = 8 * 1024;

/// A bound redirect port and where it sends clients.
#[derive(Debug)]
pub struct Redirect {
    listener: TcpListener,
    /// The HTTPS port the `Location` names.
    https_port: u16,
}

impl Redirect {
    /// Binds `--tls-redirect` on `--addr`'s IP, if it is given; `https`
    /// is the bound HTTPS address (its port is what `Location` names).
    /// Call it where the main listener is bound, before privileges drop.
    pub fn bind(config: &HttpConfig, https: SocketAddr) -> io::Result<Option<Redirect>> {
        let Some(port) = config.tls_redirect else {
            return Ok(None);
        };
        if config.tls_cert.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--tls-redirect needs --tls-cert and --tls-key",
            ));
        }
        let addr = SocketAddr::new(https.ip(), port);
        let listener = TcpListener::bind(addr).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("--tls-redirect: cannot listen on {addr}: {e}"),
            )
        })?;
        Ok(Some(Redirect {
            listener,
            https_port: https.port(),
        }))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Prints `redirecting http://ADDR/ to https` on stdout (after the
    /// `listening on` line: tests and scripts read the port from it).
    pub fn announce(&self) {
        if let Ok(addr) = self.local_addr() {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "redirecting http://{addr}/ to https");
            let _ = out.flush();
        }
    }

    /// Starts the accepting thread; each request gets its answer within
    /// `header_timeout` or the connection is closed.
    pub fn spawn(self, header_timeout: Duration) -> io::Result<()> {
        std::thread::Builder::new()
            .name("tls-redirect".into())
            .spawn(move || self.run(header_timeout))?;
        Ok(())
    }

    fn run(self, header_timeout: Duration) {
        let busy = Arc::new(AtomicUsize::new(0));
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: wait a little rather than spin.
                    log::warn!("--tls-redirect: accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                busy.fetch_sub(1, Ordering::AcqRel);
                log::debug!("--tls-redirect: {peer}: {MAX_CONNECTIONS} already, closed");
                continue;
            }
            let busy = Arc::clone(&busy);
            let https_port = self.https_port;
            let local = stream.local_addr().map(|a| a.ip());
            let spawned = std::thread::Builder::new()
                .name("tls-redirect-conn".into())
                .spawn(move || {
                    let ip = local.unwrap_or(IpAddr::from([127, 0, 0, 1]));
                    if let Err(e) = answer(stream, ip, https_port, header_timeout) {
                        log::debug!("--tls-redirect: {peer}: {e}");
                    }
                    busy.fetch_sub(1, Ordering::AcqRel);
                });
            if let Err(e) = spawned {
                log::warn!("--tls-redirect: no thread for {peer}: {e}");
            }
        }
    }
}

/// For a one-process stage, after its `listening on` line: announces the
/// redirect port and starts its thread, if `--tls-redirect` bound one;
/// exits if the thread cannot start.
pub fn start_or_exit(redirect: Option<Redirect>, header_timeout: Duration) {
    if let Some(r) = redirect {
        r.announce();
        r.spawn(header_timeout)
            .unwrap_or_else(|e| crate::server::fatal(&format!("--tls-redirect: {e}")));
    }
}

/// Reads one head from `stream` (under the deadline) and answers it.
fn answer(
    mut stream: TcpStream,
    local: IpAddr,
    https_port: u16,
    header_timeout: Duration,
) -> io::Result<()> {
    let deadline = Instant::now() + header_timeout;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let reply = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break response(&head[..end + 4], local, https_port);
        }
        if head.len() > MAX_HEAD {
            break plain(431, "Request Header Fields Too Large");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break plain(408, "Request Timeout");
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break plain(408, "Request Timeout");
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_write_timeout(Some(header_timeout))?;
    stream.write_all(reply.as_bytes())?;
    // FIN after the answer; what the client sent after its head is dropped.
    stream.shutdown(Shutdown::Write)
}

/// The answer to one request head: `301` to `https://HOST[:PORT]TARGET`,
/// or `400` for a head that does not parse or a target that is not a path.
fn response(head: &[u8], local: IpAddr, https_port: u16) -> String {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(head) else {
        return plain(400, "Bad Request");
    };
    let Some(target) = req.path.filter(|p| p.starts_with('/')) else {
        return plain(400, "Bad Request");
    };
    let host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(host_name)
        .unwrap_or_else(|| match local {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        });
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    format!(
        "HTTP/1.1 301 Moved Permanently\r\nLocation: https://{host}{port}{target}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

/// The host part of a `Host` value (`example.com:8080` → `example.com`,
/// `[::1]:80` → `[::1]`), if it is made only of the characters a host name
/// or an IP literal may have: nothing a client sends can add a header or
/// turn the `Location` into another URL.
fn host_name(value: &str) -> Option<String> {
    let value = value.trim();
    let host = if value.starts_with('[') {
        &value[..=value.find(']')?]
    } else {
        value.split(':').next()?
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':');
    (!host.is_empty() && host.chars().all(allowed)).then(|| host.to_ascii_lowercase())
}

/// A short error answer that closes.
fn plain(status: u16, reason: &str) -> String {
    format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn location(head: &str, port: u16) -> String {
        let r = response(head.as_bytes(), LOCAL, port);
        r.lines()
            .find_map(|l| l.strip_prefix("Location: "))
            .map(str::to_string)
            .unwrap_or_else(|| r.lines().next().unwrap_or("").to_string())
    }

    #[test]
    fn keeps_the_path_and_query_and_names_the_https_port() {
        assert_eq!(
            location(
                "GET /a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
                8443
            ),
            "https://example.com:8443/a/b?c=d"
        );
        assert_eq!(
            location("GET / HTTP/1.1\r\nHost: Example.COM\r\n\r\n", 443),
            "https://example.com/"
        );
        assert_eq!(
            location("GET /x HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 8443),
            "https://[::1]:8443/x"
        );
    }

    #[test]
    fn without_a_usable_host_names_the_address_it_was_reached_on() {
        assert_eq!(
            location("GET /x HTTP/1.0\r\n\r\n", 8443),
            "https://127.0.0.1:8443/x"
        );
        // A Host that would change the URL is not copied into it.
        assert_eq!(
            location("GET /x HTTP/1.1\r\nHost: evil.example/@x\r\n\r\n", 8443),
            "https://127.0.0.1:8443/x"
        );
    }

    #[test]
    fn a_target_that_is_not_a_path_or_a_bad_head_gets_400() {
        assert_eq!(
            location(
                "GET http://other.example/ HTTP/1.1\r\nHost: a\r\n\r\n",
                8443
            ),
            "HTTP/1.1 400 Bad Request"
        );
        assert_eq!(
            location("GET //evil.example HTTP/1.1\r\nHost: a\r\n\r\n", 8443),
            "https://a:8443//evil.example"
        );
        assert_eq!(
            location("NOT HTTP\r\n\r\n", 8443),
            "HTTP/1.1 400 Bad Request"
        );
    }
}
