//! The line protocol, sans-IO: bytes in, commands out; replies in, bytes out.
//!
//! Nothing here touches a socket. [`decode_line`] finds the next complete
//! line in a growing input buffer and reports [`Decoded::Partial`] when the
//! line has not fully arrived yet — the TCP stream has no message
//! boundaries, so a line may come in pieces, and one `read` may bring several
//! lines. [`parse_line`] turns one line into a [`Command`], and
//! [`encode_line_reply`] turns a [`Reply`] back into bytes. The protobuf
//! codec in `framing.rs` produces the same `Command`s and consumes the same
//! `Reply`s, so the room logic in `room.rs` does not know which framing is
//! on the wire.

use std::fmt;

/// What a decoder found at the start of the input buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<T> {
    /// A whole message, and how many input bytes it used (terminator and
    /// length prefix included). The caller removes them from its buffer.
    Complete {
        /// The decoded message.
        item: T,
        /// Bytes of input the message took.
        consumed: usize,
    },
    /// Not enough bytes yet: read more and try again. Not an error.
    Partial,
}

/// Input that can never become a valid message. The connection gets one
/// error reply and is closed, because the decoder cannot find the start of
/// the next message any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A line or frame longer than the configured maximum.
    TooLong {
        /// The limit in bytes (`--max-line`).
        limit: usize,
    },
    /// A protobuf frame whose length prefix or body does not decode.
    Malformed,
    /// The peer closed the connection in the middle of a protobuf frame.
    Truncated,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLong { limit } => write!(f, "message too long (max {limit} bytes)"),
            FrameError::Malformed => f.write_str("malformed frame"),
            FrameError::Truncated => f.write_str("truncated frame"),
        }
    }
}

// ANCHOR: decode_line
/// Finds the first complete line in `buf`. The line excludes its `\n` and an
/// optional `\r` before it; `consumed` includes them. A line longer than
/// `max` bytes is an error as soon as that is certain, even before its
/// newline arrives, so a peer cannot make the buffer grow without bound.
pub fn decode_line(buf: &[u8], max: usize) -> Result<Decoded<&[u8]>, FrameError> {
    // Look no further than a maximal line plus "\r\n" could reach.
    let window = &buf[..buf.len().min(max.saturating_add(2))];
    match window.iter().position(|&b| b == b'\n') {
        Some(nl) => {
            let line = &buf[..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > max {
                return Err(FrameError::TooLong { limit: max });
            }
            Ok(Decoded::Complete {
                item: line,
                consumed: nl + 1,
            })
        }
        // A partial line may still end in "\r", so only a line that is
        // longer than `max + 1` without a newline is certainly too long.
        None if buf.len() > max.saturating_add(1) => Err(FrameError::TooLong { limit: max }),
        None => Ok(Decoded::Partial),
    }
}
// ANCHOR_END: decode_line

/// One request from a client, whatever the framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `PING`: answer `PONG`.
    Ping,
    /// `ECHO <text>`: answer the text, byte for byte.
    Echo(Vec<u8>),
    /// `ADD <a> <b>`: answer the sum, or an error on overflow.
    Add(i64, i64),
    /// `STATS`: answer the server's counters.
    Stats,
    /// `QUIT`: answer `BYE` and close.
    Quit,
    /// `NICK <name>` (chat mode only): take a name in the room.
    Nick(Vec<u8>),
    /// Any other line: echoed back in echo mode, relayed in chat mode.
    Other(Vec<u8>),
    /// A known command with bad arguments; the text says what is wrong.
    Invalid(String),
}

/// For logs: the command as a client would type it, its bytes escaped
/// (`ECHO "caf\xc3\xa9\t1"`), not as a list of numbers.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted = |f: &mut fmt::Formatter<'_>, word: &str, bytes: &[u8]| {
            write!(f, "{word} \"{}\"", bytes.escape_ascii())
        };
        match self {
            Command::Ping => f.write_str("PING"),
            Command::Echo(text) => quoted(f, "ECHO", text),
            Command::Add(a, b) => write!(f, "ADD {a} {b}"),
            Command::Stats => f.write_str("STATS"),
            Command::Quit => f.write_str("QUIT"),
            Command::Nick(name) => quoted(f, "NICK", name),
            Command::Other(line) => quoted(f, "line", line),
            Command::Invalid(why) => write!(f, "invalid ({why})"),
        }
    }
}

