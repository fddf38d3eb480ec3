import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { type TestContext, describe, test } from 'node:test';
import { Observer, ZkSession } from 'bellwether';
import { type Fixture, Fixtures, startFixture } from './helpers/child.js';
import { bounded } from './helpers/bounded.js';
import { checkFenceLog } from './helpers/fence-log.js';
import { type Runtime, bun, fixture, mixName, node, selected } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';
import { expireThroughProxy } from './helpers/expire-through-proxy.js';
import { startProxy } from './helpers/sessions.js';
import { type ZkEnsemble, idBuffer, useZooKeeper } from './helpers/zookeeper.js';

const CONTENDER = fixture('cluster-contender');
const ELECTION = '/_zkelection/fleet-job';
/**
 * The contenders' session timeout, ms: with 9 Node and Bun processes and a
 * JVM on 2 cores, 400 ms (a step-down after 200 ms of silence) made spurious,
 * correct step-downs common enough to break exact term counts.
 */
const SESSION_MS = '1000';

/** The first fixture (of `among`) to report `event`: from now on, or (`sinceStart`) counting what was already reported. Bounded: a failure says what each fixture last reported. */
function firstTo(among: Fixture[], event: string, sinceStart = false, ms = 20_000): Promise<Fixture> {
  const seen = new Map(among.map((f) => [f, sinceStart ? 0 : f.events.length]));
  return bounded(`first to report "${event}"`, Promise.any(among.map((f) => f.next(event, () => true, seen.get(f)).then(() => f))), ms).catch((err: Error) => {
    const last = among.map((f) => `${f.label} (pid ${f.pid}): ${f.events.slice(-6).map((e) => JSON.stringify(e)).join(' ')}`);
    throw new Error(`${err.message}\n${last.join('\n')}`);
  });
}

/**
 * The fixture whose job runs now (more 'running' than 'stopped' reports).
 * Between two terms there is none for a moment: a condition wait, bounded.
 */
async function currentRunner(among: Fixture[], ms = 20_000): Promise<Fixture> {
  const deadline = Date.now() + ms;
  for (;;) {
    const running = among.filter((f) => f.count('running') > f.count('stopped'));
    if (running.length > 1) throw new Error(`two runners: ${running.map((f) => f.pid).join(', ')}`);
    if (running.length === 1) return running[0]!;
    if (Date.now() > deadline) throw new Error(`nobody runs the job within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Resolves once the election holds exactly `count` ballots (a children watch, no polling). */
async function ballotsReach(ensemble: ZkEnsemble, t: TestContext, count: number): Promise<void> {
  const zk = new ZkSession({ connect: ensemble.connectString() });
  t.after(() => zk.close());
  await zk.start();
  let last: readonly string[] | undefined;
  await bounded(
    `${count} ballots`,
    new Promise<void>((resolve) => {
      const check = (children: readonly string[] | undefined): void => {
        last = children;
        if ((children ?? []).filter((c) => c.startsWith('ballot')).length === count) resolve();
      };
      const subscription = zk.watchChildren(ELECTION, (event) => check(event.type === 'deleted' ? [] : event.children));
      void subscription.ready.then((snapshot) => check(snapshot?.children));
    }),
    20_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last seen: ${JSON.stringify(last)}`);
  });
  await zk.close();
}

