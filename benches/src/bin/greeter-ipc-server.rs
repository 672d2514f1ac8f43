//! The baseline of the `greet/ipc` benchmark: the greeting served by a child
//! process over a Unix socket, the way an RPC plugin system (go-plugin) pays
//! for every call, with the smallest protocol a careful implementation would
//! use: a request is a 4-byte little-endian length and that many bytes; a
//! reply is the same.
//!
//! Usage: `greeter-ipc-server SOCKET`; serves one connection, then exits.

use std::{
    io::{self, BufReader, Read, Write},
    os::unix::net::UnixListener,
    process::ExitCode,
};

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: greeter-ipc-server SOCKET");
        return ExitCode::from(2);
    };
    match serve(path.as_ref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("greeter-ipc-server: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(path: &std::path::Path) -> io::Result<()> {
    let listener = UnixListener::bind(path)?;
    let (stream, _) = listener.accept()?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut request = Vec::new();
    let mut reply = Vec::new();
    loop {
        let mut len = [0; 4];
        match reader.read_exact(&mut len) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error),
        }
        request.resize(u32::from_le_bytes(len) as usize, 0);
        reader.read_exact(&mut request)?;
        let greeting = match request.as_slice() {
            b"greet" => greet(),
            _ => String::new(),
        };
        // One write per reply: length and payload in one buffer.
        reply.clear();
        reply.extend_from_slice(&(greeting.len() as u32).to_le_bytes());
        reply.extend_from_slice(greeting.as_bytes());
        writer.write_all(&reply)?;
    }
}

#[inline(never)]
fn greet() -> String {
    "Hello!".to_owned()
}
