//! Stage 1's starter: a TCP line server, grown step by step into an echo
//! server, a line protocol and a chat room that serves every client at once
//! with `poll(2)`. The steps are in docs/src/stage1-echo.md, "Build it
//! yourself"; each place still to fill is marked `// STEP N:`.
//!
//! The protocol lives in [`Room`], which takes bytes in and gives bytes out
//! and never touches a socket; [`run`] only moves bytes between the sockets
//! and the room.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

/// Bytes asked for in one `read`.
const READ_CHUNK: usize = 16 * 1024;

/// The command line.
struct Config {
    /// Where to listen, `--addr` (port 0: any free port).
    addr: String,
    /// `--mode chat`: lines go to the other clients instead of back.
    chat: bool,
}

/// `--addr ADDR` and `--mode echo|chat`, by hand.
fn parse_args() -> Result<Config, String> {
    let mut config = Config {
        addr: "127.0.0.1:7878".to_string(),
        chat: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => config.addr = value()?,
            "--mode" => match value()?.as_str() {
                "echo" => config.chat = false,
                "chat" => config.chat = true,
                other => return Err(format!("--mode {other}: echo or chat")),
            },
            _ => {
                return Err(format!(
                    "unknown argument {flag}\nusage: stage1-starter [--addr ADDR] [--mode echo|chat]"
                ));
            }
        }
    }
    Ok(config)
}

