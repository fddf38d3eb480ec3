import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, test, type TestContext } from 'node:test';
import zookeeper, { type Client } from 'node-zookeeper-client';
import { bounded } from './helpers/bounded.js';
import { expireSession, fourLetterWord, useZooKeeper, type ZkEnsemble, type ZkServer } from './helpers/zookeeper.js';

const { CreateMode, State } = zookeeper;

/** No test waits forever: `within(ms, what, promise)`. */
const within = <T>(ms: number, what: string, promise: Promise<T>): Promise<T> => bounded(what, promise, ms);

/** A connected node-zookeeper-client client, closed when the test ends. */
async function connect(t: TestContext, connectString: string, sessionTimeout = 10_000): Promise<Client> {
  const client = zookeeper.createClient(connectString, { sessionTimeout, spinDelay: 20 });
  t.after(() => client.close());
  const connected = new Promise<void>((resolve) => client.once('connected', () => resolve()));
  client.connect();
  await within(10_000, `connecting to ${connectString}`, connected);
  return client;
}

function create(client: Client, path: string, data: string, mode = CreateMode.PERSISTENT): Promise<string> {
  return within(5_000, `create ${path}`, new Promise((resolve, reject) => client.create(path, Buffer.from(data), mode, (e, p) => (e ? reject(e) : resolve(p)))));
}

function getData(client: Client, path: string): Promise<string> {
  return within(5_000, `getData ${path}`, new Promise((resolve, reject) => client.getData(path, (e, data) => (e ? reject(e) : resolve(data.toString('utf8'))))));
}

/** Whether the node exists (the client reports a missing node as a null stat). */
function exists(client: Client, path: string): Promise<boolean> {
  return within(5_000, `exists ${path}`, new Promise((resolve, reject) => client.exists(path, (e, stat) => (e ? reject(e) : resolve(stat !== null)))));
}

async function modeOf(server: ZkServer): Promise<string | undefined> {
  return /^Mode: (\S+)/m.exec(await fourLetterWord(server.clientPort, 'srvr'))?.[1];
}

function assertAlive(pid: number): void {
  assert.doesNotThrow(() => process.kill(pid, 0), `process ${pid} is not alive`);
}

/** Asserts that no process has this pid any more. */
function assertGone(pid: number): void {
  assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `process ${pid} is still alive`);
}

function only<T>(items: readonly T[]): T {
  assert.equal(items.length, 1);
  return items[0]!;
}

describe('ZooKeeper harness: one standalone server', () => {
  const zk = useZooKeeper();
  // Read while the suite is being defined, before before() started the server.
  let earlyRead: unknown;
  try {
    earlyRead = zk.ensemble;
  } catch (error) {
    earlyRead = error;
  }

  test('useZooKeeper: the getter throws before the start, returns the ensemble after', () => {
    assert.ok(earlyRead instanceof Error);
    assert.match(earlyRead.message, /not started/);
    assert.equal(zk.ensemble.servers.length, 1);
  });

  test('the server serves: srvr says standalone, a client creates and reads a node', async (t) => {
    const ensemble = zk.ensemble;
    const server = only(ensemble.servers);
    assert.equal(server.id, 1);
    assert.ok(server.running);
    assert.equal(typeof server.pid, 'number');
    assertAlive(server.pid!);
    assert.equal(await modeOf(server), 'standalone');
    assert.equal(await ensemble.leader(), server);
    assert.equal(ensemble.connectString(), `127.0.0.1:${server.clientPort}`);
    assert.equal(ensemble.connectString('/app'), `127.0.0.1:${server.clientPort}/app`);
    await assert.rejects(server.start(), /already running/);

    const client = await connect(t, ensemble.connectString());
    assert.equal(await create(client, '/kept', 'v1'), '/kept');
    assert.equal(await getData(client, '/kept'), 'v1');
  });

  test('stop() then start() keeps the data dir and its data', async (t) => {
    const server = only(zk.ensemble.servers);
    const oldPid = server.pid!;
    await server.stop();
    assert.equal(server.running, false);
    assert.equal(server.pid, undefined);
    assertGone(oldPid);
    await assert.rejects(fourLetterWord(server.clientPort, 'srvr', 500));
    assert.ok(fs.existsSync(server.dataDir));

    await server.start();
    assert.ok(server.running);
    assert.notEqual(server.pid, oldPid);
    assert.equal(await modeOf(server), 'standalone');
    const client = await connect(t, zk.ensemble.connectString());
    assert.equal(await getData(client, '/kept'), 'v1');
  });

  test('expireSession(): the client gets EXPIRED and its ephemeral node is gone', async (t) => {
    const server = only(zk.ensemble.servers);
    // A long session timeout, so only expireSession() can expire it within this test.
    const client = await connect(t, zk.ensemble.connectString(), 20_000);
    await create(client, '/ephemeral', 'mine', CreateMode.EPHEMERAL);
    const expired = new Promise<void>((resolve) => {
      client.on('state', (state) => {
        if (state === State.EXPIRED) resolve();
      });
    });

    const started = performance.now();
    await expireSession(server.clientPort, client.getSessionId(), client.getSessionPassword());
    t.diagnostic(`expireSession took ${(performance.now() - started).toFixed(1)} ms`);
    await within(5_000, 'the EXPIRED state', expired);
    t.diagnostic(`EXPIRED seen after ${(performance.now() - started).toFixed(1)} ms`);

    const observer = await connect(t, zk.ensemble.connectString());
    assert.equal(await exists(observer, '/ephemeral'), false);
    assert.equal(await exists(observer, '/kept'), true); // the check itself can see nodes
    await assert.rejects(expireSession(server.clientPort, client.getSessionId(), client.getSessionPassword()), /not valid/);
  });

  test('pause(): srvr times out while paused; resume(): it answers again', async () => {
    const server = only(zk.ensemble.servers);
    server.pause();
    try {
      await assert.rejects(fourLetterWord(server.clientPort, 'srvr', 300), /no answer within 300 ms/);
      assert.ok(server.running);
    } finally {
      server.resume();
    }
    assert.match(await fourLetterWord(server.clientPort, 'srvr', 2_000), /^Mode: standalone$/m);
  });
});

