import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { BellwetherError, ErrorCodes, ZkSession, singleton } from 'bellwether';
import bellwether from 'bellwether/fastify';
import { keepLoopAlive, next, nextZk } from './helpers/emitter.js';
import { tempDir } from './helpers/temp.js';
import { useZooKeeper } from './helpers/zookeeper.js';
import { FLOCK } from './helpers/tools.js';

// Waiting singletons do not keep a process alive: the test run must.
keepLoopAlive();

/** Whether some process holds the flock(2) lock on `file` (flock -n exits 75 when it is held). */
function lockHeld(file: string): boolean {
  const probe = spawnSync(FLOCK, ['-n', '-E', '75', file, 'true']);
  if (probe.status !== 0 && probe.status !== 75) throw new Error(`flock probe failed: ${probe.status} ${probe.stderr}`);
  return probe.status === 75;
}

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

async function get(base: string, path: string): Promise<{ status: number; type: string | null; cacheControl: string | null; body: string }> {
  const response = await fetch(base + path, { headers: { connection: 'close' } });
  return { status: response.status, type: response.headers.get('content-type'), cacheControl: response.headers.get('cache-control'), body: await response.text() };
}

async function getJson(base: string, path: string): Promise<{ status: number; json: unknown }> {
  const { status, body } = await get(base, path);
  return { status, json: JSON.parse(body) as unknown };
}