describe('fleet singleton across processes (one ZooKeeper server)', () => {
  const zk1 = useZooKeeper();

  const KILL_MIX = [node, bun, node, bun, node].map(selected);
  test(`${mixName(KILL_MIX)}: 5 contenders, the leader SIGKILLed 4 times: the next leads only once the killed leader's session can have expired; tokens increase`, async (t) => {
    const dir = tempDir(t);
    const logFile = path.join(dir, 'fence.log');
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const runtimes = KILL_MIX;
    let spawned = 0;
    const spawn = (): Fixture =>
      fixtures.add(startFixture(runtimes[spawned++ % runtimes.length]!, CONTENDER, [zk1.ensemble.connectString(), 'cluster', logFile, SESSION_MS]));
    // An observer in this process: the ack holds the leader's pid.
    const zk = new ZkSession({ connect: zk1.ensemble.connectString() });
    t.after(() => zk.close());
    await zk.start();
    const observer = new Observer(zk, 'fleet-job');
    const seen: string[] = [];
    observer.on('leader', ({ leaderData }) => void seen.push(`leader ${leaderData}`));
    observer.on('leaderGone', () => void seen.push('gone'));
    await observer.observe();
    const acked = (pid: number): Promise<void> =>
      new Promise((resolve) => {
        const check = (): void => {
          if (observer.leaderData?.toString() === String(pid)) resolve();
          else observer.once('leader', check);
        };
        check();
      });

    let live = runtimes.map(() => spawn());
    await Promise.all(live.map((f) => f.next('contending')));
    let leader = await firstTo(live, 'running', true);
    await acked(leader.pid);
    const leaders = [leader.pid];
    for (let kill = 0; kill < 4; kill++) {
      const others = live.filter((f) => f !== leader);
      const next = firstTo(others, 'running');
      const killedAt = performance.now();
      await leader.kill('SIGKILL');
      leader = await next;
      // The server expires the killed session no sooner than a timeout after the last ping it heard,
      // which came at most a third of the timeout before the kill: an earlier takeover would mean
      // a ballot deleted while its owner could still be running.
      const takeover = performance.now() - killedAt;
      assert.ok(takeover >= (2 * Number(SESSION_MS)) / 3, `kill ${kill}: the next led ${Math.round(takeover)} ms after the kill`);
      await acked(leader.pid);
      leaders.push(leader.pid);
      live = [...others, spawn()];
      await live.at(-1)!.next('contending');
    }
    observer.close();
    // Each leader once, each departure once: never twice for the same state.
    const expected = leaders.flatMap((pid, i) => (i === 0 ? [`leader ${pid}`] : ['gone', `leader ${pid}`]));
    assert.deepEqual(seen.slice(seen.indexOf(`leader ${leaders[0]}`)), expected);
    const tokens = checkFenceLog(logFile);
    assert.equal(tokens.length, 5);
    assert.equal(fixtures.all.reduce((n, f) => n + f.count('running'), 0), 5, 'one term per leader, no more');
  });

  test("the leader's session expires (injected): it stops, the next leads with a higher token, it rejoins as a follower", async (t) => {
    const dir = tempDir(t);
    const logFile = path.join(dir, 'fence.log');
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    // The leader talks through a proxy, which holds its reconnect while its session is closed:
    // a client that reconnected in between would take its session back (and lead again in it).
    const serverPort = zk1.ensemble.servers[0]!.clientPort;
    const proxy = await startProxy(t, serverPort);
    const first = fixtures.add(startFixture(node, CONTENDER, [`127.0.0.1:${proxy.port}`, 'cluster', logFile, SESSION_MS]));
    const session = await first.next('session');
    await first.next('running');
    const others = [bun, node].map(selected).map((r) => fixtures.add(startFixture(r, CONTENDER, [zk1.ensemble.connectString(), 'cluster', logFile, SESSION_MS])));
    await Promise.all(others.map((f) => f.next('contending')));
    const next = firstTo(others, 'running');
    await expireThroughProxy(proxy, serverPort, idBuffer(String(session['sessionId'])), Buffer.from(String(session['password']), 'hex'));
    await first.next('stopped');
    await next;
    // Rejoined in a new session, as a follower.
    await first.next('session', (e) => e['sessionId'] !== session['sessionId']);
    await first.next('demoted');
    // The expired leader votes again in its new session: three ballots again.
    await ballotsReach(zk1.ensemble, t, 3);
    assert.equal(first.count('running'), 1);
    // The injection closes the session at once, with no timeout for the leader to step down in
    // (a server expires a session only after the timeout, and the step-down comes at half of it):
    // so here a loaded machine may let the next leader start before the old one has stopped.
    // The order under a real expiry is the ensemble test's (the leader's server SIGSTOPped).
    const tokens = checkFenceLog(logFile, { overlap: 'allowed' });
    assert.equal(tokens.length, 2);
  });

  test('host+cluster: 3 hosts x 3 workers; ZooKeeper holds 3 ballots; killing workers and a whole host keeps one leader', async (t) => {
    const dir = tempDir(t);
    const logFile = path.join(dir, 'fence.log');
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const hosts = [0, 1, 2].map((h) => {
      const lockDir = path.join(dir, `host-${h}`);
      fs.mkdirSync(lockDir, { mode: 0o700 });
      return lockDir;
    });
    const workers = new Map<Fixture, number>();
    const spawn = (host: number, runtime: Runtime): Fixture => {
      const f = fixtures.add(startFixture(runtime, CONTENDER, [zk1.ensemble.connectString(), 'host+cluster', logFile, SESSION_MS, hosts[host]!]));
      workers.set(f, host);
      return f;
    };
    for (const host of [0, 1, 2]) for (const runtime of [node, bun, node].map(selected)) spawn(host, runtime);
    await Promise.all([...workers.keys()].map((f) => f.next('contending')));
    await firstTo([...workers.keys()], 'running', true);
    const alive = (): Fixture[] => [...workers.keys()].filter((f) => f.child.exitCode === null && f.child.signalCode === null);
    // One ballot per host: wait until each host's lock holder has voted.
    await ballotsReach(zk1.ensemble, t, 3);
    // The one running now (the first to have run may have stepped down meanwhile on a loaded machine).
    let leader = await currentRunner(alive());

    // Kill the leading worker twice: its host's next worker takes the host lock; the fleet moves on once.
    for (let round = 0; round < 2; round++) {
      const next = firstTo(alive().filter((f) => f !== leader), 'running');
      await leader.kill('SIGKILL');
      leader = await next;
    }
    // Kill a whole host: the one leading now.
    const leadingHost = workers.get(leader)!;
    const elsewhere = alive().filter((f) => workers.get(f) !== leadingHost);
    const next = firstTo(elsewhere, 'running');
    await Promise.all(alive().filter((f) => workers.get(f) === leadingHost).map((f) => f.kill('SIGKILL')));
    leader = await next;
    assert.notEqual(workers.get(leader), leadingHost);
    await ballotsReach(zk1.ensemble, t, 2); // two hosts left, two ballots
    // Four terms at least (the first, two worker kills, the host); a spurious but correct step-down may add one.
    assert.ok(checkFenceLog(logFile).length >= 4);
  });
});

describe('fleet singleton with a 3-server ensemble', () => {
  const zk3 = useZooKeeper({ servers: 3 });

  test("the leader's only server is SIGSTOPped: it steps down before another candidate starts leading", async (t) => {
    const dir = tempDir(t);
    const logFile = path.join(dir, 'fence.log');
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const [a, b, c] = zk3.ensemble.servers;
    // The leader can reach only server a; the others only b and c.
    const first = fixtures.add(startFixture(node, CONTENDER, [`127.0.0.1:${a!.clientPort}`, 'cluster', logFile, '1500']));
    await first.next('running');
    const others = [bun, node].map(selected).map((r) =>
      fixtures.add(startFixture(r, CONTENDER, [`127.0.0.1:${b!.clientPort},127.0.0.1:${c!.clientPort}`, 'cluster', logFile, '1500'])),
    );
    await Promise.all(others.map((f) => f.next('contending')));
    const next = firstTo(others, 'running');
    a!.pause();
    t.after(() => a!.resume());
    await first.next('stopped');
    await next;
    a!.resume();
    // The fence log proves the order: the old leader's stop comes before the new leader's start.
    assert.equal(checkFenceLog(logFile).length, 2);
    assert.equal((await first.next('demoted'))['reason'], 'lost');
  });
});
