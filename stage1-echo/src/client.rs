//! `stage1-echo client`: a tiny client, mostly for the protobuf framing that
//! `nc` cannot speak.
//!
//! Commands are written as in the line protocol (`ping`, `echo hi`,
//! `add 2 3`, `stats`, `quit`), taken from the arguments or, if there are
//! none, from standard input. Each is sent in the chosen framing, and the
//! answer is printed as the line protocol would print it. `--show-frames`
//! also prints every frame in hex on stderr, to see the varint prefix.

use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use clap::Parser;

use crate::cli::Framing;
use crate::framing::{Response, decode_message, encode_message, request_of, response};
use crate::protocol::{Decoded, Reply, Stats, decode_line, encode_line_reply, parse_line};

/// Talks to a stage1-echo server: sends commands, prints the answers.
#[derive(Parser, Debug)]
#[command(name = "stage1-echo client")]
pub struct ClientArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7878")]
    addr: SocketAddr,

    /// Framing the server speaks.
    #[arg(long, value_enum, default_value_t = Framing::Protobuf)]
    framing: Framing,

    /// Print each frame sent and received, in hex, on stderr.
    #[arg(long)]
    show_frames: bool,

    /// Commands, e.g. `ping` `"echo hello"` `"add 2 3"` `stats` `quit`;
    /// read from stdin, one per line, if none are given.
    commands: Vec<String>,
}

/// Largest answer the client accepts.
const MAX_REPLY: usize = 1 << 20;

/// Runs the client with `args` (the first is the program name).
pub fn main(args: impl IntoIterator<Item = String>) -> io::Result<()> {
    let args = ClientArgs::parse_from(args);
    let mut stream = TcpStream::connect(args.addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut input = Vec::new();
    let commands: Box<dyn Iterator<Item = io::Result<String>>> = if args.commands.is_empty() {
        Box::new(io::stdin().lock().lines())
    } else {
        Box::new(args.commands.into_iter().map(Ok))
    };
    let mut out = io::stdout().lock();
    for text in commands {
        let text = text?;
        let frame = match args.framing {
            Framing::Line => format!("{text}\n").into_bytes(),
            Framing::Protobuf => {
                let Some(req) = request_of(&parse_line(text.as_bytes(), false)) else {
                    eprintln!("not a command protobuf can carry: {text:?}");
                    continue;
                };
                let mut frame = Vec::new();
                encode_message(&req, &mut frame);
                frame
            }
        };
        if args.show_frames {
            eprintln!("> {}", hex(&frame));
        }
        stream.write_all(&frame)?;
        let (reply, used) = read_reply(&mut stream, &mut input, args.framing)?;
        if args.show_frames {
            eprintln!("< {}", hex(&input[..used]));
        }
        input.drain(..used);
        out.write_all(&reply)?;
        out.flush()?;
        if reply.starts_with(b"BYE") || reply.starts_with(b"ERR message too long") {
            break;
        }
    }
    Ok(())
}

/// Reads until `input` holds one whole answer; returns it as a text line and
/// the number of input bytes it took.
fn read_reply(
    stream: &mut TcpStream,
    input: &mut Vec<u8>,
    framing: Framing,
) -> io::Result<(Vec<u8>, usize)> {
    let bad = |e| io::Error::new(io::ErrorKind::InvalidData, format!("{e}"));
    loop {
        let mut line = Vec::new();
        match framing {
            Framing::Line => {
                if let Decoded::Complete { item, consumed } =
                    decode_line(input, MAX_REPLY).map_err(bad)?
                {
                    line.extend_from_slice(item);
                    line.push(b'\n');
                    return Ok((line, consumed));
                }
            }
            Framing::Protobuf => {
                if let Decoded::Complete { item, consumed } =
                    decode_message::<Response>(input, MAX_REPLY).map_err(bad)?
                {
                    encode_line_reply(&reply_of(item), &mut line);
                    return Ok((line, consumed));
                }
            }
        }
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => input.extend_from_slice(&buf[..n]),
        }
    }
}

/// The line-protocol form of a protobuf answer.
fn reply_of(resp: Response) -> Reply {
    use response::Kind;
    match resp.kind {
        Some(Kind::Echo(t)) => Reply::Text(t),
        Some(Kind::Sum(n)) => Reply::Sum(n),
        Some(Kind::Pong(_)) => Reply::Pong,
        Some(Kind::Stats(s)) => Reply::Stats(Stats {
            clients: s.clients,
            messages: s.messages,
            uptime_s: s.uptime_s,
            members: s.members,
        }),
        Some(Kind::Bye(b)) => Reply::Bye(b.reason),
        Some(Kind::Error(e)) => Reply::Err(e.message),
        None => Reply::Err("empty response".into()),
    }
}

/// `0a 07 ...`
fn hex(bytes: &[u8]) -> String {
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(" ")
}
