import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { Fixture, Fixtures, startFixture } from './helpers/child.js';
import { freePort, getJson } from './helpers/http.js';
import { RUNTIMES, fixture, node } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';
import { useZooKeeper } from './helpers/zookeeper.js';

describe('fork and ZooKeeper (seed 000)', () => {
  const zk1 = useZooKeeper();
  for (const runtime of RUNTIMES) {
    test(`${runtime.name}: parent and child both see onConnected, with different session ids; the parent's session is unaffected`, async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const primary = fixtures.add(startFixture(runtime, fixture('seed000-primary'), [zk1.ensemble.connectString()]));
      const parent = await primary.next('onConnected', (e) => e['who'] === 'parent');
      const child = await primary.next('onConnected', (e) => e['who'] === 'child');
      assert.notEqual(child['sessionId'], parent['sessionId']);
      assert.ok(((await primary.next('children'))['children'] as string[]).includes('zookeeper'));
      const after = await primary.next('parent-session-after');
      assert.equal(after['sessionId'], parent['sessionId']);
      assert.equal(after['state'], 'connected');
      await primary.next('done');
      assert.equal(primary.count('onConnected'), 2, 'one onConnected each, no more');
    });
  }

  for (const runtime of RUNTIMES) {
    test(`${runtime.name}: a Supervisor given a session pauses it around every fork and resumes it after`, async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const primary = fixtures.add(startFixture(runtime, fixture('zk-supervisor-primary'), [zk1.ensemble.connectString(), String(await freePort())]));
      const forks = await primary.next('forks');
      assert.deepEqual(forks['order'], ['pause', 'fork', 'resume', 'pause', 'fork', 'resume']);
      assert.equal(forks['sessionState'], 'connected');
      await primary.next('done');
    });
  }

  test('installForkHook: hooks around a hand-written cluster.fork, the session settings passed down, removable', async (t) => {
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const primary = fixtures.add(startFixture(node, fixture('hook-primary'), [zk1.ensemble.connectString()]));
    const env = await primary.next('worker-env');
    assert.deepEqual(primary.events.filter((e) => e.event === 'hook').map((e) => e['at']), ['beforeFork', 'afterFork']);
    assert.equal(env['own'], '1', "the caller's env is kept");
    assert.equal(JSON.parse(String(env['settings']))['connect'], zk1.ensemble.connectString());
    assert.equal(env['leftInEnv'], null, 'the settings (credentials) are not left in the environment for children');
    assert.equal((await primary.next('uninstalled'))['restored'], true);
  });
});

describe('bellwether start / status (CLI)', () => {
  test('start runs the workers; status reads them through the 0600 control socket; SIGTERM stops', async (t) => {
    const dir = tempDir(t);
    const socket = path.join(dir, 'control.sock');
    const port = await freePort();
    const cli = new URL('../../dist/cli.js', import.meta.url).pathname;
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const primary = fixtures.add(
      new Fixture(process.execPath, [cli, 'start', fixture('http-app'), '--workers', '2', '--heartbeat', '100', '--timeout', '3000', '--socket', socket], 'bellwether start', { PORT: String(port) }),
    );
    await primary.stderrMatches(/2 workers ready/);
    const run = spawn(process.execPath, [cli, 'status', '--socket', socket, '--json']);
    let out = '';
    run.stdout.on('data', (d: Buffer) => (out += d));
    assert.equal(await new Promise((resolve) => run.on('close', resolve)), 0);
    const status = JSON.parse(out) as { workers: { index: number; state: string; pid: number }[] };
    assert.deepEqual(status.workers.map((w) => [w.index, w.state]), [[0, 'ready'], [1, 'ready']]);
    const { statSync } = await import('node:fs');
    assert.equal(statSync(socket).mode & 0o777, 0o600);
    assert.ok([0, 1].includes(Number((await getJson(port))['index'])));
    primary.child.kill('SIGTERM');
    assert.deepEqual(await primary.exited, { code: 0, signal: null });
  });

  test('bad input: a missing entry script fails with its code before anything forks', async () => {
    const cli = new URL('../../dist/cli.js', import.meta.url).pathname;
    const run = spawn(process.execPath, [cli, 'start', '/nonexistent/app.js', '--workers', '2']);
    let err = '';
    run.stderr.on('data', (d: Buffer) => (err += d));
    const code = await new Promise((resolve) => run.on('close', resolve));
    assert.equal(code, 66); // EX_NOINPUT (src/exit-codes.ts)
    assert.match(err, /BW_ERR_ENTRY_NOT_FOUND/);
  });
});
