/**
 * The host lock where util-linux is missing (distroless and Alpine images):
 * flock(1) and setpriv(1) hidden from the system directories for the
 * fixtures, by scripts/without-util-linux.sh. The whole host-singleton
 * test files run that way too: `npm run test:without-util-linux`, which CI runs.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, test } from 'node:test';
import { bounded } from './helpers/bounded.js';
import { Fixture, Fixtures, startFixture } from './helpers/child.js';
import { checkFenceLog } from './helpers/fence-log.js';
import { gone, killAtEnd, parentOf } from './helpers/processes.js';
import { flockRequests, waitForBlockedWaiters } from './helpers/proc-locks.js';
import { RUNTIMES, type Runtime, bun, fixture, node } from './helpers/runtimes.js';
import { runToEnd } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';
import { withoutUtilLinux } from './helpers/without-util-linux.js';

const CONTENDER = fixture('host-contender');
const START = fixture('start-singleton');
const FS_EXT_BUILD = path.join(path.dirname(createRequire(import.meta.url).resolve('fs-ext/package.json')), 'build', 'Release', 'fs_ext.node');

/** The wrapper and its tools directory, removed after the test. */
function hidden(t: Parameters<typeof tempDir>[0], hide: string[] = []): ReturnType<typeof withoutUtilLinux> {
  assert.equal(process.getuid?.(), 0, 'needs root to make a mount namespace');
  return withoutUtilLinux(tempDir(t, 'bw-tools-'), hide);
}

/** The program a process runs, by its /proc entry. */
function programOf(pid: number): string {
  return fs.realpathSync(`/proc/${pid}/exe`);
}

/** `bun build <args>`: an app as users bundle or compile it. */
async function build(args: string[]): Promise<void> {
  const result = await runToEnd('bun build', bun.bin, ['build', ...args]);
  assert.equal(result.code, 0, result.stderr);
}

function waiterProgram(runtime: Runtime): string {
  return fs.realpathSync(runtime.bin);
}