fn main() -> ExitCode {
    match start() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stage1-starter: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Binds, says where, and serves.
fn start() -> Result<(), String> {
    let config = parse_args()?;
    // socket, setsockopt(SO_REUSEADDR), bind and listen, in one call.
    let listener = TcpListener::bind(&config.addr)
        .map_err(|e| format!("cannot listen on {}: {e}", config.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The one line on stdout, with the real port: the checker waits for it.
    println!("listening on {addr}");
    io::stdout().flush().map_err(|e| e.to_string())?;
    let mode = if config.chat { "chat" } else { "echo" };
    eprintln!("stage1-starter: {mode} mode");
    // STEP 6: the room needs to know the mode: `Room::new(config.chat)`.
    run(listener, Room::new()).map_err(|e| e.to_string())
}

/// Which client: the key in the room and in the loop's table of sockets.
type ClientId = usize;

/// Serves one client after the other: accept, talk until the room is done
/// with the client, close, accept the next.
///
/// STEP 4: serve every client at once instead, from this one thread. Make
/// the listener and every accepted socket non-blocking, keep the sockets in
/// a map by `ClientId`, and loop: build the `poll(2)` interest list
/// (`nix::poll::PollFd`: the listener for POLLIN, each client for POLLIN
/// while `room.wants_input(id)`, and for POLLOUT only while it has output),
/// `nix::poll::poll` until something is ready, accept until `WouldBlock`,
/// do one read and the writes the socket takes for each ready client
/// (`WouldBlock` is not an error), and drop the clients the room is done
/// with. `serve` goes away.
fn run(listener: TcpListener, mut room: Room) -> io::Result<()> {
    loop {
        // STEP 3: with `?`, an error from `accept` or from one client ends
        // the whole server (try it: a client that resets its connection).
        // Log a client's error and go on with the next client; if `accept`
        // fails (out of descriptors, EMFILE), pause for 100 ms, then retry.
        let (mut stream, peer) = listener.accept()?;
        let id = room.connect();
        eprintln!("client {id}: connected from {peer}");
        serve(&mut stream, &mut room, id)?;
        room.disconnect(id);
        eprintln!("client {id}: disconnected");
    }
}

/// Talks to one client until the room is done with it. Every `read` and
/// `write` waits for as long as it takes.
fn serve(stream: &mut TcpStream, room: &mut Room, id: ClientId) -> io::Result<()> {
    let mut buf = vec![0u8; READ_CHUNK];
    while !room.done(id) {
        match stream.read(&mut buf)? {
            0 => room.eof(id),
            n => room.received(id, &buf[..n]),
        }
        // Send everything the room has for the client: one `write` may take
        // only part of it, and `write_all` loops until all is written.
        let output = room.output(id);
        stream.write_all(output)?;
        let written = output.len();
        room.advance(id, written);
    }
    Ok(())
}

/// One client's bytes and state. The loop moves bytes between these
/// buffers and the socket.
#[derive(Default)]
struct Client {
    // STEP 2: `input: Vec<u8>`, the bytes received that are not a whole
    // line yet.
    /// Bytes to send that the socket has not taken yet.
    output: Vec<u8>,
    /// Done (end of input, for now): send the rest, then close.
    closing: bool,
    // STEP 6: `name: Option<String>`, its name in the chat room.
}

/// Every client, and the chat room. Bytes in, bytes out: no sockets here.
struct Room {
    // STEP 6: `chat: bool` (`--mode chat`), and `names`, a map from each
    // name taken in the chat room to its client.
    clients: HashMap<ClientId, Client>,
    next_id: ClientId,
}

impl Room {
    fn new() -> Room {
        Room {
            clients: HashMap::new(),
            next_id: 0,
        }
    }

    /// A new client; its id.
    fn connect(&mut self) -> ClientId {
        let id = self.next_id;
        self.next_id += 1;
        self.clients.insert(id, Client::default());
        id
    }

    /// The client is gone: forget it.
    fn disconnect(&mut self, id: ClientId) {
        // STEP 6: if it had a name, free the name and tell the others
        // (`* alice left`).
        self.clients.remove(&id);
    }

    /// What is waiting to be sent to the client.
    fn output(&self, id: ClientId) -> &[u8] {
        self.clients.get(&id).map_or(&[], |c| &c.output)
    }

    /// The socket took `n` bytes of the output.
    fn advance(&mut self, id: ClientId, n: usize) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.output.drain(..n);
        }
    }

    // STEP 4: `wants_input(id)`: read more from the client only while it is
    // not closing and its output holds less than 64 KiB. A client that does
    // not read its answers is then not read either, and TCP's flow control
    // slows it down (backpressure).

    /// The client is closing and everything is sent: close the socket.
    fn done(&self, id: ClientId) -> bool {
        self.clients
            .get(&id)
            .is_none_or(|c| c.closing && c.output.is_empty())
    }

    /// Bytes from the client, as one `read` returned them.
    fn received(&mut self, id: ClientId, bytes: &[u8]) {
        // STEP 1: take `bytes` as whole lines for now: split them after
        // each `\n`, take the `\n` (and a `\r` before it) off, and `handle`
        // each line.
        // STEP 2: one read is not one line: it may end half-way through a
        // line, which the next read completes. Append `bytes` to the
        // client's `input`, handle every whole line in it, keep the rest.
        // A client must not make `input` grow for ever: past 4096 bytes
        // without a `\n`, answer `ERR line too long` and close.
        // STEP 5: stop at a line that makes the client close (`QUIT`): the
        // lines after it are not answered.
        //
        // Nothing is answered yet, so a whole line ends the connection
        // rather than leave the client waiting.
        if bytes.contains(&b'\n') {
            self.close(id);
        }
    }

    /// The client closed its side (a read returned 0).
    fn eof(&mut self, id: ClientId) {
        // STEP 2: a last line without `\n` still counts: handle what is
        // left in `input`.
        self.close(id);
    }

    /// One line from the client, without its `\n` or `\r\n`.
    #[allow(dead_code)] // STEP 1 calls it
    fn handle(&mut self, id: ClientId, line: &[u8]) {
        match parse_line(line) {
            // STEP 1: `Command::Echo(text)`: answer the text.
            // STEP 5: `Ping`: `PONG`; `Add`: the sum (`checked_add`: an
            // `ERR` line if it overflows); `Quit`: `BYE`, then close;
            // `Invalid`: `ERR` and why.
            // STEP 6: `Nick`; and in chat mode `Other` lines go to the
            // other members of the room (`[alice] hello`), not back.
            Command::Other(text) => self.reply(id, text),
        }
    }

    /// Queues `line` and a `\n` for the client.
    fn reply(&mut self, id: ClientId, line: &[u8]) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.output.extend_from_slice(line);
            c.output.push(b'\n');
        }
    }

    fn close(&mut self, id: ClientId) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.closing = true;
        }
    }
}

/// One request, parsed from one line.
enum Command<'a> {
    // STEP 1: `Echo(&'a [u8])`, for `ECHO <text>`.
    // STEP 5: `Ping`, `Add(i64, i64)`, `Quit`, and `Invalid(&'static str)`
    // for a command with bad arguments.
    // STEP 6: `Nick(&'a [u8])`.
    /// Any other line: echoed back.
    Other(&'a [u8]),
}

/// The command word ends at the first space and is case-insensitive.
fn parse_line(line: &[u8]) -> Command<'_> {
    // STEP 1: split off the first word; `ECHO <text>` is `Echo(text)`.
    // STEP 5: `PING`, `QUIT`, and `ADD` with two signed 64-bit integers.
    // STEP 6: `NICK <name>`, in chat mode only (pass `chat` in): an echo
    // server echoes `NICK bob` like any other line.
    Command::Other(line)
}