// ANCHOR: parse_line
/// Parses one line (without its terminator). The command word is
/// case-insensitive and ends at the first space; `NICK` is a command only in
/// chat mode, so that an echo server echoes `NICK bob` like any other line.
pub fn parse_line(line: &[u8], chat: bool) -> Command {
    let (word, rest) = match line.iter().position(|&b| b == b' ') {
        Some(sp) => (&line[..sp], Some(&line[sp + 1..])),
        None => (line, None),
    };
    let is = |name: &str| word.eq_ignore_ascii_case(name.as_bytes());
    let no_args = |cmd: Command, name: &str| match rest {
        Some(r) if !r.iter().all(u8::is_ascii_whitespace) => {
            Command::Invalid(format!("{name} takes no arguments"))
        }
        _ => cmd,
    };
    if is("PING") {
        no_args(Command::Ping, "PING")
    } else if is("STATS") {
        no_args(Command::Stats, "STATS")
    } else if is("QUIT") {
        no_args(Command::Quit, "QUIT")
    } else if is("ECHO") {
        Command::Echo(rest.unwrap_or_default().to_vec())
    } else if is("ADD") {
        parse_add(rest.unwrap_or_default())
    } else if chat && is("NICK") {
        Command::Nick(rest.unwrap_or_default().trim_ascii().to_vec())
    } else {
        Command::Other(line.to_vec())
    }
}
// ANCHOR_END: parse_line

/// Parses the two arguments of `ADD`: signed 64-bit decimal integers.
fn parse_add(args: &[u8]) -> Command {
    const USAGE: &str = "usage: ADD <a> <b> with two signed 64-bit integers";
    let Ok(args) = std::str::from_utf8(args) else {
        return Command::Invalid(USAGE.into());
    };
    let mut it = args.split_ascii_whitespace().map(str::parse::<i64>);
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b)), None) => Command::Add(a, b),
        _ => Command::Invalid(USAGE.into()),
    }
}

/// The server's counters, as `STATS` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Connections open right now, this one included.
    pub clients: u64,
    /// Messages (lines or frames) received since start, all clients.
    pub messages: u64,
    /// Whole seconds since the server started.
    pub uptime_s: u64,
    /// Members of the chat room (0 in echo mode).
    pub members: u64,
}

/// One answer to a client, whatever the framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The answer to `PING`.
    Pong,
    /// Bytes sent back as they came: `ECHO`, and any other line in echo mode.
    Text(Vec<u8>),
    /// The answer to `ADD`.
    Sum(i64),
    /// The answer to `STATS`.
    Stats(Stats),
    /// A goodbye; the connection closes after it. The text may be empty.
    Bye(String),
    /// Something went wrong; the text says what.
    Err(String),
    /// A positive acknowledgement (`NICK`).
    Ok(String),
}

