//! Length-prefixed framing with Protocol Buffers, sans-IO.
//!
//! Text lines find their end by scanning for `\n`; that is why a line cannot
//! contain a newline and why the server must look at every byte. A
//! *length-prefixed* frame says up front how long it is: a varint (7 bits per
//! byte, high bit = "more bytes follow"), then exactly that many bytes of one
//! encoded protobuf message. The decoder knows after the first few bytes how
//! much to wait for, can refuse an oversized frame before its body arrives,
//! and the body may hold any bytes at all.
//!
//! The message types below are written by hand with `prost`'s derive macros
//! (no `protoc` and no build script needed); `proto/echo.proto` is the same
//! schema as text, and a test keeps the two in step.

use prost::Message;

use crate::protocol::{Command, Decoded, FrameError, Reply};

/// A request frame: exactly one command.
#[derive(Clone, PartialEq, Message)]
pub struct Request {
    /// The command; `None` if the client sent an empty message.
    #[prost(oneof = "request::Kind", tags = "1, 2, 3, 4, 5")]
    pub kind: Option<request::Kind>,
}

/// The `oneof` of [`Request`], in its own module as `prost-build` lays it out.
pub mod request {
    /// Which command a [`Request`](super::Request) carries.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// Answer the same bytes.
        #[prost(message, tag = "1")]
        Echo(super::Echo),
        /// Answer the sum.
        #[prost(message, tag = "2")]
        Add(super::Add),
        /// Answer `Pong`.
        #[prost(message, tag = "3")]
        Ping(super::Ping),
        /// Answer the counters.
        #[prost(message, tag = "4")]
        Stats(super::Stats),
        /// Answer `Bye` and close.
        #[prost(message, tag = "5")]
        Quit(super::Quit),
    }
}

/// `ECHO`: the bytes to send back.
#[derive(Clone, PartialEq, Message)]
pub struct Echo {
    /// Any bytes; protobuf `bytes` has no newline restriction.
    #[prost(bytes = "vec", tag = "1")]
    pub text: Vec<u8>,
}

/// `ADD`: two signed 64-bit integers.
#[derive(Clone, PartialEq, Message)]
pub struct Add {
    /// The first addend.
    #[prost(int64, tag = "1")]
    pub a: i64,
    /// The second addend.
    #[prost(int64, tag = "2")]
    pub b: i64,
}

/// `PING`: no fields.
#[derive(Clone, PartialEq, Message)]
pub struct Ping {}

/// `STATS`: no fields.
#[derive(Clone, PartialEq, Message)]
pub struct Stats {}

/// `QUIT`: no fields.
#[derive(Clone, PartialEq, Message)]
pub struct Quit {}

/// A response frame: exactly one answer.
#[derive(Clone, PartialEq, Message)]
pub struct Response {
    /// The answer.
    #[prost(oneof = "response::Kind", tags = "1, 2, 3, 4, 5, 6")]
    pub kind: Option<response::Kind>,
}

/// The `oneof` of [`Response`].
pub mod response {
    /// Which answer a [`Response`](super::Response) carries.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// The bytes of an `Echo`.
        #[prost(bytes, tag = "1")]
        Echo(Vec<u8>),
        /// The result of an `Add`.
        #[prost(int64, tag = "2")]
        Sum(i64),
        /// The answer to `Ping`.
        #[prost(message, tag = "3")]
        Pong(super::Pong),
        /// The answer to `Stats`.
        #[prost(message, tag = "4")]
        Stats(super::StatsReply),
        /// Goodbye; the server closes the connection after it.
        #[prost(message, tag = "5")]
        Bye(super::Bye),
        /// Something went wrong.
        #[prost(message, tag = "6")]
        Error(super::Error),
    }
}

/// The answer to `Ping`.
#[derive(Clone, PartialEq, Message)]
pub struct Pong {}

/// The server's counters.
#[derive(Clone, PartialEq, Message)]
pub struct StatsReply {
    /// Open connections.
    #[prost(uint64, tag = "1")]
    pub clients: u64,
    /// Messages received since start.
    #[prost(uint64, tag = "2")]
    pub messages: u64,
    /// Seconds since start.
    #[prost(uint64, tag = "3")]
    pub uptime_s: u64,
    /// Chat room members (always 0: protobuf framing is echo mode only).
    #[prost(uint64, tag = "4")]
    pub members: u64,
}

/// Goodbye, with a reason.
#[derive(Clone, PartialEq, Message)]
pub struct Bye {
    /// Why the server closes: empty after `Quit`, else e.g. `idle timeout`.
    #[prost(string, tag = "1")]
    pub reason: String,
}

