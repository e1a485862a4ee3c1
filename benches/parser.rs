//! Micro-benchmark of the gateway's RESP request parser (`databus::resp::Parser`) against the
//! `redis-protocol` crate's RESP2 decoder, on the same bytes.
//!
//! The input is a batch of 64 pipelined `SET <key> <value>` commands
//! (`*3\r\n$3\r\nSET\r\n$10\r\nkey:000042\r\n$<n>\r\n<value>\r\n`) with values of 16 B, 100 B,
//! 1 KiB and 64 KiB. One iteration splits all 64 commands off the front of a `BytesMut` holding
//! the batch, as a connection does with its read buffer. Both sides do the same work: split
//! each command off the buffer, freeze it, slice its arguments out zero-copy as `Bytes`,
//! `black_box` and drop the result. For each size, group `set_<size>` reports commands/s and
//! group `set_<size>_bytes` reports bytes/s of wire data; each has a `databus` and a
//! `redis-protocol` function.
//!
//! Run with `cargo bench --bench parser` (about a minute), or
//! `cargo bench --bench parser -- --test` to run each benchmark once as a smoke test.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use databus::resp::{Limits, Parser};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;

/// Commands per iteration: enough to amortize the per-iteration overhead.
const FRAMES: usize = 64;

/// Value sizes, with the label used in the group names.
const SIZES: [(usize, &str); 4] = [
    (16, "16B"),
    (100, "100B"),
    (1024, "1KiB"),
    (64 * 1024, "64KiB"),
];

/// The wire bytes of `FRAMES` pipelined SETs with `value_len`-byte values and distinct keys.
fn batch(value_len: usize) -> Vec<u8> {
    let value: Vec<u8> = (0..value_len).map(|i| b'a' + (i % 26) as u8).collect();
    let mut out = Vec::new();
    for i in 0..FRAMES {
        let key = format!("key:{i:06}");
        out.extend_from_slice(format!("*3\r\n$3\r\nSET\r\n${}\r\n", key.len()).as_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(format!("\r\n${value_len}\r\n").as_bytes());
        out.extend_from_slice(&value);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A read buffer that is refilled with the same batch before each iteration, without copying.
///
/// Copying a batch of 64 KiB values (4 MiB) costs tens of times more than parsing it, since
/// both parsers skip payloads by length, so neither a copy inside the timed routine nor one in
/// an `iter_batched` setup is workable (`SmallInput` holds a tenth of a sample's iterations at
/// once, gigabytes here, and the untimed copies would stretch the run to many minutes). Instead, once every command split off the buffer has been dropped, the buffer is
/// again the sole owner of its allocation: `try_reclaim` moves it back to the allocation's
/// start, and the batch, written there once and never overwritten, is taken back by `set_len`.
/// That is O(1) and the same for both parsers; it is also how a connection's read buffer gets
/// reused.
struct Refill {
    buf: BytesMut,
    start: *const u8,
    len: usize,
}

impl Refill {
    fn new(wire: &[u8]) -> Refill {
        let buf = BytesMut::from(wire);
        Refill {
            start: buf.as_ptr(),
            len: buf.len(),
            buf,
        }
    }

    /// The buffer, holding the whole batch. Every `Bytes` split off it before must be dropped.
    fn full(&mut self) -> &mut BytesMut {
        if self.buf.is_empty() {
            let reclaimed = self.buf.try_reclaim(self.len);
            assert!(
                reclaimed && self.buf.as_ptr() == self.start && self.buf.capacity() >= self.len,
                "read buffer not reclaimed in place: a parsed command is still alive"
            );
            // SAFETY: the buffer points at the start of the allocation the batch was copied
            // into (checked above) and owns it alone; the `len` bytes there were initialized
            // by that copy, and nothing wrote to them since: parsing only reads and splits.
            unsafe { self.buf.set_len(self.len) };
        }
        assert_eq!(self.buf.len(), self.len, "buffer not fully consumed");
        &mut self.buf
    }
}

/// databus: `Parser::parse` until the buffer is empty. Returns the number of commands.
fn parse_databus(parser: &mut Parser, buf: &mut BytesMut) -> usize {
    let mut n = 0;
    while let Some(command) = parser.parse(buf).expect("valid RESP") {
        black_box(command);
        n += 1;
    }
    n
}

/// redis-protocol: `resp2::decode::decode_bytes_mut`, which splits and freezes the frame off
/// the `BytesMut` and returns a `BytesFrame` whose bulk strings are zero-copy `Bytes` slices of
/// it: the same work as ours (its `decode` would copy into an `OwnedFrame`, and `decode_range`
/// would stop at offsets without splitting the buffer).
fn parse_redis_protocol(buf: &mut BytesMut) -> usize {
    let mut n = 0;
    while let Some((frame, _len, chunk)) = decode_bytes_mut(buf).expect("valid RESP") {
        black_box((frame, chunk));
        n += 1;
    }
    n
}

/// Both parsers must see the same 64 commands in the batch, or the comparison means nothing.
fn check(wire: &[u8], value_len: usize) {
    let mut parser = Parser::new(Limits::default());
    let mut ours = BytesMut::from(wire);
    let mut theirs = BytesMut::from(wire);
    for i in 0..FRAMES {
        let key = format!("key:{i:06}");
        let command = parser.parse(&mut ours).unwrap().expect("a command");
        assert!(command.is_named("SET"));
        assert_eq!(command.args().len(), 2);
        assert_eq!(command.args()[0], key.as_bytes());
        assert_eq!(command.args()[1].len(), value_len);

        let (frame, _, _) = decode_bytes_mut(&mut theirs).unwrap().expect("a frame");
        let BytesFrame::Array(parts) = frame else {
            panic!("not an array: {frame:?}");
        };
        let parts: Vec<_> = parts
            .into_iter()
            .map(|part| match part {
                BytesFrame::BulkString(bytes) => bytes,
                other => panic!("not a bulk string: {other:?}"),
            })
            .collect();
        assert_eq!(parts, [&b"SET"[..], &command.args()[0], &command.args()[1]]);
    }
    assert!(ours.is_empty() && theirs.is_empty());
}

fn bench_parsers(c: &mut Criterion) {
    for (value_len, label) in SIZES {
        let wire = batch(value_len);
        check(&wire, value_len);
        for (group_name, throughput) in [
            (format!("set_{label}"), Throughput::Elements(FRAMES as u64)),
            (
                format!("set_{label}_bytes"),
                Throughput::Bytes(wire.len() as u64),
            ),
        ] {
            let mut group = c.benchmark_group(group_name);
            group.throughput(throughput);

            let mut refill = Refill::new(&wire);
            let mut parser = Parser::new(Limits::default());
            group.bench_function(BenchmarkId::from_parameter("databus"), |b| {
                b.iter(|| assert_eq!(parse_databus(&mut parser, refill.full()), FRAMES))
            });

            let mut refill = Refill::new(&wire);
            group.bench_function(BenchmarkId::from_parameter("redis-protocol"), |b| {
                b.iter(|| assert_eq!(parse_redis_protocol(refill.full()), FRAMES))
            });

            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = bench_parsers
}
criterion_main!(benches);
