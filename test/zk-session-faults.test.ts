/**
 * ZkSession under faults placed at an exact point of the conversation with
 * the server (a TCP proxy that sees every chunk): a connection cut or gone
 * silent while a new session is restored, declarations made during that
 * restore, a one-shot watch retried across an expiry, a watched node that
 * flickers between the reads of a re-arm.
 */
import assert from 'node:assert/strict';
import { type TestContext, describe, test } from 'node:test';
import type { NodeEvent, ZkSession } from 'bellwether';
import { bounded } from './helpers/bounded.js';
import { nextZk } from './helpers/emitter.js';
import { openSession, throughProxy } from './helpers/sessions.js';
import type { TcpProxy } from './helpers/tcp-proxy.js';
import { expireSession, idBuffer, useZooKeeper } from './helpers/zookeeper.js';



/** Error codes a session reports, and the names of its events, in order. */
function record(zk: ZkSession): { errors: string[]; events: string[] } {
  const seen = { errors: [] as string[], events: [] as string[] };
  zk.on('error', (err) => void seen.errors.push(`${err.code}: ${err.message}`));
  for (const event of ['connected', 'suspended', 'reconnected', 'expired'] as const) zk.on(event, () => seen.events.push(event));
  return seen;
}

/** The first request a client sends on connection 1 after its connect request (the start of the restore). */
function firstRequest(proxy: TcpProxy, action: (chunk: { data: Buffer }) => 'forward' | 'discard' | 'cut'): Promise<void> {
  let clientChunks = 0;
  return new Promise((resolve) => {
    const previous = proxy.tap;
    proxy.tap = (chunk) => {
      if (chunk.connection !== 1 || chunk.from !== 'client' || ++clientChunks !== 2) return previous?.(chunk);
      resolve();
      return action(chunk);
    };
  });
}

/** Resolves when `path` exists with the given ephemeral owner, seen through another session's watch. */
async function ownedBy(zk: ZkSession, path: string, owner: () => string | undefined): Promise<void> {
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  const check = (stat: { ephemeralOwner: string } | undefined | null): void => {
    if (stat && stat.ephemeralOwner === owner()) resolve();
  };
  const sub = zk.watch(path, (event) => check(event.type === 'deleted' ? null : event.stat));
  try {
    check((await sub.ready)?.stat);
    await bounded(`${path} owned by the session`, done, 10_000);
  } finally {
    sub.close();
  }
}

describe('ZkSession: faults while a new session is being restored', () => {
  const zk1 = useZooKeeper();
  const port = (): number => zk1.ensemble.servers[0]!.clientPort;

  test('the connection is cut during the restore: start() waits for the session to be back and restored, connected once', async (t) => {
    const { proxy, zk } = await throughProxy(t, port());
    const seen = record(zk);
    const onConnected: string[] = [];
    zk.onConnected(({ sessionId }) => void onConnected.push(sessionId));
    await zk.ephemeral('/restore-cut/e');
    const cut = firstRequest(proxy, () => 'cut');
    const other = openSession(t, zk1.ensemble.connectString());
    await other.start();
    await zk.start();
    await cut;
    assert.ok(proxy.connections >= 2, 'start() resolved on the connection that was cut');
    assert.equal((await other.exists('/restore-cut/e'))?.ephemeralOwner, zk.sessionId, 'start() resolved before the restore');
    await zk.sync(); // a round trip: a second announcement of the same session would be queued by now
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen.events, ['connected']);
    assert.deepEqual(onConnected, [zk.sessionId], 'onConnected ran once for the session');
    assert.deepEqual(seen.errors, []);
  });

  test('the server goes silent during the restore: the session leaves it within the liveness bound and comes up', async (t) => {
    const { proxy, zk } = await throughProxy(t, port(), { sessionTimeout: 1500, connectTimeout: 10_000 });
    // Connection 1: the handshake passes, then nothing more either way (a partition TCP does not see).
    let serverChunks = 0;
    let clientChunks = 0;
    proxy.tap = ({ connection, from }) => {
      if (connection !== 1) return 'forward';
      const n = from === 'client' ? ++clientChunks : ++serverChunks;
      return n === 1 ? 'forward' : 'discard';
    };
    const seen = record(zk);
    await zk.ephemeral('/restore-silent/e');
    const other = openSession(t, zk1.ensemble.connectString());
    await other.start();
    await zk.start();
    assert.ok(proxy.connections >= 2, 'a second connection was made');
    assert.equal((await other.exists('/restore-silent/e'))?.ephemeralOwner, zk.sessionId);
    assert.deepEqual(seen.events, ['connected']);
    assert.deepEqual(seen.errors, []);
  });

  test('ephemeral() and watch() declared during a restore act on that session', async (t) => {
    const { proxy, zk } = await throughProxy(t, port());
    const seen = record(zk);
    await zk.ephemeral('/during/first');
    // The restore's first request is held: the session exists, and is being restored.
    const holding = firstRequest(proxy, () => {
      proxy.mode = 'blackhole';
      return 'forward';
    });
    const other = openSession(t, zk1.ensemble.connectString());
    await other.start();
    const starting = zk.start();
    await holding;
    assert.equal(zk.state, 'connecting');
    const declared = zk.ephemeral('/during/late');
    const events: NodeEvent[] = [];
    let created!: () => void;
    const createdSeen = new Promise<void>((r) => (created = r));
    const sub = zk.watch('/during/watched', (event) => {
      events.push(event);
      if (event.type === 'created') created();
    });
    proxy.mode = 'pass';
    await starting;
    await declared;
    assert.equal(await sub.ready, null);
    assert.equal((await other.exists('/during/late'))?.ephemeralOwner, zk.sessionId, 'the ephemeral declared during the restore exists');
    await other.create('/during/watched', 'x');
    await bounded('the watch declared during the restore fires', createdSeen, 5000);
    assert.deepEqual(events.map((e) => e.type), ['created']);
    assert.deepEqual(seen.errors, []);
  });
});

