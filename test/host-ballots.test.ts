/**
 * The primary's host ballots fed with messages in an order real IPC can
 * produce (the messages of two workers are not ordered with each other):
 * fake workers record what the primary sends them; the election is real.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Worker } from 'node:cluster';
import { Candidate, ZkSession } from 'bellwether';
import { bounded } from './helpers/bounded.js';
import { useZooKeeper } from './helpers/zookeeper.js';

interface Sent {
  at: number;
  message: { bellwether: string; hold: number; remaining?: number };
}

interface HostBallotsLike {
  onMessage(worker: Worker, message: unknown, mayVote: boolean): void;
  close(): Promise<void>;
}

/** A stand-in for a cluster worker: connected, and everything sent to it recorded. */
function fakeWorker(log: Sent[]): Worker {
  return {
    isConnected: () => true,
    send: (message: Sent['message'], _handle: unknown, callback?: () => void) => {
      log.push({ at: performance.now(), message });
      callback?.();
      return true;
    },
  } as unknown as Worker;
}

async function until(what: string, test: () => boolean, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!test()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("the primary's host ballots, messages out of order", () => {
  const zk1 = useZooKeeper();

  async function hostBallots(zk: ZkSession): Promise<HostBallotsLike> {
    // Internal: the module the Supervisor uses, driven directly.
    const { HostBallots } = (await import(new URL('../../dist/cluster/host-ballots.js', import.meta.url).href)) as {
      HostBallots: new (zk: ZkSession, onError: (error: Error) => void) => HostBallotsLike;
    };
    return new HostBallots(zk, () => {});
  }

  const holdOf = (election: string, name: string) => (id: number, generation: number) => ({ bellwether: 'fleet-hold', election, name, root: '/_zkelection', data: '', hold: id, generation });

  test('a stopping host (every message says no new term) does not vote for a hold it kept waiting, once the holder lets go', async (t) => {
    const primary = new ZkSession({ connect: zk1.ensemble.connectString(), sessionTimeout: 4000 });
    t.after(() => primary.close());
    await primary.start();
    const ballots = await hostBallots(primary);
    t.after(() => ballots.close());
    const election = '/_zkelection/stopping-host';
    const hold = holdOf(election, 'stopping-host');
    // The directory stands, so that a ballot's create would be the promotion's first request (ordered before the sync below).
    await primary.mkdirp(election);
    const toW1: Sent[] = [];
    const [w1, w2] = [fakeWorker(toW1), fakeWorker([])];
    ballots.onMessage(w2, hold(1, 3), false);
    ballots.onMessage(w1, hold(1, 2), false); // older generation: waits
    ballots.onMessage(w2, { bellwether: 'fleet-release', election, hold: 1 }, false);
    await primary.sync(); // after any ballot's create the promotion would have sent
    const children = await primary.children(election).catch(() => [] as string[]);
    assert.deepEqual(children, [], 'a stopping host cast a ballot (a new term on a leaving host)');
    assert.equal(toW1.some((s) => s.message.bellwether === 'fleet-lease'), false);
  });

  test('close() while a resign waits out a lease still running resolves only once the ballot is gone', async (t) => {
    const connect = zk1.ensemble.connectString();
    const [primary, otherHost] = [0, 1].map(() => new ZkSession({ connect, sessionTimeout: 4000 })) as [ZkSession, ZkSession];
    t.after(() => Promise.all([primary.close(), otherHost.close()]));
    await Promise.all([primary.start(), otherHost.start()]);
    const ballots = await hostBallots(primary);
    const election = '/_zkelection/close-waits';
    const hold = holdOf(election, 'close-waits');
    const toW1: Sent[] = [];
    const toW2: Sent[] = [];
    const [w1, w2] = [fakeWorker(toW1), fakeWorker(toW2)];
    ballots.onMessage(w1, hold(1, 1), true);
    await until('W1 leased', () => toW1.some((s) => s.message.bellwether === 'fleet-lease'));
    // W2 takes the lock while W1's release is still on its way, then lets go: after the grace the
    // resign revokes W1's lease, and waits it out.
    ballots.onMessage(w2, hold(1, 2), true);
    await until('W2 leased', () => toW2.some((s) => s.message.bellwether === 'fleet-lease'));
    ballots.onMessage(w2, { bellwether: 'fleet-release', election, hold: 1 }, true);
    await until('the resign revokes W1', () => toW1.some((s) => s.message.bellwether === 'fleet-revoke'));
    await ballots.close();
    assert.deepEqual((await otherHost.children(election)).filter((c) => c.startsWith('ballot')), [], 'close() resolved with the host ballot standing');
  });

  test("a stale hold and release of the previous holder, read after the new holder's hold: the new holder keeps its lease, and no other host leads while it lasts", async (t) => {
    // Internal: the module the Supervisor uses, driven directly.
    const { HostBallots } = (await import(new URL('../../dist/cluster/host-ballots.js', import.meta.url).href)) as {
      HostBallots: new (zk: ZkSession, onError: (error: Error) => void) => HostBallotsLike;
    };
    const connect = zk1.ensemble.connectString();
    const [primary, otherHost] = [0, 1].map(() => new ZkSession({ connect, sessionTimeout: 4000 })) as [ZkSession, ZkSession];
    t.after(() => Promise.all([primary.close(), otherHost.close()]));
    await Promise.all([primary.start(), otherHost.start()]);
    const errors: string[] = [];
    const ballots = new HostBallots(primary, (err) => void errors.push(err.message));
    t.after(() => ballots.close());
    const election = '/_zkelection/stale-hold';
    const hold = (id: number, generation: number) => ({ bellwether: 'fleet-hold', election, name: 'stale-hold', root: '/_zkelection', data: '', hold: id, generation });
    const release = (id: number) => ({ bellwether: 'fleet-release', election, hold: id });
    const toW1: Sent[] = [];
    const toW2: Sent[] = [];
    const [w1, w2] = [fakeWorker(toW1), fakeWorker(toW2)];
    const leases = (log: Sent[]): Sent[] => log.filter((s) => s.message.bellwether === 'fleet-lease');
    ballots.onMessage(w1, hold(1, 1), true);
    await until('W1 gets a lease (the host leads)', () => leases(toW1).length > 0);
    const hostB = new Candidate(otherHost, 'stale-hold', { data: 'B', reportLost: false });
    t.after(() => hostB.close());
    let bWonAt: number | undefined;
    hostB.on('won', () => void (bWonAt = performance.now()));
    await hostB.vote();
    // W1 ends its term (release 1), takes the lock again (hold 2, generation 2) and gives it up at
    // once; W2 then takes it (generation 3). The primary reads W2's hold before W1's last two messages.
    ballots.onMessage(w1, release(1), true);
    ballots.onMessage(w2, hold(1, 3), true);
    ballots.onMessage(w1, hold(2, 2), true);
    ballots.onMessage(w1, release(2), true);
    const renewed = leases(toW2).length;
    await until('W2 is renewed (it is still the holder)', () => leases(toW2).length > renewed + 2);
    // Longer than the grace after which a host with no holder resigns.
    const watchUntil = performance.now() + 1500;
    await until('the grace has passed', () => performance.now() > watchUntil || bWonAt !== undefined, 5000);
    assert.equal(bWonAt, undefined, 'another host leads while W2 holds the host lock');
    assert.equal(toW2.some((s) => s.message.bellwether === 'fleet-revoke'), false);
    // W2 lets go (its job has settled: a worker releases only then): after the grace the host resigns, and host B leads.
    ballots.onMessage(w2, release(1), true);
    await bounded('host B leads', new Promise<void>((resolve) => (bWonAt !== undefined ? resolve() : hostB.once('won', () => resolve()))), 10_000);
    assert.deepEqual(errors, []);
  });
});
