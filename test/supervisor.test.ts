import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, test } from 'node:test';
import { Supervisor } from 'bellwether';
import { Fixture, Fixtures, startFixture } from './helpers/child.js';
import { freePort, getJson } from './helpers/http.js';
import { gone, killAtEnd } from './helpers/processes.js';
import { RUNTIMES, fixture, node } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';

const PRIMARY = fixture('supervisor-primary');

/** Starts a supervisor primary with the given options; resolves once all workers are ready. */
async function startPrimary(
  fixtures: Fixtures,
  runtime: (typeof RUNTIMES)[number],
  options: Record<string, unknown>,
  env: Record<string, string> = {},
): Promise<{ primary: Fixture; port: number }> {
  const port = await freePort();
  const primary = fixtures.add(startFixture(runtime, PRIMARY, [JSON.stringify({ env: { PORT: String(port), ...env }, ...options })]));
  await primary.next('started');
  return { primary, port };
}

for (const runtime of RUNTIMES) {
  describe(`Supervisor (primary under ${runtime.name})`, () => {
    test('SIGKILL a worker: a replacement with the same index becomes ready; the others keep serving', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary, port } = await startPrimary(fixtures, runtime, { workers: 3, timeout: 3000, heartbeat: 100 });
      const started = (await primary.next('started'))['workers'] as { index: number; pid: number }[];
      assert.deepEqual(started.map((w) => w.index), [0, 1, 2]);
      const victim = started[1]!;
      const seen = primary.events.length;
      process.kill(victim.pid, 'SIGKILL');
      const replaced = await primary.next('ready', (e) => e['index'] === 1, seen);
      assert.notEqual(replaced['workerPid'], victim.pid);
      assert.equal(replaced['restarts'], 1);
      const answers = await Promise.all(Array.from({ length: 20 }, () => getJson<{ index: number }>(port)));
      assert.ok(answers.every((a) => [0, 1, 2].includes(a.index)));
    });

    test('a worker that blocks its event loop is replaced after timeout; one reporting unhealthy(3) shows code 3 and is replaced', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary, port } = await startPrimary(fixtures, runtime, { workers: 2, timeout: 1500, heartbeat: 100, killTimeout: 500 });
      void getJson(port, '/block?ms=5000', 10_000).catch(() => undefined);
      const silent = await primary.next('kill', (e) => e['reason'] === 'silent');
      assert.equal(silent['code'], -1);
      // Its loop is blocked, so its SIGTERM handler cannot run: killTimeout later, SIGKILL ends it.
      const exit = await primary.next('exit', (e) => e['index'] === silent['index']);
      assert.equal(exit['signal'], 'SIGKILL');
      await primary.next('ready', (e) => e['index'] === silent['index'] && e['restarts'] === 1);

      let unhealthy: Record<string, unknown> | undefined;
      // Connections spread over the workers: ask until one reports.
      const seen = primary.events.length;
      await getJson(port, '/unhealthy?code=3');
      unhealthy = await primary.next('kill', (e) => e['reason'] === 'unhealthy', seen);
      assert.equal(unhealthy['code'], 3);
      await primary.next('ready', (e) => e['index'] === unhealthy!['index'] && Number(e['restarts']) >= 1, seen);
    });

    test('a worker that exits at boot every time is restarted maxRestarts times, then given up; the others keep serving', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const port = await freePort();
      const options = { workers: 2, timeout: 3000, heartbeat: 100, restart: { initialDelay: 100, maxRestarts: 3, window: 60_000 }, env: { PORT: String(port), CRASH_INDEX: '1' } };
      const primary = fixtures.add(startFixture(runtime, PRIMARY, [JSON.stringify(options)]));
      const error = await primary.next('error');
      assert.equal(error['code'], 'BW_ERR_CRASH_LOOP');
      await primary.next('started');
      primary.send('status');
      const status = (await primary.next('status'))['workers'] as { index: number; state: string }[];
      assert.deepEqual(status.map((w) => w.state), ['ready', 'given-up']);
      // maxRestarts 3: restarted three times; the fourth exit within the window gives the slot up.
      const exits = primary.events.filter((e) => e.event === 'exit' && e['index'] === 1);
      assert.deepEqual(exits.map((e) => e['replaced']), [true, true, true, false]);
      // Each restart waits a doubling delay (100, 200, 400 ms) before forking: exits at least that far apart.
      const gaps = exits.slice(1).map((e, i) => Number(e['at']) - Number(exits[i]!['at']));
      [100, 200, 400].forEach((floor, i) => assert.ok(gaps[i]! >= floor, `restart ${i + 1} came ${Math.round(gaps[i]!)} ms after the exit`));
      const answers = await Promise.all(Array.from({ length: 10 }, () => getJson<{ index: number }>(port)));
      assert.ok(answers.every((a) => a.index === 0));
    });

    test('SIGKILL the primary: every worker fences itself off and exits (bounded wait)', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary } = await startPrimary(fixtures, runtime, { workers: 3, timeout: 3000, heartbeat: 100 });
      const pids = ((await primary.next('started'))['workers'] as { pid: number }[]).map((w) => w.pid);
      killAtEnd(t, pids);
      await primary.kill('SIGKILL');
      // Fencing notices within about 250 ms (IPC disconnect, or the parent pid poll); 5 s is margin for a loaded machine.
      assert.deepEqual(await gone(pids, 5000), [], 'a worker outlived its primary');
    });

    test('SIGHUP under a bounded HTTP load: zero failed requests, every pid replaced', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const runner = fixture('rolling-load');
      // Bun's cluster shares the port with SO_REUSEPORT: a closing listener resets the
      // connections still queued on it unless net.ipv4.tcp_migrate_req=1 moves them to
      // another worker (README). That setting is per network namespace: the Bun run
      // gets a namespace of its own (loopback only) with it on.
      const run =
        runtime.name === 'bun'
          ? fixtures.add(
              new Fixture('unshare', ['-n', 'sh', '-c', `ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=1 && exec "${process.execPath}" "${runner}" bun`], 'rolling-load (bun, own netns)'),
            )
          : fixtures.add(startFixture(node, runner, ['node']));
      const result = await run.next('result');
      assert.equal(result['failed'], 0, `failed requests: ${(result['errors'] as string[]).join('; ')}`);
      assert.ok(Number(result['ok']) > 0);
      const before = result['before'] as number[];
      assert.equal((result['after'] as number[]).filter((pid) => before.includes(pid)).length, 0, 'every pid replaced');
    });

    test('SIGHUP: slots are replaced one at a time, in index order, each new worker ready before the next slot starts', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary } = await startPrimary(fixtures, runtime, { workers: 3, timeout: 3000, heartbeat: 100 });
      const seen = primary.events.length;
      process.kill(primary.pid, 'SIGHUP');
      await primary.next('restarted', () => true, seen);
      const rollout = primary.events.slice(seen).filter((e) => e.event === 'ready' || e.event === 'exit').map((e) => `${e.event} ${e['index']}`);
      // Each slot: its replacement ready, then the old worker leaves; then the next slot.
      assert.deepEqual(rollout.filter((e) => e.startsWith('ready')), ['ready 0', 'ready 1', 'ready 2']);
      assert.ok(rollout.indexOf('ready 1') > rollout.indexOf('ready 0') && rollout.indexOf('ready 2') > rollout.indexOf('ready 1'));
    });

    test('a graceful stop of every worker: the singleton job is not elected again in a worker that is itself stopping', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const options = { exec: fixture('singleton-worker'), workers: 3, timeout: 3000, heartbeat: 100, shutdownTimeout: 5000, env: { SINGLETON_LOCK_DIR: tempDir(t) } };
      const primary = fixtures.add(startFixture(runtime, PRIMARY, [JSON.stringify(options)]));
      await primary.next('started');
      await primary.next('job-elected');
      process.kill(primary.pid, 'SIGTERM');
      await primary.next('stopped');
      assert.equal(primary.count('job-elected'), 1, JSON.stringify(primary.events.filter((e) => e.event === 'job-elected')));
      assert.equal(primary.count('job-error'), 0);
    });

    test('a rolling restart moves the singleton job once per replaced leader: into a new worker, never into an old one', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const options = { exec: fixture('singleton-worker'), workers: 3, timeout: 3000, heartbeat: 100, shutdownTimeout: 5000, env: { SINGLETON_LOCK_DIR: tempDir(t) } };
      const primary = fixtures.add(startFixture(runtime, PRIMARY, [JSON.stringify(options)]));
      const before = ((await primary.next('started'))['workers'] as { pid: number }[]).map((w) => w.pid);
      const first = await primary.next('job-elected');
      // The leader's heartbeat says it leads: at 100 ms, well before the rollout ends.
      process.kill(primary.pid, 'SIGHUP');
      await primary.next('restarted', () => true, 0, 60_000);
      primary.send('status');
      const after = ((await primary.next('status'))['workers'] as { pid: number }[]).map((w) => w.pid);
      // Every old worker is gone now: the job ends up in a new one (the last leader may hand it over just after).
      await primary.next('job-elected', (e) => after.includes(e['pid'] as number));
      const elections = primary.events.filter((e) => e.event === 'job-elected');
      assert.ok(before.includes(first['pid'] as number));
      assert.equal(elections.length, 2, `elected once more, straight into a new worker: ${JSON.stringify(elections)}, workers now ${after}`);
      assert.equal(primary.count('job-error'), 0);
    });

    test('SIGTERM while a slow request is in flight: it completes, then everything exits', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary, port } = await startPrimary(fixtures, runtime, { workers: 1, timeout: 3000, heartbeat: 100, shutdownTimeout: 10_000 });
      const slow = getJson(port, '/slow?ms=700', 10_000);
      await primary.next('slow-started');
      process.kill(primary.pid, 'SIGTERM');
      const answer = await slow;
      assert.equal(answer['index'], 0);
      await primary.next('stopped');
      assert.equal((await primary.exited).code, 0);
    });

    test('SIGTTIN / SIGTTOU add and remove a worker (the removed one stops gracefully)', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary } = await startPrimary(fixtures, runtime, { workers: 2, timeout: 3000, heartbeat: 100, shutdownTimeout: 2000 });
      process.kill(primary.pid, 'SIGTTIN');
      await primary.next('ready', (e) => e['index'] === 2);
      primary.send('status');
      assert.equal(((await primary.next('status'))['workers'] as unknown[]).length, 3);
      const seen = primary.events.length;
      process.kill(primary.pid, 'SIGTTOU');
      const exit = await primary.next('exit', () => true, seen);
      assert.equal(exit['index'], 2);
      assert.equal(exit['replaced'], false);
      // Removed gracefully: its shutdown ran and it exited by itself, not killed.
      assert.deepEqual([exit['code'], exit['signal']], [0, null]);
      await primary.next('shutdown-done', (e) => e['index'] === 2, seen);
      primary.send('status');
      assert.equal(((await primary.next('status', () => true, seen))['workers'] as unknown[]).length, 2);
    });
  });
}