describe('ZkSession: a one-shot watch across an expiry; a watch on a flickering node', () => {
  const zk1 = useZooKeeper();

  test('existsWatch() retried across an expiry: it resolves in the new session, and its callback runs', async (t) => {
    const server = zk1.ensemble.servers[0]!;
    const { proxy, zk } = await throughProxy(t, server.clientPort);
    const seen = record(zk);
    await zk.start();
    const old = zk.sessionId!;
    proxy.mode = 'blackhole';
    let fired!: () => void;
    const firedOnce = new Promise<void>((r) => (fired = r));
    const pending = zk.existsWatch('/across/n', () => fired());
    await expireSession(server.clientPort, idBuffer(old), zk.sessionPassword!);
    const connected = nextZk(zk, 'connected');
    proxy.drop(); // the request in flight is lost: retried once a connection is up (in the new session)
    proxy.mode = 'pass'; // after the drop: what the partition held is lost with its connections
    await bounded('new session', connected, 10_000);
    assert.notEqual(zk.sessionId, old);
    assert.equal(await bounded('existsWatch', pending, 10_000), null);
    const other = openSession(t, zk1.ensemble.connectString());
    await other.start();
    await other.mkdirp('/across');
    await other.create('/across/n');
    await bounded('the callback of the retried existsWatch', firedOnce, 5000);
    assert.deepEqual(seen.events.filter((e) => e !== 'suspended'), ['connected', 'expired', 'connected']);
    assert.deepEqual(seen.errors, []);
  });

  test('twelve reads in flight when the connection drops: all retried, no MaxListenersExceededWarning (one listener per waiting retry)', async (t) => {
    const server = zk1.ensemble.servers[0]!;
    const { proxy, zk } = await throughProxy(t, server.clientPort);
    const seen = record(zk);
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    t.after(() => void process.off('warning', onWarning));
    await zk.start();
    await zk.mkdirp('/many-retries');
    proxy.mode = 'blackhole';
    const reads = Array.from({ length: 12 }, (_, i) => zk.exists(`/many-retries/${i}`));
    proxy.drop();
    proxy.mode = 'pass';
    assert.deepEqual(await bounded('the 12 reads', Promise.all(reads), 10_000), Array(12).fill(null));
    // A warning is emitted on the next tick of its cause: one turn of the event loop lets it come.
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning')), []);
    assert.deepEqual(seen.errors, []);
  });

  test('a node created and deleted over and over while its watches (re-)arm: every watch settles ready and goes on, no error', async (t) => {
    const zk = openSession(t, zk1.ensemble.connectString());
    const other = openSession(t, zk1.ensemble.connectString());
    const seen = record(zk);
    await Promise.all([zk.start(), other.start()]);
    await other.mkdirp('/flicker');
    const last: (NodeEvent | undefined)[] = [];
    const finals: Promise<void>[] = [];
    const subs = Array.from({ length: 20 }, (_, i) => {
      let final!: () => void;
      finals.push(new Promise<void>((r) => (final = r)));
      return zk.watch('/flicker/n', (event) => {
        last[i] = event;
        if (event.type !== 'deleted' && event.data.toString() === 'final') final();
      });
    });
    t.after(() => subs.forEach((s) => s.close()));
    // Each create is undone at once: the watches' reads often find it between an exists and a get.
    const flicker = (async () => {
      for (let i = 0; i < 400; i++) await Promise.all([other.create('/flicker/n'), other.delete('/flicker/n')]);
    })();
    const readies = Promise.all(subs.map((s) => s.ready));
    await flicker;
    await bounded('every watch ready', readies, 10_000);
    await other.create('/flicker/n', 'final');
    await bounded('every watch delivers the final state', Promise.all(finals), 10_000);
    assert.deepEqual(seen.errors, [], 'a node gone between two reads is not an error');
    assert.ok(last.every((e) => e?.type === 'created'));
  });
});

