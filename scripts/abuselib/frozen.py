"""A frozen broker under publishers that pipeline large SETs and never read:
memory must stay bounded by max_in_flight_bytes and the per-connection
budgets, and the gateway must serve a fresh publisher once the broker is
back."""

import os
import signal
import threading
import time

from chaoslib.report import check, note
from chaoslib.resp import Closed, encode

from .flood import Client, Pipeliner, join_all, outcomes

PUBLISHERS = 40
VALUE_BYTES = 900_000
SETS_EACH = 2000
PRODUCE_TIMEOUT_S = 30


def kafka_pid(env):
    """The single node's pid from its kafka.pid (as chaos.sh finds it),
    checked against /proc so that a reused pid is never signalled."""
    with open(os.path.join(env.kafka_node, "kafka.pid")) as f:
        pid = int(f.read().strip())
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        if b"kafka.Kafka" not in f.read():
            raise RuntimeError(f"pid {pid} of {env.kafka_node}/kafka.pid is not a Kafka node")
    return pid


class Attacker(threading.Thread):
    """AUTHs as a publisher, then pipelines SETs with a Pipeliner of its own
    (never reading)."""

    def __init__(self, lab, gw, payload):
        super().__init__(daemon=True)
        self.lab, self.gw, self.payload = lab, gw, payload
        self.client = None
        self.pipeliner = None
        self.failure = None

    def run(self):
        try:
            self.client = Client(self.gw.addr, self.lab.tally, timeout=30)  # bounded AUTH
            r = self.client.call("AUTH", self.lab.env.dsn("pub"))
            if r != ("+", "OK"):
                self.failure = f"AUTH: {r}"
                return
        except (OSError, Closed) as e:
            self.failure = f"AUTH: {e!r}"
            return
        self.pipeliner = Pipeliner(self.client.sock, self.payload, SETS_EACH, self.lab.tally)
        self.pipeliner.run()  # in this thread


def fresh_publisher_set(lab, gw, bound):
    """A new publisher connection SETs a small value, one at a time (another
    SET after each error reply), until +OK or `bound` seconds (the bound).
    Returns (seconds to +OK or None, replies seen)."""
    started = time.monotonic()
    seen = []
    while time.monotonic() - started < bound:
        left = bound - (time.monotonic() - started)
        try:
            c = Client(gw.addr, lab.tally, timeout=max(1.0, left))
            r = c.call("AUTH", lab.env.dsn("pub"))
            while r == ("+", "OK") and time.monotonic() - started < bound:
                c.sock.settimeout(max(0.5, bound - (time.monotonic() - started)))
                r = c.call("SET", "fresh", "after-thaw")
                if r == ("+", "OK"):
                    c.close()
                    return time.monotonic() - started, seen
                seen.append(r)
            seen.append(r)
            c.close()
        except (OSError, Closed) as e:
            seen.append(repr(e))
        time.sleep(0.5)
    return None, seen


def frozen_broker(lab):
    """The Kafka node SIGSTOPped; 40 publishers pipeline `SET k <900 KB>` (up
    to 2,000 each) and never read. Peak RSS growth < 700 MiB, the gateway
    survives, and after SIGCONT a fresh publisher gets +OK within 60 s."""
    gw = lab.gateway(produce_timeout=f"{PRODUCE_TIMEOUT_S}s", delivery_timeout="60s", write_timeout="60s").start()
    warm = Client(gw.addr, lab.tally, timeout=30)
    r1 = warm.call("AUTH", lab.env.dsn("pub"))
    r2 = warm.call("SET", "warm", "before-freeze")
    warm.close()
    if not check("frozen-broker", (r1, r2) == (("+", "OK"), ("+", "OK")),
                 f"baseline SET before the freeze: {r1} {r2}"):
        return

    pid = kafka_pid(lab.env)
    payload = encode("SET", "k", b"v" * VALUE_BYTES)
    attackers = [Attacker(lab, gw, payload) for _ in range(PUBLISHERS)]
    os.kill(pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    note(f"Kafka node (pid {pid}) frozen with SIGSTOP")
    try:
        for a in attackers:
            a.start()
        # Bound: each writer stops after 1 s without progress; 180 s caps a
        # trickle that would keep one going.
        still = join_all(attackers, 180.0)
        stalled_at = time.monotonic()
        pipes = [a.pipeliner for a in attackers if a.pipeliner]
        note(f"attackers: {len(pipes)} authenticated, failures {[a.failure for a in attackers if a.failure][:3]}; "
             f"writers {outcomes(pipes)}, {len(still)} still running; "
             f"{sum(p.sent for p in pipes) / 2**20:.0f} MiB sent in {stalled_at - frozen_at:.1f}s; "
             f"{gw.rss_detail()}")
        # Stay frozen past produce_timeout, so that the SETs waiting for room
        # are answered `-ERR kafka` (into sockets nobody reads) meanwhile.
        hold = max(PRODUCE_TIMEOUT_S + 5 - (time.monotonic() - frozen_at), 5.0)
        time.sleep(hold)
        note(f"after {time.monotonic() - frozen_at:.0f}s frozen: {gw.rss_detail()}, "
             f"threads {gw.status().get('Threads')}")
    finally:
        os.kill(pid, signal.SIGCONT)
    note("Kafka node thawed with SIGCONT")
    alive = gw.alive()
    took, seen = fresh_publisher_set(lab, gw, 60.0)
    check("frozen-broker", took is not None,
          f"after SIGCONT a fresh publisher got +OK to a SET in {took:.1f}s"
          + (f" (before it: {seen[:3]})" if seen else "")
          if took is not None else f"no +OK within 60s after SIGCONT: {seen[:5]}")
    check("frozen-broker", alive and gw.alive(), "the gateway process survived" if alive and gw.alive()
          else f"the gateway process died (exit status {gw.proc.poll()}): see {gw.log_path}")
    check("frozen-broker", gw.growth_mib() < 700,
          f"{gw.rss_detail()} (limit: growth < 700 MiB: max_in_flight_bytes 256 MiB + 40 small budgets)")
    for a in attackers:
        if a.client:
            a.client.close()
