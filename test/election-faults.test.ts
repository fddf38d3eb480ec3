/**
 * The election under faults placed at an exact request (a TCP proxy that
 * sees every chunk between a candidate's session and the server): a ballot
 * whose create is lost while the session expires, a resign whose delete is
 * cut, an ack whose create is applied but whose answer is lost, an expiry in
 * the middle of a check, an expiry delivered late. Each must end with one
 * leader, its ack, and nothing left behind.
 */
import assert from 'node:assert/strict';
import { type TestContext, describe, test } from 'node:test';
import { Candidate, Observer, type ZkSession, singleton } from 'bellwether';
import { bounded } from './helpers/bounded.js';
import { proxiedAndDirect } from './helpers/sessions.js';
import type { ChunkAction, TcpProxy } from './helpers/tcp-proxy.js';
import { type ZkEnsemble, expireSession, idBuffer, useZooKeeper } from './helpers/zookeeper.js';

const OP = { create: 1, delete: 2, getChildren: 8, getChildren2: 12, multi: 14 } as const;

/** The operation of a client request (after the connect request), from its header: length, xid, type. */
function requestType(data: Buffer): number | undefined {
  return data.length >= 12 ? data.readInt32BE(8) : undefined;
}



/** A candidate whose errors are collected (none is expected). */
function candidateOn(t: TestContext, zk: ZkSession, name: string, data: string): { candidate: Candidate; errors: string[] } {
  const candidate = new Candidate(zk, name, { data });
  const errors: string[] = [];
  candidate.on('error', (err) => void errors.push(`${err.code}: ${err.message}`));
  t.after(() => candidate.close());
  return { candidate, errors };
}

function nextWon(candidate: Candidate): Promise<number> {
  return new Promise((resolve) => candidate.once('won', ({ token }) => resolve(token)));
}

/** Acts once on the first client request that `matches`; resolves then. */
function onRequest(proxy: TcpProxy, matches: (data: Buffer) => boolean, action: () => ChunkAction): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    proxy.tap = ({ from, data }) => {
      if (done || from !== 'client' || !matches(data)) return 'forward';
      done = true;
      resolve();
      return action();
    };
  });
}

const mentions = (data: Buffer, text: string): boolean => data.includes(Buffer.from(text));

/** Expires the session on the server now, then lets its client reconnect (and learn of it). */
async function expireThroughProxy(proxy: TcpProxy, serverPort: number, sessionId: string, password: Buffer): Promise<void> {
  await expireSession(serverPort, idBuffer(sessionId), password);
  proxy.drop();
  proxy.mode = 'pass'; // after the drop: what the partition held is lost with its connections
}

/** The ballots under an election directory, with the sessions that own them. */
async function ballotOwners(zk: ZkSession, dir: string): Promise<string[]> {
  const ballots = (await zk.children(dir)).filter((c) => c.startsWith('ballot-'));
  return Promise.all(ballots.map(async (b) => (await zk.exists(`${dir}/${b}`))?.ephemeralOwner ?? 'gone'));
}

/**
 * A leader on a direct session, a follower through a proxy. The follower's
 * next check (woken by the leader's resign) lists the ballots: that request
 * is lost, and the server is unreachable for the follower from then on.
 */
async function followerCutOffAtItsNextCheck(t: TestContext, ensemble: ZkEnsemble, name: string) {
  const { proxy, zk, other } = await proxiedAndDirect(t, ensemble);
  const leader = candidateOn(t, other, name, 'c0');
  const leaderWon = nextWon(leader.candidate);
  await leader.candidate.vote();
  await leaderWon;
  // Between them, so that the follower's predecessor is not the lowest: its next check lists the ballots
  // (a successor of the lowest ballot leads without listing them).
  const predecessor = candidateOn(t, other, name, 'cm');
  await predecessor.candidate.vote();
  const follower = candidateOn(t, zk, name, 'c1');
  await follower.candidate.vote();
  const listing = onRequest(proxy, (d) => requestType(d) === OP.getChildren2 || requestType(d) === OP.getChildren, () => {
    proxy.mode = 'blackhole';
    return 'discard';
  });
  return { proxy, zk, other, leader, predecessor, follower, listing };
}

