//! The server's settings: flags, with an optional TOML file underneath.
//!
//! Each field is a flag (`--max-line`) and a key of the `--config` file
//! (`max_line`); its default is written once, in the `clap` attribute, and
//! `--help` prints it. `common::config` does the layering.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::room::Limits;

/// How the server waits for its clients.
#[derive(ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// One client at a time, blocking reads and writes.
    Blocking,
    /// One thread, non-blocking sockets multiplexed with select(2): at most
    /// FD_SETSIZE (1024) descriptors.
    Select,
    /// One thread, non-blocking sockets multiplexed with poll(2).
    Poll,
    /// One thread, non-blocking sockets multiplexed with epoll(7),
    /// level-triggered unless `--edge`.
    Epoll,
}

/// What the server does with a line that is not a command.
#[derive(ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Send it back unchanged.
    Echo,
    /// Relay it to every other member of the chat room.
    Chat,
}

/// How messages are delimited on the wire.
#[derive(ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// Text lines ending in `\n` or `\r\n`.
    Line,
    /// Varint length prefix, then a protobuf message (echo mode only).
    Protobuf,
}

/// How much the server logs to stderr.
#[derive(ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Only failures of the server itself.
    Error,
    /// Also misbehaving clients (resets, overlong lines, slow consumers).
    Warn,
    /// Also every connection and disconnection.
    Info,
    /// Also every message.
    Debug,
}

/// Stage 1 of the course: a TCP echo and chat server, blocking or
/// multiplexed with select(2), poll(2) or epoll(7).
#[derive(Parser, Serialize, Deserialize, Debug, Clone)]
#[command(
    name = "stage1-echo",
    version,
    after_help = "Run `stage1-echo client --help` for the bundled client."
)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub addr: SocketAddr,

    /// TOML file with any of these settings (keys are the flag names with
    /// `_` for `-`); flags given on the command line win.
    #[arg(long)]
    pub config: Option<PathBuf>,

    /// Concurrency model.
    #[arg(long, value_enum, default_value_t = Model::Poll)]
    pub model: Model,

    /// With `--model epoll`: edge-triggered notification (EPOLLET) for the
    /// client sockets.
    #[arg(long)]
    #[serde(default)]
    pub edge: bool,

    /// With `--model epoll --edge`: the classic mistake, for the chapter's
    /// lab — one read per event, as level-triggered code does, so a client
    /// that sends more than one read's worth (16 KiB) at once stalls.
    #[arg(long, hide = true)]
    #[serde(default)]
    pub edge_read_once: bool,

    /// What the server says and how much it holds: shared with stage 3's
    /// `--protocol line`.
    #[command(flatten)]
    #[serde(flatten)]
    pub room: RoomConfig,

    /// Log verbosity on stderr.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Speak TLS (rustls): the certificate chain (PEM) to present; needs
    /// --tls-key and a multiplexed model (select, poll or epoll). Try it
    /// with `openssl s_client -quiet -connect HOST:PORT`.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl Config {
    /// Checks what the types cannot: returns a message for the user if a
    /// combination of settings makes no sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.edge && self.model != Model::Epoll {
            return Err("--edge needs --model epoll".into());
        }
        if self.edge_read_once && !self.edge {
            return Err("--edge-read-once needs --model epoll --edge".into());
        }
        if self.tls_cert.is_some() && self.model == Model::Blocking {
            return Err("--tls-cert needs --model select, poll or epoll".into());
        }
        self.room.limits()?;
        Ok(())
    }
}

/// The line protocol's settings: echo or chat, the framing, and the
/// bounds of one client and of the room. Stage 1's `Config` and stage 3's
/// `--protocol line` both flatten it in.
#[derive(Args, Serialize, Deserialize, Debug, Clone)]
pub struct RoomConfig {
    /// Echo server or chat room.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,

    /// Text lines or length-prefixed protobuf frames (echo mode only).
    #[arg(long, value_enum, default_value_t = Framing::Line)]
    pub framing: Framing,

    /// Longest line (or protobuf frame body) in bytes; longer closes the
    /// connection with an ERR.
    #[arg(long, default_value_t = 4096)]
    pub max_line: usize,

    /// Most connections at once; one more gets `ERR server full`.
    #[arg(long, default_value_t = 512)]
    pub max_clients: usize,

    /// Seconds without input before a client gets `BYE idle timeout`
    /// (0 = never).
    #[arg(long, default_value_t = 300.0)]
    pub idle_timeout: f64,

    /// Bytes of output the server keeps for one client. Past it the server
    /// stops reading that client's requests; a chat member whose relayed
    /// messages would go past it is disconnected as too slow.
    #[arg(long, default_value_t = 65536)]
    pub max_pending: usize,
}

impl RoomConfig {
    /// The room's limits, or a message for the user if a combination of
    /// settings makes no sense.
    pub fn limits(&self) -> Result<Limits, String> {
        if self.framing == Framing::Protobuf && self.mode == Mode::Chat {
            return Err(
                "--framing protobuf works with --mode echo only (chat relays free text)".into(),
            );
        }
        if self.max_line == 0 {
            return Err("--max-line must be at least 1".into());
        }
        if self.max_pending == 0 {
            return Err("--max-pending must be at least 1".into());
        }
        Ok(Limits {
            mode: self.mode,
            framing: self.framing,
            max_line: self.max_line,
            max_clients: self.max_clients,
            max_pending: self.max_pending,
            idle_timeout: self.idle_timeout()?,
        })
    }

    /// The idle timeout, `None` for never.
    pub fn idle_timeout(&self) -> Result<Option<Duration>, String> {
        match Duration::try_from_secs_f64(self.idle_timeout) {
            Ok(d) if d.is_zero() => Ok(None),
            Ok(d) => Ok(Some(d)),
            Err(_) => Err(format!(
                "--idle-timeout must be a number of seconds >= 0, not {}",
                self.idle_timeout
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut v = vec!["stage1-echo"];
        v.extend(args);
        common::config::load_from(v).unwrap()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = parse(&[]);
        assert_eq!(c.addr.to_string(), "127.0.0.1:7878");
        assert_eq!(
            (c.model, c.room.mode, c.room.framing),
            (Model::Poll, Mode::Echo, Framing::Line)
        );
        assert_eq!((c.room.max_line, c.room.max_pending), (4096, 65536));
        assert_eq!(c.room.idle_timeout(), Ok(Some(Duration::from_secs(300))));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn chat_over_protobuf_and_bad_timeouts_are_refused() {
        assert!(
            parse(&["--mode", "chat", "--framing", "protobuf"])
                .validate()
                .is_err()
        );
        assert!(parse(&["--idle-timeout=-1"]).validate().is_err());
        assert_eq!(
            parse(&["--idle-timeout", "0"]).room.idle_timeout(),
            Ok(None)
        );
    }

    #[test]
    fn a_config_file_sets_enums_and_numbers() {
        let file = std::env::temp_dir().join(format!("stage1-cfg-{}.toml", std::process::id()));
        std::fs::write(
            &file,
            "model = \"blocking\"\nmax_line = 10\nidle_timeout = 0.5\n",
        )
        .unwrap();
        let c = parse(&["--config", file.to_str().unwrap(), "--max-line", "20"]);
        assert_eq!(c.model, Model::Blocking);
        assert_eq!(c.room.max_line, 20);
        assert_eq!(c.room.idle_timeout, 0.5);
        std::fs::remove_file(file).unwrap();
    }
}
