"""Clients that never read their replies (write_timeout): hundreds of
unauthenticated connections pipelining ECHO, and max_connections' worth of
connections pipelining HELLO 3 that must not keep a real client out."""

import time

from chaoslib.report import check, note
from chaoslib.resp import Closed, encode

from .flood import (TCP_ESTABLISHED, Client, Pipeliner, close_all, connect, join_all, outcomes, read_until_closed,
                    tcp_state, unsent)

MAX_CLIENTS_REPLY = b"-ERR max number of clients reached\r\n"
# auth_timeout far beyond every bound below: only write_timeout can close the
# attackers in time, so that is what the scenarios test.
LONG_AUTH_TIMEOUT = "300s"


def wait_connections(lab, gw, n, timeout=20.0):
    """Bounded wait until /metrics counts `n` open connections."""
    ok, value, took = gw.wait_metric("databus_connections", lambda v: v == n, timeout)
    note(f"databus_connections = {value} after {took:.1f}s (waited for {n})")
    return ok


# Attack rounds at most in unread-echo (see below), each bounded.
ECHO_ROUNDS = 5


def unread_echo(lab):
    """500 unauthenticated connections, each pipelining `ECHO <16 KiB>` (up
    to 16 MiB) and never reading. write_timeout = 2s must close them all
    (databus_connections back to 0), peak RSS growth < 300 MiB, and a fresh
    client then gets +PONG.

    On loopback the kernel's socket buffers hold megabytes (the gateway's
    send buffer grows to tcp_wmem's 4 MiB): a connection whose writer gave
    up while the gateway was busy elsewhere (1 s without progress on a
    loaded two-core machine) may see the gateway take every byte it sent
    and answer it all into those buffers. The gateway then has no write
    pending, so write_timeout cannot apply; such a connection is only idle.
    Those connections, still established with nothing left unsent
    (SIOCOUTQ 0), are attacked again, in up to 5 rounds."""
    write_timeout = 2
    n, per_conn_mib = 500, 16
    gw = lab.gateway(write_timeout=f"{write_timeout}s", auth_timeout=LONG_AUTH_TIMEOUT).start()
    payload = encode("ECHO", b"e" * 16384) * 64  # about 1 MiB per send round
    socks = [connect(gw.addr, lab.tally) for _ in range(n)]
    wait_connections(lab, gw, n)
    started = time.monotonic()
    attacked = list(range(n))
    writers = []
    closed, value, took = False, None, 0.0
    for round_ in range(1, ECHO_ROUNDS + 1):
        these = [Pipeliner(socks[i], payload, per_conn_mib, lab.tally) for i in attacked]
        for w in these:
            w.start()
        writers += these
        # Bound: each writer stops after 1 s without progress (16 MiB at most).
        still = join_all(these, 60.0)
        # A connection whose replies stopped moving is closed write_timeout
        # later: wait that, plus a margin (bounded).
        closed, value, took = gw.wait_metric("databus_connections", lambda v: v == 0, write_timeout + 5.0)
        note(f"round {round_}: {len(these)} writers {outcomes(these)}, {len(still)} still running; "
             f"databus_connections {value} {time.monotonic() - started:.1f}s after the attack began")
        if closed:
            break
        attacked = [i for i, s in enumerate(socks) if tcp_state(s) == TCP_ESTABLISHED and unsent(s) == 0]
        blocked = sum(1 for s in socks if tcp_state(s) == TCP_ESTABLISHED and unsent(s) > 0)
        note(f"  still established: {len(attacked)} with every byte taken by the gateway (its replies in "
             f"kernel buffers, no write pending: attacked again), {blocked} with bytes unsent")
        if not attacked:
            break
    if not closed:
        # Bound: the connections left have writes pending; write_timeout plus 30 s.
        closed, value, took = gw.wait_metric("databus_connections", lambda v: v == 0, write_timeout + 30.0)
    seen_closed = sum(1 for s in socks if tcp_state(s) != TCP_ESTABLISHED)
    elapsed = time.monotonic() - started
    check("unread-echo", closed,
          f"every one of the {n} connections closed by the gateway: databus_connections {value} "
          f"{elapsed:.1f}s after the attack began, in {round_} round(s); {seen_closed} of {n} client sockets "
          f"see the close (write_timeout {write_timeout}s, auth_timeout {LONG_AUTH_TIMEOUT})")
    note(f"writers: {outcomes(writers)}; {sum(w.sent for w in writers) / 2**20:.1f} MiB sent")
    close_all(socks)
    check("unread-echo", gw.growth_mib() < 300, f"{gw.rss_detail()} (limit: growth < 300 MiB)")
    fresh = Client(gw.addr, lab.tally, timeout=10)
    try:
        r = fresh.call("PING")
    except (OSError, Closed) as e:
        r = repr(e)
    fresh.close()
    check("unread-echo", r == ("+", "PONG"), f"a fresh client's PING afterwards: {r}")


def try_real_client(lab, gw, dsn):
    """One attempt of a real client: AUTH then PING. Returns ('ok', None) or
    (what happened, the reply). Bounded by the connection's 3 s timeout."""
    try:
        c = Client(gw.addr, lab.tally, timeout=3)
    except OSError as e:
        return "connect failed", repr(e)
    try:
        r = c.call("AUTH", dsn)
        if r != ("+", "OK"):
            return "auth", r
        r = c.call("PING")
        return ("ok", r) if r == ("+", "PONG") else ("ping", r)
    except (OSError, Closed) as e:
        return "closed", repr(e)
    finally:
        c.close()


def unread_hello(lab):
    """max_connections = 50; 50 connections pipeline `HELLO 3` and never
    read. Within write_timeout + 10 s a real client must get a slot (AUTH
    +OK, PING +PONG)."""
    write_timeout, n = 5, 50
    gw = lab.gateway(max_connections=n, write_timeout=f"{write_timeout}s", auth_timeout=LONG_AUTH_TIMEOUT).start()
    hogs = [connect(gw.addr, lab.tally) for _ in range(n)]
    full = wait_connections(lab, gw, n)
    probe = connect(gw.addr, lab.tally)
    [reading] = read_until_closed([probe], 10.0)  # bounded
    probe.close()
    check("unread-hello", full and reading.data == MAX_CLIENTS_REPLY and reading.closed,
          f"the {n} slots are taken: a 51st connection got {reading.data!r} and {reading.end}")
    payload = encode("HELLO", "3") * 4096  # 90 KB per send round
    writers = [Pipeliner(s, payload, 1000, lab.tally) for s in hogs]
    started = time.monotonic()
    for w in writers:
        w.start()
    bound = write_timeout + 10
    dsn = lab.env.dsn("pub")
    attempts, last, got_in = 0, None, None
    # Bounded: one attempt every 0.25 s (each at most a few seconds) until
    # write_timeout + 10 s after the attack began.
    while time.monotonic() - started < bound:
        attempts += 1
        what, last = try_real_client(lab, gw, dsn)
        if what == "ok":
            got_in = time.monotonic() - started
            break
        time.sleep(0.25)
    check("unread-hello", got_in is not None,
          f"a real client got a slot (AUTH +OK, PING +PONG) {got_in:.1f}s after the attack began, "
          f"attempt {attempts} (bound: write_timeout {write_timeout}s + 10s)" if got_in is not None else
          f"no slot within {bound}s: {attempts} attempts, the last: {last}")
    still = join_all(writers, 10.0)
    note(f"hogs' writers: {outcomes(writers)}; {len(still)} still running; "
         f"{sum(w.sent for w in writers) / 2**20:.1f} MiB sent")
    close_all(hogs)
    note(gw.rss_detail())
