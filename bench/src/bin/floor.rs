//! `floor --addr ADDR --root DIR`: the bench's floor (see
//! [`bench::floor`]). It answers every request with the root's
//! `index.html`, built into one response at start, and prints the stage
//! contract's `listening on` line so the bench starts it like a stage.
//! Every other flag is accepted and ignored: the bench passes the stages'
//! common flags to it too.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

fn main() {
    let mut addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut root = PathBuf::from("www");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => match args.next().map(|v| v.parse()) {
                Some(Ok(v)) => addr = v,
                _ => fail("--addr needs HOST:PORT"),
            },
            "--root" => match args.next() {
                Some(v) => root = v.into(),
                None => fail("--root needs a folder"),
            },
            _ => {}
        }
    }
    let index = root.join("index.html");
    let body = std::fs::read(&index).unwrap_or_else(|e| fail(&format!("{}: {e}", index.display())));
    let listener =
        TcpListener::bind(addr).unwrap_or_else(|e| fail(&format!("cannot listen on {addr}: {e}")));
    let local = listener
        .local_addr()
        .unwrap_or_else(|e| fail(&e.to_string()));
    println!("listening on http://{local}/");
    if let Err(e) = bench::floor::serve(listener, &bench::floor::response(&body)) {
        fail(&e.to_string());
    }
}

fn fail(why: &str) -> ! {
    eprintln!("floor: {why}");
    std::process::exit(1);
}
