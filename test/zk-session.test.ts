import assert from 'node:assert/strict';
import { type TestContext, describe, test } from 'node:test';
import { type BellwetherError, type NodeEvent, SESSION_EXPIRED_EXIT_CODE, ZkSession, type ZkSessionOptions } from 'bellwether';
import { Fixtures, startFixture } from './helpers/child.js';
import { bounded } from './helpers/bounded.js';
import { freePort } from './helpers/ports.js';
import { nextZk } from './helpers/emitter.js';
import { RUNTIMES, fixture } from './helpers/runtimes.js';
import { startProxy, throughProxy } from './helpers/sessions.js';
import { expireSession, fourLetterWord, idBuffer, useZooKeeper } from './helpers/zookeeper.js';

function openSession(t: TestContext, connect: string, options: Partial<ZkSessionOptions> = {}): ZkSession {
  // 1 s: expiry stays fast (tickTime 50), and a loaded 2-core machine does not make a healthy session look silent.
  const zk = new ZkSession({ connect, sessionTimeout: 1000, ...options });
  zk.on('error', (err) => t.diagnostic(`session error: ${err.code} ${err.message}`));
  t.after(() => zk.close());
  return zk;
}

/** Records the names of a session's events in order. */
function recordEvents(zk: ZkSession): string[] {
  const seen: string[] = [];
  for (const event of ['connected', 'suspended', 'reconnected', 'expired', 'closed'] as const) zk.on(event, () => seen.push(event));
  return seen;
}

/** Resolves with the first `count` deliveries to a handler. */
function collector<T>(count: number): { handler: (event: T) => void; events: T[]; done: Promise<T[]> } {
  const events: T[] = [];
  let resolve!: (events: T[]) => void;
  const done = new Promise<T[]>((r) => (resolve = r));
  return {
    events,
    done,
    handler: (event) => {
      events.push(event);
      if (events.length === count) resolve(events);
    },
  };
}