/** The rejection of `promise`, which must reject. */
async function rejection(promise: PromiseLike<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

function assertInvalidOption(err: unknown, mentions: RegExp): void {
  assert.ok(err instanceof BellwetherError, `a BellwetherError, got ${String(err)}`);
  assert.equal(err.code, ErrorCodes.INVALID_OPTION);
  assert.match(err.message, mentions);
}

describe('bellwether/fastify', () => {
  test('registers, starts the singleton, serves health, readiness after listen and status; close releases the lock', async (t) => {
    const lockDir = tempDir(t);
    const lockFile = path.join(lockDir, 'reporter.lock');
    let runs = 0;
    let aborted = false;
    const job = singleton({
      name: 'reporter',
      lockDir,
      run: ({ signal }) => {
        runs += 1;
        signal.addEventListener('abort', () => (aborted = true), { once: true });
      },
    });
    const elected = next(job, 'elected');
    const app = Fastify();
    t.after(() => app.close());

    await app.register(bellwether, { singletons: [job] });
    // Registration resolves once the board has started the singleton.
    assert.notEqual(job.state, 'latent');
    assert.equal(app.bellwether.snapshot().singletons[0]?.name, 'reporter');
    const { token } = await elected;
    assert.equal(token, 1);
    assert.equal(runs, 1);

    // Not listening yet: live, not ready.
    const early = await app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(early.statusCode, 503);
    assert.deepEqual(early.json(), { ready: false });

    const base = await listen(app);
    assert.deepEqual(await getJson(base, '/healthz'), { status: 200, json: { live: true } });
    assert.deepEqual(await getJson(base, '/readyz'), { status: 200, json: { ready: true } });
    assert.equal(app.bellwether.ready, true);

    const status = await getJson(base, '/bellwether');
    assert.equal(status.status, 200);
    const lastRun = (status.json as { singletons: { lastRun: { startedAt: number; durationMs: number } }[] }).singletons[0]?.lastRun;
    assert.ok(lastRun && lastRun.durationMs >= 0 && lastRun.startedAt <= Date.now());
    assert.deepEqual(status.json, {
      // No index outside a supervised worker (undefined: not in the JSON).
      worker: { pid: process.pid, supervised: false, ready: true },
      singletons: [
        {
          name: 'reporter',
          state: 'started',
          leader: true,
          token: 1,
          fence: '1',
          leaderChanges: 1,
          stepDowns: { closed: 0, failed: 0, lost: 0 },
          // run returned at once: it succeeded, and the singleton leads on, idle.
          lastRun: { token: 1, startedAt: lastRun?.startedAt, durationMs: lastRun?.durationMs, outcome: 'succeeded' },
          runs: 1,
          runFailures: 0,
        },
      ],
      zk: null,
    });

    // metrics is off by default: no route.
    assert.equal((await get(base, '/metrics')).status, 404);

    assert.equal(lockHeld(lockFile), true);
    await app.close();
    assert.equal(job.state, 'closed');
    assert.equal(aborted, true, "run's signal aborted on close");
    assert.equal(lockHeld(lockFile), false, 'the lock is free once the app is closed');
  });

  test('refuses a second registration with a clear error, without starting anything more', async (t) => {
    const lockDir = tempDir(t);
    const first = singleton({ name: 'first', lockDir });
    const second = singleton({ name: 'second', lockDir });
    const app = Fastify();
    t.after(() => app.close());
    await app.register(bellwether, { singletons: [first] });

    const err = await rejection(app.register(bellwether, { singletons: [second] }));
    assert.ok(err instanceof BellwetherError, `a BellwetherError, got ${String(err)}`);
    assert.equal(err.code, ErrorCodes.ALREADY_STARTED);
    assert.match(err.message, /already registered/);
    assert.equal(second.state, 'latent', 'the refused registration started nothing');

    // Also from an encapsulated child context of an app that has it.
    const app2 = Fastify();
    t.after(() => app2.close());
    await app2.register(bellwether, {});
    const nested = await rejection(
      app2.register(async (child) => {
        await child.register(bellwether, {});
      }),
    );
    assert.ok(nested instanceof BellwetherError);
    assert.equal(nested.code, ErrorCodes.ALREADY_STARTED);

    // And from a sibling context: two boards in one app would start every part twice.
    const app3 = Fastify();
    t.after(() => app3.close());
    const third = singleton({ name: 'third', lockDir });
    const fourth = singleton({ name: 'fourth', lockDir });
    await app3.register(async (one) => {
      await one.register(bellwether, { singletons: [third] });
    });
    const sibling = await rejection(
      app3.register(async (other) => {
        await other.register(bellwether, { singletons: [fourth] });
      }),
    );
    assert.ok(sibling instanceof BellwetherError, `a BellwetherError, got ${String(sibling)}`);
    assert.equal(sibling.code, ErrorCodes.ALREADY_STARTED);
    assert.equal(fourth.state, 'latent', 'the refused registration started nothing');
  });

  test('custom paths replace the defaults; metrics: true serves Prometheus text', async (t) => {
    const lockDir = tempDir(t);
    const job = singleton({ name: 'custom', lockDir });
    const elected = next(job, 'elected');
    const app = Fastify();
    t.after(() => app.close());
    await app.register(bellwether, {
      singletons: [job],
      metrics: true,
      paths: { health: '/ops/live', ready: '/ops/ready', status: '/ops/status', metrics: '/ops/metrics' },
      // A standard Fastify register option: Fastify's to apply, not refused.
      logLevel: 'warn',
    } as Parameters<typeof bellwether>[1]);
    await elected;
    const base = await listen(app);

    for (const old of ['/healthz', '/readyz', '/bellwether', '/metrics']) {
      assert.equal((await get(base, old)).status, 404, `${old} is not served`);
    }
    assert.deepEqual(await getJson(base, '/ops/live'), { status: 200, json: { live: true } });
    assert.deepEqual(await getJson(base, '/ops/ready'), { status: 200, json: { ready: true } });
    const status = await getJson(base, '/ops/status');
    assert.equal(status.status, 200);
    assert.equal((status.json as { singletons: { leader: boolean }[] }).singletons[0]?.leader, true);

    const metrics = await get(base, '/ops/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.type ?? '', /^text\/plain/);
    assert.equal(metrics.cacheControl, 'no-store');
    assert.match(metrics.body, /bellwether_singleton_leader\{[^}]*singleton="custom"[^}]*\} 1/);
  });

  test('every endpoint answers with Cache-Control: no-store, a 503 and a failing board.metrics()\'s 500 too; paths: false leaves an endpoint out, and metrics are still collected', async (t) => {
    const app = Fastify();
    t.after(() => app.close());
    await app.register(bellwether, { singletons: [singleton({ name: 'cached', lockDir: tempDir(t) })], metrics: true });
    const answers = await Promise.all(['/healthz', '/readyz', '/bellwether', '/metrics'].map((url) => app.inject({ url })));
    assert.deepEqual(answers.map((a) => [a.statusCode, a.headers['cache-control']]), [[200, 'no-store'], [503, 'no-store'], [200, 'no-store'], [200, 'no-store']], 'not listening: /readyz is 503');
    app.bellwether.metrics = () => Promise.reject(new Error('series that do not merge'));
    const failed = await app.inject({ url: '/metrics' });
    assert.deepEqual([failed.statusCode, failed.headers['cache-control'], failed.json()], [500, 'no-store', { error: 'metrics collection failed' }], 'a failing board.metrics()');

    const internal = Fastify();
    t.after(() => internal.close());
    await internal.register(bellwether, { metrics: true, paths: { status: false, metrics: false, ready: false } });
    const left = await Promise.all(['/healthz', '/readyz', '/bellwether', '/metrics'].map(async (url) => (await internal.inject({ url })).statusCode));
    assert.deepEqual(left, [200, 404, 404, 404]);
    assert.match((await internal.bellwether.metrics())?.body ?? '', /^# TYPE bellwether_singleton_leader gauge$/m, 'board.metrics() serves them elsewhere');
  });

  test('bad options fail with BW_ERR_INVALID_OPTION before anything starts', async (t) => {
    const lockDir = tempDir(t);
    const job = singleton({ name: 'untouched', lockDir });
    const cases: [unknown, RegExp][] = [
      [{ metrics: 'yes' }, /metrics/],
      [{ paths: 'healthz' }, /paths/],
      [{ paths: { health: 'healthz' } }, /paths\.health/],
      [{ paths: { health: '/a b' } }, /paths\.health/],
      [{ paths: { health: '/items/:id' } }, /paths\.health/],
      [{ paths: { status: true } }, /paths\.status .*or false/],
      [{ paths: { metrics: null } }, /paths\.metrics/],
      [{ paths: { liveness: '/live' } }, /liveness/],
      [{ paths: { health: '/same', ready: '/same' } }, /paths\.health and paths\.ready/],
      [{ metrics: true, paths: { metrics: '/bellwether' } }, /paths\.status and paths\.metrics/],
      [{ prefix: '/ops' }, /prefix/],
      [{ readiness: 'zk' }, /readiness/],
      [{ singletonz: [] }, /singletonz/],
      [{ singletons: 'reporter' }, /singletons/],
      [{ singletons: [{}] }, /singletons/],
      [{ zk: 'localhost:2181' }, /zk/],
    ];
    for (const [options, mentions] of cases) {
      const app = Fastify();
      const err = await rejection(app.register(bellwether, { singletons: [job], ...(options as object) }));
      assertInvalidOption(err, mentions);
      assert.equal(app.hasDecorator('bellwether'), false, `nothing decorated for ${JSON.stringify(options)}`);
      await app.close();
    }
    assert.equal(job.state, 'latent', 'no bad registration started the singleton');
    // The same paths are fine for metrics when metrics are off (that route does not exist).
    const app = Fastify();
    t.after(() => app.close());
    await app.register(bellwether, { paths: { metrics: '/bellwether' } });
  });
});

describe('bellwether/fastify with ZooKeeper', () => {
  const zk1 = useZooKeeper();

  test('a latent session is started with the app and closed with it; a host+cluster singleton leads; /readyz is 503 while the session is suspended (readiness \'serving+zk\')', async (t) => {
    const lockDir = tempDir(t);
    const zk = new ZkSession({ connect: zk1.ensemble.connectString(), sessionTimeout: 2000 });
    t.after(() => zk.close());
    const job = singleton({ name: 'fleet-reporter', scope: 'host+cluster', zk, lockDir });
    const elected = next(job, 'elected');
    const app = Fastify();
    t.after(() => app.close());
    await app.register(bellwether, { singletons: [job], zk, metrics: true, readiness: 'serving+zk' });
    assert.equal(zk.state, 'connected', 'registration waited for the session');
    const { token } = await elected;

    const base = await listen(app);
    assert.deepEqual(await getJson(base, '/readyz'), { status: 200, json: { ready: true } });
    const status = (await getJson(base, '/bellwether')).json as {
      singletons: { name: string; leader: boolean; token: number }[];
      zk: { state: string; sessionId: string; expiries: number };
    };
    assert.deepEqual(status.singletons.map((s) => [s.name, s.leader, s.token]), [['fleet-reporter', true, token]]);
    assert.equal(status.zk.state, 'connected');
    assert.equal(status.zk.sessionId, zk.sessionId);
    assert.equal(status.zk.expiries, 0);
    const metrics = await get(base, '/metrics');
    assert.match(metrics.body, /bellwether_zk_session_state\{[^}]*state="connected"[^}]*\} 1/);

    // The server goes silent: the session is suspended and the worker is not ready.
    const server = zk1.ensemble.servers[0]!;
    const suspended = nextZk(zk, 'suspended');
    server.pause();
    try {
      await suspended;
      assert.deepEqual(await getJson(base, '/readyz'), { status: 503, json: { ready: false } });
      assert.deepEqual(await getJson(base, '/healthz'), { status: 200, json: { live: true } });
    } finally {
      server.resume();
    }
    await Promise.race([nextZk(zk, 'reconnected'), nextZk(zk, 'connected')]);
    assert.deepEqual(await getJson(base, '/readyz'), { status: 200, json: { ready: true } });

    await app.close();
    assert.equal(job.state, 'closed');
    assert.equal(zk.state, 'closed', 'the session the plugin started is closed with the app');
  });

  test('a session started by the app is left open on close', async (t) => {
    const zk = new ZkSession({ connect: zk1.ensemble.connectString(), sessionTimeout: 2000 });
    t.after(() => zk.close());
    await zk.start();
    const app = Fastify();
    await app.register(bellwether, { zk });
    await listen(app);
    assert.equal(app.bellwether.ready, true);
    await app.close();
    assert.equal(zk.state, 'connected', "the app's own session is not the plugin's to close");
  });
});
