import assert from 'node:assert/strict';
import { type TestContext, describe, test } from 'node:test';
import { Candidate, Observer, ZkSession, singleton } from 'bellwether';
import { bounded } from './helpers/bounded.js';
import { tempDir } from './helpers/temp.js';
import { useZooKeeper } from './helpers/zookeeper.js';

function openSession(t: TestContext, connect: string, sessionTimeout = 2000): ZkSession {
  const zk = new ZkSession({ connect, sessionTimeout });
  zk.on('error', (err) => t.diagnostic(`session error: ${err.code} ${err.message}`));
  t.after(() => zk.close());
  return zk;
}

interface Tracked {
  candidate: Candidate;
  won: number[];
  lost: string[];
}

/** Records a candidate's wins and losses; the test fails at its end if the candidate reported an error. */
function track(t: TestContext, candidate: Candidate): Tracked {
  const tracked: Tracked = { candidate, won: [], lost: [] };
  const errors: string[] = [];
  candidate.on('won', ({ token }) => void tracked.won.push(token));
  candidate.on('lost', ({ leaderData }) => void tracked.lost.push(leaderData.toString()));
  // A listener that throws would be reported by the candidate itself, not fail the test: collected instead.
  candidate.on('error', (err) => void errors.push(`${err.code}: ${err.message}`));
  t.after(() => assert.deepEqual(errors, [], 'candidate errors'));
  return tracked;
}

function once<T>(subscribe: (resolve: (value: T) => void) => void): Promise<T> {
  return new Promise(subscribe);
}