describe('Supervisor: boot timeout and quick stop', () => {
  test('a worker that never becomes ready is replaced after bootTimeout', async (t) => {
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const port = await freePort();
    const options = { workers: 1, timeout: 3000, heartbeat: 100, bootTimeout: 400, killTimeout: 200, env: { PORT: String(port), NEVER_READY: '1' } };
    const primary = fixtures.add(startFixture(node, PRIMARY, [JSON.stringify(options)]));
    const kill = await primary.next('kill');
    assert.equal(kill['reason'], 'boot-timeout');
    const exit = await primary.next('exit');
    assert.equal(exit['replaced'], true);
    await primary.next('kill', (e) => e['restarts'] === 1);
  });

  test('a second SIGTERM stops at once: a worker busy with a long request is SIGKILLed, not waited for', async (t) => {
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const { primary, port } = await startPrimary(fixtures, node, { workers: 1, timeout: 30_000, heartbeat: 100, shutdownTimeout: 60_000 });
    const slow = getJson(port, '/slow?ms=30000', 60_000).then(() => 'answered', () => 'cut');
    await primary.next('slow-started');
    process.kill(primary.pid, 'SIGTERM');
    // Graceful: the worker waits for its request; then the second signal.
    for (let state = ''; state !== 'stopping'; ) {
      const seen = primary.events.length;
      primary.send('status');
      state = ((await primary.next('status', () => true, seen))['workers'] as { state: string }[])[0]!.state;
    }
    assert.equal(primary.count('exit'), 0, 'still serving the slow request');
    process.kill(primary.pid, 'SIGTERM');
    const exit = await primary.next('exit');
    assert.equal(exit['signal'], 'SIGKILL');
    assert.equal(await slow, 'cut');
    await primary.next('stopped');
  });
});