describe('ZkSession on one server', () => {
  const zk1 = useZooKeeper();
  for (const runtime of RUNTIMES) {
    test(`${runtime.name}: close() from a suspended listener: the client does not connect again, and the process exits`, async (t) => {
      const proxy = await startProxy(t, zk1.ensemble.servers[0]!.clientPort);
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const client = fixtures.add(startFixture(runtime, fixture('zk-close-on-suspend'), [`127.0.0.1:${proxy.port}`]));
      client.child.stdin!.end();
      await client.next('started');
      const before = proxy.connections;
      proxy.drop();
      await client.next('closed');
      assert.deepEqual(await bounded('the process exits', client.exited, 10_000), { code: 0, signal: null }, client.stderr);
      assert.equal(proxy.connections - before, 0, 'a connection was made after close()');
    });
  }
  const connect = (): string => zk1.ensemble.connectString();
  const port = (): number => zk1.ensemble.servers[0]!.clientPort;

  test('operations round trip, with ZooKeeper errors mapped to codes', async (t) => {
    const zk = openSession(t, connect());
    await zk.start();
    assert.equal(zk.state, 'connected');
    assert.match(zk.sessionId!, /^[0-9a-f]+$/);
    await zk.create('/ops', 'one');
    assert.equal((await zk.get('/ops')).data.toString(), 'one');
    assert.equal((await zk.set('/ops', 'two', 0)).version, 1);
    await assert.rejects(zk.set('/ops', 'three', 0), { code: 'BW_ERR_ZK_BAD_VERSION' });
    await assert.rejects(zk.create('/ops'), { code: 'BW_ERR_ZK_NODE_EXISTS' });
    const missing = await zk.get('/nope').catch((err: { code: string; cause: { getCode(): number } }) => err);
    assert.equal((missing as { code: string }).code, 'BW_ERR_ZK_NO_NODE');
    assert.equal((missing as { cause: { getCode(): number } }).cause.getCode(), -101, 'the ZooKeeper code is kept as cause');
    assert.equal(await zk.exists('/nope'), null);
    const seq = await zk.create('/ops/item-', '', { mode: 'persistent-sequential' });
    assert.match(seq, /^\/ops\/item-\d{10}$/);
    const eph = await zk.create('/ops/eph', '', { mode: 'ephemeral' });
    assert.equal((await zk.exists(eph))!.ephemeralOwner, zk.sessionId);
    assert.deepEqual(await zk.children('/ops'), ['eph', seq.split('/')[2]]);
    await assert.rejects(zk.delete('/ops'), { code: 'BW_ERR_ZK_NOT_EMPTY' });
    await assert.rejects(zk.delete(eph, 5), { code: 'BW_ERR_ZK_BAD_VERSION' });
    await zk.delete(eph, 0);

    await zk.transaction().create('/ops/tx', 'a').set('/ops', 'in tx').commit();
    assert.equal((await zk.get('/ops/tx')).data.toString(), 'a');
    // All or nothing: the failing check undoes the create before it.
    await assert.rejects(zk.transaction().create('/ops/tx2').check('/ops', 99).commit());
    assert.equal(await zk.exists('/ops/tx2'), null);
    await zk.sync('/ops');

    await zk.mkdirp('/ops/a/b/c/d/e');
    await zk.mkdirp('/ops/a/b/c/d/e'); // idempotent
    await zk.create('/ops/a/b/c/d/e/f', 'leaf');
    await zk.create('/ops/a/sibling');
    await zk.removeRecursive('/ops');
    assert.equal(await zk.exists('/ops'), null, 'removeRecursive removed a 7-level tree');
    await zk.removeRecursive('/ops'); // a missing tree is fine
  });

  test('expiry: a new session with every declared ephemeral and watch restored, onConnected again', async (t) => {
    const zk = openSession(t, connect());
    const seen = recordEvents(zk);
    const connectedIds: string[] = [];
    let secondOnConnected!: () => void;
    const onConnectedTwice = new Promise<void>((resolve) => (secondOnConnected = resolve));
    zk.onConnected(({ sessionId }) => {
      connectedIds.push(sessionId);
      if (connectedIds.length === 2) secondOnConnected();
    });
    const expiredIds: string[] = [];
    zk.onExpire(({ sessionId }) => void expiredIds.push(sessionId));
    const deliveries = collector<NodeEvent>(1);
    const subscription = zk.watch('/expiry/watched', deliveries.handler);
    await zk.ephemeral('/expiry/eph', 'mine');
    await zk.start();
    assert.equal(await subscription.ready, null);
    const first = zk.sessionId!;
    assert.equal((await zk.exists('/expiry/eph'))!.ephemeralOwner, first);

    const connected = nextZk(zk, 'connected');
    await expireSession(port(), idBuffer(first), zk.sessionPassword!);
    const { sessionId: second } = await connected;
    await onConnectedTwice;
    assert.notEqual(second, first);
    // The injection itself takes our session over first (suspended, reconnected) before closing it.
    assert.deepEqual(seen.filter((e) => e === 'connected' || e === 'expired'), ['connected', 'expired', 'connected']);
    assert.deepEqual(connectedIds, [first, second]);
    assert.deepEqual(expiredIds, [first]);
    assert.equal((await zk.exists('/expiry/eph'))!.ephemeralOwner, second, 'the ephemeral belongs to the new session');

    const other = openSession(t, connect());
    await other.start();
    await other.create('/expiry/watched', 'after');
    const [event] = await deliveries.done;
    assert.equal(event?.type, 'created');
    assert.equal(event?.type === 'created' && event.data.toString(), 'after');
    await other.removeRecursive('/expiry');
  });

  test('expiry with 100 watches and 100 ephemerals, 10 times: every ephemeral restored, every watch delivers what changed while away', { timeout: 60_000 }, async (t) => {
    // Through a proxy, so the client is away (blackholed) while the session expires and the nodes change.
    // With connectTimeout 60 s, a retry stuck behind the restore would hang past this test's timeout.
    const { proxy, zk } = await throughProxy(t, port(), { connectTimeout: 60_000 });
    const setup = openSession(t, connect());
    await setup.start();
    for (let i = 0; i < 100; i++) await setup.mkdirp(`/many/w-${i}`);
    const last: (NodeEvent | undefined)[] = [];
    for (let i = 0; i < 100; i++) {
      await zk.ephemeral(`/many/e/${i}`);
      zk.watch(`/many/w-${i}`, (event) => void (last[i] = event));
    }
    await zk.start();
    for (let round = 0; round < 10; round++) {
      const before = zk.sessionId!;
      const connected = nextZk(zk, 'connected');
      proxy.mode = 'blackhole';
      await expireSession(port(), idBuffer(before), zk.sessionPassword!);
      await Promise.all(Array.from({ length: 100 }, (_, i) => setup.set(`/many/w-${i}`, `round ${round}`)));
      proxy.drop();
      proxy.mode = 'pass'; // after the drop: what the partition held is lost with its connections
      const { sessionId } = await bounded('new session', connected, 20_000);
      assert.notEqual(sessionId, before);
      const owners = await Promise.all(Array.from({ length: 100 }, (_, i) => setup.exists(`/many/e/${i}`)));
      assert.ok(owners.every((stat) => stat?.ephemeralOwner === sessionId), `round ${round}: every ephemeral restored`);
      // Re-armed (delivering the difference) before the new session was announced.
      const stale = last.flatMap((event, i) => (event?.type === 'changed' && event.data.toString() === `round ${round}` ? [] : [i]));
      assert.deepEqual(stale, [], `round ${round}: watches that did not deliver the change made while away`);
    }
    await setup.removeRecursive('/many');
  });

  test('a node deleted and created again before its watch re-arms: the handler sees both (told apart by czxid) and the final state', async (t) => {
    const zk = openSession(t, connect());
    const writer = openSession(t, connect());
    await Promise.all([zk.start(), writer.start()]);
    await writer.create('/race', 'first');
    const deliveries = collector<NodeEvent>(2);
    const subscription = zk.watch('/race', deliveries.handler);
    assert.equal((await subscription.ready)!.data.toString(), 'first');
    const notifications = zk.notifications;
    // One transaction: no read can fall between the delete and the create. The watch fires once
    // (deleted), and its re-arming read finds a node with another czxid: both events come from that.
    await writer.transaction().delete('/race').create('/race', 'second').commit();
    const events = await deliveries.done;
    assert.deepEqual(events.map((e) => e.type), ['deleted', 'created']);
    assert.equal(zk.notifications - notifications, 1, 'one notification: the second event came from the czxid');
    assert.equal(events[1]!.type === 'created' && events[1]!.data.toString(), 'second');
    await writer.delete('/race');
  });

  test('a handler that throws is reported as error and delivery goes on', async (t) => {
    const zk = new ZkSession({ connect: connect(), sessionTimeout: 1000 });
    t.after(() => zk.close());
    const writer = openSession(t, connect());
    await Promise.all([zk.start(), writer.start()]);
    const errors: BellwetherError[] = [];
    zk.on('error', (err) => void errors.push(err));
    const boom = new Error('handler bug');
    // One event at a time: a change made before the re-arming read is folded into it.
    const created = collector<NodeEvent>(1);
    const changed = collector<NodeEvent>(1);
    await zk.watch('/throws', (event) => {
      (event.type === 'created' ? created : changed).handler(event);
      if (event.type === 'created') throw boom;
    }).ready;
    await writer.create('/throws', 'a');
    await created.done;
    await writer.set('/throws', 'b');
    assert.equal((await changed.done)[0]?.type, 'changed');
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'BW_ERR_CALLBACK_FAILED');
    assert.equal(errors[0]!.cause, boom);
    assert.equal(zk.state, 'connected');
    await writer.delete('/throws');
  });

  test('close() ends the session on the server: its ephemerals vanish at once, not after the timeout', async (t) => {
    const observer = openSession(t, connect());
    await observer.start();
    {
      // A long timeout: only an explicit close can make the node go this fast.
      await using zk = new ZkSession({ connect: connect(), sessionTimeout: 30_000 });
      await zk.start();
      await zk.ephemeral('/closing/eph');
      assert.notEqual(await observer.exists('/closing/eph'), null);
      const closed = nextZk(zk, 'closed');
      await zk.close();
      await closed;
      assert.equal(zk.state, 'closed');
      await assert.rejects(zk.get('/closing'), { code: 'BW_ERR_CLOSED' });
    } // leaving the block disposes it again: harmless
    assert.equal(await observer.exists('/closing/eph'), null);
    await observer.removeRecursive('/closing');
  });

  test('settings() carries what a forked process needs, never the session itself', async (t) => {
    const zk = openSession(t, `${connect()}/app`, {
      auth: [{ scheme: 'digest', credentials: 'u:p' }],
      onExpire: 'exit',
    });
    const settings = zk.settings();
    assert.deepEqual(settings, {
      connect: `${connect()}/app`,
      sessionTimeout: 1000,
      connectTimeout: 15_000,
      onExpire: 'exit',
      auth: [{ scheme: 'digest', credentials: 'u:p' }],
      retry: { attempts: 3, initialDelay: 50, maxDelay: 2000 },
    });
    assert.deepEqual(JSON.parse(JSON.stringify(settings)), settings, 'plain data, passable through an environment variable');
    assert.equal(new ZkSession(settings).state, 'latent');
  });

  test('pause() holds deliveries (nothing dropped); resume() delivers them in order', async (t) => {
    const zk = openSession(t, connect());
    const writer = openSession(t, connect());
    await Promise.all([zk.start(), writer.start()]);
    await writer.create('/paused', 'v0');
    const events: NodeEvent[] = [];
    let sawLast!: () => void;
    const last = new Promise<void>((resolve) => (sawLast = resolve));
    await zk.watch('/paused', (event) => {
      events.push(event);
      if (event.type === 'changed' && event.data.toString() === 'v3') sawLast();
    }).ready;
    zk.pause();
    for (const value of ['v1', 'v2', 'v3']) {
      await writer.set('/paused', value);
      // Our session sees the notification before it sees the new data.
      while ((await zk.get('/paused')).data.toString() !== value);
    }
    assert.equal(events.length, 0, 'nothing delivered while paused');
    zk.resume();
    await last;
    // Changes read in one re-arm are folded together; what arrives is in order, each once, and ends with the final state.
    const values = events.map((e) => (e.type === 'changed' ? e.data.toString() : e.type));
    assert.deepEqual(values, [...new Set(values)].sort());
    assert.equal(values.at(-1), 'v3');
    assert.ok(values.every((v) => /^v[123]$/.test(v)));
    await writer.delete('/paused');
  });

  test('pause() holds session events and onExpire/onConnected callbacks too (an expiry during a fork); resume() runs them in order, each async one finished before the next', async (t) => {
    const zk = openSession(t, connect(), { sessionTimeout: 2000 });
    const order: string[] = [];
    for (const event of ['connected', 'expired'] as const) zk.on(event, () => void order.push(event));
    let secondSession!: () => void;
    const second = new Promise<void>((resolve) => (secondSession = resolve));
    let sessions = 0;
    zk.onConnected(async () => {
      const n = ++sessions;
      order.push(`onConnected ${n} start`);
      await new Promise((resolve) => setTimeout(resolve, 20));
      order.push(`onConnected ${n} end`);
      if (n === 2) secondSession();
    });
    zk.onExpire(async () => {
      order.push('onExpire start');
      await new Promise((resolve) => setTimeout(resolve, 20));
      order.push('onExpire end');
    });
    await zk.start();
    await bounded('first onConnected', (async () => {
      while (!order.includes('onConnected 1 end')) await new Promise((resolve) => setTimeout(resolve, 5));
    })(), 5000);
    const first = zk.sessionId!;
    zk.pause();
    const held = order.length;
    await expireSession(port(), idBuffer(first), zk.sessionPassword!);
    // Deliveries are held on purpose, so there is no event to await: the state is polled (bounded).
    await bounded('new session while paused', (async () => {
      while (zk.state !== 'connected' || zk.sessionId === first) await new Promise((resolve) => setTimeout(resolve, 5));
    })(), 10_000);
    await zk.sync();
    assert.deepEqual(order.slice(held), [], 'nothing delivered while paused');
    zk.resume();
    await bounded('second onConnected', second, 5000);
    assert.deepEqual(order.slice(held), ['expired', 'onExpire start', 'onExpire end', 'connected', 'onConnected 2 start', 'onConnected 2 end']);
  });

  test('a stalled server (SIGSTOP) is noticed before the session could expire, not when TCP gives up', async (t) => {
    const zk = openSession(t, connect(), { sessionTimeout: 2000 });
    const seen = recordEvents(zk);
    await zk.start();
    const timeout = zk.timeout!;
    const before = zk.sessionId;
    const suspended = nextZk(zk, 'suspended');
    const server = zk1.ensemble.servers[0]!;
    const stoppedAt = performance.now();
    server.pause();
    try {
      const { reason } = await suspended;
      const after = performance.now() - stoppedAt;
      assert.equal(reason, 'silent');
      // Heard last at most a ping interval (timeout/3) before the stop, then silence for 2/3: the
      // suspension must come before the server could expire the session (its whole point).
      assert.ok(after < timeout, `suspended after ${after.toFixed(0)} ms, negotiated timeout ${timeout} ms`);
    } finally {
      server.resume();
    }
    // Resumed before the timeout ran out: the same session is back, nothing expired.
    await nextZk(zk, 'reconnected');
    assert.equal(zk.sessionId, before);
    assert.deepEqual(seen, ['connected', 'suspended', 'reconnected']);
    await zk.exists('/');
  });

  test('digest auth: a creator-only node is readable by the same credentials only, also after expiry', async (t) => {
    const auth = [{ scheme: 'digest' as const, credentials: 'app:secret' }];
    const owner = openSession(t, connect(), { auth });
    const stranger = openSession(t, connect());
    await Promise.all([owner.start(), stranger.start()]);
    await owner.create('/private', 'secret', { acl: 'creator' });
    await assert.rejects(stranger.get('/private'), { code: 'BW_ERR_ZK_NO_AUTH' });
    const connected = nextZk(owner, 'connected');
    await expireSession(port(), idBuffer(owner.sessionId!), owner.sessionPassword!);
    await connected;
    assert.equal((await owner.get('/private')).data.toString(), 'secret', 'credentials are sent again in the new session');
    await owner.delete('/private');
  });

  for (const runtime of RUNTIMES) {
    test(`${runtime.name}: a session in a child process does operations, and is restored after expiry`, async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const child = fixtures.add(startFixture(runtime, fixture('zk-client'), [connect(), 'reopen', `c-${runtime.name}`]));
      const started = await child.next('started');
      child.send('ops');
      const ops = await child.next('ops');
      assert.equal(ops['bad'], 'BW_ERR_ZK_BAD_VERSION');
      assert.equal(ops['got'], 'v1');
      assert.deepEqual(ops['children'], ['a', String(ops['created']).split('/').pop()]);
      assert.equal(ops['gone'], true);

      await expireSession(port(), idBuffer(String(started['sessionId'])), Buffer.from(String(started['password']), 'hex'));
      const onConnected = await child.next('onConnected', (e) => e['sessionId'] !== started['sessionId']);
      const order = ['connected', 'onConnected', 'expired', 'onExpire'];
      assert.deepEqual(
        child.events.map((e) => e.event).filter((e) => order.includes(e)),
        ['connected', 'onConnected', 'expired', 'onExpire', 'connected', 'onConnected'],
      );
      const zk = openSession(t, connect());
      await zk.start();
      assert.equal((await zk.exists(`/clients/c-${runtime.name}`))!.ephemeralOwner, onConnected['sessionId']);
    });

    test(`${runtime.name}: onExpire 'exit' runs the onExpire callbacks, then exits with code ${SESSION_EXPIRED_EXIT_CODE}`, async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const child = fixtures.add(startFixture(runtime, fixture('zk-client'), [connect(), 'exit', `x-${runtime.name}`]));
      const started = await child.next('started');
      await expireSession(port(), idBuffer(String(started['sessionId'])), Buffer.from(String(started['password']), 'hex'));
      assert.deepEqual(await child.exited, { code: SESSION_EXPIRED_EXIT_CODE, signal: null });
      assert.ok(child.count('onExpire') === 1, 'onExpire ran before the exit');
      assert.equal(child.count('onConnected'), 1, 'no second session');
    });
  }
});

