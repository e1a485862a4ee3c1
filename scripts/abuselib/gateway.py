"""One gateway process per scenario: its TOML configuration in the
scenario's directory, the process (optionally under `prlimit`), its
readiness, its memory (VmRSS sampled every 20 ms for the peak, VmHWM and
Threads read at the end), /metrics and its log."""

import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

from chaoslib.env import sum_samples
from chaoslib.report import note

READY_LINE = "databus ready on"
# Bound on the start: a release build is ready within a second or two (MySQL
# snapshot, producer created); 60 s covers a loaded two-core machine.
READY_WAIT = 60.0
# Bound on a stop: SIGTERM, then shutdown_timeout (10 s, set below) for the
# in-flight produces, plus this margin, then SIGKILL.
SHUTDOWN_TIMEOUT_S = 10
STOP_MARGIN = 10.0
SAMPLE_EVERY = 0.02
# The gateway settles this long after "ready" before its baseline RSS is read.
SETTLE = 1.0


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (held together while chosen)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def proc_status(pid):
    """/proc/PID/status as {field: value}; kB fields as ints (KiB); {} when
    the process is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                value = value.strip()
                if value.endswith(" kB"):
                    out[key] = int(value[:-3])
                elif value.isdigit():
                    out[key] = int(value)
                else:
                    out[key] = value
    except OSError:
        pass
    return out


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Gateway:
    """`server` holds [server] keys beside addr and shards; `prefix` runs the
    binary under another command (prlimit ...), which must exec it so that
    the pid stays the gateway's."""

    def __init__(self, env, scenario, tag="gateway", prefix=(), **server):
        self.env = env
        self.scenario = scenario
        self.dir = os.path.join(env.work, scenario)
        os.makedirs(self.dir, exist_ok=True)
        self.config_path = os.path.join(self.dir, f"{tag}.toml")
        self.log_path = os.path.join(self.dir, f"{tag}.log")
        self.pid_path = os.path.join(self.dir, f"{tag}.pid")
        port, metrics_port = free_ports(2)
        self.addr = f"127.0.0.1:{port}"
        self.metrics_addr = f"127.0.0.1:{metrics_port}"
        self.prefix = list(prefix)
        self.server = {"shards": 2, "shutdown_timeout": f"{SHUTDOWN_TIMEOUT_S}s", **server}
        self.proc = None
        self.baseline_kib = None
        self.peak_kib = 0
        self.peak_threads = 0
        self.hwm_kib = None
        self.baseline_hwm_kib = None
        self.exit_code = None
        self.survived = None
        self._stop_sampling = threading.Event()
        self._sampler = None

    # ------------------------------------------------------------ process

    def write_config(self):
        lines = ["[server]", f'addr = "{self.addr}"']
        lines += [f"{k} = {toml_value(v)}" for k, v in self.server.items()]
        lines += [
            "",
            "[auth]",
            f'mysql_url = "mysql://root@127.0.0.1:{self.env.mysql_port}/databus_db"',
            'refresh_interval = "60s"',
            "",
            "[clusters.cluster1]",
            f'brokers = "{self.env.bootstrap}"',
            "",
            "[metrics]",
            f'addr = "{self.metrics_addr}"',
            "",
        ]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines))

    def launch(self):
        """Starts the process; returns at once."""
        self.write_config()
        env = dict(os.environ, RUST_LOG="info,librdkafka=warn,rdkafka=warn", NO_COLOR="1")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*self.prefix, self.env.binary, "--config", self.config_path],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        with open(self.pid_path, "w") as f:
            f.write(f"{self.proc.pid}\n")
        note(f"gateway pid {self.proc.pid} on {self.addr} (metrics {self.metrics_addr}, log {self.log_path})")

    @property
    def pid(self):
        return self.proc.pid

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_ready_or_exit(self, timeout=READY_WAIT):
        """Waits (bounded by `timeout`) for the ready line or the exit:
        'ready', 'exited' or 'timeout'."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY_LINE in self.log_text():
                return "ready"
            if self.proc.poll() is not None:
                self.exit_code = self.proc.returncode
                return "exited"
            time.sleep(0.05)
        return "timeout"

    def start(self):
        """Launches the gateway, waits (bounded) until it is ready, reads its
        baseline RSS and starts sampling; raises RuntimeError otherwise."""
        self.launch()
        state = self.wait_ready_or_exit()
        if state != "ready":
            tail = "\n".join(self.log_text().splitlines()[-10:])
            self.stop()
            raise RuntimeError(f"the gateway did not get ready ({state}); log tail:\n{tail}")
        time.sleep(SETTLE)
        st = proc_status(self.pid)
        self.baseline_kib = st.get("VmRSS", 0)
        self.baseline_hwm_kib = st.get("VmHWM", 0)
        self.peak_kib = self.baseline_kib
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        note(f"gateway ready, baseline RSS {self.baseline_kib / 1024:.1f} MiB (VmHWM {st.get('VmHWM', 0) / 1024:.1f} MiB)")
        return self

    def alive(self):
        if self.proc is None or self.proc.poll() is not None:
            return False
        st = proc_status(self.pid).get("State", "")
        return bool(st) and not st.startswith("Z")

    def _sample(self):
        # Ends with the process or at stop(); one read of a small file each 20 ms.
        while not self._stop_sampling.is_set():
            st = proc_status(self.pid)
            if not st:
                return
            self.peak_kib = max(self.peak_kib, st.get("VmRSS", 0))
            self.peak_threads = max(self.peak_threads, st.get("Threads", 0))
            time.sleep(SAMPLE_EVERY)

    def status(self):
        return proc_status(self.pid) if self.proc else {}

    def _fold_hwm(self):
        """VmHWM is the kernel's own peak of VmRSS: it catches what 20 ms
        sampling could miss."""
        if self.proc is not None and self.proc.poll() is None:
            st = proc_status(self.pid)
            self.hwm_kib = st.get("VmHWM", self.hwm_kib)
            self.peak_kib = max(self.peak_kib, st.get("VmRSS", 0))

    def top_kib(self):
        """The higher of the sampled peak and VmHWM (when VmHWM rose after the
        baseline: a transient of the start-up is not the attack's)."""
        self._fold_hwm()
        hwm = self.hwm_kib or 0
        return max(self.peak_kib, hwm if hwm > (self.baseline_hwm_kib or 0) else 0)

    def growth_mib(self):
        """Peak RSS (sampled, or VmHWM when higher) above the baseline so
        far, MiB."""
        return (self.top_kib() - (self.baseline_kib or 0)) / 1024

    def rss_detail(self):
        growth = self.growth_mib()
        hwm = f"{self.hwm_kib / 1024:.1f} MiB" if self.hwm_kib else "?"
        return (f"peak RSS {self.peak_kib / 1024:.1f} MiB sampled, VmHWM {hwm}, growth {growth:.1f} MiB "
                f"over the baseline {(self.baseline_kib or 0) / 1024:.1f} MiB")

    def stop(self):
        """Reads VmHWM, then SIGTERM and a bounded wait (shutdown_timeout +
        10 s), SIGKILL after it. Idempotent; `survived` says whether the
        process was still running when stop() was first called."""
        if self.proc is None:
            return
        if self.survived is None:
            self.survived = self.alive()
        self._fold_hwm()
        self._stop_sampling.set()
        if self._sampler:
            self._sampler.join(5)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            try:
                self.proc.wait(SHUTDOWN_TIMEOUT_S + STOP_MARGIN)
                note(f"gateway stopped on SIGTERM in {time.monotonic() - started:.1f}s, "
                     f"exit status {self.proc.returncode}")
            except subprocess.TimeoutExpired:
                note(f"WARNING: gateway still running {SHUTDOWN_TIMEOUT_S + STOP_MARGIN:.0f}s after SIGTERM: SIGKILL")
                self.proc.kill()
                self.proc.wait(10)
        self.exit_code = self.proc.returncode
        try:
            os.unlink(self.pid_path)
        except OSError:
            pass

    # ------------------------------------------------------------ /metrics

    def _get(self, path):
        try:
            with urllib.request.urlopen(f"http://{self.metrics_addr}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError):
            return None, b""

    def metric(self, family, **labels):
        """Sum of the samples of `family` whose labels include `labels`;
        None when /metrics does not answer."""
        status, body = self._get("/metrics")
        if status != 200:
            return None
        return sum_samples(body, family, labels)

    def connections(self):
        """Open client connections, every role (databus_connections)."""
        return self.metric("databus_connections")

    def wait_metric(self, family, want, timeout, **labels):
        """Asks /metrics every 0.2 s until want(value); bounded by `timeout`.
        Returns (whether it happened, the last value, seconds taken)."""
        started = time.monotonic()
        value = None
        while time.monotonic() - started < timeout:
            value = self.metric(family, **labels)
            if value is not None and want(value):
                return True, value, time.monotonic() - started
            time.sleep(0.2)
        return False, value, time.monotonic() - started

    # ------------------------------------------------------------ log

    def log_summary(self, samples=3):
        """Counts of WARN/ERROR lines and panics in the log, a few of each as
        notes (timestamps cut)."""
        text = self.log_text()
        found = {}
        for level in ("ERROR", "WARN"):
            lines = [ln for ln in text.splitlines() if re.search(rf"\s{level}\s", ln)]
            found[level] = lines
            seen = []
            for ln in lines:
                msg = re.sub(r"^\S+\s+", "", ln)[:240]
                if msg not in seen:
                    seen.append(msg)
                if len(seen) >= samples:
                    break
            if lines:
                note(f"gateway log: {len(lines)} {level} line(s), e.g.")
                for msg in seen:
                    note(f"  {msg}")
        found["panic"] = [ln for ln in text.splitlines() if "panicked" in ln]
        return found
