//! `brick`: verify volume attach and detach on Linux hosts.
fn main() {}
