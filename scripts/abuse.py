#!/usr/bin/env python3
"""Hostile clients by the hundred for scripts/abuse.sh.

abuse.sh starts MariaDB and one Apache Kafka node, creates and grants the
topics, then runs

    abuse.py SCENARIO --work DIR

which reads DIR/abuse.env, starts a gateway of its own for the scenario
(release build, config and log in DIR/SCENARIO/), waits for `databus ready
on`, samples the gateway's VmRSS every 20 ms for the peak while it attacks
it, stops it, and prints one `PASS SCENARIO: detail` or `FAIL SCENARIO:
detail` line per check and one line

    REPORT SCENARIO CONNECTIONS SENT_BYTES PEAK_RSS_KIB

for abuse.sh's summary table; the exit status is 1 if any check failed.
Every wait is bounded; all traffic goes to 127.0.0.1. The parts live in
scripts/abuselib/.
"""

import argparse
import signal
import sys
import traceback

from abuselib import descriptors, frozen, grants, unfinished, unread
from abuselib.env import Env
from abuselib.flood import Tally
from abuselib.gateway import Gateway
from chaoslib.report import check, failed, note

SCENARIOS = {
    "unread-echo": unread.unread_echo,
    "unread-hello": unread.unread_hello,
    "unfinished-auth": unfinished.unfinished_auth,
    "unfinished-request": unfinished.unfinished_request,
    "frozen-broker": frozen.frozen_broker,
    "color-hijack": grants.color_hijack,
    "subscribers": grants.subscribers,
    "descriptors": descriptors.descriptors,
}


class Lab:
    """What a scenario works with: the environment, the tally of
    connections and bytes sent, and the gateways it started (stopped, and
    their memory reported, at the end)."""

    def __init__(self, env, scenario):
        self.env = env
        self.scenario = scenario
        self.tally = Tally()
        self.gateways = []

    def gateway(self, tag="gateway", prefix=(), **server):
        gw = Gateway(self.env, self.scenario, tag=tag, prefix=prefix, **server)
        self.gateways.append(gw)
        return gw

    def finish(self):
        """Stops every gateway; checks that each one that got ready lived
        until then and logged no panic; returns the peak RSS in KiB (0 when
        none got ready)."""
        peak = 0
        for gw in self.gateways:
            if gw.baseline_kib is None:
                gw.stop()
                continue
            gw.stop()
            logged = gw.log_summary()
            check(self.scenario, bool(gw.survived),
                  "the gateway process was alive at the end" if gw.survived else
                  f"the gateway process died (exit status {gw.exit_code}): see {gw.log_path}")
            check(self.scenario, not logged["panic"],
                  "no panic in the gateway log" if not logged["panic"] else f"panic: {logged['panic'][0][:300]}")
            note(f"memory at the end: {gw.rss_detail()}; peak threads {gw.peak_threads}")
            peak = max(peak, gw.top_kib())
        return peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=list(SCENARIOS))
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    # SIGTERM (abuse.sh's cleanup) unwinds like Ctrl-C: the finally blocks
    # thaw a frozen broker and stop the gateway.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lab = Lab(Env(args.work), args.scenario)
    try:
        SCENARIOS[args.scenario](lab)
    except Exception as e:  # noqa: BLE001 - any error ends the scenario as a FAIL, with its REPORT
        traceback.print_exc(file=sys.stdout)
        check(args.scenario, False, f"the scenario ran to its end: {e!r}")
    finally:
        peak = lab.finish()
    print(f"REPORT {args.scenario} {lab.tally.connections} {lab.tally.sent} {peak}", flush=True)
    return 1 if failed() else 0


if __name__ == "__main__":
    sys.exit(main())
