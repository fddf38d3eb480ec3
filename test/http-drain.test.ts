/**
 * Zero failed requests through every planned worker stop, under keep-alive
 * load (wrk: 20 connections, each with a request always outstanding), with
 * no shutdown code in the app: rolling restart of 2 and of 4 workers, SIGTTOU,
 * an unhealthy worker replaced, SIGTERM with a slow request in flight, the
 * Express (5) and Fastify examples, and an Express 4 app. `bellwether start` as users run it, under
 * Node and under Bun.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { describe, test, type TestContext } from 'node:test';
import { bounded } from './helpers/bounded.js';
import { CLI } from './helpers/cli.js';
import { Fixture, Fixtures, startFixture } from './helpers/child.js';
import { freePort } from './helpers/http.js';
import { gone, killAtEnd } from './helpers/processes.js';
import { RUNTIMES, type Runtime, fixture } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';
import { failures, wrk } from './helpers/wrk.js';

const EXAMPLES = new URL('../../examples/', import.meta.url).pathname;
/** The load: 20 connections for 8 s, the stop 2 s in. */
const LOAD = { seconds: 8, connections: 20 };
const STOP_AFTER_MS = 2000;

interface Cluster {
  primary: Fixture;
  port: number;
  /** Worker pids by index, from `bellwether status --json`. */
  pids(): number[];
}

async function startCluster(t: TestContext, runtime: Runtime, app: string, workers: number, env: Record<string, string> = {}, flags: string[] = [], wrap: string[] = []): Promise<Cluster> {
  const lockDir = tempDir(t);
  const port = await freePort();
  const name = `drain-${port}`;
  const fixtures = new Fixtures();
  t.after(() => fixtures.killAll());
  const primary = fixtures.add(
    new Fixture(wrap[0] ?? runtime.bin, [...wrap.slice(1), ...(wrap.length ? [runtime.bin] : []), CLI, 'start', app, '--workers', String(workers), '--heartbeat', '100', '--timeout', '3000', '--name', name, ...flags], `bellwether start ${name} (${runtime.name})`, {
      ...env,
      PORT: String(port),
      BELLWETHER_LOCK_DIR: lockDir,
    }),
  );
  await bounded('workers ready', primary.stderrMatches(new RegExp(`${workers} of ${workers} workers ready`)), 30_000);
  const pids = (): number[] => {
    const status = spawnSync(process.execPath, [CLI, 'status', '--name', name, '--json'], { encoding: 'utf8', env: { ...process.env, BELLWETHER_LOCK_DIR: lockDir } });
    assert.equal(status.status, 0, status.stderr);
    return (JSON.parse(status.stdout) as { workers: { pid: number }[] }).workers.map((w) => w.pid);
  };
  killAtEnd(t, pids());
  return { primary, port, pids };
}

/** `promise`, with its rejection handled: it is awaited later, or not at all if the load failed first. */
function awaitedLater<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

/** Runs the load, calls `stop` STOP_AFTER_MS in, and asserts that no client saw a failure. */
async function underLoad(cluster: Cluster, stop: () => void): Promise<void> {
  const timer = setTimeout(stop, STOP_AFTER_MS);
  try {
    const result = await wrk(`http://127.0.0.1:${cluster.port}/`, LOAD);
    assert.ok(result.requests > 1000, `too little load to tell: ${result.output}`);
    assert.deepEqual(failures(result), { socketErrors: 0, non2xx: 0 }, result.output);
  } finally {
    clearTimeout(timer);
  }
}

/** Signals the primary and awaits the end of the rolling restart it starts. */
async function rollingRestart(t: TestContext, runtime: Runtime, app: string, workers: number, env: Record<string, string> = {}): Promise<void> {
  const cluster = await startCluster(t, runtime, app, workers, env);
  const before = cluster.pids();
  const done = awaitedLater(cluster.primary.stderrMatches(/rolling restart done: every worker replaced/));
  let doneUnderLoad = false;
  await underLoad(cluster, () => {
    process.kill(cluster.primary.pid, 'SIGHUP');
    void done.then(() => (doneUnderLoad = true), () => {});
  });
  assert.ok(doneUnderLoad, 'the rolling restart ended while the load ran');
  const after = cluster.pids();
  killAtEnd(t, after);
  assert.equal(after.length, workers);
  assert.deepEqual(after.filter((pid) => before.includes(pid)), [], `every worker replaced: ${before} -> ${after}`);
  assert.deepEqual(await gone(before, 5000), [], 'the old workers exited');
}