describe('host singleton without util-linux', () => {
  for (const runtime of RUNTIMES) {
    test(`${runtime.name}: the built-in waiter queues in the kernel, takes over at SIGKILL of the holder, and dies with its process`, async (t) => {
      // Bun needs no fs-ext: its flock(2) comes through bun:ffi.
      const { wrapper, env } = hidden(t, runtime.name === 'bun' ? [FS_EXT_BUILD] : []);
      const dir = tempDir(t);
      const file = path.join(dir, 'job.lock');
      const logFile = path.join(dir, 'fence.log');
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const start = (): ReturnType<typeof startFixture> => fixtures.add(startFixture(runtime, CONTENDER, [dir, 'job', logFile], env, wrapper));

      const holder = start();
      await bounded('holder runs', holder.next('running'), 20_000);
      const waiter = start();
      await bounded('waiter contends', waiter.next('contending'), 20_000);
      await waitForBlockedWaiters(file, 1);
      const [queued] = flockRequests(file).blockedPids;
      assert.equal(programOf(queued!), waiterProgram(runtime), 'the process queued in flock(2) is the built-in waiter, not flock(1)');
      assert.equal(parentOf(queued!), waiter.pid, 'started by the waiting singleton');

      await holder.kill('SIGKILL');
      assert.equal((await bounded('takeover', waiter.next('running'), 10_000))['token'], 2);
      assert.deepEqual(checkFenceLog(logFile), [1, 2]);

      // A process killed while waiting leaves nothing queued: its waiter dies with it.
      const doomed = start();
      await bounded('doomed contends', doomed.next('contending'), 20_000);
      await waitForBlockedWaiters(file, 1);
      const [orphan] = flockRequests(file).blockedPids;
      killAtEnd(t, [orphan!]);
      await doomed.kill('SIGKILL');
      await waitForBlockedWaiters(file, 0);
      assert.deepEqual(await gone([orphan!], 5000), [], `waiter ${orphan} outlived its process`);
      assert.equal(waiter.count('demoted'), 0, 'the holder kept the lock throughout');
    });
  }

  // Builds with Bun: left out where the fixtures run under Node only (BW_TEST_RUNTIMES=node).
  if (RUNTIMES.includes(bun)) test('a compiled Bun executable, a Bun bundle and a Node bundle wait with the built-in waiter, which is not the app', async (t) => {
    const { wrapper, env } = hidden(t);
    const dir = tempDir(t);
    const file = path.join(dir, 'job.lock');
    const logFile = path.join(dir, 'fence.log');
    const apps = tempDir(t, 'bw-apps-');
    // The Node bundle finds fs-ext (kept out of the bundle: native) as an app's would, in its node_modules.
    fs.symlinkSync(path.resolve(path.dirname(FS_EXT_BUILD), '../../..'), path.join(apps, 'node_modules'));
    const compiled = path.join(apps, 'contender');
    await build(['--compile', CONTENDER, '--outfile', compiled]);
    await build(['--target=bun', CONTENDER, '--outfile', path.join(apps, 'bun', 'contender.js')]);
    await build(['--target=node', '--external', 'fs-ext', CONTENDER, '--outfile', path.join(apps, 'node', 'contender.js')]);
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const waiters: [string, () => Fixture][] = [
      [compiled, () => new Fixture(wrapper[0]!, [...wrapper.slice(1), compiled, dir, 'job', logFile], 'compiled contender', env)],
      [waiterProgram(bun), () => startFixture(bun, path.join(apps, 'bun', 'contender.js'), [dir, 'job', logFile], env, wrapper)],
      [waiterProgram(node), () => startFixture(node, path.join(apps, 'node', 'contender.js'), [dir, 'job', logFile], env, wrapper)],
    ];
    let holder = fixtures.add(startFixture(node, CONTENDER, [dir, 'job', logFile]));
    await bounded('holder runs', holder.next('running'), 20_000);
    for (const [index, [program, start]] of waiters.entries()) {
      const waiter = fixtures.add(start());
      await bounded(`${program} contends`, waiter.next('contending'), 20_000);
      await waitForBlockedWaiters(file, 1);
      const [queued] = flockRequests(file).blockedPids;
      assert.equal(programOf(queued!), program, 'queued in flock(2): the built-in waiter');
      assert.equal(parentOf(queued!), waiter.pid);
      assert.equal(fs.readFileSync(`/proc/${queued}/task/${queued}/children`, 'utf8').trim(), '', 'the waiter started nothing (a copy of the app would)');
      await holder.kill('SIGKILL');
      assert.equal((await bounded('takeover', waiter.next('running'), 10_000))['token'], index + 2);
      holder = waiter;
    }
    assert.deepEqual(checkFenceLog(logFile), [1, 2, 3, 4]);
  });

  for (const runtime of RUNTIMES) {
    test(`${runtime.name}: the app's preloads and options do not reach the waiter`, async (t) => {
      const { wrapper, env } = hidden(t);
      const dir = tempDir(t);
      const file = path.join(dir, 'job.lock');
      const logFile = path.join(dir, 'fence.log');
      const preload = path.join(dir, 'preload.cjs');
      const ran = path.join(dir, 'preloaded-in');
      // It would also print the waiter's line: a preload must not make a lock.
      fs.writeFileSync(preload, `require('fs').appendFileSync(${JSON.stringify(ran)}, process.pid + '\\n'); process.stdout.write('locked\\n');\n`);
      const options = runtime.name === 'bun' ? { BUN_OPTIONS: `--preload ${preload}` } : { NODE_OPTIONS: `--require ${preload}` };
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const holder = fixtures.add(startFixture(runtime, CONTENDER, [dir, 'job', logFile]));
      await bounded('holder runs', holder.next('running'), 20_000);
      const waiter = fixtures.add(startFixture(runtime, CONTENDER, [dir, 'job', logFile], { ...env, ...options }, wrapper));
      await bounded('waiter contends', waiter.next('contending'), 20_000);
      await waitForBlockedWaiters(file, 1);
      assert.deepEqual(fs.readFileSync(ran, 'utf8').split('\n').filter(Boolean).map(Number), [waiter.pid], 'the preload ran in the app only');
      assert.equal(waiter.count('elected'), 0);
      await holder.kill('SIGKILL');
      assert.equal((await bounded('takeover', waiter.next('running'), 10_000))['token'], 2);
    });
  }

  test('node without util-linux and without a working fs-ext: BW_ERR_FLOCK_UNAVAILABLE, saying what to install', async (t) => {
    const { wrapper, env } = hidden(t, [FS_EXT_BUILD]);
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const child = fixtures.add(startFixture(node, START, ['job', tempDir(t)], env, wrapper));
    const result = await bounded('result', child.next('result'), 20_000);
    assert.equal(result['code'], 'BW_ERR_FLOCK_UNAVAILABLE');
    assert.match(String(result['message']), /flock\(1\) program \(util-linux\) is not in \/usr\/bin.*the fs-ext module could not be loaded .*install util-linux, or let the optional dependency fs-ext build/);
  });
});
