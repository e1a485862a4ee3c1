"""MySQL stopped and started again under the same gateway: known apps keep
working from the last snapshot, /readyz tells the snapshot's age, and new
rows are picked up once MySQL is back."""

import subprocess
import time

from .report import check
from .resp import Conn, auth

MARGIN = 1.5
REFRESHES = "databus_auth_refresh_total"


def run(env):
    topic, group = "chaos_mysql", "chaos_mysql"
    dsn = lambda role, secret=None: env.dsn("replicated", group, topic, role, secret)
    fresh = f"fresh_app:fresh_secret@fresh_group/topic={topic}&role=pub"

    status, body = env.readyz()
    check("[mysql] baseline: /readyz is 200 with a fresh snapshot",
          status == 200 and body.get("auth_snapshot_age_seconds", 99) <= env.refresh + MARGIN, f"{status} {body}")
    kept = auth(env.addr, dsn("pub"))
    check("[mysql] baseline: the known app publishes", kept.call("SET", "k", "m-0") == ("+", "OK"))

    failed = env.metric(REFRESHES, outcome="error")
    env.fault("mysql-stop")
    t_down = time.monotonic()
    check("[mysql] MySQL down: the gateway notices (a refresh fails, /metrics counts it)",
          env.wait_metric(REFRESHES, lambda n: n > failed, env.refresh * 5 + MARGIN, outcome="error"))

    c = Conn(env.addr)
    r1 = c.call("AUTH", dsn("pub"))
    r2 = c.call("SET", "k", "m-1") if r1 == ("+", "OK") else None
    c.close()
    s = Conn(env.addr)
    r3 = s.call("AUTH", dsn("sub"))
    s.close()
    check("[mysql] MySQL down: a known app authenticates (pub and sub) from the last snapshot and publishes",
          r1 == ("+", "OK") and r2 == ("+", "OK") and r3 == ("+", "OK"), f"{r1} {r2} {r3}")
    c = Conn(env.addr)
    r = c.call("AUTH", dsn("pub", secret="wrong"))
    c.close()
    check("[mysql] MySQL down: a wrong secret is still refused", r[0] == "-" and r[1].startswith("WRONGPASS"), str(r))
    check("[mysql] MySQL down: an open connection keeps publishing", kept.call("SET", "k", "m-2") == ("+", "OK"))

    first = env.readyz()
    # Two more failed refreshes: the snapshot is older by then.
    failed = env.metric(REFRESHES, outcome="error")
    env.wait_metric(REFRESHES, lambda n: n >= failed + 2, env.refresh * 10, outcome="error")
    second = env.readyz()
    a1, a2 = first[1].get("auth_snapshot_age_seconds"), second[1].get("auth_snapshot_age_seconds")
    f1, f2 = first[1].get("auth_refresh_failures"), second[1].get("auth_refresh_failures")
    down_for = time.monotonic() - t_down
    ok = (isinstance(a2, (int, float)) and isinstance(f2, int) and isinstance(f1, int)
          and a2 >= down_for - MARGIN and a2 > a1 and f2 > f1 >= 1)
    check("[mysql] MySQL down: /readyz reports the stale snapshot's age and the failed refreshes", ok,
          f"age {a1} then {a2} s (MySQL down {down_for:.1f}s), failures {f1} then {f2}, status {second[0]}")

    # A row added after the restart must be picked up by the next refreshes.
    env.fault("mysql-start")
    t_up = time.monotonic()
    subprocess.run(
        ["mariadb", "--no-defaults", "--protocol=TCP", "-h127.0.0.1", f"-P{env.mysql_port}", "-uroot",
         "databus_db", "-e",
         "INSERT INTO app (id, app_key, app_secret, cluster) VALUES (900, 'fresh_app', 'fresh_secret', 'replicated');"
         f"INSERT INTO auth (app_id, group_name, operation, topic) VALUES (900, 'fresh_group', 2, '{topic}');"],
        check=True)
    # The first refresh may have started before the insert: wait for two.
    loaded = env.metric(REFRESHES, outcome="ok")
    refreshed = env.wait_metric(REFRESHES, lambda n: n >= loaded + 2, env.refresh * 10 + 30, outcome="ok")
    c = Conn(env.addr)
    r = c.call("AUTH", fresh)
    c.close()
    check("[mysql] MySQL back: refreshes resume, an app added after the restart authenticates",
          refreshed and r == ("+", "OK"), f"{r}, {time.monotonic() - t_up:.1f}s after the restart")
    status, body = env.readyz()
    check("[mysql] MySQL back: /readyz shows a fresh snapshot again",
          status == 200 and body.get("auth_snapshot_age_seconds", 99) <= env.refresh + MARGIN, f"{status} {body}")
    check("[mysql] MySQL back: the open connection still publishes", kept.call("SET", "k", "m-3") == ("+", "OK"))
    kept.close()
