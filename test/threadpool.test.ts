import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { type TestContext, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { bounded } from './helpers/bounded.js';
import { Fixtures, startFixture } from './helpers/child.js';
import { flockState, waitForBlockedWaiters } from './helpers/proc-locks.js';
import { RUNTIMES, type Runtime, fixture, node } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';
import { FLOCK } from './helpers/tools.js';

const WAITERS = fixture('threadpool-waiters');

/** An operator holding the lock with flock(1) until its stdin closes. */
async function holdWithFlock(t: TestContext, file: string): Promise<ChildProcessWithoutNullStreams> {
  const operator = spawn(FLOCK, ['-o', file, '-c', 'echo held; exec cat']);
  t.after(() => operator.kill('SIGKILL'));
  await once(operator.stdout, 'data');
  return operator;
}

/**
 * The fixture with 4 lock waiters of `mode`, queued in the kernel behind an
 * operator's flock(1); pbkdf2 has been asked for.
 */
async function waitersAskedForPbkdf2(t: TestContext, runtime: Runtime, mode: 'bellwether' | 'fs-ext') {
  const lockDir = tempDir(t);
  const file = path.join(lockDir, 'busy.lock');
  fs.writeFileSync(file, '', { mode: 0o600 });
  const operator = await holdWithFlock(t, file);
  const fixtures = new Fixtures();
  t.after(() => fixtures.killAll());
  const proc = fixtures.add(startFixture(runtime, WAITERS, [mode, lockDir], { UV_THREADPOOL_SIZE: '4' }));
  await proc.next('waiting');
  await waitForBlockedWaiters(file, 4);
  proc.send('pbkdf2');
  return { file, operator, proc };
}

describe('waiting singletons hold no threadpool thread', () => {
  for (const runtime of RUNTIMES) {
    test(`${runtime.name}: 4 waiting singletons, 4 concurrent pbkdf2 complete while the lock is still held`, async (t) => {
      const { file, proc } = await waitersAskedForPbkdf2(t, runtime, 'bellwether');
      await bounded('pbkdf2 done beside the waiters', proc.next('pbkdf2-done'), 10_000);
      assert.deepEqual(flockState(file), { held: 1, blocked: 4 }, 'the lock never moved: pbkdf2 ran beside the waiters');
    });
  }

  test('control: 4 waiting fs-ext async flocks stall pbkdf2 until the lock is released (node)', async (t) => {
    const { operator, proc } = await waitersAskedForPbkdf2(t, node, 'fs-ext');
    // The control proves the check above can fail. A stall has no event of
    // its own, so it is observed as "not done within 1.5 s" (work that takes
    // ~10 ms when a thread is free).
    const done = proc.next('pbkdf2-done');
    const first = await Promise.race([done.then(() => 'done'), sleep(1500).then(() => 'stalled')]);
    assert.equal(first, 'stalled');
    operator.stdin.end();
    await bounded('pbkdf2 done once the lock is released', done, 10_000);
  });
});