/** A cluster singleton on a session through a proxy, leading; and a rival candidate on another session. */
async function leaderAndRival(t: TestContext, ensemble: ZkEnsemble, name: string, withRival = true) {
  const { proxy, zk, other } = await proxiedAndDirect(t, ensemble);
  const errors: string[] = [];
  const job = singleton({ scope: 'cluster', zk, name, data: 'job', run: ({ signal }) => new Promise((resolve) => signal.addEventListener('abort', resolve)) });
  job.on('error', (err) => void errors.push(`${err.code}: ${err.message}`));
  t.after(() => job.close());
  const elected = new Promise<void>((resolve) => job.once('elected', () => resolve()));
  await job.start();
  await bounded('elected', elected, 5000);
  const rival = candidateOn(t, other, name, 'rival');
  const rivalWon = nextWon(rival.candidate);
  if (withRival) await rival.candidate.vote();
  return { proxy, zk, other, job, errors, rival, rivalWon };
}

describe('election under faults at an exact request', () => {
  const zk1 = useZooKeeper();
  const serverPort = (): number => zk1.ensemble.servers[0]!.clientPort;

  test('the ballot create is lost while the session expires: no ballot of the new session is left behind; it leads there', async (t) => {
    const { proxy, zk, other } = await proxiedAndDirect(t, zk1.ensemble);
    const { candidate, errors } = candidateOn(t, zk, 'cast-expiry', 'c1');
    const old = { id: zk.sessionId!, password: zk.sessionPassword! };
    const lost = onRequest(proxy, (d) => requestType(d) === OP.create && mentions(d, 'ballot-'), () => {
      proxy.mode = 'blackhole';
      return 'discard';
    });
    const won = nextWon(candidate);
    const voting = candidate.vote();
    await lost;
    await expireThroughProxy(proxy, serverPort(), old.id, old.password);
    await bounded('leads in the new session', won, 10_000);
    await voting;
    assert.notEqual(zk.sessionId, old.id);
    assert.deepEqual(await ballotOwners(other, candidate.paths.dir), [zk.sessionId], 'one ballot, of the new session');
    await candidate.close();
    assert.deepEqual(await other.children(candidate.paths.dir), [], 'close() leaves nothing');
    assert.deepEqual(errors, []);
  });

  test("the ballot's create is applied but its answer is lost: the candidate finds it by its marker, no second ballot, it leads", async (t) => {
    const { proxy, zk, other } = await proxiedAndDirect(t, zk1.ensemble);
    const { candidate, errors } = candidateOn(t, zk, 'lost-ballot-answer', 'c1');
    let cutAnswer = false;
    let answerCut!: () => void;
    const cut = new Promise<void>((r) => (answerCut = r));
    proxy.tap = ({ from, data }) => {
      if (from === 'client' && requestType(data) === OP.create && mentions(data, 'ballot-')) cutAnswer = true;
      else if (from === 'server' && cutAnswer) {
        proxy.tap = undefined;
        answerCut();
        return 'cut';
      }
      return 'forward';
    };
    const session = zk.sessionId;
    const won = nextWon(candidate);
    const voting = candidate.vote();
    await bounded('the answer is cut', cut, 5000);
    await bounded('leads', won, 10_000);
    await voting;
    assert.equal(zk.sessionId, session, 'the same session');
    assert.deepEqual(await ballotOwners(other, candidate.paths.dir), [session], 'one ballot');
    assert.equal(candidate.ballot, `${candidate.paths.dir}/${(await other.children(candidate.paths.dir)).find((c) => c.startsWith('ballot-'))}`);
    assert.deepEqual(errors, []);
  });

  test("the resign's delete is cut with its connection: close() still deletes the ballot (the session lives on)", async (t) => {
    const { proxy, zk, other } = await proxiedAndDirect(t, zk1.ensemble);
    const { candidate, errors } = candidateOn(t, zk, 'cut-delete', 'c1');
    const won = nextWon(candidate);
    await candidate.vote();
    await won;
    const ballot = candidate.ballot!;
    // The resign: one multi (ack and ballot) since the ballot is of this session; a delete on the careful path.
    const resign = (d: Buffer): boolean => requestType(d) === OP.multi || requestType(d) === OP.delete;
    const cut = onRequest(proxy, (d) => resign(d) && mentions(d, ballot.slice(ballot.lastIndexOf('/') + 1)), () => 'cut');
    const session = zk.sessionId;
    await candidate.close();
    await cut;
    assert.equal(zk.sessionId, session, 'the same session');
    assert.equal(await other.exists(ballot), null, 'the ballot outlived close()');
    assert.deepEqual(await other.children(candidate.paths.dir), []);
    assert.deepEqual(errors, []);
  });

  for (const moment of ['right after the lost answer', 'after it led again'] as const) {
    test(`the ack create is applied but its answer is lost; close() ${moment}: the ack goes, the next leader acknowledges`, async (t) => {
      const { proxy, zk, other } = await proxiedAndDirect(t, zk1.ensemble);
      const name = moment === 'after it led again' ? 'lost-ack-led' : 'lost-ack';
      const first = candidateOn(t, zk, name, 'c1');
      // Forward the ack's create; cut the connection at the server's next chunk (its answer).
      let answerCut!: () => void;
      const cut = new Promise<void>((r) => (answerCut = r));
      let cutAnswer = false;
      proxy.tap = ({ from, data }) => {
        if (from === 'client' && requestType(data) === OP.create && mentions(data, 'leader_ack')) {
          cutAnswer = true;
          return 'forward';
        }
        if (from === 'server' && cutAnswer) {
          proxy.tap = undefined;
          answerCut();
          return 'cut';
        }
        return 'forward';
      };
      const observer = new Observer(other, name);
      t.after(() => observer.close());
      const leaders: string[] = [];
      let secondAcked!: () => void;
      const acked = new Promise<void>((r) => (secondAcked = r));
      observer.on('leader', ({ leaderData }) => {
        leaders.push(leaderData.toString());
        if (leaderData.toString() === 'c2') secondAcked();
      });
      await observer.observe();
      const second = candidateOn(t, other, name, 'c2');
      let wins = 0;
      let ledAgain!: () => void;
      const wonAgain = new Promise<void>((r) => (ledAgain = r));
      first.candidate.on('won', () => void (++wins === 2 && ledAgain()));
      // What happened, in order, for a failure's report.
      for (const event of ['suspended', 'reconnected', 'expired', 'connected'] as const) zk.on(event, () => t.diagnostic(`session ${event}`));
      first.candidate.on('demoted', ({ reason }) => t.diagnostic(`demoted (${reason})`));
      first.candidate.on('won', () => t.diagnostic('won'));
      const firstVote = first.candidate.vote();
      await bounded('the answer is cut', cut, 5000);
      if (moment === 'after it led again') {
        // The disconnect stepped it down; back in the same session, its ballot leads again and it finds its own ack.
        await bounded('leads again', wonAgain, 5000);
        await zk.sync();
      }
      // Else at once: the client has not even seen the disconnect yet.
      await first.candidate.close();
      await firstVote;
      await second.candidate.vote();
      await bounded('the next leader acknowledges', acked, 10_000);
      assert.equal(second.candidate.isLeader, true);
      assert.deepEqual(leaders, ['c1', 'c2']);
      assert.deepEqual([...first.errors, ...second.errors], []);
    });
  }

  test('the session expires while a check waits for its answer: no spurious error, it leads in the new session, one ballot', async (t) => {
    const { proxy, zk, other, leader, predecessor, follower, listing } = await followerCutOffAtItsNextCheck(t, zk1.ensemble, 'check-expiry');
    const old = { id: zk.sessionId!, password: zk.sessionPassword! };
    const won = nextWon(follower.candidate);
    await predecessor.candidate.close();
    await bounded('the check lists the ballots', listing, 5000);
    await leader.candidate.close();
    await expireThroughProxy(proxy, serverPort(), old.id, old.password);
    await bounded('leads in the new session', won, 10_000);
    assert.notEqual(zk.sessionId, old.id);
    assert.deepEqual(await ballotOwners(other, follower.candidate.paths.dir), [zk.sessionId]);
    assert.deepEqual([...leader.errors, ...predecessor.errors, ...follower.errors], []);
  });

  test("an expiry delivered late (events held) does not take away a ballot cast in the new session", async (t) => {
    const server = zk1.ensemble.servers[0]!;
    const { zk, other } = await proxiedAndDirect(t, zk1.ensemble);
    const { candidate, errors } = candidateOn(t, zk, 'late-expired', 'c1');
    const old = zk.sessionId!;
    // Held as by a slow handler or a fork: the new session is up before 'expired' is delivered.
    zk.pause();
    await expireSession(server.clientPort, idBuffer(old), zk.sessionPassword!);
    // Events are held on purpose, so there is none to await: the state is polled (bounded).
    await bounded(
      'new session',
      (async () => {
        while (zk.state !== 'connected' || zk.sessionId === old) await new Promise((r) => setTimeout(r, 5));
      })(),
      10_000,
    );
    const won = nextWon(candidate);
    await candidate.vote(); // votes in the new session now
    await bounded('leads', won, 10_000);
    zk.resume(); // 'expired' of the old session, then the new session's onConnected
    await zk.sync();
    await zk.sync();
    assert.equal(candidate.isLeader, true, 'still the leader once the late expiry was delivered');
    assert.deepEqual(await ballotOwners(other, candidate.paths.dir), [zk.sessionId], 'one ballot');
    await candidate.close();
    assert.deepEqual(await other.children(candidate.paths.dir), []);
    assert.deepEqual(errors, []);
  });
});

