"""AUTH at scale against the grants: colors that would take another app's
consumer group or are not colors at all, and more subscribers than
max_subscribers."""

import concurrent.futures
import time

from chaoslib.report import check, note
from chaoslib.resp import Closed, encode

from .flood import Client, close_all, connect, read_until_closed, send_all

# Concurrent AUTHs of the same bad string per case.
PER_CASE = 100


def refused_at_scale(lab, gw, name, dsn, expected):
    """PER_CASE connections send `AUTH dsn` at once; each must get exactly
    `expected` and be closed (bounded wait)."""
    socks = [connect(gw.addr, lab.tally) for _ in range(PER_CASE)]
    for s in socks:
        send_all(s, encode("AUTH", dsn), lab.tally, timeout=10.0)
    readings = read_until_closed(socks, 30.0)
    close_all(socks)
    exact = sum(1 for r in readings if r.data == expected and r.closed)
    others = {}
    for r in readings:
        if not (r.data == expected and r.closed):
            key = (r.data[:100], r.end)
            others[key] = others.get(key, 0) + 1
    check("color-hijack", exact == PER_CASE,
          f"{name}: {exact} of {PER_CASE} got exactly {expected!r} and were closed"
          + (f"; others {others}" if others else ""))


def accepted(lab, gw, name, dsn):
    c = Client(gw.addr, lab.tally, timeout=30)
    try:
        r = c.call("AUTH", dsn)
    except (OSError, Closed) as e:
        r = repr(e)
    c.close()
    check("color-hijack", r == ("+", "OK"), f"control, {name}: {r}")


def color_hijack(lab):
    """app_key1 has group G, app_b has group G-eu on the same topic: app_key1
    subscribing to G with color eu would join app_b's consumer group."""
    env = lab.env
    gw = lab.gateway().start()
    g = lambda extra: env.dsn("sub", group="G", topic=env.pub_topic, extra=extra)
    refused_at_scale(lab, gw, "app_key1 group G color eu (app_b's G-eu)", g("&color=eu"),
                     b"-NOPERM color eu is not allowed for group G\r\n")
    refused_at_scale(lab, gw, "color 'x y'", g("&color=x y"), b"-ERR invalid color\r\n")
    refused_at_scale(lab, gw, "a 100-character color (over 64)", g("&color=" + "c" * 100), b"-ERR invalid color\r\n")
    # The refusals are about those colors, not the grants.
    accepted(lab, gw, "app_b subscribes to its own group G-eu",
             env.dsn("sub", group="G-eu", topic=env.pub_topic, key="app_b", secret="secret_b"))
    accepted(lab, gw, "app_key1 group G color us", g("&color=us"))
    accepted(lab, gw, "app_key1 group G with a 64-character color", g("&color=" + "c" * 64))


def subscribers(lab):
    """max_subscribers = 200; 250 subscriber connections AUTH at once (a
    topic with 4 partitions): exactly 200 get +OK, 50 get `-ERR max number
    of subscribers reached`."""
    limit, n = 200, 250
    gw = lab.gateway(max_subscribers=limit).start()
    dsn = lab.env.dsn("sub", group="abuse_sub")
    before = gw.status().get("Threads")

    def one(_):
        try:
            c = Client(gw.addr, lab.tally, timeout=60)  # bounded AUTH
        except OSError as e:
            return None, repr(e)
        try:
            return c, c.call("AUTH", dsn)
        except (OSError, Closed) as e:
            return c, repr(e)

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(n)))
    ok = sum(1 for _, r in results if r == ("+", "OK"))
    full = sum(1 for _, r in results if r == ("-", "ERR max number of subscribers reached"))
    others = {}
    for _, r in results:
        if r not in (("+", "OK"), ("-", "ERR max number of subscribers reached")):
            others[str(r)[:100]] = others.get(str(r)[:100], 0) + 1
    threads_up = gw.status().get("Threads")
    counted = gw.metric("databus_connections", role="sub")
    check("subscribers", ok == limit and full == n - limit and not others,
          f"{ok} got +OK, {full} got -ERR max number of subscribers reached"
          + (f", others {others}" if others else "") + f"; databus_connections{{role=sub}} {counted}; "
          f"{gw.rss_detail()}; gateway threads {before} before, {threads_up} with {ok} subscribers")
    # The refused ones must also have been closed.
    refused = [c.sock for c, r in results if c and r != ("+", "OK")]
    readings = read_until_closed(refused, 10.0)
    check("subscribers", all(r.closed for r in readings),
          f"{sum(r.closed for r in readings)} of {len(refused)} refused connections closed by the gateway")
    close_all([c.sock for c, _ in results if c])
    # Members leave as their connections close (bounded wait).
    _, value, took = gw.wait_metric("databus_connections", lambda v: v == 0, 60.0)
    note(f"after closing: databus_connections {value} ({took:.1f}s), threads {gw.status().get('Threads')}, "
         f"peak threads {gw.peak_threads}")
    # The consumers' threads end as the members leave their group: bounded wait.
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and (gw.status().get("Threads") or 0) > (before or 0):
        time.sleep(0.5)
    note(f"threads {gw.status().get('Threads')} {time.monotonic() - deadline + 60.0:.1f}s later "
         f"(before the subscribers: {before}); {gw.rss_detail()}")