describe('ZkSession: what the README promises of calls, watches and errors', () => {
  const zk1 = useZooKeeper();
  const port = (): number => zk1.ensemble.servers[0]!.clientPort;

  test('reads made while suspended wait and are answered once the session is back; with retry.attempts 0 a lost read fails with BW_ERR_ZK_CONNECTION_LOSS', async (t) => {
    const { proxy, zk } = await throughProxy(t, port());
    const strict = openSession(t, `127.0.0.1:${proxy.port}`, { retry: { attempts: 0 } });
    const other = openSession(t, zk1.ensemble.connectString());
    await Promise.all([zk.start(), strict.start(), other.start()]);
    await other.create('/queued', 'v');
    const suspended = nextZk(zk, 'suspended');
    proxy.mode = 'blackhole';
    // Sent at once on the strict session's live connection, then held there by the partition.
    const lost = strict.get('/queued').then(
      () => 'answered',
      (err: { code: string }) => err.code,
    );
    await bounded('suspended', suspended, 5000);
    const read = zk.get('/queued');
    const exists = zk.exists('/queued');
    const reconnected = nextZk(zk, 'reconnected');
    proxy.drop();
    proxy.mode = 'pass'; // after the drop: what the partition held is lost with its connections
    await bounded('reconnected', reconnected, 10_000);
    assert.equal((await bounded('the queued read', read, 10_000)).data.toString(), 'v');
    assert.notEqual(await exists, null);
    // The strict session's read was sent on a connection that got no answer, then was cut: not retried.
    assert.equal(await lost, 'BW_ERR_ZK_CONNECTION_LOSS');
  });

  test("an ephemeral whose create was applied but whose answer was lost is found as ours: no error, no second try needed", async (t) => {
    const { proxy, zk } = await throughProxy(t, port());
    const seen = record(zk);
    const other = openSession(t, zk1.ensemble.connectString());
    await Promise.all([zk.start(), other.start()]);
    // Forward the create; cut the connection at the server's next chunk (its answer).
    let cutAnswer = false;
    proxy.tap = ({ from, data }) => {
      if (from === 'client' && data.includes(Buffer.from('/answer-lost'))) cutAnswer = true;
      else if (from === 'server' && cutAnswer) {
        proxy.tap = undefined;
        return 'cut';
      }
      return 'forward';
    };
    const reconnected = nextZk(zk, 'reconnected');
    await zk.ephemeral('/answer-lost', 'mine');
    await bounded('reconnected', reconnected, 10_000);
    // Two round trips: the restore's create (NODE_EXISTS) and its ownership check are answered by then.
    await zk.sync();
    await zk.sync();
    assert.equal((await other.exists('/answer-lost'))?.ephemeralOwner, zk.sessionId);
    assert.deepEqual(seen.errors, [], 'our own node is not an error');
  });

  test('a write still waiting when its session expires fails with BW_ERR_ZK_SESSION_EXPIRED', async (t) => {
    const { proxy, zk } = await throughProxy(t, port());
    await zk.start();
    const old = zk.sessionId!;
    const suspended = nextZk(zk, 'suspended');
    const connections = proxy.connections;
    proxy.mode = 'blackhole';
    await bounded('suspended', suspended, 5000);
    // A new connection is being tried (its handshake held): a write made now waits in the client's queue.
    await bounded('reconnecting', (async () => {
      while (proxy.connections === connections) await new Promise((resolve) => setTimeout(resolve, 5));
    })(), 5000);
    await new Promise((resolve) => setImmediate(resolve));
    const write = zk.create('/away-write', 'x').then(
      () => 'created',
      (err: { code: string }) => err.code,
    );
    await expireSession(port(), idBuffer(old), zk.sessionPassword!);
    const connected = nextZk(zk, 'connected');
    proxy.drop();
    proxy.mode = 'pass';
    await bounded('new session', connected, 10_000);
    assert.equal(await write, 'BW_ERR_ZK_SESSION_EXPIRED');
  });

  test('a server that accepts TCP but never answers the handshake is left after the liveness delay', async (t) => {
    const { proxy, zk } = await throughProxy(t, port(), { sessionTimeout: 1500, connectTimeout: 10_000 });
    // Connection 1 is accepted and then says nothing at all.
    proxy.tap = ({ connection }) => (connection === 1 ? 'discard' : 'forward');
    await zk.start();
    assert.ok(proxy.connections >= 2);
    assert.equal(zk.state, 'connected');
  });

  test('watchChildren: a child deleted and created again under the same name in one transaction is a children event (pzxid)', async (t) => {
    const zk = openSession(t, zk1.ensemble.connectString());
    const other = openSession(t, zk1.ensemble.connectString());
    await Promise.all([zk.start(), other.start()]);
    await other.mkdirp('/kids/a');
    const events: { type: string; children?: string[] }[] = [];
    let seen!: () => void;
    const delivered = new Promise<void>((resolve) => (seen = resolve));
    const sub = zk.watchChildren('/kids', (event) => {
      events.push(event.type === 'deleted' ? event : { type: event.type, children: event.children });
      seen();
    });
    t.after(() => sub.close());
    assert.deepEqual((await sub.ready)?.children, ['a']);
    await other.transaction().delete('/kids/a').create('/kids/a').commit();
    await bounded('children event', delivered, 5000);
    assert.deepEqual(events, [{ type: 'children', children: ['a'] }]);
  });

  test("error codes: a read-only node refuses writes (BW_ERR_ZK_NO_AUTH); an ephemeral has no children (BW_ERR_ZK_NO_CHILDREN_FOR_EPHEMERALS)", async (t) => {
    const zk = openSession(t, zk1.ensemble.connectString());
    await zk.start();
    await zk.create('/frozen', 'v', { acl: 'read-only' });
    assert.equal((await zk.get('/frozen')).data.toString(), 'v');
    await assert.rejects(zk.set('/frozen', 'w'), { name: 'BellwetherError', code: 'BW_ERR_ZK_NO_AUTH' });
    await zk.ephemeral('/leaf');
    await assert.rejects(zk.create('/leaf/child'), { name: 'BellwetherError', code: 'BW_ERR_ZK_NO_CHILDREN_FOR_EPHEMERALS' });
  });
});

describe('ZkSession: credentials the server refuses', () => {
  // No digest provider on this server: digest credentials are refused (AUTHFAILED).
  const zk1 = useZooKeeper({ config: ['DigestAuthenticationProvider.enabled=false'] });

  test('refused credentials: start() rejects with BW_ERR_ZK_AUTH_FAILED (also an error event), the session is closed, never announced', async (t) => {
    const zk = openSession(t, zk1.ensemble.connectString(), { auth: [{ scheme: 'digest', credentials: 'app:secret' }], connectTimeout: 5000 });
    const seen = record(zk);
    const closed = nextZk(zk, 'closed');
    await assert.rejects(bounded('start()', zk.start(), 10_000), { name: 'BellwetherError', code: 'BW_ERR_ZK_AUTH_FAILED' });
    await bounded('closed', closed, 5000);
    assert.equal(zk.state, 'closed');
    assert.deepEqual(seen.errors.map((e) => e.split(':')[0]), ['BW_ERR_ZK_AUTH_FAILED']);
    assert.deepEqual(seen.events, [], 'never connected');
  });
});
