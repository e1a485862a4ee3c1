"""Requests that never end, by the hundred: an AUTH announcing a 1 MB
argument before authentication (refused at once), and a 15 KB request
within the unauthenticated limits left unfinished (closed at auth_timeout)."""

import time

from chaoslib.report import check, note

from .flood import close_all, connect, read_until_closed, send_all


def flood(lab, gw, n, payload):
    """`n` connections, each sending `payload` once; returns (sockets, send
    times). A connection the gateway closed while it was sending keeps what
    it had sent (read_until_closed then sees the close)."""
    socks, sent_at = [], []
    for _ in range(n):
        s = connect(gw.addr, lab.tally)
        send_all(s, payload, lab.tally, timeout=10.0)  # bounded
        socks.append(s)
        sent_at.append(time.monotonic())
    return socks, sent_at


def tally_readings(readings, expected):
    exact = sum(1 for r in readings if r.data == expected and r.closed)
    ends = {}
    for r in readings:
        ends[r.end] = ends.get(r.end, 0) + 1
    others = {}
    for r in readings:
        if r.data != expected:
            others[r.data[:80]] = others.get(r.data[:80], 0) + 1
    return exact, ends, others


def unfinished_auth(lab):
    """500 connections each send `*2 $4 AUTH $1000000` and 10,000 bytes of
    it: each must get exactly `-ERR Protocol error: unauthenticated bulk
    length` and be closed; RSS growth < 50 MiB."""
    n = 500
    expected = b"-ERR Protocol error: unauthenticated bulk length\r\n"
    gw = lab.gateway().start()
    socks, _ = flood(lab, gw, n, b"*2\r\n$4\r\nAUTH\r\n$1000000\r\n" + b"a" * 10_000)
    # Bound: the reply is due as soon as the length is read; 30 s is ample.
    readings = read_until_closed(socks, 30.0)
    close_all(socks)
    exact, ends, others = tally_readings(readings, expected)
    check("unfinished-auth", exact == n,
          f"{exact} of {n} got exactly {expected!r} and were closed; ends {ends}"
          + (f"; other replies {others}" if others else ""))
    check("unfinished-auth", gw.growth_mib() < 50, f"{gw.rss_detail()} (limit: growth < 50 MiB)")


def unfinished_request(lab):
    """500 connections each send an unfinished 15 KB request (`*2 $4 ECHO
    $16000` and 15,000 bytes) with auth_timeout = 3s: each must get `-ERR
    auth timeout` and be closed; RSS growth < 100 MiB."""
    n, auth_timeout = 500, 3
    expected = b"-ERR auth timeout\r\n"
    gw = lab.gateway(auth_timeout=f"{auth_timeout}s").start()
    socks, sent_at = flood(lab, gw, n, b"*2\r\n$4\r\nECHO\r\n$16000\r\n" + b"e" * 15_000)
    # Bound: auth_timeout after the last connection, plus 30 s.
    readings = read_until_closed(socks, auth_timeout + 30.0)
    close_all(socks)
    exact, ends, others = tally_readings(readings, expected)
    waits = [r.at - t for r, t in zip(readings, sent_at) if r.at is not None]
    timing = f"closed {min(waits):.1f} to {max(waits):.1f}s after sending" if waits else "none closed"
    check("unfinished-request", exact == n,
          f"{exact} of {n} got exactly {expected!r} and were closed ({timing}, auth_timeout {auth_timeout}s); "
          f"ends {ends}" + (f"; other replies {others}" if others else ""))
    check("unfinished-request", gw.growth_mib() < 100, f"{gw.rss_detail()} (limit: growth < 100 MiB)")
    note(f"connections open afterwards per /metrics: {gw.connections()}")
