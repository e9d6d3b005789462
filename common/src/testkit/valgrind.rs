//! A leak check: a stage runs under valgrind's memcheck, serves a few
//! hundred requests and a collection of malformed input, is stopped with
//! SIGTERM, and must report no memory error and no definitely lost byte.
//!
//! "Definitely lost" is memory no pointer leads to any more: a real leak.
//! "Still reachable" (the error log's static state, thread-locals, the
//! `Date` cache) is memory the process could still free; it is not a leak
//! and is not counted. Memcheck's exit code (`--error-exitcode`) and the
//! summary it writes are both checked, so a run that valgrind could not
//! complete does not pass by saying nothing.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::ServerProcess;
use super::client::Client;

/// The exit code memcheck uses when it found errors (or definite leaks).
const ERROR_EXIT: i32 = 99;

/// Runs `bin` with `extra_args` under memcheck, drives it with
/// [`traffic`], stops it with SIGTERM, and fails the test if memcheck
/// reports an error or a definitely lost byte. Skips (loudly) when valgrind
/// is missing on a developer's machine; fails under `CI`.
pub fn leak_check(bin: &str, extra_args: &[&str]) {
    if !super::require_tool(
        &["valgrind", "--version"],
        "valgrind",
        "the valgrind leak check",
    ) {
        return;
    }
    let dir = std::env::temp_dir().join(format!(
        "valgrind-{}-{}",
        super::name_of(bin),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let root = make_root(&dir);
    let report = dir.join("memcheck.txt");
    let access_log = dir.join("access.log");
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=memcheck")
        .arg("--leak-check=full")
        .arg("--errors-for-leak-kinds=definite")
        .arg("--show-leak-kinds=definite")
        .arg(format!("--error-exitcode={ERROR_EXIT}"))
        .arg(format!("--log-file={}", report.display()))
        .arg(bin)
        .arg("--addr")
        .arg("127.0.0.1:0")
        .arg("--root")
        .arg(&root)
        .arg("--access-log")
        .arg(&access_log)
        .args(extra_args);
    // Under valgrind a debug build starts in a few seconds; ServerProcess
    // waits up to 20 s for the `listening on` line.
    let mut server = ServerProcess::start_command(cmd);
    let served = traffic(server.addr);
    let status = server.terminate();
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    if let Err(e) = judge(status.code(), &text) {
        panic!(
            "{e}\nafter {served} responses; memcheck's report ({}):\n{text}\n\
             reproduce: valgrind --leak-check=full {bin} --addr 127.0.0.1:8080 --root {}",
            report.display(),
            root.display()
        );
    }
    eprintln!(
        "{}: memcheck clean after {served} responses",
        super::name_of(bin)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Decides from memcheck's exit code and report whether the run was clean:
/// exit 0, `ERROR SUMMARY: 0 errors`, and nothing definitely lost (either
/// `definitely lost: 0 bytes` or no leak summary because every block was
/// freed).
pub fn judge(exit_code: Option<i32>, report: &str) -> Result<(), String> {
    if exit_code == Some(ERROR_EXIT) {
        return Err("memcheck found errors or definitely lost memory".into());
    }
    if exit_code != Some(0) {
        return Err(format!("the server exited with {exit_code:?}, not 0"));
    }
    if !report.contains("ERROR SUMMARY: 0 errors") {
        return Err("memcheck's report has no `ERROR SUMMARY: 0 errors`".into());
    }
    let no_leak = report.contains("definitely lost: 0 bytes in 0 blocks")
        || report.contains("All heap blocks were freed");
    if !no_leak {
        return Err("memcheck's report does not say `definitely lost: 0 bytes`".into());
    }
    Ok(())
}

/// A document root with a page, a text file, a file large enough to be sent
/// with `sendfile`, and a folder without an index (a listing).
fn make_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("sub")).expect("create the root");
    std::fs::write(root.join("index.html"), b"<!DOCTYPE html>\n<p>hello</p>\n").unwrap();
    std::fs::write(root.join("notes.txt"), "notes\n".repeat(100)).unwrap();
    std::fs::write(root.join("sub/a b.txt"), b"spaces\n").unwrap();
    std::fs::write(root.join("big.bin"), vec![7u8; 2 << 20]).unwrap();
    root
}

/// Well-formed requests on keep-alive and one-shot connections, then
/// malformed input, each on its own connection and each connection ended
/// (a sequential server serves the next only then). Returns how many
/// responses came back; asserts the well-formed ones were answered.
pub fn traffic(addr: SocketAddr) -> usize {
    let mut served = 0;
    // 20 keep-alive connections of 10 requests each.
    let paths = [
        "/",
        "/index.html",
        "/notes.txt",
        "/sub/",
        "/sub/a%20b.txt",
        "/missing",
        "/big.bin",
        "/server-status",
        "/notes.txt",
    ];
    for _ in 0..20 {
        let mut c = Client::connect(addr);
        for p in paths {
            c.send(format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            let r = c.response(false);
            assert!(matches!(r.status, 200 | 404), "GET {p}: {}", r.status);
            served += 1;
        }
        c.send(b"HEAD /notes.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(c.response(true).status, 200);
        served += 1;
    }
    // 100 one-shot requests: ranges, conditionals, HTTP/1.0.
    let one_shot = [
        "GET /notes.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n",
        "GET /notes.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1,5-6\r\nConnection: close\r\n\r\n",
        "GET /notes.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: *\r\nConnection: close\r\n\r\n",
        "GET /big.bin HTTP/1.0\r\n\r\n",
        "POST /notes.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    ];
    for i in 0..100 {
        let request = one_shot[i % one_shot.len()];
        let mut c = Client::connect(addr);
        c.send(request.as_bytes());
        let r = c.response(false);
        assert!(r.status < 500, "{request:?}: {}", r.status);
        served += 1;
    }
    // Malformed input: the server answers an error (or nothing) and closes.
    // The traversals are well-formed requests, answered 404 and closed at
    // our request.
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "b".repeat(20000)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X: y\r\n".repeat(100)
    );
    let junk: Vec<u8> = (0..=255u8).cycle().take(2000).collect();
    let malformed: Vec<&[u8]> = vec![
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET /../../../etc/passwd HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\n folded: header\r\n\r\n",
        long_line.as_bytes(),
        big_head.as_bytes(),
        many_headers.as_bytes(),
        &junk,
    ];
    for _ in 0..3 {
        for bytes in &malformed {
            served += usize::from(send_and_drain(addr, bytes));
        }
        // Half a head, then our FIN.
        let mut s = stream(addr);
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHo");
        let _ = s.shutdown(Shutdown::Write);
        let _ = s.read_to_end(&mut Vec::new());
        // Half a head, then a reset.
        let s = stream(addr);
        let _ = (&s).write_all(b"GET /big.bin HTTP/1.1\r\nHost");
        reset(s);
        // A download reset after its first bytes.
        let mut s = stream(addr);
        let _ = s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        let _ = s.read(&mut [0u8; 4096]);
        reset(s);
    }
    // The server is still fine.
    let mut c = Client::connect(addr);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(c.response(false).status, 200);
    served + 1
}

/// Connects with a 10 s read timeout as an upper bound on every wait.
fn stream(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the server under test");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `bytes`, reads until the server closes, and says whether it
/// answered anything.
fn send_and_drain(addr: SocketAddr, bytes: &[u8]) -> bool {
    let mut s = stream(addr);
    // The server may close before reading everything: that is allowed.
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    !got.is_empty()
}

/// Closes with a RST (SO_LINGER 0) instead of a FIN.
fn reset(s: TcpStream) {
    super::reset_on_close(&s);
    drop(s);
}

#[cfg(test)]
mod tests {
    use super::judge;

    /// The end of a real memcheck report of a program that leaked one
    /// allocation (a C `malloc(100)` never freed), run with our flags.
    const LEAKED: &str = "==1== HEAP SUMMARY:\n\
        ==1==     in use at exit: 100 bytes in 1 blocks\n\
        ==1== 100 bytes in 1 blocks are definitely lost in loss record 1 of 1\n\
        ==1== LEAK SUMMARY:\n\
        ==1==    definitely lost: 100 bytes in 1 blocks\n\
        ==1== ERROR SUMMARY: 1 errors from 1 contexts (suppressed: 0 from 0)\n";

    const CLEAN: &str = "==1== LEAK SUMMARY:\n\
        ==1==    definitely lost: 0 bytes in 0 blocks\n\
        ==1==    still reachable: 2,816 bytes in 44 blocks\n\
        ==1== ERROR SUMMARY: 0 errors from 0 contexts (suppressed: 0 from 0)\n";

    #[test]
    fn a_leak_or_an_error_fails_and_a_clean_run_passes() {
        assert!(judge(Some(0), CLEAN).is_ok());
        // Memcheck's exit code alone fails the run.
        assert!(judge(Some(99), CLEAN).is_err());
        // So does its report, should the exit code be lost.
        assert!(judge(Some(0), LEAKED).is_err());
        // And a run that did not end cleanly, or wrote no report.
        assert!(judge(Some(1), CLEAN).is_err());
        assert!(judge(None, CLEAN).is_err());
        assert!(judge(Some(0), "").is_err());
    }
}
