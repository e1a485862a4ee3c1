"""Broker faults under load (issue #10, point 4): what the fault is, and the
checks every broker scenario ends with. Each scenario has a topic and groups
of its own (chaos.sh created and granted them): `chaos_<name>`, group
`chaos_<name>` (commits before the fault, resumes after it) and
`chaos_<name>_live` (connected throughout)."""

import collections
import time

from .report import check, note, report, skip
from .resp import WAIT, auth
from .traffic import LiveSubscriber, Publisher, consume_until

# Extra time a reply may take beyond produce_timeout: librdkafka checks for
# timed-out records about once a second, and this machine is small.
MARGIN = 1.5
# A single broker stays away this long: more than twice produce_timeout (5 s)
# plus the margin, so that SETs sent after the first window of in-flight SETs
# failed also fail for good before it is back, on every connection.
SINGLE_DOWN_FOR = 12.0
# A killed node stays dead this long before it is restarted.
KILLED_FOR = 10.0
# A frozen node stays frozen longer than broker.session.timeout.ms (9 s): the
# controller fences it and moves its leaderships meanwhile.
FROZEN_FOR = 15.0
# How long a cluster may take to have every replica back in sync.
RESYNC = 90.0


# ---------------------------------------------------------------- faults
# Each takes (env, kafka, topic), returns (t_down, t_up): when the fault
# began and when the broker side was whole again.


def busiest_leader(kafka, topic):
    """The leader of the partition holding the most records."""
    ends = kafka.end_offsets(topic)
    busiest = max(ends, key=ends.get)
    leader = kafka.describe(topic)[busiest][0]
    note(f"busiest partition {busiest} ({ends[busiest]} records), leader node {leader}")
    return leader


def resynced(kafka, topic):
    deadline = time.monotonic() + RESYNC
    while time.monotonic() < deadline:
        if kafka.fully_replicated(topic):
            return True
        time.sleep(0.5)
    return False


def hold_busiest_leader(env, kafka, topic, name, down, up, hold):
    """`down` the leader of the busiest partition, wait `hold` seconds, `up`
    it again, and wait until every replica is back in sync."""
    node = busiest_leader(kafka, topic)
    env.fault(down, "replicated", node)
    t_down = time.monotonic()
    time.sleep(hold)
    env.fault(up, "replicated", node)
    check(f"[{name}] node {node} back and every replica in sync again", resynced(kafka, topic))
    return t_down, time.monotonic()


def leader_kill(env, kafka, topic):
    return hold_busiest_leader(env, kafka, topic, "leader-kill", "node-kill", "node-start", KILLED_FOR)


def rolling(env, kafka, topic):
    t_down = time.monotonic()
    for node in (1, 2, 3):
        env.fault("node-stop", "replicated", node)
        env.fault("node-start", "replicated", node)
        # The next node goes only when this one holds every replica again,
        # as an operator's rolling restart waits for in-sync replicas.
        if not check(f"[rolling] node {node} restarted and every replica is back in sync", resynced(kafka, topic)):
            break
    return t_down, time.monotonic()


def freeze(env, kafka, topic):
    return hold_busiest_leader(env, kafka, topic, "freeze", "node-freeze", "node-thaw", FROZEN_FOR)


def hold_single(env, down, up):
    """`down` the single node, wait SINGLE_DOWN_FOR seconds, `up` it again."""
    env.fault(down, "single", 1)
    t_down = time.monotonic()
    time.sleep(SINGLE_DOWN_FOR)
    env.fault(up, "single", 1)
    return t_down, time.monotonic()


def single_pause(env, kafka, topic):
    return hold_single(env, "node-freeze", "node-thaw")


def single_restart(env, kafka, topic):
    return hold_single(env, "node-stop", "node-start")


# name: (cluster, fault, whether the fault makes every partition unavailable)
SCENARIOS = {
    "leader-kill": ("replicated", leader_kill, False),
    "rolling": ("replicated", rolling, False),
    "freeze": ("replicated", freeze, False),
    "pause": ("single", single_pause, True),
    "restart": ("single", single_restart, True),
}


# ---------------------------------------------------------------- the run


