"""Load during a fault: publishers with many SETs in flight, each timed from
send to reply, and a subscriber that keeps long-polling on one connection."""

import collections
import threading
import time

from .resp import WAIT, Closed, auth, mget_json


class Publisher:
    """One connection that keeps up to `window` SETs in flight (a writer and a
    reader thread). Values are `<name>-<n>`, keys k0..k9."""

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
        return self

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


class LiveSubscriber:
    """One subscriber connection that MGETs (json) in a loop throughout a
    scenario and commits what it got, timing each long poll. It never
    reconnects: an error reply or a closed connection ends it, and says so."""

    def __init__(self, addr, dsn):
        self.conn = auth(addr, dsn)
        self.values = set()
        self.deliveries = 0
        self.slowest_poll = 0.0
        self.error = None
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                messages, error = mget_json(self.conn)
                elapsed = time.monotonic() - started
                if error:
                    self.error = f"MGET answered {error}"
                    return
                last = {}
                for m in messages:
                    last[m["partition"]] = max(last.get(m["partition"], -1), m["offset"])
                for part, offset in last.items():
                    reply = self.conn.call("SET", part, offset)
                    if reply != ("+", "OK"):
                        self.error = f"commit answered {reply}"
                        return
                with self.lock:
                    self.slowest_poll = max(self.slowest_poll, elapsed)
                    self.deliveries += len(messages)
                    self.values.update(m["value"] for m in messages)
        except (OSError, Closed, ValueError) as e:
            self.error = f"connection lost: {e!r}"

    def wait_for(self, values, timeout=WAIT):
        """Waits (bounded) until every value in `values` was delivered; returns
        the ones still missing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.error is None:
            with self.lock:
                missing = values - self.values
            if not missing:
                return missing
            time.sleep(0.2)
        with self.lock:
            return values - self.values

    def stop(self):
        self.stopping.set()
        self.thread.join(WAIT)
        self.conn.close()


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