describe('election in one process', () => {
  const zk1 = useZooKeeper();

  test('5 candidates: exactly one wins, the others lose to its acknowledged data; an observer sees it', async (t) => {
    const sessions = Array.from({ length: 5 }, () => openSession(t, zk1.ensemble.connectString()));
    await Promise.all(sessions.map((zk) => zk.start()));
    const observer = new Observer(sessions[0]!, 'five');
    t.after(() => observer.close());
    const seen: string[] = [];
    observer.on('leader', ({ leaderData }) => void seen.push(`leader ${leaderData}`));
    observer.on('leaderGone', () => void seen.push('gone'));
    await observer.observe();
    const candidates = sessions.map((zk, i) => track(t, new Candidate(zk, 'five', { data: `c${i}` })));
    t.after(() => Promise.all(candidates.map((c) => c.candidate.close())));
    const firstLeader = once<void>((resolve) => observer.once('leader', () => resolve()));
    const allLost = Promise.all(candidates.map((c) => once<void>((resolve) => {
      c.candidate.once('lost', () => resolve());
      c.candidate.once('won', () => resolve());
    })));
    await Promise.all(candidates.map((c) => c.candidate.vote()));
    await allLost;
    await firstLeader;
    const leaders = candidates.filter((c) => c.candidate.isLeader);
    assert.equal(leaders.length, 1);
    const leader = leaders[0]!;
    const leaderName = `c${candidates.indexOf(leader)}`;
    assert.equal(leader.won.length, 1);
    assert.equal(leader.won[0], leader.candidate.token);
    for (const c of candidates.filter((x) => x !== leader)) assert.deepEqual(c.lost, [leaderName]);
    assert.equal((await leader.candidate.leaderData())!.toString(), leaderName);
    assert.deepEqual(seen, [`leader ${leaderName}`]);
    const children = await sessions[0]!.children('/_zkelection/five');
    assert.equal(children.filter((c) => c.startsWith('ballot')).length, 5);
    assert.ok(children.includes('leader_ack'));
  });

  test('the leader resigns: the next one leads with a higher token, the ack moves, the observer fires leaderGone then leader once', async (t) => {
    const sessions = Array.from({ length: 3 }, () => openSession(t, zk1.ensemble.connectString()));
    await Promise.all(sessions.map((zk) => zk.start()));
    const candidates: Tracked[] = [];
    for (const [i, zk] of sessions.entries()) {
      const c = track(t, new Candidate(zk, 'resign', { data: `c${i}` }));
      candidates.push(c);
      await c.candidate.vote(); // in order: c0 leads, c1 follows c0, c2 follows c1
    }
    t.after(() => Promise.all(candidates.map((c) => c.candidate.close())));
    assert.equal(candidates[0]!.candidate.isLeader, true);
    const observer = new Observer(sessions[2]!, 'resign');
    t.after(() => observer.close());
    const seen: string[] = [];
    await observer.observe();
    observer.on('leader', ({ leaderData }) => void seen.push(`leader ${leaderData}`));
    observer.on('leaderGone', () => void seen.push('gone'));
    const firstToken = candidates[0]!.candidate.token!;
    const nextWon = once<{ token: number }>((resolve) => candidates[1]!.candidate.once('won', resolve));
    const nextAck = once<void>((resolve) => observer.once('leader', () => resolve()));
    await candidates[0]!.candidate.close();
    const { token } = await nextWon;
    await nextAck;
    assert.ok(token > firstToken, `token ${token} > ${firstToken}`);
    assert.equal(candidates[1]!.candidate.isLeader, true);
    assert.equal(candidates[2]!.candidate.isLeader, false);
    assert.deepEqual(seen, ['gone', 'leader c1']);
    assert.equal((await candidates[2]!.candidate.leaderData())!.toString(), 'c1');
    assert.deepEqual(candidates[2]!.lost, ['c0'], 'c2 follows c1, not the leader: the failover did not wake it');
  });

  test('100 candidates in one session: a failover wakes only the next candidate', async (t) => {
    const zk = openSession(t, zk1.ensemble.connectString());
    await zk.start();
    const candidates: Tracked[] = [];
    for (let i = 0; i < 100; i++) {
      const c = track(t, new Candidate(zk, 'hundred', { data: `c${i}` }));
      candidates.push(c);
      await c.candidate.vote();
    }
    t.after(() => Promise.all(candidates.map((c) => c.candidate.close())));
    for (let failover = 0; failover < 3; failover++) {
      const leader = candidates[failover]!;
      const next = candidates[failover + 1]!;
      assert.equal(leader.candidate.isLeader, true);
      const before = zk.notifications;
      const lostBefore = candidates.map((c) => c.lost.length);
      const won = once<void>((resolve) => next.candidate.once('won', () => resolve()));
      await leader.candidate.close();
      await won;
      // Let anything else the failover set off arrive: a sync round trip orders after it.
      await zk.sync();
      assert.equal(zk.notifications - before, 1, 'one watch notification: the next candidate\'s predecessor watch');
      const woken = candidates.filter((c, i) => c.lost.length !== lostBefore[i]);
      assert.deepEqual(woken, [], 'no loser was told again');
    }
  });
});

