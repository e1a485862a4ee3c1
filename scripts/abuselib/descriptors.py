"""File descriptors: the gateway refuses to start when RLIMIT_NOFILE cannot
hold max_connections, and out of descriptors at run time it still answers
every new client (+PONG, `max number of clients reached`, or a close),
never leaving one hanging, while the connections it has keep working."""

import os
import subprocess
import time

from chaoslib.report import check, note
from chaoslib.resp import Closed, encode

from .flood import Client, close_all, connect, read_until_closed, send_all

MAX_CLIENTS_REPLY = b"-ERR max number of clients reached\r\n"
CONNECTIONS = 300
HEADROOM = 50
# Bound on the whole flood's replies (the gateway refuses one client per
# reserve-descriptor cycle, each well under a millisecond).
REPLY_WAIT = 30.0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def nofile_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return line.split()[3:5]
    return None


def refuses_to_start(lab):
    gw = lab.gateway(tag="gateway-nofile-1024", prefix=["prlimit", "--nofile=1024:1024"], max_connections=10000)
    gw.launch()
    state = gw.wait_ready_or_exit(30.0)  # bounded
    lines = [ln for ln in gw.log_text().splitlines() if "RLIMIT_NOFILE" in ln]
    if state != "exited":
        gw.stop()
    check("descriptors", state == "exited" and gw.exit_code != 0 and bool(lines),
          f"under prlimit --nofile=1024:1024 with max_connections = 10000: {state}, exit status {gw.exit_code}; "
          + (f"it says: {lines[0][-300:]}" if lines else f"no line names RLIMIT_NOFILE (log {gw.log_path})"))


def runs_out(lab):
    # auth_timeout far beyond the flood: the connections answered +PONG keep
    # their descriptors (unauthenticated, they would be closed after 5 s and
    # make room for more).
    gw = lab.gateway(prefix=["prlimit", "--nofile=2048:2048"], max_connections=1500, max_subscribers=20,
                     auth_timeout="300s").start()
    before = Client(gw.addr, lab.tally, timeout=30)
    r = (before.call("AUTH", lab.env.dsn("pub")), before.call("SET", "k", "before-the-limit"))
    if not check("descriptors", r == (("+", "OK"), ("+", "OK")), f"a connection opened before the limit: {r}"):
        return
    fds = open_fds(gw.pid)
    limit = fds + HEADROOM
    subprocess.run(["prlimit", "--pid", str(gw.pid), f"--nofile={limit}:{limit}"], check=True, timeout=10)
    note(f"the gateway has {fds} descriptors open; RLIMIT_NOFILE lowered at run time to {nofile_limit(gw.pid)}")

    socks, connect_failures = [], []
    started = time.monotonic()
    for _ in range(CONNECTIONS):
        try:
            s = connect(gw.addr, lab.tally, timeout=5.0)  # bounded
        except OSError as e:
            connect_failures.append(repr(e))
            socks.append(None)
            continue
        send_all(s, encode("PING"), lab.tally, timeout=5.0)
        socks.append(s)
    readings = read_until_closed(socks, REPLY_WAIT,
                                 complete=lambda d: d == b"+PONG\r\n")
    pong = sum(1 for r in readings if r.end == "complete")
    refused = sum(1 for r in readings if r.data == MAX_CLIENTS_REPLY and r.closed)
    closed = sum(1 for r in readings if r.data == b"" and r.closed)
    hung = sum(1 for r in readings if r.end == "open")
    odd = [(r.data[:80], r.end) for r in readings
           if r.end not in ("complete", "open", "no connection") and not (r.closed and r.data in (b"", MAX_CLIENTS_REPLY))]
    fds_now = open_fds(gw.pid)
    ends = [r.at for r in readings if r.at is not None]
    took = f"the last answered {max(ends) - started:.1f}s after the first connect" if ends else "none answered"
    check("descriptors", hung == 0 and not odd and not connect_failures and refused >= 200,
          f"{CONNECTIONS} connections sending PING: {pong} +PONG, {refused} refused with "
          f"{MAX_CLIENTS_REPLY!r}, {closed} closed without a word, {hung} hanging after {REPLY_WAIT:.0f}s, "
          f"{len(connect_failures)} connects failed {connect_failures[:2]}, others {odd[:3]} "
          f"(needed: at least 200 refused, none hanging); {took}; gateway fds {fds_now} of {limit} "
          f"({HEADROOM} were free before the flood)")
    try:
        r = (before.call("PING"), before.call("SET", "k", "after-the-limit"))
    except (OSError, Closed) as e:
        r = repr(e)
    check("descriptors", r == (("+", "PONG"), ("+", "OK")),
          f"the connection opened before the limit, with the descriptors used up: PING, SET: {r}")
    close_all(socks)
    before.close()
    check("descriptors", gw.alive(), "the gateway process survived running out of descriptors")
    note(gw.rss_detail())


def descriptors(lab):
    """First: under `prlimit --nofile=1024:1024` with max_connections =
    10000 the gateway refuses to start, naming RLIMIT_NOFILE. Then: a
    gateway under 2048 whose limit is lowered at run time to its open
    descriptors + 50 faces 300 connections sending PING."""
    refuses_to_start(lab)
    runs_out(lab)
