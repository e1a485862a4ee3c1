//! Incremental request parser: splits complete commands off the front of a connection's read
//! buffer. Accepts RESP arrays of bulk strings (`*N\r\n$len\r\n<bytes>\r\n...`) and inline
//! commands (a line of words, as telnet and redis-cli send).
//!
//! Every outcome depends only on the bytes received so far, never on how they were chunked:
//! an error is reported as soon as the bytes already present prove the request invalid (a
//! header above a limit fails before its payload arrives), and nothing past `max_request_len`
//! (or `max_inline_len` for an inline line) is ever looked at, so the read buffer stays bounded.
//! Progress within an unfinished command is remembered, so a large bulk string trickling in is
//! never rescanned.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::inline::{self, Word};

/// Limits of a request. Defaults: max_args 1024, max_bulk_len 1 MiB + 4 KiB (1_052_672),
/// max_inline_len 64 KiB (65_536), max_request_len 4 MiB (4_194_304): the largest whole command
/// in bytes on the wire (so that the read buffer can never grow past a known bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most arguments in one command, the command name included.
    pub max_args: usize,
    /// Longest bulk string argument.
    pub max_bulk_len: usize,
    /// Longest inline line, its line terminator included.
    pub max_inline_len: usize,
    /// Longest RESP array command on the wire, headers and CRLFs included.
    pub max_request_len: usize,
    /// The client has not authenticated: redis-server's limits for that case
    /// apply too (at most [`UNAUTHENTICATED_MAX_ARGS`] arguments of
    /// [`UNAUTHENTICATED_MAX_BULK`] bytes), with its texts
    /// (`unauthenticated multibulk length`, `unauthenticated bulk length`).
    pub unauthenticated: bool,
}

/// Most arguments of a request before AUTH (redis-server's).
pub const UNAUTHENTICATED_MAX_ARGS: usize = 10;
/// Largest argument before AUTH (redis-server's).
pub const UNAUTHENTICATED_MAX_BULK: usize = 16 * 1024;

impl Limits {
    /// These limits, tightened for a client that has proven nothing yet: it
    /// costs at most one request of 10 × 16 KiB.
    pub fn before_auth(self) -> Limits {
        Limits {
            max_inline_len: self.max_inline_len.min(UNAUTHENTICATED_MAX_BULK),
            max_request_len: self
                .max_request_len
                .min(UNAUTHENTICATED_MAX_ARGS * (UNAUTHENTICATED_MAX_BULK + 32)),
            unauthenticated: true,
            ..self
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_args: 1024,
            max_bulk_len: (1 << 20) + (4 << 10),
            max_inline_len: 64 << 10,
            max_request_len: 4 << 20,
            unauthenticated: false,
        }
    }
}

/// One complete command: its arguments are zero-copy `Bytes` slices of the read buffer.
/// Always has a name.
#[derive(Clone, Debug)]
pub struct Command {
    name: Name,
    /// The arguments after the name.
    args: Vec<Bytes>,
}

/// Where a command's name lives. The name is only ever compared, so a name sent
/// on the wire is kept as a range of the command's bytes, and those bytes are
/// owned here: one `Bytes` handle less per command, i.e. one reference count
/// less to take and to drop.
#[derive(Clone, Debug)]
enum Name {
    InWire { wire: Bytes, range: Range<usize> },
    Own(Bytes),
}

impl PartialEq for Command {
    fn eq(&self, other: &Command) -> bool {
        self.name() == other.name() && self.args == other.args
    }
}

impl Eq for Command {}

// A command always has a name, so `is_empty` would only invite confusion with "no arguments".
#[allow(clippy::len_without_is_empty)]
impl Command {
    /// A command from its name and arguments.
    pub fn new(mut args: Vec<Bytes>) -> Command {
        assert!(!args.is_empty(), "a command needs at least its name");
        let name = Name::Own(args.remove(0));
        Command { name, args }
    }

    /// A command whose name is `range` of `wire`, the bytes it came in.
    fn from_wire(wire: Bytes, range: Range<usize>, args: Vec<Bytes>) -> Command {
        Command {
            name: Name::InWire { wire, range },
            args,
        }
    }

    /// The first argument, as sent.
    pub fn name(&self) -> &[u8] {
        match &self.name {
            Name::InWire { wire, range } => &wire[range.clone()],
            Name::Own(name) => name,
        }
    }

