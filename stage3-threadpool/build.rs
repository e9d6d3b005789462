//! Declares the `loom` cfg, so that `#[cfg(loom)]` passes the compiler's
//! `unexpected_cfgs` check. The loom tests run with
//! `RUSTFLAGS="--cfg loom" cargo test -p stage3-threadpool --release --lib`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