describe('a cluster singleton closed while its leadership is lost or ZooKeeper is unreachable', () => {
  const zk1 = useZooKeeper();

  test('closed from its demoted listener after a step-down for silence: it leaves the election, the rival leads', async (t) => {
    const { proxy, zk, other, job, errors, rival, rivalWon } = await leaderAndRival(t, zk1.ensemble, 'closed-when-lost');
    const closed = new Promise<void>((resolve) => job.once('demoted', () => void job.close().then(resolve)));
    proxy.mode = 'blackhole'; // silent past the step-down deadline: leadership lost, the ballot kept
    await bounded('demoted', new Promise((resolve) => job.once('demoted', resolve)), 5000);
    proxy.mode = 'pass';
    await bounded('close()', closed, 5000);
    await bounded('the rival leads', rivalWon, 5000);
    assert.deepEqual(await ballotOwners(other, rival.candidate.paths.dir), [other.sessionId], "the closed singleton's ballot is gone");
    assert.equal((await other.get(rival.candidate.paths.ack)).data.toString(), 'rival');
    assert.notEqual(zk.state, 'closed', 'its session lives on');
    assert.deepEqual([...errors, ...rival.errors], []);
  });

  test('close() with ZooKeeper unreachable settles within about a session timeout; the rival leads once the session expires', async (t) => {
    const { proxy, zk, job, errors, rival, rivalWon } = await leaderAndRival(t, zk1.ensemble, 'closed-unreachable');
    proxy.mode = 'blackhole';
    const timeout = zk.timeout!;
    const started = performance.now();
    await bounded('close()', job.close(), 2 * timeout + 1000);
    t.diagnostic(`close() took ${Math.round(performance.now() - started)} ms with a ${timeout} ms session`);
    await bounded('the rival leads once the session expired', rivalWon, 3 * timeout);
    assert.equal(rival.candidate.isLeader, true);
    assert.deepEqual([...errors, ...rival.errors], []);
  });
});

