/**
 * The supervisor under what reviews found: control-socket clients that
 * misbehave, paths that are not ours, races between restarts, kills,
 * rollouts, scaling and stops, and the worker environment.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { bounded } from './helpers/bounded.js';
import { CLI, bellwether } from './helpers/cli.js';
import { Fixture, Fixtures, startFixture } from './helpers/child.js';
import { freePort, getJson } from './helpers/http.js';
import { gone, isGone } from './helpers/processes.js';
import { RUNTIMES, type Runtime, fixture, node } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';

const HTTP_APP = fixture('http-app');
const PRIMARY = fixture('supervisor-primary');


/** `bellwether start` of http-app with a control socket; resolves once all workers are ready. */
async function startCli(fixtures: Fixtures, runtime: Runtime, socket: string, workers = 2): Promise<Fixture> {
  const port = await freePort();
  const primary = fixtures.add(
    new Fixture(runtime.bin, [CLI, 'start', HTTP_APP, '--workers', String(workers), '--heartbeat', '100', '--socket', socket], `bellwether start (${runtime.name})`, { PORT: String(port) }),
  );
  await bounded('workers ready', primary.stderrMatches(new RegExp(`${workers} of ${workers} workers ready`)), 20_000);
  return primary;
}

async function startPrimary(fixtures: Fixtures, runtime: Runtime, options: Record<string, unknown>, env: Record<string, string> = {}): Promise<{ primary: Fixture; port: number }> {
  const port = await freePort();
  const merged = { ...options, env: { PORT: String(port), ...((options['env'] as Record<string, string> | undefined) ?? {}) } };
  const primary = fixtures.add(startFixture(runtime, PRIMARY, [JSON.stringify(merged)], env));
  return { primary, port };
}

/** The primary's children right now (its workers), from /proc. */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z') children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

async function status(primary: Fixture): Promise<{ workers: { index: number; workerPid?: number; pid: number; state: string }[]; rollout: { state: string; slot?: number } | null }> {
  const seen = primary.events.length;
  primary.send('status');
  return (await bounded('status', primary.next('status', () => true, seen), 5000)) as never;
}

/** Asks for the status until it satisfies `done`: signals and stdin commands reach the primary in no fixed order. */
async function untilStatus(primary: Fixture, done: (now: Awaited<ReturnType<typeof status>>) => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done(await status(primary))) {
    if (Date.now() > deadline) throw new Error(`status not reached within ${ms} ms`);
  }
}

for (const runtime of RUNTIMES) {
  describe(`control socket (primary under ${runtime.name})`, () => {
    test('clients that reset, and one that never reads nor closes, neither crash the primary nor hold its stop', async (t) => {
      const socket = path.join(tempDir(t), 'control.sock');
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const primary = await startCli(fixtures, runtime, socket);
      // Closed at once, without reading the status line (ECONNRESET or EPIPE on the primary's side).
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          const client = net.connect(socket);
          await once(client, 'connect');
          client.destroy();
        }),
      );
      assert.equal((await bellwether(['status', '--socket', socket, '--json'])).code, 0, 'still answering');
      // Half-open: connected, never reads, never closes.
      const stuck = net.connect({ path: socket, allowHalfOpen: true });
      t.after(() => stuck.destroy());
      await once(stuck, 'connect');
      stuck.pause();
      process.kill(primary.pid, 'SIGTERM');
      assert.deepEqual(await bounded('primary exit', primary.exited, 10_000), { code: 0, signal: null }, primary.stderr);
      assert.equal(fs.existsSync(socket), false, 'its socket removed');
    });
  });
}

