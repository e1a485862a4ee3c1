"""A raw RESP connection to the gateway. Raw sockets rather than redis-py:
the checks time each reply and keep several commands in flight per
connection."""

import json
import socket

# Bound for anything expected to happen "soon" (a recovery, a refresh, a drain).
WAIT = 30.0


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Closed(Exception):
    """The gateway closed the connection."""


class Conn:
    """Replies come back as ('+'|'-'|':', text) or ('$', bytes|None) or
    ('*', [replies])."""

    def __init__(self, addr, timeout=WAIT):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = bytearray()

    def send(self, *args):
        self.sock.sendall(encode(*args))

    def call(self, *args):
        self.send(*args)
        return self.reply()

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            self._fill()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed()
        self.buf += chunk

    def reply(self):
        line = self._line()
        kind, rest = chr(line[0]), line[1:]
        if kind in "+-:":
            return (kind, rest.decode())
        if kind == "$":
            n = int(rest)
            if n < 0:
                return ("$", None)
            while len(self.buf) < n + 2:
                self._fill()
            data = bytes(self.buf[:n])
            del self.buf[: n + 2]
            return ("$", data)
        if kind == "*":
            return ("*", [self.reply() for _ in range(max(int(rest), 0))])
        raise ValueError(f"unexpected reply line {line!r}")

    def close(self):
        self.sock.close()


def auth(addr, dsn):
    c = Conn(addr)
    r = c.call("AUTH", dsn)
    if r != ("+", "OK"):
        raise RuntimeError(f"AUTH {dsn}: {r}")
    return c


def mget_json(conn):
    """One MGET json: (decoded messages, None), or (None, the error reply)."""
    kind, items = conn.call("MGET", "json")
    if kind != "*":
        return None, (kind, items)
    return [json.loads(data) for _, data in items], None
