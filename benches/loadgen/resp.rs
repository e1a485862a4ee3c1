//! The tiny RESP client of the gateway modes: framing replies, reading array
//! replies of bulk strings, encoding commands, and connecting (with AUTH when
//! given a DSN). It handles what the gateway and redis-server answer to the
//! modes' commands, no more.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use crate::{Result, SETUP};

/// Length of the first complete RESP reply in `buf`, `None` if incomplete.
pub fn reply_len(buf: &[u8]) -> std::result::Result<Option<usize>, String> {
    let Some(cr) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let after = cr + 2;
    let number = || -> std::result::Result<i64, String> {
        std::str::from_utf8(&buf[1..cr])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad RESP length line {:?}", lossy(&buf[..cr])))
    };
    match buf.first() {
        Some(b'+' | b'-' | b':' | b'_' | b'#' | b',') => Ok(Some(after)),
        Some(b'$') => {
            let n = number()?;
            if n < 0 {
                return Ok(Some(after));
            }
            let end = after + n as usize + 2;
            Ok((buf.len() >= end).then_some(end))
        }
        Some(kind @ (b'*' | b'%' | b'~')) => {
            let n = number()?.max(0) * if *kind == b'%' { 2 } else { 1 };
            let mut pos = after;
            for _ in 0..n {
                match reply_len(&buf[pos..])? {
                    Some(len) => pos += len,
                    None => return Ok(None),
                }
            }
            Ok(Some(pos))
        }
        _ => Err(format!("bad RESP reply {:?}", lossy(&buf[..cr]))),
    }
}

/// The bulk strings of an array reply (`-ERR ...` and the like as `Err`).
pub fn array_items(reply: &[u8]) -> std::result::Result<Vec<&[u8]>, String> {
    if reply.first() != Some(&b'*') {
        return Err(lossy(reply).trim_end().to_owned());
    }
    let cr = reply.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
    let n: usize = lossy(&reply[1..cr]).parse().unwrap_or(0);
    let mut pos = cr + 2;
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        let rest = &reply[pos..];
        let cr = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated array")?;
        if rest.first() != Some(&b'$') {
            return Err(format!("array item {:?}", lossy(&rest[..cr])));
        }
        let len: usize = lossy(&rest[1..cr]).parse().map_err(|_| "bad bulk length")?;
        items.push(&rest[cr + 2..cr + 2 + len]);
        pos += cr + 2 + len + 2;
    }
    Ok(items)
}

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads one complete reply (bounded by `deadline`), leaving what follows it
/// in `rbuf`.
pub async fn read_reply(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    deadline: tokio::time::Instant,
) -> Result<BytesMut> {
    loop {
        if let Some(n) = reply_len(rbuf)? {
            return Ok(rbuf.split_to(n));
        }
        let n = timeout_at(deadline, stream.read_buf(rbuf))
            .await
            .map_err(|_| "timed out waiting for a reply")??;
        if n == 0 {
            return Err("connection closed by the gateway".into());
        }
    }
}

/// Connects and, with a DSN, authenticates.
pub async fn connect(addr: &str, dsn: Option<&str>) -> Result<(TcpStream, BytesMut)> {
    let deadline = tokio::time::Instant::now() + SETUP;
    let mut stream = timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: timeout"))??;
    stream.set_nodelay(true)?;
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    if let Some(dsn) = dsn {
        let mut cmd = Vec::new();
        encode(&mut cmd, &[b"AUTH", dsn.as_bytes()]);
        stream.write_all(&cmd).await?;
        let reply = read_reply(&mut stream, &mut rbuf, deadline).await?;
        if &reply[..] != b"+OK\r\n" {
            return Err(format!("AUTH answered {:?}", lossy(&reply)).into());
        }
    }
    Ok((stream, rbuf))
}
