"""Publishes through the gateway with redis-py in its default settings.

Usage: redis_py_publish.py PORT DSN   (DSN with role=pub)
Prints one line per step; the Rust test compares them and reads Kafka back.
"""
import sys

import redis

port, dsn = int(sys.argv[1]), sys.argv[2]

# The password form: the whole AUTH string as the password.
r = redis.Redis(host="127.0.0.1", port=port, password=dsn)
print("ping", r.ping())
print("set", r.set("py-key", '"from-password"'))

# The username/password form: AUTH <key> <rest>.
user, rest = dsn.split(":", 1)
r = redis.Redis(host="127.0.0.1", port=port, username=user, password=rest)
print("set", r.set("py-key", '"from-username"'))

# RESP2, as older redis-py versions and many deployments use.
r = redis.Redis(host="127.0.0.1", port=port, password=dsn, protocol=2)
print("set", r.set("py-key", '"from-resp2"'))

# Bad credentials surface as an authentication error.
try:
    redis.Redis(host="127.0.0.1", port=port, password=dsn.replace("app_secret1", "nope")).ping()
    print("auth", "accepted?!")
except redis.exceptions.AuthenticationError as e:
    print("auth", e)
