"""
kazoo Election contenders for `npm run bench -- handover` (bench/handover.ts):
N KazooClients in this process, each running Election(client, path, id).run(job)
in a thread. The job "starts" when job() is called; the leader resigns by
returning from it.

argv: connect sessionTimeoutMs n rounds path
Speaks the handover protocol on stdin/stdout (JSON lines), per round:
  -> {"event":"ready"}     one leader runs, the other n-1 wait, ~100 ms idle
  <- go                    -> the leader's job returns, timed until the next job() call
  -> {"event":"handover","ms":...}
  <- next                  -> {"event":"ops","ops":null}, then a fresh Election (always n)
then {"event":"done"}. Errors: {"event":"error","message":...}, exit 1. EOF on stdin: exit.
Run with Debian's /usr/bin/python3 and python3-kazoo.
"""
import json
import os
import queue
import sys
import threading
import time

import kazoo.version
from kazoo.client import KazooClient
from kazoo.recipe.election import Election

# Every wait is bounded by one of these (seconds).
START_S = 20.0
HANDOVER_S = 10.0
IDLE_S = 0.1
# A leader's job waits at most this long for its resign.
TERM_S = 600.0

connect, session_timeout_ms, n, rounds, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
# (contender, time.perf_counter() when its job was called)
starts = queue.Queue()


def say(event, **fields):
    sys.stdout.write(json.dumps(dict(event=event, **fields)) + "\n")
    sys.stdout.flush()


def fail(message):
    say("error", message=message)
    os._exit(1)


def expect(command):
    line = sys.stdin.readline()
    if line == "":
        os._exit(0)  # the harness has gone
    if line.strip() != command:
        fail("expected %s, got %s" % (command, line.strip()))


class Contender:
    """One election on a client, its job run in a thread."""

    def __init__(self, cid, client):
        self.cid = cid
        self.client = client
        self.resign = threading.Event()
        self.election = Election(client, path, identifier=str(cid))
        self.thread = threading.Thread(target=self._contend, daemon=True)
        self.thread.start()

    def _job(self):
        starts.put((self, time.perf_counter()))
        self.resign.wait(TERM_S)

    def _contend(self):
        try:
            self.election.run(self._job)
        except Exception as err:  # noqa: BLE001 - reported to the harness
            fail("contender %d: %r" % (self.cid, err))


def next_start(what):
    try:
        return starts.get(timeout=HANDOVER_S)
    except queue.Empty:
        fail("no job started within %d s: %s" % (HANDOVER_S, what))


def main():
    say("version", version=kazoo.version.__version__)
    clients = [KazooClient(hosts=connect, timeout=session_timeout_ms / 1000.0) for _ in range(n)]
    for client in clients:
        client.start(timeout=START_S)
    client0 = clients[0]
    client0.ensure_path(path)
    contenders = [Contender(i, client) for i, client in enumerate(clients)]
    try:
        leader, _ = starts.get(timeout=START_S)
    except queue.Empty:
        fail("no leader within %d s" % START_S)

    for round_ in range(rounds):
        # Ready: one leader runs, and n lock nodes stand (the others wait behind it).
        deadline = time.monotonic() + START_S
        while len([c for c in client0.get_children(path) if "__lock__" in c]) != n:
            if time.monotonic() > deadline:
                fail("not %d lock nodes within %d s" % (n, START_S))
            time.sleep(0.01)
        if not starts.empty():
            fail("a second leader before round %d" % round_)
        time.sleep(IDLE_S)
        say("ready")
        expect("go")
        gone_at = time.perf_counter()
        leader.resign.set()
        successor, at = next_start("after the leader's job returned (round %d)" % round_)
        if successor is leader:
            fail("the resigned contender led again")
        say("handover", ms=(at - gone_at) * 1000.0)
        expect("next")
        say("ops", ops=None)
        leader.thread.join(HANDOVER_S)
        fresh = Contender(leader.cid, leader.client)  # a fresh Election on the old leader's client: n again
        contenders[contenders.index(leader)] = fresh
        leader = successor

    say("done")
    for contender in contenders:
        contender.election.cancel()
        contender.resign.set()
    for client in clients:
        client.stop()
        client.close()
    os._exit(0)


main()
