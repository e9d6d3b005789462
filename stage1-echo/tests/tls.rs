//! The chat over TLS (#23): `stage1-echo --tls-cert … --tls-key …` with
//! `openssl s_client -quiet` as the client, the certificate made by the
//! test (rcgen, through `common::testkit::tls::Certs`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use common::testkit::ServerProcess;
use common::testkit::tls::Certs;

/// One `openssl s_client -quiet` that checks the server's certificate
/// against `cert`, with its output lines on a channel.
struct SClient {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl SClient {
    fn connect(server: &ServerProcess, certs: &Certs) -> SClient {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-verify_return_error", "-CAfile"])
            .arg(&certs.cert)
            .arg("-connect")
            .arg(server.addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl runs");
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        SClient {
            child,
            stdin,
            lines,
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to openssl");
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a line from the server through openssl within 10 s")
    }
}

impl Drop for SClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two `openssl s_client`s chat through the server: names, a join, a
/// relayed line and a leave, all encrypted on the wire.
#[test]
fn openssl_s_client_chats_over_tls() {
    if !common::testkit::require_tool(&["openssl", "version"], "openssl", "the TLS chat test") {
        return;
    }
    let certs = Certs::new("stage1-tls");
    let server = ServerProcess::start(
        env!("CARGO_BIN_EXE_stage1-echo"),
        &certs.args(&["--mode", "chat", "--model", "epoll"]),
    );
    let mut bob = SClient::connect(&server, &certs);
    bob.send("NICK bob");
    assert_eq!(bob.line(), "OK bob");
    let mut alice = SClient::connect(&server, &certs);
    alice.send("NICK alice");
    assert_eq!(alice.line(), "OK alice");
    assert_eq!(bob.line(), "* alice joined");
    alice.send("hello over tls");
    assert_eq!(bob.line(), "[alice] hello over tls");
    alice.send("QUIT");
    assert_eq!(alice.line(), "BYE");
    assert_eq!(bob.line(), "* alice left");
}

/// A plaintext client on the TLS port gets no chat, only a TLS alert and
/// a close, and the server goes on serving TLS clients.
#[test]
fn plaintext_on_the_tls_chat_port_is_closed() {
    if !common::testkit::require_tool(&["openssl", "version"], "openssl", "the TLS chat test") {
        return;
    }
    let certs = Certs::new("stage1-tls-plain");
    let server = ServerProcess::start(
        env!("CARGO_BIN_EXE_stage1-echo"),
        &certs.args(&["--mode", "chat"]),
    );
    let mut plain = server.connect();
    plain.write_all(b"NICK mallory\n").expect("send");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("OK"),
        "a plaintext answer: {got:?}"
    );
    let mut ok = SClient::connect(&server, &certs);
    ok.send("NICK carol");
    assert_eq!(ok.line(), "OK carol");
}
