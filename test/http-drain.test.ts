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

async function startCluster(t: TestContext, runtime: Runtime, app: string, workers: number, env: Record<string, string> = {}): Promise<Cluster> {
  const lockDir = tempDir(t);
  const port = await freePort();
  const name = `drain-${port}`;
  const fixtures = new Fixtures();
  t.after(() => fixtures.killAll());
  const primary = fixtures.add(
    new Fixture(runtime.bin, [CLI, 'start', app, '--workers', String(workers), '--heartbeat', '100', '--timeout', '3000', '--name', name], `bellwether start ${name} (${runtime.name})`, {
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

for (const runtime of RUNTIMES) {
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
