//! `--framing protobuf`: varint-length-prefixed protobuf frames, asserted as
//! raw bytes so the wire format itself is under test.
//!
//! How to read the bytes: a frame is `<varint length> <message>`; inside a
//! message each field starts with a key byte `(field_number << 3) | wire_type`,
//! wire type 0 = varint, 2 = length-delimited (bytes, nested message).

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;

use support::{BIN, MODELS, start, with};

/// Reads one frame: the varint length, then that many bytes.
fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = 0usize;
    for shift in (0..).step_by(7).take(10) {
        let mut b = [0u8];
        s.read_exact(&mut b).expect("a length byte");
        len |= usize::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("the frame body");
    body
}

/// Sends `frame` and returns the body of the one response frame.
fn ask(s: &mut TcpStream, frame: &[u8]) -> Vec<u8> {
    s.write_all(frame).unwrap();
    read_frame(s)
}

/// Asserts EOF (or a reset) with nothing more sent.
fn expect_closed(s: &mut TcpStream) {
    let mut rest = Vec::new();
    if s.read_to_end(&mut rest).is_ok() {
        assert!(rest.is_empty(), "unexpected bytes: {rest:?}");
    }
}

/// An `Error` response body: field 6, holding field 1 (the text).
fn error_body(text: &str) -> Vec<u8> {
    let mut inner = vec![0x0a, text.len() as u8];
    inner.extend_from_slice(text.as_bytes());
    let mut body = vec![0x32, inner.len() as u8];
    body.extend(inner);
    body
}

/// Every request kind gets its response, byte for byte, in both models.
#[test]
fn protobuf_round_trips_every_command() {
    for model in MODELS {
        let server = start(&with(model, &["--framing", "protobuf"]));
        let mut s = server.connect();
        // Request{ping: Ping{}} -> Response{pong: Pong{}}: field 3, empty.
        assert_eq!(ask(&mut s, &[0x02, 0x1a, 0x00]), [0x1a, 0x00], "{model:?}");
        // Request{echo: Echo{text: "hi\n"}} -> Response{echo: "hi\n"}.
        assert_eq!(
            ask(&mut s, &[0x07, 0x0a, 0x05, 0x0a, 0x03, b'h', b'i', b'\n']),
            [0x0a, 0x03, b'h', b'i', b'\n']
        );
        // Request{add: Add{a: 2, b: 40}} -> Response{sum: 42}: field 2, varint.
        assert_eq!(
            ask(&mut s, &[0x06, 0x12, 0x04, 0x08, 0x02, 0x10, 40]),
            [0x10, 42]
        );
        // Add{a: i64::MAX, b: 1} overflows -> Response{error: ...}.
        let mut add = vec![0x12, 0x0c, 0x08];
        add.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        add.extend([0x10, 0x01]);
        add.insert(0, add.len() as u8);
        assert_eq!(ask(&mut s, &add)[0], 0x32, "an Error response");
        // Request{stats: Stats{}} -> Response{stats: StatsReply{clients: 1, ..}}.
        let stats = ask(&mut s, &[0x02, 0x22, 0x00]);
        assert_eq!(stats[0], 0x22, "{stats:?}");
        assert_eq!(stats[2..4], [0x08, 0x01], "clients = 1: {stats:?}");
        // An empty Request is valid protobuf but no command.
        assert_eq!(ask(&mut s, &[0x00]), error_body("empty request"));
        // Request{quit: Quit{}} -> Response{bye: Bye{}}: field 5, then close.
        assert_eq!(ask(&mut s, &[0x02, 0x2a, 0x00]), [0x2a, 0x00]);
        expect_closed(&mut s);
    }
}

/// Frames split across writes and several frames in one write both work.
#[test]
fn protobuf_frames_in_pieces_and_in_bulk() {
    let server = start(&["--framing", "protobuf"]);
    let mut s = server.connect();
    for b in [0x06, 0x12, 0x04, 0x08, 0x02, 0x10, 0x03] {
        s.write_all(&[b]).unwrap();
    }
    assert_eq!(read_frame(&mut s), [0x10, 5]);
    s.write_all(&[0x02, 0x1a, 0x00].repeat(50)).unwrap();
    for _ in 0..50 {
        assert_eq!(read_frame(&mut s), [0x1a, 0x00]);
    }
}

/// A frame cut short by the client's FIN gets an error, then the close.
#[test]
fn a_truncated_frame_gets_an_error_then_close() {
    let server = start(&["--framing", "protobuf"]);
    let mut s = server.connect();
    // Announces 6 bytes, sends 2.
    s.write_all(&[0x06, 0x12, 0x04]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_frame(&mut s), error_body("truncated frame"));
    expect_closed(&mut s);
}

/// A length prefix over `--max-line` is refused as soon as it is read,
/// before any of the body, and the connection is closed. Garbage that is
/// not protobuf is refused the same way.
#[test]
fn an_oversized_frame_is_refused_before_its_body() {
    let server = start(&["--framing", "protobuf"]);
    let mut s = server.connect();
    // 5000 = 0x1388 as a varint: 0x88 0x27.
    s.write_all(&[0x88, 0x27]).unwrap();
    assert_eq!(
        read_frame(&mut s),
        error_body("message too long (max 4096 bytes)")
    );
    expect_closed(&mut s);

    let mut s = server.connect();
    // Length 2, then field 1 with the invalid wire type 7.
    s.write_all(&[0x02, 0x0f, 0x00]).unwrap();
    assert_eq!(read_frame(&mut s), error_body("malformed frame"));
    expect_closed(&mut s);
}

/// `stage1-echo client` speaks protobuf and prints the answers as lines.
#[test]
fn the_bundled_client_talks_protobuf() {
    let server = start(&["--framing", "protobuf"]);
    let addr = server.addr.to_string();
    let out = Command::new(BIN)
        .args([
            "client",
            "--addr",
            &addr,
            "ping",
            "echo hi there",
            "add 2 3",
            "quit",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "PONG\nhi there\n5\nBYE\n"
    );
}
