/**
 * The adapters under `bellwether start`, as users run them: readiness to the
 * supervisor means what /readyz means, and the supervisor's graceful stop
 * closes what the adapter started. Node and Bun.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test, type TestContext } from 'node:test';
import { bounded } from './helpers/bounded.js';
import { CLI } from './helpers/cli.js';
import { Fixture, Fixtures } from './helpers/child.js';
import { freePort, getText } from './helpers/http.js';
import { gone, killAtEnd } from './helpers/processes.js';
import { RUNTIMES, type Runtime, fixture } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';

const EXAMPLES = new URL('../../examples/', import.meta.url).pathname;

function start(t: TestContext, runtime: Runtime, app: string, env: Record<string, string>): { primary: Fixture; port: number; lockDir: string; name: string } {
  const lockDir = tempDir(t);
  const port = Number(env['PORT']);
  const name = `adapter-${port}`;
  const fixtures = new Fixtures();
  t.after(() => fixtures.killAll());
  const primary = fixtures.add(
    new Fixture(runtime.bin, [CLI, 'start', app, '--workers', '1', '--heartbeat', '100', '--name', name], `bellwether start ${name} (${runtime.name})`, { ...env, BELLWETHER_LOCK_DIR: lockDir }),
  );
  return { primary, port, lockDir, name };
}

function status(name: string, lockDir: string): { pid: number; state: string }[] {
  const run = spawnSync(process.execPath, [CLI, 'status', '--name', name, '--json'], { encoding: 'utf8', env: { ...process.env, BELLWETHER_LOCK_DIR: lockDir } });
  assert.equal(run.status, 0, run.stderr);
  return (JSON.parse(run.stdout) as { workers: { pid: number; state: string }[] }).workers;
}

/** The primary's worker pids, killed after the test whatever happens. */
function workersOf(t: TestContext, name: string, lockDir: string): number[] {
  const workers = status(name, lockDir).map((w) => w.pid);
  killAtEnd(t, workers);
  return workers;
}

/** The primary (SIGTERMed) exits with 0 within 10 s, its worker with 0 too (no failed entry script, no SIGKILL), and no worker is left. */
async function exitsCleanly(primary: Fixture, workers: number[]): Promise<void> {
  assert.deepEqual(await bounded('the primary exits', primary.exited, 10_000), { code: 0, signal: null });
  assert.match(primary.stderr, /worker 0 exited \(0\)/);
  assert.doesNotMatch(primary.stderr, /cannot load entry script|SIGKILL/);
  assert.deepEqual(await gone(workers, 5000), []);
}

/** /readyz once the worker listens (a process outside has no event to await: bounded retries). */
async function readyzOnceListening(port: number): Promise<number> {
  const until = performance.now() + 20_000;
  for (;;) {
    try {
      return (await getText(port, '/readyz')).status;
    } catch (err) {
      if (performance.now() > until) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

for (const runtime of RUNTIMES) {
  describe(`adapters under bellwether start (${runtime.name})`, () => {
    test('Express: a worker that listens but has not started (ZooKeeper unreachable) is not ready to the supervisor', async (t) => {
      const { primary, port, lockDir, name } = start(t, runtime, `${EXAMPLES}express/server.js`, { PORT: String(await freePort()), ZK_CONNECT: '127.0.0.1:1' });
      assert.equal(await readyzOnceListening(port), 503);
      const workers = status(name, lockDir);
      killAtEnd(t, workers.map((w) => w.pid));
      assert.deepEqual(workers.map((w) => w.state), ['starting'], 'listening, /readyz 503: not ready');
      assert.doesNotMatch(primary.stderr, /workers ready/);
    });

    test('Express: a graceful stop while the router still starts (ZooKeeper unreachable) cancels the start: a quick, clean exit', async (t) => {
      const { primary, port, lockDir, name } = start(t, runtime, `${EXAMPLES}express/server.js`, { PORT: String(await freePort()), ZK_CONNECT: '127.0.0.1:1' });
      assert.equal(await readyzOnceListening(port), 503);
      const workers = workersOf(t, name, lockDir);
      primary.child.kill('SIGTERM');
      // The session's connect timeout is 15 s: a stop that waited for the start would take that long.
      await exitsCleanly(primary, workers);
    });

    test('Express: a router attached after the stop began (the entry script still loading) is closed at once, its start cancelled', async (t) => {
      const { primary, lockDir, name } = start(t, runtime, fixture('express-late-attach'), { PORT: String(await freePort()) });
      await primary.next('loading');
      const workers = workersOf(t, name, lockDir);
      primary.child.kill('SIGTERM');
      await primary.next('attaching', () => true, 0, 10_000);
      // The session's connect timeout is 15 s: a stop that waited for the script to load would take that long.
      await exitsCleanly(primary, workers);
      assert.equal(primary.count('attached'), 1, 'attach() resolved (its start was cancelled, not failed)');
    });

    test('Fastify: a graceful stop while the plugin still starts (ZooKeeper unreachable) cancels the start: a quick, clean exit', async (t) => {
      const { primary, lockDir, name } = start(t, runtime, fixture('fastify-zk-start'), { PORT: String(await freePort()), ZK_CONNECT: '127.0.0.1:1' });
      await primary.next('registering');
      const workers = workersOf(t, name, lockDir);
      primary.child.kill('SIGTERM');
      // The session's connect timeout is 15 s: a stop that waited for the start would take that long.
      await exitsCleanly(primary, workers);
      // Registration resolved (its start cancelled): the script loaded on, and the stop then closed the app.
      assert.equal(primary.count('registered'), 1);
    });

    test('a stop while the entry script still loads runs its onShutdown callbacks only once it has loaded (not while it still uses what they close)', async (t) => {
      const { primary } = start(t, runtime, fixture('boot-stop-pool'), { PORT: String(await freePort()) });
      await primary.next('loading');
      primary.child.kill('SIGTERM');
      assert.deepEqual(await bounded('the primary exits', primary.exited, 10_000), { code: 0, signal: null });
      assert.deepEqual(primary.events.map((e) => e.event), ['loading', 'queried', 'pool-ended']);
      assert.match(primary.stderr, /worker 0 exited \(0\)/);
    });

    test('Fastify, the README snippet with no stop wiring: a graceful stop aborts the job and closes the app', async (t) => {
      const { primary, lockDir, name } = start(t, runtime, fixture('fastify-readme-app'), { PORT: String(await freePort()), SINGLETON_LOCK_DIR: tempDir(t) });
      await primary.next('run-started');
      const workers = workersOf(t, name, lockDir);
      primary.child.kill('SIGTERM');
      await primary.next('run-aborted', () => true, 0, 10_000);
      // shutdownTimeout is 30 s: a worker left running would be SIGKILLed only then.
      assert.deepEqual(await bounded('the primary exits', primary.exited, 10_000), { code: 0, signal: null });
      assert.doesNotMatch(primary.stderr, /SIGKILL/);
      assert.deepEqual(await gone(workers, 5000), []);
    });
  });
}
