"""Consumes through the gateway with redis-py in its default settings.

Usage: redis_py_consume.py PORT DSN ENCODING COUNT
MGETs until COUNT messages arrived (or 60 s passed), then prints each message
as one line of hex, in the order received. The Rust test decodes them.
"""
import sys
import time

import redis

port, dsn, encoding, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
r = redis.Redis(host="127.0.0.1", port=port, password=dsn)
received = []
deadline = time.monotonic() + 60
while len(received) < count and time.monotonic() < deadline:
    received.extend(r.mget(encoding))
for message in received:
    print(message.hex())