describe('ZkSession: declared ephemerals that another session still holds', () => {
  const zk1 = useZooKeeper();

  test('a worker restarted before its old session expired: its ephemeral is made again once the old node goes', async (t) => {
    const old = openSession(t, zk1.ensemble.connectString(), { sessionTimeout: 2000 });
    await old.start();
    await old.ephemeral('/restarted/worker-0', 'old');
    const fresh = openSession(t, zk1.ensemble.connectString(), { sessionTimeout: 2000 });
    const errors: string[] = [];
    fresh.on('error', (err) => void errors.push(err.code));
    await fresh.start();
    await fresh.ephemeral('/restarted/worker-0', 'new'); // held by the old session: not ours yet
    const gone = collector<NodeEvent>(2);
    const before = await fresh.watch('/restarted/worker-0', gone.handler).ready;
    assert.equal(before?.stat.ephemeralOwner, old.sessionId, 'held by the old session');
    await old.close(); // the old session ends (as its expiry would)
    const events = await bounded('deleted, then created again', gone.done, 5000);
    assert.deepEqual(events.map((e) => e.type), ['deleted', 'created']);
    const { data, stat } = await fresh.get('/restarted/worker-0');
    assert.equal(data.toString(), 'new');
    assert.equal(stat.ephemeralOwner, fresh.sessionId);
    assert.deepEqual(errors, [], 'waiting for the old node is not an error');
  });
});

