/**
 * What a candidate knows of its own ballot and its predecessor, under faults:
 * a watch whose request was lost, a ballot whose watch was spent by a data
 * change and then deleted, a leader deposed by an operator.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Candidate, ZkSession } from 'bellwether';
import { bounded } from './helpers/bounded.js';
import { proxiedAndDirect } from './helpers/sessions.js';
import { useZooKeeper } from './helpers/zookeeper.js';

const OP_EXISTS = 3;
const requestType = (data: Buffer): number | undefined => (data.length >= 12 ? data.readInt32BE(8) : undefined);

/** Polls a state that no event announces; bounded. */
async function until(what: string, test: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await test())) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("a candidate's own ballot and its predecessor's watch, under faults", () => {
  const zk1 = useZooKeeper();

  test('the predecessor watch lost with its request (retries used up): set again once the connection is back, and the successor leads when the leader resigns', async (t) => {
    const { proxy, zk, other } = await proxiedAndDirect(t, zk1.ensemble);
    zk.on('error', () => {});
    const leader = new Candidate(other, 'watch-lost', { data: 'L' });
    t.after(() => leader.close());
    await leader.vote();
    const leaderBallot = Buffer.from(leader.ballot!);
    // Each exists naming the leader's ballot (the successor's predecessor watch) cuts the connection,
    // four times: the default policy tries 3 times again, then the loss is thrown. The fifth goes through.
    let cuts = 0;
    let armed = false;
    proxy.tap = ({ from, data }) => {
      if (from !== 'client' || requestType(data) !== OP_EXISTS || !data.includes(leaderBallot)) return 'forward';
      if (cuts < 4) {
        cuts += 1;
        return 'cut';
      }
      armed = true;
      return 'forward';
    };
    const successor = new Candidate(zk, 'watch-lost', { data: 'S', reportLost: false });
    successor.on('error', () => {});
    t.after(() => successor.close());
    const won = new Promise<void>((resolve) => successor.once('won', () => resolve()));
    await successor.vote();
    await until('the watch is set again after the cuts', () => armed);
    await zk.sync(); // its answer is in
    proxy.tap = undefined;
    await leader.close();
    await bounded('the successor leads', won, 5000);
  });

  test("a ballot whose watch a data change spent, deleted by hand before the watch is set again, then the leader resigns: only the next candidate leads", async (t) => {
    const { proxy, zk, other } = await proxiedAndDirect(t, zk1.ensemble);
    zk.on('error', () => {});
    const third = new ZkSession({ connect: zk1.ensemble.connectString(), sessionTimeout: 2000 });
    t.after(() => third.close());
    await third.start();
    const leader = new Candidate(other, 'spent-watch', { data: 'L' });
    const s = new Candidate(zk, 'spent-watch', { data: 'S', reportLost: false });
    const next = new Candidate(third, 'spent-watch', { data: 'T', reportLost: false });
    t.after(() => Promise.all([leader.close(), s.close(), next.close()]));
    for (const c of [leader, s, next]) await c.vote();
    await until('S and T wait behind L', async () => (await third.children(leader.paths.dir)).length === 4 && leader.isLeader);
    const leading = new Set<string>();
    let overlap = false;
    for (const [name, c] of [['S', s], ['T', next]] as const) {
      c.on('won', () => {
        leading.add(name);
        if (leading.size > 1) overlap = true;
      });
      c.on('demoted', () => void leading.delete(name));
    }
    const sBallot = s.ballot!;
    // S's new watch on its own ballot (an exists naming it) takes 300 ms on its way, as on a slow link.
    let held = false;
    proxy.tap = ({ from, data }) => {
      if (!held && from === 'client' && requestType(data) === OP_EXISTS && data.includes(Buffer.from(sBallot))) {
        held = true;
        proxy.delayMs = 300;
      } else if (held) proxy.delayMs = 0;
      return 'forward';
    };
    await other.set(sBallot, 'touched by hand');
    await until("S sets its ballot's watch again", () => held);
    // Meanwhile an operator deletes S's ballot, and the leader resigns.
    await other.delete(sBallot);
    const tWon = new Promise<void>((resolve) => next.once('won', () => resolve()));
    await leader.close();
    await bounded('T leads', tWon, 5000);
    await until('S votes again (its watch answered: ballot gone)', () => s.ballot !== undefined && s.ballot !== sBallot);
    assert.equal(overlap, false, 'S (whose ballot was deleted) and T led at the same time');
    assert.equal(s.isLeader, false);
  });

  test("a leader deposed by an operator (its ballot deleted) takes its ack away: the next leader acknowledges, and the deposed one's close() leaves that ack alone", async (t) => {
    const connect = zk1.ensemble.connectString();
    const sessions = [0, 1, 2].map(() => new ZkSession({ connect, sessionTimeout: 2000 }));
    t.after(() => Promise.all(sessions.map((zk) => zk.close())));
    await Promise.all(sessions.map((zk) => zk.start()));
    const [zl, zs, operator] = sessions as [ZkSession, ZkSession, ZkSession];
    const l = new Candidate(zl, 'deposed', { data: 'L' });
    const s = new Candidate(zs, 'deposed', { data: 'S' });
    t.after(() => Promise.all([l.close(), s.close()]));
    await l.vote();
    await s.vote();
    const ackData = async (): Promise<string | undefined> => (await s.leaderData())?.toString();
    await until('L acknowledges', async () => (await ackData()) === 'L');
    const demoted = new Promise<string>((resolve) => l.once('demoted', ({ reason }) => resolve(reason)));
    await operator.delete(l.ballot!);
    assert.equal(await bounded('L is deposed', demoted, 5000), 'superseded');
    await until('S leads and acknowledges', async () => s.isLeader && (await ackData()) === 'S');
    await l.close();
    await operator.sync();
    assert.equal(await ackData(), 'S', "the deposed leader's close() deleted the ack of the leader after it");
    assert.equal(s.isLeader, true);
  });
});
