//! RESP2 reply encoding (plus the two RESP3 types a `HELLO 3` client needs: map, null), appended to a connection's output buffer. Nothing here allocates
//! beyond growing that buffer.

use bytes::{BufMut, BytesMut};

/// `+<s>\r\n`, e.g. `+OK\r\n`.
pub fn simple(out: &mut BytesMut, s: &str) {
    line(out, b'+', s);
}

/// `-<s>\r\n`; `s` is the whole text after '-', e.g. "ERR foo", "NOAUTH Authentication required.".
pub fn error(out: &mut BytesMut, s: &str) {
    line(out, b'-', s);
}

/// `:<n>\r\n`.
pub fn integer(out: &mut BytesMut, n: i64) {
    number(out, b':', n < 0, n.unsigned_abs());
}

/// `$<len>\r\n<b>\r\n`.
pub fn bulk(out: &mut BytesMut, b: &[u8]) {
    out.reserve(b.len() + 32);
    number(out, b'$', false, b.len() as u64);
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

/// `$-1\r\n`: the nil reply.
pub fn null_bulk(out: &mut BytesMut) {
    out.put_slice(b"$-1\r\n");
}

/// `*<n>\r\n`: the caller then writes the `n` elements.
pub fn array_header(out: &mut BytesMut, n: usize) {
    number(out, b'*', false, n as u64);
}

/// `%<n>\r\n` (RESP3 map): the caller then writes `n` key/value pairs.
pub fn map_header(out: &mut BytesMut, n: usize) {
    number(out, b'%', false, n as u64);
}

/// `_\r\n` (RESP3 null).
pub fn null(out: &mut BytesMut) {
    out.put_slice(b"_\r\n");
}

/// `*0\r\n`.
pub fn empty_array(out: &mut BytesMut) {
    out.put_slice(b"*0\r\n");
}

/// A one-line reply. A CR or LF inside would end the line early and desynchronise the client,
/// so each becomes a space.
fn line(out: &mut BytesMut, prefix: u8, s: &str) {
    out.reserve(s.len() + 3);
    out.put_u8(prefix);
    for (i, part) in s
        .as_bytes()
        .split(|&b| b == b'\r' || b == b'\n')
        .enumerate()
    {
        if i > 0 {
            out.put_u8(b' ');
        }
        out.put_slice(part);
    }
    out.put_slice(b"\r\n");
}

/// `<prefix>[-]<magnitude>\r\n`, the digits formatted on the stack.
fn number(out: &mut BytesMut, prefix: u8, negative: bool, mut magnitude: u64) {
    // u64::MAX has 20 digits; one more for the sign.
    let mut digits = [0u8; 21];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if negative {
        start -= 1;
        digits[start] = b'-';
    }
    out.reserve(digits.len() - start + 3);
    out.put_u8(prefix);
    out.put_slice(&digits[start..]);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(write: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut out = BytesMut::new();
        write(&mut out);
        out.to_vec()
    }

    #[test]
    fn exact_bytes() {
        assert_eq!(encoded(|o| simple(o, "OK")), b"+OK\r\n");
        assert_eq!(encoded(|o| simple(o, "")), b"+\r\n");
        assert_eq!(encoded(|o| simple(o, "a\r\nb\rc\n")), b"+a  b c \r\n");
        assert_eq!(encoded(|o| error(o, "ERR foo")), b"-ERR foo\r\n");
        assert_eq!(
            encoded(|o| error(o, "NOAUTH Authentication required.")),
            b"-NOAUTH Authentication required.\r\n"
        );
        assert_eq!(
            encoded(|o| error(o, "ERR bad\r\nkey")),
            b"-ERR bad  key\r\n"
        );
        assert_eq!(encoded(|o| integer(o, 5)), b":5\r\n");
        assert_eq!(encoded(|o| integer(o, 0)), b":0\r\n");
        assert_eq!(encoded(|o| integer(o, -42)), b":-42\r\n");
        assert_eq!(
            encoded(|o| integer(o, i64::MAX)),
            b":9223372036854775807\r\n"
        );
        assert_eq!(
            encoded(|o| integer(o, i64::MIN)),
            b":-9223372036854775808\r\n"
        );
        assert_eq!(encoded(|o| bulk(o, b"abc")), b"$3\r\nabc\r\n");
        assert_eq!(encoded(|o| bulk(o, b"")), b"$0\r\n\r\n");
        assert_eq!(encoded(|o| bulk(o, b"a\r\n\0b")), b"$5\r\na\r\n\0b\r\n");
        assert_eq!(encoded(null_bulk), b"$-1\r\n");
        assert_eq!(encoded(|o| array_header(o, 3)), b"*3\r\n");
        assert_eq!(encoded(|o| array_header(o, 1024)), b"*1024\r\n");
        assert_eq!(encoded(empty_array), b"*0\r\n");
    }

    #[test]
    fn appends() {
        let mut out = BytesMut::new();
        array_header(&mut out, 2);
        bulk(&mut out, b"k");
        null_bulk(&mut out);
        assert_eq!(&out[..], b"*2\r\n$1\r\nk\r\n$-1\r\n");
    }

    #[test]
    fn big_bulk_length() {
        let payload = vec![b'x'; 1_052_672];
        let out = encoded(|o| bulk(o, &payload));
        assert!(out.starts_with(b"$1052672\r\nxxx"));
        assert!(out.ends_with(b"xx\r\n"));
        assert_eq!(out.len(), 10 + payload.len() + 2);
    }
}
