#!/usr/bin/env python3
"""Traffic and checks for scripts/chaos.sh (issue #5, items 7 and 8).

chaos.sh starts MariaDB, tansu and one gateway of its own, then runs

    chaos.py pause|restart|mysql --work DIR

which reads DIR/chaos.env (ports, pids, settings) and causes the faults by
calling back `chaos.sh broker-pause|broker-resume|broker-stop|broker-start|
mysql-stop|mysql-start DIR`. Every check prints one `PASS name: detail` or
`FAIL name: detail` line (`SKIP` when it cannot apply); the exit status is 1 if
any failed. Every wait is bounded (the constants below); all traffic goes to
127.0.0.1. Raw sockets rather than redis-py: the checks time each reply and
keep several commands in flight per connection.
"""

import argparse
import collections
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
# Extra time a reply may take beyond produce_timeout: librdkafka checks for
# timed-out records about once a second, and this machine is small.
MARGIN = 1.5
# How long the broker stays away: long enough that SETs sent after its start
# fail for good (produce_timeout) before it is back, short enough that a
# paused broker's group members keep their sessions (chaos.sh explains why).
DOWN_FOR = 7.0
# Bound for anything expected to happen "soon" (a recovery, a refresh, a drain).
WAIT = 30.0

RESULTS = []


def check(name, ok, detail=""):
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""), flush=True)
    RESULTS.append((name, ok))
    return ok


def skip(name, why):
    print(f"SKIP {name}: {why}", flush=True)


def note(text):
    print(f"     {text}", flush=True)


# ---------------------------------------------------------------- RESP


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Closed(Exception):
    pass


class Conn:
    """A raw RESP connection; replies come back as ('+'|'-'|':', text) or
    ('$', bytes|None) or ('*', [replies])."""

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


# ---------------------------------------------------------------- environment