describe('ZkSession on a 3-server ensemble', () => {
  const zk3 = useZooKeeper({ servers: 3 });

  test('sync() across servers: a read on another server after sync() sees every write committed before it (50 rounds)', async (t) => {
    const [one, two] = zk3.ensemble.servers;
    const writer = openSession(t, `127.0.0.1:${one!.clientPort}`, { sessionTimeout: 4000 });
    const reader = openSession(t, `127.0.0.1:${two!.clientPort}`, { sessionTimeout: 4000 });
    await Promise.all([writer.start(), reader.start()]);
    await writer.create('/synced', 'v0');
    for (let round = 1; round <= 50; round++) {
      await writer.set('/synced', `v${round}`);
      await reader.sync();
      assert.equal((await reader.get('/synced')).data.toString(), `v${round}`, `round ${round}`);
    }
    await writer.delete('/synced');
  });

  test('killing the server the client is on: suspended, then reconnected to the same session; watches still fire', async (t) => {
    const zk = openSession(t, zk3.ensemble.connectString(), { sessionTimeout: 4000 });
    const seen = recordEvents(zk);
    await zk.start();
    const sessionId = zk.sessionId!;
    const deliveries = collector<NodeEvent>(1);
    await zk.watch('/failover', deliveries.handler).ready;
    // Which server holds our connection: its `cons` lists our session id.
    let ours: (typeof zk3.ensemble.servers)[number] | undefined;
    for (const server of zk3.ensemble.servers) {
      if ((await fourLetterWord(server.clientPort, 'cons')).includes(`sid=0x${sessionId}`)) ours = server;
    }
    assert.ok(ours, 'found the server the session is connected to');
    const suspended = nextZk(zk, 'suspended');
    const reconnected = nextZk(zk, 'reconnected');
    await ours.kill();
    t.after(() => ours.start());
    assert.equal((await suspended).reason, 'disconnected');
    assert.equal((await reconnected).sessionId, sessionId);
    assert.equal(zk.sessionId, sessionId);

    const writer = openSession(t, zk3.ensemble.connectString(), { sessionTimeout: 4000 });
    await writer.start();
    await writer.create('/failover', 'x');
    assert.equal((await deliveries.done)[0]!.type, 'created');
    assert.deepEqual(seen, ['connected', 'suspended', 'reconnected']);
    await writer.delete('/failover');
  });
});

