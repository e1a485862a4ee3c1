//! Fuzzes `databus::resp::Parser`, which reads everything a client sends.
//!
//! Input: two control bytes, then the byte stream of a connection. Control byte 0: its
//! low 6 bits + 1 are a chunk size, its top 2 bits pick one of four small `Limits` (small,
//! so that every limit is actually hit); control byte 1 picks where to split the stream.
//!
//! Checked, besides "no panic":
//! - chunking does not matter (the parser's documented promise): the stream fed whole, split
//!   in two, and in chunks gives the same commands, the same error and the same unconsumed
//!   tail;
//! - the buffer stays bounded: whenever parse() wants more, the buffer holds less than
//!   `max_inline_len` bytes of an inline line or at most `max_request_len` of an array, and
//!   `bytes_needed()` is 0 or a length the buffer has not reached yet, within the limit;
//! - limits only ever stop parsing early: the commands under the small limits are a prefix
//!   of those under the default ones (which a fuzz input is too short to hit), and the
//!   outcome is the same if no small limit was hit;
//! - round trip: the commands, re-encoded as RESP arrays, parse back to themselves.
#![no_main]

use bytes::BytesMut;
use databus::resp::{Command, Limits, Parser, ProtocolError};
use libfuzzer_sys::fuzz_target;

const fn limits(max_args: usize, max_bulk_len: usize, inline: usize, request: usize) -> Limits {
    Limits {
        unauthenticated: false,
        max_args,
        max_bulk_len,
        max_inline_len: inline,
        max_request_len: request,
    }
}

const LIMITS: [Limits; 4] = [
    // The smallest that still admits a command: `*1\r\n$0\r\n\r\n` is exactly 10 bytes.
    limits(1, 0, 1, 10),
    limits(3, 10, 16, 48),
    limits(4, 16, 32, 64),
    // A bulk limit the request limit overrides, and inline lines longer than arrays.
    limits(8, 200, 100, 120),
];

/// What feeding a stream came to: the commands (all arguments, name first), then the error
/// that ended it or, if none, how many bytes were left unconsumed.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    commands: Vec<Vec<Vec<u8>>>,
    error: Option<ProtocolError>,
    left: usize,
}

fuzz_target!(|data: &[u8]| {
    let [control, split, ref stream @ ..] = *data else {
        return;
    };
    let limits = LIMITS[usize::from(control >> 6)];
    let chunk = usize::from(control & 63) + 1;
    let at = stream.len() * usize::from(split) / 255;

    let whole = feed(limits, [stream]);
    let (a, b) = stream.split_at(at);
    assert_eq!(feed(limits, [a, b]), whole, "split at {at}");
    assert_eq!(
        feed(limits, stream.chunks(chunk)),
        whole,
        "chunks of {chunk}"
    );

    let unlimited = feed(Limits::default(), [stream]);
    assert!(unlimited.commands.starts_with(&whole.commands));
    if whole.error.is_none() {
        assert_eq!(whole, unlimited);
    }

    let wire: Vec<u8> = whole.commands.iter().flat_map(|c| encode(c)).collect();
    let expect = Outcome {
        commands: whole.commands,
        error: None,
        left: 0,
    };
    assert_eq!(feed(Limits::default(), [&wire[..]]), expect, "round trip");
});

/// Appends each part in turn and parses until the parser wants more, as a connection does;
/// stops at the first error, as a connection closes.
fn feed<'a>(limits: Limits, parts: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut parser = Parser::new(limits);
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for part in parts {
        buf.extend_from_slice(part);
        loop {
            match parser.parse(&mut buf) {
                Ok(Some(command)) => commands.push(args(command)),
                Ok(None) => {
                    check_bound(&parser, &buf, &limits);
                    break;
                }
                Err(error) => {
                    return Outcome {
                        commands,
                        error: Some(error),
                        left: 0,
                    }
                }
            }
        }
    }
    Outcome {
        commands,
        error: None,
        left: buf.len(),
    }
}

fn check_bound(parser: &Parser, buf: &BytesMut, limits: &Limits) {
    let len = buf.len();
    match buf.first() {
        None => {}
        Some(b'*') => assert!(len <= limits.max_request_len, "{len} bytes of an array"),
        Some(_) => assert!(len < limits.max_inline_len, "{len} bytes of an inline line"),
    }
    let need = parser.bytes_needed();
    assert!(
        need == 0 || (len < need && need <= limits.max_request_len),
        "bytes_needed {need} with {len} buffered"
    );
}

/// The command's arguments, name first, after checking the accessors agree.
fn args(command: Command) -> Vec<Vec<u8>> {
    let name = command.name().to_vec();
    let rest: Vec<Vec<u8>> = command.args().iter().map(|a| a.to_vec()).collect();
    assert_eq!(command.len(), rest.len());
    let all: Vec<Vec<u8>> = command.into_args().iter().map(|a| a.to_vec()).collect();
    assert_eq!(all[0], name);
    assert_eq!(all[1..], rest[..]);
    all
}

/// A RESP array of bulk strings.
fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}