describe('never none: a leader that stepped down leads again; nothing is left behind', () => {
  // A server of its own: these tests stop it.
  const zk1 = useZooKeeper();

  test('stepped down on silence, with no suspension to follow: it leads again once the server answers', async (t) => {
    const zk = openSession(t, zk1.ensemble.connectString(), 2000);
    await zk.start();
    const candidate = new Candidate(zk, 'silence');
    t.after(() => candidate.close());
    candidate.on('error', (err) => t.diagnostic(`candidate error: ${err.code}`));
    const won = once<number>((resolve) => candidate.once('won', ({ token }) => resolve(token)));
    await candidate.vote();
    const token = await won;
    const demoted = once<string>((resolve) => candidate.once('demoted', ({ reason }) => resolve(reason)));
    const [server] = zk1.ensemble.servers;
    // Silent for longer than the default step-down deadline (half the timeout), shorter than the
    // session's own suspension (two thirds): the session reports nothing at all.
    server!.pause();
    assert.equal(await bounded('step-down', demoted, 5000), 'suspended');
    const again = once<number>((resolve) => candidate.once('won', ({ token: t2 }) => resolve(t2)));
    server!.resume();
    assert.equal(await bounded('leads again', again, 5000), token, 'the same ballot leads again');
    assert.equal(candidate.isLeader, true);
  });

  test('a stepDownAfter at or below the idle ping interval is raised to a sound value, and said once', async (t) => {
    const zk = openSession(t, zk1.ensemble.connectString(), 2000);
    await zk.start();
    const candidate = new Candidate(zk, 'too-short', { stepDownAfter: 300 });
    t.after(() => candidate.close());
    const errors: string[] = [];
    candidate.on('error', (err) => void errors.push(`${err.code}: ${err.message}`));
    const demotions: string[] = [];
    candidate.on('demoted', ({ reason }) => void demotions.push(reason));
    const won = once<number>((resolve) => candidate.once('won', ({ token }) => resolve(token)));
    await candidate.vote();
    await won;
    // Idle for more than two ping intervals (a third of the timeout each): no fault, so no step-down.
    // An absence has no event to await: this is an observation window.
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(demotions, [], 'no step-down without a fault');
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /^BW_ERR_INVALID_OPTION: stepDownAfter 300 ms does not fit the negotiated session timeout 2000 ms/);
  });

  test("a waiting cluster singleton's close() resolves only once its ballot is gone", async (t) => {
    const zk = openSession(t, zk1.ensemble.connectString());
    await zk.start();
    const leader = new Candidate(zk, 'waiting-close');
    t.after(() => leader.close());
    const won = once<void>((resolve) => leader.once('won', () => resolve()));
    await leader.vote();
    await won;
    let ran = false;
    for (let round = 0; round < 10; round++) {
      const job = singleton({ scope: 'cluster', zk, name: 'waiting-close', run: () => void (ran = true) });
      job.on('error', (err) => t.diagnostic(`job error: ${err.code}`));
      await job.start();
      if (round % 2) while ((await zk.children(leader.paths.dir)).length < 2) await new Promise((r) => setImmediate(r));
      await job.close();
      assert.deepEqual((await zk.children(leader.paths.dir)).filter((c) => c.startsWith('ballot-')).length, 1, `round ${round}: its ballot outlived close()`);
    }
    assert.equal(ran, false, 'a waiting singleton never ran');
  });

  test('close() right after vote(): never leader afterwards, ballot and ack gone', async (t) => {
    const zk = openSession(t, zk1.ensemble.connectString());
    await zk.start();
    for (let round = 0; round < 20; round++) {
      const candidate = new Candidate(zk, 'quick-close');
      candidate.on('error', () => {});
      const voting = candidate.vote();
      // Anywhere in the first check: before the ballot, before or after the won/ack.
      if (round % 2) await new Promise((r) => setImmediate(r));
      await candidate.close();
      await voting.catch(() => undefined);
      assert.equal(candidate.isLeader, false, `round ${round}: leader after close()`);
      assert.deepEqual(await zk.children(candidate.paths.dir), [], `round ${round}: left ${JSON.stringify(await zk.children(candidate.paths.dir))}`);
    }
  });
});