describe('ZkSession: close() while the first connection is still being made', () => {
  for (const runtime of RUNTIMES) {
    test(`${runtime.name}: start() rejects with BW_ERR_CLOSED and nothing of the client holds the process (it exits at once, not after the 30 s connect timer)`, async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const client = fixtures.add(startFixture(runtime, fixture('zk-close-connecting'), [`127.0.0.1:${await freePort()}`]));
      client.child.stdin!.end();
      assert.deepEqual(await bounded('the process exits', client.exited, 10_000), { code: 0, signal: null }, client.stderr);
      assert.equal(client.events.find((e) => e.event === 'closed')?.['start'], 'BW_ERR_CLOSED');
    });
  }
});

describe('ZkSession: bad input fails before any network I/O', () => {
  const bad: [string, unknown, string][] = [
    ['empty connect string', { connect: '' }, 'BW_ERR_INVALID_CONNECT_STRING'],
    ['no port', { connect: 'localhost' }, 'BW_ERR_INVALID_CONNECT_STRING'],
    ['port out of range', { connect: '127.0.0.1:99999' }, 'BW_ERR_INVALID_CONNECT_STRING'],
    ['empty server', { connect: '127.0.0.1:2181,,127.0.0.1:2182' }, 'BW_ERR_INVALID_CONNECT_STRING'],
    ['chroot with a trailing slash', { connect: '127.0.0.1:2181/app/' }, 'BW_ERR_INVALID_CONNECT_STRING'],
    ['chroot with an empty segment', { connect: '127.0.0.1:2181/a//b' }, 'BW_ERR_INVALID_CONNECT_STRING'],
    ['unknown option', { connect: '127.0.0.1:2181', timeout: 5 }, 'BW_ERR_INVALID_OPTION'],
    ['negative session timeout', { connect: '127.0.0.1:2181', sessionTimeout: -1 }, 'BW_ERR_INVALID_OPTION'],
    ['bad onExpire', { connect: '127.0.0.1:2181', onExpire: 'retry' }, 'BW_ERR_INVALID_OPTION'],
    ['auth not digest', { connect: '127.0.0.1:2181', auth: [{ scheme: 'ip', credentials: 'a:b' }] }, 'BW_ERR_INVALID_OPTION'],
    ['auth without a password', { connect: '127.0.0.1:2181', auth: [{ scheme: 'digest', credentials: 'user' }] }, 'BW_ERR_INVALID_OPTION'],
  ];
  for (const [what, options, code] of bad) {
    test(what, () => assert.throws(() => new ZkSession(options as ZkSessionOptions), { name: 'BellwetherError', code }));
  }

  test('IPv6 and chroot connect strings are accepted', () => {
    assert.equal(new ZkSession({ connect: '[::1]:2181,127.0.0.1:2182/app/x' }).state, 'latent');
  });

  test('bad paths are refused before they are sent', async (t) => {
    // Port 1 on loopback: nothing listens; the path check comes first anyway.
    const zk = openSession(t, '127.0.0.1:1', { connectTimeout: 1 });
    for (const path of ['relative', '/trailing/', '//double', '/a/./b', '/a/../b', '']) {
      await assert.rejects(zk.get(path), { code: 'BW_ERR_INVALID_PATH' }, path);
      assert.throws(() => zk.watch(path, () => {}), { code: 'BW_ERR_INVALID_PATH' }, path);
    }
    await assert.rejects(zk.get('/fine'), { code: 'BW_ERR_INVALID_OPTION' }, 'operations need start()');
  });

  test('no server: start() fails with BW_ERR_ZK_CONNECT_TIMEOUT and leaves nothing running', async (t) => {
    const zk = openSession(t, '127.0.0.1:1', { connectTimeout: 300 });
    await assert.rejects(zk.start(), { code: 'BW_ERR_ZK_CONNECT_TIMEOUT' });
    assert.equal(zk.state, 'closed');
  });
});
