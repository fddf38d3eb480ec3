import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { Candidate, type Singleton, StatusBoard, ZkSession, singleton } from 'bellwether';
import { type BellwetherRouter, bellwether } from 'bellwether/express';
import express from 'express';
import { bounded } from './helpers/bounded.js';
import { parsePrometheusText, samplesOf } from './helpers/prometheus.js';
import { keepLoopAlive, next, nextZk } from './helpers/emitter.js';
import { flockState } from './helpers/proc-locks.js';
import { tempDir } from './helpers/temp.js';
import { expireThroughProxy } from './helpers/expire-through-proxy.js';
import { startProxy } from './helpers/sessions.js';
import { idBuffer, useZooKeeper } from './helpers/zookeeper.js';

keepLoopAlive();

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json: () => Record<string, unknown>;
}

/** GET on 127.0.0.1, any status; `agent` false (a fresh connection, closed after) unless given. */
function get(port: number, urlPath: string, agent: http.Agent | false = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path: urlPath, agent, timeout: 5000 }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body, json: () => JSON.parse(body) as Record<string, unknown> }),
      );
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${urlPath}: no answer within 5 s`)));
    request.on('error', reject);
  });
}

function listen(server: http.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  return once(server, 'listening').then(() => (server.address() as net.AddressInfo).port);
}

/** A plain Express app with the router mounted first, as users do, and a route of its own. */
function appWith(router: BellwetherRouter): express.Express {
  const app = express();
  app.use(router);
  app.get('/', (_req, res) => {
    res.json({ hello: 'world' });
  });
  app.get('/slow', (_req, res) => {
    setTimeout(() => res.json({ slow: true }), 300);
  });
  return app;
}

function reporter(lockDir: string, name = 'reporter'): Singleton {
  return singleton({ name, lockDir, run: ({ signal }) => new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true })) });
}

/** Closes the router and the server after the test, whatever happened. */
function cleanup(t: { after: (fn: () => unknown) => void }, router: BellwetherRouter, server?: http.Server): void {
  t.after(async () => {
    await router.close();
    if (server?.listening) await new Promise((resolve) => server.close(resolve));
  });
}

describe('bellwether/express', () => {
  test('healthz, readyz (503 until attached to a listening server), the snapshot, close() frees the lock', async (t) => {
    const lockDir = tempDir(t);
    const job = reporter(lockDir);
    const router = bellwether({ singletons: [job] });
    const server = http.createServer(appWith(router));
    cleanup(t, router, server);

    const elected = next(job, 'elected');
    await router.start();
    const port = await listen(server);

    assert.equal((await get(port, '/')).json()['hello'], 'world', 'the app behind the router still answers');
    const health = await get(port, '/healthz');
    assert.equal(health.status, 200);
    assert.deepEqual(health.json(), { live: true });
    const notReady = await get(port, '/readyz');
    assert.equal(notReady.status, 503, 'listening, but nobody said the app serves');
    assert.deepEqual(notReady.json(), { ready: false });

    await router.attach(server); // already listening: ready at once
    const ready = await get(port, '/readyz');
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.json(), { ready: true });
    assert.equal(ready.headers['cache-control'], 'no-store');

    const { token } = await elected;
    const status = await get(port, '/bellwether');
    assert.equal(status.status, 200);
    const snapshot = status.json() as {
      worker: { index: unknown; pid: number; supervised: boolean; ready: boolean };
      singletons: { name: string; state: string; leader: boolean; token: number; leaderChanges: number; lastRun: { startedAt: number } }[];
      zk: unknown;
    };
    assert.deepEqual(snapshot.worker, { pid: process.pid, supervised: false, ready: true });
    const startedAt = snapshot.singletons[0]?.lastRun.startedAt;
    assert.ok(typeof startedAt === 'number' && startedAt <= Date.now());
    // The run is under way (it waits for its signal): no duration yet.
    assert.deepEqual(snapshot.singletons, [
      { name: 'reporter', state: 'started', leader: true, token, fence: String(token), leaderChanges: 1, stepDowns: { closed: 0, failed: 0, lost: 0 }, lastRun: { token, startedAt, outcome: 'running' }, runs: 1, runFailures: 0 },
    ]);
    assert.ok(Number.isInteger(token) && token >= 1, `a fencing token, got ${token}`);
    assert.equal(snapshot.zk, null);
    assert.equal((await get(port, '/metrics')).status, 404, 'no metrics endpoint unless asked for');

    const lockFile = path.join(lockDir, 'reporter.lock');
    assert.equal(flockState(lockFile).held, 1);
    await router.close();
    assert.equal(server.listening, false, 'close() stopped the attached server');
    assert.equal(job.state, 'closed');
    assert.equal(job.isLeader, false);
    assert.equal(flockState(lockFile).held, 0, 'the kernel shows the lock free');
    // And someone else gets it, with the next token.
    const successor = reporter(lockDir);
    t.after(() => successor.close());
    const successorElected = next(successor, 'elected');
    await successor.start();
    assert.equal((await successorElected).token, token + 1);
    await router.close(); // twice is harmless
    await assert.rejects(router.start(), { code: 'BW_ERR_CLOSED' });
    await assert.rejects(router.attach(server), { code: 'BW_ERR_CLOSED' });
  });

  test('a scrape before the router has started gets the metrics, not "install prom-client"; after close() the board is not ready', async (t) => {
    const job = reporter(tempDir(t));
    const router = bellwether({ singletons: [job], metrics: true });
    const server = http.createServer(appWith(router));
    cleanup(t, router, server);
    const port = await listen(server);
    // Served as soon as the server listens, before attach() starts the board (as app.listen() then attach() does).
    const early = await get(port, '/metrics');
    assert.equal(early.status, 200, early.body);
    assert.equal(samplesOf(parsePrometheusText(early.body), 'bellwether_singleton_leader', { singleton: 'reporter', worker: 'standalone', pid: String(process.pid) })[0]?.value, 0);
    await router.attach(server);
    assert.equal(router.board.ready, true);
    await router.close();
    assert.equal(router.board.ready, false, 'a closed board is not ready');
    assert.equal(router.board.snapshot().worker.ready, false);
  });

  test('attach() before listen(): starts the board, ready on the server\'s "listening"', async (t) => {
    const job = reporter(tempDir(t));
    const router = bellwether({ singletons: [job] });
    const server = http.createServer(appWith(router));
    cleanup(t, router, server);

    const elected = next(job, 'elected');
    await router.attach(server);
    assert.equal(job.state, 'started', 'attach() started the singletons');
    assert.equal(router.board.ready, false, 'not listening yet');
    await router.attach(server); // again: nothing new
    const port = await listen(server);
    assert.equal(router.board.ready, true);
    const ready = await get(port, '/readyz');
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.json(), { ready: true });
    await elected;
    const snapshot = (await get(port, '/bellwether')).json() as { singletons: { leader: boolean }[] };
    assert.equal(snapshot.singletons[0]!.leader, true);
  });

  test('custom paths (also under a mount point), HEAD, metrics with a content type', async (t) => {
    const router = bellwether({
      singletons: [reporter(tempDir(t))],
      metrics: true,
      paths: { health: '/live', ready: '/ready', status: '/status.json', metrics: '/prometheus' },
    });
    const app = express();
    app.use('/ops', router);
    const server = http.createServer(app);
    cleanup(t, router, server);
    const port = await listen(server);
    await router.attach(server);

    assert.deepEqual((await get(port, '/ops/live')).json(), { live: true });
    assert.deepEqual((await get(port, '/ops/ready')).json(), { ready: true });
    const status = (await get(port, '/ops/status.json')).json() as { singletons: { name: string }[] };
    assert.equal(status.singletons[0]!.name, 'reporter');
    const metrics = await get(port, '/ops/prometheus');
    assert.equal(metrics.status, 200);
    assert.match(String(metrics.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.match(metrics.body, new RegExp(`^bellwether_singleton_leader\\{singleton="reporter",worker="standalone",pid="${process.pid}"\\} [01]$`, 'm'));
    for (const old of ['/ops/healthz', '/ops/readyz', '/ops/bellwether', '/ops/metrics', '/live']) {
      assert.equal((await get(port, old)).status, 404, `${old} is not served`);
    }
    const head = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http.request({ host: '127.0.0.1', port, path: '/ops/live', method: 'HEAD', agent: false }, resolve).on('error', reject).end();
    });
    assert.equal(head.statusCode, 200);
    head.resume();
  });

  test('paths: false leaves an endpoint out (the request goes on to the app); metrics: true still collects for board.metrics()', async (t) => {
    const router = bellwether({ singletons: [reporter(tempDir(t))], metrics: true, paths: { status: false, metrics: false } });
    const server = http.createServer(appWith(router));
    cleanup(t, router, server);
    const port = await listen(server);
    await router.attach(server);
    assert.deepEqual((await get(port, '/healthz')).json(), { live: true });
    assert.deepEqual((await get(port, '/readyz')).json(), { ready: true });
    assert.equal((await get(port, '/bellwether')).status, 404);
    assert.equal((await get(port, '/metrics')).status, 404);
    assert.match((await router.board.metrics())?.body ?? '', /^bellwether_singleton_leader\{singleton="reporter"/m);
  });

  test('a failing board.metrics(): 500 with Cache-Control: no-store and a short body, not the app\'s error handler', async (t) => {
    const router = bellwether({ metrics: true });
    const server = http.createServer(appWith(router));
    cleanup(t, router, server);
    const port = await listen(server);
    router.board.metrics = () => Promise.reject(new Error('series that do not merge'));
    const answer = await get(port, '/metrics');
    assert.deepEqual([answer.status, answer.headers['cache-control'], answer.json()], [500, 'no-store', { error: 'metrics collection failed' }]);
  });

  test('close() drains: in-flight requests finish, idle keep-alive connections do not hold the server', async (t) => {
    const router = bellwether({});
    const server = http.createServer(appWith(router));
    server.keepAliveTimeout = 20_000; // a client left alone would hold the server for 20 s
    const agent = new http.Agent({ keepAlive: true });
    t.after(() => agent.destroy());
    cleanup(t, router, server);
    const port = await listen(server);
    await router.attach(server);

    const slow = get(port, '/slow', agent); // in flight while closing
    const idle = await get(port, '/healthz', agent); // its connection is now idle in the agent
    assert.equal(idle.headers['connection'], 'keep-alive');
    const started = Date.now();
    await router.close();
    const elapsed = Date.now() - started;
    const answer = await slow;
    assert.equal(answer.status, 200, 'the in-flight request was answered');
    assert.deepEqual(answer.json(), { slow: true });
    assert.ok(elapsed < 5000, `close() took ${elapsed} ms (keepAliveTimeout is 20 s)`);
    assert.equal(server.listening, false);
  });

  test('bad options and bad servers: BW_ERR_INVALID_OPTION before anything starts', async (t) => {
    const bad: unknown[] = [
      'yes',
      [],
      { prefix: '/ops' },
      { metrics: 'yes' },
      { paths: '/healthz' },
      { paths: { live: '/live' } },
      { paths: { health: 'healthz' } },
      { paths: { health: '/health check' } },
      { paths: { ready: '/ready?x=1' } },
      { paths: { status: '/:id' } },
      { paths: { status: true } },
      { paths: { health: null } },
      { paths: { health: '/same', ready: '/same' } },
      { metrics: true, paths: { metrics: '/healthz' } },
      { singletons: 'reporter' },
      { singletons: [{}] },
      { zk: {} },
    ];
    for (const options of bad) {
      assert.throws(() => bellwether(options as never), { name: 'BellwetherError', code: 'BW_ERR_INVALID_OPTION' }, JSON.stringify(options));
    }
    // Without metrics there is no metrics endpoint, so its path may repeat another.
    assert.doesNotThrow(() => bellwether({ paths: { metrics: '/healthz' } }));

    const job = reporter(tempDir(t));
    const router = bellwether({ singletons: [job] });
    cleanup(t, router);
    for (const server of [undefined, {}, 'server']) {
      await assert.rejects(router.attach(server as never), { code: 'BW_ERR_INVALID_OPTION' });
    }
    assert.equal(job.state, 'latent', 'nothing started');
  });
});

describe('bellwether/express with ZooKeeper', () => {
  const zk1 = useZooKeeper();

  test('/readyz is 503 while the session is suspended with readiness \'serving+zk\', 200 with the default; the metrics count leader changes and session expiries as they happen', async (t) => {
    // Through a proxy, which holds our reconnect while the session is expired below
    // (a client that reconnected in between would take its session back: one more suspension).
    const proxy = await startProxy(t, zk1.ensemble.servers[0]!.clientPort);
    const zk = new ZkSession({ connect: `127.0.0.1:${proxy.port}`, sessionTimeout: 2000 });
    const rivalZk = new ZkSession({ connect: zk1.ensemble.connectString(), sessionTimeout: 2000 });
    t.after(() => Promise.all([zk.close(), rivalZk.close()]));
    await rivalZk.start();
    const job = singleton({ scope: 'cluster', zk, name: 'express-fleet', run: ({ signal }) => new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true })) });
    job.on('error', (err) => t.diagnostic(`job error: ${err.code} ${err.message}`));
    const router = bellwether({ singletons: [job], zk, metrics: true, readiness: 'serving+zk' });
    const server = http.createServer(appWith(router));
    cleanup(t, router, server);
    // The default readiness ('serving') on the same session: ZooKeeper's state does not pull it out.
    const servingOnly = bellwether({ zk });
    const servingServer = http.createServer(appWith(servingOnly));
    cleanup(t, servingOnly, servingServer);
    const elected = next(job, 'elected');
    await router.start();
    const port = await listen(server);
    await router.attach(server);
    const servingPort = await listen(servingServer);
    await servingOnly.attach(servingServer);
    await elected;
    const metric = async ([name, labels]: [string, Record<string, string>], type = 'counter'): Promise<number | undefined> => {
      const families = parsePrometheusText((await get(port, '/metrics')).body);
      // A histogram's _count and _sum are samples of its family.
      assert.equal(families.get(type === 'histogram' ? name.replace(/_(count|sum)$/, '') : name)?.type, type);
      return samplesOf(families, name, labels)[0]?.value;
    };
    const own = { worker: 'standalone', pid: String(process.pid) };
    const leaderChanges: [string, Record<string, string>] = ['bellwether_singleton_leader_changes_total', { singleton: 'express-fleet', ...own }];
    const expiries: [string, Record<string, string>] = ['bellwether_zk_session_expiries_total', own];
    const suspensions: [string, Record<string, string>] = ['bellwether_zk_session_suspensions_total', own];
    const stepDowns = (reason: string): [string, Record<string, string>] => ['bellwether_singleton_step_downs_total', { singleton: 'express-fleet', reason, ...own }];
    const gaps = (part: 'count' | 'sum'): [string, Record<string, string>] => [`bellwether_singleton_handover_gap_seconds_${part}`, { singleton: 'express-fleet', seen_by: 'process', ...own }];
    assert.equal((await get(port, '/readyz')).status, 200);
    assert.equal(await metric(leaderChanges), 1);
    assert.equal(await metric(expiries), 0);
    assert.equal(await metric(suspensions), 0);
    assert.equal(await metric(stepDowns('lost')), 0);
    assert.equal(await metric(gaps('count'), 'histogram'), 0, 'shown from the start, at 0');

    // The server goes silent: suspended, so not ready (still live).
    const server0 = zk1.ensemble.servers[0]!;
    const suspended = nextZk(zk, 'suspended');
    const reElected = next(job, 'elected');
    server0.pause();
    const pausedAt = performance.now();
    try {
      await bounded('suspended', suspended, 5000);
      assert.deepEqual((await get(port, '/readyz')).json(), { ready: false });
      assert.equal((await get(port, '/readyz')).status, 503);
      assert.equal((await get(port, '/healthz')).status, 200);
      assert.equal((await get(servingPort, '/readyz')).status, 200, "readiness 'serving' (the default) stays ready");
    } finally {
      server0.resume();
    }
    await bounded('back', Promise.race([nextZk(zk, 'reconnected'), nextZk(zk, 'connected')]), 10_000);
    assert.equal((await get(port, '/readyz')).status, 200);
    // It stepped down on the silence and, its ballot still the lowest, leads again: a second change.
    const { handoverGapMs } = await bounded('leads again after the pause', reElected, 10_000);
    const sincePause = performance.now() - pausedAt;
    assert.equal(await metric(leaderChanges), 2);
    assert.equal(await metric(suspensions), 1);
    assert.equal(await metric(stepDowns('lost')), 1);
    // The same ballot led again, so nobody led between: the time without a runner is measured here, within the pause.
    assert.ok(handoverGapMs !== undefined && handoverGapMs > 0 && handoverGapMs < sincePause, `handover gap ${handoverGapMs} ms, ${Math.round(sincePause)} ms since the pause`);
    assert.equal(await metric(gaps('count'), 'histogram'), 1);
    assert.equal(await metric(gaps('sum'), 'histogram'), handoverGapMs / 1000);

    // A rival waits; our session expires: the rival leads, we follow in the new session.
    const rival = new Candidate(rivalZk, 'express-fleet', { data: 'rival' });
    t.after(() => rival.close());
    await rival.vote();
    const rivalWon = new Promise<void>((resolve) => rival.once('won', () => resolve()));
    const newSession = nextZk(zk, 'connected');
    await expireThroughProxy(proxy, server0.clientPort, idBuffer(zk.sessionId!), zk.sessionPassword!);
    await bounded('new session', newSession, 10_000);
    await bounded('the rival leads', rivalWon, 10_000);
    assert.equal(await metric(expiries), 1);
    // The rival resigns: ours leads again, a third change.
    const again = next(job, 'elected');
    await rival.close();
    await bounded('leads again after the rival', again, 10_000);
    assert.equal(await metric(leaderChanges), 3);
    // Our term ended with the expiry (lost); the rival's came between: no gap is measured here for this one.
    assert.equal(await metric(stepDowns('lost')), 2);
    assert.equal(await metric(stepDowns('closed')), 0);
    assert.equal(await metric(gaps('count'), 'histogram'), 1);
  });
});

describe('the status board of singletons started before it', () => {
  test('an election before the board existed is counted, in the snapshot and the metrics', async (t) => {
    const job = reporter(tempDir(t));
    t.after(() => job.close());
    const elected = next(job, 'elected');
    await job.start();
    await elected;
    const board = new StatusBoard({ singletons: [job], metrics: true });
    t.after(() => board.close());
    await board.start();
    assert.equal(board.snapshot().singletons[0]?.leaderChanges, 1);
    const families = parsePrometheusText((await board.metrics())!.body);
    assert.equal(samplesOf(families, 'bellwether_singleton_leader_changes_total', { singleton: 'reporter' })[0]?.value, 1);
  });
});

describe('two status boards of one process', () => {
  test("outside the supervisor each shows its own singletons' series (nothing is summed there)", async (t) => {
    const job = reporter(tempDir(t));
    const boards = [new StatusBoard({ singletons: [job], metrics: true }), new StatusBoard({ singletons: [job], metrics: true })];
    t.after(async () => {
      for (const board of boards) await board.close();
      await job.close();
    });
    const elected = next(job, 'elected');
    for (const board of boards) await board.start();
    await elected;
    for (const board of boards) {
      const families = parsePrometheusText((await board.metrics())!.body);
      assert.equal(samplesOf(families, 'bellwether_singleton_leader', { singleton: 'reporter' })[0]?.value, 1);
    }
  });
});

describe('the status board when starting fails', () => {
  test('in a supervised worker, a board whose start() fails leaves no message listener behind after close(), even once prom-client has loaded', async (t) => {
    const { fork } = await import('node:child_process');
    // A supervised worker's environment and IPC channel, without a supervisor: the board registers its metrics listener there.
    const child = fork(new URL('./fixtures/board-failed-start.js', import.meta.url).pathname, {
      env: { ...process.env, BELLWETHER_WORKER_INDEX: '0', BELLWETHER_PRIMARY_PID: String(process.pid) },
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    t.after(() => child.kill('SIGKILL'));
    child.on('message', () => {}); // heartbeats
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk));
    // Its disconnect at the end looks like the primary going away: it then exits as an orphan would; only its report counts.
    await bounded('the fixture exits', once(child, 'exit'), 10_000);
    const line = JSON.parse(out.trim().split('\n').at(-1)!) as { outcome: string; before: number; afterClose: number; later: number };
    assert.equal(line.outcome, 'cannot start');
    assert.equal(line.afterClose, line.before, 'a listener left right after close()');
    assert.equal(line.later, line.before, 'a listener added after close()');
  });
});