describe('listeners that throw; host+cluster hands over without waiting for an expiry', () => {
  const zk1 = useZooKeeper();

  test('a won listener and a lost listener that throw: reported as BW_ERR_CALLBACK_FAILED; leader and ack stand, the loser follows', async (t) => {
    const [a, b] = [openSession(t, zk1.ensemble.connectString()), openSession(t, zk1.ensemble.connectString())];
    await Promise.all([a.start(), b.start()]);
    const leader = new Candidate(a, 'throwing', { data: 'a' });
    const loser = new Candidate(b, 'throwing', { data: 'b' });
    t.after(() => Promise.all([leader.close(), loser.close()]));
    const errors: { who: string; code: string; cause: unknown }[] = [];
    const failed = (who: string, count: number) =>
      new Promise<void>((resolve) => {
        const candidate = who === 'leader' ? leader : loser;
        candidate.on('error', (err) => {
          errors.push({ who, code: err.code, cause: err.cause });
          if (errors.filter((e) => e.who === who).length === count) resolve();
        });
      });
    const boom = new Error('listener boom');
    leader.on('won', () => {
      throw boom;
    });
    loser.on('lost', () => {
      throw boom;
    });
    const reported = Promise.all([failed('leader', 1), failed('loser', 1)]);
    await leader.vote();
    await loser.vote();
    await bounded('both reported', reported, 5000);
    assert.deepEqual(errors.map(({ who, code, cause }) => [who, code, cause]).sort(), [
      ['leader', 'BW_ERR_CALLBACK_FAILED', boom],
      ['loser', 'BW_ERR_CALLBACK_FAILED', boom],
    ]);
    assert.equal(leader.isLeader, true);
    assert.equal((await b.get(leader.paths.ack)).data.toString(), 'a', 'the ack was created after the throwing listener');
    // The loser still follows: when the leader resigns, it leads.
    const loserWon = new Promise<void>((resolve) => loser.once('won', () => resolve()));
    await leader.close();
    await bounded('the loser leads after the resign', loserWon, 5000);
  });

  test('host+cluster: a leader closed gracefully hands over to the next host at once (sessions of 30 s: no expiry waited for)', async (t) => {
    const sessions = [openSession(t, zk1.ensemble.connectString(), 30_000), openSession(t, zk1.ensemble.connectString(), 30_000)];
    await Promise.all(sessions.map((zk) => zk.start()));
    const jobs = sessions.map((zk, host) => {
      const job = singleton({ scope: 'host+cluster', zk, name: 'handover', lockDir: tempDir(t), data: `host-${host}` });
      job.on('error', (err) => t.diagnostic(`job error: ${err.code} ${err.message}`));
      t.after(() => job.close());
      return job;
    });
    const firstElected = Promise.race(jobs.map((job, i) => new Promise<number>((resolve) => job.once('elected', () => resolve(i)))));
    await Promise.all(jobs.map((job) => job.start()));
    const first = await bounded('first elected', firstElected, 5000);
    const other = jobs[1 - first]!;
    const handedOver = new Promise<number>((resolve) => other.once('elected', ({ token }) => resolve(token)));
    const observer = new Observer(sessions[first]!, 'handover');
    t.after(() => observer.close());
    await observer.observe();
    const acked = new Promise<void>((resolve) => observer.on('leader', ({ leaderData }) => void (leaderData.toString() === `host-${1 - first}` && resolve())));
    const firstToken = jobs[first]!.token!;
    const closedAt = performance.now();
    await jobs[first]!.close();
    // Its session lives on (30 s timeout): only the resign can let the other host lead this soon.
    const token = await bounded('the other host leads', handedOver, 5000);
    t.diagnostic(`handover ${Math.round(performance.now() - closedAt)} ms after close()`);
    assert.ok(token > firstToken);
    assert.equal(sessions[first]!.state, 'connected');
    await bounded('the new leader acknowledges', acked, 5000);
  });
});