/** GET `path` on the cluster; resolves with the status and body, or the error code. */
function request(port: number, path: string): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
      })
      .on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
  });
}

for (const runtime of RUNTIMES) {
  describe(`a stop that needs more than the drain (${runtime.name})`, () => {
    const app = fixture('stop-hooks-app');

    test('an event stream ended in onDraining: the stop does not wait for the drain deadline', async (t) => {
      const cluster = await startCluster(t, runtime, app, 1);
      const workers = cluster.pids();
      const stream = request(cluster.port, '/events');
      await cluster.primary.next('stream-open');
      cluster.primary.child.kill('SIGTERM');
      // The default shutdownTimeout is 30 s: a stream left open would hold the drain for 22.5 s.
      assert.deepEqual(await bounded('the stream', stream, 10_000), { status: 200, body: 'data: hello\n\ndata: bye\n\n' });
      assert.deepEqual(await bounded('the primary exits', cluster.primary.exited, 10_000), { code: 0, signal: null });
      assert.deepEqual(await gone(workers, 5000), []);
    });

    test('onShutdown gets the last quarter of shutdownTimeout, even when a request holds the drain to its deadline', async (t) => {
      const cluster = await startCluster(t, runtime, app, 1, { FLUSH_MS: '1200' }, ['--shutdown-timeout', '6000']);
      const stuck = request(cluster.port, '/slow?ms=60000');
      await cluster.primary.next('slow-started');
      cluster.primary.child.kill('SIGTERM');
      // Drain cut at 4.5 s, the 1.2 s flush done before the SIGKILL at 6 s (the app's own 60 s timer then keeps the worker up until it).
      assert.deepEqual(await bounded('the stuck request', stuck, 15_000), { error: 'ECONNRESET' });
      await cluster.primary.next('flushed', () => true, 0, 15_000);
      assert.deepEqual(await bounded('the primary exits', cluster.primary.exited, 10_000), { code: 0, signal: null });
    });

    test('an app that closes its server in onShutdown (close() then once(close), and a promisified close()) goes on', async (t) => {
      const cluster = await startCluster(t, runtime, app, 1, { CLOSE_IN_SHUTDOWN: '1' });
      const workers = cluster.pids();
      // A keep-alive connection open at the stop (Bun emitted 'close' once, during the drain).
      const agent = new http.Agent({ keepAlive: true });
      t.after(() => agent.destroy());
      await new Promise<void>((resolve, reject) => http.get({ host: '127.0.0.1', port: cluster.port, path: '/', agent }, (res) => res.resume().on('end', resolve)).on('error', reject));
      cluster.primary.child.kill('SIGTERM');
      await cluster.primary.next('closed-in-shutdown', () => true, 0, 15_000);
      assert.deepEqual(await bounded('the primary exits', cluster.primary.exited, 10_000), { code: 0, signal: null });
      assert.doesNotMatch(cluster.primary.stderr, /ERR_SERVER_NOT_RUNNING|callback failed/i);
      assert.deepEqual(await gone(workers, 5000), []);
    });

    test('SIGTERM to the whole process group (as systemd sends it): the stop has shutdownTimeout, not killTimeout', async (t) => {
      // setsid: a process group of its own, so that the signal reaches only the primary and its workers.
      const cluster = await startCluster(t, runtime, app, 1, {}, ['--kill-timeout', '2000'], ['setsid']);
      const workers = cluster.pids();
      const slow = request(cluster.port, '/slow?ms=3000');
      await cluster.primary.next('slow-started');
      process.kill(-cluster.primary.pid, 'SIGTERM');
      assert.deepEqual(await bounded('the slow request', slow, 15_000), { status: 200, body: 'done' });
      assert.deepEqual(await bounded('the primary exits', cluster.primary.exited, 10_000), { code: 0, signal: null });
      assert.deepEqual(await gone(workers, 5000), []);
    });
  });

  test(`drainServer() under ${runtime.name}: no race with a client's next request, in-flight requests finish, idle connections closed after the grace, the rest at the deadline, upgraded ones left to the app`, async (t) => {
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const DEADLINE_MS = 3000;
    const run = fixtures.add(startFixture(runtime, fixture('drain-scenarios'), [String(DEADLINE_MS)]));
    const results = await run.next('results');
    // Sent on an idle keep-alive connection 100 ms into the drain: answered, and told it is the last.
    assert.deepEqual(results['late'], { status: 200, connection: 'close' });
    assert.deepEqual(results['inflight'], { status: 200, connection: 'close' });
    assert.equal(results['newConnectionRefused'], true);
    // Still arriving (bytes since the last sweep): busy, not idle. Bun's own close() resets a
    // connection whose first request is not complete yet (README, runtime notes): pinned here.
    assert.equal(results['trickle'], runtime.name === 'node' ? 'HTTP/1.1 200 OK' : '');
    const idleClosed = results['idleClosedAfterMs'] as number;
    // Not at once (that is what races a client), and by the sweep, not the deadline.
    assert.ok(idleClosed >= 500 && idleClosed < DEADLINE_MS, `idle connection closed after ${idleClosed} ms`);
    const drained = await run.next('drained');
    assert.ok((drained['afterMs'] as number) >= DEADLINE_MS, `drained after ${drained['afterMs']} ms`);
    assert.deepEqual(drained['stuck'], { error: 'ECONNRESET' }, 'the request never answered is cut at the deadline');
    assert.equal(drained['upgradedEcho'], 'still here', 'an upgraded connection is the app\'s: still open after the drain');
  });

  describe(`zero failed requests under keep-alive load, with no shutdown code in the app (${runtime.name})`, () => {
    const plain = fixture('plain-http-app');

    test('rolling restart of 2 workers (SIGHUP)', (t) => rollingRestart(t, runtime, plain, 2));

    test('rolling restart of 4 workers (SIGHUP)', (t) => rollingRestart(t, runtime, plain, 4));

    test('one worker less (SIGTTOU)', async (t) => {
      const cluster = await startCluster(t, runtime, plain, 2);
      const [, last] = cluster.pids();
      const exited = awaitedLater(cluster.primary.stderrMatches(/worker 1 exited/));
      await underLoad(cluster, () => process.kill(cluster.primary.pid, 'SIGTTOU'));
      await bounded('worker 1 exits', exited, 10_000);
      assert.equal(cluster.pids().length, 1);
      assert.deepEqual(await gone([last!], 5000), []);
    });

    test('an unhealthy worker replaced (SIGTERM, then SIGKILL after killTimeout)', async (t) => {
      const cluster = await startCluster(t, runtime, plain, 2);
      const before = cluster.pids();
      const killed = awaitedLater(cluster.primary.stderrMatches(/killing worker \d \(pid \d+\): unhealthy/));
      await underLoad(cluster, () => void http.get({ host: '127.0.0.1', port: cluster.port, path: '/unhealthy', agent: false }).on('error', () => {}));
      await bounded('the unhealthy worker is killed', killed, 5000);
      const replaced = before.filter((pid) => !cluster.pids().includes(pid));
      assert.equal(replaced.length, 1, `one worker replaced: ${before} -> ${cluster.pids()}`);
      killAtEnd(t, cluster.pids());
    });

    test('SIGTERM with a slow request in flight: it completes, then the primary exits', async (t) => {
      const cluster = await startCluster(t, runtime, plain, 2);
      const workers = cluster.pids();
      const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: cluster.port, path: '/slow?ms=1500' }, (res) => {
            let body = '';
            res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          })
          .on('error', reject);
      });
      await cluster.primary.next('slow-started');
      cluster.primary.child.kill('SIGTERM');
      const answer = await bounded('the slow response', response, 10_000);
      assert.equal(answer.status, 200);
      assert.ok(workers.includes(Number((JSON.parse(answer.body) as { pid: number }).pid)));
      assert.deepEqual(await bounded('the primary exits', cluster.primary.exited, 10_000), { code: 0, signal: null });
      assert.deepEqual(await gone(workers, 5000), []);
    });

    test('rolling restart of the Express example (Express 5)', (t) => rollingRestart(t, runtime, `${EXAMPLES}express/server.js`, 2));

    test('rolling restart of an Express 4 app', (t) => rollingRestart(t, runtime, fixture('express4-app'), 2));

    test('rolling restart of the Fastify example', (t) => rollingRestart(t, runtime, `${EXAMPLES}fastify/server.js`, 2));
  });
}