    /// All arguments after the name.
    pub fn args(&self) -> &[Bytes] {
        &self.args
    }

    /// Everything, the name included.
    pub fn into_args(self) -> Vec<Bytes> {
        let name = match self.name {
            Name::InWire { wire, range } => wire.slice(range),
            Name::Own(name) => name,
        };
        std::iter::once(name).chain(self.args).collect()
    }

    /// The number of arguments after the name.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Whether the name equals `upper`, ignoring ASCII case.
    pub fn is_named(&self, upper: &str) -> bool {
        self.name().eq_ignore_ascii_case(upper.as_bytes())
    }
}

/// A request that breaks the protocol; the connection answers `-ERR Protocol error: <Display>`
/// and closes. The texts are redis-server's where it has one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// `*` not followed by a decimal count and CRLF, or a negative or overflowing count.
    #[error("invalid multibulk length")]
    InvalidMultibulkLength,
    /// Before AUTH, an array longer than the unauthenticated limit.
    #[error("unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// Before AUTH, a bulk string longer than the unauthenticated limit.
    #[error("unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    /// `*0`: a command needs at least its name.
    #[error("empty multibulk")]
    EmptyMultibulk,
    /// More than `max_args` arguments (array count or inline words).
    #[error("too many arguments")]
    TooManyArguments,
    /// `$` not followed by a decimal length and CRLF, a negative length, or one above
    /// `max_bulk_len`.
    #[error("invalid bulk length")]
    InvalidBulkLength,
    /// An array element that is not a bulk string; holds the byte found instead of `$`.
    #[error("expected '$', got '{}'", .0.escape_ascii())]
    ExpectedBulk(u8),
    /// Bulk data longer than its header said.
    #[error("missing CRLF after bulk data")]
    MissingCrlf,
    /// An inline line longer than `max_inline_len`.
    #[error("too big inline request")]
    TooBigInline,
    /// An inline quoted word without its closing quote, or with no space after it.
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A RESP array command longer than `max_request_len`.
    #[error("request too large")]
    RequestTooLarge,
}

/// Splits commands off a read buffer; holds the limits and where an unfinished command got to.
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    state: State,
}

/// Progress within the command at the front of the buffer. Offsets are from the buffer's start,
/// which stays put until the command is split off: the caller only appends.
#[derive(Debug)]
enum State {
    Idle,
    /// An inline line with no `\n` among its first `scanned` bytes.
    Inline {
        scanned: usize,
    },
    /// A RESP array of `expected` arguments, of which `args` are complete; the next element's
    /// header starts at `pos`; `need` is the buffer length its payload waits for, if known.
    Array {
        expected: usize,
        args: Vec<Range<usize>>,
        pos: usize,
        need: usize,
    },
}