/// An error answer.
#[derive(Clone, PartialEq, Message)]
pub struct Error {
    /// What went wrong, for a human.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// The longest varint a 64-bit length can take.
const MAX_VARINT_LEN: usize = 10;

// ANCHOR: decode_length
/// Reads the varint length prefix at the start of `buf`: `Partial` while its
/// last byte (the first with the high bit clear) has not arrived.
fn decode_length(buf: &[u8]) -> Result<Decoded<u64>, FrameError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().take(MAX_VARINT_LEN).enumerate() {
        // Bits past the 64th are silently dropped by the shift; a length that
        // large is refused by the size limit anyway.
        value |= u64::from(byte & 0x7f)
            .checked_shl(7 * i as u32)
            .unwrap_or(0);
        if byte & 0x80 == 0 {
            return Ok(Decoded::Complete {
                item: value,
                consumed: i + 1,
            });
        }
    }
    if buf.len() >= MAX_VARINT_LEN {
        Err(FrameError::Malformed)
    } else {
        Ok(Decoded::Partial)
    }
}
// ANCHOR_END: decode_length

// ANCHOR: decode_message
/// Finds the first complete frame in `buf` and decodes its body as `M`. A
/// length above `max` is refused as soon as the prefix is read, before the
/// body arrives.
pub fn decode_message<M: Message + Default>(
    buf: &[u8],
    max: usize,
) -> Result<Decoded<M>, FrameError> {
    let (len, prefix) = match decode_length(buf)? {
        Decoded::Complete { item, consumed } => (item, consumed),
        Decoded::Partial => return Ok(Decoded::Partial),
    };
    let len = match usize::try_from(len) {
        Ok(len) if len <= max => len,
        _ => return Err(FrameError::TooLong { limit: max }),
    };
    // `len <= max` is any usize the user allowed, so add with care.
    let end = prefix.saturating_add(len);
    let Some(body) = buf.get(prefix..end) else {
        return Ok(Decoded::Partial);
    };
    let item = M::decode(body).map_err(|_| FrameError::Malformed)?;
    Ok(Decoded::Complete {
        item,
        consumed: end,
    })
}
// ANCHOR_END: decode_message

/// Decodes the first request frame in `buf` into the [`Command`] the room
/// understands.
pub fn decode_request(buf: &[u8], max: usize) -> Result<Decoded<Command>, FrameError> {
    Ok(match decode_message::<Request>(buf, max)? {
        Decoded::Partial => Decoded::Partial,
        Decoded::Complete { item, consumed } => Decoded::Complete {
            item: command_of(item),
            consumed,
        },
    })
}

/// The command a request carries.
fn command_of(req: Request) -> Command {
    use request::Kind;
    match req.kind {
        Some(Kind::Echo(e)) => Command::Echo(e.text),
        Some(Kind::Add(a)) => Command::Add(a.a, a.b),
        Some(Kind::Ping(_)) => Command::Ping,
        Some(Kind::Stats(_)) => Command::Stats,
        Some(Kind::Quit(_)) => Command::Quit,
        None => Command::Invalid("empty request".into()),
    }
}

/// The request frame for a command, for the client; `None` for commands
/// that have no protobuf form (`NICK`, free text).
pub fn request_of(cmd: &Command) -> Option<Request> {
    use request::Kind;
    let kind = match cmd {
        Command::Ping => Kind::Ping(Ping {}),
        Command::Echo(t) => Kind::Echo(Echo { text: t.clone() }),
        Command::Add(a, b) => Kind::Add(Add { a: *a, b: *b }),
        Command::Stats => Kind::Stats(Stats {}),
        Command::Quit => Kind::Quit(Quit {}),
        Command::Nick(_) | Command::Other(_) | Command::Invalid(_) => return None,
    };
    Some(Request { kind: Some(kind) })
}

/// Appends `msg` as one frame (varint length, then the body) to `out`.
pub fn encode_message(msg: &impl Message, out: &mut Vec<u8>) {
    // `Vec<u8>` grows as needed, so encoding into it cannot run out of room.
    msg.encode_length_delimited(out)
        .expect("a Vec<u8> always has room");
}