def run(env, name):
    cluster, fault, outage = SCENARIOS[name]
    kafka = env.kafka[cluster]
    topic = f"chaos_{name}"
    group, live_group = f"chaos_{name}", f"chaos_{name}_live"
    tag = f"[{name}]"
    dsn = lambda g, role: env.dsn(cluster, g, topic, role)

    # -- before: 300 records pipelined (multi-record batches), and a group
    # whose committed offsets sit in the middle of each partition.
    p = auth(env.addr, dsn(group, "pub"))
    pre = [f"{name}-pre-{i}" for i in range(300)]
    for i, v in enumerate(pre):
        p.send("SET", f"k{i % 10}", v)
    replies = [p.reply() for _ in pre]
    p.close()
    check(f"{tag} baseline: 300 pipelined SETs answered +OK", all(r == ("+", "OK") for r in replies))

    sub = auth(env.addr, dsn(group, "sub"))
    got, error = consume_until(sub, set(pre))
    if not check(f"{tag} baseline: the group consumes the 300 records", error is None and set(pre) <= values(got),
                 f"{len(set(pre) & values(got))} of 300, error {error}"):
        return
    by_partition = collections.defaultdict(set)
    for m in got:
        by_partition[m["partition"]].add(m["offset"])
    committed = {part: sorted(offs)[len(offs) // 2] for part, offs in sorted(by_partition.items())}
    for part, offset in committed.items():
        sub.send("SET", part, offset)
    commit_replies = [sub.reply() for _ in committed]
    sub.call("QUIT")
    sub.close()
    # The member commits as it leaves; the broker's view is what counts.
    check(f"{tag} baseline: commits answered +OK", all(r == ("+", "OK") for r in commit_replies),
          f"committed {committed}")

    live = LiveSubscriber(env.addr, dsn(live_group, "sub")).start()
    missing = live.wait_for(set(pre))
    check(f"{tag} baseline: a subscriber kept connected throughout consumes them", not missing and not live.error,
          f"{len(missing)} missing, {live.error}")

    # -- load, then the fault
    pubs = [Publisher(env.addr, dsn(group, "pub"), f"{name}-load{i}").start() for i in range(4)]
    time.sleep(2)  # the load runs against a healthy cluster first
    try:
        t_down, t_up = fault(env, kafka, topic)
    except Exception as e:  # noqa: BLE001 - any failure to inject ends the scenario
        for pub in pubs:
            pub.stop()
        live.stop()
        check(f"{tag} fault injection", False, repr(e))
        return

    # -- recovery: the same gateway process, the same connections. A
    # connection has recovered once its last 50 replies, all to SETs sent
    # after the cluster was whole, are +OK. How long it was failing: from the
    # send of its first SET answered with an error to the send of the first
    # SET after its last error that got +OK (0 when it saw no error).
    recovered = {}
    deadline = t_up + WAIT
    while len(recovered) < len(pubs) and time.monotonic() < deadline:
        for pub in pubs:
            after = pub.replies_since(t_up)
            if pub.name not in recovered and len(after) >= 50 and all(r[3] == ("+", "OK") for r in after[-50:]):
                replies = pub.replies_since(0)
                errors = [r[1] for r in replies if r[3][0] == "-"]
                if not errors:
                    recovered[pub.name] = 0.0
                else:
                    first_ok = min(r[1] for r in replies if r[1] > errors[-1] and r[3] == ("+", "OK"))
                    recovered[pub.name] = first_ok - errors[0]
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
    errors = [d for d in answered if d[3][0] == "-"]
    if outage:
        # Sent while the only broker was surely away, and failed for good
        # before it came back: these must all be errors, on every connection.
        down = [d for d in answered if t_down <= d[1] and d[1] + env.produce_timeout + MARGIN < t_up]
        per_conn = [sum(1 for d in down if d[0].startswith(pub.name + "-")) for pub in pubs]
        down_errors = [d for d in down if d[3][0] == "-"]
        check(f"{tag} broker away: publishers get -ERR kafka: ... within produce_timeout",
              len(down_errors) == len(down) and all(n > 0 for n in per_conn),
              f"{len(down_errors)} of {len(down)} SETs sent meanwhile ({per_conn} per connection)")
    if errors:
        texts = sorted({d[3][1] for d in errors})
        note(f"{len(errors)} SETs answered with an error: {texts[:2]}")
    check(f"{tag} every publisher connection gets +OK after the fault, same gateway process",
          len(recovered) == len(pubs) and env.gateway_alive(),
          "SETs failing for: " + ", ".join(f"{v:.1f}s" for _, v in sorted(recovered.items())))

    acked = {d[0] for d in answered if d[3] == ("+", "OK")}
    errored = {d[0] for d in answered if d[3][0] == "-"}

    # The subscriber connected throughout carries on, without reconnecting.
    missing = live.wait_for(acked | set(pre))
    check(f"{tag} the subscriber connected throughout delivers every acknowledged record, never reconnecting",
          not missing and live.error is None,
          f"{len(missing)} of {len(acked) + len(pre)} missing, slowest poll {live.slowest_poll:.2f}s, "
          f"{live.deliveries} deliveries, error {live.error}")
    live.stop()

    # A new member of the group resumes exactly after its commits.
    sub = auth(env.addr, dsn(group, "sub"))
    got, error = consume_until(sub, acked)
    sub.close()
    first = {}
    for m in got:
        first[m["partition"]] = min(first.get(m["partition"], m["offset"]), m["offset"])
    expected = {part: committed[part] + 1 if part in committed else 0 for part in first}
    check(f"{tag} the group resumes at its committed offsets (first offset per partition = committed + 1)",
          first == expected, f"first {dict(sorted(first.items()))}, expected {dict(sorted(expected.items()))}")
    missing = acked - values(got)
    check(f"{tag} the group delivers every acknowledged SET", not missing and error is None,
          f"{len(missing)} of {len(acked)} missing, error {error}")

    # -- every acknowledged SET in Kafka, once: read back with Kafka's own
    # console consumer, each partition to its end.
    records = kafka.read_all(topic)
    counts = collections.Counter(v for _, _, v in records)
    lost = (acked | set(pre)) - set(counts)
    duplicates = sorted(v for v, n in counts.items() if n > 1)
    written_anyway = errored & set(counts)
    check(f"{tag} Kafka holds every acknowledged SET (none lost)", not lost,
          f"{len(acked) + len(pre)} acknowledged, {len(lost)} lost {sorted(lost)[:3]}")
    check(f"{tag} Kafka holds no record twice (idempotent producer)", not duplicates,
          f"{len(duplicates)} duplicated {duplicates[:3]}")
    if written_anyway:
        note(f"{len(written_anyway)} SETs answered -ERR kafka are in Kafka all the same (at-least-once: "
             "the broker wrote them after the gateway gave up)")
    report(name, acked=len(acked) + len(pre), errors=len(errors), longest_reply_s=f"{slowest:.2f}",
           lost=len(lost), duplicates=len(duplicates), errors_written_anyway=len(written_anyway),
           failing_s=max(recovered.values(), default=float("nan")).__format__(".1f"))


def values(messages):
    return {m["value"] for m in messages}
