"""What chaos.sh wrote into DIR/chaos.env (ports, pids, settings), the fault
injection it offers back, and the gateway's own API (/metrics, /readyz)."""

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

from .kafka import Kafka
from .report import note

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sum_samples(exposition, family, labels):
    """The sum of the samples of `family` in a /metrics body (bytes) whose
    labels include `labels` (a dict); 0 when there is none."""
    total = 0.0
    for line in exposition.decode(errors="replace").splitlines():
        if line.startswith("#") or " " not in line:
            continue
        sample, value = line.rsplit(" ", 1)
        name, _, rest = sample.partition("{")
        if name == family and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += float(value)
    return total


class Env:
    def __init__(self, work):
        self.work = work
        values = {}
        with open(os.path.join(work, "chaos.env")) as f:
            for line in f:
                if "=" in line:
                    k, v = line.strip().split("=", 1)
                    values[k.removeprefix("export ")] = v
        self.values = values
        self.addr = values["GATEWAY_ADDR"]
        self.metrics = values["METRICS_ADDR"]
        self.gateway_pid = int(values["GATEWAY_PID"])
        self.produce_timeout = float(values["PRODUCE_TIMEOUT_S"])
        self.poll_timeout = float(values["POLL_TIMEOUT_S"])
        self.refresh = float(values["REFRESH_S"])
        self.mysql_port = values["MYSQL_PORT"]
        self.kafka = {
            cluster: Kafka(values["KAFKA_HOME"], values["KAFKA_TOOLS_LOG4J"], values[f"BOOTSTRAP_{cluster.upper()}"])
            for cluster in ("replicated", "single")
        }

    def app(self, cluster):
        """(key, secret) of the app whose grants live on `cluster`."""
        return ("app_key1", "app_secret1") if cluster == "replicated" else ("single_app", "single_secret")

    def dsn(self, cluster, group, topic, role, secret=None):
        key, own_secret = self.app(cluster)
        return f"{key}:{secret or own_secret}@{group}/topic={topic}&role={role}"

    def fault(self, what, *args):
        """Runs `chaos.sh <what> DIR ARGS...`; returns when it is done."""
        started = time.monotonic()
        subprocess.run([os.path.join(HERE, "chaos.sh"), what, self.work, *map(str, args)], check=True)
        note(f"{what} {' '.join(map(str, args))} took {time.monotonic() - started:.1f}s")

    def gateway_alive(self):
        """Whether the gateway process started by chaos.sh still runs (a crash
        would otherwise show only as closed connections)."""
        try:
            with open(f"/proc/{self.gateway_pid}/stat") as f:
                return f.read().split(") ", 1)[1][0] != "Z"
        except (OSError, IndexError):
            return False

    def _get(self, path):
        try:
            with urllib.request.urlopen(f"http://{self.metrics}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            return None, b""

    def readyz(self):
        """(status, body as dict) of GET /readyz; (None, {}) if unreachable."""
        status, body = self._get("/readyz")
        try:
            return status, json.loads(body)
        except ValueError:
            return status, {"not JSON": body[:200].decode(errors="replace")}

    def metric(self, family, **labels):
        """The sum of the samples of `family` on /metrics whose labels include
        `labels`; 0 when there is none."""
        _, body = self._get("/metrics")
        return sum_samples(body, family, labels)

    def wait_metric(self, family, want, timeout, **labels):
        """Waits (bounded; a counter announces nothing, so it is asked every
        0.2 s) until `want(metric)`; returns whether it happened."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if want(self.metric(family, **labels)):
                return True
            time.sleep(0.2)
        return False
