"""Raw connections by the hundred: opening them, pipelining a buffer on
each from a thread of its own without ever reading, and reading what comes
back on many at once until the gateway closes them. Every byte sent and
every connection opened is counted (Tally) for the REPORT line."""

import errno
import fcntl
import selectors
import socket
import struct
import termios
import threading
import time

from chaoslib.resp import WAIT, Conn, encode

# A writer stops after this long without a byte taken by the kernel.
STALL = 1.0
# Bound on a connect (the listen backlog may be full).
CONNECT_WAIT = 10.0

# Small threads: hundreds of writers only send.
threading.stack_size(256 * 1024)


class Tally:
    """Connections opened and bytes sent, from any thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.connections = 0
        self.sent = 0

    def connected(self, n=1):
        with self.lock:
            self.connections += n

    def add(self, n):
        with self.lock:
            self.sent += n


class Client(Conn):
    """chaoslib's Conn (one reply at a time), counted in the tally."""

    def __init__(self, addr, tally, timeout=WAIT):
        super().__init__(addr, timeout=timeout)
        self.tally = tally
        tally.connected()

    def send(self, *args):
        data = encode(*args)
        self.sock.sendall(data)
        self.tally.add(len(data))


def connect(addr, tally, timeout=CONNECT_WAIT):
    """A raw socket to `addr` (bounded connect)."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    tally.connected()
    return s


def send_all(sock, data, tally, timeout=WAIT):
    """sendall with a bound; returns the bytes sent (less than len(data)
    when the gateway closed or stopped taking them)."""
    sock.settimeout(timeout)
    view = memoryview(data)
    off = 0
    try:
        while off < len(data):
            n = sock.send(view[off:])
            off += n
            tally.add(n)
    except OSError:
        pass
    return off


def error_name(e):
    if isinstance(e, socket.timeout):
        return "timeout"
    return errno.errorcode.get(e.errno, repr(e)) if e.errno else repr(e)


class Pipeliner(threading.Thread):
    """Sends `payload` up to `times` times on `sock` and never reads. Stops
    when a send makes no progress for STALL seconds (`outcome` 'stalled'),
    when the socket fails (the errno's name, e.g. ECONNRESET: the gateway
    closed it), or when all was sent ('done'). Bounded: every send waits at
    most STALL."""

    def __init__(self, sock, payload, times, tally):
        super().__init__(daemon=True)
        self.sock = sock
        self.payload = payload
        self.times = times
        self.tally = tally
        self.sent = 0
        self.outcome = None
        self.ended_at = None

    def run(self):
        view = memoryview(self.payload)
        self.sock.settimeout(STALL)
        try:
            for _ in range(self.times):
                off = 0
                while off < len(view):
                    n = self.sock.send(view[off:])
                    off += n
                    self.sent += n
                    self.tally.add(n)
            self.outcome = "done"
        except socket.timeout:
            self.outcome = "stalled"
        except OSError as e:
            self.outcome = error_name(e)
        self.ended_at = time.monotonic()


TCP_ESTABLISHED = 1


def tcp_state(sock):
    """The kernel's TCP state of `sock` (tcpi_state): 1 established, 8
    CLOSE_WAIT (the gateway sent FIN), 7 CLOSE (reset)."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return 0


def unsent(sock):
    """Bytes still in `sock`'s send queue (SIOCOUTQ): sent by us, not yet
    acknowledged by the gateway's kernel."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return -1


def join_all(threads, timeout):
    """Joins every thread within one overall bound; returns those still
    running after it."""
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t for t in threads if t.is_alive()]


def outcomes(items, attr="outcome"):
    """{value: count} of an attribute, for a compact note."""
    counts = {}
    for it in items:
        v = getattr(it, attr)
        counts[v] = counts.get(v, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


class Reading:
    """What came back on one socket: `data`; `end` is 'eof' or 'reset' (the
    gateway closed it), 'complete' (`complete(data)` said the reply is
    whole; the socket stays open), 'open' (nothing more within the bound)
    or an errno name; `at` the monotonic time of the end."""

    __slots__ = ("data", "end", "at")

    def __init__(self):
        self.data = b""
        self.end = "open"
        self.at = None

    @property
    def closed(self):
        return self.end in ("eof", "reset")


def read_until_closed(socks, timeout, complete=None):
    """Reads every socket of `socks` (None entries are skipped) at once,
    with epoll, until the gateway closes it, `complete(data)` is true, or
    `timeout` seconds have passed (the bound). Returns one Reading per
    socket, in order."""
    readings = [Reading() for _ in socks]
    sel = selectors.DefaultSelector()
    pending = 0
    for i, s in enumerate(socks):
        if s is None:
            readings[i].end = "no connection"
            continue
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
        pending += 1
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for key, _ in sel.select(min(left, 0.5)):
            i, s, r = key.data, key.fileobj, readings[key.data]
            try:
                chunk = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionResetError:
                r.end = "reset"
            except OSError as e:
                r.end = error_name(e)
            else:
                if chunk:
                    r.data += chunk
                    if not (complete and complete(r.data)):
                        continue
                    r.end = "complete"
                else:
                    r.end = "eof"
            r.at = time.monotonic()
            sel.unregister(s)
            pending -= 1
    sel.close()
    return readings


def close_all(socks):
    for s in socks:
        if s is not None:
            try:
                s.close()
            except OSError:
                pass