impl Parser {
    pub fn new(limits: Limits) -> Parser {
        Parser {
            limits,
            state: State::Idle,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// New limits for the commands after the current one (the connection
    /// authenticated). Call it between commands, never mid-command.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Splits the next complete command off the front of `buf` (via `split_to(n).freeze()`, args
    /// are slices of that frozen chunk). Ok(None) = incomplete: call again after more bytes were
    /// appended to `buf` (it may leave `buf` untouched; it may also consume empty inline lines).
    /// Err = protocol violation: detected as early as possible, i.e. as soon as a header shows a
    /// limit is exceeded, not after the bytes arrived.
    ///
    /// While it returns Ok(None), `buf` holds less than `max_inline_len` bytes of an inline line
    /// or at most `max_request_len` bytes of an array.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Command>, ProtocolError> {
        loop {
            let Some(&first) = buf.first() else {
                self.state = State::Idle;
                return Ok(None);
            };
            let step = if first == b'*' {
                self.parse_array(buf)
            } else {
                self.parse_inline(buf)
            };
            match step {
                Ok(Step::Incomplete) => return Ok(None),
                Ok(Step::Blank) => self.state = State::Idle,
                Ok(Step::Command(command)) => {
                    self.state = State::Idle;
                    return Ok(Some(command));
                }
                Err(e) => {
                    self.state = State::Idle;
                    return Err(e);
                }
            }
        }
    }

    /// A hint: how many bytes `buf` must hold before parse() can make progress (0 if unknown),
    /// so the caller can reserve capacity once for a large bulk string.
    pub fn bytes_needed(&self) -> usize {
        match self.state {
            State::Array { need, .. } => need,
            _ => 0,
        }
    }

    fn parse_array(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        // A command that does not end within the window is too large whatever follows, so the
        // bytes past it need never be read; this is what bounds the buffer.
        let window = &buf[..buf.len().min(self.limits.max_request_len)];
        match self.scan_array(window)? {
            Some((ranges, end)) => {
                let wire = buf.split_to(end).freeze();
                let mut ranges = ranges.into_iter();
                let name = ranges.next().unwrap_or_default();
                let args = ranges.map(|r| wire.slice(r)).collect();
                Ok(Step::Command(Command::from_wire(wire, name, args)))
            }
            None if buf.len() > self.limits.max_request_len => Err(ProtocolError::RequestTooLarge),
            None => Ok(Step::Incomplete),
        }
    }

    /// Finds the array command in `window`: its argument ranges and its length, or None (state
    /// saved) if it is not all there yet.
    fn scan_array(&mut self, window: &[u8]) -> Result<Option<ArrayFound>, ProtocolError> {
        let limits = self.limits;
        let (expected, mut args, mut pos) = match std::mem::replace(&mut self.state, State::Idle) {
            // The guard only fails if the caller broke the append-only contract; start over.
            State::Array {
                expected,
                args,
                pos,
                ..
            } if pos <= window.len() => (expected, args, pos),
            _ => match read_len(window, 1).map_err(|()| ProtocolError::InvalidMultibulkLength)? {
                None => return Ok(None),
                Some((0, _)) => return Err(ProtocolError::EmptyMultibulk),
                Some((n, _)) if limits.unauthenticated && n > UNAUTHENTICATED_MAX_ARGS as u64 => {
                    return Err(ProtocolError::UnauthenticatedMultibulkLength)
                }
                Some((n, _)) if n > limits.max_args as u64 => {
                    return Err(ProtocolError::TooManyArguments)
                }
                // n <= max_args, so the capacity is bounded.
                Some((n, end)) => (n as usize, Vec::with_capacity(n as usize), end),
            },
        };
        let mut need = 0;
        while args.len() < expected {
            match window.get(pos) {
                None => break,
                Some(b'$') => {}
                Some(&other) => return Err(ProtocolError::ExpectedBulk(other)),
            }
            let Some((len, start)) =
                read_len(window, pos + 1).map_err(|()| ProtocolError::InvalidBulkLength)?
            else {
                break;
            };
            if limits.unauthenticated && len > UNAUTHENTICATED_MAX_BULK as u64 {
                return Err(ProtocolError::UnauthenticatedBulkLength);
            }
            if len > limits.max_bulk_len as u64 {
                return Err(ProtocolError::InvalidBulkLength);
            }
            let end = start.saturating_add(len as usize);
            let next = end.saturating_add(2);
            if next > limits.max_request_len {
                return Err(ProtocolError::RequestTooLarge);
            }
            // The payload is skipped by length: only its trailing CRLF is ever looked at.
            if window.len() < next {
                need = next;
                break;
            }
            if &window[end..next] != b"\r\n" {
                return Err(ProtocolError::MissingCrlf);
            }
            args.push(start..end);
            pos = next;
        }
        if args.len() == expected {
            return Ok(Some((args, pos)));
        }
        self.state = State::Array {
            expected,
            args,
            pos,
            need,
        };
        Ok(None)
    }

    fn parse_inline(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        let max = self.limits.max_inline_len;
        let window = &buf[..buf.len().min(max)];
        let scanned = match self.state {
            State::Inline { scanned } if scanned <= window.len() => scanned,
            _ => 0,
        };
        let Some(newline) = window[scanned..].iter().position(|&b| b == b'\n') else {
            if buf.len() >= max {
                return Err(ProtocolError::TooBigInline);
            }
            self.state = State::Inline {
                scanned: window.len(),
            };
            return Ok(Step::Incomplete);
        };
        let newline = scanned + newline;
        let line = &window[..newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let words = inline::split(line, self.limits.max_args)?;
        let chunk = buf.split_to(newline + 1).freeze();
        if words.is_empty() {
            return Ok(Step::Blank);
        }
        let as_bytes = |word| match word {
            Word::Slice(r) => chunk.slice(r),
            Word::Owned(bytes) => Bytes::from(bytes),
        };
        let mut words = words.into_iter();
        let name = words.next();
        let args = words.map(as_bytes).collect();
        let command = match name {
            Some(Word::Slice(range)) => Command::from_wire(chunk, range, args),
            owned => Command {
                name: Name::Own(owned.map(as_bytes).unwrap_or_default()),
                args,
            },
        };
        Ok(Step::Command(command))
    }
}

/// A complete array command: its argument ranges and its length on the wire.
type ArrayFound = (Vec<Range<usize>>, usize);

/// What one attempt at the front of the buffer came to.
enum Step {
    Incomplete,
    /// A blank inline line, consumed: look at what follows it.
    Blank,
    Command(Command),
}

/// Reads a decimal length and its CRLF at `buf[start..]`: Ok(Some((value, offset after the
/// LF))), Ok(None) if the buffer ends first, or Err as soon as a byte cannot belong to such a
/// line. Like redis-server's `string2ll`, leading zeros are refused, which together with
/// the overflow check keeps the line short: a garbage trickle cannot grow into a rescan.
fn read_len(buf: &[u8], start: usize) -> Result<Option<(u64, usize)>, ()> {
    let mut value: u64 = 0;
    let mut i = start;
    loop {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        match b {
            b'0'..=b'9' if i == start || value != 0 => {
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .ok_or(())?;
            }
            b'\r' if i > start => {
                return match buf.get(i + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((value, i + 2))),
                    Some(_) => Err(()),
                };
            }
            _ => return Err(()),
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ProtocolError::*;

    /// What feeding some bytes came to: the commands parsed, then the error that stopped it or,
    /// if none, how many bytes were left unconsumed.
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        commands: Vec<Vec<Vec<u8>>>,
        error: Option<ProtocolError>,
        left: usize,
    }

    /// Appends each part in turn, parsing until Ok(None) after each, and checks the buffer bound
    /// whenever parse() asks for more.
    fn feed(limits: Limits, parts: &[&[u8]]) -> Outcome {
        let bound = limits.max_request_len.max(limits.max_inline_len);
        let mut parser = Parser::new(limits);
        let mut buf = BytesMut::new();
        let mut commands = Vec::new();
        for part in parts {
            buf.extend_from_slice(part);
            loop {
                match parser.parse(&mut buf) {
                    Ok(Some(command)) => {
                        let args = command_bytes(command);
                        assert!(!args.is_empty());
                        commands.push(args);
                    }
                    Ok(None) => {
                        assert!(buf.len() <= bound, "{} bytes buffered", buf.len());
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

    fn command_bytes(command: Command) -> Vec<Vec<u8>> {
        command.into_args().iter().map(|a| a.to_vec()).collect()
    }

    /// Feeds `input` whole, split in two at every offset, and one byte at a time: all must
    /// give `expect`.
    fn check(limits: Limits, input: &[u8], expect: &Outcome) {
        let shown = input.escape_ascii().to_string();
        assert_eq!(&feed(limits, &[input]), expect, "whole {shown:?}");
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            assert_eq!(&feed(limits, &[a, b]), expect, "split at {at}: {shown:?}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(&feed(limits, &bytes), expect, "bytewise {shown:?}");
    }

    fn ok(limits: Limits, input: &[u8], commands: &[&[&[u8]]], left: usize) {
        let commands = commands
            .iter()
            .map(|c| c.iter().map(|a| a.to_vec()).collect())
            .collect();
        check(
            limits,
            input,
            &Outcome {
                commands,
                error: None,
                left,
            },
        );
    }

    fn err(limits: Limits, input: &[u8], commands: &[&[&[u8]]], error: ProtocolError) {
        let commands = commands
            .iter()
            .map(|c| c.iter().map(|a| a.to_vec()).collect())
            .collect();
        check(
            limits,
            input,
            &Outcome {
                commands,
                error: Some(error),
                left: 0,
            },
        );
    }

    fn encode(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn small() -> Limits {
        Limits {
            max_args: 3,
            max_bulk_len: 10,
            max_inline_len: 16,
            max_request_len: 48,
            unauthenticated: false,
        }
    }

    const D: fn() -> Limits = Limits::default;

    #[test]
    fn defaults() {
        let d = Limits::default();
        assert_eq!(
            (
                d.max_args,
                d.max_bulk_len,
                d.max_inline_len,
                d.max_request_len
            ),
            (1024, 1_052_672, 65_536, 4_194_304)
        );
        assert_eq!(Parser::new(d).limits(), &d);
    }

    #[test]
    fn valid_arrays() {
        ok(D(), b"*1\r\n$4\r\nPING\r\n", &[&[b"PING"]], 0);
        ok(
            D(),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\r\nb\0\r\n",
            &[&[b"SET", b"k", b"a\r\nb\0"]],
            0,
        );
        ok(D(), b"*2\r\n$0\r\n\r\n$0\r\n\r\n", &[&[b"", b""]], 0);
        ok(D(), b"*1\r\n$2\r\n\r\n\r\n", &[&[b"\r\n"]], 0);
        ok(D(), b"*1\r\n$3\r\n\xff\x00*\r\n", &[&[b"\xff\x00*"]], 0);
        ok(D(), b"*10\r\n$1\r\na\r\n", &[], 12);
        ok(
            D(),
            b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI",
            &[&[b"PING"]],
            10,
        );
        ok(
            D(),
            b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
            &[&[b"PING"], &[b"GET", b"k"]],
            0,
        );
        ok(
            D(),
            b"*1\r\n$4\r\nPING\r\nPING\r\n",
            &[&[b"PING"], &[b"PING"]],
            0,
        );
        ok(D(), b"*1\r", &[], 3);
        ok(D(), b"", &[], 0);
    }

    #[test]
    fn valid_inline() {
        ok(D(), b"PING\r\n", &[&[b"PING"]], 0);
        ok(D(), b"set k v\n", &[&[b"set", b"k", b"v"]], 0);
        ok(D(), b"  set   k\tv  \r\n", &[&[b"set", b"k", b"v"]], 0);
        ok(D(), b"a\rb\r\n", &[&[b"a", b"b"]], 0);
        ok(D(), b"\r\n\n  \r\n\tPING\n", &[&[b"PING"]], 0);
        ok(D(), b"   \r\n", &[], 0);
        ok(D(), b"   ", &[], 3);
        ok(D(), b"PING", &[], 4);
        ok(D(), b"PING\r", &[], 5);
        ok(D(), b"a\r\nb\nc", &[&[b"a"], &[b"b"]], 1);
        ok(D(), b"x \xff\x00\n", &[&[b"x", b"\xff\x00"]], 0);
        ok(D(), b"set \"a b\" 'c d'\n", &[&[b"set", b"a b", b"c d"]], 0);
        ok(
            D(),
            b"set k \"\\x41\\n\\\"\"\r\n",
            &[&[b"set", b"k", b"A\n\""]],
            0,
        );
        ok(D(), b"set k 'it\\'s'\r\n", &[&[b"set", b"k", b"it's"]], 0);
        ok(
            D(),
            b"echo foo\"bar baz\" \"\"\n",
            &[&[b"echo", b"foobar baz", b""]],
            0,
        );
        ok(
            D(),
            b"PING\n*1\r\n$4\r\nECHO\r\nGET k\n",
            &[&[b"PING"], &[b"ECHO"], &[b"GET", b"k"]],
            0,
        );
    }

    #[test]
    fn size_edges() {
        let l = small();
        // max_args
        ok(l, &encode(&[b"a", b"b", b"c"]), &[&[b"a", b"b", b"c"]], 0);
        err(l, b"*4\r\n", &[], TooManyArguments);
        ok(l, b"a b c\n", &[&[b"a", b"b", b"c"]], 0);
        err(l, b"a b c d\n", &[], TooManyArguments);
        // max_bulk_len, rejected on the header alone
        ok(l, &encode(&[b"0123456789"]), &[&[b"0123456789"]], 0);
        err(l, b"*1\r\n$11\r\n", &[], InvalidBulkLength);
        // max_inline_len counts the line terminator
        ok(l, b"0123456789abcd\r\n", &[&[b"0123456789abcd"]], 0);
        ok(l, b"0123456789abcde\n", &[&[b"0123456789abcde"]], 0);
        err(l, b"0123456789abcdef\n", &[], TooBigInline);
        err(l, b"0123456789abcde\r\n", &[], TooBigInline);
        err(l, b"0123456789abcdef", &[], TooBigInline);
        ok(l, b"0123456789abcde", &[], 15);
        // max_request_len is the whole command, exactly
        let args: &[&[u8]] = &[b"0123456789", b"0123456789", b"01234"];
        let exact = encode(args);
        let limits = Limits {
            max_request_len: exact.len(),
            ..l
        };
        ok(limits, &exact, &[args], 0);
        let limits = Limits {
            max_request_len: exact.len() - 1,
            ..l
        };
        // Rejected on the last header, before its payload.
        err(limits, &exact[..exact.len() - 7], &[], RequestTooLarge);
        // A header that cannot end within the limit.
        let limits = Limits {
            max_request_len: 6,
            ..l
        };
        ok(limits, b"*1\r\n$1", &[], 6);
        err(limits, b"*1\r\n$10", &[], RequestTooLarge);
        err(limits, b"*1\r\n$1\r\nx\r\n", &[], RequestTooLarge);
    }

    #[test]
    fn invalid() {
        err(D(), b"*0\r\n", &[], EmptyMultibulk);
        err(D(), b"*-1\r\n", &[], InvalidMultibulkLength);
        err(
            D(),
            b"*99999999999999999999\r\n",
            &[],
            InvalidMultibulkLength,
        );
        err(
            D(),
            b"*18446744073709551616\r\n",
            &[],
            InvalidMultibulkLength,
        );
        err(D(), b"*18446744073709551615\r\n", &[], TooManyArguments);
        err(D(), b"*1025\r\n", &[], TooManyArguments);
        err(D(), b"*1x\r\n", &[], InvalidMultibulkLength);
        err(D(), b"*\r\n", &[], InvalidMultibulkLength);
        err(D(), b"*01\r\n", &[], InvalidMultibulkLength);
        err(D(), b"*1\rx", &[], InvalidMultibulkLength);
        err(D(), b"*1\n", &[], InvalidMultibulkLength);
        err(D(), b"* 1\r\n", &[], InvalidMultibulkLength);
        err(D(), b"*1\r\n$-1\r\n", &[], InvalidBulkLength);
        err(D(), b"*1\r\n$abc\r\n", &[], InvalidBulkLength);
        err(D(), b"*1\r\n$\r\n", &[], InvalidBulkLength);
        err(D(), b"*1\r\n$03\r\nfoo\r\n", &[], InvalidBulkLength);
        err(
            D(),
            b"*1\r\n$99999999999999999999\r\n",
            &[],
            InvalidBulkLength,
        );
        err(D(), b"*1\r\n$1052673\r\n", &[], InvalidBulkLength);
        err(D(), b"*1\r\n:5\r\n", &[], ExpectedBulk(b':'));
        err(D(), b"*2\r\n$1\r\na\r\n*1\r\n", &[], ExpectedBulk(b'*'));
        err(D(), b"*1\r\n$3\r\nfooXY", &[], MissingCrlf);
        err(D(), b"*1\r\n$3\r\nfoo\rX", &[], MissingCrlf);
        err(D(), b"*1\r\n$3\r\nfoo\n\r", &[], MissingCrlf);
        err(D(), b"*1\r\n$3\r\nfoobar\r\n", &[], MissingCrlf);
        err(D(), b"set \"k\n", &[], UnbalancedQuotes);
        err(D(), b"set 'k\n", &[], UnbalancedQuotes);
        err(D(), b"set \"k\"v\n", &[], UnbalancedQuotes);
        err(D(), b"set 'k'v\r\n", &[], UnbalancedQuotes);
        err(D(), b"PING\r\n*0\r\n", &[&[b"PING"]], EmptyMultibulk);
        err(
            D(),
            b"*1\r\n$1\r\nx\r\nGET 'k\n*1\r\n",
            &[&[b"x"]],
            UnbalancedQuotes,
        );
    }

    #[test]
    fn display_texts() {
        let texts = [
            (InvalidMultibulkLength, "invalid multibulk length"),
            (EmptyMultibulk, "empty multibulk"),
            (TooManyArguments, "too many arguments"),
            (InvalidBulkLength, "invalid bulk length"),
            (ExpectedBulk(b':'), "expected '$', got ':'"),
            (ExpectedBulk(b'\r'), "expected '$', got '\\r'"),
            (ExpectedBulk(0xff), "expected '$', got '\\xff'"),
            (MissingCrlf, "missing CRLF after bulk data"),
            (TooBigInline, "too big inline request"),
            (UnbalancedQuotes, "unbalanced quotes in request"),
            (RequestTooLarge, "request too large"),
        ];
        for (error, text) in texts {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn default_limits_big_commands() {
        let big = vec![b'x'; 1_052_672];
        let ok_input = encode(&[b"SET", b"k", &big, &big, &big]);
        assert!(ok_input.len() <= 4_194_304);
        let third = ok_input.len() / 3;
        for parts in [
            vec![&ok_input[..]],
            vec![
                &ok_input[..third],
                &ok_input[third..2 * third],
                &ok_input[2 * third..],
            ],
        ] {
            let out = feed(D(), &parts);
            assert_eq!(out.error, None);
            assert_eq!(out.commands.len(), 1);
            assert_eq!(out.commands[0][4], big);
        }
        // A fourth big argument cannot fit: refused at its header.
        let mut too_big = encode(&[b"SET", b"k", &big, &big, &big, &big]);
        too_big.truncate(ok_input.len() + 10);
        assert!(too_big.ends_with(b"$1052672\r\n"));
        assert_eq!(feed(D(), &[&too_big]).error, Some(RequestTooLarge));
        // An inline line fails once the buffer holds 64 KiB without its newline.
        let long = vec![b'a'; 65_536];
        assert_eq!(feed(D(), &[&long[..65_535]]).left, 65_535);
        assert_eq!(feed(D(), &[&long[..65_535], b"\n"]).commands.len(), 1);
        assert_eq!(feed(D(), &[&long]).error, Some(TooBigInline));
        assert_eq!(
            feed(D(), &[&long[..1000], &long[1000..]]).error,
            Some(TooBigInline)
        );
    }

    #[test]
    fn bytes_needed_and_trickle() {
        let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let input = encode(&[b"SET", &payload]);
        let mut parser = Parser::new(D());
        let mut buf = BytesMut::new();
        assert_eq!(parser.bytes_needed(), 0);
        let header_end = input.len() - payload.len() - 2;
        for (i, &b) in input.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            match parser.parse(&mut buf) {
                Ok(None) if i + 1 >= header_end => assert_eq!(parser.bytes_needed(), input.len()),
                Ok(None) => assert!(parser.bytes_needed() < input.len()),
                Ok(Some(command)) => {
                    assert_eq!(i, input.len() - 1);
                    assert!(command.is_named("set"));
                    assert_eq!(command.args()[0], payload);
                    assert!(buf.is_empty());
                    assert_eq!(parser.bytes_needed(), 0);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn zero_copy() {
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nset k \"v\" w\n"[..]);
        let range = buf.as_ptr_range();
        let inside = |b: &Bytes| range.contains(&b.as_ptr());
        let mut parser = Parser::new(D());
        let get = parser.parse(&mut buf).unwrap().unwrap();
        assert!(get.into_args().iter().all(inside));
        let set = parser.parse(&mut buf).unwrap().unwrap();
        let args = set.into_args();
        assert_eq!(args, [&b"set"[..], b"k", b"v", b"w"]);
        assert!(inside(&args[0]) && inside(&args[1]) && inside(&args[3]));
        assert!(!inside(&args[2]), "quoted words are copies");
    }

    #[test]
    fn command_accessors() {
        let c = Command::new(vec![Bytes::from_static(b"get"), Bytes::from_static(b"k")]);
        assert_eq!(c.name(), b"get");
        assert!(c.is_named("GET"));
        assert!(!c.is_named("GETX"));
        assert_eq!(c.len(), 1);
        assert_eq!(c.args(), [Bytes::from_static(b"k")]);
        let alone = Command::new(vec![Bytes::from_static(b"PING")]);
        assert_eq!((alone.len(), alone.args()), (0, &[][..]));
        assert_eq!(c.into_args().len(), 2);
    }

    #[test]
    fn state_reset_if_buffer_shrinks() {
        // Not a supported use, but it must not panic.
        let mut parser = Parser::new(D());
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$5\r\nab"[..]);
        assert_eq!(parser.parse(&mut buf), Ok(None));
        buf.clear();
        buf.extend_from_slice(b"*1\r\n$1\r\nx\r\n");
        assert_eq!(
            parser.parse(&mut buf).unwrap().map(command_bytes),
            Some(vec![b"x".to_vec()])
        );
        buf.extend_from_slice(b"abcdef");
        assert_eq!(parser.parse(&mut buf), Ok(None));
        buf.clear();
        buf.extend_from_slice(b"PING\n");
        assert!(parser.parse(&mut buf).unwrap().unwrap().is_named("PING"));
    }

    /// Feeds `input` in chunks of the given sizes (cycled), asserting the buffer bound the
    /// callers rely on each time parse() asks for more.
    fn feed_chunks(limits: Limits, input: &[u8], sizes: &[usize]) -> Outcome {
        let mut parts = Vec::new();
        let mut rest = input;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (part, tail) = rest.split_at(size.min(rest.len()));
            parts.push(part);
            rest = tail;
        }
        // feed() checks the stricter bound, without the chunk size.
        feed(limits, &parts)
    }

    fn prop_limits() -> Limits {
        Limits {
            max_args: 4,
            max_bulk_len: 16,
            max_inline_len: 32,
            max_request_len: 64,
            unauthenticated: false,
        }
    }

    fn noise() -> impl Strategy<Value = Vec<u8>> {
        let alphabet = b"*$\r\n\r\n0123456789-: ab\"'\\x".to_vec();
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            proptest::collection::vec(proptest::sample::select(alphabet), 0..300),
        ]
    }

    fn args_strategy(max_len: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..max_len), 1..6)
    }

    fn sizes() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(1usize..40, 1..20)
    }

    fn encode_all(commands: &[Vec<Vec<u8>>]) -> Vec<u8> {
        commands
            .iter()
            .flat_map(|c| encode(&c.iter().map(Vec::as_slice).collect::<Vec<_>>()))
            .collect()
    }

    proptest! {
        #[test]
        fn noise_never_panics_and_chunking_does_not_matter(input in noise(), sizes in sizes()) {
            for limits in [prop_limits(), D()] {
                prop_assert_eq!(feed_chunks(limits, &input, &sizes), feed(limits, &[&input]));
            }
        }

        #[test]
        fn mutated_commands(
            commands in proptest::collection::vec(args_strategy(24), 1..4),
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>(), 0..3u8), 0..4),
            sizes in sizes(),
        ) {
            let mut input = encode_all(&commands);
            for (at, byte, kind) in edits {
                let at = at.index(input.len() + 1);
                match kind {
                    0 if at < input.len() => input[at] = byte,
                    1 => input.insert(at, byte),
                    _ if at < input.len() => { input.remove(at); }
                    _ => {}
                }
            }
            for limits in [prop_limits(), D()] {
                prop_assert_eq!(feed_chunks(limits, &input, &sizes), feed(limits, &[&input]));
            }
        }

        #[test]
        fn round_trip(commands in proptest::collection::vec(args_strategy(100), 1..4), sizes in sizes()) {
            let input = encode_all(&commands);
            let expect = Outcome { commands, error: None, left: 0 };
            prop_assert_eq!(feed_chunks(D(), &input, &sizes), expect);
        }
    }

    #[test]
    fn before_auth_redis_servers_limits_with_its_texts() {
        let limits = D().before_auth();
        err(limits, b"*11\r\n", &[], UnauthenticatedMultibulkLength);
        err(
            limits,
            b"*2\r\n$4\r\nAUTH\r\n$16385\r\n",
            &[],
            UnauthenticatedBulkLength,
        );
        ok(
            limits,
            &encode(&[b"ECHO", &[b'x'; 16384]]),
            &[&[b"ECHO", &[b'x'; 16384]]],
            0,
        );
        // A configured limit stricter than redis-server's keeps its own text.
        let strict = Limits { max_args: 4, ..D() }.before_auth();
        err(strict, b"*5\r\n", &[], TooManyArguments);
        // Once authenticated (the limits replaced between commands), the
        // configured ones alone.
        let mut parser = Parser::new(limits);
        let mut buf = BytesMut::from(&b"*1\r\n$4\r\nPING\r\n*11\r\n"[..]);
        assert!(parser.parse(&mut buf).unwrap().is_some());
        parser.set_limits(D());
        assert_eq!(parser.parse(&mut buf), Ok(None));
    }
}
