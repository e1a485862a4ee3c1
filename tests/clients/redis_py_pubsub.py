"""Publishes and consumes through the gateway with redis-py in its default settings.

Usage: redis_py_pubsub.py PORT PUB_DSN SUB_DSN
Only host, port and the credentials (password, or username + password) are
given. Publishes three records, one per way of connecting, reads them back
with MGET json, commits the last one and prints one line of JSON:
{"ping":..,"published":[SET replies],"bad_auth":error text,
 "consumed":[MGET json strings],"commit":reply}
The Rust test (tests/clients.rs) compares it exactly and reads Kafka back.
"""
import json
import sys
import time

import redis

port, pub_dsn, sub_dsn = int(sys.argv[1]), sys.argv[2], sys.argv[3]
user, rest = pub_dsn.split(":", 1)
report = {}

# The password form: the whole AUTH string as the password.
r = redis.Redis(host="127.0.0.1", port=port, password=pub_dsn)
report["ping"] = r.ping()
published = [r.set("redis-py-password", '{"n":1}')]
# The username/password form: AUTH <key> <rest>.
r = redis.Redis(host="127.0.0.1", port=port, username=user, password=rest)
published.append(r.set("redis-py-username", '{"n":2}'))
# RESP2, as older redis-py versions and many deployments use.
r = redis.Redis(host="127.0.0.1", port=port, password=pub_dsn, protocol=2)
published.append(r.set("redis-py-resp2", '{"n":3}'))
report["published"] = published

# Bad credentials surface as an authentication error.
try:
    redis.Redis(host="127.0.0.1", port=port, password=pub_dsn.replace("app_secret1", "nope")).ping()
    report["bad_auth"] = "accepted?!"
except redis.exceptions.AuthenticationError as e:
    report["bad_auth"] = str(e)

# MGET (each a long poll of at most the gateway's poll_timeout) until the three
# came back; bounded so that a gateway that never delivers fails with a report.
sub = redis.Redis(host="127.0.0.1", port=port, password=sub_dsn)
consumed = []
deadline = time.monotonic() + 20
while len(consumed) < len(published) and time.monotonic() < deadline:
    consumed.extend(m.decode() for m in sub.mget("json"))
report["consumed"] = consumed
if consumed:
    last = json.loads(consumed[-1])
    report["commit"] = sub.set(str(last["partition"]), str(last["offset"]))
print(json.dumps(report))