describe('control socket paths', () => {
  test('--socket naming a regular file: refused with a code, the file left intact', async (t) => {
    const file = path.join(tempDir(t), 'data.db');
    fs.writeFileSync(file, 'precious');
    const result = await bellwether(['start', HTTP_APP, '--workers', '1', '--socket', file]);
    assert.equal(result.code, 78);
    assert.match(result.stderr, /BW_ERR_CONTROL_SOCKET_UNSAFE: .*data\.db exists and is not a socket; it is left alone/);
    assert.equal(fs.readFileSync(file, 'utf8'), 'precious');
  });

  test('a name that makes the socket path too long for a Unix socket fails before anything starts, leaving no file', async (t) => {
    const runtimeDir = tempDir(t);
    const result = await bellwether(['start', HTTP_APP, '--workers', '1', '--name', 'n'.repeat(120)], { env: { BELLWETHER_LOCK_DIR: path.join(runtimeDir, 'bellwether') } });
    assert.equal(result.code, 78);
    assert.match(result.stderr, /BW_ERR_CONTROL_SOCKET_UNSAFE: control socket path .* is \d+ bytes; a Unix socket path holds at most 107/);
    assert.deepEqual(fs.existsSync(path.join(runtimeDir, 'bellwether')) ? fs.readdirSync(path.join(runtimeDir, 'bellwether')) : [], []);
  });

  test('bellwether status: nobody there, a planted socket, an unsafe directory, escape sequences', async (t) => {
    const dir = tempDir(t);
    const missing = await bellwether(['status', '--socket', path.join(dir, 'none.sock')]);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /no supervisor is running on .*none\.sock: it does not exist/);
    // A fake supervisor in our own directory, answering with terminal escapes.
    const fakePath = path.join(dir, 'fake.sock');
    const fake = net.createServer((c) => {
      c.on('error', () => {});
      c.end(`${JSON.stringify({ pid: 1, name: 'x\u001b[2J\u001b]0;owned\u0007', workers: [{ index: 0, pid: 2, state: 'ready\u001b[31m', code: 0, restarts: 0, uptime: 1, rss: 1 }] })}\n`);
    });
    t.after(() => fake.close());
    await new Promise<void>((resolve) => fake.listen(fakePath, resolve));
    const text = await bellwether(['status', '--socket', fakePath]);
    assert.equal(text.code, 0, text.stderr);
    assert.equal(/[\u0000-\u0008\u000b-\u001f\u007f]/.test(text.stdout), false, `control characters printed: ${JSON.stringify(text.stdout)}`);
    assert.match(text.stdout, /supervisor x\?\[2J\?\]0;owned\? \(pid 1\)/);
    // A malformed status (escapes where a slot number belongs) is refused, not printed.
    const badPath = path.join(dir, 'bad.sock');
    const badServer = net.createServer((c) => {
      c.on('error', () => {});
      c.end(`${JSON.stringify({ pid: 1, name: 'x', workers: [], rollout: { state: 'failed', slot: '\u001b]0;pwned\u0007' } })}\n`);
    });
    t.after(() => badServer.close());
    await new Promise<void>((resolve) => badServer.listen(badPath, resolve));
    const malformed = await bellwether(['status', '--socket', badPath]);
    assert.equal(malformed.code, 78);
    assert.match(malformed.stderr, /not a supervisor's status \(a wrong rollout\)/);
    assert.equal(malformed.stdout, '');
    // The same socket owned by another user: not trusted.
    fs.chownSync(fakePath, 65534, 65534);
    const planted = await bellwether(['status', '--socket', fakePath]);
    assert.equal(planted.code, 78);
    assert.match(planted.stderr, /BW_ERR_CONTROL_SOCKET_UNSAFE: .*fake\.sock is owned by uid 65534/);
    // A directory others can write to (no sticky bit): anyone could have put it there.
    const open = path.join(dir, 'open');
    fs.mkdirSync(open);
    fs.chmodSync(open, 0o777);
    const openSock = net.createServer(() => {});
    t.after(() => openSock.close());
    await new Promise<void>((resolve) => openSock.listen(path.join(open, 's.sock'), resolve));
    const unsafe = await bellwether(['status', '--socket', path.join(open, 's.sock')]);
    assert.equal(unsafe.code, 78);
    assert.match(unsafe.stderr, /BW_ERR_CONTROL_SOCKET_UNSAFE: control socket directory .* is not safe/);
  });

  test('a socket of another program at the path (silent until spoken to) is refused and left alone', async (t) => {
    const dir = tempDir(t);
    const agentPath = path.join(dir, 'agent.sock');
    const agent = net.createServer((c) => {
      c.on('error', () => {});
      c.once('data', () => c.end('agent reply\n'));
    });
    t.after(() => agent.close());
    await new Promise<void>((resolve) => agent.listen(agentPath, resolve));
    const result = await bellwether(['start', HTTP_APP, '--workers', '1', '--socket', agentPath]);
    assert.equal(result.code, 78);
    assert.match(result.stderr, /BW_ERR_CONTROL_SOCKET_UNSAFE: something listens on .*agent\.sock/);
    const client = net.connect(agentPath);
    client.end('hello');
    const [reply] = (await bounded('agent reply', once(client.setEncoding('utf8'), 'data'), 5000)) as [string];
    assert.equal(reply, 'agent reply\n', 'the other program still owns its socket');
  });

  test("the process umask is not touched while the control socket is created", async (t) => {
    const dir = tempDir(t);
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const { primary } = await startPrimary(fixtures, node, { workers: 1, timeout: 3000, heartbeat: 100, controlSocket: path.join(dir, 'c.sock') }, { REPORT_UMASK: '1' });
    const started = await bounded('started', primary.next('started'), 20_000);
    assert.deepEqual(started['umaskSet'], [], 'process.umask() was never changed');
    assert.equal(fs.statSync(path.join(dir, 'c.sock')).mode & 0o777, 0o600);
  });
});

