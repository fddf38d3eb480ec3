"""
The floor under kazoo's handover, for `npm run bench -- handover`
(bench/client-floor.ts measures the same with node-zookeeper-client): one
KazooClient deletes a node, another KazooClient's exists watch on it fires;
the time from just before the delete until the watch runs, idle 100 ms before
each round, as the contenders idle.

argv: connect rounds
Prints one JSON line: {"version": ..., "ms": [...]}; errors: exit 1 with a message on stderr.
Run with Debian's /usr/bin/python3 and python3-kazoo.
"""
import json
import sys
import threading
import time

import kazoo.version
from kazoo.client import KazooClient

# Every wait is bounded (seconds).
START_S = 20.0
WATCH_S = 5.0
IDLE_S = 0.1

connect, rounds = sys.argv[1], int(sys.argv[2])
writer, watcher = KazooClient(hosts=connect), KazooClient(hosts=connect)
samples = []
try:
    writer.start(timeout=START_S)
    watcher.start(timeout=START_S)
    for _ in range(rounds):
        node = writer.create("/bw-floor-kazoo-", ephemeral=True, sequence=True)
        fired = threading.Event()
        at = []

        def seen(_event, at=at, fired=fired):
            at.append(time.perf_counter())
            fired.set()

        watcher.exists(node, watch=seen)
        time.sleep(IDLE_S)
        deleted_at = time.perf_counter()
        writer.delete(node)
        if not fired.wait(WATCH_S):
            sys.exit("the watch on the deleted node did not fire within %d s" % WATCH_S)
        samples.append((at[0] - deleted_at) * 1000.0)
    print(json.dumps({"version": kazoo.version.__version__, "ms": samples}))
finally:
    for client in (writer, watcher):
        client.stop()
        client.close()