// ANCHOR: encode_frame_reply
/// Appends the protobuf form of `reply` to `out`, as one frame.
pub fn encode_frame_reply(reply: &Reply, out: &mut Vec<u8>) {
    use response::Kind;
    let kind = match reply {
        Reply::Pong => Kind::Pong(Pong {}),
        Reply::Text(t) => Kind::Echo(t.clone()),
        // OK only answers NICK, and chat mode refuses protobuf framing at
        // startup; it would still arrive intact as bytes.
        Reply::Ok(t) => Kind::Echo(t.clone().into_bytes()),
        Reply::Sum(n) => Kind::Sum(*n),
        Reply::Stats(s) => Kind::Stats(StatsReply {
            clients: s.clients,
            messages: s.messages,
            uptime_s: s.uptime_s,
            members: s.members,
        }),
        Reply::Bye(reason) => Kind::Bye(Bye {
            reason: reason.clone(),
        }),
        Reply::Err(message) => Kind::Error(Error {
            message: message.clone(),
        }),
    };
    encode_message(&Response { kind: Some(kind) }, out);
}
// ANCHOR_END: encode_frame_reply

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(req: &Request) -> Vec<u8> {
        let mut out = Vec::new();
        encode_message(req, &mut out);
        out
    }

    #[test]
    fn every_command_round_trips() {
        let cmds = [
            Command::Ping,
            Command::Echo(b"any \n bytes \xff".to_vec()),
            Command::Add(-1, i64::MAX),
            Command::Stats,
            Command::Quit,
        ];
        for cmd in cmds {
            let bytes = frame(&request_of(&cmd).unwrap());
            let got = decode_request(&bytes, 100).unwrap();
            assert_eq!(
                got,
                Decoded::Complete {
                    item: cmd.clone(),
                    consumed: bytes.len()
                }
            );
        }
    }

    #[test]
    fn every_prefix_of_a_frame_is_partial() {
        let bytes = frame(&request_of(&Command::Echo(vec![b'x'; 300])).unwrap());
        // 300 bytes of text need a two-byte varint: both split points matter.
        for cut in 0..bytes.len() {
            assert_eq!(decode_request(&bytes[..cut], 1000), Ok(Decoded::Partial));
        }
    }

    #[test]
    fn two_frames_in_one_buffer_decode_one_at_a_time() {
        let mut bytes = frame(&request_of(&Command::Ping).unwrap());
        let first = bytes.len();
        bytes.extend(frame(&request_of(&Command::Stats).unwrap()));
        let Ok(Decoded::Complete { item, consumed }) = decode_request(&bytes, 100) else {
            panic!("first frame")
        };
        assert_eq!((item, consumed), (Command::Ping, first));
        let Ok(Decoded::Complete { item, .. }) = decode_request(&bytes[first..], 100) else {
            panic!("second frame")
        };
        assert_eq!(item, Command::Stats);
    }

    #[test]
    fn oversized_length_is_refused_before_the_body_arrives() {
        // Just the prefix of a 5000-byte frame.
        assert_eq!(
            decode_request(&[0x88, 0x27], 4096),
            Err(FrameError::TooLong { limit: 4096 })
        );
    }

    #[test]
    fn a_huge_length_under_a_huge_limit_is_partial_not_a_panic() {
        let prefix = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(decode_request(&prefix, usize::MAX), Ok(Decoded::Partial));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        assert_eq!(
            decode_request(&[0xff; 11], 4096),
            Err(FrameError::Malformed)
        );
        // Length 2, body = field 1 with wire type 7 (invalid).
        assert_eq!(
            decode_request(&[2, 0x0f, 0], 4096),
            Err(FrameError::Malformed)
        );
        // An empty message is valid protobuf: no command.
        assert_eq!(
            decode_request(&[0], 4096),
            Ok(Decoded::Complete {
                item: Command::Invalid("empty request".into()),
                consumed: 1
            })
        );
    }

    #[test]
    fn replies_decode_as_responses() {
        let mut out = Vec::new();
        encode_frame_reply(&Reply::Sum(42), &mut out);
        let Ok(Decoded::Complete { item, .. }) = decode_message::<Response>(&out, 100) else {
            panic!("a whole frame")
        };
        assert_eq!(item.kind, Some(response::Kind::Sum(42)));
    }

    #[test]
    fn the_proto_file_matches_the_rust_types() {
        let text = include_str!("../proto/echo.proto");
        for field in [
            "Echo echo = 1;",
            "Add add = 2;",
            "Ping ping = 3;",
            "Stats stats = 4;",
            "Quit quit = 5;",
            "bytes echo = 1;",
            "int64 sum = 2;",
            "Pong pong = 3;",
            "StatsReply stats = 4;",
            "Bye bye = 5;",
            "Error error = 6;",
            "bytes text = 1;",
            "int64 a = 1; int64 b = 2;",
            "uint64 uptime_s = 3;",
            "uint64 members = 4;",
            "string reason = 1;",
            "string message = 1;",
        ] {
            assert!(text.contains(field), "echo.proto lacks `{field}`");
        }
    }
}
