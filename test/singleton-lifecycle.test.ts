import assert from 'node:assert/strict';
import { once } from 'node:events';
import { keepLoopAlive, next } from './helpers/emitter.js';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Singleton, singleton } from 'bellwether';
import { Fixtures, startFixture } from './helpers/child.js';
import { waitForBlockedWaiters } from './helpers/proc-locks.js';
import { RUNTIMES, fixture } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';

function elected(job: Singleton): Promise<number> {
  return next(job, 'elected').then((e) => e.token);
}

function closeAfter(t: { after: (fn: () => Promise<void>) => void }, ...jobs: Singleton[]): void {
  t.after(async () => {
    await Promise.all(jobs.map((j) => j.close()));
  });
}

// Waiting singletons do not keep a process alive: the test run must.
keepLoopAlive();

describe('singleton lifecycle (in one process)', () => {
  test('start() resolves without waiting to win; the holder is the only leader', async (t) => {
    const lockDir = tempDir(t);
    const a = singleton({ name: 'job', lockDir });
    const b = singleton({ name: 'job', lockDir });
    closeAfter(t, a, b);
    await a.start();
    assert.equal(await elected(a), 1);
    await b.start();
    await waitForBlockedWaiters(path.join(lockDir, 'job.lock'), 1);
    assert.equal(b.isLeader, false);
    assert.equal(b.token, undefined);
    assert.equal(a.isLeader, true);
    assert.equal(a.token, 1);
  });

  test('a run that resolves keeps leadership until close(); close aborts the signal and waits for run to settle', async (t) => {
    const lockDir = tempDir(t);
    const steps: string[] = [];
    const a = singleton({
      name: 'job',
      lockDir,
      run: async ({ signal }) => {
        await once(signal, 'abort');
        steps.push('a aborted');
        await sleep(30); // cleanup that takes time: the lock must not move before it ends
        steps.push('a settled');
      },
    });
    const b = singleton({ name: 'job', lockDir, run: ({ token }) => void steps.push(`b runs ${token}`) });
    closeAfter(t, a, b);
    await a.start();
    await elected(a);
    await b.start();
    await waitForBlockedWaiters(path.join(lockDir, 'job.lock'), 1);
    const bElected = elected(b);
    const demoted = next(a, 'demoted');
    await a.close();
    steps.push('a closed');
    assert.deepEqual(await demoted, { token: 1, reason: 'closed' });
    assert.equal(await bElected, 2);
    assert.deepEqual(steps, ['a aborted', 'a settled', 'a closed', 'b runs 2']);
    assert.equal(b.isLeader, true, 'b stays leader after its run resolved');
  });

  test('a run that throws: error with cause, lock released, contends again after backoff', async (t) => {
    const lockDir = tempDir(t);
    const boom = new Error('boom');
    let attempts = 0;
    const a = singleton({
      name: 'job',
      lockDir,
      backoff: { initial: 5, max: 5 },
      run: () => {
        attempts += 1;
        if (attempts === 1) throw boom;
      },
    });
    const b = singleton({ name: 'job', lockDir });
    closeAfter(t, a, b);
    const errored = next(a, 'error');
    const demoted = next(a, 'demoted');
    await a.start();
    await elected(a);
    const error = await errored;
    assert.equal(error.code, 'BW_ERR_CALLBACK_FAILED');
    assert.equal(error.cause, boom);
    assert.deepEqual(await demoted, { token: 1, reason: 'failed' });
    // b takes the released lock (a is backing off or waiting again).
    await b.start();
    assert.equal(await elected(b), 2);
    const again = elected(a);
    await b.close();
    assert.equal(await again, 3);
    assert.equal(attempts, 2);
  });

  test('close() while waiting stops waiting at once and leaves the queue; close twice and dispose are harmless', async (t) => {
    const lockDir = tempDir(t);
    const lockFile = path.join(lockDir, 'job.lock');
    const holder = singleton({ name: 'job', lockDir });
    const waiter = singleton({ name: 'job', lockDir, run: () => assert.fail('a closed waiter must never run') });
    closeAfter(t, holder, waiter);
    await holder.start();
    await elected(holder);
    await waiter.start();
    await waitForBlockedWaiters(lockFile, 1);
    await waiter.close();
    await waitForBlockedWaiters(lockFile, 0);
    await waiter.close();
    await waiter[Symbol.asyncDispose]();
    assert.equal(waiter.state, 'closed');
    await holder.close();
    const third = singleton({ name: 'job', lockDir });
    closeAfter(t, third);
    await third.start();
    assert.equal(await elected(third), 2);
  });

  test('start() after close() and start() twice fail with codes', async (t) => {
    const lockDir = tempDir(t);
    const job = singleton({ name: 'job', lockDir });
    await job.start();
    await assert.rejects(job.start(), { code: 'BW_ERR_ALREADY_STARTED' });
    await job.close();
    await assert.rejects(job.start(), { code: 'BW_ERR_CLOSED' });
    const never = singleton({ name: 'job', lockDir });
    await never.close();
    await assert.rejects(never.start(), { code: 'BW_ERR_CLOSED' });
  });

  test('the default lock directory is created 0700 under XDG_RUNTIME_DIR, lock files are 0600', async (t) => {
    const runtimeDir = tempDir(t);
    const saved = process.env['XDG_RUNTIME_DIR'];
    process.env['XDG_RUNTIME_DIR'] = runtimeDir;
    t.after(() => {
      if (saved === undefined) delete process.env['XDG_RUNTIME_DIR'];
      else process.env['XDG_RUNTIME_DIR'] = saved;
    });
    const job = singleton({ name: 'default-dir' });
    closeAfter(t, job);
    await job.start();
    await elected(job);
    const dir = path.join(runtimeDir, 'bellwether');
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    assert.equal(fs.statSync(path.join(dir, 'default-dir.lock')).mode & 0o777, 0o600);
    assert.match(fs.readFileSync(path.join(dir, 'default-dir.lock'), 'utf8'), /^\{"token":1,"pid":\d+\} +\n$/);
  });
});

describe('a waiting singleton never keeps its process alive', () => {
  for (const runtime of RUNTIMES) {
    test(`${runtime.name}: exits by itself while waiting`, async (t) => {
      const lockDir = tempDir(t);
      const holder = singleton({ name: 'job', lockDir });
      closeAfter(t, holder);
      await holder.start();
      await elected(holder);
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const waiter = fixtures.add(startFixture(runtime, fixture('idle-waiter'), [lockDir, 'job']));
      waiter.child.stdin!.end();
      assert.equal((await waiter.next('exiting'))['leader'], false);
      assert.deepEqual(await waiter.exited, { code: 0, signal: null });
      assert.equal(waiter.count('running'), 0);
      await waitForBlockedWaiters(path.join(lockDir, 'job.lock'), 0);
    });
  }
});