describe('Supervisor hooks', () => {
  test('beforeFork, afterFork and afterWorkerExit run per slot; a throwing hook is reported with its slot and stops nothing', async (t) => {
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const port = await freePort();
    const primary = fixtures.add(
      startFixture(node, PRIMARY, [JSON.stringify({ workers: 2, timeout: 3000, heartbeat: 100, env: { PORT: String(port) } })], { HOOKS: '1' }),
    );
    const error = await primary.next('error');
    assert.equal(error['code'], 'BW_ERR_CALLBACK_FAILED');
    assert.match(String(error['message']), /beforeFork hook of slot 0 failed: hook bug/);
    const started = (await primary.next('started'))['workers'] as { index: number; pid: number; state: string }[];
    assert.deepEqual(started.map((w) => w.state), ['ready', 'ready']);
    const hooks = primary.events.filter((e) => e.event === 'hook').map((e) => `${e['at']} ${e['index']}`);
    assert.deepEqual(hooks.sort(), ['afterFork 0', 'afterFork 1', 'beforeFork 0', 'beforeFork 1']);
    process.kill(started[1]!.pid, 'SIGKILL');
    const exit = await primary.next('hook', (e) => e['at'] === 'afterWorkerExit');
    assert.deepEqual([exit['index'], exit['signal']], [1, 'SIGKILL']);
  });
});

