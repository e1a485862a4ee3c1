#!/usr/bin/env python3
"""Traffic and checks for scripts/chaos.sh.

chaos.sh starts MariaDB, a replicated three-node Apache Kafka cluster, a
single Kafka node and one gateway, then runs

    chaos.py SCENARIO --work DIR

which reads DIR/chaos.env and causes the faults by calling back `chaos.sh
node-kill|node-stop|node-start|node-freeze|node-thaw|mysql-stop|mysql-start
DIR ...`. Every check prints one `PASS name: detail` or `FAIL name: detail`
line (`SKIP` when it cannot apply), each broker scenario a `REPORT` line of
figures; the exit status is 1 if any check failed. Every wait is bounded; all
traffic goes to 127.0.0.1. The parts live in scripts/chaoslib/.
"""

import argparse
import sys

from chaoslib import broker, mysql
from chaoslib.env import Env
from chaoslib.report import check, failed
from chaoslib.resp import Closed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=[*broker.SCENARIOS, "mysql"])
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    env = Env(args.work)
    tag = f"[{args.scenario}]"
    if not check(f"{tag} the gateway process is running at the start", env.gateway_alive(),
                 "" if env.gateway_alive() else "it died earlier: see gateway.log"):
        return 1
    try:
        if args.scenario == "mysql":
            mysql.run(env)
        else:
            broker.run(env, args.scenario)
    except (OSError, ValueError, RuntimeError, Closed) as e:
        # A connection refused or closed mid-scenario (e.g. by a crash) ends
        # the scenario; the check below still says whether the gateway lives.
        check(f"{tag} the scenario ran to its end", False, repr(e))
    check(f"{tag} the gateway process survived", env.gateway_alive(),
          "" if env.gateway_alive() else "it died: see the end of gateway.log (and chaos.sh's output for the signal)")
    return 1 if failed() else 0


if __name__ == "__main__":
    sys.exit(main())