describe('ZooKeeper harness: three-server ensemble', () => {
  const zk = useZooKeeper({ servers: 3 });
  // Every pid the harness had, to check after close().
  const pids = new Set<number>();
  const recordPids = (ensemble: ZkEnsemble): void => {
    for (const s of ensemble.servers) if (s.pid !== undefined) pids.add(s.pid);
  };

  test('exactly one leader, two followers', async () => {
    const ensemble = zk.ensemble;
    recordPids(ensemble);
    assert.deepEqual(
      ensemble.servers.map((s) => s.id),
      [1, 2, 3],
    );
    assert.equal(ensemble.connectString('/x'), `${ensemble.servers.map((s) => `127.0.0.1:${s.clientPort}`).join(',')}/x`);
    const modes = await Promise.all(ensemble.servers.map(modeOf));
    assert.deepEqual([...modes].sort(), ['follower', 'follower', 'leader']);
    const leader = await ensemble.leader();
    assert.equal(modes[ensemble.servers.indexOf(leader)], 'leader');
  });

  test('killing the leader leaves a working quorum; the old leader rejoins as follower', async (t) => {
    const ensemble = zk.ensemble;
    const leader = await ensemble.leader();
    const leaderPid = leader.pid!;
    await leader.kill();
    assert.equal(leader.running, false);
    assertGone(leaderPid);

    const started = performance.now();
    const newLeader = await ensemble.leader();
    t.diagnostic(`new leader after ${(performance.now() - started).toFixed(0)} ms`);
    assert.notEqual(newLeader, leader);
    const rest = ensemble.servers.filter((s) => s !== leader);
    const client = await connect(t, rest.map((s) => `127.0.0.1:${s.clientPort}`).join(','));
    await create(client, '/written-by-two', 'quorum');
    assert.equal(await getData(client, '/written-by-two'), 'quorum');

    await leader.start();
    recordPids(ensemble);
    assert.equal(await modeOf(leader), 'follower');
    // Reading through the rejoined server alone shows it synced with the new leader.
    const direct = await connect(t, `127.0.0.1:${leader.clientPort}`);
    assert.equal(await getData(direct, '/written-by-two'), 'quorum');
  });

  test('close() leaves no java process and no temp dir; a second close() is a no-op', async () => {
    const ensemble = zk.ensemble;
    recordPids(ensemble);
    assert.ok(pids.size >= 3, `recorded pids: ${[...pids].join(' ')}`);
    await ensemble.close();
    for (const pid of pids) assertGone(pid);
    for (const s of ensemble.servers) {
      assert.equal(s.running, false);
      assert.equal(s.pid, undefined);
      assert.equal(fs.existsSync(s.dataDir), false);
    }
    await ensemble.close();
  });
});
