//! Blocking socket helpers: reading against a deadline, sending a file
//! region with `sendfile(2)`, and closing without losing the response.

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::http::FileRegion;
use common::signals::Signals;

/// Bytes asked for per `read(2)`.
const READ_CHUNK: usize = 8192;
// A large file is sent in steps of `SENDFILE_CHUNK`, between which the
// shutdown grace period is checked; `linger_close` waits at most
// `LINGER_TIME` and drains at most `LINGER_BYTES`.
use common::limits::{LINGER_BYTES, LINGER_TIME, SENDFILE_CHUNK};

/// What [`read_until`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Some bytes were appended to the input.
    Data,
    /// The client closed its side.
    Eof,
    /// The deadline passed with nothing read.
    TimedOut,
    /// A shutdown started while waiting (only when `wake` was given).
    Interrupted,
}

// ANCHOR: read_until
/// Reads once into the end of `input`, waiting at most until `deadline`.
/// With `wake`, the wait also ends when a shutdown starts: it polls the
/// socket and the signal self-pipe together, then reads.
pub fn read_until(
    stream: &mut TcpStream,
    input: &mut Vec<u8>,
    deadline: Instant,
    wake: Option<&Signals>,
) -> io::Result<ReadOutcome> {
    loop {
        let Some(remaining) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            return Ok(ReadOutcome::TimedOut);
        };
        if let Some(signals) = wake {
            if !signals.wait_readable(stream.as_fd(), Some(remaining))? {
                if signals.shutdown_requested() {
                    return Ok(ReadOutcome::Interrupted);
                }
                // A timeout or another signal (SIGUSR1): check the deadline.
                continue;
            }
        }
        // SO_RCVTIMEO bounds the read itself.
        stream.set_read_timeout(Some(remaining))?;
        let start = input.len();
        input.resize(start + READ_CHUNK, 0);
        let result = stream.read(&mut input[start..]);
        let n = *result.as_ref().unwrap_or(&0);
        input.truncate(start + n);
        return match result {
            Ok(0) => Ok(ReadOutcome::Eof),
            Ok(_) => Ok(ReadOutcome::Data),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(ReadOutcome::TimedOut)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}
// ANCHOR_END: read_until

// ANCHOR: send_region
/// Sends a file region with `sendfile(2)`: the kernel copies from the page
/// cache to the socket, and the bytes never enter this process. The socket's
/// send timeout (SO_SNDTIMEO) bounds each stalled call; once a shutdown
/// starts, the whole transfer gets at most `grace` more.
pub fn send_region(
    stream: &TcpStream,
    region: &FileRegion,
    signals: &Signals,
    grace: Duration,
) -> io::Result<()> {
    let mut offset = region.offset;
    let end = region.offset + region.len;
    let mut grace_deadline = None;
    while offset < end {
        if signals.shutdown_requested() {
            let d = *grace_deadline.get_or_insert_with(|| Instant::now() + grace);
            if Instant::now() >= d {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "grace period over"));
            }
        }
        let count = ((end - offset) as usize).min(SENDFILE_CHUNK);
        match common::sendfile::send_chunk(stream, &region.file, offset, count) {
            Ok(n) => offset += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // SO_SNDTIMEO passed with the socket's buffer still full.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "send timed out"));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
// ANCHOR_END: send_region

// ANCHOR: linger_close
/// Closes a connection so that the response just written is not lost.
///
/// If a socket is closed while unread request bytes sit in its receive
/// buffer, Linux answers with a RST, and a RST can make the client discard
/// response bytes it has not read yet. So: send our FIN first
/// (`shutdown(Write)`), then read and discard until the client closes too,
/// for a bounded time and amount — what nginx calls *lingering close*.
pub fn linger_close(stream: &TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    let mut s = stream;
    while drained < LINGER_BYTES {
        let Some(remaining) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            return;
        };
        if s.set_read_timeout(Some(remaining)).is_err() {
            return;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}
// ANCHOR_END: linger_close