class Env:
    def __init__(self, work):
        self.work = work
        values = {}
        with open(os.path.join(work, "chaos.env")) as f:
            for line in f:
                if "=" in line:
                    k, v = line.strip().split("=", 1)
                    values[k.removeprefix("export ")] = v
        self.addr = values["GATEWAY_ADDR"]
        self.metrics = values["METRICS_ADDR"]
        self.gateway_pid = int(values["GATEWAY_PID"])
        self.log = values["GATEWAY_LOG"]
        self.produce_timeout = float(values["PRODUCE_TIMEOUT_S"])
        self.poll_timeout = float(values["POLL_TIMEOUT_S"])
        self.refresh = float(values["REFRESH_S"])
        self.topic = values["TOPIC"]
        self.partitions = int(values["PARTITIONS"])
        self.mysql_port = values["MYSQL_PORT"]
        # Whether the broker's storage outlives its process (s3:// on moto)
        # or goes with it (memory://).
        self.durable_broker = not values.get("TANSU_STORAGE", "memory://").startswith("memory://")

    def dsn(self, group, role, key="app_key1", secret="app_secret1"):
        return f"{key}:{secret}@{group}/topic={self.topic}&role={role}"

    def fault(self, what):
        """Runs `chaos.sh <what> DIR`; returns when it is done."""
        started = time.monotonic()
        subprocess.run([os.path.join(HERE, "chaos.sh"), what, self.work], check=True)
        note(f"{what} took {time.monotonic() - started:.1f}s")

    def log_count(self, needle):
        with open(self.log, errors="replace") as f:
            return f.read().count(needle)

    def wait_log(self, needle, count, timeout=WAIT):
        """Waits until the gateway log holds `needle` `count` times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_count(needle) >= count:
                return True
            time.sleep(0.1)
        return False

    def gateway_alive(self):
        try:
            os.kill(self.gateway_pid, 0)
            return True
        except OSError:
            return False

    def readyz(self):
        """(status, body as dict) of GET /readyz, or None if nothing serves HTTP
        at the metrics address."""
        try:
            with urllib.request.urlopen(f"http://{self.metrics}/readyz", timeout=5) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            return None
        try:
            return status, json.loads(body)
        except ValueError:
            return status, {"not JSON": body[:200].decode(errors="replace")}


def mget_json(conn):
    """One MGET json: the list of decoded messages, or the error reply."""
    kind, items = conn.call("MGET", "json")
    if kind != "*":
        return None, (kind, items)
    return [json.loads(data) for _, data in items], None


# ---------------------------------------------------------------- item 7: the broker


class Publisher:
    """One connection that keeps up to `window` SETs in flight (a writer and a
    reader thread), each timed from send to reply. Values are `<name>-<n>`."""

    def __init__(self, addr, dsn, name, window=20, rate=200):
        self.conn = auth(addr, dsn)
        self.name = name
        self.window = threading.Semaphore(window)
        self.interval = 1.0 / rate
        self.sent = collections.deque()  # (value, send time), not yet answered
        self.done = []  # (value, send time, reply time, reply)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.failure = None
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.reader = threading.Thread(target=self._read, daemon=True)

    def start(self):
        self.writer.start()
        self.reader.start()

    def _write(self):
        n = 0
        try:
            while not self.stopping.is_set():
                if not self.window.acquire(timeout=0.1):
                    continue
                value = f"{self.name}-{n}"
                with self.lock:
                    self.sent.append((value, time.monotonic()))
                self.conn.send("SET", f"k{n % 10}", value)
                n += 1
                time.sleep(self.interval)
        except OSError as e:
            self.failure = f"write: {e}"

    def _read(self):
        try:
            while True:
                with self.lock:
                    pending = bool(self.sent)
                if not pending:
                    if self.stopping.is_set() and not self.writer.is_alive():
                        return
                    time.sleep(0.005)
                    continue
                reply = self.conn.reply()
                now = time.monotonic()
                with self.lock:
                    value, sent = self.sent.popleft()
                    self.done.append((value, sent, now, reply))
                self.window.release()
        except (OSError, Closed) as e:
            self.failure = f"read: {e!r}"

    def stop(self):
        """Stops sending and waits (bounded) for the replies still due."""
        self.stopping.set()
        self.writer.join(WAIT)
        self.reader.join(WAIT)

    def replies_since(self, t):
        with self.lock:
            return [d for d in self.done if d[1] >= t]


def consume_until(conn, want, timeout=WAIT):
    """MGETs (json) until every value in `want` was delivered. Returns
    (messages, error reply or None)."""
    got = []
    seen = set()
    deadline = time.monotonic() + timeout
    while not want <= seen and time.monotonic() < deadline:
        try:
            messages, error = mget_json(conn)
        except (OSError, Closed) as e:
            return got, f"connection lost: {e!r}"
        if error:
            return got, error
        got.extend(messages)
        seen.update(m["value"] for m in messages)
    return got, None


def values_of(messages):
    return {m["value"] for m in messages}


def broker(env, mode):
    """Item 7. mode "pause": SIGSTOP, then SIGCONT; the broker keeps its state,
    so committed offsets and records can be checked exactly. mode "restart":
    SIGTERM, then a new process on the same port. On durable storage (s3://)
    the new broker has the topic, the records and the committed offsets, as a
    restarted Kafka broker has its disks, and the same checks apply as after a
    pause. On memory storage it is an empty broker (the topic is created
    again), as after losing a broker's disks: the resume is not checkable."""
    addr = env.addr
    tag = f"[{mode}]"
    group = f"chaos_{mode}"  # commits before the outage, resumes after it
    live_group = f"chaos_{mode}_live"  # stays connected throughout

    # -- before: records, and a group with known committed offsets
    p = auth(addr, env.dsn(group, "pub"))
    pre = [f"{mode}-pre-{i}" for i in range(300)]
    # One SET at a time, so each record is a batch of its own: tansu 0.6.0
    # answers a fetch from an offset inside a record batch with the batches
    # after it only (tansu-storage dynostore.rs, `offsets.split_off(&offset)`),
    # so a group resuming mid-batch would skip the rest of that batch there.
    replies = [p.call("SET", f"k{i % 10}", v) for i, v in enumerate(pre)]
    p.close()
    check(f"{tag} baseline: 300 SETs answered +OK", all(r == ("+", "OK") for r in replies))

    sub = auth(addr, env.dsn(group, "sub"))
    # Values that are not JSON come back as JSON strings.
    got, error = consume_until(sub, set(pre))
    if not check(f"{tag} baseline: the group consumes the 300 records", error is None and set(pre) <= values_of(got),
                 f"{len(set(pre) & values_of(got))} of 300, error {error}"):
        return
    # Commit the middle record of each partition: what follows it was
    # delivered but not committed, so a resume from the committed offset
    # (not from the delivered position, nor earliest or latest) shows.
    by_partition = collections.defaultdict(set)
    for m in got:
        if m["value"] in pre:
            by_partition[m["partition"]].add(m["offset"])
    committed = {}
    for part, offsets in sorted(by_partition.items()):
        offsets = sorted(offsets)
        committed[part] = offsets[len(offsets) // 2]
        sub.send("SET", part, committed[part])
    commit_replies = [sub.reply() for _ in committed]
    left = env.log_count("consumer member left")
    sub.call("QUIT")
    sub.close()
    # The member sends its commits synchronously as it leaves.
    check(f"{tag} baseline: commits sent (the member left its group)",
          all(r == ("+", "OK") for r in commit_replies) and env.wait_log("consumer member left", left + 1),
          f"committed {committed}")

    live = auth(addr, env.dsn(live_group, "sub"))
    got, error = consume_until(live, set(pre))
    check(f"{tag} baseline: a second group's subscriber (kept connected throughout) consumes them",
          error is None and set(pre) <= values_of(got))
    last = {}
    for m in got:
        last[m["partition"]] = max(last.get(m["partition"], -1), m["offset"])
    for part, offset in last.items():
        live.call("SET", part, offset)

    # -- load, then the fault
    pubs = [Publisher(addr, env.dsn(group, "pub"), f"{mode}-load{i}") for i in range(4)]
    for pub in pubs:
        pub.start()
    time.sleep(2)  # the load runs against a healthy broker first
    try:
        env.fault("broker-stop" if mode == "restart" else "broker-pause")
        t_down = time.monotonic()

        # The connected subscriber's long polls keep answering while the
        # broker is away (empty, or what librdkafka had fetched already).
        slowest_mget = 0.0
        mget_errors = []
        while time.monotonic() < t_down + DOWN_FOR:
            started = time.monotonic()
            _, error = mget_json(live)
            slowest_mget = max(slowest_mget, time.monotonic() - started)
            if error:
                mget_errors.append(error)
                break
        check(f"{tag} broker away: the connected subscriber's MGETs answer within poll_timeout",
              not mget_errors and slowest_mget <= env.poll_timeout + MARGIN,
              f"slowest {slowest_mget:.2f}s (poll_timeout {env.poll_timeout}s), errors {mget_errors}")

        env.fault("broker-start" if mode == "restart" else "broker-resume")
        t_up = time.monotonic()
    except subprocess.CalledProcessError as e:
        for pub in pubs:
            pub.stop()
        check(f"{tag} fault injection", False, str(e))
        return

    # -- recovery: the same gateway process, the same connections
    recovered = {}
    deadline = t_up + WAIT
    while len(recovered) < len(pubs) and time.monotonic() < deadline:
        for pub in pubs:
            if pub.name in recovered:
                continue
            after = pub.replies_since(t_up)
            # Recovered: the last 50 replies, all sent after t_up, are +OK.
            if len(after) >= 50 and all(r[3] == ("+", "OK") for r in after[-50:]):
                first_ok = next(r for r in after if r[3] == ("+", "OK"))
                recovered[pub.name] = first_ok[2] - t_up
        time.sleep(0.2)
    for pub in pubs:
        pub.stop()

    answered = [d for pub in pubs for d in pub.done]
    unanswered = sum(len(pub.sent) for pub in pubs)
    failures = [pub.failure for pub in pubs if pub.failure]
    check(f"{tag} nothing hangs: every SET answered, no connection failed",
          unanswered == 0 and not failures, f"{len(answered)} SETs, {unanswered} unanswered, {failures}")
    odd = [d[3] for d in answered if d[3] != ("+", "OK") and not (d[3][0] == "-" and d[3][1].startswith("ERR kafka: "))]
    check(f"{tag} every reply is +OK or -ERR kafka: ...", not odd, f"others: {odd[:3]}")
    slowest = max(d[2] - d[1] for d in answered)
    check(f"{tag} every SET answered within produce_timeout + {MARGIN}s", slowest <= env.produce_timeout + MARGIN,
          f"slowest {slowest:.2f}s, produce_timeout {env.produce_timeout}s")
    # Sent while the broker was surely away, and failed for good before it
    # came back: these must all be errors.
    down = [d for d in answered if t_down <= d[1] and d[1] + env.produce_timeout + MARGIN < t_up]
    errors = [d for d in down if d[3][0] == "-"]
    per_conn = [sum(1 for d in down if d[0].startswith(pub.name + "-")) for pub in pubs]
    texts = sorted({d[3][1] for d in errors})
    check(f"{tag} broker away: publishers get -ERR kafka: ... within produce_timeout",
          len(errors) == len(down) and all(n > 0 for n in per_conn),
          f"{len(errors)} of {len(down)} SETs sent meanwhile ({per_conn} per connection): {texts[:2]}")
    if errors:
        latencies = sorted(d[2] - d[1] for d in errors)
        note(f"error latency: min {latencies[0]:.2f}s, max {latencies[-1]:.2f}s")
    check(f"{tag} broker back: every publisher connection recovers, same gateway process",
          len(recovered) == len(pubs) and env.gateway_alive(),
          "first +OK after it came back: " + ", ".join(f"{v:.1f}s" for _, v in sorted(recovered.items())))

    acked = {d[0] for d in answered if d[3] == ("+", "OK")}
    acked_after = {d[0] for d in answered if d[3] == ("+", "OK") and d[1] >= t_up}
    note(f"{len(acked)} SETs acknowledged in all, {len(acked_after)} of them sent after the broker came back")

    # The connected subscriber carries on without reconnecting.
    got, error = consume_until(live, acked_after)
    missing = acked_after - values_of(got)
    check(f"{tag} broker back: the connected subscriber receives what is published afterwards",
          not missing and error is None, f"{len(missing)} of {len(acked_after)} missing, error {error}")
    live.close()

    # A new member of the group.
    sub = auth(addr, env.dsn(group, "sub"))
    if mode == "restart" and not env.durable_broker:
        # The new broker has neither the old records nor the offsets: the
        # group starts over (auto_offset_reset = earliest).
        skip(f"{tag} resume from committed offsets",
             "tansu's memory storage lost them with the process: run with CHAOS_STORAGE=s3")
        got, error = consume_until(sub, acked_after)
        missing = acked_after - values_of(got)
        check(f"{tag} every SET acknowledged by the new broker is in Kafka (read back through the group)",
              not missing and error is None, f"{len(acked_after)} acknowledged, {len(missing)} missing, error {error}")
    else:
        # It starts exactly after what was committed before the outage, on
        # every partition, and every SET ever acknowledged is there.
        got, error = consume_until(sub, acked)
        first = {}
        for m in got:
            part = m["partition"]
            first[part] = min(first.get(part, m["offset"]), m["offset"])
        expected = {part: offset + 1 for part, offset in committed.items()}
        check(f"{tag} the group resumes from its committed offsets (first offset per partition = committed + 1)",
              first == expected, f"first {dict(sorted(first.items()))}, committed + 1 {expected}")
        missing = acked - values_of(got)
        check(f"{tag} every acknowledged SET is in Kafka (read back through the group)",
              not missing and error is None,
              f"{len(acked)} acknowledged, {len(missing)} missing {sorted(missing)[:3]}, error {error}")
    sub.close()


# ---------------------------------------------------------------- item 8: MySQL


def mysql(env):
    addr = env.addr
    group = "chaos"
    fresh = env.dsn("fresh_group", "pub", key="fresh_app", secret="fresh_secret")

    ready = env.readyz()
    if ready is None:
        skip("/readyz", f"nothing serves HTTP at {env.metrics} (this build has no metrics endpoint)")
    else:
        status, body = ready
        check("baseline: /readyz is 200 with a fresh snapshot",
              status == 200 and body.get("auth_snapshot_age_seconds", 99) <= env.refresh + MARGIN, f"{status} {body}")

    kept = auth(addr, env.dsn(group, "pub"))
    check("baseline: the known app publishes", kept.call("SET", "k", "m-0") == ("+", "OK"))

    failed = env.log_count("auth refresh failed")
    env.fault("mysql-stop")
    t_down = time.monotonic()
    check("MySQL down: the gateway notices (a refresh fails)",
          env.wait_log("auth refresh failed", failed + 1, timeout=env.refresh * 5 + MARGIN))

    c = Conn(addr)
    r1 = c.call("AUTH", env.dsn(group, "pub"))
    r2 = c.call("SET", "k", "m-1") if r1 == ("+", "OK") else None
    c.close()
    s = Conn(addr)
    r3 = s.call("AUTH", env.dsn(group, "sub"))
    s.close()
    check("MySQL down: a known app authenticates (pub and sub) from the last snapshot and publishes",
          r1 == ("+", "OK") and r2 == ("+", "OK") and r3 == ("+", "OK"), f"{r1} {r2} {r3}")
    c = Conn(addr)
    r = c.call("AUTH", env.dsn(group, "pub", secret="wrong"))
    c.close()
    check("MySQL down: a wrong secret is still refused", r[0] == "-" and r[1].startswith("WRONGPASS"), str(r))
    check("MySQL down: an open connection keeps publishing", kept.call("SET", "k", "m-2") == ("+", "OK"))

    if ready is not None:
        first = env.readyz()
        # Two more failed refreshes: the snapshot is older by then.
        env.wait_log("auth refresh failed", env.log_count("auth refresh failed") + 2)
        second = env.readyz()
        ok = False
        detail = f"{first} then {second}"
        if first and second:
            a1 = first[1].get("auth_snapshot_age_seconds")
            a2 = second[1].get("auth_snapshot_age_seconds")
            f1 = first[1].get("auth_refresh_failures")
            f2 = second[1].get("auth_refresh_failures")
            down_for = time.monotonic() - t_down
            ok = (isinstance(a2, (int, float)) and isinstance(f2, int) and a2 >= down_for - MARGIN
                  and a2 > a1 and f2 > f1 >= 1)
            detail = f"age {a1} then {a2} s (MySQL down {down_for:.1f}s), failures {f1} then {f2}, status {second[0]}"
        check("MySQL down: /readyz reports the stale snapshot's age and the failed refreshes", ok, detail)

    # A row added while MySQL was down cannot be known; one added after the
    # restart must be picked up by the next refreshes.
    env.fault("mysql-start")
    t_up = time.monotonic()
    subprocess.run(
        ["mariadb", "--no-defaults", "--protocol=TCP", "-h127.0.0.1", f"-P{env.mysql_port}", "-uroot",
         "databus_db", "-e",
         "INSERT INTO app (id, app_key, app_secret, cluster) VALUES (900, 'fresh_app', 'fresh_secret', 'cluster1');"
         f"INSERT INTO auth (app_id, group_name, operation, topic) VALUES (900, 'fresh_group', 2, '{env.topic}');"],
        check=True)
    loaded = env.log_count("auth data loaded")
    # The first refresh may have started before the insert: wait for two.
    refreshed = env.wait_log("auth data loaded", loaded + 2)
    c = Conn(addr)
    r = c.call("AUTH", fresh)
    c.close()
    check("MySQL back: refreshes resume, an app added after the restart authenticates",
          refreshed and r == ("+", "OK"), f"{r}, {time.monotonic() - t_up:.1f}s after the restart")
    if ready is not None:
        status, body = env.readyz() or (None, {})
        check("MySQL back: /readyz shows a fresh snapshot again",
              status == 200 and body.get("auth_snapshot_age_seconds", 99) <= env.refresh + MARGIN, f"{status} {body}")
    check("MySQL back: the open connection still publishes", kept.call("SET", "k", "m-3") == ("+", "OK"))
    kept.close()


def gateway_alive(env):
    """Whether the gateway process started by chaos.sh still runs (a crash
    would otherwise show only as closed connections)."""
    try:
        with open(f"/proc/{env.gateway_pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=["pause", "restart", "mysql"])
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    env = Env(args.work)
    if not check(f"[{args.scenario}] the gateway process is running at the start", gateway_alive(env),
                 "" if gateway_alive(env) else "it died earlier: see gateway.log"):
        return 1
    try:
        if args.scenario == "mysql":
            mysql(env)
        else:
            broker(env, args.scenario)
    except (OSError, ValueError, RuntimeError, Closed) as e:
        # A connection refused or closed mid-scenario (e.g. by a crash) ends
        # the scenario; the checks below still say whether the gateway lives.
        check(f"[{args.scenario}] the scenario ran to its end", False, repr(e))
    check(f"[{args.scenario}] the gateway process survived", gateway_alive(env),
          "" if gateway_alive(env) else "it died: see the end of gateway.log (and chaos.sh's output for the signal)")
    failed = [name for name, ok in RESULTS if not ok]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