describe('failovers that ask little: the successor knows it leads, one request resigns, no herd', () => {
  const zk1 = useZooKeeper({ config: ['maxClientCnxns=0'] });

  /** Polls a state that no event announces (a candidate's ballot, a session's counters); bounded. */
  async function until(what: string, test: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
    const deadline = performance.now() + ms;
    while (!(await test())) {
      if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
      await new Promise((r) => setImmediate(r));
    }
  }

  /** Three candidates on three sessions, voted in order: c0 leads, c1 follows c0, c2 follows c1. */
  async function threeInOrder(t: TestContext, name: string): Promise<{ candidates: Tracked[]; sessions: ZkSession[]; admin: ZkSession }> {
    const sessions = Array.from({ length: 4 }, () => openSession(t, zk1.ensemble.connectString()));
    await Promise.all(sessions.map((zk) => zk.start()));
    const candidates: Tracked[] = [];
    for (const [i, zk] of sessions.slice(0, 3).entries()) {
      const c = track(t, new Candidate(zk, name, { data: `c${i}` }));
      candidates.push(c);
      await c.candidate.vote();
    }
    t.after(() => Promise.all(candidates.map((c) => c.candidate.close())));
    await once<void>((resolve) => (candidates[2]!.lost.length ? resolve() : candidates[2]!.candidate.once('lost', () => resolve())));
    return { candidates, sessions, admin: sessions[3]! };
  }

  test('5 candidates, 4 resigns in a row: each successor leads on its predecessor\'s deletion, before sending any request', async (t) => {
    const sessions = Array.from({ length: 5 }, () => openSession(t, zk1.ensemble.connectString()));
    await Promise.all(sessions.map((zk) => zk.start()));
    const candidates: Tracked[] = [];
    for (const [i, zk] of sessions.entries()) {
      const c = track(t, new Candidate(zk, 'in-a-row', { data: `c${i}`, reportLost: false }));
      candidates.push(c);
      await c.candidate.vote();
    }
    t.after(() => Promise.all(candidates.map((c) => c.candidate.close())));
    for (let i = 0; i < 4; i++) {
      // Whatever the last failover set off (the one after the successor looking again) has settled.
      await Promise.all(sessions.map((zk) => zk.sync()));
      const successor = sessions[i + 1]!;
      const before = successor.operations;
      const won = once<number>((resolve) => candidates[i + 1]!.candidate.once('won', () => resolve(successor.operations)));
      await candidates[i]!.candidate.close();
      assert.equal(await bounded(`c${i + 1} leads`, won, 5000), before, `c${i + 1} sent a request before leading (it listed the ballots)`);
    }
    assert.deepEqual(candidates.map((c) => c.won.length), [1, 1, 1, 1, 1]);
  });

  test("the leader's ballot deleted by hand: it stops leading (superseded) and its successor leads", async (t) => {
    const { candidates, admin } = await threeInOrder(t, 'leader-ballot-deleted');
    const [c0, c1] = candidates;
    const demoted = once<string>((resolve) => c0!.candidate.once('demoted', ({ reason }) => resolve(reason)));
    const won = once<void>((resolve) => c1!.candidate.once('won', () => resolve()));
    await admin.delete(c0!.candidate.ballot!);
    assert.equal(await bounded('the deposed leader steps down', demoted, 5000), 'superseded');
    await bounded('the successor leads', won, 5000);
    // The deposed one votes again, last in line.
    await until('the deposed leader votes again', () => c0!.candidate.ballot !== undefined);
    assert.equal(candidates.filter((c) => c.candidate.isLeader).length, 1);
    assert.equal(c1!.candidate.isLeader, true);
  });

  test("the successor's own ballot deleted by hand, then the leader resigns: the one after it leads, not the successor", async (t) => {
    const { candidates, admin } = await threeInOrder(t, 'successor-ballot-deleted');
    const [c0, c1, c2] = candidates;
    const deleted = c1!.candidate.ballot!;
    await admin.delete(deleted);
    // c1 votes again (behind c2); wait until its new ballot stands.
    await until('the successor votes again', () => c1!.candidate.ballot !== undefined && c1!.candidate.ballot !== deleted);
    const won = once<void>((resolve) => c2!.candidate.once('won', () => resolve()));
    await c0!.candidate.close();
    await bounded('c2 leads', won, 5000);
    await admin.sync();
    assert.deepEqual(c1!.won, [], 'the successor whose ballot went must not lead');
    assert.equal(c2!.candidate.isLeader, true);
  });

  test("data set on the leader's ballot by hand is not the leader going: its successor keeps waiting", async (t) => {
    const { candidates, sessions, admin } = await threeInOrder(t, 'leader-ballot-set');
    const [c0, c1] = candidates;
    const successor = sessions[1]!;
    const [requests, notifications] = [successor.operations, successor.notifications];
    await admin.set(c0!.candidate.ballot!, 'touched');
    // The successor's watch fires; it lists the ballots and watches the leader's again (two requests).
    await until('the successor looks again', () => successor.notifications > notifications && successor.operations >= requests + 2);
    await successor.sync();
    assert.equal(c1!.won.length, 0, 'the successor led while the leader still held the lowest ballot');
    assert.equal(c0!.candidate.isLeader, true);
    // Its watch is armed again: the leader's resign still hands over.
    const won = once<void>((resolve) => c1!.candidate.once('won', () => resolve()));
    await c0!.candidate.close();
    await bounded('c1 leads after the resign', won, 5000);
  });

  test('the ack deleted by hand before the leader resigns: its ballot still goes, the next leads and acknowledges', async (t) => {
    const { candidates, admin } = await threeInOrder(t, 'ack-deleted-then-resign');
    const [c0, c1] = candidates;
    await admin.delete(c0!.candidate.paths.ack);
    const ballot = c0!.candidate.ballot!;
    const won = once<void>((resolve) => c1!.candidate.once('won', () => resolve()));
    await c0!.candidate.close();
    assert.equal(await admin.exists(ballot), null, 'the ballot outlived close()');
    await bounded('c1 leads', won, 5000);
    await until('c1 acknowledges', async () => (await admin.exists(c0!.candidate.paths.ack)) !== null);
    assert.equal((await c1!.candidate.leaderData())!.toString(), 'c1');
  });

  test('100 cluster singletons on 100 sessions, started together: every failover, the first included, costs at most 3 requests and 3 notifications', async (t) => {
    const n = 100;
    const sessions = Array.from({ length: n }, () => openSession(t, zk1.ensemble.connectString(), 30_000));
    await Promise.all(sessions.map((zk) => zk.start()));
    const running = new Set<number>();
    const starts: number[] = [];
    let overlap = 0;
    const jobs = sessions.map((zk, i) => {
      const job = singleton({
        scope: 'cluster',
        zk,
        name: 'herd',
        keepAlive: false,
        run: ({ signal }) => {
          running.add(i);
          starts.push(i);
          if (running.size > 1) overlap += 1;
          return new Promise<void>((resolve) =>
            signal.addEventListener(
              'abort',
              () => {
                running.delete(i);
                resolve();
              },
              { once: true },
            ),
          );
        },
      });
      job.on('error', (err) => t.diagnostic(`singleton ${i}: ${err.code} ${err.message}`));
      return job;
    });
    t.after(() => Promise.all(jobs.map((job) => job.close())));
    await Promise.all(jobs.map((job) => job.start()));
    const traffic = (): [number, number] => sessions.reduce<[number, number]>(([r, w], zk) => [r + zk.operations, w + zk.notifications], [0, 0]);
    /** Every session's requests answered (a sync of each orders after them); resolves with the syncs it sent. */
    const settled = async (): Promise<number> => {
      let syncs = 0;
      for (let last = ''; ; ) {
        await Promise.all(sessions.map((zk) => zk.sync()));
        syncs += n;
        const [requests, notifications] = traffic();
        const now = `${requests - syncs}/${notifications}`;
        if (now === last) return syncs;
        last = now;
      }
    };
    await until('one of them runs', () => starts.length > 0, 20_000);
    await settled();
    for (let failover = 1; failover <= 3; failover++) {
      const leader = [...running][0]!;
      const before = traffic();
      const startsBefore = starts.length;
      await jobs[leader]!.close();
      await until(`a run after failover ${failover}`, () => starts.length > startsBefore);
      const syncs = await settled();
      const after = traffic();
      const requests = after[0] - before[0] - syncs;
      const notifications = after[1] - before[1];
      t.diagnostic(`failover ${failover}: ${notifications} notifications, ${requests} requests`);
      assert.ok(notifications <= 3, `failover ${failover}: ${notifications} watch notifications (a herd)`);
      assert.ok(requests <= 3, `failover ${failover}: ${requests} requests`);
    }
    assert.equal(overlap, 0, 'two jobs ran at once');
  });
});