describe('Supervisor: bad input fails before anything forks', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['missing entry script', { exec: '/nonexistent/server.js' }, 'BW_ERR_ENTRY_NOT_FOUND'],
    ['entry is a directory', { exec: '/tmp' }, 'BW_ERR_ENTRY_NOT_FOUND'],
    ['zero workers', { workers: 0 }, 'BW_ERR_INVALID_OPTION'],
    ['fractional workers', { workers: 1.5 }, 'BW_ERR_INVALID_OPTION'],
    ['too many workers', { workers: 100_000 }, 'BW_ERR_INVALID_OPTION'],
    ['heartbeat not below timeout', { timeout: 1000, heartbeat: 1000 }, 'BW_ERR_INVALID_OPTION'],
    ['negative kill timeout', { killTimeout: -1 }, 'BW_ERR_INVALID_OPTION'],
    ['unknown option', { worker: 2 }, 'BW_ERR_INVALID_OPTION'],
    ['hook not a function', { beforeFork: 'x' }, 'BW_ERR_INVALID_OPTION'],
    ['bad name', { name: '../x' }, 'BW_ERR_INVALID_NAME'],
  ];
  for (const [what, options, code] of cases) {
    test(what, (t) => {
      const exec = `${tempDir(t)}/server.js`;
      fs.writeFileSync(exec, '');
      assert.throws(() => new Supervisor({ exec, ...options } as never), { name: 'BellwetherError', code });
    });
  }
});