for (const runtime of RUNTIMES) {
  describe(`supervisor state machine (primary under ${runtime.name})`, () => {
    test('SIGHUP during a restart backoff: one worker per slot, the rollout settles', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary } = await startPrimary(fixtures, runtime, { workers: 2, timeout: 3000, heartbeat: 100, restart: { initialDelay: 1500 } });
      const started = ((await bounded('started', primary.next('started'), 20_000))['workers'] as { pid: number }[]).map((w) => w.pid);
      let seen = primary.events.length;
      process.kill(started[0]!, 'SIGKILL');
      await bounded('exit', primary.next('exit', (e) => e['index'] === 0, seen), 5000);
      seen = primary.events.length;
      process.kill(primary.pid, 'SIGHUP');
      await bounded('restarted', primary.next('restarted', () => true, seen), 20_000);
      // The backoff's own restart (it counts as one): after it, nothing else may fork for slot 0.
      await bounded('slot 0 back', primary.next('ready', (e) => e['index'] === 0 && e['restarts'] === 1, seen), 20_000);
      // The retired worker of slot 1 may still be leaving: then exactly one per slot.
      const deadline = Date.now() + 5000;
      while (childrenOf(primary.pid).length > 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(childrenOf(primary.pid).length, 2, 'no leaked second worker for slot 0');
      const now = await status(primary);
      assert.deepEqual(now.workers.map((w) => [w.index, w.state]), [[0, 'ready'], [1, 'ready']]);
    });

    test("a restart whose beforeFork outlasts a rollout's replacement: the slot keeps one worker", async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary } = await startPrimary(fixtures, runtime, { workers: 1, timeout: 3000, heartbeat: 100, restart: { initialDelay: 10 } }, { SLOW_BEFORE_FORK_WHEN_EMPTY_MS: '1500' });
      const [old] = ((await bounded('started', primary.next('started'), 20_000))['workers'] as { pid: number }[]).map((w) => w.pid);
      const seen = primary.events.length;
      process.kill(primary.pid, 'SIGHUP');
      // The rollout's replacement is being forked (its beforeFork is quick: the slot has a worker)...
      await bounded('replacement forking', primary.next('hook', (e) => e['at'] === 'beforeFork' && e['workerPid'] === old, seen), 20_000);
      process.kill(old!, 'SIGKILL'); // ...then the old worker dies: a restart starts, its beforeFork slow
      await bounded('restarted', primary.next('restarted', () => true, seen), 20_000);
      await bounded("the restart's beforeFork ended", primary.next('hook', (e) => e['at'] === 'beforeFork-done', seen), 20_000);
      const deadline = Date.now() + 5000;
      while (childrenOf(primary.pid).length > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(childrenOf(primary.pid).length, 1, 'one worker for the one slot');
      assert.equal((await status(primary)).workers.length, 1);
    });

    test('a rolling restart while a liveness kill is pending: the new worker is still watched', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary, port } = await startPrimary(fixtures, runtime, { workers: 1, timeout: 3000, heartbeat: 100, killTimeout: 5000, shutdownTimeout: 5000, env: { SLOW_STOP_MS: '1500' } });
      const [first] = ((await bounded('started', primary.next('started'), 20_000))['workers'] as { pid: number }[]).map((w) => w.pid);
      await getJson(port, '/unhealthy?code=3');
      await bounded('first kill', primary.next('kill', (e) => e['workerPid'] === first), 5000);
      const seen = primary.events.length;
      process.kill(primary.pid, 'SIGHUP');
      const replacement = Number((await bounded('replacement ready', primary.next('ready', () => true, seen), 20_000))['workerPid']);
      assert.notEqual(replacement, first);
      assert.deepEqual(await gone([first!], 10_000), [], 'the old worker leaves');
      await getJson(port, '/unhealthy?code=3');
      const kill = await bounded('the replacement is killed too', primary.next('kill', (e) => e['workerPid'] === replacement, seen), 5000);
      assert.equal(kill['reason'], 'unhealthy');
    });

    test('a slow async afterFork hook misses neither readiness nor a death during it', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary } = await startPrimary(fixtures, runtime, { workers: 2, timeout: 3000, heartbeat: 100, bootTimeout: 4000, restart: { initialDelay: 10, maxRestarts: 1 }, env: { CRASH_INDEX: '1' } }, { AFTER_FORK_DELAY_MS: '500' });
      const started = (await bounded('start() resolves', primary.next('started'), 10_000))['workers'] as { state: string }[];
      assert.equal(started[0]!.state, 'ready');
      await bounded('slot 1 given up', primary.next('error', (e) => e['code'] === 'BW_ERR_CRASH_LOOP'), 10_000);
      assert.equal(primary.count('kill'), 0, 'no healthy worker killed for boot timeout');
    });

    test('SIGTERM right after a fork: the booting worker gets the stop and leaves by itself', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary } = await startPrimary(fixtures, runtime, { workers: 1, timeout: 3000, heartbeat: 100, shutdownTimeout: 20_000 }, { STOP_IN_AFTER_FORK: '1' });
      const stopped = Date.now();
      await bounded('stopped', primary.next('stopped'), 10_000);
      const exit = primary.events.find((e) => e.event === 'exit');
      assert.equal(exit?.['signal'], null, 'left by itself, not SIGKILLed at the shutdown timeout');
      assert.ok(Date.now() - stopped < 10_000);
    });

    test('SIGTTOU, then a quick stop: the removed, still draining worker is killed and waited for', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary } = await startPrimary(fixtures, runtime, { workers: 2, timeout: 3000, heartbeat: 100, shutdownTimeout: 20_000, env: { SLOW_STOP_MS: '10000' } });
      const pids = ((await bounded('started', primary.next('started'), 20_000))['workers'] as { pid: number }[]).map((w) => w.pid);
      process.kill(primary.pid, 'SIGTTOU');
      // Signals and stdin commands race: ask until the signal shows.
      await untilStatus(primary, (now) => now.workers.length === 1);
      process.kill(primary.pid, 'SIGTERM');
      // The first SIGTERM handled (else two would merge into one): then the next stops at once.
      await untilStatus(primary, (now) => now.workers[0]!.state === 'stopping');
      process.kill(primary.pid, 'SIGTERM');
      await bounded('stopped', primary.next('stopped'), 5000);
      assert.deepEqual(pids.filter((pid) => !isGone(pid)), [], "'stopped' only once every worker, the removed one included, is gone");
    });

    test('a rolling restart stops at a broken replacement, keeps the old workers serving, and runs again when asked', async (t) => {
      const flag = path.join(tempDir(t), 'broken');
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary, port } = await startPrimary(fixtures, runtime, { workers: 2, timeout: 3000, heartbeat: 100, env: { BROKEN_IF_EXISTS: flag } });
      const before = ((await bounded('started', primary.next('started'), 20_000))['workers'] as { pid: number }[]).map((w) => w.pid);
      fs.writeFileSync(flag, '');
      let seen = primary.events.length;
      process.kill(primary.pid, 'SIGHUP');
      const failed = await bounded('rolloutFailed', primary.next('rolloutFailed', () => true, seen), 20_000);
      assert.equal(failed['index'], 0);
      assert.ok(primary.events.slice(seen).some((e) => e.event === 'error' && e['code'] === 'BW_ERR_ROLLOUT_FAILED'));
      const kept = await status(primary);
      assert.deepEqual(kept.workers.map((w) => w.pid), before, 'the old workers keep serving');
      assert.deepEqual(kept.rollout, { state: 'failed', slot: 0, reason: String(failed['reason']) });
      const answers = await Promise.all(Array.from({ length: 10 }, () => getJson<{ pid: number }>(port)));
      assert.ok(answers.every((a) => before.includes(a.pid)));
      // Fixed deploy; two SIGHUPs in a row: the second runs once the first is done.
      fs.rmSync(flag);
      seen = primary.events.length;
      process.kill(primary.pid, 'SIGHUP');
      await bounded('first replacement', primary.next('ready', () => true, seen), 20_000);
      process.kill(primary.pid, 'SIGHUP');
      const firstRound = await bounded('first round', primary.next('restarted', () => true, seen), 30_000);
      await bounded('second round', primary.next('restarted', () => true, primary.events.indexOf(firstRound) + 1), 30_000);
      assert.equal(primary.events.slice(seen).filter((e) => e.event === 'restarted').length, 2, 'the queued SIGHUP ran a second round');
      assert.equal(primary.events.slice(seen).filter((e) => e.event === 'ready').length, 4, 'each round replaced both slots');
      const after = await status(primary);
      assert.equal(after.workers.filter((w) => before.includes(w.pid)).length, 0);
      assert.deepEqual(after.rollout, { state: 'done' });
    });

    test("a helper the app forks does not take itself for a worker (nor see the primary's settings)", async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary, port } = await startPrimary(fixtures, runtime, { workers: 1, timeout: 3000, heartbeat: 100 });
      await bounded('started', primary.next('started'), 20_000);
      const answer = await getJson<{ helper: { isSupervised: boolean; index: number | null; env: string[] }; code: number }>(port, '/helper', 10_000);
      assert.equal(answer.code, 0, 'not fenced off as an orphan (exit 70)');
      assert.equal(answer.helper.isSupervised, false);
      assert.equal(answer.helper.index, null, 'no slot index outside the supervised worker');
      assert.deepEqual(answer.helper.env, ['BELLWETHER_WORKER_INDEX'], 'only the documented index variable is inherited');
    });

    test('stop() while a worker that already disconnected is still running: no crash, it is killed', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary, port } = await startPrimary(fixtures, runtime, { workers: 1, timeout: 3000, heartbeat: 100, killTimeout: 1000, env: { LINGER_MS: '20000' } });
      await bounded('started', primary.next('started'), 20_000);
      await getJson(port, '/unhealthy?code=3');
      await bounded('kill', primary.next('kill'), 5000);
      await bounded('the worker stopped serving and disconnected', primary.next('shutdown-done'), 5000);
      process.kill(primary.pid, 'SIGTERM');
      await bounded('stopped', primary.next('stopped'), 10_000);
      assert.deepEqual(await bounded('primary exit', primary.exited, 5000), { code: 0, signal: null }, primary.stderr);
    });

    test('stop() during start(): start() rejects, stop() resolves, nothing is left in the socket directory', async (t) => {
      const dir = tempDir(t);
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary } = await startPrimary(fixtures, runtime, { workers: 1, timeout: 3000, heartbeat: 100, controlSocket: path.join(dir, 'c.sock') }, { STOP_DURING_START: '1' });
      const outcome = await bounded('outcome', primary.next('start-outcome'), 10_000);
      assert.deepEqual([outcome['start'], outcome['state']], ['BW_ERR_CLOSED', 'stopped']);
      assert.deepEqual(await bounded('exit', primary.exited, 5000), { code: 0, signal: null });
      assert.deepEqual(fs.readdirSync(dir), []);
    });

    test('start() resolves only once every slot is ready or given up', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const { primary } = await startPrimary(fixtures, runtime, { workers: 2, timeout: 3000, heartbeat: 100, restart: { initialDelay: 50, maxRestarts: 2 }, env: { CRASH_INDEX: '1' } });
      const started = await bounded('started', primary.next('started'), 20_000);
      const givenUp = primary.events.findIndex((e) => e.event === 'error' && e['code'] === 'BW_ERR_CRASH_LOOP');
      assert.ok(givenUp >= 0 && givenUp < primary.events.indexOf(started), 'the crash-looping slot was given up before start() resolved');
      assert.deepEqual((started['workers'] as { state: string }[]).map((w) => w.state), ['ready', 'given-up']);
    });
  });
}
