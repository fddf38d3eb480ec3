/**
 * The host lock where util-linux is missing (distroless and Alpine images):
 * flock(1) and setpriv(1) hidden from the system directories for the
 * fixtures, by scripts/without-util-linux.sh. The whole host-singleton
 * suite runs that way too, in `npm run test:matrix` (what CI runs).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, test } from 'node:test';
import { bounded } from './helpers/bounded.js';
import { Fixtures, startFixture } from './helpers/child.js';
import { checkFenceLog } from './helpers/fence-log.js';
import { gone, killAtEnd } from './helpers/processes.js';
import { flockRequests, waitForBlockedWaiters } from './helpers/proc-locks.js';
import { RUNTIMES, type Runtime, fixture, node } from './helpers/runtimes.js';
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

function parentOf(pid: number): number {
  return Number(/^PPid:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
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
