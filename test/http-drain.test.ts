/**
 * Stops that need more than the HTTP drain (event streams ended in
 * onDraining, onShutdown's share of the time, apps that close their own
 * server, a process-group SIGTERM), and drainServer() itself, under Node and
 * Bun. The drain under keep-alive load is in http-drain-load.test.ts.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, test } from 'node:test';
import { bounded } from './helpers/bounded.js';
import { Fixtures, startFixture } from './helpers/child.js';
import { startCluster } from './helpers/drain-cluster.js';
import { gone } from './helpers/processes.js';
import { RUNTIMES, fixture } from './helpers/runtimes.js';

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

  test(`drainServer() under ${runtime.name} settles as the last connection closes, in a process with nothing else to wait for`, async (t) => {
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const run = fixtures.add(startFixture(runtime, fixture('drain-last-close'), []));
    // It settled at a later sweep, whose timer does not hold the process: Node exited first (13, an unsettled top-level await).
    const { code } = await bounded('the fixture', run.exited, 20_000);
    assert.equal(code, 0, run.stderr);
    const drained = run.events.find((e) => e.event === 'drained');
    assert.ok(drained, `no 'drained' report: ${run.stderr}`);
    const afterMs = drained['afterMs'] as number;
    assert.ok(afterMs >= 100 && afterMs < 10_000, `drained after ${afterMs} ms: by the idle grace, not the deadline`);
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
}