describe('a resign that the connection cuts short, or a close() while a check waits', () => {
  const zk1 = useZooKeeper();

  test('two close() calls of a singleton whose fleet leadership was lost: neither resolves before its ballot is gone', async (t) => {
    const { job, proxy, other, errors } = await leaderAndRival(t, zk1.ensemble, 'closed-twice', false);
    let closes!: Promise<string[]>;
    const order: string[] = [];
    const demoted = new Promise<void>((resolve) =>
      job.once('demoted', () => {
        const first = job.close().then(() => void order.push('first'));
        const second = job.close().then(() => void order.push('second'));
        closes = Promise.all([first, second]).then(() => order);
        resolve();
      }),
    );
    proxy.mode = 'blackhole'; // silent past the step-down deadline: leadership lost, the ballot kept
    await bounded('demoted', demoted, 5000);
    const ballotGone = new Promise<void>((resolve) => {
      const sub = other.watchChildren('/_zkelection/closed-twice', (event) => {
        if (event.type !== 'deleted' && !event.children.some((c) => c.startsWith('ballot-'))) resolve();
      });
      t.after(() => sub.close());
    });
    // The partition heals well within the bound: the resign goes through, then both close() calls resolve.
    const second = closes.then(async (seen) => [...seen, (await other.children('/_zkelection/closed-twice')).some((c) => c.startsWith('ballot-')) ? 'ballot left' : 'ballot gone']);
    proxy.mode = 'pass';
    assert.deepEqual(await bounded('both close() calls', second, 5000), ['first', 'second', 'ballot gone']);
    await ballotGone;
    assert.deepEqual(errors, []);
  });

  test('close() while a check waits for an answer from an unreachable server settles within about a session timeout', async (t) => {
    const { zk, predecessor, follower, listing } = await followerCutOffAtItsNextCheck(t, zk1.ensemble, 'check-unreachable');
    await predecessor.candidate.close();
    await bounded('the check lists the ballots', listing, 5000);
    const timeout = zk.timeout!;
    const started = performance.now();
    await bounded('close()', follower.candidate.close(), 2 * timeout + 1000);
    t.diagnostic(`close() took ${Math.round(performance.now() - started)} ms with a ${timeout} ms session`);
    assert.equal(follower.candidate.isLeader, false);
  });

  test('the resign (one multi: the ack and the ballot) is lost with a server that restarts: the same session comes back, both are deleted then, the rival leads and acknowledges', async (t) => {
    const server = zk1.ensemble.servers[0]!;
    const { proxy, zk, other } = await proxiedAndDirect(t, zk1.ensemble);
    const first = candidateOn(t, zk, 'restart-resign', 'c1');
    const won = nextWon(first.candidate);
    await first.candidate.vote();
    await won;
    const rival = candidateOn(t, other, 'restart-resign', 'c2');
    await rival.candidate.vote();
    const observer = new Observer(other, 'restart-resign');
    t.after(() => observer.close());
    const rivalAcked = new Promise<void>((resolve) => observer.on('leader', ({ leaderData }) => void (leaderData.toString() === 'c2' && resolve())));
    await observer.observe();
    const ballot = first.candidate.ballot!;
    const lost = onRequest(proxy, (d) => requestType(d) === OP.multi && mentions(d, 'leader_ack') && mentions(d, ballot.slice(ballot.lastIndexOf('/') + 1)), () => 'discard');
    const session = zk.sessionId;
    const closing = first.candidate.close();
    await bounded('the delete is sent', lost, 5000);
    await server.kill(); // the delete dies with the server
    // close() gives up waiting after a session timeout; the server is still down then.
    await bounded('close()', closing, 2 * 2000 + 1000);
    // A restarted server loads its sessions again with fresh timeouts: the same session comes back.
    await server.start();
    await bounded('the rival leads and acknowledges', rivalAcked, 15_000);
    assert.equal(zk.sessionId, session, 'the same session came back (else this test proves nothing)');
    for (const path of [first.candidate.paths.ack, ballot]) assert.equal(await other.exists(path).then((s) => s?.ephemeralOwner === session), false, `${path} of the first session`);
    assert.deepEqual([...first.errors, ...rival.errors], []);
  });
});