// ANCHOR: encode_line_reply
/// Appends the text form of `reply` to `out`: one line ending in `\n`.
pub fn encode_line_reply(reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Pong => out.extend_from_slice(b"PONG"),
        Reply::Text(t) => out.extend_from_slice(t),
        Reply::Sum(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Reply::Stats(s) => out.extend_from_slice(
            format!(
                "clients={} messages={} uptime_s={} members={}",
                s.clients, s.messages, s.uptime_s, s.members
            )
            .as_bytes(),
        ),
        Reply::Bye(why) if why.is_empty() => out.extend_from_slice(b"BYE"),
        Reply::Bye(why) => out.extend_from_slice(format!("BYE {why}").as_bytes()),
        Reply::Err(why) => out.extend_from_slice(format!("ERR {why}").as_bytes()),
        Reply::Ok(what) => out.extend_from_slice(format!("OK {what}").as_bytes()),
    }
    out.push(b'\n');
}
// ANCHOR_END: encode_line_reply

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_logged_with_their_bytes_escaped() {
        assert_eq!(
            Command::Echo(b"caf\xc3\xa9\t\"1\"".to_vec()).to_string(),
            r#"ECHO "caf\xc3\xa9\t\"1\"""#
        );
        assert_eq!(Command::Add(2, -40).to_string(), "ADD 2 -40");
        assert_eq!(
            Command::Other(b"hi\x00".to_vec()).to_string(),
            r#"line "hi\x00""#
        );
    }

    /// One named case per behaviour of the line splitter, httparse style.
    macro_rules! line_cases {
        ($($name:ident: $input:expr, $max:expr => $expect:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(decode_line($input, $max), $expect);
            }
        )*};
    }

    fn done(item: &[u8], consumed: usize) -> Result<Decoded<&[u8]>, FrameError> {
        Ok(Decoded::Complete { item, consumed })
    }

    line_cases! {
        line_lf: b"PING\n", 10 => done(b"PING", 5);
        line_crlf: b"PING\r\n", 10 => done(b"PING", 6);
        line_first_of_two: b"a\nb\n", 10 => done(b"a", 2);
        line_empty: b"\n", 10 => done(b"", 1);
        line_partial: b"PI", 10 => Ok(Decoded::Partial);
        line_partial_cr: b"PING\r", 4 => Ok(Decoded::Partial);
        line_nothing: b"", 10 => Ok(Decoded::Partial);
        line_exactly_max: b"abcd\n", 4 => done(b"abcd", 5);
        line_exactly_max_crlf: b"abcd\r\n", 4 => done(b"abcd", 6);
        line_too_long_with_newline: b"abcde\n", 4 => Err(FrameError::TooLong { limit: 4 });
        line_too_long_without_newline: b"abcdef", 4 => Err(FrameError::TooLong { limit: 4 });
        line_lone_cr_inside_is_data: b"a\rb\n", 10 => done(b"a\rb", 4);
        line_invalid_utf8: b"\xff\xfe\n", 10 => done(b"\xff\xfe", 3);
    }

    macro_rules! parse_cases {
        ($($name:ident: $input:expr, $chat:expr => $expect:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(parse_line($input, $chat), $expect);
            }
        )*};
    }

    parse_cases! {
        parse_ping: b"PING", false => Command::Ping;
        parse_ping_lowercase: b"ping", false => Command::Ping;
        parse_ping_trailing_space: b"PING ", false => Command::Ping;
        parse_ping_with_argument: b"PING x", false => Command::Invalid("PING takes no arguments".into());
        parse_echo: b"ECHO hello world", false => Command::Echo(b"hello world".to_vec());
        parse_echo_mixed_case: b"eChO a", false => Command::Echo(b"a".to_vec());
        parse_echo_empty: b"ECHO", false => Command::Echo(vec![]);
        parse_echo_keeps_spaces: b"ECHO  two", false => Command::Echo(b" two".to_vec());
        parse_add: b"ADD 2 40", false => Command::Add(2, 40);
        parse_add_negative: b"add -5 3", false => Command::Add(-5, 3);
        parse_add_extremes: b"ADD -9223372036854775808 9223372036854775807", false
            => Command::Add(i64::MIN, i64::MAX);
        parse_add_out_of_range: b"ADD 9223372036854775808 1", false
            => Command::Invalid("usage: ADD <a> <b> with two signed 64-bit integers".into());
        parse_add_one_arg: b"ADD 1", false
            => Command::Invalid("usage: ADD <a> <b> with two signed 64-bit integers".into());
        parse_add_three_args: b"ADD 1 2 3", false
            => Command::Invalid("usage: ADD <a> <b> with two signed 64-bit integers".into());
        parse_add_not_numbers: b"ADD one two", false
            => Command::Invalid("usage: ADD <a> <b> with two signed 64-bit integers".into());
        parse_stats: b"STATS", false => Command::Stats;
        parse_quit: b"Quit", false => Command::Quit;
        parse_nick_in_chat: b"NICK alice", true => Command::Nick(b"alice".to_vec());
        parse_nick_in_echo_mode_is_other: b"NICK alice", false => Command::Other(b"NICK alice".to_vec());
        parse_other: b"hello", false => Command::Other(b"hello".to_vec());
        parse_prefix_is_not_a_command: b"PINGPONG", false => Command::Other(b"PINGPONG".to_vec());
        parse_invalid_utf8: b"\xff ECHO", false => Command::Other(b"\xff ECHO".to_vec());
    }

    #[test]
    fn replies_are_lines() {
        let cases: &[(Reply, &[u8])] = &[
            (Reply::Pong, b"PONG\n"),
            (Reply::Text(b"a\xffb".to_vec()), b"a\xffb\n"),
            (Reply::Sum(-3), b"-3\n"),
            (Reply::Bye(String::new()), b"BYE\n"),
            (Reply::Bye("idle timeout".into()), b"BYE idle timeout\n"),
            (Reply::Err("x".into()), b"ERR x\n"),
            (Reply::Ok("alice".into()), b"OK alice\n"),
            (
                Reply::Stats(Stats {
                    clients: 1,
                    messages: 2,
                    uptime_s: 3,
                    members: 0,
                }),
                b"clients=1 messages=2 uptime_s=3 members=0\n",
            ),
        ];
        for (reply, want) in cases {
            let mut out = Vec::new();
            encode_line_reply(reply, &mut out);
            assert_eq!(out, *want, "{reply:?}");
        }
    }
}
